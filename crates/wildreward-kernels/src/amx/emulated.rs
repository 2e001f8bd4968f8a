//! A software model of the AMX tile registers and instructions, for testing the driver on any CPU.

use super::{TileConfig, TileMachine, MAX_COLSB, MAX_ROWS, TILES};

/// Bytes of one tile register.
const TILE_BYTES: usize = MAX_ROWS * MAX_COLSB;

/// Eight tile registers of 16 rows × 64 bytes and the current configuration, with the instructions
/// done in plain Rust following the Intel SDM's pseudo-code for palette 1.
///
/// `tdpbf16ps` is modelled as the SDM writes it: for each row `m` of C, a temporary of `2·N` f32
/// lanes starts at zero; for each pair `k` of A's row (in order) and each column `n`, lane `2n`
/// gets `A[m][2k]·B[k][2n]` and lane `2n+1` gets `A[m][2k+1]·B[k][2n+1]` added, each as a fused
/// multiply-add rounded to nearest even (a product of two bf16 values is exact in f32 anyway); then
/// `C[m][n] += temp[2n] + temp[2n+1]` (two more roundings). Input denormals are read as zero and
/// denormal results flushed to zero (DAZ, FTZ), as the instruction does; MXCSR plays no part. So
/// even and odd halves of the pairs are summed apart within one instruction, which rounds
/// differently from `vdpbf16ps` (which adds both products of a pair into one lane, pair by pair).
#[derive(Clone)]
pub struct Emulated {
    cfg: Option<TileConfig>,
    tiles: [[u8; TILE_BYTES]; TILES],
}

impl Default for Emulated {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Emulated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulated").field("cfg", &self.cfg).finish()
    }
}

/// DAZ: a denormal input reads as a zero of its sign.
#[inline]
fn daz(v: f32) -> f32 {
    if v.is_subnormal() {
        0f32.copysign(v)
    } else {
        v
    }
}

/// FTZ: a denormal result becomes a zero of its sign.
#[inline]
fn ftz(v: f32) -> f32 {
    daz(v)
}

impl Emulated {
    /// All tiles unconfigured and zero (the state after `tilerelease`).
    pub fn new() -> Self {
        Self {
            cfg: None,
            tiles: [[0; TILE_BYTES]; TILES],
        }
    }

    fn cfg(&self) -> Result<&TileConfig, String> {
        self.cfg
            .as_ref()
            .ok_or_else(|| "AMX: tiles used before ldtilecfg".to_string())
    }

    /// The 4-byte element `i` of row `r` of tile `t`.
    #[inline]
    fn word(&self, t: usize, r: usize, i: usize) -> u32 {
        let o = r * MAX_COLSB + 4 * i;
        let b = &self.tiles[t][o..o + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl TileMachine for Emulated {
    fn configure(&mut self, cfg: &TileConfig) -> Result<(), String> {
        self.cfg = Some(*cfg);
        self.tiles = [[0; TILE_BYTES]; TILES];
        Ok(())
    }

    fn load<const T: usize>(&mut self, src: &[u32], stride: usize) -> Result<(), String> {
        let cfg = self.cfg()?;
        cfg.check_extent(T, src.len(), stride)?;
        let (rows, cols) = (cfg.rows(T), cfg.colsb(T) / 4);
        let tile = &mut self.tiles[T];
        tile.fill(0);
        for r in 0..rows {
            let row = &src[r * stride..r * stride + cols];
            for (i, w) in row.iter().enumerate() {
                let o = r * MAX_COLSB + 4 * i;
                tile[o..o + 4].copy_from_slice(&w.to_le_bytes());
            }
        }
        Ok(())
    }

    fn store<const T: usize>(&mut self, dst: &mut [f32], stride: usize) -> Result<(), String> {
        let cfg = self.cfg()?;
        cfg.check_extent(T, dst.len(), stride)?;
        let (rows, cols) = (cfg.rows(T), cfg.colsb(T) / 4);
        for r in 0..rows {
            for i in 0..cols {
                dst[r * stride + i] = f32::from_bits(self.word(T, r, i));
            }
        }
        Ok(())
    }

    fn zero<const T: usize>(&mut self) -> Result<(), String> {
        self.cfg()?.shape(T)?;
        self.tiles[T].fill(0);
        Ok(())
    }

    fn dpbf16ps<const C: usize, const A: usize, const B: usize>(&mut self) -> Result<(), String> {
        let (m_rows, k_pairs, n_cols) = self.cfg()?.check_dp(C, A, B)?;
        let bf = |w: u32| {
            (
                daz(f32::from_bits(w << 16)),
                daz(f32::from_bits(w & 0xffff_0000)),
            )
        };
        let mut out = [[0f32; MAX_COLSB / 4]; MAX_ROWS];
        for (m, out_row) in out.iter_mut().enumerate().take(m_rows) {
            let mut temp = [0f32; MAX_COLSB / 2];
            for k in 0..k_pairs {
                let (a0, a1) = bf(self.word(A, m, k));
                for n in 0..n_cols {
                    let (b0, b1) = bf(self.word(B, k, n));
                    temp[2 * n] = ftz(a0.mul_add(b0, daz(temp[2 * n])));
                    temp[2 * n + 1] = ftz(a1.mul_add(b1, daz(temp[2 * n + 1])));
                }
            }
            for (n, o) in out_row.iter_mut().enumerate().take(n_cols) {
                let sum = ftz(daz(temp[2 * n]) + daz(temp[2 * n + 1]));
                *o = ftz(daz(f32::from_bits(self.word(C, m, n))) + sum);
            }
        }
        // write_row_and_zero / zero_upper_rows: bytes past the shape become zero.
        let tile = &mut self.tiles[C];
        tile.fill(0);
        for (m, row) in out.iter().enumerate().take(m_rows) {
            for (n, v) in row.iter().enumerate().take(n_cols) {
                let o = m * MAX_COLSB + 4 * n;
                tile[o..o + 4].copy_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        Ok(())
    }

    fn release(&mut self) {
        *self = Self::new();
    }
}
