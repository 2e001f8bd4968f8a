//! Scorer throughput on fixed token-id inputs (see scripts/bench/score.sh, which runs the PyTorch +
//! transformers reference on the same ids and writes the ratios into docs/benchmarks.md).
//!
//! `cargo run --example bench_score -- <model> <inputs.jsonl> [max_batch_tokens]` prints one JSON line.
//! Each input line is `{"ids": [u32…]}`. The inputs are scored `REPEATS` times (default 3; the
//! reference script takes the same setting): the figures are from the fastest pass, the median pass
//! is reported beside them. Also measures this CPU's f32 matmul peak, likewise the best of several
//! timings: the faster of candle's matmul and this crate's own (`wildreward_kernels::matmul_f32`, AVX-512 where
//! the CPU has it). `DTYPE=bf16` scores with bf16 projections (the kernels crate's product; the peak is
//! then that product's, best of several 1024³ timings).

mod common;

use candle_core::{Device, Tensor};
use std::time::Instant;
use wildreward_model::{LoadOptions, Precision, RewardModel, Scorer, ScorerOptions};

/// The best of several timings of a 1024³ f32 matmul: the peak is what the CPU can do, so a timing
/// slowed by other work on the machine should not lower it.
fn matmul_peak_gflops() -> anyhow::Result<f64> {
    let mut best = 0f64;
    for _ in 0..5 {
        best = best.max(matmul_gflops()?);
    }
    Ok(best)
}

fn matmul_gflops() -> anyhow::Result<f64> {
    let n = 1024;
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let (av, bv) = (
        a.flatten_all()?.to_vec1::<f32>()?,
        b.flatten_all()?.to_vec1::<f32>()?,
    );
    let reps = 10;
    let rate = |run: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        run()?;
        let t = Instant::now();
        for _ in 0..reps {
            run()?;
        }
        Ok(2.0 * (n as f64).powi(3) * reps as f64 / t.elapsed().as_secs_f64() / 1e9)
    };
    let candle = rate(&mut || {
        let _: () = drop(a.matmul(&b)?);
        Ok(())
    })?;
    let own = rate(&mut || {
        drop(wildreward_kernels::matmul_f32(&av, &bv, (n, n, n)));
        Ok(())
    })?;
    Ok(candle.max(own))
}

/// The bf16 product's best rate on 1024³ (weights packed once, activations rounded per call).
fn bf16_peak_gflops(kernel: wildreward_kernels::Bf16Kernel) -> anyhow::Result<f64> {
    let n = 1024;
    let x: Vec<f32> = (0..n * n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let w = wildreward_kernels::PackedBf16::from_rows(&x, n, n).map_err(anyhow::Error::msg)?;
    let mut out = vec![0f32; n * n];
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        wildreward_kernels::matmul_bf16(kernel, &x, n, &w, &mut out, false)
            .map_err(anyhow::Error::msg)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

fn main() -> anyhow::Result<()> {
    wildreward_kernels::init_process();
    let args: Vec<String> = std::env::args().collect();
    let (model, inputs) = (
        args.get(1).ok_or_else(|| anyhow::anyhow!("model"))?,
        &args[2],
    );
    let budget: usize = args.get(3).map_or(Ok(8192), |s| s.parse())?;
    let ids = common::read_ids(inputs)?;
    let precision: Precision = std::env::var("DTYPE")
        .unwrap_or_else(|_| "f32".into())
        .parse()
        .map_err(anyhow::Error::msg)?;
    let opts = LoadOptions {
        dtype: Some(precision.check(&Device::Cpu).map_err(anyhow::Error::msg)?),
        ..LoadOptions::inference()
    };
    let m = RewardModel::load(std::path::Path::new(model), &opts)?;
    let matmul = m.forward().matmul_name();
    let peak_of = || -> anyhow::Result<f64> {
        match wildreward_kernels::Bf16Kernel::named(matmul) {
            Ok(kernel) => bf16_peak_gflops(kernel),
            Err(_) => matmul_peak_gflops(),
        }
    };
    let cfg = m.config().clone();
    let scorer = Scorer::new(
        m,
        ScorerOptions {
            max_batch_tokens: budget,
            max_batch_size: 64,
            ..ScorerOptions::default()
        },
    );
    let _warm = scorer.score_ids(&ids[..ids.len().min(2)])?;
    let peak_before = peak_of()?;
    let (scored, passes) = common::passes(&scorer, &ids, common::repeats()?)?;
    let (secs, median) = (passes[0], passes[passes.len() / 2]);
    let tokens: usize = ids.iter().map(Vec::len).sum();
    // Useful FLOPs: the projections and MLP over real tokens, plus causal attention (QKᵀ and AV).
    let (d, l, i) = (
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.intermediate_size,
    );
    let (q, kv) = (
        cfg.num_attention_heads * cfg.head_dim(),
        cfg.num_kv_heads() * cfg.head_dim(),
    );
    let per_token = 2.0 * (l * (d * q + 2 * d * kv + q * d + 3 * d * i)) as f64;
    let attn: f64 = ids
        .iter()
        .map(|s| 2.0 * (l * s.len() * s.len() * q) as f64)
        .sum();
    let flops = per_token * tokens as f64 + attn;
    let peak = peak_of()?.max(peak_before);
    println!(
        "{}",
        serde_json::json!({
            "impl": "rust-candle", "matmul": matmul, "texts": ids.len(), "tokens": tokens, "seconds": secs,
            "passes": passes.len(), "seconds_median": median,
            "fraction_of_peak_median": flops / median / 1e9 / peak,
            "texts_per_s": ids.len() as f64 / secs, "tokens_per_s": tokens as f64 / secs,
            "useful_gflops": flops / secs / 1e9, "matmul_peak_gflops": peak,
            "fraction_of_peak": flops / secs / 1e9 / peak,
            "mean_reward": scored.iter().map(|s| s.reward as f64).sum::<f64>() / scored.len() as f64,
        })
    );
    Ok(())
}
