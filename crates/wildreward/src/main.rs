//! `wildreward`: train, serve, evaluate and run the reward model (thin: the logic is in the libraries).
//! It depends on `wildreward-kernels` only to make the process's start-up settings
//! (`init_process`: placed worker threads, glibc keeping freed memory) before anything else runs.

mod cmd;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use wildreward_model::ModelError;
use wildreward_types::exit::{BadInput, StageNotBuilt, EXIT_BAD_INPUT, EXIT_NOT_BUILT};
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
    Train(Box<cmd::train::TrainArgs>),
    /// Serve rewards over HTTP: a fleet of scoring workers behind a failover router.
    Serve(Box<cmd::serve::ServeArgs>),
    /// Evaluate a reward model on RM-Bench, JudgeBench, HH-RLHF or WildFB test data.
    Eval(cmd::eval::EvalArgs),
    /// Score JSONL texts or conversations with a reward model.
    Score(ScoreArgs),
    /// Convert a GGUF checkpoint into an HF-layout reward-model directory.
    Convert(ConvertArgs),
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
    /// Maximum tokens per input: longer `messages` lines are cut as training cuts them (history,
    /// then the query's middle); longer `text` lines lose their middle, keeping the template header.
    #[arg(long, default_value_t = 4096)]
    max_length: usize,
    /// Context section for an empty history: `training` ("No previous context.", what released
    /// weights saw) or `inference` (empty, as the model card's example sends).
    #[arg(long, value_enum, default_value = "training")]
    empty_history: EmptyHistoryArg,
    /// Score a GGUF straight from its quantized weights with candle's quantized matmul instead of
    /// dequantising them to f32 (close rewards, but far slower on CPU: docs/benchmarks.md).
    #[arg(long)]
    quantized: bool,
    /// Device: cpu or cuda:N (needs a `--features cuda` build).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Backbone precision: auto (bf16 on CUDA and on CPUs with AVX512_BF16 or AMX, else f32), f32,
    /// bf16 or f16 (CUDA).
    #[arg(long, default_value = "auto")]
    dtype: String,
    /// Also write a JSON report: texts, tokens, load and scoring seconds, texts/s, device, dtype.
    #[arg(long)]
    report: Option<PathBuf>,
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(a) => cmd::train::run(*a),
        Command::Serve(a) => cmd::serve::run(*a),
        Command::Eval(a) => cmd::eval::run(a),
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
                quantized: a.quantized,
                device: a.device.parse().map_err(anyhow::Error::from)?,
                precision: a
                    .dtype
                    .parse()
                    .map_err(|e: String| anyhow::Error::from(wildreward::BadInput(e)))?,
                report: a.report,
            })?;
            eprintln!("wildreward: scored {n} texts");
            Ok(())
        }
        Command::Convert(a) => {
            let report = wildreward::convert::run(&a.model, &a.out, a.num_labels, a.seed)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // The CPU kernels' worker threads, before anything else starts rayon's global pool.
    wildreward_kernels::init_process();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wildreward: error: {e:#}");
            if e.downcast_ref::<StageNotBuilt>().is_some() {
                ExitCode::from(EXIT_NOT_BUILT)
            } else if e.downcast_ref::<BadInput>().is_some()
                || e.downcast_ref::<ModelError>()
                    .is_some_and(ModelError::is_bad_input)
            {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
