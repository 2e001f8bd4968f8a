//! The Llama-family decoder (Llama 2/3, SmolLM2, Mistral, Qwen2/2.5, Qwen3), written with
//! differentiable candle ops, returning the final hidden states of a right-padded batch; plus a
//! KV-cache path and the LM head for generation. Tensor names are the HF checkpoint's.

use crate::config::ModelConfig;
use crate::decoder_weights::{DecoderDims, DecoderWeights, LayerWeights};
use crate::nn::{inv_freq, Kernels, Linear, RmsNorm, Rotary};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use layer::{last_token_rows, DecoderLayer, Mask};
use std::collections::HashMap;
use std::sync::Arc;
use wildreward_kernels::Bf16Kernel;
use wildreward_nodes::{causal_padding_mask, AttentionMask};

mod cache;
mod layer;

pub use cache::KvCache;

/// The decoder: embeddings, blocks, final norm, and (for generation) the LM head.
#[derive(Debug, Clone)]
pub struct Backbone {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Option<Linear>,
    rotary: Rotary,
    hidden_size: usize,
    dtype: DType,
    device: Device,
}

impl Backbone {
    /// Makes every layer projection multiply by its quantized weight in `quantized` (by HF weight
    /// name, `model.layers.{i}.self_attn.q_proj.weight`, …) from now on, for scoring straight from a
    /// GGUF's quantized weights. Fails, changing nothing, unless every projection has one shaped as
    /// its own.
    pub fn use_quantized(&mut self, quantized: &HashMap<String, Arc<QTensor>>) -> Result<()> {
        let mut found = Vec::new();
        let mut missing = 0;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (j, (name, linear)) in layer.linears_mut().into_iter().enumerate() {
                let key = format!("model.layers.{i}.{name}.weight");
                let Some(q) = quantized.get(&key) else {
                    missing += 1;
                    continue;
                };
                if q.shape().dims() != linear.weight().dims() {
                    candle_core::bail!(
                        "{key}: the quantized weight is {:?}, the model's {:?}",
                        q.shape().dims(),
                        linear.weight().dims()
                    );
                }
                found.push((i, j, QMatMul::from_arc(q.clone())?));
            }
        }
        if missing > 0 {
            candle_core::bail!(
                "{} of the {} layer projections have quantized weights",
                found.len(),
                found.len() + missing
            );
        }
        for (i, j, q) in found {
            if let Some((_, linear)) = self.layers[i].linears_mut().into_iter().nth(j) {
                linear.set_quantized(q);
            }
        }
        Ok(())
    }

    /// Mixed-precision training on the CPU: every layer projection (and the LM head) runs its
    /// training node's forward and backward products on `kernel` with bf16 operands and f32 sums,
    /// the weights, gradients and optimiser state staying f32 (PyTorch's bf16 autocast does the
    /// same to its matmuls). Norms, attention, the loss and the head stay f32. `None` turns it off.
    pub fn use_bf16_training(&mut self, kernel: Option<Bf16Kernel>) {
        for layer in &mut self.layers {
            for (_, linear) in layer.linears_mut() {
                linear.set_train_bf16(kernel);
            }
        }
        if let Some(head) = &mut self.lm_head {
            head.set_train_bf16(kernel);
        }
    }

    /// Loads `model.*` (and `lm_head.weight` when untied and present) from `vb`.
    pub fn load(vb: VarBuilder, cfg: &ModelConfig, kernels: Kernels) -> Result<Self> {
        let arch = cfg
            .validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let m = vb.pp("model");
        let embed_tokens = m.get((cfg.vocab_size, cfg.hidden_size), "embed_tokens.weight")?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(m.pp(format!("layers.{i}")), cfg, arch, kernels))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(m.pp("norm"), cfg.hidden_size, cfg.rms_norm_eps, kernels)?;
        // Tied: the embedding matrix itself (shared, not copied). Untied and absent (a classifier): none.
        let lm_head = if cfg.tie_word_embeddings {
            Some(Linear::from_weights(embed_tokens.clone(), None))
        } else if vb.contains_tensor("lm_head.weight") {
            Some(Linear::load(
                vb.pp("lm_head"),
                cfg.hidden_size,
                cfg.vocab_size,
                false,
            )?)
        } else {
            None
        };
        let max_pos = cfg.max_position_embeddings.unwrap_or(4096).min(131_072);
        let rotary = Rotary::new(&inv_freq(cfg), max_pos, vb.dtype(), vb.device())?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            hidden_size: cfg.hidden_size,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// The `[vocab, hidden]` token embeddings.
    pub fn embeddings(&self) -> &Tensor {
        &self.embed_tokens
    }

    /// Final hidden states at each row's last token, `[rows, hidden]`, for unpadded rows of token ids,
    /// through this (candle) path: the rows right-padded into one batch, [`Backbone::forward`], then
    /// [`Backbone::last_token`]. The packed CPU forward gives the same numbers faster where it runs
    /// ([`crate::packed::PackedCpu`]); [`crate::backend::select`] picks between them.
    pub fn last_hidden_padded(&self, rows: &[&[u32]]) -> Result<Tensor> {
        let (ids, lengths) = self.pad_rows(rows)?;
        let hidden = self.forward(&ids, &lengths)?;
        Self::last_token(&hidden, &lengths)
    }

    /// Right-pads `rows` into one `[rows, longest]` id matrix (pad id 0: padded positions are
    /// masked and never read) with their lengths.
    pub(crate) fn pad_rows(&self, rows: &[&[u32]]) -> Result<(Tensor, Vec<usize>)> {
        let longest = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        if longest == 0 {
            candle_core::bail!("no tokens to run");
        }
        let mut flat = Vec::with_capacity(rows.len() * longest);
        for r in rows {
            flat.extend_from_slice(r);
            flat.extend(std::iter::repeat_n(0u32, longest - r.len()));
        }
        let ids = Tensor::from_vec(flat, (rows.len(), longest), &self.device)?;
        Ok((ids, rows.iter().map(|r| r.len()).collect()))
    }

    /// The weights as plain data (sharing storage: in-place updates are seen), for the packed CPU
    /// forward; `None` unless every tensor is f32 on the CPU and no projection has a LoRA adapter
    /// or a quantized copy (what that forward reads).
    pub fn decoder_weights(&self) -> Option<DecoderWeights> {
        if !matches!(self.device, Device::Cpu) || self.dtype != DType::F32 {
            return None;
        }
        let layers = self
            .layers
            .iter()
            .map(DecoderLayer::weights)
            .collect::<Option<Vec<LayerWeights>>>()?;
        let lm_head = match &self.lm_head {
            Some(head) => Some(head.plain()?),
            None => None,
        };
        let (heads, kv_heads, head_dim) = self.layers.first()?.head_counts();
        let intermediate = layers.first()?.gate_proj.weight.dim(0).ok()?;
        let (cos, sin) = self.rotary.tables();
        Some(DecoderWeights {
            embed_tokens: self.embed_tokens.clone(),
            layers,
            norm: self.norm.plain(),
            lm_head,
            rope_cos: cos.clone(),
            rope_sin: sin.clone(),
            dims: DecoderDims {
                hidden: self.hidden_size,
                heads,
                kv_heads,
                head_dim,
                intermediate,
            },
        })
    }

    /// Model width.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// Longest sequence the position tables cover.
    pub fn max_positions(&self) -> usize {
        self.rotary.max_positions()
    }

    /// The dtype of the weights and activations.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Where the weights live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        self.embed_tokens
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, l, self.hidden_size))
    }

    /// The attention mask of a full-sequence forward of a right-padded batch (none for one token),
    /// with the one-node attention's form when training on the CPU.
    fn mask(&self, lengths: &[usize], l: usize) -> Result<Option<Mask>> {
        Ok(if l > 1 {
            let tensor = causal_padding_mask(lengths, l, 0, self.dtype, &self.device)?;
            let trains = self
                .layers
                .first()
                .is_some_and(|layer| layer.kernels() == Kernels::Differentiable);
            let node = if trains
                && matches!(self.device, Device::Cpu)
                && matches!(self.dtype, DType::F32 | DType::F64)
            {
                Some(AttentionMask::new(&tensor)?)
            } else {
                None
            };
            Some(Mask { tensor, node })
        } else {
            None
        })
    }

    /// Final hidden states at each row's last real token, `[batch, hidden]`, differentiable: the
    /// numbers of [`Backbone::forward`] then [`Backbone::last_token`], which is all a reward head
    /// reads. On the CPU training path the last layer runs its query, output projection and MLP at
    /// those tokens only (its keys and values still cover every position): one layer's worth of
    /// work for the other tokens, forward and backward, is skipped.
    pub fn forward_last(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        self.forward_batch(ids, lengths, true)
    }

    /// Final hidden states `[batch, seq, hidden]` of a right-padded batch `ids` `[batch, seq]` whose
    /// rows have `lengths` real tokens. Real positions are exactly what each row alone would give.
    pub fn forward(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        self.forward_batch(ids, lengths, false)
    }

    /// The full-sequence forward of a right-padded batch; with `last_only`, only each row's last
    /// token's final state (`[batch, hidden]`).
    fn forward_batch(&self, ids: &Tensor, lengths: &[usize], last_only: bool) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        self.check_batch(b, l, lengths)?;
        self.blocks_from(self.embed(ids)?, lengths, 0, last_only)
    }

    /// The residual stream after the first `layers` blocks (no final norm), `[batch, seq,
    /// hidden]`, of a right-padded batch: the trunk that models sharing those blocks compute once
    /// ([`crate::forward::Trunk`]), and what a last-N-layers trainer caches.
    pub fn hidden_after(&self, ids: &Tensor, lengths: &[usize], layers: usize) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        self.check_batch(b, l, lengths)?;
        if layers > self.layers.len() {
            candle_core::bail!("the model has {} blocks, not {layers}", self.layers.len());
        }
        let mask = self.mask(lengths, l)?;
        let mut x = self.embed(ids)?;
        for layer in &self.layers[..layers] {
            x = layer.forward(&x, &self.rotary, 0, mask.as_ref(), None)?;
        }
        Ok(x)
    }

    /// [`Backbone::forward_last`] continuing from `x` `[batch, seq, hidden]`, the residual stream
    /// after the first `start` blocks ([`Backbone::hidden_after`]): the final state at each row's
    /// last token, differentiable through the blocks from `start` on.
    pub fn forward_last_from(&self, x: &Tensor, lengths: &[usize], start: usize) -> Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        self.check_batch(b, l, lengths)?;
        if h != self.hidden_size || start > self.layers.len() {
            candle_core::bail!(
                "cannot continue a [{b}, {l}, {h}] stream after block {start} of a model with {} \
                 blocks of width {}",
                self.layers.len(),
                self.hidden_size
            );
        }
        self.blocks_from(x.clone(), lengths, start, true)
    }

    /// Refuses lengths that do not fit a `[b, l]` batch or positions past the model's.
    fn check_batch(&self, b: usize, l: usize, lengths: &[usize]) -> Result<()> {
        if lengths.len() != b || lengths.iter().any(|&n| n == 0 || n > l) {
            candle_core::bail!("lengths {lengths:?} do not fit a batch of {b} rows of {l} tokens");
        }
        if l > self.max_positions() {
            candle_core::bail!(
                "sequence of {l} tokens exceeds the {} positions",
                self.max_positions()
            );
        }
        Ok(())
    }

    /// Blocks `start..` over the residual stream `x` `[batch, seq, hidden]`, then the final norm.
    fn blocks_from(
        &self,
        mut x: Tensor,
        lengths: &[usize],
        start: usize,
        last_only: bool,
    ) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let mask = self.mask(lengths, l)?;
        // The last layer at the last tokens only on the one-node path (CPU training); elsewhere the
        // full forward and a gather.
        let nodes = mask.as_ref().is_some_and(|m| m.node.is_some());
        let blocks = self.layers.get(start..).unwrap_or(&[]);
        let (layers, last) = match blocks.split_last() {
            Some((last, rest)) if last_only && nodes => (rest, Some(last)),
            _ => (blocks, None),
        };
        for layer in layers {
            x = layer.forward(&x, &self.rotary, 0, mask.as_ref(), None)?;
        }
        match last {
            Some(last) => {
                let x = last.forward_last(&x, &self.rotary, lengths)?;
                self.norm.forward(&x)?.reshape((b, self.hidden_size))
            }
            None if last_only => Self::last_token(&self.norm.forward(&x)?, lengths),
            None => self.norm.forward(&x),
        }
    }

    /// Hidden states for `ids` `[batch, new]` continuing the cached positions (all rows the same
    /// length, as when sampling several answers to one prompt); appends to `cache`.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let offset = cache.len;
        if offset + t > self.max_positions() {
            candle_core::bail!(
                "{} tokens exceed the {} positions",
                offset + t,
                self.max_positions()
            );
        }
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![None; self.layers.len()];
        }
        // Rows share one length (no padding), so a single mask row broadcasts over the batch.
        let mask = if t > 1 {
            Some(Mask {
                tensor: causal_padding_mask(&[offset + t], t, offset, self.dtype, &self.device)?,
                node: None,
            })
        } else {
            None
        };
        let mut x = self.embed(ids)?;
        for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward(&x, &self.rotary, offset, mask.as_ref(), Some(slot))?;
        }
        cache.len += t;
        self.norm.forward(&x)
    }

    /// Next-token logits from hidden states `[…, hidden]` through the LM head (the embedding matrix
    /// when tied). Errors for an untied checkpoint saved without its LM head (a classifier).
    pub fn lm_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => candle_core::bail!("this checkpoint has no LM head (an untied classifier)"),
        }
    }

    /// Gathers each row's hidden state at its last real token: `[batch, seq, hidden]` → `[batch,
    /// hidden]` (differentiable).
    pub fn last_token(hidden: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (b, l, h) = hidden.dims3()?;
        let idx = last_token_rows(lengths, (b, l), hidden.device())?;
        hidden.reshape((b * l, h))?.index_select(&idx, 0)
    }
}
