//! The packed forward's layer walk: every decoder block over the rows concatenated on one token
//! axis (keys and values from the rows' own tokens, or a shared prefix's followed by them), the last
//! block at each row's last token only. A walk can also stop after some blocks (the residual stream
//! of every token: a trunk several models share) or start from such a stream.

use super::ops::{embed, heads, linear, rms_norm_in_place, rms_norm_rows, Buffers, View};
use super::prefix::SharedPrefix;
use crate::decoder_weights::{DecoderDims as Dims, DecoderWeights, LayerWeights};
use candle_core::Result;
use wildreward_kernels::attention::{attention, QueryRun, Span};
use wildreward_kernels::rows::{apply_rope, silu_mul, Rope};

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
pub(super) fn run_rows(
    backbone: &DecoderWeights,
    rows: &[&[u32]],
    prefix: Option<&mut SharedPrefix>,
    layer_done: impl FnMut(usize, &Buffers),
) -> Result<Vec<f32>> {
    walk(
        backbone,
        Entry::Ids(rows),
        prefix,
        Exit::LastTokens,
        layer_done,
    )
}

/// Where a walk enters the decoder.
pub(crate) enum Entry<'a> {
    /// Token ids, embedded.
    Ids(&'a [&'a [u32]]),
    /// The residual stream after the first `layer` blocks of rows `lens` long, concatenated
    /// (`[tokens, hidden]`), as an [`Exit::After`] walk left it.
    States {
        lens: &'a [usize],
        x: &'a [f32],
        layer: usize,
    },
}

/// Where a walk leaves the decoder.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Through every block and the final norm, at each row's last token: `[rows · hidden]`.
    LastTokens,
    /// After the first `n` blocks (no final norm), at every token: `[tokens · hidden]`.
    After(usize),
}

/// Runs blocks from `entry` to `exit` over the rows concatenated; `layer_done(i, …)` after block `i`
/// (absolute index). With `prefix`, the rows continue it and attend to its keys and values, which it
/// must hold for every block the walk runs.
pub(super) fn walk(
    backbone: &DecoderWeights,
    entry: Entry,
    mut prefix: Option<&mut SharedPrefix>,
    exit: Exit,
    mut layer_done: impl FnMut(usize, &Buffers),
) -> Result<Vec<f32>> {
    let dims = backbone.dims;
    let n_layers = backbone.layers.len();
    let offset = prefix.as_ref().map_or(0, |p| p.len());
    let lens: Vec<usize> = match &entry {
        Entry::Ids(rows) => rows.iter().map(|r| r.len()).collect(),
        Entry::States { lens, .. } => lens.to_vec(),
    };
    let mut spans = Vec::with_capacity(lens.len());
    let mut positions = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        if len == 0 || offset + len > backbone.max_positions() {
            candle_core::bail!(
                "row {i} has {} tokens; the model takes 1 to {}",
                offset + len,
                backbone.max_positions()
            );
        }
        spans.push(Span {
            start: positions.len(),
            len,
        });
        positions.extend(offset..offset + len);
    }
    let mut buf = Buffers::new(positions.len(), &dims);
    let first = match entry {
        Entry::Ids(rows) => {
            embed(backbone, rows.iter().flat_map(|r| r.iter()), &mut buf.x)?;
            0
        }
        Entry::States { x, layer, .. } => {
            if x.len() != buf.x.len() {
                candle_core::bail!(
                    "{} residual values for {} tokens of width {}",
                    x.len(),
                    positions.len(),
                    dims.hidden
                );
            }
            buf.x.copy_from_slice(x);
            layer
        }
    };
    let last = match exit {
        Exit::LastTokens => n_layers,
        Exit::After(n) => n,
    };
    if n_layers == 0 || first > last || last > n_layers {
        candle_core::bail!("cannot run blocks {first}..{last} of a model with {n_layers}");
    }
    let (cos, sin) = (&backbone.rope_cos, &backbone.rope_sin);
    let (cos, sin) = (View::of(cos)?, View::of(sin)?);
    let rope = Rope {
        cos: cos.slice(),
        sin: sin.slice(),
    };
    let batch = Batch {
        dims: &dims,
        spans: &spans,
        rope: &rope,
        positions: &positions,
    };
    // Every token's state leaves an `After` walk; a `LastTokens` walk needs only the last
    // block's keys and values at the other positions, so that block runs the rest at each row's
    // last token.
    let full = match exit {
        Exit::After(n) => n,
        Exit::LastTokens => n_layers - 1,
    };
    for i in first..full {
        let kv = KvSource::of(prefix.as_deref_mut(), i);
        layer_forward(&backbone.layers[i], &batch, &mut buf, kv)?;
        layer_done(i, &buf);
    }
    if let Exit::After(_) = exit {
        return Ok(buf.x);
    }
    let mut tail = Buffers::new(lens.len(), &dims);
    if first < n_layers {
        let kv = KvSource::of(prefix, n_layers - 1);
        last_layer_forward(
            &backbone.layers[n_layers - 1],
            &batch,
            &mut buf,
            &mut tail,
            kv,
        )?;
        layer_done(n_layers - 1, &buf);
    } else {
        // Entered past every block: only the final norm is left.
        let h = dims.hidden;
        for (i, span) in spans.iter().enumerate() {
            let t = span.start + span.len - 1;
            tail.x[i * h..(i + 1) * h].copy_from_slice(&buf.x[t * h..(t + 1) * h]);
        }
    }
    let mut out = vec![0f32; lens.len() * dims.hidden];
    rms_norm_rows(&tail.x, &backbone.norm, &mut out, dims.hidden)?;
    Ok(out)
}

/// Where a layer's attention reads keys and values: the rows' own (in the batch buffers), or a
/// shared prefix's followed by each row's own.
pub(crate) enum KvSource<'p> {
    /// Each row attends to its own tokens only.
    Own,
    /// Each row continues the prefix; `.1` is the layer.
    Prefixed(&'p mut SharedPrefix, usize),
}

impl<'p> KvSource<'p> {
    fn of(prefix: Option<&'p mut SharedPrefix>, layer: usize) -> Self {
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

/// Runs `prefix` through the model once and keeps its keys and values at every layer.
pub(super) fn shared_prefix(weights: &DecoderWeights, prefix: &[u32]) -> Result<SharedPrefix> {
    Ok(prefix_walk(weights, Entry::Ids(&[prefix]), Exit::LastTokens)?.0)
}

/// Runs a shared prefix (one row) from `entry` to `exit`, keeping its keys and values at every
/// block it runs (the other blocks' stay empty); also returns what the walk returns (the prefix's
/// residual stream for an [`Exit::After`] walk).
pub(super) fn prefix_walk(
    weights: &DecoderWeights,
    entry: Entry,
    exit: Exit,
) -> Result<(SharedPrefix, Vec<f32>)> {
    let len = match &entry {
        Entry::Ids(rows) => rows.first().map_or(0, |r| r.len()),
        Entry::States { lens, .. } => lens.first().copied().unwrap_or(0),
    };
    let layers = weights.layers.len();
    let mut keys = vec![Vec::new(); layers];
    let mut values = vec![Vec::new(); layers];
    let out = walk(weights, entry, None, exit, |layer, b: &Buffers| {
        keys[layer] = b.k.clone();
        values[layer] = b.v.clone();
    })?;
    Ok((SharedPrefix::new(len, keys, values), out))
}
