//! The linear projection node.

use super::Float;
use crate::packed::matmul::{matmul_banded, Strided};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

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
        let dev = x.device();
        float_values!("linear node", [x, w, &grad], |v| {
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
    }
}
