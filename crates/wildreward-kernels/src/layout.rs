//! The shapes the matrix products take: a strided view of a slice ([`Strided`]), and which part of a
//! product its rows need ([`Limit`], [`Staircase`]: causal attention skips its masked work). Apart
//! from the products themselves so the AVX-512 kernel and its safe wrapper both read them without
//! importing each other.

/// A strided matrix over a slice: element `(i, j)` is `data[i · row_stride + j · col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl<'a, T> Strided<'a, T> {
    /// `rows × cols`, row-major, rows `row_stride` apart.
    pub fn rows(data: &'a [T], rows: usize, cols: usize, row_stride: usize) -> Self {
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
    pub fn transposed(data: &'a [T], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows: cols,
            cols: rows,
            row_stride: 1,
            col_stride: row_stride,
        }
    }

    /// Rows `start..end` of this matrix.
    pub fn row_range(&self, start: usize, end: usize) -> Self {
        let end = end.min(self.rows);
        let start = start.min(end);
        Self {
            data: self.data.get(start * self.row_stride..).unwrap_or(&[]),
            rows: end - start,
            ..*self
        }
    }

    /// Whether every element lies inside `data`.
    pub(crate) fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// Where row `i` of a product stops needing it: `first + i / rows_per_step`, a staircase rising one
/// step every `rows_per_step` rows (causal attention: a query's keys end at its own position, and
/// the query heads that share keys are stacked `rows_per_step` rows per position).
#[derive(Debug, Clone, Copy)]
pub struct Staircase {
    /// The limit at row 0.
    pub first: usize,
    /// Rows per step of the staircase.
    pub rows_per_step: usize,
}

impl Staircase {
    /// The limit at row `row`.
    #[inline]
    pub fn at(&self, row: usize) -> usize {
        self.first + row / self.rows_per_step.max(1)
    }
}

/// Which part of a product its rows need: the product may skip the rest, a register tile at a time.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Every row needs the whole product.
    None,
    /// Row `i` of `dst` is needed below column `at(i)` only; past it, it may be left unwritten.
    Columns(Staircase),
    /// Row `i` of `lhs` is zero from column `at(i)` on (the caller guarantees it), so the product may
    /// stop its depth there.
    Depth(Staircase),
}
