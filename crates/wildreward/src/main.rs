//! `wildreward`: train, serve, evaluate and run the reward model (thin: the logic is in the libraries).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use wildreward_model::ModelError;
use wildreward_types::exit::{StageNotBuilt, EXIT_BAD_INPUT, EXIT_NOT_BUILT};
use wildreward_types::EmptyHistory;

/// Reward models learned from users' own follow-up messages.
#[derive(Parser)]
#[command(name = "wildreward", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an ordinal (or Bradley-Terry) reward model on WildFB JSONL.
    Train(TrainArgs),
    /// Serve rewards over HTTP: a fleet of scoring workers behind a failover router.
    Serve(ServeArgs),
    /// Evaluate a reward model on RM-Bench, JudgeBench, HH-RLHF or WildFB test data.
    Eval(EvalArgs),
    /// Score JSONL texts or conversations with a reward model.
    Score(ScoreArgs),
    /// Convert a GGUF checkpoint into an HF-layout reward-model directory.
    Convert(ConvertArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Loss {
    Ordinal,
    Coral,
    Corn,
    Bt,
}

#[derive(Args)]
struct TrainArgs {
    /// Backbone: HF directory or GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Directory with train.jsonl and test.jsonl.
    #[arg(long)]
    data: PathBuf,
    /// Output directory (config.json, model.safetensors, tokenizer.json, metrics.jsonl).
    #[arg(long)]
    out: PathBuf,
    /// TOML configuration (see configs/).
    #[arg(long)]
    config: Option<PathBuf>,
    /// What trains: head, last-n:N, full or lora:R.
    #[arg(long)]
    train: Option<String>,
    /// Training loss.
    #[arg(long, value_enum)]
    loss: Option<Loss>,
    /// Stop after this many optimiser steps.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Passes over the training data.
    #[arg(long)]
    epochs: Option<usize>,
    /// Maximum tokens per example.
    #[arg(long)]
    max_length: Option<usize>,
    /// Examples per micro-batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimiser step.
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Evaluate on the test split every N steps.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Resume from the last checkpoint in --out.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ServeArgs {
    #[command(subcommand)]
    role: Option<ServeRole>,
    /// Reward model: HF directory or GGUF file.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Scoring workers to spawn.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Router port.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// First worker port.
    #[arg(long, default_value_t = 8004)]
    worker_port: u16,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// GPUs to place workers on, one each.
    #[arg(long, value_delimiter = ',')]
    gpus: Vec<u32>,
    /// Bearer token required on every route but /health.
    #[arg(long, env = "WILDREWARD_API_KEY")]
    api_key: Option<String>,
    /// Token budget of one batch.
    #[arg(long)]
    max_batch_tokens: Option<usize>,
    /// Texts in one batch.
    #[arg(long)]
    max_batch_size: Option<usize>,
    /// How /get_reward reads its queries: raw RM texts, or OpenRLHF prompt+response.
    #[arg(long, default_value = "raw")]
    query_format: String,
}

#[derive(Subcommand)]
enum ServeRole {
    /// One scoring worker.
    Worker {
        /// Reward model: HF directory or GGUF file.
        #[arg(long)]
        model: PathBuf,
        /// Port to listen on.
        #[arg(long)]
        port: u16,
    },
    /// A router in front of workers started elsewhere.
    Router {
        /// Worker base URLs, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        worker_urls: Vec<String>,
        /// Port to listen on.
        #[arg(long, default_value_t = 9000)]
        port: u16,
    },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("scorer").required(true).args(["model", "endpoint"])))]
struct EvalArgs {
    /// Reward model: HF directory or GGUF file.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A running scoring endpoint instead of a local model.
    #[arg(long)]
    endpoint: Option<String>,
    /// rm-bench, judgebench, hh, wildfb:<test.jsonl> or pairs:<file.jsonl>.
    #[arg(long)]
    bench: String,
    /// Output directory (report.json, report.md, plots).
    #[arg(long)]
    out: PathBuf,
    /// Evaluate at most N items.
    #[arg(long)]
    limit: Option<usize>,
    /// Maximum tokens per scored text.
    #[arg(long)]
    max_length: Option<usize>,
}

#[derive(Args)]
struct ScoreArgs {
    /// Reward model: HF directory, GGUF file, or a repo id in the local hf-hub cache.
    #[arg(long)]
    model: PathBuf,
    /// JSONL with `text` or `messages` (+ optional `history`) per line.
    #[arg(long)]
    input: PathBuf,
    /// Output JSONL (default: stdout).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Maximum tokens per text (longer texts keep their end).
    #[arg(long, default_value_t = 4096)]
    max_length: usize,
    /// Context section for an empty history: `training` ("No previous context.", what released
    /// weights saw) or `inference` (empty, as the model card's example sends).
    #[arg(long, value_enum, default_value = "training")]
    empty_history: EmptyHistoryArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum EmptyHistoryArg {
    Training,
    Inference,
}

#[derive(Args)]
struct ConvertArgs {
    /// GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Output HF-layout directory.
    #[arg(long)]
    out: PathBuf,
    /// Logits of the score head (K-1) when the source has no head.
    #[arg(long, default_value_t = 3)]
    num_labels: usize,
    /// Seed of a newly created head.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn not_built(command: &'static str, issue: u32, title: &'static str) -> anyhow::Error {
    StageNotBuilt {
        command,
        issue,
        title,
    }
    .into()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    Err(match cli.command {
        Command::Train(_) => not_built("wildreward train", 5, "ordinal reward-model training"),
        Command::Serve(args) => match args.role {
            Some(ServeRole::Worker { .. }) => {
                not_built("wildreward serve worker", 6, "the scoring worker fleet")
            }
            Some(ServeRole::Router { .. }) => {
                not_built("wildreward serve router", 6, "the failover router")
            }
            None => not_built("wildreward serve", 6, "the scoring worker fleet and router"),
        },
        Command::Eval(_) => not_built("wildreward eval", 8, "benchmarks and calibration"),
        Command::Score(a) => {
            let n = wildreward::score::run(&wildreward::score::ScoreOptions {
                model: a.model,
                input: a.input,
                output: a.output,
                max_length: a.max_length,
                empty_history: match a.empty_history {
                    EmptyHistoryArg::Training => EmptyHistory::Training,
                    EmptyHistoryArg::Inference => EmptyHistory::Inference,
                },
            })?;
            eprintln!("wildreward: scored {n} texts");
            return Ok(());
        }
        Command::Convert(a) => {
            let report = wildreward::convert::run(&a.model, &a.out, a.num_labels, a.seed)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
    })
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wildreward: error: {e:#}");
            if e.downcast_ref::<StageNotBuilt>().is_some() {
                ExitCode::from(EXIT_NOT_BUILT)
            } else if e.downcast_ref::<wildreward::BadInput>().is_some()
                || matches!(
                    e.downcast_ref::<ModelError>(),
                    Some(
                        ModelError::Config { .. }
                            | ModelError::Weights { .. }
                            | ModelError::Tokenizer { .. }
                            | ModelError::Input(_)
                    )
                )
            {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
