//! `wildreward train`: the command line of the trainer (the logic is in `wildreward-train`).

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use wildreward_types::exit::StageNotBuilt;

/// The training loss.
#[derive(Clone, Copy, ValueEnum)]
pub enum Loss {
    Ordinal,
    Coral,
    Corn,
    Bt,
}

/// `wildreward train` flags (override the `--config` TOML).
#[derive(Args)]
pub struct TrainArgs {
    /// Backbone: HF directory or GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// Directory with train.jsonl and test.jsonl.
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory (config.json, model.safetensors, tokenizer.json, metrics.jsonl).
    #[arg(long)]
    pub out: PathBuf,
    /// TOML configuration (see configs/).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// What trains: head, last-n:N, full or lora:R.
    #[arg(long)]
    pub train: Option<String>,
    /// Training loss.
    #[arg(long, value_enum)]
    pub loss: Option<Loss>,
    /// Stop after this many optimiser steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Passes over the training data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Maximum tokens per example.
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Examples per micro-batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimiser step.
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Evaluate on the test split every N steps.
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Resume from the last checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
}

/// Runs `wildreward train`.
pub fn run(_args: TrainArgs) -> anyhow::Result<()> {
    Err(StageNotBuilt {
        command: "wildreward train",
        issue: 5,
        title: "ordinal reward-model training",
    }
    .into())
}
