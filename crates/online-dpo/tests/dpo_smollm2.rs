//! Online DPO on the real SmolLM2-135M-Instruct with a live scoring server on loopback (the client
//! crate's test server: axum + the real `Scorer`, with fault injection).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device};
use online_dpo::dpo::answer_logprobs;
use online_dpo::pairing::{best_vs_worst, Sample};
use online_dpo::rewards::RewardSource;
use online_dpo::rollout::Sampler;
use online_dpo::run::update;
use online_dpo::{DpoConfig, DpoRun};
use std::path::{Path, PathBuf};
use wildreward_client::test_server::{Fault, FaultRule, TestServer};
use wildreward_model::assets::{asset, SMOLLM2_GGUF};
use wildreward_model::{weights, LoadOptions, RewardModel, Scorer, ScorerOptions};
use wildreward_train::params::build_policy;
use wildreward_train::TrainMode;
use wildreward_types::EmptyHistory;

fn gguf() -> PathBuf {
    asset(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        SMOLLM2_GGUF,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn server() -> TestServer {
    let rm = RewardModel::load(&gguf(), &LoadOptions::inference()).unwrap();
    let opts = ScorerOptions {
        max_length: 512,
        ..ScorerOptions::default()
    };
    TestServer::start(Scorer::new(rm, opts), None).unwrap()
}

#[test]
fn one_step_raises_the_margin_and_leaves_the_reference_alone() {
    let srv = server();
    let ckpt = weights::load(&gguf(), &Device::Cpu, DType::F32).unwrap();
    let reference = RewardModel::from_checkpoint(ckpt.clone(), &LoadOptions::inference()).unwrap();
    let ref_before = reference.tensors()["model.layers.29.mlp.down_proj.weight"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let policy = build_policy(ckpt, TrainMode::Full, 1.0, 0).unwrap();
    let sampler = Sampler::new(&policy.model, None).unwrap();
    let prompt = "Name a colour.";
    let ids = sampler.prompt_ids(prompt).unwrap();
    let answers = sampler.sample(&ids, 4, 12, 1.0, 1.0, 7).unwrap();
    let rewards = RewardSource::new(
        &format!("{}/get_reward", srv.url()),
        32,
        2,
        60.0,
        1,
        None,
        EmptyHistory::Training,
    )
    .unwrap();
    let texts: Vec<&str> = answers.iter().map(|a| a.text.as_str()).collect();
    let scored = rewards.score(&[prompt; 4], &texts).unwrap();
    assert_eq!(scored.failed, 0);
    let samples: Vec<Sample> = scored
        .values
        .iter()
        .enumerate()
        .map(|(i, r)| Sample {
            prompt_id: "p".into(),
            index: i,
            reward: *r,
        })
        .collect();
    let (pairs, _) = best_vs_worst(&samples, 1e-6);
    assert_eq!(pairs.len(), 1, "rewards: {:?}", scored.values);
    let (c, r) = (
        &answers[pairs[0].chosen].tokens,
        &answers[pairs[0].rejected].tokens,
    );
    let margin = |m: &RewardModel| -> f64 {
        let lp = answer_logprobs(m.backbone(), &ids, &[c, r], m.pad_id())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let rf = answer_logprobs(reference.backbone(), &ids, &[c, r], 2)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        (lp[0] - rf[0]) as f64 - (lp[1] - rf[1]) as f64
    };
    let before = margin(&policy.model);
    assert!(
        before.abs() < 1e-3,
        "policy starts equal to the reference: {before}"
    );
    let cfg = DpoConfig::default();
    let mut opt = cfg.optimizer(policy.params.clone()).unwrap();
    let stats = update(
        &policy,
        &reference,
        &mut opt,
        &cfg,
        1e-6,
        &[(ids.clone(), c.clone(), r.clone())],
    )
    .unwrap();
    assert!(
        (stats.loss - std::f64::consts::LN_2).abs() < 1e-3,
        "{}",
        stats.loss
    );
    let after = margin(&policy.model);
    assert!(after > before + 1e-3, "margin {before} -> {after}");
    let ref_after = reference.tensors()["model.layers.29.mlp.down_proj.weight"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(ref_before, ref_after, "the reference changed");
}

fn prompts_file(dir: &Path, prompts: &[&str]) -> PathBuf {
    let p = dir.join("prompts.jsonl");
    let lines: String = prompts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "{}\n",
                serde_json::json!({"id": format!("q{i}"), "prompt": t})
            )
        })
        .collect();
    std::fs::write(&p, lines).unwrap();
    p
}

fn tiny(steps: usize) -> DpoConfig {
    DpoConfig {
        n: 2,
        max_new_tokens: 6,
        steps,
        prompts_per_step: 2,
        train: TrainMode::LastN(1),
        lr: 1e-5,
        reward_retries: 0,
        reward_chunk_size: 2,
        reward_timeout_s: 30.0,
        max_skipped_steps: 1,
        ..DpoConfig::default()
    }
}

#[test]
fn failed_rewards_are_dropped_and_counted_never_replaced() {
    let srv = server();
    // Every request holding this prompt's answers fails with 500.
    srv.add_fault(FaultRule {
        marker: "BROKEN".into(),
        fault: Fault::Status(500),
        times: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let prompts = prompts_file(dir.path(), &["Say hello.", "BROKEN: say bye."]);
    let out = dir.path().join("run");
    let report = online_dpo::run(&DpoRun {
        policy: gguf(),
        prompts,
        endpoint: format!("{}/get_reward", srv.url()),
        out: out.clone(),
        config: tiny(2),
        resume: false,
        api_key: None,
        progress: false,
    })
    .unwrap();
    // Each step answers both prompts twice; the BROKEN prompt's two answers are dropped.
    assert_eq!(report.dropped_answers, 4, "{report:?}");
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<&serde_json::Value> = records.iter().filter(|v| v["type"] == "train").collect();
    assert_eq!(steps.len(), 2);
    for v in steps {
        assert_eq!(v["dropped"], 2, "{v}");
        assert!(v["pairs"].as_u64().unwrap() <= 1, "{v}");
    }
    assert!(out.join("policy/config.json").exists());
    let saved = RewardModel::load(&out.join("policy"), &LoadOptions::inference()).unwrap();
    assert!(saved.config().architectures[0].ends_with("ForCausalLM"));

    // With the server gone, the run stops with a clear message instead of inventing rewards.
    let url = format!("{}/get_reward", srv.url());
    drop(srv);
    let err = online_dpo::run(&DpoRun {
        policy: gguf(),
        prompts: prompts_file(dir.path(), &["Say hello."]),
        endpoint: url,
        out: dir.path().join("down"),
        config: tiny(5),
        resume: false,
        api_key: None,
        progress: false,
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("without a usable pair") && err.contains("reward error"),
        "{err}"
    );
}

/// RM scores of `per_prompt` answers sampled from the policy at `path` for each prompt, with
/// sampling seeds the run never uses.
fn sampled_rewards(
    path: &Path,
    prompts: &[&str],
    per_prompt: usize,
    max_new_tokens: usize,
    rewards: &RewardSource,
) -> Vec<f64> {
    let model = RewardModel::load(path, &LoadOptions::inference()).unwrap();
    let sampler = Sampler::new(&model, None).unwrap();
    let mut all = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let ids = sampler.prompt_ids(p).unwrap();
        let answers = sampler
            .sample(&ids, per_prompt, max_new_tokens, 1.0, 1.0, 9_000 + i as u64)
            .unwrap();
        let texts: Vec<&str> = answers.iter().map(|a| a.text.as_str()).collect();
        let scored = rewards.score(&vec![*p; texts.len()], &texts).unwrap();
        assert_eq!(scored.failed, 0);
        all.extend(scored.values.iter().map(|r| r.unwrap() as f64));
    }
    all
}

fn mean_and_variance(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

/// Five DPO steps on one prompt (8 answers, two best-vs-worst pairs per step, the last 3 layers at a
/// high learning rate) make the policy's samples score higher with the RM that ranked them: the mean
/// reward of 32 fresh samples rises by more than twice its standard error. The RM is SmolLM2 with a
/// seeded head; its preferences mean nothing, but they are consistent, which is all DPO needs.
#[test]
fn a_short_run_raises_the_mean_reward_of_samples() {
    let srv = server();
    let endpoint = format!("{}/get_reward", srv.url());
    let rewards =
        RewardSource::new(&endpoint, 32, 2, 60.0, 1, None, EmptyHistory::Training).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prompts = ["Name a colour."];
    let max_new_tokens = 8;
    let report = online_dpo::run(&DpoRun {
        policy: gguf(),
        prompts: prompts_file(dir.path(), &prompts),
        endpoint,
        out: dir.path().join("run"),
        config: DpoConfig {
            n: 8,
            max_new_tokens,
            steps: 5,
            prompts_per_step: 2,
            train: TrainMode::LastN(3),
            lr: 3e-4,
            ..DpoConfig::default()
        },
        resume: false,
        api_key: None,
        progress: false,
    })
    .unwrap();
    assert_eq!((report.skipped_steps, report.dropped_answers), (0, 0));
    let (before, var_before) = mean_and_variance(&sampled_rewards(
        &gguf(),
        &prompts,
        32,
        max_new_tokens,
        &rewards,
    ));
    let (after, var_after) = mean_and_variance(&sampled_rewards(
        &report.policy_dir,
        &prompts,
        32,
        max_new_tokens,
        &rewards,
    ));
    let se = ((var_before + var_after) / 32.0).sqrt();
    eprintln!("mean sampled reward {before:.4} -> {after:.4}, standard error {se:.4}");
    assert!(
        after - before > 2.0 * se,
        "mean sampled reward {before:.4} -> {after:.4} (standard error of the difference {se:.4})"
    );
}

/// bf16 rollouts sample from bf16 copies of the weights: they do not see an update until
/// `refresh`, and after it they sample exactly what a sampler built on the updated weights does.
/// LoRA with bf16 rollouts is refused with the reason.
#[test]
fn bf16_rollouts_follow_the_weights_after_refresh() {
    use wildreward_kernels::Bf16Kernel;
    let kernel = Bf16Kernel::best();
    if kernel == Bf16Kernel::Portable {
        eprintln!("SKIPPED: this CPU lacks AVX512_BF16 and AMX; bf16 rollouts are NOT tested here");
        return;
    }
    let path = weights::resolve(&gguf().to_string_lossy()).unwrap();
    let ckpt = weights::load(&path, &Device::Cpu, DType::F32).unwrap();
    let policy = build_policy(ckpt, TrainMode::Full, 1.0, 0).unwrap();
    let bf16_sampler = || {
        let mut s = Sampler::new(&policy.model, None).unwrap();
        s.use_bf16(kernel).unwrap();
        s
    };
    let mut sampler = bf16_sampler();
    let ids = sampler
        .prompt_ids("What is the capital of France?")
        .unwrap();
    let greedy = |s: &Sampler| s.sample(&ids, 2, 8, 0.0, 1.0, 0).unwrap()[0].tokens.clone();
    let before = greedy(&sampler);
    // An "update": every MLP output projection zeroed in place.
    for p in policy
        .params
        .iter()
        .filter(|p| p.name.contains("mlp.down_proj"))
    {
        p.var.set(&p.var.as_tensor().zeros_like().unwrap()).unwrap();
    }
    assert_eq!(
        greedy(&sampler),
        before,
        "stale bf16 copies until refreshed"
    );
    sampler.refresh().unwrap();
    let fresh = greedy(&bf16_sampler());
    assert_ne!(fresh, before, "the update changes the greedy answer");
    assert_eq!(
        greedy(&sampler),
        fresh,
        "refreshed copies are the new weights"
    );

    let lora = DpoConfig {
        rollout_dtype: "bf16".into(),
        train: TrainMode::Lora(8),
        ..DpoConfig::default()
    };
    let err = lora.validate().unwrap_err().to_string();
    assert!(
        err.contains("rollout_dtype bf16") && err.contains("lora"),
        "{err}"
    );
}
