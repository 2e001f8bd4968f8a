//! Row operations of the packed decoder forward on `[tokens, width]` slices: RMS norm, RoPE, the
//! gated MLP's `silu(gate) · up`, and the linear projection `x · Wᵀ + b` (gemm for many rows, one
//! streaming pass over the weight for a decoding step's few rows, the bf16 kernel when the weight was
//! packed for it). Parallel over rows on the caller's rayon pool; each loop body runs under
//! [`wide`], so the numbers are the same on every CPU.
#![allow(unsafe_code)]

use crate::bf16::{matmul_bf16, Bf16Kernel, PackedBf16};
use crate::layout::Strided;
use crate::matmul::matmul_banded;
use crate::simd::{fast_exp, inv_rms, wide};
use rayon::prelude::*;

/// A projection's weights as the packed forward reads them: `w` in HF's `[out, in]` layout
/// (`n × k`), an optional bias of `n`, and the same weight packed as bf16 for a kernel when the model
/// runs its products in bf16.
#[derive(Debug, Clone, Copy)]
pub struct LinearRef<'a> {
    /// The `[n, k]` f32 weight, row-major.
    pub w: &'a [f32],
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// The `[n]` bias, if any.
    pub bias: Option<&'a [f32]>,
    /// The weight packed for a bf16 kernel; when set, the product runs there.
    pub bf16: Option<(Bf16Kernel, &'a PackedBf16)>,
}

/// Rows at or below which [`linear`] streams the weight once through dot products instead of calling
/// gemm: a decoding step has a handful of rows, and gemm would repack the whole weight matrix for them.
const SKINNY_ROWS: usize = 16;

/// Output columns per parallel task of [`skinny_linear`].
const SKINNY_BLOCK: usize = 64;

/// `out[t, :] (+)= x[t, :] · Wᵀ + b` for `tokens` rows; adds to `out` when `accumulate` (the
/// residual stream), overwrites it otherwise. Fails, writing nothing, when a slice is shorter than
/// its shape.
pub fn linear(
    x: &[f32],
    lin: LinearRef,
    out: &mut [f32],
    tokens: usize,
    accumulate: bool,
) -> Result<(), String> {
    let (n, k) = (lin.n, lin.k);
    if x.len() < tokens * k
        || lin.w.len() != n * k
        || out.len() < tokens * n
        || lin.bias.is_some_and(|b| b.len() != n)
    {
        return Err(format!(
            "linear operands do not fit ({tokens}×{k} · {n}×{k}ᵀ, weight of {}, output of {})",
            lin.w.len(),
            out.len()
        ));
    }
    if let Some((kernel, w16)) = lin.bf16 {
        matmul_bf16(kernel, x, tokens, w16, out, accumulate)?;
    } else if tokens <= SKINNY_ROWS {
        skinny_linear(
            &x[..tokens * k],
            lin.w,
            &mut out[..tokens * n],
            k,
            accumulate,
        );
    } else {
        matmul_banded(
            &mut out[..tokens * n],
            n,
            Strided::rows(x, tokens, k, k),
            Strided::transposed(lin.w, n, k, k),
            1.0,
            accumulate,
        );
    }
    if let Some(bias) = lin.bias {
        out[..tokens * n]
            .par_chunks_mut(n)
            .for_each(|row| row.iter_mut().zip(bias).for_each(|(y, b)| *y += b));
    }
    Ok(())
}

/// `out (+)= x · Wᵀ` for a few rows of `x`: each weight row is read once and dotted with every row of
/// `x` (which stays in cache), in parallel over blocks of output columns.
fn skinny_linear(x: &[f32], w: &[f32], out: &mut [f32], k: usize, accumulate: bool) {
    let tokens = x.len() / k;
    let n = w.len() / k;
    // Column-major scratch (`[n, tokens]`) so each task writes one contiguous block.
    let mut by_column = vec![0f32; n * tokens];
    by_column
        .par_chunks_mut(SKINNY_BLOCK * tokens)
        .zip(w.par_chunks(SKINNY_BLOCK * k))
        .for_each(|(dst, w)| dots(w, x, k, dst));
    for (t, row) in out.chunks_mut(n).enumerate() {
        for (j, y) in row.iter_mut().enumerate() {
            let v = by_column[j * tokens + t];
            *y = if accumulate { *y + v } else { v };
        }
    }
}

/// `dst[j · tokens + t] = w_j · x_t` for the weight rows `w` (of length `k`) and rows `x`.
fn dots(w: &[f32], x: &[f32], k: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { dots_avx2(w, x, k, dst) };
    }
    dots_portable(w, x, k, dst);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dots_avx2(w: &[f32], x: &[f32], k: usize, dst: &mut [f32]) {
    dots_portable(w, x, k, dst);
}

/// Eight independent accumulators per dot product, so the compiler vectorises it (8 lanes wide where
/// compiled for AVX2).
#[inline(always)]
fn dots_portable(w: &[f32], x: &[f32], k: usize, dst: &mut [f32]) {
    let tokens = x.len() / k;
    for (w_row, dst) in w.chunks_exact(k).zip(dst.chunks_mut(tokens)) {
        for (x_row, y) in x.chunks_exact(k).zip(dst.iter_mut()) {
            let mut acc = [0f32; 8];
            let (wc, xc) = (w_row.chunks_exact(8), x_row.chunks_exact(8));
            let (w_tail, x_tail) = (wc.remainder(), xc.remainder());
            for (a, b) in wc.zip(xc) {
                for l in 0..8 {
                    acc[l] += a[l] * b[l];
                }
            }
            let mut sum: f32 = acc.iter().sum();
            for (a, b) in w_tail.iter().zip(x_tail) {
                sum += a * b;
            }
            *y = sum;
        }
    }
}

/// `out = x / rms(x) · w` row by row (rows of `width`), in f32.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32], width: usize) {
    out.par_chunks_mut(width)
        .zip(x.par_chunks(width))
        .with_min_len(16)
        .for_each(|(o, x)| {
            wide(|| {
                let inv = inv_rms(x, eps);
                for ((o, x), w) in o.iter_mut().zip(x).zip(w) {
                    *o = x * inv * w;
                }
            })
        });
}

/// RMS norm in place over consecutive chunks of `width` (Qwen3's per-head q/k norms).
pub fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32, width: usize) {
    x.par_chunks_mut(width).with_min_len(64).for_each(|x| {
        wide(|| {
            let inv = inv_rms(x, eps);
            for (x, w) in x.iter_mut().zip(w) {
                *x = *x * inv * w;
            }
        })
    });
}

/// RoPE tables, `[max_positions, head_dim / 2]` each.
#[derive(Debug, Clone, Copy)]
pub struct Rope<'a> {
    /// `cos(position · θᵢ)`.
    pub cos: &'a [f32],
    /// `sin(position · θᵢ)`.
    pub sin: &'a [f32],
}

/// Rotates each head of each token by its position (HF's half-split layout).
pub fn apply_rope(x: &mut [f32], rope: &Rope, positions: &[usize], heads: usize, hd: usize) {
    let half = hd / 2;
    x.par_chunks_mut(heads * hd)
        .zip(positions.par_iter())
        .with_min_len(16)
        .for_each(|(token, &pos)| {
            let cos = &rope.cos[pos * half..(pos + 1) * half];
            let sin = &rope.sin[pos * half..(pos + 1) * half];
            wide(|| {
                for head in token.chunks_mut(hd) {
                    let (a, b) = head.split_at_mut(half);
                    for (((a, b), c), s) in a.iter_mut().zip(b.iter_mut()).zip(cos).zip(sin) {
                        let (x1, x2) = (*a, *b);
                        *a = x1 * c - x2 * s;
                        *b = x2 * c + x1 * s;
                    }
                }
            })
        });
}

/// `gate = silu(gate) · up`, elementwise.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    gate.par_chunks_mut(4096)
        .zip(up.par_chunks(4096))
        .for_each(|(g, u)| {
            wide(|| {
                for (g, u) in g.iter_mut().zip(u) {
                    *g = *g / (1.0 + fast_exp(-*g)) * u;
                }
            })
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The few-row streaming path and the gemm path give the f64 product (with bias, accumulating).
    #[test]
    fn linear_matches_an_f64_product_on_both_row_paths() {
        let (n, k) = (70, 37);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 / 50.0).collect();
        for tokens in [1, 3, SKINNY_ROWS, SKINNY_ROWS + 5] {
            let x: Vec<f32> = (0..tokens * k)
                .map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0)
                .collect();
            let mut out = vec![0.5f32; tokens * n];
            let lin = LinearRef {
                w: &w,
                n,
                k,
                bias: Some(&bias),
                bf16: None,
            };
            linear(&x, lin, &mut out, tokens, true).expect("fits");
            for t in 0..tokens {
                for j in 0..n {
                    let want: f64 = 0.5
                        + bias[j] as f64
                        + (0..k)
                            .map(|p| x[t * k + p] as f64 * w[j * k + p] as f64)
                            .sum::<f64>();
                    assert!((out[t * n + j] as f64 - want).abs() < 1e-4, "{tokens} rows");
                }
            }
        }
        let lin = LinearRef {
            w: &w,
            n,
            k,
            bias: None,
            bf16: None,
        };
        assert!(linear(&[0.0; 3], lin, &mut [0.0; 70], 1, false).is_err());
    }
}
