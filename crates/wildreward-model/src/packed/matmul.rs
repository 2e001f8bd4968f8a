//! The one safe door to gemm's raw-pointer matrix product: every CPU kernel of this crate (the packed
//! forward's projections and attention, the training attention node) calls [`matmul`], which checks
//! each operand's extent against its slice before the single `unsafe` call.

use gemm::Parallelism;

/// A strided matrix over a slice: element `(i, j)` is `data[i · row_stride + j · col_stride]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strided<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> Strided<'a, T> {
    /// `rows × cols`, row-major, rows `row_stride` apart.
    pub(crate) fn rows(data: &'a [T], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of the row-major `rows × cols` matrix whose rows are `row_stride` apart (a
    /// `[out, in]` weight, or keys read as `Kᵀ`).
    pub(crate) fn transposed(data: &'a [T], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows: cols,
            cols: rows,
            row_stride: 1,
            col_stride: row_stride,
        }
    }

    /// Rows `start..end` of this matrix.
    pub(crate) fn row_range(&self, start: usize, end: usize) -> Self {
        let end = end.min(self.rows);
        let start = start.min(end);
        Self {
            data: self.data.get(start * self.row_stride..).unwrap_or(&[]),
            rows: end - start,
            ..*self
        }
    }

    /// Whether every element lies inside `data`.
    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst = scale · lhs · rhs`, or `dst += scale · lhs · rhs` when `accumulate`; `dst` is row-major
/// with rows `dst_row_stride` apart. Panics if an operand does not fit its slice or the shapes do not
/// chain (callers size their buffers from the same dimensions, so this is a bug, not bad input).
#[inline(always)]
pub(crate) fn matmul<T: 'static + Copy + From<f32>>(
    dst: &mut [T],
    dst_row_stride: usize,
    lhs: Strided<T>,
    rhs: Strided<T>,
    scale: T,
    accumulate: bool,
    parallelism: Parallelism,
) {
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
            parallelism,
        );
    }
}

/// [`matmul`] with the rows of `dst` (and `lhs`) split into one contiguous band per rayon thread,
/// each band a single-threaded product: no synchronisation inside the product, at the cost of each
/// band packing `rhs` itself.
pub(crate) fn matmul_banded<T: 'static + Copy + Send + Sync + From<f32>>(
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
            matmul(
                d,
                dst_row_stride,
                part,
                rhs,
                scale,
                accumulate,
                Parallelism::None,
            );
        }
    });
}
