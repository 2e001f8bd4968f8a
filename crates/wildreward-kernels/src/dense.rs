//! Dense f32 kernels for encoders outside this crate: the door wildfb's MiniLM sentence embedder
//! (BERT: bidirectional attention, erf GELU, post-norm layer norms) runs its packed forward through,
//! so that it gets this crate's AVX-512 product ([`crate::matmul`]) and 16-lane elementwise loops
//! ([`crate::simd::wide`]) without `unsafe` code of its own and without the crate building at opt-level 3.
//!
//! Every function here is single-threaded: a caller runs one batch per thread (no synchronisation
//! inside a layer). Shapes that do not chain are a caller's bug and panic, as in [`crate::matmul`].

use crate::layout::Strided;
use crate::matmul::matmul;
use crate::simd::{fast_exp, wide};

/// A read-only f32 matrix over a slice: row-major with a row stride, or the transpose of one.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a>(Strided<'a, f32>);

impl<'a> MatRef<'a> {
    /// `rows × cols`, row-major, rows `row_stride` apart (a column block of a wider matrix when
    /// `row_stride > cols`, starting wherever `data` starts).
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self(Strided::rows(data, rows, cols, row_stride))
    }

    /// The transpose of the row-major `rows × cols` matrix whose rows are `row_stride` apart: a
    /// PyTorch `[out, in]` weight read as `Wᵀ`, or keys read as `Kᵀ`.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self(Strided::transposed(data, rows, cols, row_stride))
    }
}

/// `dst = scale · lhs · rhs`, or `dst += scale · lhs · rhs` when `accumulate` (a residual added in
/// the product); `dst` is row-major with rows `dst_row_stride` apart. On this crate's AVX-512 kernel
/// where the CPU has it, `gemm` otherwise. Panics if an operand does not fit its slice or the shapes
/// do not chain.
pub fn matmul_into(
    dst: &mut [f32],
    dst_row_stride: usize,
    lhs: MatRef,
    rhs: MatRef,
    scale: f32,
    accumulate: bool,
) {
    matmul(dst, dst_row_stride, lhs.0, rhs.0, scale, accumulate);
}

/// Adds `bias` to every row of `x` (rows of `bias.len()`).
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    if bias.is_empty() {
        return;
    }
    wide(|| {
        for row in x.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    })
}

/// `erf(x)` to within 2e-7 (Abramowitz & Stegun 7.1.26 with [`fast_exp`]), without branches so the
/// loops that call it vectorise.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    (1.0 - poly * fast_exp(-a * a)).copysign(x)
}

/// GELU in place, the exact (erf) form BERT's `hidden_act = "gelu"` names:
/// `x · (1 + erf(x / √2)) / 2`.
pub fn gelu_erf(x: &mut [f32]) {
    wide(|| {
        for v in x.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    })
}

/// The sum of `x`, accumulated in 16 lanes (vectorisable, the same order on every CPU).
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let tail = chunks.remainder().iter().fold(0.0, |a, &v| a + f(v));
    acc.into_iter().fold(tail, |a, b| a + b)
}

/// Layer norm in place over each row of `x` (rows of `weight.len()`): `(x − mean) / √(var + eps) ·
/// weight + bias`, the variance biased (divided by the width) as PyTorch's `LayerNorm` computes it.
pub fn layer_norm(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let width = weight.len();
    if width == 0 {
        return;
    }
    assert_eq!(
        bias.len(),
        width,
        "layer norm weight and bias differ in width"
    );
    wide(|| {
        for row in x.chunks_exact_mut(width) {
            let mean = lane_sum(row, |v| v) / width as f32;
            let var = lane_sum(row, |v| (v - mean) * (v - mean)) / width as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    })
}

/// Softmax in place over each row of `x` (rows of `width`).
pub fn softmax_rows(x: &mut [f32], width: usize) {
    if width == 0 {
        return;
    }
    wide(|| {
        for row in x.chunks_exact_mut(width) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            for v in row.iter_mut() {
                *v = fast_exp(*v - max);
            }
            let inv = 1.0 / lane_sum(row, |v| v);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf against a Taylor series in f64 (exact to 1e-15 for |x| ≤ 3) at the same f32 inputs, and
    /// its tails. The bound: Abramowitz–Stegun 7.1.26's 1.5e-7, plus the rounding of its half-dozen
    /// f32 operations (an ulp near 1 is 6e-8).
    #[test]
    fn erf_matches_a_series_to_5e_7() {
        let series = |x: f64| {
            let (mut term, mut sum) = (x, x);
            for n in 1..60 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        let mut worst = 0f64;
        let mut x = -3.0f64;
        while x <= 3.0 {
            let xf = x as f32;
            worst = worst.max((erf(xf) as f64 - series(xf as f64)).abs());
            x += 0.001;
        }
        assert!(worst < 5e-7, "erf error {worst}");
        assert_eq!(erf(9.0), 1.0);
        assert_eq!(erf(-9.0), -1.0);
        assert!(erf(0.0).abs() < 1e-7, "erf(0) = {}", erf(0.0)); // the approximation, not exact at 0
    }

    #[test]
    fn gelu_layer_norm_and_softmax_match_their_definitions() {
        let mut x = vec![-3.0f32, -0.5, 0.0, 0.7, 2.5, 10.0];
        gelu_erf(&mut x);
        let want = [
            -0.004_049_694f32,
            -0.154_268_77,
            0.0,
            0.530_625_4,
            2.484_475_8,
            10.0,
        ];
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }

        // Two rows of 20 (past one 16-lane chunk, with a tail).
        let mut rows: Vec<f32> = (0..40).map(|i| ((i * 7) % 13) as f32 * 0.3 - 1.0).collect();
        let original = rows.clone();
        let weight: Vec<f32> = (0..20).map(|i| 0.5 + i as f32 * 0.1).collect();
        let bias: Vec<f32> = (0..20).map(|i| i as f32 * -0.05).collect();
        layer_norm(&mut rows, &weight, &bias, 1e-12);
        for (row, orig) in rows.chunks(20).zip(original.chunks(20)) {
            let mean = orig.iter().map(|&v| v as f64).sum::<f64>() / 20.0;
            let var = orig.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 20.0;
            for j in 0..20 {
                let want = (orig[j] as f64 - mean) / (var + 1e-12).sqrt() * weight[j] as f64
                    + bias[j] as f64;
                assert!((row[j] as f64 - want).abs() < 1e-5, "{} vs {want}", row[j]);
            }
        }

        let mut scores = original.clone();
        softmax_rows(&mut scores, 20);
        for (row, orig) in scores.chunks(20).zip(original.chunks(20)) {
            let total: f64 = orig.iter().map(|&v| (v as f64).exp()).sum();
            for j in 0..20 {
                let want = (orig[j] as f64).exp() / total;
                assert!((row[j] as f64 - want).abs() < 1e-6, "{} vs {want}", row[j]);
            }
        }
    }

    /// A column block of a wider matrix times a transposed weight, accumulated onto a residual.
    #[test]
    fn matmul_into_reads_column_blocks_and_accumulates() {
        let (m, k, n, stride) = (3, 4, 5, 10);
        let a: Vec<f32> = (0..m * stride).map(|i| i as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| 1.0 - i as f32 * 0.05).collect(); // [n, k]
        let mut dst = vec![1.0f32; m * n];
        let block = &a[2..];
        matmul_into(
            &mut dst,
            n,
            MatRef::rows(block, m, k, stride),
            MatRef::transposed(&w, n, k, k),
            2.0,
            true,
        );
        for i in 0..m {
            for j in 0..n {
                let dot: f32 = (0..k).map(|p| a[i * stride + 2 + p] * w[j * k + p]).sum();
                let want = 1.0 + 2.0 * dot;
                assert!((dst[i * n + j] - want).abs() < 1e-5, "({i}, {j})");
            }
        }
        add_bias(&mut dst, &[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!(
            (dst[n + 4]
                - 5.0
                - (1.0
                    + 2.0
                        * (0..k)
                            .map(|p| a[stride + 2 + p] * w[4 * k + p])
                            .sum::<f32>()))
            .abs()
                < 1e-5
        );
    }
}
