//! `y (+)= x · Wᵀ` on Intel AMX-BF16 tiles ([`crate::Bf16Kernel::Amx`]), for Sapphire Rapids and later
//! Xeons.
//!
//! AMX adds eight tile registers (`tmm0..tmm7`, each up to 16 rows × 64 bytes, shapes set by
//! `ldtilecfg`) and `tdpbf16ps`, which multiplies a 16 × 32 bf16 tile of `x` by a 16-pair × 16-column
//! tile of `W` in one instruction. Most of this module is written so it can be tested on a CPU
//! without AMX:
//!
//! - [`TileMachine`] is a tiny trait with exactly the instructions' semantics: [`configure`]
//!   (`ldtilecfg`, palette 1), [`load`] (`tileloadd`), [`dpbf16ps`] (`tdpbf16ps`), [`store`]
//!   (`tilestored`), [`zero`] (`tilezero`), [`release`] (`tilerelease`). Every operation checks its
//!   extents and shapes against the current [`TileConfig`] first and returns an error where the
//!   instruction would fault (`#UD`) or reach outside the slice it was given.
//! - [`Hardware`] runs them with `asm!` (the `_tile_*` intrinsics are unstable); it exists only after
//!   [`probe`] found AMX-TILE and AMX-BF16 in CPUID, the tile state enabled in XCR0 and Linux granted
//!   the process the tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, once per
//!   process).
//! - [`Emulated`] is a plain-Rust model of the same eight registers following the SDM's pseudo-code
//!   (including its order of accumulation: see [`Emulated`]).
//! - [`matmul_tiles`], the blocking and packing driver, is generic over the machine, so the tests run
//!   the whole driver on [`Emulated`] against an f64 product, and on [`Hardware`] where the CPU has it.
//!
//! The driver uses one tile configuration for a whole call: four 16 × 16 f32 accumulators
//! (`tmm0..tmm3`, a 32 × 32 block of `y`), two 16-row tiles of `x` (`tmm4`, `tmm5`) and two 16-pair
//! tiles of `W` (`tmm6`, `tmm7`), all 16 rows × 64 bytes. Edges are padding, not other shapes (a new
//! `ldtilecfg` would zero the accumulators): `x` is rounded into a copy padded with zeros to a multiple
//! of 16 rows and 16 pairs; [`PackedBf16`]'s blocks are zero past `n` already, and the last, partial
//! 16 pairs of a block (only when `⌈k/2⌉` is not a multiple of 16) are copied once per call into a
//! zero-padded tile. Zero products add `+0` to a sum, which changes nothing. Accumulators are stored
//! into a 16 × 16 scratch and added to (or copied into) `y`, so rows and columns past `y`'s edges are
//! never written.
//!
//! [`configure`]: TileMachine::configure
//! [`load`]: TileMachine::load
//! [`dpbf16ps`]: TileMachine::dpbf16ps
//! [`store`]: TileMachine::store
//! [`zero`]: TileMachine::zero
//! [`release`]: TileMachine::release
//! [`PackedBf16`]: crate::PackedBf16

mod driver;
mod emulated;
mod hardware;
#[cfg(test)]
mod tests;

pub use driver::matmul_tiles;
pub use emulated::Emulated;
pub use hardware::{available, probe, Hardware};

pub(crate) use driver::matmul_hardware;

/// Tile registers of palette 1 (`tmm0..tmm7`).
pub const TILES: usize = 8;
/// Most rows of a tile (palette 1).
pub const MAX_ROWS: usize = 16;
/// Most bytes of a tile row (palette 1).
pub const MAX_COLSB: usize = 64;

/// The shapes `ldtilecfg` loads (palette 1, start row 0): for each tile, rows and bytes per row, or
/// unused (both zero). Only holds shapes the instruction accepts, with rows a multiple of 4 bytes
/// (every operand here is bf16 pairs or f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TileConfig {
    rows: [u8; TILES],
    colsb: [u16; TILES],
}

impl TileConfig {
    /// No tile in use.
    pub const fn empty() -> Self {
        Self {
            rows: [0; TILES],
            colsb: [0; TILES],
        }
    }

    /// This config with tile `tile` set to `rows` rows of `colsb` bytes (1..=16 rows, 4..=64 bytes in
    /// steps of 4).
    pub fn with(mut self, tile: usize, rows: usize, colsb: usize) -> Result<Self, String> {
        if tile >= TILES
            || !(1..=MAX_ROWS).contains(&rows)
            || !(4..=MAX_COLSB).contains(&colsb)
            || !colsb.is_multiple_of(4)
        {
            return Err(format!(
                "AMX tile config: tmm{tile} {rows} rows × {colsb} bytes (want tmm0..7, 1..=16 rows, 4..=64 bytes in steps of 4)"
            ));
        }
        self.rows[tile] = rows as u8;
        self.colsb[tile] = colsb as u16;
        Ok(self)
    }

    /// Rows of tile `tile` (0 when unused).
    pub fn rows(&self, tile: usize) -> usize {
        self.rows.get(tile).map_or(0, |&r| usize::from(r))
    }

    /// Bytes per row of tile `tile` (0 when unused).
    pub fn colsb(&self, tile: usize) -> usize {
        self.colsb.get(tile).map_or(0, |&c| usize::from(c))
    }

    /// The 64-byte memory operand of `ldtilecfg`: byte 0 the palette (1), byte 1 the start row (0),
    /// bytes 16 + 2t the little-endian `colsb` of tile t, byte 48 + t its rows; the rest zero.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0] = 1;
        for t in 0..TILES {
            b[16 + 2 * t..18 + 2 * t].copy_from_slice(&self.colsb[t].to_le_bytes());
            b[48 + t] = self.rows[t];
        }
        b
    }

    /// Rows and 4-byte elements per row of tile `tile`, if it is in use.
    fn shape(&self, tile: usize) -> Result<(usize, usize), String> {
        match (self.rows(tile), self.colsb(tile)) {
            (0, _) | (_, 0) => Err(format!("AMX: tmm{tile} is not configured")),
            (r, c) => Ok((r, c / 4)),
        }
    }

    /// Checks that `tileloadd`/`tilestored` of `tile` stay inside a slice of `len` 4-byte elements
    /// whose rows are `stride` elements apart.
    fn check_extent(&self, tile: usize, len: usize, stride: usize) -> Result<(), String> {
        let (rows, cols) = self.shape(tile)?;
        let end = (rows - 1)
            .checked_mul(stride)
            .and_then(|v| v.checked_add(cols));
        let stride_bytes = stride.checked_mul(4).filter(|&b| b <= isize::MAX as usize);
        match (end, stride_bytes) {
            (Some(end), Some(_)) if end <= len => Ok(()),
            _ => Err(format!(
                "AMX: tmm{tile} ({rows} rows × {cols} elements, rows {stride} apart) does not fit a slice of {len}"
            )),
        }
    }

    /// Checks `tdpbf16ps c, a, b`'s shapes (as the instruction's `#UD` conditions do): distinct
    /// configured tiles, `c` m × n f32, `a` m × k pairs, `b` k × n pairs. Returns `(m, k, n)`.
    fn check_dp(&self, c: usize, a: usize, b: usize) -> Result<(usize, usize, usize), String> {
        if c == a || c == b || a == b {
            return Err(format!(
                "AMX: tdpbf16ps tmm{c}, tmm{a}, tmm{b} repeats a tile"
            ));
        }
        let ((cm, cn), (am, ak), (bk, bn)) = (self.shape(c)?, self.shape(a)?, self.shape(b)?);
        if cm != am || ak != bk || cn != bn {
            return Err(format!(
                "AMX: tdpbf16ps shapes: tmm{c} {cm}×{cn}, tmm{a} {am}×{ak}, tmm{b} {bk}×{bn} (want m×n, m×k, k×n)"
            ));
        }
        Ok((cm, ak, cn))
    }
}

/// The AMX instructions the driver uses, with their semantics (Intel SDM, palette 1). Tile registers
/// are const parameters because the instructions encode them. Every method checks the current
/// [`TileConfig`] and the slice extents first and returns an error instead of faulting; nothing but
/// the registers and the given slices is read or written.
pub trait TileMachine {
    /// `ldtilecfg`: sets every tile's shape and zeroes every tile.
    fn configure(&mut self, cfg: &TileConfig) -> Result<(), String>;
    /// `tileloadd`: row `r` of tile `T` from `src[r·stride ..]` (`colsb / 4` elements); bytes past
    /// `colsb` and rows past `rows` become zero.
    fn load<const T: usize>(&mut self, src: &[u32], stride: usize) -> Result<(), String>;
    /// `tilestored`: row `r` of tile `T` (as f32) to `dst[r·stride ..]`.
    fn store<const T: usize>(&mut self, dst: &mut [f32], stride: usize) -> Result<(), String>;
    /// `tilezero`: every byte of tile `T` zero.
    fn zero<const T: usize>(&mut self) -> Result<(), String>;
    /// `tdpbf16ps C, A, B`: `C[m][n] += Σ_p A[m][2p]·B[p][2n] + A[m][2p+1]·B[p][2n+1]`, `A` m × k
    /// bf16 pairs, `B` k × n pairs (VNNI: row p holds pair p of every column), `C` m × n f32.
    fn dpbf16ps<const C: usize, const A: usize, const B: usize>(&mut self) -> Result<(), String>;
    /// `tilerelease`: back to the initial state (unconfigured, zero), so the OS need not save tiles.
    fn release(&mut self);
}
