//! `online-dpo eval`: the mean reward of a policy's greedy answers on held-out prompts.

use crate::error::{DpoError, Result};
use crate::prompts::read_prompts;
use crate::rewards::RewardSource;
use crate::rollout::Sampler;
use indicatif::{ProgressBar, ProgressDrawTarget};
use serde::Serialize;
use std::path::{Path, PathBuf};
use wildreward_model::{LoadOptions, RewardModel};
use wildreward_types::template::EmptyHistory;

/// What an evaluation reports (also `out/eval_report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The policy evaluated.
    pub policy: PathBuf,
    /// Prompts answered.
    pub prompts: usize,
    /// Answers with a reward.
    pub scored: usize,
    /// Answers the endpoint gave no reward for (left out of the mean).
    pub failed: usize,
    /// Mean reward of the scored answers.
    pub mean_reward: f64,
    /// Fraction of answers that ended with EOS.
    pub eos_rate: f64,
    /// Per prompt: id, answer, reward.
    pub answers: Vec<serde_json::Value>,
}

/// Options of an evaluation.
#[derive(Debug, Clone)]
pub struct EvalRun {
    /// The policy.
    pub policy: PathBuf,
    /// Prompts JSONL.
    pub prompts: PathBuf,
    /// `/get_reward` URL.
    pub endpoint: String,
    /// At most this many prompts (0: all).
    pub limit: usize,
    /// Longest answer.
    pub max_new_tokens: usize,
    /// Where the report goes.
    pub out: Option<PathBuf>,
    /// Bearer token for the endpoint.
    pub api_key: Option<String>,
    /// Show progress.
    pub progress: bool,
}

/// Answers every prompt greedily and scores the answers.
pub fn evaluate(run: &EvalRun) -> Result<EvalReport> {
    let prompts = read_prompts(&run.prompts, run.limit)?;
    let model = RewardModel::load(&run.policy, &LoadOptions::inference())?;
    let sampler = Sampler::new(&model, None)?;
    let rewards = RewardSource::new(
        &run.endpoint,
        32,
        4,
        300.0,
        3,
        run.api_key.clone(),
        EmptyHistory::Training,
    )?;
    let pb = ProgressBar::with_draw_target(
        Some(prompts.len() as u64),
        if run.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let mut answers = Vec::with_capacity(prompts.len());
    for p in &prompts {
        let ids = sampler.prompt_ids(&p.text)?;
        let a = sampler
            .sample(&ids, 1, run.max_new_tokens, 0.0, 1.0, 0)?
            .pop()
            .ok_or_else(|| DpoError::Rewards("generation returned nothing".into()))?;
        answers.push(a);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let texts: Vec<&str> = prompts.iter().map(|p| p.text.as_str()).collect();
    let answer_texts: Vec<&str> = answers.iter().map(|a| a.text.as_str()).collect();
    let scored = rewards.score(&texts, &answer_texts)?;
    let ok: Vec<f32> = scored.values.iter().flatten().copied().collect();
    let report = EvalReport {
        policy: run.policy.clone(),
        prompts: prompts.len(),
        scored: ok.len(),
        failed: scored.failed,
        mean_reward: ok.iter().map(|&r| r as f64).sum::<f64>() / ok.len().max(1) as f64,
        eos_rate: answers.iter().filter(|a| a.ended_with_eos).count() as f64
            / answers.len().max(1) as f64,
        answers: prompts
            .iter()
            .zip(&answers)
            .zip(&scored.values)
            .map(|((p, a), r)| serde_json::json!({"id": p.id, "answer": a.text, "reward": r}))
            .collect(),
    };
    if ok.is_empty() {
        return Err(DpoError::Rewards(format!(
            "no answer could be scored ({})",
            scored.last_error.unwrap_or_default()
        )));
    }
    if let Some(out) = &run.out {
        write_json(&out.join("eval_report.json"), &report)?;
    }
    Ok(report)
}

/// Writes pretty JSON, creating the directory.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DpoError::io(dir, e))?;
    }
    let text = serde_json::to_vec_pretty(value).unwrap_or_default();
    std::fs::write(path, text).map_err(|e| DpoError::io(path, e))
}
