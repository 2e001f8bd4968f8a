//! The training loop: data → encoded examples → length-grouped micro-batches → gradient
//! accumulation → clipping → AdamW on the schedule, with evaluation, metrics, resumable checkpoints
//! and the final HF-layout save.

use crate::batching::epoch_batches;
use crate::config::{TrainConfig, TrainMode};
use crate::data::{read_split, Encoded, Encoder};
use crate::error::{Result, TrainError};
use crate::forward::{caches_features, logits, loss_of, FeatureCache, FeatureStore};
use crate::metrics;
use crate::optim::{accumulate, clip_grad_norm, lr_at};
use crate::params::{build, TrainableModel};
use crate::state::{self, MetricsLog, TrainerState};
use candle_core::{DType, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use wildreward_model::{weights, HeadKind};
use wildreward_types::template::EmptyHistory;

/// One training run's inputs.
#[derive(Debug, Clone)]
pub struct TrainRun {
    /// The starting model (HF directory, GGUF, or cached hub id).
    pub model: PathBuf,
    /// Directory with `train.jsonl` and `test.jsonl`.
    pub data: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Settings.
    pub config: TrainConfig,
    /// Continue from the newest checkpoint in `out`.
    pub resume: bool,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Keep the frozen part's outputs (head-only, last-N) in this directory and reuse them in
    /// later runs on the same model and examples (other seeds): [`crate::feature_store`].
    pub feature_cache: Option<PathBuf>,
}

/// What a finished run reports (also written to `out/train_report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Optimiser steps taken in total (including before a resume).
    pub steps: usize,
    /// Step the run resumed from, if it did.
    pub resumed_from: Option<usize>,
    /// Training examples.
    pub train_examples: usize,
    /// Test examples evaluated.
    pub test_examples: usize,
    /// Examples that had to be truncated (train + test).
    pub truncated: usize,
    /// Trainable scalars.
    pub trainable_parameters: usize,
    /// Seconds spent computing the frozen backbone's features once (head-only training; the
    /// steps then cost almost nothing, so their tokens/s says little).
    pub feature_seconds: f64,
    /// Real tokens processed by training steps in this process.
    pub tokens: usize,
    /// Wall time of the training steps in this process.
    pub train_seconds: f64,
    /// Real tokens per second of the training steps.
    pub tokens_per_second: f64,
    /// The last evaluation.
    pub final_eval: serde_json::Value,
    /// Where the model was saved.
    pub out: PathBuf,
}

fn bar(show: bool, len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(len),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb
}

/// Encodes a split, naming the file and example on error.
fn encode_all(
    encoder: &Encoder,
    path: &Path,
    examples: &[crate::data::Example],
    show: bool,
) -> Result<Vec<Encoded>> {
    let pb = bar(
        show,
        examples.len() as u64,
        "tokenising {pos}/{len} {wide_bar} {eta}",
    );
    let out = examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            pb.inc(1);
            encoder.encode(e).map_err(|err| {
                TrainError::input(format!("{}: example {}: {err}", path.display(), i + 1))
            })
        })
        .collect();
    pb.finish_and_clear();
    out
}

/// The settings a resumed run must share with the run it continues.
fn same_run(a: &TrainConfig, b: &TrainConfig) -> bool {
    let strip = |c: &TrainConfig| TrainConfig {
        eval_every: 0,
        eval_limit: 0,
        save_every: 0,
        device: String::new(),
        ..c.clone()
    };
    strip(a) == strip(b)
}

struct Trainer {
    cfg: TrainConfig,
    tm: TrainableModel,
    head: HeadKind,
    train: Vec<Encoded>,
    test: Vec<Encoded>,
    train_cache: Option<FeatureCache>,
    test_cache: Option<FeatureCache>,
}

impl Trainer {
    /// Evaluates on the test split (in fixed, length-sorted batches).
    fn evaluate(&self) -> Result<serde_json::Value> {
        let n = self.test.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.test[i].tokens()));
        let mut rows: Vec<Option<Vec<f32>>> = vec![None; n];
        let mut rejected: Vec<f32> = vec![0.0; n];
        let mut loss_sum = 0f64;
        for batch in order.chunks(self.cfg.batch_size.max(1) * 2) {
            let z = logits(&self.tm, &self.test, batch, self.test_cache.as_ref())?.detach();
            loss_sum += loss_of(self.cfg.loss, &z, &self.test, batch)?.to_scalar::<f32>()? as f64
                * batch.len() as f64;
            let z = z.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            for (r, &i) in batch.iter().enumerate() {
                rows[i] = Some(z[r].clone());
                if self.cfg.loss.is_pairwise() {
                    rejected[i] = z[batch.len() + r][0];
                }
            }
        }
        let rows: Vec<Vec<f32>> = rows.into_iter().flatten().collect();
        let loss = loss_sum / n.max(1) as f64;
        Ok(if self.cfg.loss.is_pairwise() {
            let chosen: Vec<f32> = rows.iter().map(|r| r[0]).collect();
            serde_json::to_value(metrics::pairs(&chosen, &rejected, loss))
        } else {
            let labels: Vec<u8> = self.test.iter().map(|e| e.label).collect();
            serde_json::to_value(metrics::pointwise(self.head, &rows, &labels, loss))
        }
        .unwrap_or_default())
    }

    /// Loss of one micro-batch (a graph to differentiate).
    fn micro_batch_loss(&self, idx: &[usize]) -> Result<Tensor> {
        let z = logits(&self.tm, &self.train, idx, self.train_cache.as_ref())?;
        loss_of(self.cfg.loss, &z, &self.train, idx)
    }
}

/// Trains a reward model as `run` says; see the crate docs.
pub fn train(run: &TrainRun) -> Result<TrainReport> {
    let cfg = run.config.clone();
    cfg.validate()?;
    let device = crate::config::device(&cfg.device)?;
    let pairs = cfg.loss.is_pairwise();
    let (train_path, test_path) = (run.data.join("train.jsonl"), run.data.join("test.jsonl"));
    for p in [&train_path, &test_path] {
        if !p.is_file() {
            return Err(TrainError::input(format!(
                "{}: missing (the data directory needs train.jsonl and test.jsonl)",
                p.display()
            )));
        }
    }
    let train_examples = read_split(&train_path, pairs, cfg.train_limit)?;
    let test_examples = read_split(&test_path, pairs, cfg.eval_limit)?;

    let resumed = state::open_run::<TrainerState>(&run.out, run.resume, &device)?;
    if run.resume && resumed.is_none() {
        eprintln!(
            "wildreward train: no checkpoint in {} yet, starting from scratch",
            run.out.display()
        );
    }
    if let Some(r) = &resumed {
        if !same_run(&r.state.config, &cfg) || r.state.train_examples != train_examples.len() {
            return Err(TrainError::input(format!(
                "{}: was written with other settings or data; resume with the same ones",
                r.dir.display()
            )));
        }
    }

    // Full and last-N training update backbone tensors, which stay f32 (trainable tensors are f32).
    let path = weights::resolve(&run.model.to_string_lossy())?;
    let dtype = match cfg.train {
        TrainMode::Head | TrainMode::Lora(_) if !device.is_cpu() => DType::BF16,
        _ => DType::F32,
    };
    let ckpt = weights::load(&path, &device, dtype)?;
    let lora_scale = match cfg.train {
        TrainMode::Lora(r) => cfg.lora_scale(r),
        _ => 1.0,
    };
    let tm = build(
        ckpt,
        cfg.train,
        cfg.loss,
        cfg.num_labels,
        lora_scale,
        cfg.seed,
    )?;
    let mut tm = tm;
    if cfg.dtype == "bf16" {
        if !device.is_cpu() {
            return Err(TrainError::input(
                "dtype bf16 is the CPU's mixed precision; on CUDA leave it f32 (head and LoRA \
                 training already run a bf16 backbone there)",
            ));
        }
        let kernel = wildreward_kernels::Bf16Kernel::for_requested_bf16()
            .map_err(|e| TrainError::input(format!("dtype bf16: {e}")))?;
        tm.model.use_bf16_training(Some(kernel));
    }
    let head = tm.model.head().kind();
    let empty = if cfg.empty_history == "inference" {
        EmptyHistory::Inference
    } else {
        EmptyHistory::Training
    };
    let max_length = cfg.max_length.min(tm.model.backbone().max_positions());
    let encoder = Encoder::new(tm.model.tokenizer(), max_length, empty);
    let train = encode_all(&encoder, &train_path, &train_examples, run.progress)?;
    let test = encode_all(&encoder, &test_path, &test_examples, run.progress)?;
    let truncated = train.iter().chain(&test).filter(|e| e.truncated).count();

    let features_t0 = Instant::now();
    let (train_cache, test_cache) = if caches_features(cfg.train) {
        let total = (train.len() + test.len()) as u64;
        let pb = bar(run.progress, total, "features {pos}/{len} {wide_bar} {eta}");
        let store = match &run.feature_cache {
            Some(dir) => Some(FeatureStore {
                dir: dir.clone(),
                model_identity: wildreward_types::files::identity(&path)
                    .map_err(|e| TrainError::io(&path, e))?,
            }),
            None => None,
        };
        let store = store.as_ref();
        let a = FeatureCache::build(&tm, cfg.train, &train, store, |n| pb.inc(n as u64))?;
        let b = FeatureCache::build(&tm, cfg.train, &test, store, |n| pb.inc(n as u64))?;
        pb.finish_and_clear();
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    let feature_seconds = features_t0.elapsed().as_secs_f64();
    let trainer = Trainer {
        cfg: cfg.clone(),
        tm,
        head,
        train,
        test,
        train_cache,
        test_cache,
    };

    let batches_per_epoch = trainer.train.len().div_ceil(cfg.batch_size);
    let steps_per_epoch = batches_per_epoch.div_ceil(cfg.grad_accum).max(1);
    let total = if cfg.max_steps > 0 {
        cfg.max_steps
    } else {
        cfg.epochs * steps_per_epoch
    };
    let warmup = (total as f64 * cfg.warmup_ratio).ceil() as usize;
    let mut opt = cfg.optimizer(trainer.tm.params.clone())?;
    let mut start = 0;
    if let Some(r) = &resumed {
        trainer.tm.restore(&r.params)?;
        opt.load_state(&r.optimizer, r.state.step as u64)?;
        start = r.state.step;
        eprintln!(
            "wildreward train: resumed from {} (step {start})",
            r.dir.display()
        );
    }
    let mut log = MetricsLog::open(&run.out, resumed.as_ref().map(|r| r.state.step))?;
    let trainable_parameters: usize = trainer.tm.params.iter().map(|p| p.var.elem_count()).sum();
    if resumed.is_none() {
        let initial_eval = trainer.evaluate()?;
        log.write(&json!({
            "type": "start", "step": 0, "total_steps": total, "warmup_steps": warmup,
            "train_examples": trainer.train.len(), "test_examples": trainer.test.len(),
            "truncated": truncated, "trainable_parameters": trainable_parameters,
            "head": head.name(), "config": cfg, "initial_eval": initial_eval,
            "cached_features": trainer.train_cache.is_some(), "feature_seconds": feature_seconds,
        }))?;
    }

    let lengths: Vec<usize> = trainer.train.iter().map(Encoded::tokens).collect();
    let mut plan: Option<(usize, Vec<Vec<usize>>)> = None;
    let pb = bar(
        run.progress,
        total as u64,
        "train {pos}/{len} {wide_bar} {msg} eta {eta}",
    );
    pb.set_position(start as u64);
    let (mut tokens_done, mut seconds) = (0usize, 0f64);
    let mut last_eval = serde_json::Value::Null;
    for step in start..total {
        let t0 = Instant::now();
        let lr = lr_at(step, total, warmup, cfg.lr);
        let mut micro = Vec::with_capacity(cfg.grad_accum);
        for a in 0..cfg.grad_accum {
            let m = step * cfg.grad_accum + a;
            let (epoch, at) = (m / batches_per_epoch, m % batches_per_epoch);
            if plan.as_ref().is_none_or(|(e, _)| *e != epoch) {
                plan = Some((
                    epoch,
                    epoch_batches(&lengths, cfg.batch_size, cfg.seed, epoch),
                ));
            }
            if let Some((_, batches)) = &plan {
                micro.push(batches[at].clone());
            }
        }
        let examples: usize = micro.iter().map(Vec::len).sum();
        let mut grads: HashMap<String, Tensor> = HashMap::new();
        let (mut loss_value, mut tokens) = (0f64, 0usize);
        for idx in &micro {
            let weight = idx.len() as f64 / examples as f64;
            let loss = trainer.micro_batch_loss(idx)?;
            let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(TrainError::Numeric(format!(
                    "step {}: the loss is {value}",
                    step + 1
                )));
            }
            loss_value += value * weight;
            tokens += idx.iter().map(|&i| lengths[i]).sum::<usize>();
            let store = (loss * weight)?.backward()?;
            accumulate(&mut grads, &store, &trainer.tm.params)?;
        }
        let grad_norm = clip_grad_norm(&mut grads, cfg.max_grad_norm)?;
        opt.step(&grads, lr)?;
        let dt = t0.elapsed().as_secs_f64();
        tokens_done += tokens;
        seconds += dt;
        let done = step + 1;
        log.write(&json!({
            "type": "train", "step": done, "epoch": (step * cfg.grad_accum) as f64 / batches_per_epoch as f64,
            "loss": loss_value, "lr": lr, "grad_norm": grad_norm, "examples": examples,
            "tokens": tokens, "tokens_per_second": tokens as f64 / dt.max(1e-9), "seconds": dt,
        }))?;
        pb.set_message(format!(
            "loss {loss_value:.4} {:.0} tok/s",
            tokens_done as f64 / seconds.max(1e-9)
        ));
        pb.inc(1);
        let eval_now = (cfg.eval_every > 0 && done % cfg.eval_every == 0) || done == total;
        if eval_now {
            last_eval = trainer.evaluate()?;
            let mut rec = json!({"type": "eval", "step": done});
            if let (Some(o), Some(m)) = (rec.as_object_mut(), last_eval.as_object()) {
                o.extend(m.clone());
            }
            log.write(&rec)?;
        }
        if (cfg.save_every > 0 && done % cfg.save_every == 0) || done == total {
            let (moments, _) = opt.state();
            state::save(
                &run.out,
                done,
                &TrainerState {
                    step: done,
                    config: cfg.clone(),
                    train_examples: trainer.train.len(),
                },
                &trainer.tm.snapshot(),
                &moments,
            )?;
        }
    }
    pb.finish_and_clear();
    if last_eval.is_null() {
        last_eval = trainer.evaluate()?;
    }
    let merged = trainer.tm.merged()?;
    wildreward_model::checkpoint::save_into(&merged, &run.out)?;
    let report = TrainReport {
        steps: total,
        resumed_from: resumed.as_ref().map(|r| r.state.step),
        train_examples: trainer.train.len(),
        test_examples: trainer.test.len(),
        truncated,
        trainable_parameters,
        feature_seconds,
        tokens: tokens_done,
        train_seconds: seconds,
        tokens_per_second: tokens_done as f64 / seconds.max(1e-9),
        final_eval: last_eval,
        out: run.out.clone(),
    };
    let path = run.out.join("train_report.json");
    let text = serde_json::to_vec_pretty(&report).unwrap_or_default();
    std::fs::write(&path, text).map_err(|e| TrainError::io(&path, e))?;
    Ok(report)
}
