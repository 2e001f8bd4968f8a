//! `wildfb`: the WildFB data pipeline's command line (thin: the logic is in the library).

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use wildfb::import::{self, ImportOptions, Source};
use wildreward_types::exit::{StageNotBuilt, EXIT_BAD_INPUT, EXIT_NOT_BUILT};

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
    /// Base URL of the OpenAI-compatible API.
    #[arg(long, env = "OPENAI_BASE_URL")]
    api_base: Option<String>,
    /// Model name for the API.
    #[arg(long)]
    model: Option<String>,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seed of the train/test split.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Test examples to hold out.
    #[arg(long, default_value_t = 5000)]
    test_count: usize,
    /// Conversation languages to keep.
    #[arg(long, value_delimiter = ',', default_value = "English,Chinese")]
    languages: Vec<String>,
    /// Run only this step.
    #[arg(long)]
    step: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Collect(_) => Err(StageNotBuilt {
            command: "wildfb collect",
            issue: 3,
            title: "`wildfb collect`: the whole WildFB data pipeline",
        }
        .into()),
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
            if e.downcast_ref::<StageNotBuilt>().is_some() {
                ExitCode::from(EXIT_NOT_BUILT)
            } else if e.downcast_ref::<wildfb::Error>().is_some() {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
