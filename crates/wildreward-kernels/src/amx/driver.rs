//! Blocking and packing for the AMX product, over any [`TileMachine`].

use super::{Hardware, TileConfig, TileMachine, MAX_COLSB, MAX_ROWS};
use crate::bf16::{pair, place_panels, PackedBf16, LANES};
use rayon::prelude::*;

/// Rows of a tile (of `x`, and of an accumulator).
const TR: usize = MAX_ROWS;
/// bf16 pairs per tile row of `x` (one K step: 32 inputs), and rows of a weight tile.
const KP: usize = MAX_COLSB / 4;
/// u32 values of one weight tile (16 pairs × 16 columns).
const B_TILE: usize = KP * LANES;
/// Rows per parallel task when splitting rows (a multiple of the 32-row micro-block).
const TASK_ROWS: usize = 64;
/// Weight blocks (of 16 columns) per parallel task when splitting columns.
const PANEL_BLOCKS: usize = 4;

// The tiles: accumulators C[i][j] for row tile i, column tile j; two x tiles; two weight tiles.
const C00: usize = 0;
const C01: usize = 1;
const C10: usize = 2;
const C11: usize = 3;
const A0: usize = 4;
const A1: usize = 5;
const B0: usize = 6;
const B1: usize = 7;

/// `y (+)= x · Wᵀ` on [`Hardware`] tiles (one per rayon task); the caller checked the CPU.
pub(crate) fn matmul_hardware(
    x: &[f32],
    rows: usize,
    w: &PackedBf16,
    out: &mut [f32],
    accumulate: bool,
) -> Result<(), String> {
    matmul_tiles(Hardware::new, x, rows, w, out, accumulate)
}

/// `out[r, :] (+)= x[r, :] · Wᵀ` for `rows` rows, as [`crate::matmul_bf16`] (same operands, same
/// rounding of `x` to bf16), on the tile machines `machine` makes: one per parallel task, on the
/// thread that runs it. With [`super::Emulated`] this runs the AMX path on any CPU.
pub fn matmul_tiles<M, F>(
    machine: F,
    x: &[f32],
    rows: usize,
    w: &PackedBf16,
    out: &mut [f32],
    accumulate: bool,
) -> Result<(), String>
where
    M: TileMachine,
    F: Fn() -> Result<M, String> + Sync,
{
    let (n, k) = (w.n(), w.k());
    if x.len() < rows * k || out.len() < rows * n {
        return Err(format!(
            "bf16 matmul: operands do not fit ({rows}×{k} · [{n}, {k}]ᵀ into {} values)",
            out.len()
        ));
    }
    if rows == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            out[..rows * n].fill(0.0);
        }
        return Ok(());
    }
    let cfg = (0..8).try_fold(TileConfig::empty(), |c, t| c.with(t, TR, MAX_COLSB))?;
    let plan = Plan::new(x, rows, w);
    let out = &mut out[..rows * n];
    let task =
        |r0: usize, rn: usize, b0: usize, bn: usize, dst: &mut [f32], ld: usize, acc: bool| {
            let mut m = machine()?;
            m.configure(&cfg)?;
            let done = plan.rect(&mut m, r0, rn, b0, bn, dst, ld, acc);
            m.release();
            done
        };
    let blocks = w.blocks();
    if rows >= 2 * TASK_ROWS || rayon::current_num_threads() == 1 {
        out.par_chunks_mut(TASK_ROWS * n)
            .enumerate()
            .try_for_each(|(t, dst)| {
                task(t * TASK_ROWS, dst.len() / n, 0, blocks, dst, n, accumulate)
            })
    } else {
        // Few rows: split the columns, each panel into its own scratch, then add them into place.
        let panels = (0..blocks)
            .into_par_iter()
            .step_by(PANEL_BLOCKS)
            .map(|b0| {
                let bn = (blocks - b0).min(PANEL_BLOCKS);
                let cols = (n - b0 * LANES).min(bn * LANES);
                let mut tmp = vec![0f32; rows * cols];
                task(0, rows, b0, bn, &mut tmp, cols, false)?;
                Ok((b0 * LANES, tmp))
            })
            .collect::<Result<Vec<(usize, Vec<f32>)>, String>>()?;
        place_panels(out, n, rows, panels, accumulate);
        Ok(())
    }
}

/// The operands as the tiles read them.
struct Plan<'a> {
    /// `x` rounded to bf16 pairs, zero-padded to a multiple of 16 rows and of 16 pairs per row.
    a: Vec<u32>,
    /// Pairs per row of `a` (a multiple of [`KP`]).
    stride: usize,
    w: &'a PackedBf16,
    /// Where `⌈k/2⌉` is not a multiple of 16: per weight block, its last partial 16 pairs, zero
    /// padded to a whole tile (the block's own rows would run into the next block).
    tails: Vec<u32>,
    /// Output columns.
    n: usize,
}

impl<'a> Plan<'a> {
    fn new(x: &[f32], rows: usize, w: &'a PackedBf16) -> Self {
        let (k, pairs) = (w.k(), w.pairs);
        let stride = pairs.div_ceil(KP) * KP;
        let mut a = vec![0u32; rows.div_ceil(TR) * TR * stride];
        a.par_chunks_mut(stride * TR)
            .zip(x[..rows * k].par_chunks(k * TR))
            .for_each(|(dst, src)| {
                for (d, s) in dst.chunks_mut(stride).zip(src.chunks(k)) {
                    for (p, v) in d[..pairs].iter_mut().enumerate() {
                        *v = pair(s[2 * p], s.get(2 * p + 1).copied().unwrap_or(0.0));
                    }
                }
            });
        let (full, left) = (pairs / KP, pairs % KP);
        let mut tails = Vec::new();
        if left > 0 {
            tails = vec![0u32; w.blocks() * B_TILE];
            for (b, tile) in tails.chunks_mut(B_TILE).enumerate() {
                let from = full * B_TILE;
                tile[..left * LANES].copy_from_slice(&w.block(b)[from..from + left * LANES]);
            }
        }
        Self {
            a,
            stride,
            w,
            tails,
            n: w.n(),
        }
    }

    /// Rows `r0 .. r0 + rn` of `a` times weight blocks `b0 .. b0 + bn`, into `dst` (rows `ld` apart,
    /// column 0 = output column `16·b0`), added to it when `accumulate`.
    #[allow(clippy::too_many_arguments)]
    fn rect<M: TileMachine>(
        &self,
        m: &mut M,
        r0: usize,
        rn: usize,
        b0: usize,
        bn: usize,
        dst: &mut [f32],
        ld: usize,
        accumulate: bool,
    ) -> Result<(), String> {
        let mut c = [[0f32; TR * LANES]; 4];
        for b in (b0..b0 + bn).step_by(2) {
            let nt = (b0 + bn - b).min(2);
            for r in (0..rn).step_by(2 * TR) {
                let mt = (rn - r).min(2 * TR).div_ceil(TR);
                match (mt, nt) {
                    (1, 1) => self.micro::<M, 1, 1>(m, r0 + r, b, &mut c)?,
                    (1, _) => self.micro::<M, 1, 2>(m, r0 + r, b, &mut c)?,
                    (_, 1) => self.micro::<M, 2, 1>(m, r0 + r, b, &mut c)?,
                    _ => self.micro::<M, 2, 2>(m, r0 + r, b, &mut c)?,
                }
                for i in 0..mt {
                    let row0 = r + i * TR;
                    let h = (rn - row0).min(TR);
                    for j in 0..nt {
                        let col0 = (b + j) * LANES;
                        let wd = (self.n - col0).min(LANES);
                        let tile = &c[2 * i + j];
                        for (rr, src) in tile.chunks(LANES).take(h).enumerate() {
                            let at = (row0 + rr) * ld + (col0 - b0 * LANES);
                            let d = dst
                                .get_mut(at..at + wd)
                                .ok_or_else(|| "AMX: output block out of range".to_string())?;
                            if accumulate {
                                d.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                            } else {
                                d.copy_from_slice(&src[..wd]);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The weight tile of block `b` for K step `s`: 16 pairs × 16 columns, rows 16 values apart.
    fn b_tile(&self, b: usize, s: usize) -> &[u32] {
        if (s + 1) * KP <= self.w.pairs {
            &self.w.block(b)[s * B_TILE..]
        } else {
            self.tails.get(b * B_TILE..).unwrap_or(&[])
        }
    }

    /// Row `r` of `a` from K step `s` on (an empty slice past the end: the load then refuses it).
    fn a_tile(&self, r: usize, s: usize) -> &[u32] {
        self.a.get(r * self.stride + s * KP..).unwrap_or(&[])
    }

    /// A block of `MT` × `NT` accumulator tiles: rows `row ..` of `a` (16·MT of them) times
    /// weight blocks `b .. b + NT`, over all of K, stored into `c[2i + j]` (16 × 16, rows 16 apart).
    fn micro<M: TileMachine, const MT: usize, const NT: usize>(
        &self,
        m: &mut M,
        row: usize,
        b: usize,
        c: &mut [[f32; TR * LANES]; 4],
    ) -> Result<(), String> {
        m.zero::<C00>()?;
        if NT == 2 {
            m.zero::<C01>()?;
        }
        if MT == 2 {
            m.zero::<C10>()?;
            if NT == 2 {
                m.zero::<C11>()?;
            }
        }
        for s in 0..self.stride / KP {
            m.load::<A0>(self.a_tile(row, s), self.stride)?;
            if MT == 2 {
                m.load::<A1>(self.a_tile(row + TR, s), self.stride)?;
            }
            m.load::<B0>(self.b_tile(b, s), LANES)?;
            if NT == 2 {
                m.load::<B1>(self.b_tile(b + 1, s), LANES)?;
            }
            m.dpbf16ps::<C00, A0, B0>()?;
            if NT == 2 {
                m.dpbf16ps::<C01, A0, B1>()?;
            }
            if MT == 2 {
                m.dpbf16ps::<C10, A1, B0>()?;
                if NT == 2 {
                    m.dpbf16ps::<C11, A1, B1>()?;
                }
            }
        }
        let [c00, c01, c10, c11] = c;
        m.store::<C00>(c00, LANES)?;
        if NT == 2 {
            m.store::<C01>(c01, LANES)?;
        }
        if MT == 2 {
            m.store::<C10>(c10, LANES)?;
            if NT == 2 {
                m.store::<C11>(c11, LANES)?;
            }
        }
        Ok(())
    }
}
