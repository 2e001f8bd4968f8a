//! Rollout and DPO-step speed of `online-dpo` on one prompt (see scripts/bench/dpo.sh, which runs
//! transformers `generate` and a PyTorch DPO step on the same weights and token ids).
//!
//! `cargo run -p online-dpo --example bench_dpo -- <policy> <prompt text> <pair-out.json> [n] [new] [steps]`
//! samples `n` answers of exactly `new` tokens (no stop token, temperature 1, top-p 0.9) with the KV
//! cache, writes the prompt ids and the first two answers as a DPO pair to `pair-out.json`, then times
//! full-weight DPO steps (policy and frozen reference forward, backward, clipping, AdamW) on that pair.
//! Prints one JSON line.

use candle_core::{DType, Device};
use online_dpo::rollout::Sampler;
use online_dpo::DpoConfig;
use std::time::Instant;
use wildreward_model::generate::{generate, SamplingParams};
use wildreward_model::{weights, LoadOptions, RewardModel};
use wildreward_train::config::TrainMode;
use wildreward_train::params::build_policy;

fn main() -> anyhow::Result<()> {
    wildreward_kernels::init_process();
    let args: Vec<String> = std::env::args().collect();
    let usage = "bench_dpo <policy> <prompt> <pair-out.json> [n] [new] [steps]";
    let policy_path = args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?;
    let prompt = args.get(2).ok_or_else(|| anyhow::anyhow!(usage))?;
    let pair_out = args.get(3).ok_or_else(|| anyhow::anyhow!(usage))?;
    let n: usize = args.get(4).map_or(Ok(8), |s| s.parse())?;
    let new: usize = args.get(5).map_or(Ok(128), |s| s.parse())?;
    let steps: usize = args.get(6).map_or(Ok(3), |s| s.parse())?;

    let path = weights::resolve(policy_path)?;
    let ckpt = weights::load(&path, &Device::Cpu, DType::F32)?;
    // DTYPE=bf16: the rollout's projections and LM head on the bf16 kernel (bf16 weights: half the
    // bytes each decode step streams); the DPO step stays f32.
    let dtype = std::env::var("DTYPE").unwrap_or_else(|_| "f32".into());
    let mut generator = RewardModel::from_checkpoint(ckpt.clone(), &LoadOptions::inference())?;
    let matmul = match dtype.as_str() {
        "f32" => "f32".to_string(),
        "bf16" => {
            let kernel = wildreward_kernels::Bf16Kernel::detect().map_err(anyhow::Error::msg)?;
            generator.use_bf16_matmul(kernel)?;
            kernel.name().to_string()
        }
        other => anyhow::bail!("DTYPE={other}: expected f32 or bf16"),
    };
    let reference = RewardModel::from_checkpoint(ckpt.clone(), &LoadOptions::inference())?;
    let sampler = Sampler::new(&reference, None)?;
    let prompt_ids = sampler.prompt_ids(prompt)?;
    let forward = generator.forward();
    let params = SamplingParams {
        max_new_tokens: new,
        temperature: 1.0,
        top_p: 0.9,
        seed: 0,
        stop_tokens: vec![],
    };
    // Warm-up (allocations, thread pool), then the timed rollout.
    generate(
        forward,
        &prompt_ids,
        n,
        &SamplingParams {
            max_new_tokens: 4,
            ..params.clone()
        },
    )?;
    let t = Instant::now();
    let answers = generate(forward, &prompt_ids, n, &params)?;
    let gen_seconds = t.elapsed().as_secs_f64();
    let gen_tokens: usize = answers.iter().map(|a| a.tokens.len()).sum();
    let (chosen, rejected) = (answers[0].tokens.clone(), answers[1].tokens.clone());
    std::fs::write(
        pair_out,
        serde_json::to_vec(&serde_json::json!({
            "prompt": prompt_ids, "chosen": chosen, "rejected": rejected,
        }))?,
    )?;

    let cfg = DpoConfig {
        train: TrainMode::Full,
        ..DpoConfig::default()
    };
    let policy = build_policy(ckpt, TrainMode::Full, 1.0, 0)?;
    let mut opt = cfg.optimizer(policy.params.clone())?;
    let pairs = vec![(prompt_ids.clone(), chosen, rejected)];
    online_dpo::run::update(&policy, &reference, &mut opt, &cfg, cfg.lr, &pairs)?;
    let t = Instant::now();
    for _ in 0..steps {
        online_dpo::run::update(&policy, &reference, &mut opt, &cfg, cfg.lr, &pairs)?;
    }
    let step_seconds = t.elapsed().as_secs_f64() / steps as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "rust-candle", "dtype": dtype, "matmul": matmul, "n": n, "new_tokens": new, "prompt_tokens": prompt_ids.len(),
            "gen_seconds": gen_seconds, "gen_tokens": gen_tokens,
            "gen_tokens_per_s": gen_tokens as f64 / gen_seconds,
            "dpo_step_seconds": step_seconds, "dpo_steps": steps,
        })
    );
    Ok(())
}
