//! The elementwise nodes: RMS norm, `silu(gate) · up`, RoPE.

use super::{inv_rms, rows_per_task, Float};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

// RMS norm

/// `x / √(mean(x²) + ε) · w` over each run of `w.len()` values of `x` (the last dimension, or each
/// head of a `[.., heads · hd]` tensor for a per-head norm), as one node.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNormNode { eps })
}

struct RmsNormNode {
    eps: f64,
}

impl RmsNormNode {
    fn forward<T: Float>(&self, x: &[T], w: &[T]) -> Vec<T> {
        let d = w.len();
        let mut out = vec![T::zero(); x.len()];
        out.par_chunks_mut(d * rows_per_task(d))
            .zip(x.par_chunks(d * rows_per_task(d)))
            .for_each(|(o, x)| {
                for (o, x) in o.chunks_mut(d).zip(x.chunks(d)) {
                    let r = inv_rms(x, T::from_f64(self.eps));
                    for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                        *o = x * r * w;
                    }
                }
            });
        out
    }

    /// `dx = r·(g⊙w) − x·r³·Σ(g⊙w⊙x)/d`, `dw = Σ_rows g⊙x·r`; returned as one buffer, `dx` then `dw`.
    fn backward<T: Float>(&self, x: &[T], w: &[T], g: &[T]) -> Vec<T> {
        let d = w.len();
        let mut out = vec![T::zero(); x.len() + d];
        let (dx, dw) = out.split_at_mut(x.len());
        let chunk = d * rows_per_task(d);
        let partial = dx
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .map(|(dx, (x, g))| {
                let mut dw = vec![T::zero(); d];
                for ((dx, x), g) in dx.chunks_mut(d).zip(x.chunks(d)).zip(g.chunks(d)) {
                    let r = inv_rms(x, T::from_f64(self.eps));
                    let dot = x
                        .iter()
                        .zip(g)
                        .zip(w)
                        .fold(T::zero(), |a, ((&x, &g), &w)| a + g * w * x);
                    let c = r * r * r * dot / T::from_f64(d as f64);
                    for (((dx, &x), &g), (&w, dw)) in
                        dx.iter_mut().zip(x).zip(g).zip(w.iter().zip(dw.iter_mut()))
                    {
                        *dx = r * g * w - x * c;
                        *dw += g * x * r;
                    }
                }
                dw
            })
            .collect::<Vec<_>>();
        for p in partial {
            dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        out
    }
}

impl CustomOp2 for RmsNormNode {
    fn name(&self) -> &'static str {
        "rms-norm-node"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = l2.shape().elem_count();
        if d == 0 || !l1.shape().elem_count().is_multiple_of(d) {
            candle_core::bail!(
                "rms norm: weight {:?} does not fit {:?}",
                l2.dims(),
                l1.dims()
            );
        }
        let out = float_storage!("rms norm node", x = (s1, l1), w = (s2, l2) => self.forward(x, w));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let n = x.elem_count();
        let both = float_values!("rms norm node", [x, w, &grad], |v| {
            Tensor::from_vec(
                self.backward(v[0], v[1], v[2]),
                n + w.elem_count(),
                x.device(),
            )
        })?;
        let dx = both.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = both.narrow(0, n, w.elem_count())?.reshape(w.shape())?;
        Ok((x.track_op().then_some(dx), w.track_op().then_some(dw)))
    }
}

// silu(gate) · up

/// `silu(gate) · up`, the gated MLP's product, as one node.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SiluMulNode)
}

struct SiluMulNode;

fn sigmoid<T: Float>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

impl SiluMulNode {
    fn forward<T: Float>(gate: &[T], up: &[T]) -> Vec<T> {
        let mut out = vec![T::zero(); gate.len()];
        out.par_chunks_mut(16_384)
            .zip(gate.par_chunks(16_384).zip(up.par_chunks(16_384)))
            .for_each(|(o, (g, u))| {
                for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *o = g * sigmoid(g) * u;
                }
            });
        out
    }

    /// `d_gate = d·up·σ(g)·(1 + g·(1 − σ(g)))`, `d_up = d·silu(g)`; one buffer, `d_gate` then `d_up`.
    fn backward<T: Float>(gate: &[T], up: &[T], grad: &[T]) -> Vec<T> {
        let n = gate.len();
        let mut out = vec![T::zero(); 2 * n];
        let (dg, du) = out.split_at_mut(n);
        dg.par_chunks_mut(16_384)
            .zip(du.par_chunks_mut(16_384))
            .zip(
                gate.par_chunks(16_384)
                    .zip(up.par_chunks(16_384).zip(grad.par_chunks(16_384))),
            )
            .for_each(|((dg, du), (g, (u, d)))| {
                for ((dg, du), ((&g, &u), &d)) in dg.iter_mut().zip(du).zip(g.iter().zip(u).zip(d))
                {
                    let s = sigmoid(g);
                    *dg = d * u * s * (T::one() + g * (T::one() - s));
                    *du = d * g * s;
                }
            });
        out
    }
}

impl CustomOp2 for SiluMulNode {
    fn name(&self) -> &'static str {
        "silu-mul-node"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "silu·up: gate {:?} and up {:?} differ",
                l1.dims(),
                l2.dims()
            );
        }
        let out = float_storage!("silu·up node", g = (s1, l1), u = (s2, l2) => Self::forward(g, u));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let n = gate.elem_count();
        let both = float_values!("silu·up node", [gate, up, &grad], |v| {
            Tensor::from_vec(Self::backward(v[0], v[1], v[2]), 2 * n, gate.device())
        })?;
        let dg = both.narrow(0, 0, n)?.reshape(gate.shape())?;
        let du = both.narrow(0, n, n)?.reshape(up.shape())?;
        Ok((gate.track_op().then_some(dg), up.track_op().then_some(du)))
    }
}

// RoPE

/// Half-split RoPE (HF's `rotate_half` layout) of `x` `[b, l, heads · hd]` with `cos` / `sin`
/// `[l, hd/2]` (the tables at positions `0..l`), as one node. The backward rotates the gradient
/// back (the same kernel with `−sin`).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&cos.contiguous()?, &sin.contiguous()?, RopeNode)
}

struct RopeNode;

impl RopeNode {
    fn forward<T: Float>(x: &[T], cos: &[T], sin: &[T], dims: (usize, usize, usize)) -> Vec<T> {
        let (l, heads, hd) = dims;
        let half = hd / 2;
        let mut out = vec![T::zero(); x.len()];
        // One task per position: its `heads` vectors share that position's angles.
        out.par_chunks_mut(heads * hd)
            .zip(x.par_chunks(heads * hd))
            .enumerate()
            .for_each(|(row, (o, x))| {
                let at = (row % l) * half;
                let (c, s) = (&cos[at..at + half], &sin[at..at + half]);
                for (o, x) in o.chunks_mut(hd).zip(x.chunks(hd)) {
                    let (x1, x2) = x.split_at(half);
                    let (o1, o2) = o.split_at_mut(half);
                    for i in 0..half {
                        o1[i] = x1[i] * c[i] - x2[i] * s[i];
                        o2[i] = x2[i] * c[i] + x1[i] * s[i];
                    }
                }
            });
        out
    }
}

impl CustomOp3 for RopeNode {
    fn name(&self) -> &'static str {
        "rope-node"
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
        let (_, l, width) = l1.shape().dims3()?;
        let hd = 2 * l2.dims().last().copied().unwrap_or(0);
        let heads = width / hd.max(1);
        if hd == 0 || heads * hd != width || l2.dims() != [l, hd / 2] || l3.dims() != [l, hd / 2] {
            candle_core::bail!(
                "rope: tables {:?} / {:?} do not fit {:?}",
                l2.dims(),
                l3.dims(),
                l1.dims()
            );
        }
        let dims = (l, heads, hd);
        let out = float_storage!("rope node", x = (s1, l1), c = (s2, l2), sn = (s3, l3) => Self::forward(x, c, sn, dims));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let back = grad
            .contiguous()?
            .apply_op3_no_bwd(cos, &sin.neg()?, &RopeNode)?;
        Ok((Some(back), None, None))
    }
}
