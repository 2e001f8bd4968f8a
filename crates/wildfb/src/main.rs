//! `wildfb`: the WildFB data pipeline's command line (thin: the logic is in the library).

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use wildfb::collect::{self, config::CollectConfig, CollectOptions, Step};
use wildfb::import::{self, ImportOptions, Source};
use wildreward_types::exit::EXIT_BAD_INPUT;

/// Turn in-the-wild chat logs into reward-model training data from users' own reactions.
#[derive(Parser)]
#[command(name = "wildfb", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the WildFB pipeline on WildChat parquet: instances, feedback classification, hindsight
    /// mining, refusal validation, filters, split.
    Collect(CollectArgs),
    /// Convert conversations from another source into WildChat-shaped parquet.
    Import {
        #[command(subcommand)]
        source: ImportCommand,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// ShareGPT conversations (JSON array or JSON Lines, optionally gzip) → WildChat-schema parquet,
    /// each row marked `adapted_from = "sharegpt"`.
    Sharegpt(ImportArgs),
    /// WildChat rows written as JSON objects (one per line, the dataset's field names) → parquet.
    WildchatJson(ImportArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// Input file (.json / .jsonl, gzip or not).
    #[arg(long)]
    input: PathBuf,
    /// Parquet file to write.
    #[arg(long)]
    out: PathBuf,
    /// Keep the complete elements of a JSON array that ends early (e.g. the truncated PyPI copy of
    /// ShareGPT) instead of failing.
    #[arg(long)]
    allow_truncated: bool,
    /// Import at most this many conversations.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Annotator {
    /// Deterministic English + Chinese rules (no API key needed).
    Rules,
    /// Any OpenAI-compatible chat-completions endpoint.
    Openai,
    /// Rules where confident, the LLM for the rest.
    Cascade,
}

#[derive(Clone, Copy, ValueEnum)]
enum StepName {
    /// Parquet → one instance per assistant turn a user answered (instances.jsonl).
    Preprocess,
    /// The user's reaction → raw category 1..5 (classified.jsonl).
    Classify,
    /// Neutral turns relabelled from later positive ones on the same topic (hindsight.jsonl).
    Hindsight,
    /// Short refusals adjudicated (refusal.jsonl).
    Refusal,
    /// Filters, training labels, RM text, dedup, seeded split (train.jsonl, test.jsonl).
    Split,
}

#[derive(clap::Args)]
struct CollectArgs {
    /// WildChat parquet file or directory of parquet files.
    #[arg(long)]
    input: PathBuf,
    /// Output directory (train.jsonl, test.jsonl, stats.json, one JSONL per step).
    #[arg(long)]
    out: PathBuf,
    /// Who classifies the users' reactions.
    #[arg(long, value_enum, default_value = "rules")]
    annotator: Annotator,
    /// Settings file (default: the embedded configs/wildfb/collect.toml); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Base URL of the OpenAI-compatible API [config default: http://localhost:8001/v1]. The key is
    /// read from the variable named by `annotator.api_key_env` (OPENAI_API_KEY).
    #[arg(long, env = "OPENAI_BASE_URL")]
    api_base: Option<String>,
    /// Model name for the API [config default: gpt-oss-120b].
    #[arg(long)]
    model: Option<String>,
    /// Requests in flight [config default: 64].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Requests per minute, 0 for no limit [config default: 0].
    #[arg(long)]
    rpm: Option<u32>,
    /// Per-request timeout in seconds [config default: 600].
    #[arg(long)]
    timeout_secs: Option<f64>,
    /// Retries per request after the first attempt [config default: 6].
    #[arg(long)]
    max_retries: Option<u32>,
    /// Seed of the train/test split [config default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Test examples to hold out (capped for small inputs) [config default: 5000].
    #[arg(long)]
    test_count: Option<usize>,
    /// Conversation languages to keep [config default: English,Chinese].
    #[arg(long, value_delimiter = ',')]
    languages: Option<Vec<String>>,
    /// all-MiniLM-L6-v2 directory [default: $WILDREWARD_ASSETS/all-minilm-l6-v2, else assets/all-minilm-l6-v2].
    #[arg(long)]
    embedder: Option<PathBuf>,
    /// Run only this step (again, even if it finished before); its input must exist.
    #[arg(long, value_enum)]
    step: Option<StepName>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

fn collect_options(a: CollectArgs) -> anyhow::Result<CollectOptions> {
    let mut config = match &a.config {
        Some(path) => CollectConfig::load(path)?,
        None => CollectConfig::embedded()?,
    };
    let an = &mut config.annotator;
    if let Some(v) = a.api_base {
        an.api_base = v;
    }
    if let Some(v) = a.model {
        an.model = v;
    }
    if let Some(v) = a.concurrency {
        an.concurrency = v;
    }
    if let Some(v) = a.rpm {
        an.requests_per_minute = v;
    }
    if let Some(v) = a.timeout_secs {
        an.timeout_secs = v;
    }
    if let Some(v) = a.max_retries {
        an.max_retries = v;
    }
    if let Some(v) = a.seed {
        config.split.seed = v;
    }
    if let Some(v) = a.test_count {
        config.split.test_count = v;
    }
    if let Some(v) = a.languages {
        config.preprocess.languages = v;
    }
    Ok(CollectOptions {
        input: a.input,
        out: a.out,
        annotator: match a.annotator {
            Annotator::Rules => collect::Annotator::Rules,
            Annotator::Openai => collect::Annotator::Openai,
            Annotator::Cascade => collect::Annotator::Cascade,
        },
        config,
        embedder_dir: a.embedder.unwrap_or_else(wildfb::embed::default_model_dir),
        step: a.step.map(|s| match s {
            StepName::Preprocess => Step::Preprocess,
            StepName::Classify => Step::Classify,
            StepName::Hindsight => Step::Hindsight,
            StepName::Refusal => Step::Refusal,
            StepName::Split => Step::Split,
        }),
        quiet: a.quiet,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Collect(args) => collect_options(args).and_then(|opts| {
            let stats = collect::run(&opts)?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(())
        }),
        Command::Import { source } => {
            let (source, args) = match source {
                ImportCommand::Sharegpt(a) => (Source::ShareGpt, a),
                ImportCommand::WildchatJson(a) => (Source::WildChatJson, a),
            };
            let opts = ImportOptions {
                input: args.input,
                output: args.out,
                allow_truncated: args.allow_truncated,
                limit: args.limit,
            };
            import::run(source, &opts)
                .map_err(anyhow::Error::from)
                .and_then(|report| Ok(serde_json::to_string_pretty(&report)?))
                .map(|json| println!("{json}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wildfb: error: {e:#}");
            if e.downcast_ref::<wildfb::Error>()
                .is_some_and(wildfb::Error::is_bad_input)
            {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
