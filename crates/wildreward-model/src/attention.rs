//! Training attention as one graph node, `softmax(q kᵀ + mask) v`, with its own backward.
//!
//! Composed from candle primitives, attention keeps five `[batch, heads, len, len]` tensors per layer
//! alive until `backward()` returns (the scores, the masked scores, minus the row max, their exp, the
//! probabilities): at 4 × 512 tokens that is 180 MiB a layer for SmolLM2, more than all the rest of
//! the layer. As one custom op the graph keeps only its inputs and output (which it holds anyway); the
//! forward runs per (sequence, key/value group) into a scratch block that is reused, and the backward
//! recomputes the probabilities from `q` and `k`, layer by layer, so at most one layer's square
//! tensors exist at a time (the standard memory-efficient attention trade: one more `q kᵀ`).
//!
//! Shapes follow the backbone's grouped-query layout: `q` `[b, groups, n_rep·l, hd]` (already scaled
//! by 1/√hd; query head `g·n_rep + r` is rows `r·l..` of group `g`), `k` and `v` `[b, groups, keys,
//! hd]`, the additive mask `[b, 1, l, keys]` broadcast over the heads. CPU, f32 or f64; the backbone
//! uses the composed form elsewhere (CUDA, half precision, the KV-cache path).

use crate::packed::matmul::{matmul, Strided};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use gemm::Parallelism;
use rayon::prelude::*;

/// The mask, once per forward pass: the tensor (for the backward) and its values (for the CPU
/// kernel), shared by every layer.
#[derive(Debug, Clone)]
pub(crate) struct AttentionMask {
    tensor: Tensor,
    values: std::sync::Arc<Vec<f64>>,
}

impl AttentionMask {
    /// Reads `mask` (`[b, 1, l, keys]`) once.
    pub(crate) fn new(mask: &Tensor) -> Result<Self> {
        let values = mask
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        Ok(Self {
            tensor: mask.clone(),
            values: std::sync::Arc::new(values),
        })
    }
}

/// `softmax(q kᵀ + mask) v` as one differentiable node; see the module docs for the shapes.
pub(crate) fn masked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&AttentionMask>,
) -> Result<Tensor> {
    let l = match mask {
        Some(m) => m.tensor.dim(2)?,
        None => q.dim(2)?,
    };
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        MaskedAttention {
            mask: mask.cloned(),
            queries: l,
        },
    )
}

struct MaskedAttention {
    mask: Option<AttentionMask>,
    /// Query positions per head (`l`); rows of a group are `n_rep` heads of `l` each.
    queries: usize,
}

/// The float types the CPU kernel runs in.
trait Float: WithDType + Send + Sync + From<f32> {
    fn exp(self) -> Self;
}

impl Float for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
}

impl Float for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("masked attention: inputs must be contiguous"),
    }
}

impl MaskedAttention {
    fn forward<T: Float>(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        (b, groups, rows, hd): (usize, usize, usize, usize),
        keys: usize,
    ) -> Result<Vec<T>> {
        let l = self.queries.max(1);
        if q.len() != b * groups * rows * hd
            || k.len() != b * groups * keys * hd
            || k.len() != v.len()
        {
            candle_core::bail!("masked attention: q, k, v do not fit together");
        }
        let mask = self.mask.as_ref().map(|m| m.values.as_slice());
        if let Some(m) = mask {
            if m.len() != b * l * keys || rows % l != 0 {
                candle_core::bail!("masked attention: the mask does not fit the scores");
            }
        }
        let mut out = vec![T::zero(); b * groups * rows * hd];
        out.par_chunks_mut(rows * hd).enumerate().for_each_init(
            Vec::new,
            |scores: &mut Vec<T>, (bg, o)| {
                let seq = bg / groups;
                let (qb, kb, vb) = (
                    &q[bg * rows * hd..(bg + 1) * rows * hd],
                    &k[bg * keys * hd..(bg + 1) * keys * hd],
                    &v[bg * keys * hd..(bg + 1) * keys * hd],
                );
                scores.clear();
                scores.resize(rows * keys, T::zero());
                matmul(
                    scores,
                    keys,
                    Strided::rows(qb, rows, hd, hd),
                    Strided::transposed(kb, keys, hd, hd),
                    T::one(),
                    false,
                    Parallelism::None,
                );
                for (r, row) in scores.chunks_mut(keys).enumerate() {
                    if let Some(m) = mask {
                        let at = (seq * l + r % l) * keys;
                        for (s, &add) in row.iter_mut().zip(&m[at..at + keys]) {
                            *s += T::from_f64(add);
                        }
                    }
                    let max = row
                        .iter()
                        .copied()
                        .fold(
                            T::from_f64(f64::NEG_INFINITY),
                            |a, b| if b > a { b } else { a },
                        );
                    let mut sum = T::zero();
                    for s in row.iter_mut() {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    let inv = T::one() / sum;
                    row.iter_mut().for_each(|s| *s *= inv);
                }
                matmul(
                    o,
                    hd,
                    Strided::rows(scores, rows, keys, keys),
                    Strided::rows(vb, keys, hd, hd),
                    T::one(),
                    false,
                    Parallelism::None,
                );
            },
        );
        Ok(out)
    }

    /// The attention probabilities `[b, groups, rows, keys]`, recomputed without a graph.
    fn probs(&self, q: &Tensor, k: &Tensor) -> Result<Tensor> {
        let scores = q.matmul(&k.t()?)?;
        let scores = match &self.mask {
            Some(m) => {
                let (b, groups, rows, keys) = scores.dims4()?;
                let l = self.queries.max(1);
                scores
                    .reshape((b, groups, rows / l, l, keys))?
                    .broadcast_add(&m.tensor.to_dtype(scores.dtype())?.unsqueeze(2)?)?
                    .reshape((b, groups, rows, keys))?
            }
            None => scores,
        };
        candle_nn::ops::softmax_last_dim(&scores)
    }
}

impl CustomOp3 for MaskedAttention {
    fn name(&self) -> &'static str {
        "masked-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims4()?;
        let keys = l2.shape().dims4()?.2;
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(q), CpuStorage::F32(k), CpuStorage::F32(v)) => {
                let (q, k, v) = (contiguous(q, l1)?, contiguous(k, l2)?, contiguous(v, l3)?);
                CpuStorage::F32(self.forward(q, k, v, dims, keys)?)
            }
            (CpuStorage::F64(q), CpuStorage::F64(k), CpuStorage::F64(v)) => {
                let (q, k, v) = (contiguous(q, l1)?, contiguous(k, l2)?, contiguous(v, l3)?);
                CpuStorage::F64(self.forward(q, k, v, dims, keys)?)
            }
            _ => candle_core::bail!("masked attention runs in f32 or f64"),
        };
        Ok((out, Shape::from(dims)))
    }

    /// With `P = softmax(q kᵀ + mask)` and `O = P v`: `dv = Pᵀ dO`, `dS = P ⊙ (dO vᵀ − rowsum(dO ⊙ O))`,
    /// `dq = dS k`, `dk = dSᵀ q`.
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        d_out: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v, out, d_out) = (
            q.detach(),
            k.detach(),
            v.detach(),
            out.detach(),
            d_out.detach(),
        );
        let p = self.probs(&q, &k)?;
        let dv = p.t()?.matmul(&d_out)?;
        let dp = d_out.matmul(&v.t()?)?;
        let row = (&d_out * &out)?.sum_keepdim(3)?;
        let ds = (p * dp.broadcast_sub(&row)?)?;
        let dq = ds.matmul(&k)?;
        let dk = ds.t()?.matmul(&q)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}
