//! Online DPO settings: a TOML file under `configs/` with command-line overrides on top.

use crate::error::{DpoError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use wildreward_train::optim::{AdamW, AdamWConfig};
use wildreward_train::params::Param;
use wildreward_train::TrainMode;

/// The preference loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpoLoss {
    /// DPO: `−log σ(β·(Δ_policy − Δ_reference))`.
    Sigmoid,
    /// IPO: `(Δ_policy − Δ_reference − 1/(2β))²`.
    Ipo,
}

/// Every setting of an online DPO run. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpoConfig {
    /// Answers sampled per prompt.
    pub n: usize,
    /// Sampling temperature (0: greedy, which makes every answer the same).
    pub temperature: f32,
    /// Nucleus sampling mass.
    pub top_p: f32,
    /// Longest answer in tokens.
    pub max_new_tokens: usize,
    /// Policy updates.
    pub steps: usize,
    /// Prompts per update (one chosen / rejected pair each at most).
    pub prompts_per_step: usize,
    /// DPO β.
    pub beta: f64,
    /// The loss.
    pub loss: DpoLoss,
    /// Learning rate (constant after warmup).
    pub lr: f64,
    /// Steps of linear warmup.
    pub warmup_steps: usize,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: off).
    pub max_grad_norm: f64,
    /// What trains: full, last-n:N or lora:R.
    pub train: TrainMode,
    /// LoRA's α (0 means 2·r).
    pub lora_alpha: f64,
    /// Seed of the prompt order and the sampling.
    pub seed: u64,
    /// Subtracted from the reward of an answer that did not end with EOS.
    pub eos_penalty: f32,
    /// Reward gaps at or below this are ties (no pair).
    pub tie_epsilon: f32,
    /// Pairs a step needs; with fewer the update is skipped.
    pub min_pairs: usize,
    /// Consecutive steps without any pair (e.g. the reward server is down) before the run stops.
    pub max_skipped_steps: usize,
    /// Texts per reward request.
    pub reward_chunk_size: usize,
    /// Reward requests in flight.
    pub reward_concurrency: usize,
    /// Seconds before a reward request times out.
    pub reward_timeout_s: f64,
    /// Retries of a failed reward request.
    pub reward_retries: u32,
    /// The Context section of the RM text: `training` ("No previous context.", what WildReward
    /// models were trained on) or `inference` (empty, as the reference's DPO client sent it).
    pub empty_history: String,
    /// System prompt of the chat template (none: the template's default, e.g. SmolLM2's).
    pub system_prompt: Option<String>,
    /// Write a resumable checkpoint every N steps (0: only at the end).
    pub save_every: usize,
    /// Device: `cpu` or `cuda:N`.
    pub device: String,
    /// Precision of the rollouts' products on the CPU: `f32`, or `bf16` (the policy's projections
    /// and LM head re-packed as bf16 after every update: half the bytes a decode step streams, 2.5×
    /// the f32 rollout speed on AMD Zen 5; needs AVX512_BF16 or AMX and `train` full or last-n, as
    /// adapters are not packed). The DPO step's log-probabilities stay f32.
    pub rollout_dtype: String,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            n: 8,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 256,
            steps: 100,
            prompts_per_step: 4,
            beta: 0.1,
            loss: DpoLoss::Sigmoid,
            lr: 5e-7,
            warmup_steps: 0,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            train: TrainMode::Full,
            lora_alpha: 0.0,
            seed: 42,
            eos_penalty: 0.0,
            tie_epsilon: 1e-6,
            min_pairs: 1,
            max_skipped_steps: 3,
            reward_chunk_size: 32,
            reward_concurrency: 4,
            reward_timeout_s: 120.0,
            reward_retries: 3,
            empty_history: "training".into(),
            system_prompt: None,
            save_every: 0,
            device: "cpu".into(),
            rollout_dtype: "f32".into(),
        }
    }
}

impl DpoConfig {
    /// The AdamW optimiser DPO steps with over `params`: β (0.9, 0.999), ε 1e-8, this config's
    /// weight decay (the reference's verl settings).
    pub fn optimizer(&self, params: Vec<Param>) -> Result<AdamW> {
        Ok(AdamW::new(
            params,
            AdamWConfig {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: self.weight_decay,
            },
        )?)
    }

    /// Reads a TOML file; unknown keys are errors naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DpoError::io(path, e))?;
        toml::from_str(&text)
            .map_err(|e| DpoError::input(format!("{}: {}", path.display(), e.message())))
    }

    /// Checks the settings make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DpoError::input(m));
        if self.n < 2 {
            return bad(format!(
                "n must be at least 2 to form a pair, got {}",
                self.n
            ));
        }
        match self.rollout_dtype.as_str() {
            "f32" => {}
            "bf16" if matches!(self.train, TrainMode::Lora(_)) => {
                return bad(
                    "rollout_dtype bf16 packs the policy's weights, which LoRA adapters are not \
                     merged into while training: use f32 rollouts with lora:R"
                        .into(),
                )
            }
            "bf16" => {}
            other => return bad(format!("rollout_dtype {other:?}: expected f32 or bf16")),
        }
        if self.prompts_per_step == 0 || self.max_new_tokens == 0 {
            return bad("prompts_per_step and max_new_tokens must be at least 1".into());
        }
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return bad(format!("beta must be positive, got {}", self.beta));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        if self.train == TrainMode::Head {
            return bad(
                "train = head: a policy has no reward head; use full, last-n:N or lora:R".into(),
            );
        }
        if !matches!(self.empty_history.as_str(), "training" | "inference") {
            return bad(format!(
                "empty_history must be `training` or `inference`, got `{}`",
                self.empty_history
            ));
        }
        Ok(())
    }

    /// LoRA's α / r for rank `r`.
    pub fn lora_scale(&self, r: usize) -> f64 {
        wildreward_train::config::lora_scale(self.lora_alpha, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_parse_and_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("online-dpo-") && name.ends_with(".toml") {
                let c = DpoConfig::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
                c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
                n += 1;
            }
        }
        assert_eq!(n, 2);
        assert!(toml::from_str::<DpoConfig>("temp = 1").is_err());
    }
}
