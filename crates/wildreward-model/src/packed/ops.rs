//! The leaves of the packed forward: each kernel of `wildreward-kernels` handed its weights (as
//! slices of the plain-data weights) and the batch's reusable buffers.

use crate::decoder_weights::{DecoderDims as Dims, DecoderWeights, LinearWeights, NormWeights};
use candle_core::{CpuStorage, Result, Storage, StorageRef, Tensor};
use wildreward_kernels::attention::Heads;
use wildreward_kernels::rows::{self, LinearRef};

/// Copies the embedding row of each token into consecutive rows of `x`.
pub(super) fn embed<'a>(
    backbone: &DecoderWeights,
    tokens: impl Iterator<Item = &'a u32>,
    x: &mut [f32],
) -> Result<()> {
    let table = View::of(&backbone.embed_tokens)?;
    let table = table.slice();
    let h = backbone.dims.hidden;
    let vocab = table.len() / h.max(1);
    for (dst, &id) in x.chunks_mut(h).zip(tokens) {
        let id = id as usize;
        if id >= vocab {
            candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
        }
        dst.copy_from_slice(&table[id * h..(id + 1) * h]);
    }
    Ok(())
}

/// The attention kernel's head layout.
pub(super) fn heads(d: &Dims) -> Heads {
    Heads {
        heads: d.heads,
        kv_heads: d.kv_heads,
        head_dim: d.head_dim,
    }
}

/// Activations of one batch, allocated once and reused by every layer.
pub(crate) struct Buffers {
    pub(super) x: Vec<f32>,
    pub(super) normed: Vec<f32>,
    pub(super) q: Vec<f32>,
    pub(super) k: Vec<f32>,
    pub(super) v: Vec<f32>,
    pub(super) attn_by_head: Vec<f32>,
    pub(super) attn: Vec<f32>,
    pub(super) gate: Vec<f32>,
    pub(super) up: Vec<f32>,
}

impl Buffers {
    pub(super) fn new(tokens: usize, d: &Dims) -> Self {
        let zeros = |n: usize| vec![0f32; tokens * n];
        Self {
            x: zeros(d.hidden),
            normed: zeros(d.hidden),
            q: zeros(d.heads * d.head_dim),
            k: zeros(d.kv_heads * d.head_dim),
            v: zeros(d.kv_heads * d.head_dim),
            attn_by_head: zeros(d.heads * d.head_dim),
            attn: zeros(d.heads * d.head_dim),
            gate: zeros(d.intermediate),
            up: zeros(d.intermediate),
        }
    }
}

/// A read view of a contiguous f32 CPU tensor, without a copy.
pub(crate) struct View<'a> {
    storage: StorageRef<'a>,
    start: usize,
    end: usize,
}

impl<'a> View<'a> {
    pub(super) fn of(t: &'a Tensor) -> Result<Self> {
        let (storage, layout) = t.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!(
                "packed forward: a weight of shape {:?} is not contiguous",
                t.dims()
            );
        };
        if !matches!(&*storage, Storage::Cpu(CpuStorage::F32(_))) {
            candle_core::bail!("packed forward: a weight is not f32 on the CPU");
        }
        Ok(Self {
            storage,
            start,
            end,
        })
    }

    pub(super) fn slice(&self) -> &[f32] {
        match &*self.storage {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.start..self.end],
            _ => &[], // ruled out in `of`
        }
    }
}

/// `out[t, :] (+)= x[t, :] · Wᵀ + b` for `tokens` rows through [`rows::linear`], on the bf16
/// copy of the weight when the model packed one.
pub(crate) fn linear(
    x: &[f32],
    lin: &LinearWeights,
    out: &mut [f32],
    tokens: usize,
    accumulate: bool,
) -> Result<()> {
    let (n, k) = lin.weight.dims2()?;
    let w = View::of(&lin.weight)?;
    let bias = lin.bias.as_ref().map(View::of).transpose()?;
    let weights = LinearRef {
        w: w.slice(),
        n,
        k,
        bias: bias.as_ref().map(View::slice),
        bf16: lin.bf16.as_ref().map(|(kernel, w)| (*kernel, w.as_ref())),
    };
    rows::linear(x, weights, out, tokens, accumulate)
        .map_err(|e| candle_core::Error::Msg(format!("packed forward: {e}")))
}

/// `out = x / rms(x) · w` row by row (rows of `width`), in f32.
pub(crate) fn rms_norm_rows(
    x: &[f32],
    norm: &NormWeights,
    out: &mut [f32],
    width: usize,
) -> Result<()> {
    let w = View::of(&norm.weight)?;
    rows::rms_norm_rows(x, w.slice(), norm.eps as f32, out, width);
    Ok(())
}

/// RMS norm in place over consecutive chunks of `width` (Qwen3's per-head q/k norms).
pub(crate) fn rms_norm_in_place(x: &mut [f32], norm: &NormWeights, width: usize) -> Result<()> {
    let w = View::of(&norm.weight)?;
    rows::rms_norm_in_place(x, w.slice(), norm.eps as f32, width);
    Ok(())
}
