//! Training attention as one graph node, `softmax(s · q kᵀ + mask) v`, with its own backward.
//!
//! Composed from candle primitives, attention keeps five `[batch, heads, len, len]` tensors per layer
//! alive until `backward()` returns (the scores, the masked scores, minus the row max, their exp, the
//! probabilities): at 4 × 512 tokens that is 180 MiB a layer for SmolLM2, more than all the rest of
//! the layer. As one custom op the graph keeps only its inputs and output (which it holds anyway).
//!
//! Both passes run per (sequence, query head) in blocks of [`BLOCK`] query positions, each block
//! over only the keys some row of it can see: with a causal mask the keys after the block's last
//! position hold `−∞` and weigh exactly zero, so skipping them changes no number and halves the
//! work at long lengths. The backward recomputes each block's probabilities from `q` and `k` (the
//! memory-efficient attention trade: one more `q kᵀ`) and keeps only a block's scores at a time.
//!
//! Shapes are the projections' own, so no reshapes or transposes are needed around the node: `q`
//! `[b, l, heads · hd]`, `k` and `v` `[b, keys, kv_heads · hd]` (query head `h` reads key/value head
//! `h / n_rep`, as HF's `repeat_kv`), the output `[b, l, heads · hd]`; the additive mask `[b, 1, l,
//! keys]` is shared by the heads. CPU, f32 or f64; the backbone uses the composed form elsewhere (CUDA, half
//! precision, the KV-cache path).

use crate::Float;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;
use wildreward_kernels::simd::{lanes_max, lanes_sum};
use wildreward_kernels::{matmul, Strided};

/// Query positions per block: a gemm-sized block whose key range still follows the causal edge.
const BLOCK: usize = 64;

/// The mask, once per forward pass: the tensor (its shape), its values (for the kernels) and how
/// many leading keys each query position can see, shared by every layer.
#[derive(Debug, Clone)]
pub struct AttentionMask {
    values: Arc<Vec<f64>>,
    /// `visible[seq · l + i]`: one past the last key query `i` of `seq` sees (keys after it are −∞).
    visible: Arc<Vec<usize>>,
    /// Whether every row is 0 on its visible keys and −∞ after them (the causal + padding mask), so
    /// the kernels can skip adding it.
    prefix: bool,
    queries: usize,
    keys: usize,
}

impl AttentionMask {
    /// Reads `mask` (`[b, 1, l, keys]`) once.
    pub fn new(mask: &Tensor) -> Result<Self> {
        let (_, _, queries, keys) = mask.dims4()?;
        let values = mask.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let visible: Vec<usize> = values
            .chunks(keys.max(1))
            .map(|row| row.iter().rposition(|v| v.is_finite()).map_or(0, |j| j + 1))
            .collect();
        let prefix = values
            .chunks(keys.max(1))
            .zip(&visible)
            .all(|(row, &n)| row[..n].iter().all(|&v| v == 0.0));
        Ok(Self {
            values: Arc::new(values),
            visible: Arc::new(visible),
            prefix,
            queries,
            keys,
        })
    }
}

/// `softmax(scale · q kᵀ + mask) v` as one differentiable node; see the module docs for the shapes.
pub fn masked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &AttentionMask,
    head_dim: usize,
) -> Result<Tensor> {
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        MaskedAttention {
            mask: mask.clone(),
            scale: 1.0 / (head_dim as f64).sqrt(),
            head_dim,
        },
    )
}

struct MaskedAttention {
    mask: AttentionMask,
    scale: f64,
    head_dim: usize,
}

/// The layout of one call: `q` / output `[b, l, heads · hd]`, `k` / `v` `[b, keys, kv_heads · hd]`.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    l: usize,
    keys: usize,
    heads: usize,
    kv_heads: usize,
    hd: usize,
}

impl Dims {
    fn of(q: &Shape, k: &Shape, v: &Shape, hd: usize) -> Result<Self> {
        let (b, l, q_width) = q.dims3()?;
        let (bk, keys, kv_width) = k.dims3()?;
        let (heads, kv_heads) = (q_width / hd.max(1), kv_width / hd.max(1));
        if hd == 0
            || heads * hd != q_width
            || kv_heads * hd != kv_width
            || bk != b
            || v.dims() != k.dims()
            || kv_heads == 0
            || heads % kv_heads != 0
        {
            candle_core::bail!(
                "masked attention: q {:?}, k {:?}, v {:?} do not fit together in heads of {hd}",
                q.dims(),
                k.dims(),
                v.dims()
            );
        }
        Ok(Self {
            b,
            l,
            keys,
            heads,
            kv_heads,
            hd,
        })
    }

    fn n_rep(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Offset of the first query (or output) value of group `g`'s heads at position `i` of `seq`:
    /// its `n_rep` heads follow one another there.
    fn q_at(&self, seq: usize, i: usize, g: usize) -> usize {
        ((seq * self.l + i) * self.heads + g * self.n_rep()) * self.hd
    }

    /// Offset of key (or value) row `j` of key/value head `g` in `seq`.
    fn kv_at(&self, seq: usize, j: usize, g: usize) -> usize {
        ((seq * self.keys + j) * self.kv_heads + g) * self.hd
    }

    fn q_len(&self) -> usize {
        self.b * self.l * self.heads * self.hd
    }

    fn kv_len(&self) -> usize {
        self.b * self.keys * self.kv_heads * self.hd
    }
}

/// One block of a task (sequence `seq`, key/value head `g`): query positions `i0 .. i0 + rows` of all
/// `n_rep` heads of the group, stacked position-major (stacked row `i · n_rep + r` is head `r` of the
/// group at position `i0 + i`), over keys `0..kmax`. Stacking the heads that share keys and values
/// makes each product `n_rep` times taller, which gemm runs faster.
#[derive(Debug, Clone, Copy)]
struct Block {
    seq: usize,
    g: usize,
    i0: usize,
    rows: usize,
    kmax: usize,
}

impl Block {
    /// Stacked rows.
    fn stacked(&self, d: &Dims) -> usize {
        self.rows * d.n_rep()
    }

    /// Copies the block's rows of `x` (`q`, the output or its gradient: `[b, l, heads · hd]`) into
    /// `buf`, stacked (`stacked × hd`, contiguous).
    fn gather<T: Float>(&self, d: &Dims, x: &[T], buf: &mut Vec<T>) {
        let width = d.n_rep() * d.hd;
        buf.clear();
        for i in 0..self.rows {
            let at = d.q_at(self.seq, self.i0 + i, self.g);
            buf.extend_from_slice(&x[at..at + width]);
        }
    }
}

impl MaskedAttention {
    fn check(&self, d: &Dims) -> Result<()> {
        let m = &self.mask;
        if m.queries != d.l || m.keys != d.keys || m.visible.len() != d.b * d.l {
            candle_core::bail!(
                "masked attention: the mask ({} × {} per row) does not fit {d:?}",
                m.queries,
                m.keys
            );
        }
        Ok(())
    }

    /// The blocks of task (`seq`, `g`) that see at least one key, each with its visible key range.
    fn blocks(&self, d: &Dims, seq: usize, g: usize) -> impl Iterator<Item = Block> + '_ {
        let l = d.l;
        (0..l)
            .step_by(BLOCK)
            .map(move |i0| {
                let rows = BLOCK.min(l - i0);
                let at = seq * l + i0;
                let kmax = self.mask.visible[at..at + rows]
                    .iter()
                    .copied()
                    .max()
                    .unwrap_or(0);
                Block {
                    seq,
                    g,
                    i0,
                    rows,
                    kmax,
                }
            })
            .filter(|b| b.kmax > 0)
    }

    /// The block's probabilities `stacked × kmax` into `p` from its stacked queries `qs`: scaled
    /// scores, plus the mask, softmax.
    fn probs<T: Float>(&self, d: &Dims, qs: &[T], k: &[T], blk: Block, p: &mut Vec<T>) {
        let (rows, kmax) = (blk.stacked(d), blk.kmax);
        p.clear();
        p.resize(rows * kmax, T::zero());
        matmul(
            p,
            kmax,
            Strided::rows(qs, rows, d.hd, d.hd),
            Strided::transposed(
                &k[d.kv_at(blk.seq, 0, blk.g)..],
                kmax,
                d.hd,
                d.kv_heads * d.hd,
            ),
            T::from_f64(self.scale),
            false,
        );
        for (r, row) in p.chunks_mut(kmax).enumerate() {
            let query = blk.seq * d.l + blk.i0 + r / d.n_rep();
            let row = if self.mask.prefix {
                // Zero on the visible keys, −∞ after them: the tail weighs exactly 0.
                let (live, tail) = row.split_at_mut(self.mask.visible[query].min(kmax));
                tail.iter_mut().for_each(|s| *s = T::zero());
                live
            } else {
                let at = query * d.keys;
                for (s, &add) in row.iter_mut().zip(&self.mask.values[at..at + kmax]) {
                    *s += T::from_f64(add);
                }
                row
            };
            let max = lanes_max(row);
            if max == T::from_f64(f64::NEG_INFINITY) {
                // A query that sees no key at all (never one of a real token): weights zero.
                row.iter_mut().for_each(|s| *s = T::zero());
                continue;
            }
            row.iter_mut().for_each(|s| *s = (*s - max).exp());
            let sum = lanes_sum(row);
            let inv = T::one() / sum;
            row.iter_mut().for_each(|s| *s *= inv);
        }
    }

    /// Task (`seq`, `g`)'s output `[l, n_rep · hd]` (contiguous: the stacked rows in order).
    fn group_forward<T: Float>(
        &self,
        d: &Dims,
        (q, k, v): (&[T], &[T], &[T]),
        seq: usize,
        g: usize,
    ) -> Vec<T> {
        let mut out = vec![T::zero(); d.l * d.n_rep() * d.hd];
        let (mut qs, mut p) = (Vec::new(), Vec::new());
        for blk in self.blocks(d, seq, g) {
            blk.gather(d, q, &mut qs);
            self.probs(d, &qs, k, blk, &mut p);
            matmul(
                &mut out[blk.i0 * d.n_rep() * d.hd..],
                d.hd,
                Strided::rows(&p, blk.stacked(d), blk.kmax, blk.kmax),
                Strided::rows(&v[d.kv_at(seq, 0, g)..], blk.kmax, d.hd, d.kv_heads * d.hd),
                T::one(),
                false,
            );
        }
        out
    }

    fn forward<T: Float>(&self, d: &Dims, q: &[T], k: &[T], v: &[T]) -> Result<Vec<T>> {
        self.check(d)?;
        if q.len() != d.q_len() || k.len() != d.kv_len() || v.len() != d.kv_len() {
            candle_core::bail!("masked attention: q, k, v do not fit {d:?}");
        }
        let groups: Vec<Vec<T>> = (0..d.b * d.kv_heads)
            .into_par_iter()
            .map(|t| self.group_forward(d, (q, k, v), t / d.kv_heads, t % d.kv_heads))
            .collect();
        let mut out = vec![T::zero(); d.q_len()];
        scatter_groups(&mut out, &groups, d);
        Ok(out)
    }

    /// Task (`seq`, `g`)'s gradients: `dq` `[l, n_rep · hd]` and `dk`, `dv` `[keys, hd]`. With `P`
    /// the block's probabilities and `dO` its output gradient: `dv += Pᵀ dO`,
    /// `dS = P ⊙ (dO vᵀ − rowsum(dO ⊙ O))`, `dq = s · dS k`, `dk += s · dSᵀ q`.
    fn group_backward<T: Float>(&self, d: &Dims, x: &[&[T]], seq: usize, g: usize) -> [Vec<T>; 3] {
        let (q, k, v, out, d_out) = (x[0], x[1], x[2], x[3], x[4]);
        let (hd, kv_stride) = (d.hd, d.kv_heads * d.hd);
        let scale = T::from_f64(self.scale);
        let mut dq = vec![T::zero(); d.l * d.n_rep() * hd];
        let mut dk = vec![T::zero(); d.keys * hd];
        let mut dv = vec![T::zero(); d.keys * hd];
        let (kb, vb) = (&k[d.kv_at(seq, 0, g)..], &v[d.kv_at(seq, 0, g)..]);
        let (mut qs, mut os, mut dos, mut p, mut ds) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for blk in self.blocks(d, seq, g) {
            let (rows, kmax) = (blk.stacked(d), blk.kmax);
            blk.gather(d, q, &mut qs);
            blk.gather(d, out, &mut os);
            blk.gather(d, d_out, &mut dos);
            self.probs(d, &qs, k, blk, &mut p);
            let d_o = Strided::rows(&dos, rows, hd, hd);
            matmul(
                &mut dv,
                hd,
                Strided::transposed(&p, rows, kmax, kmax),
                d_o,
                T::one(),
                true,
            );
            ds.clear();
            ds.resize(rows * kmax, T::zero());
            matmul(
                &mut ds,
                kmax,
                d_o,
                Strided::transposed(vb, kmax, hd, kv_stride),
                T::one(),
                false,
            );
            for ((ds, p), (o, g_o)) in ds
                .chunks_mut(kmax)
                .zip(p.chunks(kmax))
                .zip(os.chunks(hd).zip(dos.chunks(hd)))
            {
                let dot = g_o.iter().zip(o).fold(T::zero(), |a, (&g, &o)| a + g * o);
                for (ds, &p) in ds.iter_mut().zip(p) {
                    *ds = p * (*ds - dot);
                }
            }
            matmul(
                &mut dq[blk.i0 * d.n_rep() * hd..],
                hd,
                Strided::rows(&ds, rows, kmax, kmax),
                Strided::rows(kb, kmax, hd, kv_stride),
                scale,
                false,
            );
            matmul(
                &mut dk,
                hd,
                Strided::transposed(&ds, rows, kmax, kmax),
                Strided::rows(&qs, rows, hd, hd),
                scale,
                true,
            );
        }
        [dq, dk, dv]
    }

    fn backward<T: Float>(&self, x: &[&[T]], d: &Dims) -> Result<[Vec<T>; 3]> {
        self.check(d)?;
        let groups: Vec<[Vec<T>; 3]> = (0..d.b * d.kv_heads)
            .into_par_iter()
            .map(|t| self.group_backward(d, x, t / d.kv_heads, t % d.kv_heads))
            .collect();
        let mut dq = vec![T::zero(); d.q_len()];
        let dqs: Vec<&[T]> = groups.iter().map(|g| g[0].as_slice()).collect();
        scatter_groups(&mut dq, &dqs, d);
        let mut dk = vec![T::zero(); d.kv_len()];
        let mut dv = vec![T::zero(); d.kv_len()];
        // Row (seq, j) of dk / dv: key/value head g's row j from task (seq, g).
        for (which, dst) in [(1, &mut dk), (2, &mut dv)] {
            dst.par_chunks_mut(d.kv_heads * d.hd)
                .enumerate()
                .for_each(|(sj, dst)| {
                    let (seq, j) = (sj / d.keys, sj % d.keys);
                    for (g, dst) in dst.chunks_mut(d.hd).enumerate() {
                        let src = &groups[seq * d.kv_heads + g][which][j * d.hd..][..d.hd];
                        dst.copy_from_slice(src);
                    }
                });
        }
        Ok([dq, dk, dv])
    }
}

/// Writes per-task `[l, n_rep · hd]` buffers (task `seq · kv_heads + g`) into the `[b, l, heads ·
/// hd]` layout.
fn scatter_groups<T: Float, H: AsRef<[T]> + Sync>(dst: &mut [T], groups: &[H], d: &Dims) {
    let width = d.n_rep() * d.hd;
    dst.par_chunks_mut(d.heads * d.hd)
        .enumerate()
        .for_each(|(si, row)| {
            let (seq, i) = (si / d.l, si % d.l);
            for (g, dst) in row.chunks_mut(width).enumerate() {
                dst.copy_from_slice(&groups[seq * d.kv_heads + g].as_ref()[i * width..][..width]);
            }
        });
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
        let d = Dims::of(l1.shape(), l2.shape(), l3.shape(), self.head_dim)?;
        let out = float_storage!("masked attention", q = (s1, l1), k = (s2, l2), v = (s3, l3) => self.forward(&d, q, k, v)?);
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        d_out: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = Dims::of(q.shape(), k.shape(), v.shape(), self.head_dim)?;
        let d_out = d_out.contiguous()?;
        let dev = q.device();
        let [dq, dk, dv] = float_values!("masked attention", [q, k, v, out, &d_out], |x| {
            let [dq, dk, dv] = self.backward(x, &d)?;
            Ok([
                Tensor::from_vec(dq, q.shape(), dev)?,
                Tensor::from_vec(dk, k.shape(), dev)?,
                Tensor::from_vec(dv, v.shape(), dev)?,
            ])
        })?;
        let wanted = |t: &Tensor, g: Tensor| t.track_op().then_some(g);
        Ok((wanted(q, dq), wanted(k, dk), wanted(v, dv)))
    }
}

/// The additive attention mask: 0 where query `i` (absolute position `offset + i`) may see key `j` —
/// causal (`j ≤ offset + i`) and `j` a real token of its row (`j < lengths[row]`) — −∞ elsewhere.
/// Shape `[lengths.len(), 1, queries, offset + queries]`. A right-padded batch uses offset 0; a cached
/// prefill uses the cache length as offset.
pub fn causal_padding_mask(
    lengths: &[usize],
    queries: usize,
    offset: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let keys = offset + queries;
    let mut data = vec![0f32; lengths.len() * queries * keys];
    for (b, &len) in lengths.iter().enumerate() {
        for i in 0..queries {
            for j in 0..keys {
                if j > offset + i || j >= len {
                    data[(b * queries + i) * keys + j] = f32::NEG_INFINITY;
                }
            }
        }
    }
    Tensor::from_vec(data, (lengths.len(), 1, queries, keys), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use super::*;
    use crate::tests::{agree, randn};

    /// The node against candle's composed attention (heads repeated per key/value head), values and
    /// gradients, over several blocks, grouped heads, and rows padded at different lengths.
    #[test]
    fn the_node_matches_composed_attention() {
        let (b, l, heads, kv_heads, hd) = (3, 150, 4, 2, 8);
        let lengths = [150, 97, 1];
        let scale = 1.0 / (hd as f64).sqrt();
        for (dtype, tol, biased) in [
            (DType::F64, 1e-12, false),
            (DType::F32, 1e-4, false),
            (DType::F64, 1e-12, true),
        ] {
            let mask = causal_padding_mask(&lengths, l, 0, dtype, &Device::Cpu).unwrap();
            // A mask with finite non-zero entries too (an additive bias), which the kernels add.
            let mask = match biased {
                true => (mask + randn(&[b, 1, l, l], dtype)).unwrap(),
                false => mask,
            };
            let node_mask = AttentionMask::new(&mask).unwrap();
            assert_eq!(node_mask.prefix, !biased);
            let group: Vec<u32> = (0..heads)
                .map(|h| (h / (heads / kv_heads)) as u32)
                .collect();
            let group = Tensor::new(group.as_slice(), &Device::Cpu).unwrap();
            agree(
                &[
                    randn(&[b, l, heads * hd], dtype),
                    randn(&[b, l, kv_heads * hd], dtype),
                    randn(&[b, l, kv_heads * hd], dtype),
                ],
                |t| masked_attention(&t[0], &t[1], &t[2], &node_mask, hd).unwrap(),
                |t| {
                    // [b, l, n·hd] → [b, n, l, hd]
                    let split = |x: &Tensor, n: usize| {
                        x.reshape((b, l, n, hd))
                            .unwrap()
                            .transpose(1, 2)
                            .unwrap()
                            .contiguous()
                            .unwrap()
                    };
                    let per_head = |x: &Tensor| split(x, kv_heads).index_select(&group, 1).unwrap();
                    let q = split(&t[0], heads);
                    let (k, v) = (per_head(&t[1]), per_head(&t[2]));
                    let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale)
                        .unwrap()
                        .broadcast_add(&mask)
                        .unwrap();
                    candle_nn::ops::softmax(&scores, candle_core::D::Minus1)
                        .unwrap()
                        .matmul(&v)
                        .unwrap()
                        .transpose(1, 2)
                        .unwrap()
                        .reshape((b, l, heads * hd))
                        .unwrap()
                },
                tol,
            );
        }
    }
}
