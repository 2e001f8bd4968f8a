//! The linear projection node.

use super::Float;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};
use wildreward_kernels::{matmul_banded, Strided};
use wildreward_kernels::{matmul_bf16, Bf16Kernel, PackedBf16};

/// `x Wᵀ` for `x` `[.., in]` and `W` `[out, in]` (HF's layout), as one node: no reshapes around the
/// product and no transpose of `W` in the graph (whose gradient candle would add, strided, into a
/// zeroed `[out, in]` tensor). The backward computes `dx = g W` and `dW = gᵀ x`, each only when
/// that input is tracked (a frozen weight costs no gemm).
///
/// With `bf16`, f32 operands run all three products on that bf16 kernel (mixed precision, as
/// PyTorch's autocast: operands rounded to bf16, f32 sums, f32 master weights and gradients);
/// f64 (the gradient checks) always runs the exact product.
pub fn linear(x: &Tensor, weight: &Tensor, bf16: Option<Bf16Kernel>) -> Result<Tensor> {
    let bf16 = bf16.filter(|_| x.dtype() == DType::F32);
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, LinearNode { bf16 })
}

struct LinearNode {
    bf16: Option<Bf16Kernel>,
}

/// `rows × cols` row-major `a` transposed (`cols × rows`), in parallel bands of 32 columns of `a`.
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    use rayon::prelude::*;
    const BAND: usize = 32;
    let mut t = vec![0f32; a.len()];
    t.par_chunks_mut((BAND * rows).max(1))
        .enumerate()
        .for_each(|(band, dst)| {
            let c0 = band * BAND;
            let width = BAND.min(cols - c0);
            for r in 0..rows {
                let src = &a[r * cols + c0..r * cols + c0 + width];
                for (c, v) in src.iter().enumerate() {
                    dst[c * rows + r] = *v;
                }
            }
        });
    t
}

/// `rows × n = (rows × k) · wᵀ` on the bf16 kernel, `w` packed for this call.
fn product_bf16(kernel: Bf16Kernel, x: &[f32], rows: usize, w: &PackedBf16) -> Result<Vec<f32>> {
    let mut y = vec![0f32; rows * w.n()];
    matmul_bf16(kernel, x, rows, w, &mut y, false).map_err(candle_core::Error::msg)?;
    Ok(y)
}

fn pack(w: std::result::Result<PackedBf16, String>) -> Result<PackedBf16> {
    w.map_err(candle_core::Error::msg)
}

/// The three products of [`LinearNode`] on a bf16 kernel (f32 in and out).
mod bf16_products {
    use super::*;

    /// `y = x Wᵀ`.
    pub(super) fn forward(k: Bf16Kernel, x: &[f32], w: &[f32], out: usize) -> Result<Vec<f32>> {
        let inp = w.len() / out.max(1);
        let rows = x.len() / inp.max(1);
        product_bf16(k, x, rows, &pack(PackedBf16::from_rows(w, out, inp))?)
    }

    /// `dx = g W`: `g` (rows × out) times `(Wᵀ)ᵀ`, `Wᵀ` (in × out) packed from `W` directly.
    pub(super) fn input_grad(k: Bf16Kernel, w: &[f32], g: &[f32], out: usize) -> Result<Vec<f32>> {
        let inp = w.len() / out.max(1);
        let rows = g.len() / out.max(1);
        product_bf16(k, g, rows, &pack(PackedBf16::from_transposed(w, out, inp))?)
    }

    /// `dW = gᵀ x`: `gᵀ` (out × rows, written out) times `(xᵀ)ᵀ`, `xᵀ` (in × rows) packed from `x`.
    pub(super) fn weight_grad(
        k: Bf16Kernel,
        x: &[f32],
        g: &[f32],
        out: usize,
        inp: usize,
    ) -> Result<Vec<f32>> {
        let rows = g.len() / out.max(1);
        let gt = transpose(g, rows, out);
        product_bf16(
            k,
            &gt,
            out,
            &pack(PackedBf16::from_transposed(x, rows, inp))?,
        )
    }
}

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
        if let (Some(kernel), CpuStorage::F32(_), CpuStorage::F32(_)) = (self.bf16, s1, s2) {
            let x = super::slice::<f32>(s1, l1)?;
            let w = super::slice::<f32>(s2, l2)?;
            let y = bf16_products::forward(kernel, x, w, out)?;
            return Ok((CpuStorage::F32(y), Shape::from(shape)));
        }
        let y =
            float_storage!("linear node", x = (s1, l1), w = (s2, l2) => Self::forward(x, w, out));
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
        if let Some(kernel) = self.bf16.filter(|_| x.dtype() == DType::F32) {
            return super::with_values::<f32, _>(&[x, w, &grad], |v| {
                tracked_grads(
                    x,
                    w,
                    || bf16_products::input_grad(kernel, v[1], v[2], out),
                    || bf16_products::weight_grad(kernel, v[0], v[2], out, inp),
                )
            });
        }
        float_values!("linear node", [x, w, &grad], |v| {
            tracked_grads(
                x,
                w,
                || Ok(Self::input_grad(v[1], v[2], out)),
                || Ok(Self::weight_grad(v[0], v[2], out, inp)),
            )
        })
    }
}

/// `(dx, dW)` as tensors shaped as `x` and `w`, each computed only when that input is tracked (a
/// frozen weight costs no product).
fn tracked_grads<T: WithDType>(
    x: &Tensor,
    w: &Tensor,
    dx: impl FnOnce() -> Result<Vec<T>>,
    dw: impl FnOnce() -> Result<Vec<T>>,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let dev = x.device();
    let dx = match x.track_op() {
        true => Some(Tensor::from_vec(dx()?, x.shape(), dev)?),
        false => None,
    };
    let dw = match w.track_op() {
        true => Some(Tensor::from_vec(dw()?, w.shape(), dev)?),
        false => None,
    };
    Ok((dx, dw))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use super::*;
    use candle_core::{Device, Var};

    /// `v` rounded to bf16 (to nearest, ties to even; no NaN here).
    fn round(v: f32) -> f64 {
        let b = v.to_bits();
        let r = b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000;
        f64::from(f32::from_bits(r))
    }

    /// `a (m × k) · b (n × k)ᵀ` in f64 of the bf16-rounded operands.
    fn reference(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut y = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|p| round(a[i * k + p]) * round(b[j * k + p]))
                    .sum();
            }
        }
        y
    }

    fn close(got: &[f32], want: &[f64], what: &str) {
        let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(want)
            .map(|(g, w)| (f64::from(*g) - w).abs())
            .fold(0f64, f64::max);
        assert!(
            worst <= 2e-6 * scale,
            "{what}: off by {worst} (scale {scale})"
        );
    }

    /// The bf16 node's forward, `dx` and `dW` are the products of the bf16-rounded operands (f32
    /// sums), each in its own orientation: checked against f64 on odd shapes, so a transposed or
    /// shifted operand fails. A kernel the CPU lacks is skipped loudly.
    #[test]
    fn bf16_products_of_forward_and_both_gradients_match_f64_of_the_rounded_operands() {
        let (rows, inp, out) = (37, 70, 45);
        for kernel in [
            Bf16Kernel::Amx,
            Bf16Kernel::Avx512Bf16,
            Bf16Kernel::Portable,
        ] {
            if !kernel.available() {
                eprintln!(
                    "SKIPPED: this CPU lacks {}; the bf16 training node is NOT tested on it",
                    kernel.name()
                );
                continue;
            }
            let dev = Device::Cpu;
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (rows, inp), &dev).unwrap()).unwrap();
            let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (out, inp), &dev).unwrap()).unwrap();
            let up = Tensor::randn(0f32, 1.0, (rows, out), &dev).unwrap();
            let y = linear(x.as_tensor(), w.as_tensor(), Some(kernel)).unwrap();
            let grads = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (xs, ws, us) = (v(x.as_tensor()), v(w.as_tensor()), v(&up));
            close(&v(&y), &reference(&xs, &ws, rows, out, inp), "y = x Wᵀ");
            let wt = transpose(&ws, out, inp);
            let dx = v(grads.get(x.as_tensor()).unwrap());
            close(&dx, &reference(&us, &wt, rows, inp, out), "dx = g W");
            let (ut, xt) = (transpose(&us, rows, out), transpose(&xs, rows, inp));
            let dw = v(grads.get(w.as_tensor()).unwrap());
            close(&dw, &reference(&ut, &xt, out, inp, rows), "dW = gᵀ x");
            // And it is bf16, not the exact product: differs from the f32 node.
            let exact = linear(x.as_tensor(), w.as_tensor(), None).unwrap();
            let diff = (&exact - &y).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() > 1e-4, "bf16 really ran");
        }
        // f64 (the gradient checks) ignores the kernel: exact.
        let x = Tensor::randn(0f64, 1.0, (3, 5), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f64, 1.0, (4, 5), &Device::Cpu).unwrap();
        let a = linear(&x, &w, Some(Bf16Kernel::Portable)).unwrap();
        let b = x.matmul(&w.t().unwrap()).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
    }
}
