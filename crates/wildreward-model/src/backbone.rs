//! The Llama-family decoder (Llama 2/3, SmolLM2, Mistral, Qwen2/2.5, Qwen3), written with
//! differentiable candle ops, returning the final hidden states of a right-padded batch; plus a
//! KV-cache path and the LM head for generation. Tensor names are the HF checkpoint's.

use crate::config::{Architecture, ModelConfig};
use crate::nn::{inv_freq, softmax_last, Kernels, Linear, RmsNorm, Rotary};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::sync::Arc;
use wildreward_kernels::Bf16Kernel;
use wildreward_nodes as nodes;
use wildreward_nodes::{causal_padding_mask, masked_attention, AttentionMask};

/// Keys and values of earlier positions, one entry per layer, for incremental decoding. Each layer's
/// keys and values live in buffers with room to spare (`[batch, kv_heads, capacity, head_dim]`), filled
/// in place, so a decoding step copies only its new position instead of the whole cache.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    len: usize,
}

/// One layer's key and value buffers; positions `0..len` are filled.
#[derive(Debug, Clone)]
struct LayerCache {
    k: Tensor,
    v: Tensor,
    len: usize,
}

/// Positions added to a cache buffer whenever it runs out of room.
const CACHE_CHUNK: usize = 256;

impl LayerCache {
    /// Appends `k`, `v` (`[batch, kv_heads, new, head_dim]`) and returns views of every cached
    /// position.
    fn append(slot: &mut Option<Self>, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, kv, t, hd) = k.dims4()?;
        let len = slot.as_ref().map_or(0, |c| c.len);
        let capacity = slot.as_ref().map_or(0, |c| c.k.dim(2).unwrap_or(0));
        if len + t > capacity {
            let capacity = (len + t).div_ceil(CACHE_CHUNK) * CACHE_CHUNK;
            let grown = |old: Option<&Tensor>| -> Result<Tensor> {
                let buf = Tensor::zeros((b, kv, capacity, hd), k.dtype(), k.device())?;
                if let Some(old) = old {
                    buf.slice_set(&old.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
                }
                Ok(buf)
            };
            let (k_buf, v_buf) = (
                grown(slot.as_ref().map(|c| &c.k))?,
                grown(slot.as_ref().map(|c| &c.v))?,
            );
            *slot = Some(Self {
                k: k_buf,
                v: v_buf,
                len,
            });
        }
        let Some(cache) = slot.as_mut() else {
            candle_core::bail!("KV cache slot is empty after allocation");
        };
        cache.k.slice_set(&k.contiguous()?, 2, len)?;
        cache.v.slice_set(&v.contiguous()?, 2, len)?;
        cache.len = len + t;
        Ok((
            cache.k.narrow(2, 0, cache.len)?,
            cache.v.narrow(2, 0, cache.len)?,
        ))
    }
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Repeats a single-row cache `n` times along the batch, so `n` samples share one prompt pass.
    pub fn expand_batch(&mut self, n: usize) -> Result<()> {
        for c in self.layers.iter_mut().flatten() {
            c.k = c.k.repeat((n, 1, 1, 1))?;
            c.v = c.v.repeat((n, 1, 1, 1))?;
        }
        Ok(())
    }
}

/// Multi-head attention with grouped key/value heads and rotary positions.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    kernels: Kernels,
}

impl Attention {
    fn load(
        vb: VarBuilder,
        cfg: &ModelConfig,
        arch: Architecture,
        kernels: Kernels,
    ) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_kv_heads());
        let bias = cfg.qkv_bias();
        let lora = cfg.wildreward_lora_scale;
        let (q_norm, k_norm) = if arch == Architecture::Qwen3 {
            let eps = cfg.rms_norm_eps;
            (
                Some(RmsNorm::load(vb.pp("q_norm"), hd, eps, kernels)?),
                Some(RmsNorm::load(vb.pp("k_norm"), hd, eps, kernels)?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            q_proj: Linear::load_adapted(vb.pp("q_proj"), h, nh * hd, bias, lora)?,
            k_proj: Linear::load_adapted(vb.pp("k_proj"), h, nkv * hd, bias, lora)?,
            v_proj: Linear::load_adapted(vb.pp("v_proj"), h, nkv * hd, bias, lora)?,
            // Only Llama-style `attention_bias: true` puts a bias on the output projection.
            o_proj: Linear::load_adapted(
                vb.pp("o_proj"),
                nh * hd,
                h,
                cfg.attention_bias == Some(true),
                lora,
            )?,
            q_norm,
            k_norm,
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            kernels,
        })
    }

    /// `(heads, kv_heads, head_dim)`.
    pub(crate) fn head_counts(&self) -> (usize, usize, usize) {
        (self.n_heads, self.n_kv_heads, self.head_dim)
    }

    pub(crate) fn q_proj(&self) -> &Linear {
        &self.q_proj
    }

    pub(crate) fn k_proj(&self) -> &Linear {
        &self.k_proj
    }

    pub(crate) fn v_proj(&self) -> &Linear {
        &self.v_proj
    }

    pub(crate) fn o_proj(&self) -> &Linear {
        &self.o_proj
    }

    /// Qwen3's per-head query and key norms.
    pub(crate) fn qk_norms(&self) -> (Option<&RmsNorm>, Option<&RmsNorm>) {
        (self.q_norm.as_ref(), self.k_norm.as_ref())
    }

    /// `[b, l, heads·hd]` → `[b, heads, l, hd]`, with the per-head norm when the model has one.
    fn split_heads(&self, x: Tensor, heads: usize, norm: Option<&RmsNorm>) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let x = x.reshape((b, l, heads, self.head_dim))?;
        let x = match norm {
            Some(n) => n.forward(&x)?,
            None => x,
        };
        x.transpose(1, 2)?.contiguous()
    }

    /// Training on the CPU: the projections' `[b, l, heads · hd]` layout straight through the RoPE
    /// and attention nodes, with no reshapes, transposes or copies in the graph (each would cost a
    /// zero-fill and an add in candle's backward); see [`wildreward_nodes`] and [`wildreward_nodes::attention`].
    fn forward_nodes(&self, x: &Tensor, rotary: &Rotary, mask: &AttentionMask) -> Result<Tensor> {
        let q = rotary.apply_node(&self.project(&self.q_proj, x, self.q_norm.as_ref())?)?;
        let k = rotary.apply_node(&self.project(&self.k_proj, x, self.k_norm.as_ref())?)?;
        let v = self.project(&self.v_proj, x, None)?;
        self.o_proj
            .forward(&masked_attention(&q, &k, &v, mask, self.head_dim)?)
    }

    /// Like [`Attention::forward_nodes`] for one query per row, that row's last token (`x_last`
    /// `[b, 1, hidden]`, at position `lengths[row] − 1`), over the keys of all of `x`'s positions.
    fn forward_last_nodes(
        &self,
        x: &Tensor,
        x_last: &Tensor,
        rotary: &Rotary,
        lengths: &[usize],
    ) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let k = rotary.apply_node(&self.project(&self.k_proj, x, self.k_norm.as_ref())?)?;
        let v = self.project(&self.v_proj, x, None)?;
        let q = self.project(&self.q_proj, x_last, self.q_norm.as_ref())?;
        // Each row's query at its own position: the rows as the node's positions, one table row each.
        let width = q.dim(2)?;
        let q = rotary
            .apply_node_at(&q.reshape((1, b, width))?, lengths)?
            .reshape((b, 1, width))?;
        let mask = causal_padding_mask(lengths, 1, l - 1, x.dtype(), x.device())?;
        let out = masked_attention(&q, &k, &v, &AttentionMask::new(&mask)?, self.head_dim)?;
        self.o_proj.forward(&out)
    }

    /// A projection in the `[b, l, heads · hd]` layout, with Qwen3's per-head norm (runs of `hd`).
    fn project(&self, proj: &Linear, x: &Tensor, norm: Option<&RmsNorm>) -> Result<Tensor> {
        let y = proj.forward(x)?;
        match norm {
            Some(norm) => nodes::rms_norm(&y, norm.weight(), norm.eps()),
            None => Ok(y),
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        offset: usize,
        mask: Option<&Mask>,
        cache: Option<&mut Option<LayerCache>>,
    ) -> Result<Tensor> {
        if let Some(node) = mask.and_then(|m| m.node.as_ref()) {
            // Built only for a full-sequence forward (offset 0, no cache).
            return self.forward_nodes(x, rotary, node);
        }
        let (b, l, _) = x.dims3()?;
        let q = self.split_heads(self.q_proj.forward(x)?, self.n_heads, self.q_norm.as_ref())?;
        let k = self.split_heads(
            self.k_proj.forward(x)?,
            self.n_kv_heads,
            self.k_norm.as_ref(),
        )?;
        let v = self.split_heads(self.v_proj.forward(x)?, self.n_kv_heads, None)?;
        let q = rotary.apply(&q, offset, self.kernels)?;
        let k = rotary.apply(&k, offset, self.kernels)?;
        let (k, v) = match cache {
            Some(slot) => LayerCache::append(slot, &k, &v)?,
            None => (k, v),
        };
        // Grouped-query attention without copying keys and values per query head: the `n_rep` query
        // heads that share a key/value head are stacked as extra query rows of that group
        // (`[b, kv, n_rep·l, hd]`; head h = g·n_rep + r is rows r·l.. of group g).
        let n_rep = self.n_heads / self.n_kv_heads;
        let keys = k.dim(2)?;
        let q = (q * (1.0 / (self.head_dim as f64).sqrt()))?.reshape((
            b,
            self.n_kv_heads,
            n_rep * l,
            self.head_dim,
        ))?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(m) => scores
                .reshape((b, self.n_kv_heads, n_rep, l, keys))?
                .broadcast_add(&m.tensor.unsqueeze(2)?)?
                .reshape((b, self.n_kv_heads, n_rep * l, keys))?,
            None => scores,
        };
        let out = softmax_last(&scores, self.kernels)?.matmul(&v)?;
        let out = out.reshape((b, self.n_heads, l, self.head_dim))?;
        let out = out
            .transpose(1, 2)?
            .reshape((b, l, self.n_heads * self.head_dim))?;
        self.o_proj.forward(&out)
    }
}

/// The gated MLP: `down(silu(gate(x)) · up(x))`.
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let lora = cfg.wildreward_lora_scale;
        Ok(Self {
            gate_proj: Linear::load_adapted(vb.pp("gate_proj"), h, i, false, lora)?,
            up_proj: Linear::load_adapted(vb.pp("up_proj"), h, i, false, lora)?,
            down_proj: Linear::load_adapted(vb.pp("down_proj"), i, h, false, lora)?,
        })
    }
}

impl Mlp {
    pub(crate) fn gate(&self) -> &Linear {
        &self.gate_proj
    }

    pub(crate) fn up(&self) -> &Linear {
        &self.up_proj
    }

    pub(crate) fn down(&self) -> &Linear {
        &self.down_proj
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (gate, up) = (self.gate_proj.forward(x)?, self.up_proj.forward(x)?);
        let product = if nodes::applies(&gate) {
            nodes::silu_mul(&gate, &up)?
        } else {
            (gate.silu()? * up)?
        };
        self.down_proj.forward(&product)
    }
}

/// One pre-norm decoder block.
#[derive(Debug, Clone)]
pub(crate) struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn load(
        vb: VarBuilder,
        cfg: &ModelConfig,
        arch: Architecture,
        kernels: Kernels,
    ) -> Result<Self> {
        let eps = cfg.rms_norm_eps;
        Ok(Self {
            input_layernorm: RmsNorm::load(
                vb.pp("input_layernorm"),
                cfg.hidden_size,
                eps,
                kernels,
            )?,
            self_attn: Attention::load(vb.pp("self_attn"), cfg, arch, kernels)?,
            post_attention_layernorm: RmsNorm::load(
                vb.pp("post_attention_layernorm"),
                cfg.hidden_size,
                eps,
                kernels,
            )?,
            mlp: Mlp::load(vb.pp("mlp"), cfg)?,
        })
    }

    pub(crate) fn attention(&self) -> &Attention {
        &self.self_attn
    }

    pub(crate) fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    pub(crate) fn input_norm(&self) -> &RmsNorm {
        &self.input_layernorm
    }

    pub(crate) fn post_attention_norm(&self) -> &RmsNorm {
        &self.post_attention_layernorm
    }

    /// Every projection of the block with its HF name under the layer (`self_attn.q_proj`, …).
    fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            ("self_attn.q_proj", &mut a.q_proj),
            ("self_attn.k_proj", &mut a.k_proj),
            ("self_attn.v_proj", &mut a.v_proj),
            ("self_attn.o_proj", &mut a.o_proj),
            ("mlp.gate_proj", &mut m.gate_proj),
            ("mlp.up_proj", &mut m.up_proj),
            ("mlp.down_proj", &mut m.down_proj),
        ]
    }

    /// Every projection of the block.
    pub(crate) fn linears(&self) -> impl Iterator<Item = &Linear> {
        let a = &self.self_attn;
        let m = &self.mlp;
        [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ]
        .into_iter()
    }

    fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        offset: usize,
        mask: Option<&Mask>,
        cache: Option<&mut Option<LayerCache>>,
    ) -> Result<Tensor> {
        let attn = self.self_attn.forward(
            &self.input_layernorm.forward(x)?,
            rotary,
            offset,
            mask,
            cache,
        )?;
        self.residual_mlp(x, &attn)
    }

    /// The block after attention: the residual add, then the MLP on its norm, added in turn.
    fn residual_mlp(&self, x: &Tensor, attn: &Tensor) -> Result<Tensor> {
        let x = (x + attn)?;
        let mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&x)?)?;
        x + mlp
    }
}

impl DecoderLayer {
    /// The block's output at each row's last token only, `[b, 1, hidden]` (the CPU training path):
    /// keys and values from every position of `x`, the query, output projection and MLP at the last.
    fn forward_last(&self, x: &Tensor, rotary: &Rotary, lengths: &[usize]) -> Result<Tensor> {
        let (b, l, h) = x.dims3()?;
        let idx = last_token_rows(lengths, (b, l), x.device())?;
        let x_last = x
            .reshape((b * l, h))?
            .index_select(&idx, 0)?
            .reshape((b, 1, h))?;
        let attn = self.self_attn.forward_last_nodes(
            &self.input_layernorm.forward(x)?,
            &self.input_layernorm.forward(&x_last)?,
            rotary,
            lengths,
        )?;
        self.residual_mlp(&x_last, &attn)
    }
}

/// The row of each sequence's last real token in a `[batch, seq_len, …]` tensor flattened to
/// `[batch · seq_len, …]`: what the last-token gathers select. Fails unless `lengths` has `batch`
/// entries.
fn last_token_rows(
    lengths: &[usize],
    (batch, seq_len): (usize, usize),
    device: &Device,
) -> Result<Tensor> {
    let rows: Vec<u32> = lengths
        .iter()
        .enumerate()
        .map(|(row, &n)| (row * seq_len + n - 1) as u32)
        .collect();
    Tensor::from_vec(rows, batch, device)
}

/// The attention mask of one forward pass: the additive tensor, and (only for a full-sequence
/// forward with the differentiable kernels on the CPU) the same mask as the one-node attention reads
/// it; its presence is what selects that attention.
struct Mask {
    tensor: Tensor,
    node: Option<AttentionMask>,
}

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

    /// Makes the packed CPU forward multiply every layer projection (and the LM head) by a bf16 copy
    /// of its weight with `kernel`, f32 accumulation; norms, attention, the head stay f32. Needs f32
    /// weights on the CPU without adapters or quantized copies.
    pub fn use_bf16_matmul(&mut self, kernel: Bf16Kernel) -> Result<()> {
        if !crate::packed::supports(self) {
            candle_core::bail!(
                "bf16 CPU matmul needs f32 weights on the CPU, without LoRA adapters or quantized copies"
            );
        }
        for layer in &mut self.layers {
            for (_, linear) in layer.linears_mut() {
                linear.pack_bf16(kernel)?;
            }
        }
        if let Some(head) = &mut self.lm_head {
            head.pack_bf16(kernel)?;
        }
        Ok(())
    }

    /// The product the layer projections run: the bf16 kernel's name (`amx`, `avx512bf16`, …) when
    /// [`Backbone::use_bf16_matmul`] packed them, else the backbone dtype (`f32`, `bf16`, `f16`).
    pub fn matmul_name(&self) -> &'static str {
        self.layers
            .first()
            .and_then(|l| l.linears().next())
            .and_then(Linear::bf16)
            .map_or(self.dtype.as_str(), |(k, _)| k.name())
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

    pub(crate) fn layers(&self) -> &[DecoderLayer] {
        &self.layers
    }

    /// The `[vocab, hidden]` token embeddings.
    pub fn embeddings(&self) -> &Tensor {
        &self.embed_tokens
    }

    pub(crate) fn rotary(&self) -> &Rotary {
        &self.rotary
    }

    pub(crate) fn lm_head(&self) -> Option<&Linear> {
        self.lm_head.as_ref()
    }

    pub(crate) fn final_norm(&self) -> &RmsNorm {
        &self.norm
    }

    /// Final hidden states at each row's last token, `[rows, hidden]`, for unpadded rows of token ids:
    /// the same numbers as [`Backbone::forward`] then [`Backbone::last_token`] on the padded batch,
    /// computed by the packed CPU forward (no padding, no gradient) when [`crate::packed::supports`]
    /// this model, else by exactly that padded path.
    pub fn last_hidden(&self, rows: &[&[u32]]) -> Result<Tensor> {
        if crate::packed::supports(self) {
            return crate::packed::last_hidden(self, rows);
        }
        let longest = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut flat = Vec::with_capacity(rows.len() * longest);
        for r in rows {
            flat.extend_from_slice(r);
            flat.extend(std::iter::repeat_n(0u32, longest - r.len()));
        }
        let ids = Tensor::from_vec(flat, (rows.len(), longest), &self.device)?;
        let lengths: Vec<usize> = rows.iter().map(|r| r.len()).collect();
        let hidden = self.forward(&ids, &lengths)?;
        Self::last_token(&hidden, &lengths)
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
                .is_some_and(|layer| layer.self_attn.kernels == Kernels::Differentiable);
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
        if lengths.len() != b || lengths.iter().any(|&n| n == 0 || n > l) {
            candle_core::bail!("lengths {lengths:?} do not fit a batch of {b} rows of {l} tokens");
        }
        if l > self.max_positions() {
            candle_core::bail!(
                "sequence of {l} tokens exceeds the {} positions",
                self.max_positions()
            );
        }
        let mask = self.mask(lengths, l)?;
        // The last layer at the last tokens only on the one-node path (CPU training); elsewhere the
        // full forward and a gather.
        let nodes = mask.as_ref().is_some_and(|m| m.node.is_some());
        let (layers, last) = match self.layers.split_last() {
            Some((last, rest)) if last_only && nodes => (rest, Some(last)),
            _ => (&self.layers[..], None),
        };
        let mut x = self.embed(ids)?;
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
