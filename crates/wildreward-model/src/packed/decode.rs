//! KV-cache decoding on the packed CPU kernels: generation's fast path.
//!
//! A decoding step pushes one token per sample through the model: a handful of rows against every
//! weight matrix, so candle's op-at-a-time path spends its time allocating and dispatching rather
//! than computing. Here the prompt runs once through the packed forward (its keys and values copied
//! to every sample's cache), and each step then reuses fixed buffers: the projections are gemm calls
//! over the step's rows, new keys and values are written in place into per-layer caches laid out
//! like the packed token axis (sample `i` owns rows `i · capacity ..`), and attention is the packed
//! forward's, each sample's query reading its own cached rows.

use super::layers::{keys_and_values, last_states, mlp_forward, queries};
use super::ops::{embed, heads, linear, rms_norm_rows, Buffers, View};
use crate::decoder_weights::DecoderDims as Dims;
use crate::decoder_weights::DecoderWeights;
use candle_core::Result;
use wildreward_kernels::attention::{attention, QueryRun, Span};
use wildreward_kernels::rows::Rope;

/// The decoding state of `rows` samples continuing one shared prompt.
pub struct PackedDecoder<'a> {
    backbone: &'a DecoderWeights,
    dims: Dims,
    rows: usize,
    /// Positions each sample's cache has room for.
    capacity: usize,
    /// Positions filled (the same for every sample).
    len: usize,
    /// Per layer, `[rows · capacity, kv_heads · head_dim]`.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    step: Buffers,
}

impl<'a> PackedDecoder<'a> {
    /// Runs `prompt` once and caches its keys and values for `rows` samples, with room for
    /// `max_new` more positions. Returns the decoder and the next-token logits after the prompt.
    pub fn prefill(
        backbone: &'a DecoderWeights,
        prompt: &[u32],
        rows: usize,
        max_new: usize,
    ) -> Result<(Self, Vec<f32>)> {
        if prompt.is_empty() || rows == 0 {
            candle_core::bail!("decoding needs a non-empty prompt and at least one sample");
        }
        let dims = backbone.dims;
        let capacity = prompt.len() + max_new;
        if capacity > backbone.max_positions() {
            candle_core::bail!(
                "{} prompt tokens + {max_new} new ones exceed the {} positions",
                prompt.len(),
                backbone.max_positions()
            );
        }
        let width = dims.kv_heads * dims.head_dim;
        let layers = backbone.layers.len();
        let mut keys = vec![vec![0f32; rows * capacity * width]; layers];
        let mut values = vec![vec![0f32; rows * capacity * width]; layers];
        let p = prompt.len();
        let hidden = last_states(backbone, &[prompt], |layer, b: &Buffers| {
            for row in 0..rows {
                let at = row * capacity * width;
                keys[layer][at..at + p * width].copy_from_slice(&b.k[..p * width]);
                values[layer][at..at + p * width].copy_from_slice(&b.v[..p * width]);
            }
        })?;
        let logits = lm_logits(backbone, &hidden, 1)?;
        let step = Buffers::new(rows, &dims);
        Ok((
            Self {
                backbone,
                dims,
                rows,
                capacity,
                len: p,
                keys,
                values,
                step,
            },
            logits,
        ))
    }

    /// Positions decoded so far (prompt included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been decoded (never true after [`PackedDecoder::prefill`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds one token per sample; returns the next-token logits, `[rows · vocab]`.
    pub fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.len() != self.rows {
            candle_core::bail!("{} tokens for {} samples", tokens.len(), self.rows);
        }
        if self.len >= self.capacity {
            candle_core::bail!("the decoder is full ({} positions)", self.capacity);
        }
        let (d, rows, pos) = (&self.dims, self.rows, self.len);
        let width = d.kv_heads * d.head_dim;
        let b = &mut self.step;
        embed(self.backbone, tokens.iter(), &mut b.x)?;
        let (cos, sin) = (&self.backbone.rope_cos, &self.backbone.rope_sin);
        let (cos, sin) = (View::of(cos)?, View::of(sin)?);
        let rope = Rope {
            cos: cos.slice(),
            sin: sin.slice(),
        };
        let positions = vec![pos; rows];
        let runs: Vec<QueryRun> = (0..rows)
            .map(|i| QueryRun {
                span: Span {
                    start: i * self.capacity,
                    len: pos + 1,
                },
                q_row: i,
                q0: pos,
                q1: pos + 1,
            })
            .collect();
        for (l, layer) in self.backbone.layers.iter().enumerate() {
            rms_norm_rows(&b.x, &layer.input_norm, &mut b.normed, d.hidden)?;
            keys_and_values(layer, d, &rope, &positions, b)?;
            for i in 0..rows {
                let at = (i * self.capacity + pos) * width;
                self.keys[l][at..at + width].copy_from_slice(&b.k[i * width..(i + 1) * width]);
                self.values[l][at..at + width].copy_from_slice(&b.v[i * width..(i + 1) * width]);
            }
            queries(layer, d, &rope, &positions, b)?;
            attention(
                &b.q,
                &self.keys[l],
                &self.values[l],
                &runs,
                &heads(d),
                &mut b.attn_by_head,
                &mut b.attn,
            );
            linear(&b.attn, &layer.o_proj, &mut b.x, rows, true)?;
            mlp_forward(layer, d, rows, b)?;
        }
        self.len += 1;
        let mut hidden = vec![0f32; rows * d.hidden];
        rms_norm_rows(&b.x, &self.backbone.norm, &mut hidden, d.hidden)?;
        lm_logits(self.backbone, &hidden, rows)
    }
}

/// `[rows · vocab]` logits of final-norm hidden states through the LM head.
fn lm_logits(backbone: &DecoderWeights, hidden: &[f32], rows: usize) -> Result<Vec<f32>> {
    let Some(head) = backbone.lm_head.as_ref() else {
        candle_core::bail!("this checkpoint has no LM head (an untied classifier)");
    };
    let vocab = head.weight.dim(0)?;
    let mut logits = vec![0f32; rows * vocab];
    linear(hidden, head, &mut logits, rows, false)?;
    Ok(logits)
}
