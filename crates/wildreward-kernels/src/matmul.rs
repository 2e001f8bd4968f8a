//! The one safe door to the raw-pointer matrix products: every f32/f64 CPU product of the workspace
//! (the packed forward's projections and attention, the training nodes' linear and attention,
//! MiniLM) calls [`matmul`],
//! which checks each operand's extent against its slice before the `unsafe` call: this crate's
//! AVX-512 product ([`crate::sgemm`]) for f32 on a CPU that has it, the `gemm` crate otherwise.

#![allow(unsafe_code)]

use crate::layout::{Limit, Strided};
use gemm::Parallelism;
use std::any::TypeId;

/// `dst = scale · lhs · rhs`, or `dst += scale · lhs · rhs` when `accumulate`; `dst` is row-major
/// with rows `dst_row_stride` apart. Single-threaded ([`matmul_banded`] splits a product across
/// threads). Panics if an operand does not fit its slice or the shapes do not chain (callers size
/// their buffers from the same dimensions, so this is a bug, not bad input).
#[inline(always)]
pub fn matmul<T: 'static + Copy + From<f32>>(
    dst: &mut [T],
    dst_row_stride: usize,
    lhs: Strided<T>,
    rhs: Strided<T>,
    scale: T,
    accumulate: bool,
) {
    matmul_on(
        own_kernel_available(),
        dst,
        dst_row_stride,
        lhs,
        rhs,
        scale,
        accumulate,
        Limit::None,
    );
}

/// [`matmul`] for rows that need only part of the product (see [`Limit`]): causal attention's
/// products, which then skip most of the masked work of a block of queries.
#[inline(always)]
pub fn matmul_limited(
    dst: &mut [f32],
    dst_row_stride: usize,
    lhs: Strided<f32>,
    rhs: Strided<f32>,
    scale: f32,
    limit: Limit,
) {
    matmul_on(
        own_kernel_available(),
        dst,
        dst_row_stride,
        lhs,
        rhs,
        scale,
        false,
        limit,
    );
}

/// Whether f32 products run on this crate's AVX-512 kernel here.
fn own_kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return crate::sgemm::available();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// [`matmul`] on this crate's kernel for f32 when `own_kernel` (which must be available), on `gemm`
/// otherwise (which computes the whole product whatever `limit` says: as [`Limit`] allows).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn matmul_on<T: 'static + Copy + From<f32>>(
    own_kernel: bool,
    dst: &mut [T],
    dst_row_stride: usize,
    lhs: Strided<T>,
    rhs: Strided<T>,
    scale: T,
    accumulate: bool,
    limit: Limit,
) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (own_kernel, limit);
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(
        rhs.rows == k
            && lhs.fits()
            && rhs.fits()
            && (m == 0 || n == 0 || (m - 1) * dst_row_stride + n <= dst.len()),
        "matmul operands do not fit: {m}×{k} · {}×{n} into {} elements",
        rhs.rows,
        dst.len()
    );
    #[cfg(target_arch = "x86_64")]
    if own_kernel && TypeId::of::<T>() == TypeId::of::<f32>() {
        use crate::sgemm::{sgemm, Operand};
        let operand = |s: Strided<T>| Operand {
            ptr: s.data.as_ptr().cast::<f32>(),
            row_stride: s.row_stride,
            col_stride: s.col_stride,
        };
        // SAFETY: `T` is `f32` (checked just above), so the casts and the copy of `scale` reinterpret
        // nothing; the extents were checked as for gemm below; the CPU has AVX-512 (`own_kernel` is
        // only true where `available` said so).
        unsafe {
            let scale = std::mem::transmute_copy::<T, f32>(&scale);
            sgemm(
                (m, k, n),
                dst.as_mut_ptr().cast::<f32>(),
                dst_row_stride,
                operand(lhs),
                operand(rhs),
                scale,
                accumulate,
                limit,
            );
        }
        return;
    }
    // SAFETY: every element gemm reads lies inside `lhs.data` / `rhs.data` and every element it
    // writes inside `dst` (checked just above); `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::from(1.0),
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// [`matmul`] with the rows of `dst` (and `lhs`) split into one contiguous band per rayon thread,
/// each band a single-threaded product: no synchronisation inside the product, at the cost of each
/// band packing `rhs` itself.
pub fn matmul_banded<T: 'static + Copy + Send + Sync + From<f32>>(
    dst: &mut [T],
    dst_row_stride: usize,
    lhs: Strided<T>,
    rhs: Strided<T>,
    scale: T,
    accumulate: bool,
) {
    let threads = rayon::current_num_threads().max(1);
    let band = lhs.rows.div_ceil(threads).max(1);
    let bands: Vec<(usize, &mut [T])> = dst.chunks_mut(band * dst_row_stride).enumerate().collect();
    use rayon::prelude::*;
    bands.into_par_iter().for_each(|(i, d)| {
        let part = lhs.row_range(i * band, (i + 1) * band);
        if part.rows > 0 {
            matmul(d, dst_row_stride, part, rhs, scale, accumulate);
        }
    });
}

/// `lhs · rhs` for row-major `lhs` (`m × k`) and `rhs` (`k × n`), on all of rayon's threads: the
/// product every CPU kernel of this crate runs on, public so benchmarks can measure this CPU's f32
/// matmul peak with it. Panics if a slice is shorter than its shape.
pub fn matmul_f32(lhs: &[f32], rhs: &[f32], (m, k, n): (usize, usize, usize)) -> Vec<f32> {
    let mut dst = vec![0.0; m * n];
    matmul_banded(
        &mut dst,
        n,
        Strided::rows(lhs, m, k, k),
        Strided::rows(rhs, k, n, n),
        1.0,
        false,
    );
    dst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Staircase;

    /// `lhs · rhs` in f64, element by element.
    fn naive(m: usize, k: usize, n: usize, lhs: &Strided<f32>, rhs: &Strided<f32>) -> Vec<f64> {
        let at = |s: &Strided<f32>, i: usize, j: usize| s.data[i * s.row_stride + j * s.col_stride];
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|p| at(lhs, i, p) as f64 * at(rhs, p, j) as f64)
                    .sum();
            }
        }
        out
    }

    /// Values in [-1, 1) from a fixed LCG, so every run checks the same numbers.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every shape class the kernels dispatch on (row tails 1..=6, column tails inside and across
    /// 16-lane vectors and 64-column slivers, depths split into several blocks, more rows than one
    /// row block, k = 0), both operand layouts each, padded row strides, `scale`, and accumulation
    /// into existing values; checked against an f64 product, on `gemm` and, where the CPU has
    /// AVX-512, on this crate's kernel.
    #[test]
    fn matmul_matches_a_naive_product_on_every_shape_class() {
        for own in kernels() {
            check_every_shape_class(own);
        }
    }

    /// `gemm`, and this crate's kernel where the CPU has AVX-512.
    fn kernels() -> Vec<bool> {
        if own_kernel_available() {
            vec![false, true]
        } else {
            vec![false]
        }
    }

    /// A limited product (causal attention's) equals the full one wherever its rows need it: below
    /// each row's column limit, and everywhere when the depth stops where `lhs` turns zero. `dst`
    /// starts as NaN, so an element a row needs but no tile wrote fails. The staircases cross tile,
    /// sliver and depth-block boundaries, and one has tiles whose rows need no depth at all.
    #[test]
    fn limited_products_match_the_full_product_where_rows_need_it() {
        let cases = [
            (40, 64, 150, 1, 1),
            (96, 64, 200, 60, 3),
            (96, 1300, 70, 600, 3),
            (50, 700, 70, 1, 1),
            (16, 40, 20, 0, 8),
        ];
        for own in kernels() {
            for (case, &(m, k, n, first, rows_per_step)) in cases.iter().enumerate() {
                let stairs = Staircase {
                    first,
                    rows_per_step,
                };
                let close = |got: f32, want: f64, what: &str, i: usize, j: usize| {
                    let tol = 1e-5 * (1.0 + (k as f64).sqrt());
                    assert!(
                        (got as f64 - want).abs() <= tol,
                        "own kernel {own}, case {case}, {what} at ({i}, {j}): {got} vs {want}"
                    );
                };
                // Columns: scores `Q Kᵀ`, keys read transposed.
                let (a, b) = (values(m * k, case as u64), values(n * k, 40));
                let (lhs, rhs) = (Strided::rows(&a, m, k, k), Strided::transposed(&b, n, k, k));
                let want = naive(m, k, n, &lhs, &rhs);
                let mut dst = vec![f32::NAN; m * n];
                let limit = Limit::Columns(stairs);
                matmul_on(own, &mut dst, n, lhs, rhs, 0.5, false, limit);
                for i in 0..m {
                    for j in 0..n.min(stairs.at(i)) {
                        close(dst[i * n + j], 0.5 * want[i * n + j], "columns", i, j);
                    }
                }
                // Depth: probabilities times values, each row zero past its limit.
                let mut a = values(m * k, case as u64 + 50);
                for (i, row) in a.chunks_mut(k).enumerate() {
                    row[stairs.at(i).min(k)..].fill(0.0);
                }
                let b = values(k * n, 41);
                let (lhs, rhs) = (Strided::rows(&a, m, k, k), Strided::rows(&b, k, n, n));
                let want = naive(m, k, n, &lhs, &rhs);
                let mut dst = vec![f32::NAN; m * n];
                matmul_on(own, &mut dst, n, lhs, rhs, 0.5, false, Limit::Depth(stairs));
                for i in 0..m {
                    for j in 0..n {
                        close(dst[i * n + j], 0.5 * want[i * n + j], "depth", i, j);
                    }
                }
            }
        }
    }

    fn check_every_shape_class(own: bool) {
        let shapes = [
            (1, 1, 1),
            (5, 3, 17),
            (6, 64, 64),
            (7, 33, 65),
            (13, 700, 130),
            (200, 20, 33),
            (3, 1500, 40),
            (4, 0, 9),
        ];
        for (case, &(m, k, n)) in shapes.iter().enumerate() {
            for layout in 0..4 {
                let (lhs_t, rhs_t) = (layout & 1 == 1, layout & 2 == 2);
                let (a, b) = (
                    values((m + 3) * (k + 3), case as u64),
                    values((k + 5) * (n + 5), 99),
                );
                // Row strides padded past the logical width, so strides are not mistaken for widths.
                let lhs = if lhs_t {
                    Strided::transposed(&a, k, m, m + 3)
                } else {
                    Strided::rows(&a, m, k, k + 3)
                };
                let rhs = if rhs_t {
                    Strided::transposed(&b, n, k, k + 2)
                } else {
                    Strided::rows(&b, k, n, n + 5)
                };
                let expected = naive(m, k, n, &lhs, &rhs);
                let dst_stride = n + 2;
                for accumulate in [false, true] {
                    let start = values(m * dst_stride, 7);
                    let mut dst = start.clone();
                    matmul_on(
                        own,
                        &mut dst,
                        dst_stride,
                        lhs,
                        rhs,
                        0.5,
                        accumulate,
                        Limit::None,
                    );
                    for i in 0..m {
                        for j in 0..n {
                            let base = if accumulate {
                                start[i * dst_stride + j] as f64
                            } else {
                                0.0
                            };
                            let want = base + 0.5 * expected[i * n + j];
                            let got = dst[i * dst_stride + j] as f64;
                            let tol = 1e-5 * (1.0 + (k as f64).sqrt());
                            assert!(
                                (got - want).abs() <= tol,
                                "own kernel {own}, {m}×{k}×{n} layout {layout} accumulate {accumulate} at ({i}, {j}): {got} vs {want}"
                            );
                        }
                        // The padding between rows of `dst` is left alone.
                        for j in n..dst_stride {
                            if i * dst_stride + j < dst.len() {
                                assert_eq!(dst[i * dst_stride + j], start[i * dst_stride + j]);
                            }
                        }
                    }
                }
            }
        }
    }
}
