//! Reward-model training (`wildreward train`), and the training pieces online DPO reuses: which
//! tensors train (head, last-N layers, full, LoRA), AdamW with savable state, the learning-rate
//! schedule, gradient clipping.
//!
//! The reference trains `num_labels = 3` bias-free logits with mean BCE, right-truncated at 4096
//! tokens, and evaluates nothing while training. Here: inputs are cut history-first so the response
//! survives, four losses (ordinal BCE, CORAL, CORN, Bradley-Terry), four ways to choose what trains,
//! periodic evaluation (accuracy, MAE, per-threshold accuracy, ECE, pairwise AUC), resumable
//! checkpoints that continue bit-for-bit, and a final save in the HF layout.
//!
//! Dependencies and why: `wildreward-model` is the model, heads and losses; `wildreward-kernels`
//! names the bf16 product (`dtype = "bf16"`) the trainer asks the model's nodes to run; `candle-core` the
//! tensors and autograd; `candle-nn` its `VarBuilder`, to build a fused-kernel backbone for the
//! head-only feature pass; `tokenizers` the tokenizer the model carries; `rand` the seeded data order
//! and LoRA initialisation; `serde` / `serde_json` / `toml` the configuration, metrics log and
//! state; `indicatif` the progress bars; `thiserror` the error type; `rayon` runs the fused AdamW
//! update and gradient norm over CPU tensors on the cores.

pub mod batching;
pub mod config;
pub mod data;
pub mod error;
pub mod feature_store;
pub mod forward;
pub mod metrics;
pub mod optim;
pub mod params;
pub mod state;
pub mod trainer;

pub use config::{LossKind, TrainConfig, TrainMode};
pub use error::{Result, TrainError};
pub use trainer::{train, TrainReport, TrainRun};
