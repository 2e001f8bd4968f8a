//! `wildreward train`: the command line of the trainer (the logic is in `wildreward-train`).

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use wildreward_train::{LossKind, TrainConfig, TrainError, TrainRun};
use wildreward_types::exit::BadInput;

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
    /// Write a resumable checkpoint every N steps.
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Use only the first N training examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Use only the first N test examples.
    #[arg(long)]
    pub eval_limit: Option<usize>,
    /// cpu or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Products on the CPU: f32 (exact) or bf16 (mixed precision: bf16 operands, f32 sums and
    /// master weights; needs AVX512_BF16 or AMX).
    #[arg(long)]
    pub dtype: Option<String>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Keep the frozen part's outputs (head-only, last-n) in this directory and reuse them in
    /// later runs on the same model and examples, e.g. other seeds (each file is checked against
    /// the model, the mode and every token id before it is used).
    #[arg(long)]
    pub feature_cache: Option<PathBuf>,
    /// Resume from the last checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
}

impl From<Loss> for LossKind {
    fn from(l: Loss) -> Self {
        match l {
            Loss::Ordinal => LossKind::Ordinal,
            Loss::Coral => LossKind::Coral,
            Loss::Corn => LossKind::Corn,
            Loss::Bt => LossKind::Bt,
        }
    }
}

/// The configuration: the `--config` file (or the defaults) with the flags given on top.
fn config(a: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let mut c = match &a.config {
        Some(path) => TrainConfig::from_file(path).map_err(input)?,
        None => TrainConfig::default(),
    };
    if let Some(t) = &a.train {
        c.train = t
            .parse()
            .map_err(|e: String| BadInput(format!("--train {e}")))?;
    }
    if let Some(l) = a.loss {
        c.loss = l.into();
    }
    let set = |field: &mut usize, v: Option<usize>| {
        if let Some(v) = v {
            *field = v;
        }
    };
    set(&mut c.max_steps, a.max_steps);
    set(&mut c.epochs, a.epochs);
    set(&mut c.max_length, a.max_length);
    set(&mut c.batch_size, a.batch_size);
    set(&mut c.grad_accum, a.grad_accum);
    set(&mut c.eval_every, a.eval_every);
    set(&mut c.save_every, a.save_every);
    set(&mut c.train_limit, a.train_limit);
    set(&mut c.eval_limit, a.eval_limit);
    if let Some(lr) = a.lr {
        c.lr = lr;
    }
    if let Some(seed) = a.seed {
        c.seed = seed;
    }
    if let Some(d) = &a.device {
        c.device = d.clone();
    }
    if let Some(d) = &a.dtype {
        c.dtype = d.to_ascii_lowercase();
    }
    Ok(c)
}

/// Bad input surfaces as [`BadInput`] (exit 65) and model errors as themselves.
fn input(e: TrainError) -> anyhow::Error {
    match e {
        TrainError::Input(b) => b.into(),
        TrainError::Model(m) => m.into(),
        other => other.into(),
    }
}

/// Runs `wildreward train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let run = TrainRun {
        config: config(&args)?,
        model: args.model,
        data: args.data,
        out: args.out,
        resume: args.resume,
        progress: !args.quiet,
        feature_cache: args.feature_cache,
    };
    let report = wildreward_train::train(&run).map_err(input)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    Ok(())
}
