//! `online-dpo run`: sample → reward → pair within each prompt → DPO update, with metrics,
//! resumable checkpoints and the final policy saved in the HF causal-LM layout.

use crate::config::DpoConfig;
use crate::dpo::{answer_logprobs, pair_loss};
use crate::error::{DpoError, Result};
use crate::eval::write_json;
use crate::pairing::{best_vs_worst, Sample};
use crate::prompts::{read_prompts, Prompt};
use crate::rewards::RewardSource;
use crate::rollout::{Answer, Sampler};
use candle_core::{DType, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;
use wildreward_kernels::Bf16Kernel;
use wildreward_model::checkpoint::{save_as, Layout};
use wildreward_model::{weights, LoadOptions, RewardModel};
use wildreward_train::optim::{accumulate, clip_grad_norm, AdamW};
use wildreward_train::params::{build_policy, TrainableModel};
use wildreward_train::state::{self, MetricsLog};
use wildreward_train::TrainMode;
use wildreward_types::template::EmptyHistory;

/// One run's inputs.
#[derive(Debug, Clone)]
pub struct DpoRun {
    /// The initial policy (also the frozen reference).
    pub policy: PathBuf,
    /// Prompts JSONL.
    pub prompts: PathBuf,
    /// `/get_reward` URL.
    pub endpoint: String,
    /// Output directory.
    pub out: PathBuf,
    /// Settings.
    pub config: DpoConfig,
    /// Continue from the newest checkpoint in `out`.
    pub resume: bool,
    /// Bearer token for the endpoint.
    pub api_key: Option<String>,
    /// Draw a progress bar.
    pub progress: bool,
}

/// What `trainer_state.json` records for online DPO.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DpoState {
    /// Steps completed.
    pub step: usize,
    /// The run's settings.
    pub config: DpoConfig,
}

/// What a finished run reports (also `out/dpo_report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct DpoReport {
    /// Steps taken (including before a resume).
    pub steps: usize,
    /// Steps whose update was skipped for lack of pairs.
    pub skipped_steps: usize,
    /// Answers whose reward could not be obtained (dropped from pairing).
    pub dropped_answers: usize,
    /// Mean RM score of the samples, first and last step that had any.
    pub first_mean_reward: Option<f64>,
    /// See `first_mean_reward`.
    pub last_mean_reward: Option<f64>,
    /// Where the policy was saved.
    pub policy_dir: PathBuf,
}

/// Per-step figures of the update (means over the step's pairs).
#[derive(Debug, Default)]
pub struct UpdateStats {
    /// The loss before the update.
    pub loss: f64,
    /// Fraction of pairs whose implicit reward prefers the chosen answer.
    pub accuracy: f64,
    /// β · (log π − log π_ref) of the chosen answers.
    pub chosen_reward: f64,
    /// Same for the rejected answers.
    pub rejected_reward: f64,
    /// Sample estimate of KL(π ‖ π_ref) per sequence: mean log π − log π_ref.
    pub kl: f64,
    /// Tokens run through the policy.
    pub tokens: usize,
}

/// The prompts of `step`: a fresh seeded shuffle per pass over the file.
fn step_prompts(prompts: &[Prompt], per_step: usize, step: usize, seed: u64) -> Vec<&Prompt> {
    let n = prompts.len();
    (0..per_step)
        .map(|j| {
            let k = step * per_step + j;
            let mut order: Vec<usize> = (0..n).collect();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ ((k / n) as u64 + 1));
            order.shuffle(&mut rng);
            &prompts[order[k % n]]
        })
        .collect()
}

/// The DPO update on this step's pairs `(prompt, chosen, rejected)` token ids: one pair per
/// micro-batch, gradients averaged over the pairs, clipped, then one AdamW step.
pub fn update(
    policy: &TrainableModel,
    reference: &RewardModel,
    opt: &mut AdamW,
    cfg: &DpoConfig,
    lr: f64,
    pairs: &[(Vec<u32>, Vec<u32>, Vec<u32>)],
) -> Result<UpdateStats> {
    let mut grads: HashMap<String, Tensor> = HashMap::new();
    let mut s = UpdateStats::default();
    let pad = policy.model.pad_id();
    let n = pairs.len() as f64;
    for (prompt, chosen, rejected) in pairs {
        let answers = [chosen.as_slice(), rejected.as_slice()];
        let pol = answer_logprobs(policy.model.backbone(), prompt, &answers, pad)?;
        let refs = answer_logprobs(reference.backbone(), prompt, &answers, pad)?
            .detach()
            .to_vec1::<f32>()?;
        let (pc, pr) = (pol.get(0)?, pol.get(1)?);
        let (rc, rr) = (refs[0] as f64, refs[1] as f64);
        let loss = pair_loss(&pc, &pr, rc, rr, cfg.beta, cfg.loss)?;
        let pol_v = pol.detach().to_vec1::<f32>()?;
        let (cr, rj) = (
            cfg.beta * (pol_v[0] as f64 - rc),
            cfg.beta * (pol_v[1] as f64 - rr),
        );
        s.loss += loss.to_scalar::<f32>()? as f64 / n;
        s.accuracy += if cr > rj { 1.0 / n } else { 0.0 };
        s.chosen_reward += cr / n;
        s.rejected_reward += rj / n;
        s.kl += ((pol_v[0] as f64 - rc) + (pol_v[1] as f64 - rr)) / (2.0 * n);
        s.tokens += prompt.len() * 2 + chosen.len() + rejected.len();
        let store = (loss / n)?.backward()?;
        accumulate(&mut grads, &store, &policy.params)?;
    }
    clip_grad_norm(&mut grads, cfg.max_grad_norm)?;
    opt.step(&grads, lr)?;
    Ok(s)
}

/// Runs online DPO as `run` says; see the crate docs.
pub fn run(run: &DpoRun) -> Result<DpoReport> {
    let cfg = run.config.clone();
    cfg.validate()?;
    let device = wildreward_train::config::device(&cfg.device)?;
    let prompts = read_prompts(&run.prompts, 0)?;
    let resumed = state::open_run::<DpoState>(&run.out, run.resume, &device)?;
    let empty = if cfg.empty_history == "inference" {
        EmptyHistory::Inference
    } else {
        EmptyHistory::Training
    };
    let rewards = RewardSource::new(
        &run.endpoint,
        cfg.reward_chunk_size,
        cfg.reward_concurrency,
        cfg.reward_timeout_s,
        cfg.reward_retries,
        run.api_key.clone(),
        empty,
    )?;

    let path = weights::resolve(&run.policy.to_string_lossy())?;
    let ckpt = weights::load(&path, &device, DType::F32)?;
    let lora_scale = match cfg.train {
        TrainMode::Lora(r) => cfg.lora_scale(r),
        _ => 1.0,
    };
    // The reference keeps the original tensors; the policy's trainable ones are copies.
    let reference = RewardModel::from_checkpoint(
        ckpt.clone(),
        &LoadOptions {
            device: device.clone(),
            ..LoadOptions::inference()
        },
    )?;
    let policy = build_policy(ckpt, cfg.train, lora_scale, cfg.seed)?;
    let mut sampler = Sampler::new(&policy.model, cfg.system_prompt.clone())?;
    if cfg.rollout_dtype == "bf16" {
        let kernel = Bf16Kernel::for_requested_bf16()
            .map_err(|e| DpoError::input(format!("rollout_dtype bf16: {e}")))?;
        sampler.use_bf16(kernel)?;
    }
    let mut opt = cfg.optimizer(policy.params.clone())?;
    let mut start = 0;
    if let Some(r) = &resumed {
        if r.state.config != cfg {
            return Err(DpoError::input(format!(
                "{}: was written with other settings; resume with the same ones",
                r.dir.display()
            )));
        }
        policy.restore(&r.params)?;
        opt.load_state(&r.optimizer, r.state.step as u64)?;
        start = r.state.step;
        eprintln!(
            "online-dpo: resumed from {} (step {start})",
            r.dir.display()
        );
    }
    let mut log = MetricsLog::open(&run.out, resumed.as_ref().map(|r| r.state.step))?;
    if resumed.is_none() {
        log.write(&json!({"type": "start", "step": 0, "prompts": prompts.len(), "config": cfg,
            "trainable_parameters": policy.params.iter().map(|p| p.var.elem_count()).sum::<usize>()}))?;
    }
    let pb = ProgressBar::with_draw_target(
        Some(cfg.steps as u64),
        if run.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template("dpo {pos}/{len} {wide_bar} {msg} eta {eta}") {
        pb.set_style(style);
    }
    pb.set_position(start as u64);
    let mut report = DpoReport {
        steps: cfg.steps,
        skipped_steps: 0,
        dropped_answers: 0,
        first_mean_reward: None,
        last_mean_reward: None,
        policy_dir: run.out.join("policy"),
    };
    let mut skipped_in_a_row = 0;
    for step in start..cfg.steps {
        let done = step + 1;
        // 1. Rollout (bf16 copies re-packed from the weights the last update left).
        let t_gen = Instant::now();
        if step > start {
            sampler.refresh()?;
        }
        let batch = step_prompts(&prompts, cfg.prompts_per_step, step, cfg.seed);
        let mut answers: Vec<(usize, Vec<u32>, Answer)> = Vec::new();
        for (j, p) in batch.iter().enumerate() {
            let ids = sampler.prompt_ids(&p.text)?;
            let seed = cfg.seed.wrapping_mul(1_000_003) ^ (step * 1000 + j) as u64;
            for a in sampler.sample(
                &ids,
                cfg.n,
                cfg.max_new_tokens,
                cfg.temperature,
                cfg.top_p,
                seed,
            )? {
                answers.push((j, ids.clone(), a));
            }
        }
        let gen_seconds = t_gen.elapsed().as_secs_f64();
        let gen_tokens: usize = answers.iter().map(|(_, _, a)| a.tokens.len()).sum();
        // 2. Rewards (failures dropped and counted).
        let texts: Vec<&str> = answers
            .iter()
            .map(|(j, _, _)| batch[*j].text.as_str())
            .collect();
        let answer_texts: Vec<&str> = answers.iter().map(|(_, _, a)| a.text.as_str()).collect();
        let scored = rewards.score(&texts, &answer_texts)?;
        report.dropped_answers += scored.failed;
        let samples: Vec<Sample> = answers
            .iter()
            .zip(&scored.values)
            .enumerate()
            .map(|(i, ((j, _, a), r))| Sample {
                prompt_id: format!("{j}:{}", batch[*j].id),
                index: i,
                reward: r.map(|r| {
                    if a.ended_with_eos {
                        r
                    } else {
                        r - cfg.eos_penalty
                    }
                }),
            })
            .collect();
        let ok: Vec<f32> = scored.values.iter().flatten().copied().collect();
        let mean_reward =
            (!ok.is_empty()).then(|| ok.iter().map(|&r| r as f64).sum::<f64>() / ok.len() as f64);
        if mean_reward.is_some() {
            report.first_mean_reward = report.first_mean_reward.or(mean_reward);
            report.last_mean_reward = mean_reward;
        }
        let eos_rate = answers.iter().filter(|(_, _, a)| a.ended_with_eos).count() as f64
            / answers.len().max(1) as f64;
        // 3. Pairs within each prompt.
        let (pairs, pstats) = best_vs_worst(&samples, cfg.tie_epsilon);
        let mut rec = json!({
            "type": "train", "step": done, "samples": answers.len(), "dropped": scored.failed,
            "pairs": pairs.len(), "ties": pstats.ties, "too_few_scored": pstats.too_few,
            "mean_reward": mean_reward, "eos_rate": eos_rate,
            "generation_tokens_per_second": gen_tokens as f64 / gen_seconds.max(1e-9),
        });
        if pairs.len() < cfg.min_pairs {
            skipped_in_a_row += 1;
            report.skipped_steps += 1;
            if let Some(o) = rec.as_object_mut() {
                o.insert("skipped".into(), true.into());
                o.insert("reward_error".into(), scored.last_error.clone().into());
            }
            log.write(&rec)?;
            if skipped_in_a_row > cfg.max_skipped_steps {
                return Err(DpoError::Rewards(format!(
                    "{skipped_in_a_row} steps in a row without a usable pair ({} of {} answers unscored; last reward error: {})",
                    scored.failed,
                    answers.len(),
                    scored.last_error.unwrap_or_else(|| "none: all rewards tied".into())
                )));
            }
            pb.inc(1);
            continue;
        }
        skipped_in_a_row = 0;
        // 4. Update.
        let lr = if step < cfg.warmup_steps {
            cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64
        } else {
            cfg.lr
        };
        let seqs: Vec<(Vec<u32>, Vec<u32>, Vec<u32>)> = pairs
            .iter()
            .map(|p| {
                (
                    answers[p.chosen].1.clone(),
                    answers[p.chosen].2.tokens.clone(),
                    answers[p.rejected].2.tokens.clone(),
                )
            })
            .collect();
        let t_train = Instant::now();
        let s = update(&policy, &reference, &mut opt, &cfg, lr, &seqs)?;
        let train_seconds = t_train.elapsed().as_secs_f64();
        if let Some(o) = rec.as_object_mut() {
            for (k, v) in [
                ("loss", s.loss),
                ("reward_accuracy", s.accuracy),
                ("chosen_reward", s.chosen_reward),
                ("rejected_reward", s.rejected_reward),
                ("margin", s.chosen_reward - s.rejected_reward),
                ("kl", s.kl),
                ("lr", lr),
                (
                    "train_tokens_per_second",
                    s.tokens as f64 / train_seconds.max(1e-9),
                ),
            ] {
                o.insert(k.into(), v.into());
            }
        }
        log.write(&rec)?;
        pb.set_message(format!(
            "loss {:.4} reward {:.3}",
            s.loss,
            mean_reward.unwrap_or(f64::NAN)
        ));
        pb.inc(1);
        if (cfg.save_every > 0 && done % cfg.save_every == 0) || done == cfg.steps {
            let (moments, _) = opt.state();
            state::save(
                &run.out,
                done,
                &DpoState {
                    step: done,
                    config: cfg.clone(),
                },
                &policy.snapshot(),
                &moments,
            )?;
        }
    }
    pb.finish_and_clear();
    save_as(&policy.merged()?, &report.policy_dir, Layout::CausalLm)?;
    write_json(&run.out.join("dpo_report.json"), &report)?;
    Ok(report)
}
