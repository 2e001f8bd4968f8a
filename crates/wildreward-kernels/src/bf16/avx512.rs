//! The AVX512_BF16 register tile of the bf16 product: `vdpbf16ps` over packed bf16 pairs, f32
//! accumulators, masked stores for ragged edges.
#![allow(unsafe_code)]

/// f32 lanes per vector: the packed weight's panel width (checked against the packing's own
/// constant in the parent module).
pub(super) const LANES: usize = 16;

use std::arch::x86_64::*;

/// The register tile (see [`super::tile`]); `blocks.len()` is 1..=3, `m` 1..=8.
///
/// # Safety
/// The CPU must have AVX512F and AVX512_BF16; `xp` must hold `m` rows of `pairs` pairs, rows
/// `pairs` apart; every block `pairs × 16` lanes; `out` `m` rows `stride` apart of `cols` values.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile(
    xp: &[u32],
    m: usize,
    pairs: usize,
    blocks: &[&[u32]],
    out: &mut [f32],
    stride: usize,
    cols: usize,
    accumulate: bool,
) {
    macro_rules! dispatch {
        ($($m:literal),*) => {
            match (m, blocks.len()) {
                $(($m, 1) => run::<$m, 1>(xp, pairs, blocks, out, stride, cols, accumulate),
                  ($m, 2) => run::<$m, 2>(xp, pairs, blocks, out, stride, cols, accumulate),
                  ($m, _) => run::<$m, 3>(xp, pairs, blocks, out, stride, cols, accumulate),)*
                _ => unreachable!("tile rows are 1..=8"),
            }
        };
    }
    dispatch!(1, 2, 3, 4, 5, 6, 7, 8)
}

// Constant-bound index loops over the accumulator tile: fully unrolled, every accumulator a
// register (iterators over `acc` would borrow it across the inner loop).
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn run<const M: usize, const V: usize>(
    xp: &[u32],
    pairs: usize,
    blocks: &[&[u32]],
    out: &mut [f32],
    stride: usize,
    cols: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; M];
    let x = xp.as_ptr();
    let b: [*const u32; V] = std::array::from_fn(|v| blocks[v].as_ptr());
    for p in 0..pairs {
        let mut w = [_mm512_setzero_si512(); V];
        for v in 0..V {
            w[v] = _mm512_loadu_si512(b[v].add(p * LANES) as *const _);
        }
        for r in 0..M {
            let a = _mm512_set1_epi32(*x.add(r * pairs + p) as i32);
            for v in 0..V {
                acc[r][v] = _mm512_dpbf16_ps(
                    acc[r][v],
                    std::mem::transmute::<__m512i, __m512bh>(a),
                    std::mem::transmute::<__m512i, __m512bh>(w[v]),
                );
            }
        }
    }
    let o = out.as_mut_ptr();
    for r in 0..M {
        for v in 0..V {
            let col = v * LANES;
            if col >= cols {
                break;
            }
            let dst = o.add(r * stride + col);
            let left = cols - col;
            let mask: __mmask16 = if left >= LANES {
                0xffff
            } else {
                (1u16 << left) - 1
            };
            let mut y = acc[r][v];
            if accumulate {
                y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, dst));
            }
            _mm512_mask_storeu_ps(dst, mask, y);
        }
    }
}
