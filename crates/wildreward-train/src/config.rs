//! The trainer's settings: a TOML file under `configs/` with command-line overrides on top.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// What trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TrainMode {
    /// Only the reward head (the backbone's pooled features are cached after the first pass).
    Head,
    /// The head, the final norm and the last N decoder layers.
    LastN(usize),
    /// Every backbone tensor and the head.
    Full,
    /// Rank-R LoRA adapters on the attention and MLP projections, and the head; merged on save.
    Lora(usize),
}

impl FromStr for TrainMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let number = |v: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("`{s}`: expected a positive integer after the colon"))
        };
        match s.split_once(':') {
            None if s == "head" => Ok(TrainMode::Head),
            None if s == "full" => Ok(TrainMode::Full),
            Some(("last-n", n)) => Ok(TrainMode::LastN(number(n)?)),
            Some(("lora", r)) => Ok(TrainMode::Lora(number(r)?)),
            _ => Err(format!(
                "`{s}`: expected head, full, last-n:N or lora:R (e.g. lora:16)"
            )),
        }
    }
}

impl TryFrom<String> for TrainMode {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<TrainMode> for String {
    fn from(m: TrainMode) -> String {
        m.to_string()
    }
}

impl fmt::Display for TrainMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainMode::Head => write!(f, "head"),
            TrainMode::Full => write!(f, "full"),
            TrainMode::LastN(n) => write!(f, "last-n:{n}"),
            TrainMode::Lora(r) => write!(f, "lora:{r}"),
        }
    }
}

/// The training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// The reference's mean binary cross-entropy over K-1 independent thresholds.
    Ordinal,
    /// CORAL: one shared projection with K-1 ordered biases.
    Coral,
    /// CORN: conditional binary tasks over the ordinal layout.
    Corn,
    /// Bradley-Terry on preference pairs (the conventional baseline), one scalar logit.
    Bt,
}

impl LossKind {
    /// Whether this loss trains on preference pairs rather than labelled levels.
    pub fn is_pairwise(self) -> bool {
        self == LossKind::Bt
    }
}

/// The device a `device` setting names: `cpu`, `cuda` or `cuda:N` (CUDA needs the `cuda` feature).
/// Shared by the trainer and online DPO.
pub fn device(spec: &str) -> Result<candle_core::Device> {
    if spec == "cpu" {
        return Ok(candle_core::Device::Cpu);
    }
    let n = spec
        .strip_prefix("cuda:")
        .or_else(|| (spec == "cuda").then_some("0"))
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| TrainError::input(format!("device `{spec}`: expected cpu or cuda:N")))?;
    candle_core::Device::new_cuda(n).map_err(|e| {
        TrainError::input(format!(
            "device `{spec}`: {e} (build with `--features cuda` on a machine with CUDA)"
        ))
    })
}

/// LoRA's scale α / r for rank `r`, with α = 2·r when `alpha` is 0 (unset).
pub fn lora_scale(alpha: f64, r: usize) -> f64 {
    let alpha = if alpha > 0.0 { alpha } else { 2.0 * r as f64 };
    alpha / r as f64
}

/// Every setting of a training run. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// What trains.
    pub train: TrainMode,
    /// The objective.
    pub loss: LossKind,
    /// Passes over the training split.
    pub epochs: usize,
    /// Stop after this many optimiser steps (0: run the epochs out).
    pub max_steps: usize,
    /// Tokens per example; longer inputs lose history first, then the middle of the query.
    pub max_length: usize,
    /// Examples per micro-batch (pairs count once).
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW's decoupled weight decay (not applied to norms and biases).
    pub weight_decay: f64,
    /// AdamW β1.
    pub adam_beta1: f64,
    /// AdamW β2.
    pub adam_beta2: f64,
    /// AdamW ε.
    pub adam_eps: f64,
    /// Fraction of the steps spent warming the learning rate up linearly (then linear decay to 0).
    pub warmup_ratio: f64,
    /// Global gradient-norm clip (0: off).
    pub max_grad_norm: f64,
    /// Evaluate on the test split every N steps (0: only at the end).
    pub eval_every: usize,
    /// Test examples used by each evaluation (0: all).
    pub eval_limit: usize,
    /// Write a resumable checkpoint every N steps (0: only at the end).
    pub save_every: usize,
    /// Seed of the data order, new heads and LoRA initialisation.
    pub seed: u64,
    /// Thresholds of the ordinal heads (K-1; the reference's `num_labels`).
    pub num_labels: usize,
    /// LoRA's α (the adapters are scaled by α / r); 0 means 2·r.
    pub lora_alpha: f64,
    /// Examples read from the training split (0: all), for quick runs.
    pub train_limit: usize,
    /// The Context section for an empty history: `training` ("No previous context.") or `inference`.
    pub empty_history: String,
    /// Device: `cpu` or `cuda:N` (needs the `cuda` feature).
    pub device: String,
    /// Precision of the projections' products on the CPU: `f32` (exact), or `bf16` (mixed
    /// precision as PyTorch's autocast: bf16 operands, f32 sums, f32 master weights, gradients
    /// and AdamW state; needs AVX512_BF16 or AMX). CUDA runs its own rule (a bf16 frozen
    /// backbone for head and LoRA training).
    pub dtype: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            train: TrainMode::Full,
            loss: LossKind::Ordinal,
            epochs: 1,
            max_steps: 0,
            max_length: 4096,
            batch_size: 8,
            grad_accum: 1,
            lr: 1e-5,
            weight_decay: 0.01,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            warmup_ratio: 0.05,
            max_grad_norm: 1.0,
            eval_every: 0,
            eval_limit: 0,
            save_every: 0,
            seed: 42,
            num_labels: 3,
            lora_alpha: 0.0,
            train_limit: 0,
            empty_history: "training".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file; unknown keys are errors naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        toml::from_str(&text)
            .map_err(|e| TrainError::input(format!("{}: {}", path.display(), e.message())))
    }

    /// Checks the settings make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::input(m));
        if !matches!(self.dtype.as_str(), "f32" | "bf16") {
            return bad(format!("dtype {:?}: expected f32 or bf16", self.dtype));
        }
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad("batch_size and grad_accum must be at least 1".into());
        }
        if self.max_length < 16 {
            return bad(format!(
                "max_length {} is too small (16 at least)",
                self.max_length
            ));
        }
        if self.epochs == 0 && self.max_steps == 0 {
            return bad("set epochs or max_steps".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad(format!(
                "warmup_ratio must be in [0, 1), got {}",
                self.warmup_ratio
            ));
        }
        if self.loss == LossKind::Coral {
            // Refused before any work: the result could not be saved (see CORAL_NOT_SAVED).
            return bad(format!(
                "loss = \"coral\": {}",
                wildreward_model::checkpoint::CORAL_NOT_SAVED
            ));
        }
        if self.loss != LossKind::Bt && self.num_labels < 1 {
            return bad("num_labels must be at least 1".into());
        }
        if !matches!(self.empty_history.as_str(), "training" | "inference") {
            return bad(format!(
                "empty_history must be `training` or `inference`, got `{}`",
                self.empty_history
            ));
        }
        Ok(())
    }

    /// LoRA's scale α / r for rank `r`.
    pub fn lora_scale(&self, r: usize) -> f64 {
        lora_scale(self.lora_alpha, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_back() {
        for s in ["head", "full", "last-n:2", "lora:16"] {
            assert_eq!(s.parse::<TrainMode>().unwrap().to_string(), s);
        }
        for bad in ["", "lora", "lora:0", "last-n:x", "partial"] {
            assert!(bad.parse::<TrainMode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn toml_reads_and_rejects_unknown_keys() {
        let c: TrainConfig =
            toml::from_str("train = \"lora:8\"\nloss = \"corn\"\nlr = 2e-4").unwrap();
        assert_eq!(c.train, TrainMode::Lora(8));
        assert_eq!(c.loss, LossKind::Corn);
        assert_eq!(c.batch_size, 8);
        assert!(toml::from_str::<TrainConfig>("learning_rate = 1").is_err());
        assert_eq!(c.lora_scale(8), 2.0);
    }

    #[test]
    fn shipped_configs_parse_and_validate() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("train-") && name.ends_with(".toml") {
                let c = TrainConfig::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
                c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
                n += 1;
            }
        }
        assert_eq!(n, 3);
    }
}
