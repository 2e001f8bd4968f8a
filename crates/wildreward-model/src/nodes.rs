//! Training graph nodes with hand-written backward passes, for the CPU in f32 / f64: the linear
//! projection, RMS norm, `silu(gate) · up` and RoPE.
//!
//! Composed from candle primitives, an RMS norm is seven graph nodes, the gated product three and the
//! half-split rotation eight. Each node allocates its output, and candle's backward adds every
//! gradient into a freshly zeroed tensor (`zeros_like` + `add`), so a composed layer makes dozens
//! of full passes over `[tokens, width]` memory on the way back. As one node each they make one pass
//! forward and one back, with the same numbers (`tests::nodes_match_the_composed_ops`, and the
//! finite-difference check in `tests/gradcheck.rs`, which runs through them).
//!
//! [`applies`] says when they run; elsewhere (CUDA, half precision) callers use the composed forms.

use crate::packed::matmul::{matmul_banded, Strided};
use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Result, Shape, Storage, Tensor,
    WithDType,
};
use rayon::prelude::*;

/// The float types the CPU nodes run in.
pub(crate) trait Float:
    WithDType + Send + Sync + From<f32> + std::ops::Neg<Output = Self>
{
    fn exp(self) -> Self;
    fn sqrt(self) -> Self;
}

impl Float for f32 {
    /// The packed forward's branch-free `expf` (within 2 ulp), which the compiler vectorises.
    fn exp(self) -> Self {
        crate::packed::fast_exp(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Float for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// Whether the nodes of this module (and the attention node) can run on `t`: CPU, f32 or f64.
pub(crate) fn applies(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// The values of a contiguous CPU storage as a slice.
pub(crate) fn slice<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<T>()?[start..end]),
        None => candle_core::bail!("training node: inputs must be contiguous"),
    }
}

/// Runs `f` on the values of the contiguous CPU tensors `ts` (in a backward pass, where only
/// tensors are at hand).
pub(crate) fn with_values<T: WithDType, R>(
    ts: &[&Tensor],
    f: impl FnOnce(&[&[T]]) -> Result<R>,
) -> Result<R> {
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut values = Vec::with_capacity(ts.len());
    for (storage, layout) in &guards {
        match &**storage {
            Storage::Cpu(cpu) => values.push(slice::<T>(cpu, layout)?),
            _ => candle_core::bail!("training node: CPU tensors only"),
        }
    }
    f(&values)
}

/// Rows per parallel task of the elementwise loops (work enough to amortise rayon's hand-off).
fn rows_per_task(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

// ---------------------------------------------------------------------------------------------
// Linear
// ---------------------------------------------------------------------------------------------

/// `x Wᵀ` for `x` `[.., in]` and `W` `[out, in]` (HF's layout), as one node: no reshapes around the
/// product and no transpose of `W` in the graph (whose gradient candle would add, strided, into a
/// zeroed `[out, in]` tensor). The backward computes `dx = g W` and `dW = gᵀ x`, each only when
/// that input is tracked (a frozen weight costs no gemm).
pub(crate) fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&weight.contiguous()?, LinearNode)
}

struct LinearNode;

impl LinearNode {
    /// `rows × out = (rows × in) · (out × in)ᵀ`.
    fn forward<T: Float>(x: &[T], w: &[T], out: usize) -> Vec<T> {
        let inp = w.len() / out.max(1);
        let rows = x.len() / inp.max(1);
        let mut y = vec![T::zero(); rows * out];
        matmul_banded(
            &mut y,
            out,
            Strided::rows(x, rows, inp, inp),
            Strided::transposed(w, out, inp, inp),
            T::one(),
            false,
        );
        y
    }

    /// `dx = g W` (`rows × in`).
    fn input_grad<T: Float>(w: &[T], g: &[T], out: usize) -> Vec<T> {
        let inp = w.len() / out.max(1);
        let rows = g.len() / out.max(1);
        let mut dx = vec![T::zero(); rows * inp];
        matmul_banded(
            &mut dx,
            inp,
            Strided::rows(g, rows, out, out),
            Strided::rows(w, out, inp, inp),
            T::one(),
            false,
        );
        dx
    }

    /// `dW = gᵀ x` (`out × in`).
    fn weight_grad<T: Float>(x: &[T], g: &[T], out: usize, inp: usize) -> Vec<T> {
        let rows = g.len() / out.max(1);
        let mut dw = vec![T::zero(); out * inp];
        matmul_banded(
            &mut dw,
            inp,
            Strided::transposed(g, rows, out, out),
            Strided::rows(x, rows, inp, inp),
            T::one(),
            false,
        );
        dw
    }
}

impl CustomOp2 for LinearNode {
    fn name(&self) -> &'static str {
        "linear-node"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (out, inp) = l2.shape().dims2()?;
        let dims = l1.dims();
        if dims.last() != Some(&inp) {
            candle_core::bail!("linear: x {:?} does not fit a [{out}, {inp}] weight", dims);
        }
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = out;
        }
        let y = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(Self::forward(slice(s1, l1)?, slice(s2, l2)?, out))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(Self::forward(slice(s1, l1)?, slice(s2, l2)?, out))
            }
            _ => candle_core::bail!("linear node runs in f32 or f64"),
        };
        Ok((y, Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (out, inp) = w.dims2()?;
        let dev = x.device();
        macro_rules! grads {
            ($t:ty) => {
                with_values::<$t, _>(&[x, w, &grad], |v| {
                    let dx = match x.track_op() {
                        true => Some(Tensor::from_vec(
                            Self::input_grad(v[1], v[2], out),
                            x.shape(),
                            dev,
                        )?),
                        false => None,
                    };
                    let dw = match w.track_op() {
                        true => Some(Tensor::from_vec(
                            Self::weight_grad(v[0], v[2], out, inp),
                            (out, inp),
                            dev,
                        )?),
                        false => None,
                    };
                    Ok((dx, dw))
                })
            };
        }
        match x.dtype() {
            DType::F32 => grads!(f32),
            DType::F64 => grads!(f64),
            dtype => candle_core::bail!("linear node runs in f32 or f64, not {dtype:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RMS norm
// ---------------------------------------------------------------------------------------------

/// `x / √(mean(x²) + ε) · w` over each run of `w.len()` values of `x` (the last dimension, or each
/// head of a `[.., heads · hd]` tensor for a per-head norm), as one node.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNormNode { eps })
}

struct RmsNormNode {
    eps: f64,
}

impl RmsNormNode {
    fn inv_rms<T: Float>(&self, row: &[T]) -> T {
        let sum = row.iter().fold(T::zero(), |a, &v| a + v * v);
        let mean = sum / T::from_f64(row.len() as f64);
        T::one() / (mean + T::from_f64(self.eps)).sqrt()
    }

    fn forward<T: Float>(&self, x: &[T], w: &[T]) -> Vec<T> {
        let d = w.len();
        let mut out = vec![T::zero(); x.len()];
        out.par_chunks_mut(d * rows_per_task(d))
            .zip(x.par_chunks(d * rows_per_task(d)))
            .for_each(|(o, x)| {
                for (o, x) in o.chunks_mut(d).zip(x.chunks(d)) {
                    let r = self.inv_rms(x);
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
                    let r = self.inv_rms(x);
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
        if d == 0 || l1.shape().elem_count() % d != 0 {
            candle_core::bail!(
                "rms norm: weight {:?} does not fit {:?}",
                l2.dims(),
                l1.dims()
            );
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(self.forward(slice(s1, l1)?, slice(s2, l2)?))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(self.forward(slice(s1, l1)?, slice(s2, l2)?))
            }
            _ => candle_core::bail!("rms norm node runs in f32 or f64"),
        };
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
        let both = match x.dtype() {
            DType::F32 => with_values::<f32, _>(&[x, w, &grad], |v| {
                Tensor::from_vec(
                    self.backward(v[0], v[1], v[2]),
                    n + w.elem_count(),
                    x.device(),
                )
            })?,
            DType::F64 => with_values::<f64, _>(&[x, w, &grad], |v| {
                Tensor::from_vec(
                    self.backward(v[0], v[1], v[2]),
                    n + w.elem_count(),
                    x.device(),
                )
            })?,
            dtype => candle_core::bail!("rms norm node runs in f32 or f64, not {dtype:?}"),
        };
        let dx = both.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = both.narrow(0, n, w.elem_count())?.reshape(w.shape())?;
        Ok((x.track_op().then_some(dx), w.track_op().then_some(dw)))
    }
}

// ---------------------------------------------------------------------------------------------
// silu(gate) · up
// ---------------------------------------------------------------------------------------------

/// `silu(gate) · up`, the gated MLP's product, as one node.
pub(crate) fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
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
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(Self::forward(slice(s1, l1)?, slice(s2, l2)?))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(Self::forward(slice(s1, l1)?, slice(s2, l2)?))
            }
            _ => candle_core::bail!("silu·up node runs in f32 or f64"),
        };
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
        let both = match gate.dtype() {
            DType::F32 => with_values::<f32, _>(&[gate, up, &grad], |v| {
                Tensor::from_vec(Self::backward(v[0], v[1], v[2]), 2 * n, gate.device())
            })?,
            DType::F64 => with_values::<f64, _>(&[gate, up, &grad], |v| {
                Tensor::from_vec(Self::backward(v[0], v[1], v[2]), 2 * n, gate.device())
            })?,
            dtype => candle_core::bail!("silu·up node runs in f32 or f64, not {dtype:?}"),
        };
        let dg = both.narrow(0, 0, n)?.reshape(gate.shape())?;
        let du = both.narrow(0, n, n)?.reshape(up.shape())?;
        Ok((gate.track_op().then_some(dg), up.track_op().then_some(du)))
    }
}

// ---------------------------------------------------------------------------------------------
// RoPE
// ---------------------------------------------------------------------------------------------

/// Half-split RoPE (HF's `rotate_half` layout) of `x` `[b, l, heads · hd]` with `cos` / `sin`
/// `[l, hd/2]` (the tables at positions `0..l`), as one node. The backward rotates the gradient
/// back (the same kernel with `−sin`).
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
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
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(
                Self::forward(slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?, dims),
            ),
            (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(
                Self::forward(slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?, dims),
            ),
            _ => candle_core::bail!("rope node runs in f32 or f64"),
        };
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

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use super::*;
    use candle_core::{Var, D};

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// `max |a − b|` relative to `max(1, max |b|)`.
    fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
        max_diff(a, b) / max_diff(b, &b.zeros_like().unwrap()).max(1.0)
    }

    /// Values and gradients (with respect to every input) of `node` and `composed` agree within
    /// `tol`, relative to the largest magnitude (f32 sums over thousands of rows differ by rounding).
    pub(crate) fn agree(
        inputs: &[Tensor],
        node: impl Fn(&[Tensor]) -> Tensor,
        composed: impl Fn(&[Tensor]) -> Tensor,
        tol: f64,
    ) {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let (a, b) = (node(&ts), composed(&ts));
        assert!(
            rel_diff(&a, &b) < tol,
            "values differ by {}",
            rel_diff(&a, &b)
        );
        // A weighted sum so every output element's gradient differs.
        let w = Tensor::randn(0f64, 1.0, a.shape(), a.device())
            .unwrap()
            .to_dtype(a.dtype())
            .unwrap();
        let ga = (&a * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for (i, t) in ts.iter().enumerate() {
            let (x, y) = (ga.get(t), gb.get(t));
            match (x, y) {
                (Some(x), Some(y)) => {
                    assert!(
                        rel_diff(x, y) < tol,
                        "input {i}: gradients differ by {}",
                        rel_diff(x, y)
                    );
                    assert!(
                        max_diff(x, &x.zeros_like().unwrap()) > 0.0,
                        "input {i}: zero gradient"
                    );
                }
                (None, None) => {}
                _ => panic!("input {i}: one side has no gradient"),
            }
        }
    }

    pub(crate) fn randn(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::randn(0f64, 1.0, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    #[test]
    fn nodes_match_the_composed_ops() {
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-4)] {
            // RMS norm over rows of 96 (several rows per task, several tasks).
            let eps = 1e-5;
            agree(
                &[randn(&[3, 700, 96], dtype), randn(&[96], dtype)],
                |t| rms_norm(&t[0], &t[1], eps).unwrap(),
                |t| {
                    let var = t[0].sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                    let r = (var + eps).unwrap().sqrt().unwrap();
                    t[0].broadcast_div(&r)
                        .unwrap()
                        .broadcast_mul(&t[1])
                        .unwrap()
                },
                tol,
            );
            agree(
                &[randn(&[2, 300, 70], dtype), randn(&[2, 300, 70], dtype)],
                |t| silu_mul(&t[0], &t[1]).unwrap(),
                |t| (t[0].silu().unwrap() * &t[1]).unwrap(),
                tol,
            );
            // RoPE on [b, l, heads, hd] against candle's composed form on [b, heads, l, hd].
            let (l, hd) = (37, 8);
            let angles = randn(&[l, hd / 2], DType::F64);
            let (cos, sin) = (
                angles.cos().unwrap().to_dtype(dtype).unwrap(),
                angles.sin().unwrap().to_dtype(dtype).unwrap(),
            );
            agree(
                &[randn(&[2, l, 3 * hd], dtype)],
                |t| rope(&t[0], &cos, &sin).unwrap(),
                |t| {
                    let x = t[0]
                        .reshape((2, l, 3, hd))
                        .unwrap()
                        .transpose(1, 2)
                        .unwrap();
                    candle_nn::rotary_emb::rope_slow(&x, &cos, &sin)
                        .unwrap()
                        .transpose(1, 2)
                        .unwrap()
                        .reshape((2, l, 3 * hd))
                        .unwrap()
                },
                tol,
            );
            // A per-head norm (Qwen3's q/k norm) over heads of 8 in a [b, l, heads · 8] tensor.
            agree(
                &[randn(&[2, 9, 3 * 8], dtype), randn(&[8], dtype)],
                |t| rms_norm(&t[0], &t[1], eps).unwrap(),
                |t| {
                    let x = t[0].reshape((2, 9, 3, 8)).unwrap();
                    let var = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                    let r = (var + eps).unwrap().sqrt().unwrap();
                    x.broadcast_div(&r)
                        .unwrap()
                        .broadcast_mul(&t[1])
                        .unwrap()
                        .reshape((2, 9, 24))
                        .unwrap()
                },
                tol,
            );
            agree(
                &[randn(&[3, 70, 48], dtype), randn(&[20, 48], dtype)],
                |t| linear(&t[0], &t[1]).unwrap(),
                |t| t[0].broadcast_matmul(&t[1].t().unwrap()).unwrap(),
                tol,
            );
        }
    }
}
