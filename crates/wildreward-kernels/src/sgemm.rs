//! An f32 matrix product for CPUs with AVX-512: what every projection and attention product of this
//! crate runs on such a CPU.
//!
//! Why it exists: the `gemm` crate (candle's CPU matmul) runs 256-bit kernels, and its AVX-512 kernels
//! were slower still on the AMD Zen 5 machines this project runs on (53–70 GFLOP/s per core), while
//! the FMA units there retire 16-lane FMAs at full rate: ~225 GFLOP/s per core against ~115 at 8
//! lanes. This product reaches 170–220 GFLOP/s per core on the model's shapes against `gemm`'s
//! ~110 and PyTorch / MKL's ~80 (measured in `docs/benchmarks.md`).
//!
//! Layout (the BLIS loop nest, less one packing): `rhs` is packed into 64-column slivers, `k`-major,
//! zero-padded, per block of `KC` rows; `lhs` is read in place through its strides (packing it cost
//! more than it saved on every shape measured). A register tile of up to 6 rows × 64 columns (24
//! accumulators of 16 lanes) runs a block's whole depth, then is scaled and stored (or added) under
//! a column mask, so no shape needs padding in `dst` or `lhs`. Single-threaded: callers split rows
//! into bands ([`crate::matmul::matmul_banded`]) or run one product per task.

#![allow(unsafe_code)]

use crate::layout::Limit;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Rows of the register tile.
const MR: usize = 6;
/// 16-lane vectors per tile row: the tile is `MR × NR` with `NR = 16 · NV`.
const NV: usize = 4;
/// Columns of a packed `rhs` sliver.
const NR: usize = 16 * NV;
/// `lhs` rows per block: the block's `MC × KC` values stay in the 1 MiB L2 while every sliver of
/// `rhs` passes over them.
const MC: usize = 192;
/// The deepest `k` block; deeper products are split into equal blocks no deeper than this.
const KC_MAX: usize = 640;
/// `rhs` columns per packed block (bounds the packing buffer at `KC_MAX · NC` floats per thread).
const NC: usize = 2048;

thread_local! {
    /// The packed `rhs` block, reused across calls on this thread.
    static PACKED_RHS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether this CPU runs [`sgemm`] (AVX-512 F, detected once at run time), and the environment does
/// not ask for the `gemm` crate instead (`WILDREWARD_MATMUL=gemm`, for side-by-side benchmarks).
pub(crate) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::env::var("WILDREWARD_MATMUL").map_or(true, |v| v != "gemm")
            && std::arch::is_x86_feature_detected!("avx512f")
    })
}

/// A matrix operand: element `(i, j)` at `ptr + i · row_stride + j · col_stride`, one of the two
/// strides 1 (a row-major matrix or the transpose of one).
#[derive(Clone, Copy)]
pub(crate) struct Operand {
    pub(crate) ptr: *const f32,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

/// `dst = scale · lhs · rhs`, or `dst += scale · lhs · rhs` when `accumulate`, with `lhs` `m × k`,
/// `rhs` `k × n` and `dst` row-major `m × n`, rows `dst_row_stride` apart; `limit` lets a tile stop
/// where the last of its rows stops needing the product.
///
/// # Safety
/// [`available`] is true; every element of the three operands lies in memory valid for reads (and
/// `dst` for writes) for the call, and `dst` overlaps neither input.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    (m, k, n): (usize, usize, usize),
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: Operand,
    rhs: Operand,
    scale: f32,
    accumulate: bool,
    limit: Limit,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                std::ptr::write_bytes(dst.add(i * dst_row_stride), 0, n);
            }
        }
        return;
    }
    let kc_block = k.div_ceil(k.div_ceil(KC_MAX));
    PACKED_RHS.with_borrow_mut(|packed| {
        packed.resize(kc_block * NC.min(n).div_ceil(NR) * NR, 0.0);
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(kc_block) {
                let kc = kc_block.min(k - pc);
                let block = Operand {
                    ptr: rhs.ptr.add(pc * rhs.row_stride + jc * rhs.col_stride),
                    ..rhs
                };
                pack_rhs(block, kc, nc, packed);
                let lhs_block = Operand {
                    ptr: lhs.ptr.add(pc * lhs.col_stride),
                    ..lhs
                };
                let dst_block = dst.add(jc);
                let accumulate = accumulate || pc > 0;
                let block = Block {
                    shape: (m, kc, nc),
                    offset: (pc, jc),
                    dst: dst_block,
                    dst_row_stride,
                    lhs: lhs_block,
                    packed,
                    scale,
                    accumulate,
                };
                multiply_packed(block, limit);
            }
        }
    });
}

/// One packed block of a product: `dst (+)= scale · lhs · rhs` for the `kc × nc` block of `rhs` at
/// depth and column `offset` of the whole product, packed in `packed`.
struct Block<'a> {
    /// `(m, kc, nc)`.
    shape: (usize, usize, usize),
    /// `(pc, jc)`: the block's first depth step and first column in the whole product.
    offset: (usize, usize),
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: Operand,
    packed: &'a [f32],
    scale: f32,
    accumulate: bool,
}

/// The register tiles of one packed block, `MC` rows of `lhs` at a time, each tile cut to what the
/// last of its rows needs under `limit`.
///
/// # Safety
/// As [`sgemm`], for the block's `kc` columns of `lhs` and `nc` of `dst`.
unsafe fn multiply_packed(b: Block, limit: Limit) {
    let ((m, kc, nc), (pc, jc)) = (b.shape, b.offset);
    for ic in (0..m).step_by(MC) {
        let mc = MC.min(m - ic);
        for jr in (0..nc).step_by(NR) {
            for ir in (0..mc).step_by(MR) {
                let (i, rows) = (ic + ir, MR.min(mc - ir));
                let mut steps = kc;
                match limit {
                    Limit::None => {}
                    Limit::Columns(stairs) => {
                        if jc + jr >= stairs.at(i + rows - 1) {
                            continue;
                        }
                    }
                    Limit::Depth(stairs) => {
                        steps = stairs.at(i + rows - 1).saturating_sub(pc).min(kc);
                        // A tile with no depth left still zeroes `dst` when it does not accumulate.
                        if steps == 0 && b.accumulate {
                            continue;
                        }
                    }
                }
                let tile = Tile {
                    kc: steps,
                    lhs: b.lhs.ptr.add(i * b.lhs.row_stride),
                    lhs_row_stride: b.lhs.row_stride,
                    lhs_col_stride: b.lhs.col_stride,
                    rhs: b.packed.as_ptr().add(jr * kc),
                    dst: b.dst.add(i * b.dst_row_stride + jr),
                    dst_row_stride: b.dst_row_stride,
                    cols: NR.min(nc - jr),
                    scale: b.scale,
                    accumulate: b.accumulate,
                };
                run_tile(tile, rows);
            }
        }
    }
}

/// Packs the `kc × nc` block of `rhs` into `packed`: sliver `s` (columns `64s..64s+64`) at
/// `s · 64 · kc`, row `p` of it at `+ 64p`, columns past `nc` zero.
///
/// # Safety
/// The block's elements are readable; `packed` holds `kc · ⌈nc / 64⌉ · 64` floats.
unsafe fn pack_rhs(rhs: Operand, kc: usize, nc: usize, packed: &mut [f32]) {
    for (s, sliver) in packed[..kc * nc.div_ceil(NR) * NR]
        .chunks_exact_mut(kc * NR)
        .enumerate()
    {
        let j0 = s * NR;
        let width = NR.min(nc - j0);
        let src = rhs.ptr.add(j0 * rhs.col_stride);
        if rhs.col_stride == 1 {
            for (p, row) in sliver.chunks_exact_mut(NR).enumerate() {
                let from = std::slice::from_raw_parts(src.add(p * rhs.row_stride), width);
                row[..width].copy_from_slice(from);
                row[width..].fill(0.0);
            }
        } else {
            // A transposed row-major matrix: `Operand`s have a unit stride on one axis.
            debug_assert_eq!(rhs.row_stride, 1);
            pack_sliver_transposed(src, rhs.col_stride, kc, width, sliver);
        }
    }
}

/// Packs one sliver of an `rhs` whose columns are contiguous along the depth (`row_stride == 1`: a
/// weight read as `Wᵀ`, keys as `Kᵀ`) by 16 × 16 transposes in registers: each column's 16 steps are
/// one load, and each sliver row's 16 columns one store. Columns past `width` come out zero.
///
/// # Safety
/// Columns `0..width` of the sliver (`kc` floats each, `col_stride` apart from `src`) are readable;
/// `sliver` holds `kc · 64` floats.
#[target_feature(enable = "avx512f")]
unsafe fn pack_sliver_transposed(
    src: *const f32,
    col_stride: usize,
    kc: usize,
    width: usize,
    sliver: &mut [f32],
) {
    debug_assert!(sliver.len() >= kc * NR);
    let dst = sliver.as_mut_ptr();
    for j0 in (0..NR).step_by(16) {
        for p0 in (0..kc).step_by(16) {
            let steps = (kc - p0).min(16);
            // Masked-off lanes are neither read nor faulted on.
            let steps_mask: __mmask16 = if steps == 16 {
                0xffff
            } else {
                (1 << steps) - 1
            };
            let mut block = [_mm512_setzero_ps(); 16];
            for (j, column) in block.iter_mut().enumerate().take(width.saturating_sub(j0)) {
                let at = src.add((j0 + j) * col_stride + p0);
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(128).cast());
                *column = _mm512_maskz_loadu_ps(steps_mask, at);
            }
            for (p, row) in transpose_16x16(block).iter().enumerate().take(steps) {
                _mm512_storeu_ps(dst.add((p0 + p) * NR + j0), *row);
            }
        }
    }
}

/// The transpose of a 16 × 16 block held as 16 rows: pairs of rows interleaved, then quads, then
/// 128-bit lanes exchanged twice.
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose_16x16(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    // u[4g + m], lane L: element 4L + m of rows 4g..4g+4.
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (lo, hi) = (t[4 * g], t[4 * g + 1]);
        let (lo2, hi2) = (t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = _mm512_shuffle_ps::<0x44>(lo, lo2);
        u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(lo, lo2);
        u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(hi, hi2);
        u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(hi, hi2);
    }
    // Row 4L + m of the transpose gathers lane L of u[m], u[4 + m], u[8 + m], u[12 + m].
    let mut out = [_mm512_setzero_ps(); 16];
    for m in 0..4 {
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[m], u[4 + m]);
        let v1 = _mm512_shuffle_f32x4::<0xDD>(u[m], u[4 + m]);
        let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + m], u[12 + m]);
        let v3 = _mm512_shuffle_f32x4::<0xDD>(u[8 + m], u[12 + m]);
        out[m] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
        out[4 + m] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
        out[8 + m] = _mm512_shuffle_f32x4::<0xDD>(v0, v2);
        out[12 + m] = _mm512_shuffle_f32x4::<0xDD>(v1, v3);
    }
    out
}

/// One register tile's work: `rows × cols` of `dst` over `kc` steps of the depth.
#[derive(Clone, Copy)]
struct Tile {
    kc: usize,
    lhs: *const f32,
    lhs_row_stride: usize,
    lhs_col_stride: usize,
    /// The packed sliver: 64 floats per step.
    rhs: *const f32,
    dst: *mut f32,
    dst_row_stride: usize,
    cols: usize,
    scale: f32,
    accumulate: bool,
}

/// Runs `tile` with the kernel sized to its rows (1..=6) and its live 16-column vectors (1..=4), so
/// a tail tile neither reads `lhs` rows past the matrix nor multiplies whole vectors of padding.
///
/// # Safety
/// As [`sgemm`], for the tile's rows and columns.
unsafe fn run_tile(tile: Tile, rows: usize) {
    macro_rules! by_vectors {
        ($r:literal) => {
            match tile.cols.div_ceil(16) {
                1 => kernel::<$r, 1>(tile),
                2 => kernel::<$r, 2>(tile),
                3 => kernel::<$r, 3>(tile),
                _ => kernel::<$r, 4>(tile),
            }
        };
    }
    match rows {
        1 => by_vectors!(1),
        2 => by_vectors!(2),
        3 => by_vectors!(3),
        4 => by_vectors!(4),
        5 => by_vectors!(5),
        _ => by_vectors!(6),
    }
}

/// The register tile: `R × 16V` accumulators, one broadcast `lhs` value times `V` packed `rhs`
/// vectors per row and step, then `dst (+)= scale · acc` under the column mask.
///
/// # Safety
/// As [`run_tile`], with `R` the tile's rows and `16V ≥ cols`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn kernel<const R: usize, const V: usize>(t: Tile) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let (mut a, mut b) = (t.lhs, t.rhs);
    for _ in 0..t.kc {
        let mut bv = [_mm512_setzero_ps(); V];
        for (v, vector) in bv.iter_mut().enumerate() {
            *vector = _mm512_loadu_ps(b.add(16 * v));
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(i * t.lhs_row_stride));
            for (sum, vector) in row.iter_mut().zip(&bv) {
                *sum = _mm512_fmadd_ps(av, *vector, *sum);
            }
        }
        // Wrapping: past the last step these point beyond the operands and are never read.
        a = a.wrapping_add(t.lhs_col_stride);
        b = b.wrapping_add(NR);
    }
    let scale = _mm512_set1_ps(t.scale);
    for (i, row) in acc.iter().enumerate() {
        for (v, sum) in row.iter().enumerate() {
            let left = t.cols.saturating_sub(16 * v);
            let mask: __mmask16 = if left >= 16 { 0xffff } else { (1 << left) - 1 };
            let at = t.dst.add(i * t.dst_row_stride + 16 * v);
            let mut out = _mm512_mul_ps(*sum, scale);
            if t.accumulate {
                out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(mask, at));
            }
            _mm512_mask_storeu_ps(at, mask, out);
        }
    }
}
