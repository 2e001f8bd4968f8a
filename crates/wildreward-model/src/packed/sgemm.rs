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
//! into bands ([`super::matmul::matmul_banded`]) or run one product per task.

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

/// A matrix operand: element `(i, j)` at `ptr + i · row_stride + j · col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Operand {
    pub(crate) ptr: *const f32,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

/// `dst = scale · lhs · rhs`, or `dst += scale · lhs · rhs` when `accumulate`, with `lhs` `m × k`,
/// `rhs` `k × n` and `dst` row-major `m × n`, rows `dst_row_stride` apart.
///
/// # Safety
/// [`available`] is true; every element of the three operands lies in memory valid for reads (and
/// `dst` for writes) for the call, and `dst` overlaps neither input.
pub(crate) unsafe fn sgemm(
    (m, k, n): (usize, usize, usize),
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: Operand,
    rhs: Operand,
    scale: f32,
    accumulate: bool,
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
                multiply_packed(
                    (m, kc, nc),
                    dst_block,
                    dst_row_stride,
                    lhs_block,
                    packed,
                    scale,
                    accumulate,
                );
            }
        }
    });
}

/// The register tiles of one depth block: `dst (+)= scale · lhs · rhs` with `rhs` (`kc × nc`)
/// packed in `packed`, blocks of `MC` rows of `lhs` in turn.
///
/// # Safety
/// As [`sgemm`], for `kc` columns of `lhs` and `nc` of `dst`; `packed` holds the packed block.
unsafe fn multiply_packed(
    (m, kc, nc): (usize, usize, usize),
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: Operand,
    packed: &[f32],
    scale: f32,
    accumulate: bool,
) {
    for ic in (0..m).step_by(MC) {
        let mc = MC.min(m - ic);
        for jr in (0..nc).step_by(NR) {
            for ir in (0..mc).step_by(MR) {
                let i = ic + ir;
                let tile = Tile {
                    kc,
                    lhs: lhs.ptr.add(i * lhs.row_stride),
                    lhs_row_stride: lhs.row_stride,
                    lhs_col_stride: lhs.col_stride,
                    rhs: packed.as_ptr().add(jr * kc),
                    dst: dst.add(i * dst_row_stride + jr),
                    dst_row_stride,
                    cols: NR.min(nc - jr),
                    scale,
                    accumulate,
                };
                run_tile(tile, MR.min(mc - ir));
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
            // A transposed row-major matrix (a weight read as `Wᵀ`, keys as `Kᵀ`): 16 steps of the
            // depth at a time, so each column's read is one cache line and the writes stay within
            // 16 sliver rows (4 KiB) instead of striding over the whole sliver.
            for p0 in (0..kc).step_by(16) {
                let p1 = (p0 + 16).min(kc);
                for j in 0..width {
                    let col = src.add(j * rhs.col_stride);
                    for p in p0..p1 {
                        sliver[p * NR + j] = *col.add(p * rhs.row_stride);
                    }
                }
            }
            if width < NR {
                for row in sliver.chunks_exact_mut(NR) {
                    row[width..].fill(0.0);
                }
            }
        }
    }
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
