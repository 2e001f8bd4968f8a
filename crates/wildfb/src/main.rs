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
    /// Label a file of turns with one annotator (the classify step alone): instances.jsonl, or items
    /// {id, query, response, feedback} such as data/feedback-dev/items.jsonl → OUT/classified.jsonl.
    Classify(ClassifyArgs),
    /// Agreement of an annotator's raw labels with gold labels: accuracy, Cohen's κ (plain and linearly
    /// weighted), per-class precision / recall / F1, confusion matrix, coverage, and the always-neutral
    /// baseline beside them → OUT/agreement.{json,md,png}.
    Agree(AgreeArgs),
    /// A training set of exactly --size instances drawn from --users users only (chosen with --seed,
    /// round-robin over them), from a labelled JSONL such as OUT/train.jsonl → --output and a report
    /// (--report, default <output>.report.json): "same data size, more users" as a loop over K.
    SampleUsers(SampleUsersArgs),
}

#[derive(clap::Args)]
struct SampleUsersArgs {
    /// Labelled JSONL to draw from (train.jsonl of `wildfb collect`).
    #[arg(long)]
    input: PathBuf,
    /// K: how many users to draw from.
    #[arg(long)]
    users: usize,
    /// N: how many instances to write (exactly; an error if the K users hold fewer).
    #[arg(long)]
    size: usize,
    /// Seed of the choice of users and of their instances.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Only users with at least this many instances can be chosen.
    #[arg(long, default_value_t = 1)]
    min_per_user: usize,
    /// JSONL to write.
    #[arg(long)]
    output: PathBuf,
    /// Where the JSON report goes [default: <output>.report.json].
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ClassifyArgs {
    /// JSONL of instances or of {id, query, response, feedback} items.
    #[arg(long)]
    input: PathBuf,
    /// Output directory (classified.jsonl, stats.json, llm-journal.jsonl).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    annotator: AnnotatorArgs,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct AgreeArgs {
    /// Gold labels: JSONL lines {"id": …, "label": 1..5}.
    #[arg(long)]
    gold: PathBuf,
    /// Predicted labels: a JSONL file ({"id", "label"}, null = abstained) or a directory with
    /// classified.jsonl (the output of `wildfb classify` or `wildfb collect`).
    #[arg(long)]
    pred: PathBuf,
    /// Where agreement.json, agreement.md and agreement.png go.
    #[arg(long, default_value = "out/agree")]
    out: PathBuf,
    /// The field that joins the two files.
    #[arg(long, value_enum, default_value = "id")]
    key: KeyArg,
    /// Count gold items without a predicted line as not covered instead of failing.
    #[arg(long)]
    allow_missing: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyArg {
    /// The instance id.
    Id,
    /// A labelling sheet's item number.
    N,
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
    /// The original English + Chinese rules (configs/wildfb/rules.toml; no API key needed).
    Rules,
    /// Cue rules from the labelling guide that read the response too and abstain on weak evidence
    /// (configs/wildfb/cues.toml; no API key needed; abstentions are written as neutral, marked).
    Cues,
    /// Any OpenAI-compatible chat-completions endpoint.
    Openai,
    /// The cue rules where they decide, the LLM for their abstentions.
    Cascade,
}

impl Annotator {
    fn into_collect(self) -> collect::Annotator {
        match self {
            Annotator::Rules => collect::Annotator::Rules,
            Annotator::Cues => collect::Annotator::Cues,
            Annotator::Openai => collect::Annotator::Openai,
            Annotator::Cascade => collect::Annotator::Cascade,
        }
    }
}

/// The annotator and the LLM endpoint settings, shared by `collect` and `classify`.
#[derive(clap::Args)]
struct AnnotatorArgs {
    /// Who classifies the users' reactions (`cues` agrees with people far better than `rules`:
    /// docs/labels.md).
    #[arg(long, value_enum, default_value = "cues")]
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
}

impl AnnotatorArgs {
    /// The settings file with the flags applied.
    fn config(&self) -> anyhow::Result<CollectConfig> {
        let mut config = match &self.config {
            Some(path) => CollectConfig::load(path)?,
            None => CollectConfig::embedded()?,
        };
        let an = &mut config.annotator;
        if let Some(v) = &self.api_base {
            an.api_base = v.clone();
        }
        if let Some(v) = &self.model {
            an.model = v.clone();
        }
        if let Some(v) = self.concurrency {
            an.concurrency = v;
        }
        if let Some(v) = self.rpm {
            an.requests_per_minute = v;
        }
        if let Some(v) = self.timeout_secs {
            an.timeout_secs = v;
        }
        if let Some(v) = self.max_retries {
            an.max_retries = v;
        }
        Ok(config)
    }
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
    #[command(flatten)]
    annotator: AnnotatorArgs,
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
    let mut config = a.annotator.config()?;
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
        annotator: a.annotator.annotator.into_collect(),
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
        Command::Classify(a) => a.annotator.config().and_then(|config| {
            let opts = collect::ClassifyOptions {
                input: a.input,
                out: a.out,
                annotator: a.annotator.annotator.into_collect(),
                config,
                quiet: a.quiet,
            };
            let stats = collect::classify_only(&opts)?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(())
        }),
        Command::Agree(a) => {
            let opts = wildfb::agree::AgreeOptions {
                gold: a.gold,
                pred: a.pred,
                out: a.out,
                key: match a.key {
                    KeyArg::Id => wildfb::agree::JoinKey::Id,
                    KeyArg::N => wildfb::agree::JoinKey::N,
                },
                allow_missing: a.allow_missing,
            };
            wildfb::agree::run(&opts)
                .map(|(_, text)| print!("{text}"))
                .map_err(anyhow::Error::from)
        }
        Command::SampleUsers(a) => {
            let opts = wildfb::sample::SampleOptions {
                input: a.input,
                output: a.output,
                report: a.report,
                users: a.users,
                size: a.size,
                seed: a.seed,
                min_per_user: a.min_per_user,
            };
            wildfb::sample::run(&opts)
                .map_err(anyhow::Error::from)
                .and_then(|report| Ok(serde_json::to_string_pretty(&report)?))
                .map(|json| println!("{json}"))
        }
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
