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

    /// The residual stream of `rows` after the first `layers` blocks, for models that share those
    /// blocks to compute once ([`crate::shared::SharedScorers`]) and for a last-N-layers trainer to
    /// cache. A prefix every row opens with may run once ([`Trunk::prefix`]).
    fn trunk(&self, rows: &[&[u32]], layers: usize) -> Result<Trunk>;

    /// What [`Forward::last_hidden`] gives for the rows of `trunk`, continuing from it with this
    /// forward's blocks from [`Trunk::layer`] on: exactly the rows' [`Forward::last_hidden`] when this
    /// model's first blocks are the ones that made the trunk.
    fn last_hidden_from(&self, trunk: &Trunk) -> Result<Tensor>;

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

/// The residual stream of a batch of rows after its first [`Trunk::layer`] blocks (no final norm),
/// in f32, rows concatenated on one token axis: what several models with the same first blocks
/// need only compute once (the trained copies of one backbone whose lower blocks stayed frozen).
#[derive(Debug, Clone, PartialEq)]
pub struct Trunk {
    /// Blocks run.
    pub layer: usize,
    /// Width of a token's state.
    pub hidden: usize,
    /// A prefix every row opens with, run once: its token count and its residual stream
    /// `[len · hidden]` (positions `0..len`; the rows' own tokens follow it).
    pub prefix: Option<(usize, Vec<f32>)>,
    /// Each row's own tokens (after the prefix).
    pub lens: Vec<usize>,
    /// Their residual stream, rows concatenated, `[Σ lens · hidden]`.
    pub states: Vec<f32>,
}

impl Trunk {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.lens.len()
    }

    /// Row `i`'s whole residual stream, prefix then own tokens, `[tokens · hidden]`.
    pub fn row(&self, i: usize) -> Vec<f32> {
        let start: usize = self.lens[..i].iter().sum::<usize>() * self.hidden;
        let own = &self.states[start..start + self.lens[i] * self.hidden];
        match &self.prefix {
            Some((_, prefix)) => [prefix.as_slice(), own].concat(),
            None => own.to_vec(),
        }
    }

    /// Row `i`'s token count, prefix included.
    pub fn row_len(&self, i: usize) -> usize {
        self.lens[i] + self.prefix.as_ref().map_or(0, |(n, _)| *n)
    }
}
