//! The reward model on candle: backbones, heads, losses, checkpoint loading, tokenizer and scorer.
//!
//! This crate now holds what the foundation needs: where the fetched models live ([`assets`]) and a
//! reader of GGUF checkpoint metadata ([`gguf`]). The differentiable backbone, the ordinal heads,
//! the losses, loading, saving and the `Scorer` arrive with the model-core issue.
//!
//! Dependencies and why: `candle-core` / `candle-nn` are the tensor library (CPU by default, CUDA with
//! the `cuda` feature, which needs nvcc and is never enabled in CI); `tokenizers` is the HF tokenizer
//! candle itself uses; `cudarc` (optional) is candle's CUDA driver binding.

pub mod assets;
pub mod gguf;
