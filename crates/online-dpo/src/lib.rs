//! Online DPO of a policy against a reward-scoring endpoint (`online-dpo run`, `online-dpo eval`).
//!
//! Each step samples `n` answers per prompt with the KV cache in the policy's chat format, scores
//! them through the endpoint with the WildReward template (clean prompt, answer after any
//! `</think>`), pairs the best with the worst answer **of the same prompt**, and takes a DPO (or
//! IPO) step against a frozen copy of the initial policy. Two bugs of the reference are not
//! reproduced: pairs never mix prompts, and an answer without a reward is dropped and counted
//! instead of receiving a constant reward.
//!
//! Dependencies and why: `wildreward-model` (backbone, KV-cache generation, loading and saving),
//! `wildreward-kernels` (names the bf16 product bf16 rollouts run), `wildreward-train` (trainable tensors incl. LoRA, AdamW, checkpoints, metrics log),
//! `wildreward-client` (the one scoring client: chunks, retries, per-item errors), `candle-core` /
//! `candle-nn` (tensors, autograd, `VarBuilder`), `tokenizers`, `rand` (prompt order), `serde` /
//! `serde_json` / `toml` (configuration, logs), `indicatif` (progress), `thiserror` (errors).

pub mod config;
pub mod dpo;
pub mod error;
pub mod eval;
pub mod pairing;
pub mod prompts;
pub mod rewards;
pub mod rollout;
pub mod run;

pub use config::{DpoConfig, DpoLoss};
pub use error::{DpoError, Result};
pub use eval::{evaluate, EvalReport, EvalRun};
pub use run::{run, DpoReport, DpoRun};
