//! Scoring straight from a GGUF's quantized weights (`LoadOptions::quantized`: candle's quantized
//! matmul in the padded forward) against the dequantised f32 weights (the packed forward), on the
//! same token ids: texts/s of each and the reward difference (see scripts/bench/quantized.sh). A
//! third path re-quantizes the weights to Q8_0, the format candle's x86 quantized matmul has SIMD
//! code for (its Q4_1 dot product is scalar).
//!
//! `cargo run --example bench_quantized -- <model.gguf> <inputs.jsonl>` prints one JSON line. Each
//! input line is `{"ids": [u32…]}`; each path scores them `REPEATS` times (default 3) and reports its
//! fastest pass. Both models get the same seeded head.

mod common;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use std::path::Path;
use std::sync::Arc;
use wildreward_model::{LoadOptions, RewardModel, Scorer, ScorerOptions};

/// The rewards of `ids` and the fastest of `repeats` passes, in seconds, after a warm-up.
fn timed(scorer: &Scorer, ids: &[Vec<u32>], repeats: usize) -> anyhow::Result<(Vec<f32>, f64)> {
    scorer.score_ids(&ids[..ids.len().min(2)])?;
    let (scored, secs) = common::passes(scorer, ids, repeats)?;
    Ok((scored.iter().map(|s| s.reward).collect(), secs[0]))
}

fn main() -> anyhow::Result<()> {
    wildreward_kernels::init_process();
    let args: Vec<String> = std::env::args().collect();
    let (Some(gguf), Some(inputs)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: bench_quantized <model.gguf> <inputs.jsonl>");
    };
    let repeats = common::repeats()?;
    let ids = common::read_ids(inputs)?;
    let tokens: usize = ids.iter().map(Vec::len).sum();
    let opts = LoadOptions::inference();
    let exact = Scorer::new(
        RewardModel::load(Path::new(gguf), &opts)?,
        ScorerOptions::default(),
    );
    let (f32_rewards, f32_secs) = timed(&exact, &ids, repeats)?;
    drop(exact);
    let quantized = Scorer::new(
        RewardModel::load(
            Path::new(gguf),
            &LoadOptions {
                quantized: true,
                ..opts.clone()
            },
        )?,
        ScorerOptions::default(),
    );
    let (q_rewards, q_secs) = timed(&quantized, &ids, repeats)?;
    drop(quantized);
    let mut q8 = RewardModel::load(Path::new(gguf), &opts)?;
    let mut weights =
        wildreward_model::weights::load_quantized_projections(Path::new(gguf), &Device::Cpu)?;
    for w in weights.values_mut() {
        *w = Arc::new(QTensor::quantize(
            &w.dequantize(&Device::Cpu)?,
            GgmlDType::Q8_0,
        )?);
    }
    q8.use_quantized(&weights)?;
    let (q8_rewards, q8_secs) = timed(&Scorer::new(q8, ScorerOptions::default()), &ids, repeats)?;
    let diffs = |other: &[f32]| -> (f64, f64) {
        let d: Vec<f64> = f32_rewards
            .iter()
            .zip(other)
            .map(|(a, b)| (a - b).abs() as f64)
            .collect();
        let max = d.iter().copied().fold(0.0, f64::max);
        (max, d.iter().sum::<f64>() / d.len().max(1) as f64)
    };
    let ((q_max, q_mean), (q8_max, q8_mean)) = (diffs(&q_rewards), diffs(&q8_rewards));
    let mean = f32_rewards.iter().map(|&r| r as f64).sum::<f64>() / ids.len().max(1) as f64;
    let spread = f32_rewards
        .iter()
        .map(|&r| (r as f64 - mean).powi(2))
        .sum::<f64>()
        / ids.len().max(1) as f64;
    println!(
        "{}",
        serde_json::json!({
            "texts": ids.len(), "tokens": tokens, "passes": repeats,
            "f32_packed_texts_per_s": ids.len() as f64 / f32_secs,
            "quantized_texts_per_s": ids.len() as f64 / q_secs,
            "quantized_max_abs_reward_diff": q_max, "quantized_mean_abs_reward_diff": q_mean,
            "q8_0_texts_per_s": ids.len() as f64 / q8_secs,
            "q8_0_max_abs_reward_diff": q8_max, "q8_0_mean_abs_reward_diff": q8_mean,
            "reward_std_f32": spread.sqrt(),
        })
    );
    Ok(())
}
