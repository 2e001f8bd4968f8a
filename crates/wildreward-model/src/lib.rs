//! The reward model on candle: a differentiable Llama-family backbone (Llama 2/3, SmolLM2, Mistral,
//! Qwen2/2.5, Qwen3), ordinal / CORAL / scalar heads, stable losses, checkpoint loading
//! (HF safetensors, sharded or not, the hf-hub cache, GGUF), HF-layout saving, the batched
//! [`scorer::Scorer`], and KV-cache generation for online DPO.
//!
//! Training needs gradients through every op: candle's fused `rms_norm`, `softmax_last_dim` and
//! `rope` record none, so [`nn::Kernels::Differentiable`] (the default) builds them from primitives (and from
//! `wildreward-nodes`' one-node forms with hand-written backward on the CPU);
//! [`nn::Kernels::Fused`] uses the fused kernels for inference and is tested to agree.
//!
//! Dependencies and why: `candle-core` / `candle-nn` are the tensor library (CPU by default, CUDA with
//! the `cuda` feature, which needs nvcc; CI checks it with `scripts/cuda/build.sh check`);
//! `wildreward-kernels` is the compute on slices the packed CPU forward ([`packed`]) runs on, and
//! `wildreward-nodes` the training graph nodes the layers call on the CPU; `tokenizers` is the HF
//! tokenizer candle itself uses; `hf-hub` (no network features) finds models in the local hub
//! cache; `rand` seeds new heads and sampling; `rayon` runs the packed forward's row loops;
//! `cudarc` (optional) is candle's CUDA driver binding.

pub mod assets;
pub mod backbone;
pub mod backend;
pub mod candle_forward;
pub mod checkpoint;
pub mod config;
pub mod decoder_weights;
pub mod encode;
pub mod error;
pub mod forward;
pub mod generate;
pub mod gguf;
pub mod head;
pub mod loss;
pub mod model;
pub mod nn;
pub mod packed;
pub mod precision;
pub mod scorer;
pub mod shared;
pub mod tokenizer;
pub mod weights;

pub use backbone::{Backbone, KvCache};
pub use config::{Architecture, ModelConfig};
pub use encode::{cut_text_ids, TurnEncoder};
pub use error::{ModelError, Result};
pub use forward::{Decode, Forward, Trunk};
pub use head::{HeadKind, ScoreHead};
pub use model::{LoadOptions, RewardModel};
pub use nn::Kernels;
pub use precision::Precision;
pub use scorer::{Scored, Scorer, ScorerOptions, Truncation};
pub use shared::SharedScorers;
