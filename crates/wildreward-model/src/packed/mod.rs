//! The packed f32 CPU forward: the scorer's fast path.
//!
//! The padded path pads every row of a batch to the longest one and runs candle one op at a time, each
//! op allocating its output, with a `[batch, heads, len, len]` score tensor per layer. Here the rows
//! of a batch are concatenated into one `[tokens, hidden]` matrix instead (no padding at all: the
//! projections and the MLP see only real tokens), every projection is one large gemm call into a
//! buffer reused across layers (the residual adds fused into the output projections), and attention
//! ([`attention`]) runs per (row, block of queries, key/value group) over the causal part only, in
//! parallel, the group's query heads stacked instead of repeating its keys and values. Only the last token's state is kept at the end: it is all a reward
//! head reads.
//!
//! It gives the numbers of the differentiable path (tested against transformers on every supported
//! family and against the padded path on SmolLM2). It runs when the weights are f32 on the CPU and
//! carry no LoRA adapter nor quantized copy ([`crate::backbone::Backbone::decoder_weights`] hands
//! them out only then); [`crate::backend::select`] picks the candle forward otherwise.
//!
//! The arithmetic is `wildreward-kernels`' (products, row ops, attention on slices); this module
//! walks the layers and hands each kernel its weights and buffers.

use crate::decoder_weights::{
    DecoderDims as Dims, DecoderWeights, LayerWeights, LinearWeights, NormWeights,
};
use crate::forward::{Decode, Forward};
use candle_core::{CpuStorage, Device, Result, Storage, StorageRef, Tensor};
use decode::PackedDecoder;
use wildreward_kernels::attention::{attention, Heads, QueryRun, Span};
use wildreward_kernels::rows::{self, apply_rope, silu_mul, LinearRef, Rope};
use wildreward_kernels::Bf16Kernel;

pub mod decode;
mod prefix;

/// [`Forward`] on the packed CPU kernels, over the decoder's weights as plain data.
#[derive(Debug, Clone)]
pub struct PackedCpu {
    weights: DecoderWeights,
}

impl PackedCpu {
    /// The packed forward of `weights` (f32 on the CPU), its projections multiplied by bf16 copies
    /// on `bf16` when given.
    pub fn new(mut weights: DecoderWeights, bf16: Option<Bf16Kernel>) -> Result<Self> {
        if !weights.is_f32_cpu() {
            candle_core::bail!("the packed forward needs f32 weights on the CPU");
        }
        if weights.layers.is_empty() {
            candle_core::bail!("the model has no layers");
        }
        if let Some(kernel) = bf16 {
            weights.pack_bf16(kernel)?;
        }
        Ok(Self { weights })
    }

    /// The weights it reads.
    pub fn weights(&self) -> &DecoderWeights {
        &self.weights
    }
}

impl Forward for PackedCpu {
    fn name(&self) -> &'static str {
        "packed-cpu"
    }

    fn matmul_name(&self) -> &'static str {
        self.weights.bf16_kernel().map_or("f32", Bf16Kernel::name)
    }

    fn pads_rows(&self) -> bool {
        false
    }

    fn last_hidden(&self, rows: &[&[u32]]) -> Result<Tensor> {
        last_hidden(&self.weights, rows)
    }

    fn prefill<'a>(
        &'a self,
        prompt: &[u32],
        samples: usize,
        max_new: usize,
    ) -> Result<(Box<dyn Decode + 'a>, Vec<f32>)> {
        let (decoder, logits) = PackedDecoder::prefill(&self.weights, prompt, samples, max_new)?;
        Ok((Box::new(decoder), logits))
    }
}

impl Decode for PackedDecoder<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        PackedDecoder::step(self, tokens)
    }
}

/// The final-norm hidden state at each row's last token, `[rows, hidden]`, for unpadded `rows` of
/// token ids; what [`crate::Backbone::forward`] followed by [`crate::Backbone::last_token`] gives for the same rows
/// padded into one batch.
///
/// When the rows open with the same tokens (every WildReward text opens with the same template
/// header, and the answers to one prompt share the prompt too), that prefix runs once and each row
/// runs only its own tokens, attending to the prefix's cached keys and values.
pub fn last_hidden(backbone: &DecoderWeights, rows: &[&[u32]]) -> Result<Tensor> {
    let h = backbone.dims.hidden;
    let shared = prefix::shared_len(rows);
    let out = if shared >= prefix::MIN_SHARED {
        let mut pre = prefix::SharedPrefix::compute(backbone, &rows[0][..shared])?;
        let own: Vec<&[u32]> = rows.iter().map(|r| &r[shared..]).collect();
        run_rows(backbone, &own, Some(&mut pre), |_, _| {})?
    } else {
        last_states(backbone, rows, |_, _| {})?
    };
    Tensor::from_vec(out, (rows.len(), h), &Device::Cpu)
}

/// The packed forward behind [`last_hidden`]: the final-norm state at each row's last token, flat
/// `[rows · hidden]`. `layer_done(i, buffers)` runs after layer `i`, while `buffers.k` / `buffers.v`
/// still hold that layer's keys and values of every token (the decoder caches them).
pub(crate) fn last_states(
    backbone: &DecoderWeights,
    rows: &[&[u32]],
    layer_done: impl FnMut(usize, &Buffers),
) -> Result<Vec<f32>> {
    run_rows(backbone, rows, None, layer_done)
}

/// [`last_states`] for rows that continue `prefix` (their positions start after it) when one is given.
fn run_rows(
    backbone: &DecoderWeights,
    rows: &[&[u32]],
    mut prefix: Option<&mut prefix::SharedPrefix>,
    mut layer_done: impl FnMut(usize, &Buffers),
) -> Result<Vec<f32>> {
    let dims = backbone.dims;
    let offset = prefix.as_ref().map_or(0, |p| p.len());
    let mut spans = Vec::with_capacity(rows.len());
    let mut positions = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if row.is_empty() || offset + row.len() > backbone.max_positions() {
            candle_core::bail!(
                "row {i} has {} tokens; the model takes 1 to {}",
                offset + row.len(),
                backbone.max_positions()
            );
        }
        spans.push(Span {
            start: positions.len(),
            len: row.len(),
        });
        positions.extend(offset..offset + row.len());
    }
    let mut buf = Buffers::new(positions.len(), &dims);
    embed(backbone, rows.iter().flat_map(|r| r.iter()), &mut buf.x)?;
    let (cos, sin) = (&backbone.rope_cos, &backbone.rope_sin);
    let (cos, sin) = (View::of(cos)?, View::of(sin)?);
    let rope = Rope {
        cos: cos.slice(),
        sin: sin.slice(),
    };
    let Some((last_layer, layers)) = backbone.layers.split_last() else {
        candle_core::bail!("the model has no layers");
    };
    let batch = Batch {
        dims: &dims,
        spans: &spans,
        rope: &rope,
        positions: &positions,
    };
    for (i, layer) in layers.iter().enumerate() {
        let kv = KvSource::of(prefix.as_deref_mut(), i);
        layer_forward(layer, &batch, &mut buf, kv)?;
        layer_done(i, &buf);
    }
    // A reward head reads the last token only: past the last layer's keys and values, nothing else
    // of that layer is needed at any other position.
    let mut tail = Buffers::new(rows.len(), &dims);
    let kv = KvSource::of(prefix, layers.len());
    last_layer_forward(last_layer, &batch, &mut buf, &mut tail, kv)?;
    layer_done(layers.len(), &buf);
    let mut out = vec![0f32; rows.len() * dims.hidden];
    rms_norm_rows(&tail.x, &backbone.norm, &mut out, dims.hidden)?;
    Ok(out)
}

/// Where a layer's attention reads keys and values: the rows' own (in the batch buffers), or a
/// shared prefix's followed by each row's own.
pub(crate) enum KvSource<'p> {
    /// Each row attends to its own tokens only.
    Own,
    /// Each row continues the prefix; `.1` is the layer.
    Prefixed(&'p mut prefix::SharedPrefix, usize),
}

impl<'p> KvSource<'p> {
    fn of(prefix: Option<&'p mut prefix::SharedPrefix>, layer: usize) -> Self {
        match prefix {
            Some(p) => Self::Prefixed(p, layer),
            None => Self::Own,
        }
    }

    /// The keys, values and query runs of attention over `spans` of the batch buffer `b`, for all
    /// queries or (`last_only`) each row's last one stored at row `i` of the query buffer.
    fn resolve<'a>(
        &'a mut self,
        spans: &'a [Span],
        k: &'a [f32],
        v: &'a [f32],
        last_only: bool,
    ) -> (&'a [f32], &'a [f32], Vec<QueryRun>) {
        let (offset, regions, k, v) = match self {
            Self::Own => (0, spans, k, v),
            Self::Prefixed(pre, layer) => {
                pre.assemble(*layer, spans, k, v);
                let (k, v) = pre.assembled();
                (pre.len(), pre.regions(), k, v)
            }
        };
        let runs = spans
            .iter()
            .zip(regions)
            .enumerate()
            .map(|(i, (own, &region))| QueryRun {
                span: region,
                q_row: if last_only { i } else { own.start },
                q0: if last_only {
                    offset + own.len - 1
                } else {
                    offset
                },
                q1: offset + own.len,
            })
            .collect();
        (k, v, runs)
    }
}

/// Copies the embedding row of each token into consecutive rows of `x`.
fn embed<'a>(
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
fn heads(d: &Dims) -> Heads {
    Heads {
        heads: d.heads,
        kv_heads: d.kv_heads,
        head_dim: d.head_dim,
    }
}

/// Activations of one batch, allocated once and reused by every layer.
pub(crate) struct Buffers {
    x: Vec<f32>,
    normed: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn_by_head: Vec<f32>,
    attn: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

impl Buffers {
    fn new(tokens: usize, d: &Dims) -> Self {
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

/// What every layer of one packed pass shares: the shapes, each row's span, the RoPE tables and each
/// token's position.
pub(crate) struct Batch<'a> {
    dims: &'a Dims,
    spans: &'a [Span],
    rope: &'a Rope<'a>,
    positions: &'a [usize],
}

/// One decoder layer over every token of the batch, in place in `b.x`.
pub(crate) fn layer_forward(
    layer: &LayerWeights,
    batch: &Batch,
    b: &mut Buffers,
    mut kv: KvSource,
) -> Result<()> {
    let (d, spans, rope, positions) = (batch.dims, batch.spans, batch.rope, batch.positions);
    let tokens = positions.len();
    rms_norm_rows(&b.x, &layer.input_norm, &mut b.normed, d.hidden)?;
    keys_and_values(layer, d, rope, positions, b)?;
    queries(layer, d, rope, positions, b)?;
    let (k, v, runs) = kv.resolve(spans, &b.k, &b.v, false);
    attention(
        &b.q,
        k,
        v,
        &runs,
        &heads(d),
        &mut b.attn_by_head,
        &mut b.attn,
    );
    linear(&b.attn, &layer.o_proj, &mut b.x, tokens, true)?;
    mlp_forward(layer, d, tokens, b)
}

/// The last layer: keys and values at every position (`b`), the rest only at each row's last token
/// (`tail`, one row per span, taking its residual stream from `b.x`).
pub(crate) fn last_layer_forward(
    layer: &LayerWeights,
    batch: &Batch,
    b: &mut Buffers,
    tail: &mut Buffers,
    mut kv: KvSource,
) -> Result<()> {
    let (d, spans, rope, positions) = (batch.dims, batch.spans, batch.rope, batch.positions);
    let h = d.hidden;
    rms_norm_rows(&b.x, &layer.input_norm, &mut b.normed, h)?;
    keys_and_values(layer, d, rope, positions, b)?;
    for (i, span) in spans.iter().enumerate() {
        let t = span.start + span.len - 1;
        tail.x[i * h..(i + 1) * h].copy_from_slice(&b.x[t * h..(t + 1) * h]);
        tail.normed[i * h..(i + 1) * h].copy_from_slice(&b.normed[t * h..(t + 1) * h]);
    }
    let rows = spans.len();
    let last: Vec<usize> = spans
        .iter()
        .map(|s| positions[s.start + s.len - 1])
        .collect();
    queries(layer, d, rope, &last, tail)?;
    let (k, v, runs) = kv.resolve(spans, &b.k, &b.v, true);
    attention(
        &tail.q,
        k,
        v,
        &runs,
        &heads(d),
        &mut tail.attn_by_head,
        &mut tail.attn,
    );
    linear(&tail.attn, &layer.o_proj, &mut tail.x, rows, true)?;
    mlp_forward(layer, d, rows, tail)
}

/// Queries of the first `positions.len()` rows of `b.normed` (q-normed and rotated to `positions`)
/// into `b.q`.
pub(crate) fn queries(
    layer: &LayerWeights,
    d: &Dims,
    rope: &Rope,
    positions: &[usize],
    b: &mut Buffers,
) -> Result<()> {
    linear(&b.normed, &layer.q_proj, &mut b.q, positions.len(), false)?;
    if let Some(n) = layer.q_norm.as_ref() {
        rms_norm_in_place(
            &mut b.q[..positions.len() * d.heads * d.head_dim],
            n,
            d.head_dim,
        )?;
    }
    apply_rope(&mut b.q, rope, positions, d.heads, d.head_dim);
    Ok(())
}

/// Keys and values of every token from `b.normed` (k-normed and rotated) into `b.k`, `b.v`.
pub(crate) fn keys_and_values(
    layer: &LayerWeights,
    d: &Dims,
    rope: &Rope,
    positions: &[usize],
    b: &mut Buffers,
) -> Result<()> {
    let tokens = positions.len();
    linear(&b.normed, &layer.k_proj, &mut b.k, tokens, false)?;
    linear(&b.normed, &layer.v_proj, &mut b.v, tokens, false)?;
    if let Some(n) = layer.k_norm.as_ref() {
        rms_norm_in_place(&mut b.k, n, d.head_dim)?;
    }
    apply_rope(&mut b.k, rope, positions, d.kv_heads, d.head_dim);
    Ok(())
}

/// The post-attention norm and the gated MLP over the first `rows` rows of `b`, added to `b.x`.
pub(crate) fn mlp_forward(
    layer: &LayerWeights,
    d: &Dims,
    rows: usize,
    b: &mut Buffers,
) -> Result<()> {
    let n = rows * d.hidden;
    rms_norm_rows(
        &b.x[..n],
        &layer.post_attention_norm,
        &mut b.normed[..n],
        d.hidden,
    )?;
    linear(&b.normed, &layer.gate_proj, &mut b.gate, rows, false)?;
    linear(&b.normed, &layer.up_proj, &mut b.up, rows, false)?;
    let m = rows * d.intermediate;
    silu_mul(&mut b.gate[..m], &b.up[..m]);
    linear(&b.gate, &layer.down_proj, &mut b.x, rows, true)
}

/// A read view of a contiguous f32 CPU tensor, without a copy.
pub(crate) struct View<'a> {
    storage: StorageRef<'a>,
    start: usize,
    end: usize,
}

impl<'a> View<'a> {
    fn of(t: &'a Tensor) -> Result<Self> {
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

    fn slice(&self) -> &[f32] {
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
