//! `y (+)= x · Wᵀ` in bf16 with f32 accumulation, for the projections of the CPU forward passes.
//!
//! `W` (HF's `[out, in]` layout) is packed once ([`PackedBf16`]): blocks of 16 output columns, and in
//! each block, for every pair of inputs `(2p, 2p+1)`, 16 lanes of two bf16 values — exactly the operand
//! `vdpbf16ps` multiplies, which adds `a.lo·b.lo + a.hi·b.hi` into each f32 lane. Each call rounds the
//! rows of `x` to bf16 pairs, then a register tile of up to 8 rows × 48 columns (24 accumulators)
//! broadcasts one pair per row and multiplies it by three weight vectors per step. Row blocks run in
//! parallel on the caller's rayon pool; a block walks the weight panels with its rows in L1/L2.
//!
//! Both operands are rounded to nearest even (`half`'s rounding, the same as the instruction set's
//! conversions); the sum is f32. [`Bf16Kernel::Portable`] does the same arithmetic in scalar code, so
//! every CPU builds and tests the same numbers, and a CPU without AVX512_BF16 still runs bf16.
//! [`Bf16Kernel::Amx`] runs the same packed weight and the same rounding of `x` on Intel AMX tiles
//! ([`crate::amx`]): the block layout above is already the VNNI layout its `tdpbf16ps` reads.

use half::bf16;
use rayon::prelude::*;

/// Output columns per weight block (one 512-bit vector of f32 lanes).
pub const LANES: usize = 16;
/// Rows of a register tile.
const TILE_ROWS: usize = 8;
/// Weight blocks (of [`LANES`] columns) of a register tile.
const TILE_BLOCKS: usize = 3;
/// Rows per parallel task.
const ROW_BLOCK: usize = 64;

/// Which implementation [`matmul_bf16`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// Intel AMX-BF16 `tdpbf16ps` on tile registers (Sapphire Rapids and later Xeons; Linux only,
    /// which must grant the process the tile state): see [`crate::amx`].
    Amx,
    /// AVX512_BF16 `vdpbf16ps` (AMD Zen 4/5, Intel Cooper Lake and later).
    Avx512Bf16,
    /// Scalar code with the same rounding (any CPU; slow, for reference and tests).
    Portable,
}

impl Bf16Kernel {
    /// The fastest kernel this CPU runs, unless `WILDREWARD_MATMUL` names one (`amx`, `avx512bf16`,
    /// `portable`); naming one the CPU lacks is an error, not a silent fallback.
    pub fn detect() -> Result<Self, String> {
        match std::env::var("WILDREWARD_MATMUL") {
            Ok(v) if !v.is_empty() => Self::named(&v),
            _ => Ok(Self::best()),
        }
    }

    /// The kernel for a bf16 precision that was asked for (`--dtype bf16` and its kin):
    /// [`Bf16Kernel::detect`], refusing the slow portable loop unless `WILDREWARD_MATMUL` names it
    /// on purpose. The error says why and what to use instead; callers prefix their flag.
    pub fn for_requested_bf16() -> Result<Self, String> {
        let kernel = Self::detect()?;
        let asked = std::env::var("WILDREWARD_MATMUL").is_ok_and(|v| !v.is_empty());
        if kernel == Self::Portable && !asked {
            return Err(
                "this CPU has no bf16 product instruction (AMX-BF16 or AVX512_BF16); \
                        use f32, or WILDREWARD_MATMUL=portable for the slow reference kernel"
                    .into(),
            );
        }
        Ok(kernel)
    }

    /// The fastest kernel this CPU runs: AMX, then AVX512_BF16, then the portable loop.
    pub fn best() -> Self {
        if Self::Amx.available() {
            Self::Amx
        } else if Self::Avx512Bf16.available() {
            Self::Avx512Bf16
        } else {
            Self::Portable
        }
    }

    /// The kernel called `name`, if this CPU runs it.
    pub fn named(name: &str) -> Result<Self, String> {
        let k = match name.to_ascii_lowercase().as_str() {
            "amx" | "amx-bf16" | "amx_bf16" => Self::Amx,
            "avx512bf16" | "avx512_bf16" => Self::Avx512Bf16,
            "portable" | "bf16-portable" => Self::Portable,
            _ => {
                return Err(format!(
                    "WILDREWARD_MATMUL={name:?}: expected amx, avx512bf16 or portable"
                ))
            }
        };
        if k.available() {
            Ok(k)
        } else if k == Self::Amx {
            let why = crate::amx::probe().err().unwrap_or_default();
            Err(format!(
                "WILDREWARD_MATMUL={name}: this CPU lacks amx ({why}); use avx512bf16 or portable"
            ))
        } else {
            Err(format!(
                "WILDREWARD_MATMUL={name}: this CPU lacks {}",
                k.name()
            ))
        }
    }

    /// Whether this CPU has the instructions.
    pub fn available(self) -> bool {
        match self {
            Self::Portable => true,
            Self::Amx => crate::amx::available(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Bf16 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bf16")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx512Bf16 => false,
        }
    }

    /// The name benchmarks and `/info` print.
    pub fn name(self) -> &'static str {
        match self {
            Self::Amx => "amx",
            Self::Avx512Bf16 => "avx512bf16",
            Self::Portable => "bf16-portable",
        }
    }
}

/// Two f32 values rounded to bf16 and packed as one 32-bit lane: `lo` in the low half.
#[inline]
pub(crate) fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(bf16::from_f32(lo).to_bits()) | (u32::from(bf16::from_f32(hi).to_bits()) << 16)
}

#[inline]
fn lo(p: u32) -> f32 {
    f32::from_bits(p << 16)
}

#[inline]
fn hi(p: u32) -> f32 {
    f32::from_bits(p & 0xffff_0000)
}

/// A `[n, k]` weight packed for [`matmul_bf16`]: half the bytes of its f32 copy (plus padding of the
/// last block to 16 columns and of `k` to even).
#[derive(Debug, Clone)]
pub struct PackedBf16 {
    n: usize,
    k: usize,
    pub(crate) pairs: usize,
    data: Vec<u32>,
}

impl PackedBf16 {
    /// Packs the row-major `[n, k]` matrix `w` (row `j` holds output `j`'s input weights).
    pub fn from_rows(w: &[f32], n: usize, k: usize) -> Result<Self, String> {
        if w.len() != n * k {
            return Err(format!(
                "bf16 pack: {} values for a [{n}, {k}] weight",
                w.len()
            ));
        }
        Ok(Self::pack(n, k, |b, pairs, block| {
            for lane in 0..LANES {
                let j = b * LANES + lane;
                if j >= n {
                    break;
                }
                let row = &w[j * k..(j + 1) * k];
                for p in 0..pairs {
                    let h = row.get(2 * p + 1).copied().unwrap_or(0.0);
                    block[p * LANES + lane] = pair(row[2 * p], h);
                }
            }
        }))
    }

    /// An `[n, k]` packing whose blocks of 16 columns `fill(block, pairs, lanes)` writes, in
    /// parallel (the layout both constructors share).
    fn pack(n: usize, k: usize, fill: impl Fn(usize, usize, &mut [u32]) + Sync) -> Self {
        let pairs = k.div_ceil(2);
        let blocks = n.div_ceil(LANES);
        let mut data = vec![0u32; blocks * pairs * LANES];
        data.par_chunks_mut((pairs * LANES).max(1))
            .enumerate()
            .for_each(|(b, block)| fill(b, pairs, block));
        Self { n, k, pairs, data }
    }

    /// Packs the transpose of the row-major `[k, n]` matrix `a` (so the packed matrix is
    /// `aᵀ`, `[n, k]`) without writing the transpose out: the backward products of a linear
    /// multiply by `Wᵀ` and `xᵀ`, which are stored the other way round.
    pub fn from_transposed(a: &[f32], k: usize, n: usize) -> Result<Self, String> {
        if a.len() != n * k {
            return Err(format!(
                "bf16 pack: {} values for a [{k}, {n}] matrix to transpose",
                a.len()
            ));
        }
        Ok(Self::pack(n, k, |b, pairs, block| {
            let j0 = b * LANES;
            let width = LANES.min(n - j0);
            for p in 0..pairs {
                let lo = &a[2 * p * n + j0..2 * p * n + j0 + width];
                let hi = (2 * p + 1 < k).then(|| &a[(2 * p + 1) * n + j0..][..width]);
                let dst = &mut block[p * LANES..p * LANES + width];
                for (lane, d) in dst.iter_mut().enumerate() {
                    *d = pair(lo[lane], hi.map_or(0.0, |h| h[lane]));
                }
            }
        }))
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Inputs per column.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    pub(crate) fn blocks(&self) -> usize {
        self.n.div_ceil(LANES)
    }

    /// Block `b`'s lanes, `pairs × 16`.
    pub(crate) fn block(&self, b: usize) -> &[u32] {
        &self.data[b * self.pairs * LANES..(b + 1) * self.pairs * LANES]
    }
}

/// Rows of `x` (`rows × k`, row-major) rounded to bf16 pairs, `rows × ⌈k/2⌉`.
fn pack_rows(x: &[f32], rows: usize, k: usize) -> Vec<u32> {
    let pairs = k.div_ceil(2);
    let mut out = vec![0u32; rows * pairs];
    out.par_chunks_mut(pairs.max(1) * 256)
        .zip(x[..rows * k].par_chunks(k.max(1) * 256))
        .for_each(|(dst, src)| {
            for (d, s) in dst.chunks_mut(pairs).zip(src.chunks(k)) {
                for (p, v) in d.iter_mut().enumerate() {
                    *v = pair(s[2 * p], s.get(2 * p + 1).copied().unwrap_or(0.0));
                }
            }
        });
    out
}

/// `out[r, :] (+)= x[r, :] · Wᵀ` for `rows` rows: `x` is `rows × k`, `out` `rows × n` (both
/// row-major, at least that long); adds to `out` when `accumulate`, overwrites it otherwise.
pub fn matmul_bf16(
    kernel: Bf16Kernel,
    x: &[f32],
    rows: usize,
    w: &PackedBf16,
    out: &mut [f32],
    accumulate: bool,
) -> Result<(), String> {
    let (n, k) = (w.n, w.k);
    if x.len() < rows * k || out.len() < rows * n {
        return Err(format!(
            "bf16 matmul: operands do not fit ({rows}×{k} · [{n}, {k}]ᵀ into {} values)",
            out.len()
        ));
    }
    if !kernel.available() {
        return Err(format!("bf16 matmul: this CPU lacks {}", kernel.name()));
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
    if kernel == Bf16Kernel::Amx {
        return crate::amx::matmul_hardware(x, rows, w, out, accumulate);
    }
    let xp = pack_rows(x, rows, k);
    let pairs = w.pairs;
    let out = &mut out[..rows * n];
    if rows >= 2 * ROW_BLOCK || rayon::current_num_threads() == 1 {
        out.par_chunks_mut(ROW_BLOCK * n)
            .zip(xp.par_chunks(ROW_BLOCK * pairs.max(1)))
            .for_each(|(dst, src)| {
                let r = dst.len() / n;
                for b in (0..w.blocks()).step_by(TILE_BLOCKS) {
                    panel(kernel, src, r, w, b, &mut dst[b * LANES..], n, accumulate);
                }
            });
    } else {
        // Few rows (decoding, short batches): split the columns instead, each panel into its own
        // scratch, then add the panels into place.
        let panels: Vec<(usize, Vec<f32>)> = (0..w.blocks())
            .into_par_iter()
            .step_by(TILE_BLOCKS)
            .map(|b| {
                let cols = (w.n - b * LANES).min(TILE_BLOCKS * LANES);
                let mut tmp = vec![0f32; rows * cols];
                panel(kernel, &xp, rows, w, b, &mut tmp, cols, false);
                (b * LANES, tmp)
            })
            .collect();
        place_panels(out, n, rows, panels, accumulate);
    }
    Ok(())
}

/// Adds (or, unless `accumulate`, copies) column panels that were computed into scratch of their
/// own width — `(first column, rows × width values)` — into `out`, whose rows are `n` apart: the
/// few-rows column split of every bf16 kernel.
pub(crate) fn place_panels(
    out: &mut [f32],
    n: usize,
    rows: usize,
    panels: Vec<(usize, Vec<f32>)>,
    accumulate: bool,
) {
    for (col, tmp) in panels {
        let cols = tmp.len() / rows.max(1);
        for (dst, src) in out.chunks_mut(n).zip(tmp.chunks(cols.max(1))) {
            let dst = &mut dst[col..col + cols];
            if accumulate {
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            } else {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// Columns `first_block·16 ..` (up to [`TILE_BLOCKS`] blocks) of `rows` rows, into `out`, which
/// starts at the panel's first column and holds rows `stride` apart (the product itself, or a
/// scratch of the panel's own width).
#[allow(clippy::too_many_arguments)]
fn panel(
    kernel: Bf16Kernel,
    xp: &[u32],
    rows: usize,
    w: &PackedBf16,
    first_block: usize,
    out: &mut [f32],
    stride: usize,
    accumulate: bool,
) {
    let cols = (w.n - first_block * LANES).min(TILE_BLOCKS * LANES);
    for r0 in (0..rows).step_by(TILE_ROWS) {
        let m = (rows - r0).min(TILE_ROWS);
        tile(
            kernel,
            &xp[r0 * w.pairs..],
            m,
            w,
            first_block,
            &mut out[r0 * stride..],
            stride,
            cols,
            accumulate,
        );
    }
}

/// One register tile: `m ≤ 8` rows of `xp` (pairs, rows `w.pairs` apart) times up to three weight
/// blocks from `first_block`, into `out` (rows `stride` apart), `cols` of its columns.
#[allow(clippy::too_many_arguments)]
fn tile(
    kernel: Bf16Kernel,
    xp: &[u32],
    m: usize,
    w: &PackedBf16,
    first_block: usize,
    out: &mut [f32],
    stride: usize,
    cols: usize,
    accumulate: bool,
) {
    let pairs = w.pairs;
    let v = cols.div_ceil(LANES);
    debug_assert!(m <= TILE_ROWS && v <= TILE_BLOCKS);
    assert!(xp.len() >= (m - 1) * pairs + pairs && out.len() >= (m - 1) * stride + cols);
    let blocks: [&[u32]; TILE_BLOCKS] =
        std::array::from_fn(|i| w.block((first_block + i.min(v - 1)).min(w.blocks() - 1)));
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Bf16Kernel::Avx512Bf16 => {
            // SAFETY: `matmul_bf16` checked the CPU has AVX512F + AVX512_BF16; the assert above
            // and the block slices bound every read and write the tile makes.
            #[allow(unsafe_code)]
            unsafe {
                avx512::tile(xp, m, pairs, &blocks[..v], out, stride, cols, accumulate)
            }
        }
        _ => portable_tile(xp, m, pairs, &blocks[..v], out, stride, cols, accumulate),
    }
}

#[allow(clippy::too_many_arguments)]
fn portable_tile(
    xp: &[u32],
    m: usize,
    pairs: usize,
    blocks: &[&[u32]],
    out: &mut [f32],
    stride: usize,
    cols: usize,
    accumulate: bool,
) {
    for r in 0..m {
        let x = &xp[r * pairs..(r + 1) * pairs];
        for c in 0..cols {
            let b = blocks[c / LANES];
            let lane = c % LANES;
            let mut acc = 0f32;
            for (p, &a) in x.iter().enumerate() {
                let wv = b[p * LANES + lane];
                acc += lo(a) * lo(wv) + hi(a) * hi(wv);
            }
            let y = &mut out[r * stride + c];
            *y = if accumulate { *y + acc } else { acc };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
const _: () = assert!(avx512::LANES == LANES);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `v` rounded to bf16, as f64 (the operands the f64 reference products multiply).
    pub(crate) fn round(v: f32) -> f64 {
        f64::from(bf16::from_f32(v).to_f32())
    }

    /// `n` seeded values in [-1, 1) (a 64-bit LCG).
    pub(crate) fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every tile-shape class (rows and columns below, at and past a tile; odd and even k) against
    /// an f64 product of the bf16-rounded operands, for each kernel this CPU runs.
    #[test]
    fn every_tile_shape_matches_an_f64_product_of_the_rounded_operands() {
        let kernels: Vec<Bf16Kernel> = [
            Bf16Kernel::Amx,
            Bf16Kernel::Avx512Bf16,
            Bf16Kernel::Portable,
        ]
        .into_iter()
        .filter(|k| {
            let ok = k.available();
            if !ok {
                eprintln!(
                    "SKIPPED: this CPU lacks {}; its bf16 kernel is NOT tested here",
                    k.name()
                );
            }
            ok
        })
        .collect();
        for &rows in &[1usize, 3, 8, 9, 17, 129, 200] {
            for &n in &[1usize, 15, 16, 17, 48, 50, 100] {
                for &k in &[1usize, 2, 7, 64, 577] {
                    let x = values(rows * k, (rows * 7 + n * 13 + k) as u64);
                    let w = values(n * k, (rows + n * 31 + k * 3) as u64);
                    let packed = PackedBf16::from_rows(&w, n, k).unwrap();
                    for &kernel in &kernels {
                        for accumulate in [false, true] {
                            let mut out = vec![0.5f32; rows * n];
                            matmul_bf16(kernel, &x, rows, &packed, &mut out, accumulate).unwrap();
                            for r in 0..rows {
                                for j in 0..n {
                                    let (mut want, mut scale) = (0f64, 0f64);
                                    for i in 0..k {
                                        let p = round(x[r * k + i]) * round(w[j * k + i]);
                                        want += p;
                                        scale += p.abs();
                                    }
                                    if accumulate {
                                        want += 0.5;
                                    }
                                    let got = f64::from(out[r * n + j]);
                                    assert!(
                                        (got - want).abs() <= 1e-6 * (scale + 1.0) * (k as f64).sqrt(),
                                        "{} rows {rows} n {n} k {k} acc {accumulate} at ({r}, {j}): {got} vs {want}",
                                        kernel.name()
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn packing_a_transpose_equals_packing_the_transposed_rows() {
        for (k, n) in [(1, 1), (7, 5), (33, 17), (64, 48), (83, 45)] {
            let a = values(k * n, 3);
            let mut t = vec![0f32; k * n];
            for r in 0..k {
                for c in 0..n {
                    t[c * k + r] = a[r * n + c];
                }
            }
            let direct = PackedBf16::from_transposed(&a, k, n).unwrap();
            let via_rows = PackedBf16::from_rows(&t, n, k).unwrap();
            assert_eq!((direct.n(), direct.k()), (n, k));
            assert_eq!(direct.data, via_rows.data, "k {k}, n {n}");
        }
        assert!(PackedBf16::from_transposed(&[0.0; 5], 2, 3).is_err());
    }

    #[test]
    fn bf16_is_close_to_the_f32_product_and_bad_operands_are_refused() {
        let (rows, n, k) = (40, 33, 300);
        let x = values(rows * k, 1);
        let w = values(n * k, 2);
        let packed = PackedBf16::from_rows(&w, n, k).unwrap();
        assert_eq!(packed.bytes(), 3 * 16 * 150 * 4);
        let mut out = vec![0f32; rows * n];
        matmul_bf16(Bf16Kernel::best(), &x, rows, &packed, &mut out, false).unwrap();
        let mut worst = 0f32;
        for r in 0..rows {
            for j in 0..n {
                let want: f32 = (0..k).map(|i| x[r * k + i] * w[j * k + i]).sum();
                worst = worst.max((out[r * n + j] - want).abs());
            }
        }
        // bf16 keeps 8 bits: per product ~2^-8 relative, √k of them adding up at random.
        assert!(worst < 0.05, "{worst}");
        assert!(PackedBf16::from_rows(&w, n, k + 1).is_err());
        let e = matmul_bf16(
            Bf16Kernel::Portable,
            &x[..10],
            rows,
            &packed,
            &mut out,
            false,
        );
        assert!(e.unwrap_err().contains("do not fit"));
        assert!(Bf16Kernel::named("amx9")
            .unwrap_err()
            .contains("WILDREWARD_MATMUL"));
        assert_eq!(Bf16Kernel::named("portable"), Ok(Bf16Kernel::Portable));
    }
}
