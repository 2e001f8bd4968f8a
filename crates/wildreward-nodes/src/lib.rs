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
//! `linear` holds the projection, `elementwise` the norm, gated product and rotation, [`attention`]
//! the whole masked attention as one node.
//!
//! A crate of its own between the kernels and the model: the nodes call `wildreward-kernels` for
//! their arithmetic (products, `exp`, the RMS scale) and know nothing of the model's layers, which
//! call them. Dependencies and why: `candle-core` (the graph the nodes are custom ops of), `rayon`
//! (rows in parallel), `wildreward-kernels` (the compute on slices).

use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, Tensor, WithDType};

/// The float types the CPU nodes run in: the kernels' floats that candle stores.
pub(crate) trait Float: wildreward_kernels::Float + WithDType {}

impl<T: wildreward_kernels::Float + WithDType> Float for T {}

/// Whether the nodes of this module (and the attention node) can run on `t`: CPU, f32 or f64.
pub fn applies(t: &Tensor) -> bool {
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

/// A node's CPU forward, written once for both float types: binds each `$v` to the values of the
/// CPU storage `$s` (layout `$l`) as `f32` or `f64` — all inputs must share that dtype — evaluates
/// `$body` (a `Vec` of that type) and wraps it as the matching `CpuStorage`.
macro_rules! float_storage {
    ($what:expr, $($v:ident = ($s:expr, $l:expr)),+ => $body:expr) => {{
        let dtypes = [$(candle_core::backend::BackendStorage::dtype($s)),+];
        match dtypes[0] {
            _ if dtypes.iter().any(|&d| d != dtypes[0]) => {
                candle_core::bail!("{} runs in f32 or f64, one dtype for all inputs", $what)
            }
            candle_core::DType::F32 => {
                $(let $v = $crate::slice::<f32>($s, $l)?;)+
                candle_core::CpuStorage::F32($body)
            }
            candle_core::DType::F64 => {
                $(let $v = $crate::slice::<f64>($s, $l)?;)+
                candle_core::CpuStorage::F64($body)
            }
            dtype => candle_core::bail!("{} runs in f32 or f64, not {dtype:?}", $what),
        }
    }};
}

/// A node's CPU backward, written once for both float types: [`with_values`] on the tensors `$ts` as
/// `f32` or `f64` (the first one's dtype), `$body` seeing them as `$v` and returning `Result`.
macro_rules! float_values {
    ($what:expr, [$($t:expr),+], |$v:ident| $body:expr) => {{
        let tensors: &[&candle_core::Tensor] = &[$($t),+];
        match tensors[0].dtype() {
            candle_core::DType::F32 => $crate::with_values::<f32, _>(tensors, |$v| $body),
            candle_core::DType::F64 => $crate::with_values::<f64, _>(tensors, |$v| $body),
            dtype => candle_core::bail!("{} runs in f32 or f64, not {dtype:?}", $what),
        }
    }};
}

pub mod attention;
mod elementwise;
mod linear;

pub use attention::{causal_padding_mask, masked_attention, AttentionMask};
pub use elementwise::{rms_norm, rope, silu_mul};
pub use linear::linear;
pub(crate) use wildreward_kernels::simd::inv_rms;

/// Rows per parallel task of the elementwise loops (work enough to amortise rayon's hand-off).
fn rows_per_task(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
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
                |t| linear(&t[0], &t[1], None).unwrap(),
                |t| t[0].broadcast_matmul(&t[1].t().unwrap()).unwrap(),
                tol,
            );
        }
    }
}
