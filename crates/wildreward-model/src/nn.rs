//! Layers built from candle primitives that all record gradients.
//!
//! candle's fused `rms_norm`, `softmax_last_dim` and `rope` silently drop the gradient
//! (anchors.md §5.2). Each layer here has a differentiable form (the default) and, where candle has a
//! faster fused kernel, an inference form selected by [`Kernels::Fused`], tested to give the same
//! numbers.

use crate::decoder_weights::{LinearWeights, NormWeights};
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use wildreward_kernels::Bf16Kernel;

/// Which implementation of norm, softmax and RoPE to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// Built from differentiable primitives: required for training. On the CPU in f32 / f64 the
    /// projections, norms, RoPE, SiLU·up and attention are `wildreward-nodes`' one-node forms with
    /// hand-written backward; elsewhere candle's composed ops.
    #[default]
    Differentiable,
    /// candle's composed differentiable ops everywhere, never the CPU nodes: what CUDA trains
    /// with, runnable on the CPU so its gradients can be checked there (finite differences).
    Composed,
    /// candle's fused kernels (no gradient): for scoring and generation.
    Fused,
}

impl Kernels {
    /// Whether the CPU training nodes may run (everywhere but [`Kernels::Composed`]).
    pub fn allows_nodes(self) -> bool {
        self != Kernels::Composed
    }
}

/// `y = x Wᵀ (+ b) (+ s · x Aᵀ Bᵀ)`, weights in HF's `[out, in]` layout, with an optional LoRA
/// adapter (PEFT's names: `{prefix}.lora_A.weight` `[r, in]`, `{prefix}.lora_B.weight` `[out, r]`),
/// and optionally a GGUF's quantized copy of `W` that the forward then multiplies by instead
/// (candle's quantized matmul: inference only, no gradient).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<Lora>,
    quantized: Option<QMatMul>,
    train_bf16: Option<Bf16Kernel>,
    /// Never the CPU linear node ([`Kernels::Composed`]).
    composed: bool,
}

/// A low-rank adapter: trained while the base weight stays frozen, merged into it on save.
#[derive(Debug, Clone)]
pub struct Lora {
    a: Tensor,
    b: Tensor,
    scale: f64,
}

impl Linear {
    /// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`).
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        Self::load_adapted(vb, in_dim, out_dim, bias, None)
    }

    /// Like [`Linear::load`], and also loads a LoRA adapter scaled by `lora_scale` when the weights
    /// hold one under this prefix. Adapters keep their own dtype (f32 over a half-precision base).
    pub fn load_adapted(
        vb: VarBuilder,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        lora_scale: Option<f64>,
    ) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        let lora = match lora_scale {
            Some(scale) if vb.contains_tensor("lora_A.weight") => {
                let a = vb.get_unchecked_dtype("lora_A.weight", DType::F32)?;
                let b = vb.get_unchecked_dtype("lora_B.weight", DType::F32)?;
                let r = a.dim(0)?;
                if a.dims() != [r, in_dim] || b.dims() != [out_dim, r] {
                    candle_core::bail!(
                        "LoRA adapter {}: A {:?} / B {:?} do not fit a [{out_dim}, {in_dim}] weight",
                        vb.prefix(),
                        a.dims(),
                        b.dims()
                    );
                }
                Some(Lora { a, b, scale })
            }
            _ => None,
        };
        Ok(Self {
            weight,
            bias,
            lora,
            quantized: None,
            train_bf16: None,
            composed: false,
        })
    }

    /// Wraps existing tensors.
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
            quantized: None,
            train_bf16: None,
            composed: false,
        }
    }

    /// This projection with candle's composed matmul only, never the CPU node, when `kernels` say
    /// so ([`Kernels::Composed`]).
    pub(crate) fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.composed = !kernels.allows_nodes();
        self
    }

    /// The `[out, in]` weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The projection as plain data for the packed CPU forward; `None` when it has an adapter or a
    /// quantized copy (which that forward does not run).
    pub(crate) fn plain(&self) -> Option<LinearWeights> {
        if self.lora.is_some() || self.quantized.is_some() {
            return None;
        }
        Some(LinearWeights::new(self.weight.clone(), self.bias.clone()))
    }

    /// Runs the training node's three products (forward, `dx`, `dW`) on `kernel` with bf16
    /// operands and f32 sums from now on (`None`: exact f32 again); see
    /// [`crate::Backbone::use_bf16_training`].
    pub(crate) fn set_train_bf16(&mut self, kernel: Option<Bf16Kernel>) {
        self.train_bf16 = kernel;
    }

    /// The kernel the training node's products run on, when bf16 training is on.
    pub fn train_bf16(&self) -> Option<Bf16Kernel> {
        self.train_bf16
    }

    /// The LoRA adapter, if one was loaded.
    pub fn adapter(&self) -> Option<&Lora> {
        self.lora.as_ref()
    }

    /// Multiplies by `quantized` (the same `[out, in]` weight, quantized) from now on.
    pub(crate) fn set_quantized(&mut self, quantized: QMatMul) {
        self.quantized = Some(quantized);
    }

    /// Whether the forward multiplies by a quantized weight.
    pub fn is_quantized(&self) -> bool {
        self.quantized.is_some()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if let Some(q) = &self.quantized {
            q.forward(&x.contiguous()?)?
        } else {
            match x.dims() {
                _ if !self.composed
                    && wildreward_nodes::applies(x)
                    && x.dtype() == self.weight.dtype() =>
                {
                    wildreward_nodes::linear(x, &self.weight, self.train_bf16)?
                }
                [b, l, h] => x
                    .reshape((b * l, *h))?
                    .matmul(&self.weight.t()?)?
                    .reshape((*b, *l, ()))?,
                _ => x.matmul(&self.weight.t()?)?,
            }
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        match &self.lora {
            None => Ok(y),
            Some(lora) => {
                // The adapter path runs in the adapter's dtype (f32) whatever the base's.
                let xa = x.to_dtype(lora.a.dtype())?;
                let low = match xa.dims() {
                    [b, l, h] => xa
                        .reshape((b * l, *h))?
                        .matmul(&lora.a.t()?)?
                        .matmul(&lora.b.t()?)?
                        .reshape((*b, *l, ()))?,
                    _ => xa.matmul(&lora.a.t()?)?.matmul(&lora.b.t()?)?,
                };
                let low = (low * lora.scale)?.to_dtype(y.dtype())?;
                y + low
            }
        }
    }
}

/// Root-mean-square layer norm with a learned scale.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
    kernels: Kernels,
}

impl RmsNorm {
    /// Loads `{prefix}.weight` of width `dim`.
    pub fn load(vb: VarBuilder, dim: usize, eps: f64, kernels: Kernels) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            eps,
            kernels,
        })
    }
}

impl RmsNorm {
    /// The learned scale.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The variance epsilon.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// The norm as plain data for the packed CPU forward.
    pub(crate) fn plain(&self) -> NormWeights {
        NormWeights {
            weight: self.weight.clone(),
            eps: self.eps,
        }
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.kernels {
            Kernels::Fused => {
                candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps as f32)
            }
            Kernels::Differentiable
                if wildreward_nodes::applies(x) && x.dtype() == self.weight.dtype() =>
            {
                wildreward_nodes::rms_norm(x, &self.weight, self.eps)
            }
            Kernels::Differentiable | Kernels::Composed => {
                // Computed in f32 for half-precision inputs, as HF does.
                let dtype = x.dtype();
                let internal = if dtype == DType::F64 {
                    DType::F64
                } else {
                    DType::F32
                };
                let xf = x.to_dtype(internal)?;
                let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
                let normed = xf.broadcast_div(&(var + self.eps)?.sqrt()?)?;
                normed.to_dtype(dtype)?.broadcast_mul(&self.weight)
            }
        }
    }
}

/// Softmax over the last dimension.
pub fn softmax_last(x: &Tensor, kernels: Kernels) -> Result<Tensor> {
    match kernels {
        Kernels::Fused => candle_nn::ops::softmax_last_dim(&x.contiguous()?),
        Kernels::Differentiable | Kernels::Composed => candle_nn::ops::softmax(x, D::Minus1),
    }
}

/// RoPE tables: cos and sin of `position · inv_freq`, `[max_positions, head_dim / 2]`, in HF's
/// half-split layout.
#[derive(Debug, Clone)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    /// Tables for positions `0..max_positions` from the inverse frequencies.
    pub fn new(
        inv_freq: &[f32],
        max_positions: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let inv = Tensor::from_slice(inv_freq, (1, inv_freq.len()), device)?;
        let pos = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let freqs = pos.matmul(&inv)?;
        Ok(Self {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }

    /// The `[max_positions, head_dim / 2]` cos and sin tables.
    pub fn tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    /// Positions available.
    pub fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// Rotates `x` `[batch, seq, heads · head_dim]` (positions from 0) with the differentiable RoPE
    /// node of the CPU training path ([`wildreward_nodes::rope`]).
    pub(crate) fn apply_node(&self, x: &Tensor) -> Result<Tensor> {
        let seq = x.dim(1)?;
        wildreward_nodes::rope(
            x,
            &self.cos.narrow(0, 0, seq)?,
            &self.sin.narrow(0, 0, seq)?,
        )
    }

    /// Rotates row `r` of `x` `[1, rows, heads · head_dim]` to position `lengths[r] − 1` (each row's
    /// last token) with the RoPE node.
    pub(crate) fn apply_node_at(&self, x: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let at: Vec<u32> = lengths
            .iter()
            .map(|&n| n.saturating_sub(1) as u32)
            .collect();
        let at = Tensor::from_vec(at, lengths.len(), x.device())?;
        wildreward_nodes::rope(
            x,
            &self.cos.index_select(&at, 0)?,
            &self.sin.index_select(&at, 0)?,
        )
    }

    /// Rotates `x` `[batch, heads, seq, head_dim]` whose first position is `offset`.
    pub fn apply(&self, x: &Tensor, offset: usize, kernels: Kernels) -> Result<Tensor> {
        let seq = x.dim(2)?;
        let cos = self.cos.narrow(0, offset, seq)?;
        let sin = self.sin.narrow(0, offset, seq)?;
        match kernels {
            Kernels::Fused => candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin),
            Kernels::Differentiable | Kernels::Composed => {
                candle_nn::rotary_emb::rope_slow(x, &cos, &sin)
            }
        }
    }
}

/// The inverse RoPE frequencies for `head_dim`, with Llama 3.1's `llama3` scaling when configured.
pub fn inv_freq(cfg: &crate::config::ModelConfig) -> Vec<f32> {
    let dim = cfg.head_dim();
    let base: Vec<f64> = (0..dim / 2)
        .map(|i| 1.0 / cfg.rope_base().powf(2.0 * i as f64 / dim as f64))
        .collect();
    let Some(s) = cfg.rope_scaling().filter(|s| s.rope_type == "llama3") else {
        return base.into_iter().map(|f| f as f32).collect();
    };
    let original = s.original_max_position_embeddings as f64;
    let low_wavelen = original / s.low_freq_factor;
    let high_wavelen = original / s.high_freq_factor;
    base.into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let scaled = if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / s.factor
            } else {
                let smooth = (original / wavelen - s.low_freq_factor)
                    / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * f / s.factor + smooth * f
            };
            scaled as f32
        })
        .collect()
}
