//! `wildreward eval`: the command line of the evaluator (the logic is in `wildreward-eval`).

use clap::Args;
use std::path::PathBuf;
use wildreward_types::exit::StageNotBuilt;

/// `wildreward eval` flags.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("scorer").required(true).args(["model", "endpoint"])))]
pub struct EvalArgs {
    /// Reward model: HF directory or GGUF file.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A running scoring endpoint instead of a local model.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// rm-bench, judgebench, hh, wildfb:<test.jsonl> or pairs:<file.jsonl>.
    #[arg(long)]
    pub bench: String,
    /// Output directory (report.json, report.md, plots).
    #[arg(long)]
    pub out: PathBuf,
    /// Evaluate at most N items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Maximum tokens per scored text.
    #[arg(long)]
    pub max_length: Option<usize>,
}

/// Runs `wildreward eval`.
pub fn run(_args: EvalArgs) -> anyhow::Result<()> {
    Err(StageNotBuilt {
        command: "wildreward eval",
        issue: 8,
        title: "benchmarks and calibration",
    }
    .into())
}
