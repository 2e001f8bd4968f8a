//! `online-dpo`: online DPO of a policy against a reward-scoring endpoint (thin: the logic is in the
//! library).

use clap::{Args, Parser, Subcommand};
use online_dpo::{DpoConfig, DpoError, DpoRun, EvalRun};
use std::path::PathBuf;
use std::process::ExitCode;
use wildreward_model::ModelError;
use wildreward_types::exit::{BadInput, EXIT_BAD_INPUT};

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
    /// cpu or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Rollouts' products on the CPU: f32 or bf16 (needs AVX512_BF16 or AMX; not with lora:R).
    #[arg(long)]
    rollout_dtype: Option<String>,
    /// Bearer token of the reward endpoint.
    #[arg(long, env = "WILDREWARD_API_KEY")]
    api_key: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
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
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Bearer token of the reward endpoint.
    #[arg(long, env = "WILDREWARD_API_KEY")]
    api_key: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// The configuration: the `--config` file (or the defaults) with the flags given on top.
fn config(a: &RunArgs) -> anyhow::Result<DpoConfig> {
    let mut c = match &a.config {
        Some(path) => DpoConfig::from_file(path).map_err(exit_error)?,
        None => DpoConfig::default(),
    };
    if let Some(t) = &a.train {
        c.train = t
            .parse()
            .map_err(|e: String| BadInput(format!("--train {e}")))?;
    }
    if let Some(v) = a.n {
        c.n = v;
    }
    if let Some(v) = a.max_new_tokens {
        c.max_new_tokens = v;
    }
    if let Some(v) = a.steps {
        c.steps = v;
    }
    if let Some(v) = a.prompts_per_step {
        c.prompts_per_step = v;
    }
    if let Some(v) = a.beta {
        c.beta = v;
    }
    if let Some(v) = a.lr {
        c.lr = v;
    }
    if let Some(v) = a.seed {
        c.seed = v;
    }
    if let Some(v) = &a.device {
        c.device = v.clone();
    }
    if let Some(v) = &a.rollout_dtype {
        c.rollout_dtype = v.to_ascii_lowercase();
    }
    Ok(c)
}

/// Bad input surfaces as [`BadInput`] (exit 65) and model errors as themselves.
fn exit_error(e: DpoError) -> anyhow::Error {
    match e {
        DpoError::Input(b) => b.into(),
        DpoError::Model(m) => m.into(),
        DpoError::Train(wildreward_train::TrainError::Input(b)) => b.into(),
        other => other.into(),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => {
            let report = online_dpo::run(&DpoRun {
                config: config(&a)?,
                policy: a.policy,
                prompts: a.prompts,
                endpoint: a.reward_endpoint,
                out: a.out,
                resume: a.resume,
                api_key: a.api_key,
                progress: !a.quiet,
            })
            .map_err(exit_error)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Eval(a) => {
            let report = online_dpo::evaluate(&EvalRun {
                policy: a.policy,
                prompts: a.prompts,
                endpoint: a.reward_endpoint,
                limit: a.limit.unwrap_or(0),
                max_new_tokens: a.max_new_tokens,
                out: a.out,
                api_key: a.api_key,
                progress: !a.quiet,
            })
            .map_err(exit_error)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // The CPU kernels' worker threads, before anything else starts rayon's global pool.
    wildreward_kernels::init_process();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("online-dpo: error: {e:#}");
            if e.downcast_ref::<BadInput>().is_some()
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
