//! One decoder block of the candle path: grouped-query attention with rotary positions (and, for
//! training on the CPU, the one-node attention of `wildreward-nodes`), the gated MLP, the pre-norm
//! residual wiring. Tensor names are the HF checkpoint's.

use super::cache::LayerCache;
use crate::config::{Architecture, ModelConfig};
use crate::decoder_weights::LayerWeights;
use crate::nn::{softmax_last, Kernels, Linear, RmsNorm, Rotary};
use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use wildreward_nodes as nodes;
use wildreward_nodes::{causal_padding_mask, masked_attention, AttentionMask};

/// The attention mask of one forward pass: the additive tensor, and (only for a full-sequence
/// forward with the differentiable kernels on the CPU) the same mask as the one-node attention reads
/// it; its presence is what selects that attention.
pub(super) struct Mask {
    pub(super) tensor: Tensor,
    pub(super) node: Option<AttentionMask>,
}

/// Multi-head attention with grouped key/value heads and rotary positions.
#[derive(Debug, Clone)]
pub(super) struct Attention {
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
        let linear = |name: &str, inp: usize, out: usize, bias: bool| {
            Linear::load_adapted(vb.pp(name), inp, out, bias, lora).map(|l| l.with_kernels(kernels))
        };
        Ok(Self {
            q_proj: linear("q_proj", h, nh * hd, bias)?,
            k_proj: linear("k_proj", h, nkv * hd, bias)?,
            v_proj: linear("v_proj", h, nkv * hd, bias)?,
            // Only Llama-style `attention_bias: true` puts a bias on the output projection.
            o_proj: linear("o_proj", nh * hd, h, cfg.attention_bias == Some(true))?,
            q_norm,
            k_norm,
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            kernels,
        })
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
pub(super) struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    kernels: Kernels,
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &ModelConfig, kernels: Kernels) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let lora = cfg.wildreward_lora_scale;
        let linear = |name: &str, inp: usize, out: usize| {
            Linear::load_adapted(vb.pp(name), inp, out, false, lora)
                .map(|l| l.with_kernels(kernels))
        };
        Ok(Self {
            gate_proj: linear("gate_proj", h, i)?,
            up_proj: linear("up_proj", h, i)?,
            down_proj: linear("down_proj", i, h)?,
            kernels,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (gate, up) = (self.gate_proj.forward(x)?, self.up_proj.forward(x)?);
        let product = if self.kernels.allows_nodes() && nodes::applies(&gate) {
            nodes::silu_mul(&gate, &up)?
        } else {
            (gate.silu()? * up)?
        };
        self.down_proj.forward(&product)
    }
}

/// One pre-norm decoder block.
#[derive(Debug, Clone)]
pub(super) struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    pub(super) fn load(
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
            mlp: Mlp::load(vb.pp("mlp"), cfg, kernels)?,
        })
    }

    /// Every projection of the block with its HF name under the layer (`self_attn.q_proj`, …).
    pub(super) fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
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

    /// The attention's `(heads, kv_heads, head_dim)`.
    pub(super) fn head_counts(&self) -> (usize, usize, usize) {
        let a = &self.self_attn;
        (a.n_heads, a.n_kv_heads, a.head_dim)
    }

    /// Which kernels the block runs.
    pub(super) fn kernels(&self) -> Kernels {
        self.self_attn.kernels
    }

    /// The block's weights as plain data, `None` when a projection has an adapter or a quantized
    /// copy.
    pub(super) fn weights(&self) -> Option<LayerWeights> {
        let (a, m) = (&self.self_attn, &self.mlp);
        Some(LayerWeights {
            input_norm: self.input_layernorm.plain(),
            q_proj: a.q_proj.plain()?,
            k_proj: a.k_proj.plain()?,
            v_proj: a.v_proj.plain()?,
            o_proj: a.o_proj.plain()?,
            q_norm: a.q_norm.as_ref().map(RmsNorm::plain),
            k_norm: a.k_norm.as_ref().map(RmsNorm::plain),
            post_attention_norm: self.post_attention_layernorm.plain(),
            gate_proj: m.gate_proj.plain()?,
            up_proj: m.up_proj.plain()?,
            down_proj: m.down_proj.plain()?,
        })
    }

    pub(super) fn forward(
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
    pub(super) fn forward_last(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        lengths: &[usize],
    ) -> Result<Tensor> {
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
pub(super) fn last_token_rows(
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
