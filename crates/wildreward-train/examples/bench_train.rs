//! Training-step throughput and memory on fixed token ids (see scripts/bench/train.sh, which runs the
//! PyTorch + transformers reference, scripts/bench/train_reference.py, on the same ids and weights and
//! writes the ratios into docs/benchmarks.md).
//!
//! ```text
//! bench_train convert <gguf> <out dir>
//! bench_train ids  <model> <wildfb.jsonl> <max_length> <out.jsonl>
//! bench_train step <model> <ids.jsonl> <head|full> <warmup> <steps> [cached_reps]
//! ```
//!
//! `convert` writes the GGUF, dequantised to f32, as an HF reward-model directory with a seeded
//! 3-logit ordinal head (what `wildreward convert` does), which both implementations then load.
//!
//! `ids` renders WildFB lines with the RM template and tokenises them exactly as `wildreward train`
//! does (the trainer's `Encoder`: history cut first), writing `{"ids": [...], "label": n}` per line, so
//! both implementations see identical token ids.
//!
//! `step` builds the trainable model with the trainer's own `params::build` and runs `warmup`
//! untimed then `steps` timed optimiser steps on one batch holding every line of the ids file:
//! forward, ordinal BCE, backward, gradient clipping at 1.0, AdamW (lr 1e-5, weight decay 0.01).
//! In `full` mode that is the whole step. In `head` mode a step is what the trainer does in its
//! first epoch — the frozen backbone's pooled features (`FeatureCache::build`, no gradient) then the
//! head step on them — and, separately, the cached step of later epochs (head only, `cached_reps`
//! times). Prints one JSON line; the peak RSS is the process's `VmHWM`.

use candle_core::{DType, Tensor};
use serde_json::json;
use std::collections::HashMap;
use std::error::Error;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;
use wildreward_model::{checkpoint, weights, HeadKind, LoadOptions, RewardModel};
use wildreward_train::data::{read_split, Encoded, Encoder};
use wildreward_train::forward::{logits, loss_of, FeatureCache};
use wildreward_train::optim::{clip_grad_norm, AdamW};
use wildreward_train::params::{build, TrainableModel};
use wildreward_train::{LossKind, TrainConfig, TrainMode};
use wildreward_types::EmptyHistory;

type Res<T> = std::result::Result<T, Box<dyn Error>>;

/// A `/proc/self/status` field in MiB (`VmRSS`, `VmHWM`); 0 where the file is missing.
fn proc_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds this process has used, all threads (`/proc/self/stat` utime + stime, at Linux's
/// USER_HZ of 100 ticks per second); with wall time it shows how much of the 2 cores a step got.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// The 1-minute load average (other work sharing the CPU).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn arg<'a>(args: &'a [String], i: usize, name: &str) -> Res<&'a str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("missing argument <{name}> (see the file's docs)").into())
}

/// `convert`: GGUF → HF directory (f32) with a seeded ordinal head of 3 logits.
fn convert(gguf: &Path, out: &Path) -> Res<()> {
    let opts = LoadOptions {
        head_if_missing: HeadKind::Ordinal,
        outputs_if_missing: 3,
        head_seed: TrainConfig::default().seed,
        ..LoadOptions::inference()
    };
    let m = RewardModel::load(gguf, &opts)?;
    checkpoint::save(&m, out)?;
    Ok(())
}

/// `ids`: WildFB lines → the trainer's token ids.
fn make_ids(model: &Path, input: &Path, max_length: usize, out: &Path) -> Res<()> {
    let ckpt = weights::load(model, &candle_core::Device::Cpu, DType::F32)?;
    let encoder = Encoder::new(&ckpt.tokenizer, max_length, EmptyHistory::Training);
    let examples = read_split(input, false, 0)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    for (i, e) in examples.iter().enumerate() {
        let enc = encoder
            .encode(e)
            .map_err(|err| format!("{}: example {}: {err}", input.display(), i + 1))?;
        let line = json!({"ids": enc.ids, "label": enc.label, "truncated": enc.truncated});
        writeln!(file, "{line}")?;
    }
    file.flush()?;
    Ok(())
}

fn read_ids(path: &Path) -> Res<Vec<Encoded>> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), n + 1);
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| format!("{at}: {e}"))?;
        let ids: Vec<u32> =
            serde_json::from_value(v["ids"].clone()).map_err(|e| format!("{at}: ids: {e}"))?;
        let label = v["label"]
            .as_u64()
            .filter(|l| (1..=4).contains(l))
            .ok_or_else(|| format!("{at}: `label` must be 1..4"))? as u8;
        out.push(Encoded {
            ids,
            rejected_ids: None,
            label,
            truncated: false,
        });
    }
    if out.is_empty() {
        return Err(format!("{}: no sequences", path.display()).into());
    }
    Ok(out)
}

/// Seconds spent in each part of one optimiser step, and its loss.
#[derive(Default, Clone, Copy)]
struct StepTimes {
    features: f64,
    forward: f64,
    backward: f64,
    optimizer: f64,
    cpu: f64,
    /// Resident memory with the forward graph alive, just before backward.
    rss_forward_mib: f64,
    loss: f64,
}

impl StepTimes {
    fn total(&self) -> f64 {
        self.features + self.forward + self.backward + self.optimizer
    }
}

/// One optimiser step over `idx`, as the trainer's loop does it (one micro-batch).
fn step(
    tm: &TrainableModel,
    opt: &mut AdamW,
    examples: &[Encoded],
    idx: &[usize],
    cache: Option<&FeatureCache>,
    lr: f64,
) -> Res<StepTimes> {
    let t0 = Instant::now();
    let loss = loss_of(
        LossKind::Ordinal,
        &logits(tm, examples, idx, cache)?,
        examples,
        idx,
    )?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let t1 = Instant::now();
    let rss_forward_mib = proc_mib("VmRSS");
    let store = loss.backward()?;
    // As in the trainer, the forward graph (every activation) and the gradient store are gone
    // before clipping and AdamW: only the parameters' gradients are kept.
    drop(loss);
    let mut grads: HashMap<String, Tensor> = HashMap::new();
    for p in &tm.params {
        let g = store
            .get(p.var.as_tensor())
            .ok_or_else(|| format!("no gradient for {}", p.name))?;
        grads.insert(p.name.clone(), g.to_dtype(DType::F32)?);
    }
    drop(store);
    let t2 = Instant::now();
    clip_grad_norm(&mut grads, 1.0)?;
    opt.step(&grads, lr)?;
    Ok(StepTimes {
        features: 0.0,
        forward: (t1 - t0).as_secs_f64(),
        backward: (t2 - t1).as_secs_f64(),
        optimizer: t2.elapsed().as_secs_f64(),
        cpu: 0.0,
        rss_forward_mib,
        loss: value,
    })
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn summary(times: &[StepTimes], tokens: usize) -> serde_json::Value {
    let pick = |f: fn(&StepTimes) -> f64| mean(&times.iter().map(f).collect::<Vec<_>>());
    let secs = pick(StepTimes::total);
    let best = times
        .iter()
        .map(StepTimes::total)
        .fold(f64::INFINITY, f64::min);
    json!({
        "steps": times.len(),
        "step_seconds": secs,
        "best_step_seconds": best,
        "step_seconds_each": times.iter().map(StepTimes::total).collect::<Vec<_>>(),
        "tokens_per_s": tokens as f64 / secs,
        "best_tokens_per_s": tokens as f64 / best,
        "cpu_seconds": pick(|t| t.cpu),
        "cores_used": pick(|t| t.cpu) / secs,
        "features_seconds": pick(|t| t.features),
        "forward_seconds": pick(|t| t.forward),
        "backward_seconds": pick(|t| t.backward),
        "optimizer_seconds": pick(|t| t.optimizer),
        "rss_after_forward_mib": times.iter().map(|t| t.rss_forward_mib).fold(0.0, f64::max),
        "losses": times.iter().map(|t| t.loss).collect::<Vec<_>>(),
    })
}

fn run_steps(
    model: &Path,
    ids: &Path,
    mode: TrainMode,
    warmup: usize,
    steps: usize,
    reps: usize,
) -> Res<()> {
    let t_load = Instant::now();
    let defaults = TrainConfig::default();
    let examples = read_ids(ids)?;
    let ckpt = weights::load(model, &candle_core::Device::Cpu, DType::F32)?;
    let mut tm = build(ckpt, mode, LossKind::Ordinal, 3, 1.0, defaults.seed)?;
    // DTYPE=bf16: the projections' products in mixed precision (as `wildreward train --dtype bf16`).
    let dtype = std::env::var("DTYPE").unwrap_or_else(|_| "f32".into());
    let kernel = match dtype.as_str() {
        "f32" => None,
        "bf16" => Some(wildreward_kernels::Bf16Kernel::detect()?),
        other => return Err(format!("DTYPE={other}: expected f32 or bf16").into()),
    };
    tm.model.use_bf16_training(kernel);
    let load_seconds = t_load.elapsed().as_secs_f64();
    let rss_after_load = proc_mib("VmRSS");
    let mut opt = defaults.optimizer(tm.params.clone())?;
    let lr = defaults.lr;
    let idx: Vec<usize> = (0..examples.len()).collect();
    let tokens: usize = examples.iter().map(Encoded::tokens).sum();
    let padded = examples.len() * examples.iter().map(Encoded::tokens).max().unwrap_or(0);
    let mut timed = Vec::with_capacity(steps);
    let mut cached = Vec::new();
    let load_before = load_average();
    for i in 0..warmup + steps {
        let cpu0 = cpu_seconds();
        let times = if mode == TrainMode::Head {
            // First epoch: the frozen backbone's features (no gradient), then the head step.
            let t = Instant::now();
            let cache = FeatureCache::build(&tm, TrainMode::Head, &examples, None, |_| {})?;
            let features = t.elapsed().as_secs_f64();
            let s = step(&tm, &mut opt, &examples, &idx, Some(&cache), lr)?;
            let first_epoch = StepTimes {
                features,
                cpu: cpu_seconds() - cpu0,
                ..s
            };
            if i + 1 == warmup + steps {
                for _ in 0..reps {
                    let c0 = cpu_seconds();
                    let s = step(&tm, &mut opt, &examples, &idx, Some(&cache), lr)?;
                    cached.push(StepTimes {
                        cpu: cpu_seconds() - c0,
                        ..s
                    });
                }
            }
            first_epoch
        } else {
            let s = step(&tm, &mut opt, &examples, &idx, None, lr)?;
            StepTimes {
                cpu: cpu_seconds() - cpu0,
                ..s
            }
        };
        eprintln!(
            "bench_train {}: step {}/{} {:.2} s (loss {:.5}){}",
            if mode == TrainMode::Head {
                "head"
            } else {
                "full"
            },
            i + 1,
            warmup + steps,
            times.total(),
            times.loss,
            if i < warmup { " warm-up" } else { "" }
        );
        if i >= warmup {
            timed.push(times);
        }
    }
    let mut report = json!({
        "impl": "rust-candle",
        "mode": if mode == TrainMode::Head { "head" } else { "full" },
        "dtype": dtype,
        "matmul": kernel.map_or("f32", |k| k.name()),
        "sequences": examples.len(),
        "tokens": tokens,
        "padded_tokens": padded,
        "trainable_parameters": tm.params.iter().map(|p| p.var.elem_count()).sum::<usize>(),
        "warmup_steps": warmup,
        "load_seconds": load_seconds,
        "rss_after_load_mib": rss_after_load,
        "peak_rss_mib": proc_mib("VmHWM"),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "step": summary(&timed, tokens),
    });
    if !cached.is_empty() {
        report["cached_step"] = summary(&cached, tokens);
    }
    println!("{report}");
    Ok(())
}

fn main() -> Res<()> {
    wildreward_kernels::init_process();
    let args: Vec<String> = std::env::args().collect();
    match arg(&args, 1, "convert|ids|step")? {
        "convert" => convert(
            Path::new(arg(&args, 2, "gguf")?),
            Path::new(arg(&args, 3, "out dir")?),
        ),
        "ids" => make_ids(
            Path::new(arg(&args, 2, "model")?),
            Path::new(arg(&args, 3, "wildfb.jsonl")?),
            arg(&args, 4, "max_length")?.parse()?,
            Path::new(arg(&args, 5, "out.jsonl")?),
        ),
        "step" => {
            let mode = match arg(&args, 4, "head|full")? {
                "head" => TrainMode::Head,
                "full" => TrainMode::Full,
                other => return Err(format!("mode `{other}`: expected head or full").into()),
            };
            run_steps(
                Path::new(arg(&args, 2, "model")?),
                Path::new(arg(&args, 3, "ids.jsonl")?),
                mode,
                arg(&args, 5, "warmup")?.parse()?,
                arg(&args, 6, "steps")?.parse()?,
                args.get(7).map_or(Ok(100), |s| s.parse())?,
            )
        }
        other => Err(format!("command `{other}`: expected convert, ids or step").into()),
    }
}
