//! `online-dpo`: online DPO of a policy against a reward-scoring endpoint (thin: the logic is in the
//! library).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use wildreward_types::exit::{StageNotBuilt, EXIT_NOT_BUILT};

/// Improve a policy with rewards from a WildReward scoring endpoint.
#[derive(Parser)]
#[command(name = "online-dpo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample answers, rank them with the reward endpoint, and update the policy with DPO.
    Run(RunArgs),
    /// Mean reward of a policy's greedy answers on held-out prompts.
    Eval(EvalArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Policy: HF directory or GGUF file.
    #[arg(long)]
    policy: PathBuf,
    /// JSONL with `prompt` or `turns` per line.
    #[arg(long)]
    prompts: PathBuf,
    /// Scoring endpoint (`/get_reward`).
    #[arg(long, env = "REWARD_MODEL_ENDPOINT")]
    reward_endpoint: String,
    /// Output directory (metrics.jsonl, checkpoints).
    #[arg(long)]
    out: PathBuf,
    /// TOML configuration (see configs/).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Answers sampled per prompt.
    #[arg(long)]
    n: Option<usize>,
    /// Longest answer, in tokens.
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Policy updates.
    #[arg(long)]
    steps: Option<usize>,
    /// Prompts per update.
    #[arg(long)]
    prompts_per_step: Option<usize>,
    /// DPO β.
    #[arg(long)]
    beta: Option<f64>,
    /// Learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// What trains: full, last-n:N or lora:R.
    #[arg(long)]
    train: Option<String>,
    /// Random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Resume from the last checkpoint in --out.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Policy: HF directory or GGUF file.
    #[arg(long)]
    policy: PathBuf,
    /// JSONL with `prompt` or `turns` per line.
    #[arg(long)]
    prompts: PathBuf,
    /// Scoring endpoint (`/get_reward`).
    #[arg(long, env = "REWARD_MODEL_ENDPOINT")]
    reward_endpoint: String,
    /// Evaluate at most N prompts.
    #[arg(long)]
    limit: Option<usize>,
    /// Output directory for the JSON report.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let err: anyhow::Error = match cli.command {
        Command::Run(_) => StageNotBuilt {
            command: "online-dpo run",
            issue: 7,
            title: "online DPO against the scoring endpoint",
        },
        Command::Eval(_) => StageNotBuilt {
            command: "online-dpo eval",
            issue: 7,
            title: "online DPO against the scoring endpoint",
        },
    }
    .into();
    eprintln!("online-dpo: error: {err:#}");
    ExitCode::from(EXIT_NOT_BUILT)
}
