//! The decoder's weights as plain data: what a forward reads, apart from the candle layers that
//! hold them. [`crate::backbone::Backbone::decoder_weights`] hands them out (sharing storage, so an
//! optimiser's in-place updates are seen), and the packed CPU forward ([`crate::packed`]) runs on
//! them alone, never reaching into the layers.

use candle_core::{DType, Device, Result, Tensor};
use std::sync::Arc;
use wildreward_kernels::{Bf16Kernel, PackedBf16};

/// One RMS norm: its `[width]` weight and ε.
#[derive(Debug, Clone)]
pub struct NormWeights {
    /// The scale, `[width]`.
    pub weight: Tensor,
    /// Added to the mean square.
    pub eps: f64,
}

/// One projection: the `[out, in]` weight, its bias, and (when the forward multiplies in bf16) the
/// weight packed for a bf16 kernel.
#[derive(Debug, Clone)]
pub struct LinearWeights {
    /// `[out, in]`, HF's layout.
    pub weight: Tensor,
    /// `[out]`, when the layer has one.
    pub bias: Option<Tensor>,
    /// A bf16 copy of `weight` for the kernel, made by [`DecoderWeights::pack_bf16`].
    pub bf16: Option<(Bf16Kernel, Arc<PackedBf16>)>,
}

impl LinearWeights {
    /// A projection multiplied by its f32 weight.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            bf16: None,
        }
    }

    /// Packs the weight (f32, on the CPU) as bf16 for `kernel`.
    fn pack_bf16(&mut self, kernel: Bf16Kernel) -> Result<()> {
        let (n, k) = self.weight.dims2()?;
        let w = self.weight.flatten_all()?.to_vec1::<f32>()?;
        let packed = PackedBf16::from_rows(&w, n, k).map_err(candle_core::Error::msg)?;
        self.bf16 = Some((kernel, Arc::new(packed)));
        Ok(())
    }
}

/// One decoder block's weights, named as in the HF checkpoint.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// `input_layernorm`.
    pub input_norm: NormWeights,
    /// `self_attn.q_proj`.
    pub q_proj: LinearWeights,
    /// `self_attn.k_proj`.
    pub k_proj: LinearWeights,
    /// `self_attn.v_proj`.
    pub v_proj: LinearWeights,
    /// `self_attn.o_proj`.
    pub o_proj: LinearWeights,
    /// Qwen3's per-head `self_attn.q_norm`.
    pub q_norm: Option<NormWeights>,
    /// Qwen3's per-head `self_attn.k_norm`.
    pub k_norm: Option<NormWeights>,
    /// `post_attention_layernorm`.
    pub post_attention_norm: NormWeights,
    /// `mlp.gate_proj`.
    pub gate_proj: LinearWeights,
    /// `mlp.up_proj`.
    pub up_proj: LinearWeights,
    /// `mlp.down_proj`.
    pub down_proj: LinearWeights,
}

impl LayerWeights {
    /// The block's projections.
    fn linears_mut(&mut self) -> [&mut LinearWeights; 7] {
        [
            &mut self.q_proj,
            &mut self.k_proj,
            &mut self.v_proj,
            &mut self.o_proj,
            &mut self.gate_proj,
            &mut self.up_proj,
            &mut self.down_proj,
        ]
    }
}

/// The shapes of the decoder.
#[derive(Debug, Clone, Copy)]
pub struct DecoderDims {
    /// Model width.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// The MLP's inner width.
    pub intermediate: usize,
}

/// Every weight a decoder forward reads.
#[derive(Debug, Clone)]
pub struct DecoderWeights {
    /// `[vocab, hidden]` token embeddings.
    pub embed_tokens: Tensor,
    /// The blocks, in order.
    pub layers: Vec<LayerWeights>,
    /// The final norm.
    pub norm: NormWeights,
    /// The LM head (the embeddings when tied), absent for an untied classifier.
    pub lm_head: Option<LinearWeights>,
    /// RoPE `cos` table, `[max_positions, head_dim / 2]`.
    pub rope_cos: Tensor,
    /// RoPE `sin` table, same shape.
    pub rope_sin: Tensor,
    /// The shapes.
    pub dims: DecoderDims,
}

impl DecoderWeights {
    /// Longest sequence the position tables cover.
    pub fn max_positions(&self) -> usize {
        self.rope_cos.dim(0).unwrap_or(0)
    }

    /// Whether the embeddings and position tables are f32 on the CPU. A backbone holds every tensor
    /// in one dtype on one device, so they stand for the rest; a weight that is not f32 on the CPU
    /// still fails, with its shape named, at its first product.
    pub fn is_f32_cpu(&self) -> bool {
        let ok = |t: &Tensor| t.dtype() == DType::F32 && matches!(t.device(), Device::Cpu);
        ok(&self.embed_tokens) && ok(&self.rope_cos)
    }

    /// Packs every layer projection (and the LM head) as bf16 for `kernel`: the products then run
    /// on it with f32 accumulation, norms and attention staying f32. The copies do not follow later
    /// in-place updates of the f32 weights: pack again after one.
    pub fn pack_bf16(&mut self, kernel: Bf16Kernel) -> Result<()> {
        for layer in &mut self.layers {
            for linear in layer.linears_mut() {
                linear.pack_bf16(kernel)?;
            }
        }
        if let Some(head) = &mut self.lm_head {
            head.pack_bf16(kernel)?;
        }
        Ok(())
    }

    /// The bf16 kernel the projections run on, when packed.
    pub fn bf16_kernel(&self) -> Option<Bf16Kernel> {
        self.layers
            .first()
            .and_then(|l| l.q_proj.bf16.as_ref())
            .map(|(k, _)| *k)
    }
}
