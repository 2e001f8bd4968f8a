//! The inference forward of a decoder, as one trait with two implementations chosen once at load
//! ([`crate::backend::select`], like text-embeddings-inference's backend trait): the packed CPU
//! forward ([`crate::packed::PackedCpu`]: f32 or bf16 products on the CPU, no padding) and the candle
//! forward ([`crate::candle_forward::CandleForward`]: CUDA, LoRA adapters, GGUF-quantized weights,
//! and the CPU as a reference). Scoring asks it for the last hidden states of unpadded rows,
//! generation for a prefill and then one [`Decode::step`] per token, so neither knows which runs.

use candle_core::{Result, Tensor};

/// A decoder's inference forward (no gradient).
pub trait Forward: Send + Sync + std::fmt::Debug {
    /// What runs, for reports and `/info`: `packed-cpu` or `candle`.
    fn name(&self) -> &'static str;

    /// The product the projections run: a bf16 kernel's name (`amx`, `avx512bf16`, `portable`), or
    /// the weights' dtype (`f32`, `bf16`, `f16`).
    fn matmul_name(&self) -> &'static str;

    /// Whether a batch costs the work of its longest row times its rows (the candle forward pads),
    /// rather than its total tokens (the packed forward): batch planners size batches by it.
    fn pads_rows(&self) -> bool;

    /// Final-norm hidden states at each row's last token, `[rows, hidden]`, for unpadded rows of
    /// token ids (each 1 to the model's positions long).
    fn last_hidden(&self, rows: &[&[u32]]) -> Result<Tensor>;

    /// Runs `prompt` once for `samples` answers with room for `max_new` more tokens each: the
    /// decoding state and the next-token logits after the prompt (`[vocab]`, the same for every
    /// sample).
    fn prefill<'a>(
        &'a self,
        prompt: &[u32],
        samples: usize,
        max_new: usize,
    ) -> Result<(Box<dyn Decode + 'a>, Vec<f32>)>;
}

/// The state of a decoding run: the samples' caches.
pub trait Decode {
    /// Feeds one token per sample; returns the next logits, `[samples · vocab]`, sample-major.
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>>;
}
