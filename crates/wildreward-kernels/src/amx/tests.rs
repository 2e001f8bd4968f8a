use super::*;
use crate::bf16::tests::{round, values};
use crate::{matmul_bf16, Bf16Kernel, PackedBf16};
use half::bf16;

fn bits(v: f32) -> u16 {
    bf16::from_f32(v).to_bits()
}

/// `out` against an f64 product of the bf16-rounded operands (plus 0.5 when accumulating onto the
/// 0.5 the output started as), with the bound the AVX512_BF16 kernel's test uses.
#[allow(clippy::too_many_arguments)]
fn check_f64(
    what: &str,
    x: &[f32],
    w: &[f32],
    out: &[f32],
    rows: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
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
                "{what} rows {rows} n {n} k {k} acc {accumulate} at ({r}, {j}): {got} vs {want}"
            );
        }
    }
}

/// Rows below, at, between and past the 16-row tile, the 32-row block and the 64-row task (and past
/// 128, where rows rather than columns are split); columns below, at and past one and two 16-column
/// tiles and past the 64-column panel; k odd and even, below, at and past one 32-input K step, with
/// and without a partial last step.
const ROWS: [usize; 11] = [1, 3, 15, 16, 17, 31, 32, 33, 64, 129, 200];
const NS: [usize; 10] = [1, 15, 16, 17, 31, 32, 33, 48, 65, 100];
const KS: [usize; 8] = [1, 2, 7, 31, 32, 33, 64, 577];

/// A product under test: `(x, rows, w, out, accumulate)`.
type Matmul<'a> = &'a dyn Fn(&[f32], usize, &PackedBf16, &mut [f32], bool);

fn run_grid(what: &str, matmul: Matmul) {
    for &rows in &ROWS {
        for &n in &NS {
            for &k in &KS {
                let x = values(rows * k, (rows * 7 + n * 13 + k) as u64);
                let w = values(n * k, (rows + n * 31 + k * 3) as u64);
                let packed = PackedBf16::from_rows(&w, n, k).unwrap();
                for accumulate in [false, true] {
                    let mut out = vec![0.5f32; rows * n];
                    matmul(&x, rows, &packed, &mut out, accumulate);
                    check_f64(what, &x, &w, &out, rows, n, k, accumulate);
                }
            }
        }
    }
}

#[test]
fn the_amx_driver_on_emulated_tiles_matches_f64_on_every_tile_shape() {
    run_grid("emulated amx", &|x, rows, w, out, acc| {
        matmul_tiles(|| Ok(Emulated::new()), x, rows, w, out, acc).unwrap()
    });
}

#[test]
fn the_amx_driver_splits_rows_on_one_thread_and_leaves_the_rest_of_out_alone() {
    // One thread: rows are split even when there are few, so small products take the other path.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        for (rows, n, k) in [(1, 17, 33), (33, 50, 64), (70, 33, 7)] {
            let x = values(rows * k, 5);
            let w = values(n * k, 6);
            let packed = PackedBf16::from_rows(&w, n, k).unwrap();
            for accumulate in [false, true] {
                // One value more than the product: it must stay as it was.
                let mut out = vec![0.5f32; rows * n + 1];
                matmul_tiles(
                    || Ok(Emulated::new()),
                    &x,
                    rows,
                    &packed,
                    &mut out,
                    accumulate,
                )
                .unwrap();
                check_f64("1 thread", &x, &w, &out, rows, n, k, accumulate);
                assert_eq!(out[rows * n], 0.5);
            }
        }
    });
}

#[test]
fn the_amx_driver_agrees_with_the_other_kernels_and_refuses_bad_operands() {
    let (rows, n, k) = (40, 33, 300);
    let x = values(rows * k, 1);
    let w = values(n * k, 2);
    let packed = PackedBf16::from_rows(&w, n, k).unwrap();
    let mut amx = vec![0f32; rows * n];
    matmul_tiles(|| Ok(Emulated::new()), &x, rows, &packed, &mut amx, false).unwrap();
    let mut portable = vec![0f32; rows * n];
    matmul_bf16(
        Bf16Kernel::Portable,
        &x,
        rows,
        &packed,
        &mut portable,
        false,
    )
    .unwrap();
    // Same rounding of both operands; the sums round in other orders.
    for (a, p) in amx.iter().zip(&portable) {
        assert!((a - p).abs() < 2e-5, "{a} vs {p}");
    }
    let e = matmul_tiles(
        || Ok(Emulated::new()),
        &x[..10],
        rows,
        &packed,
        &mut amx,
        false,
    );
    assert!(e.unwrap_err().contains("do not fit"));
    let e = matmul_tiles(
        || Err::<Emulated, _>("no tiles".to_string()),
        &x,
        rows,
        &packed,
        &mut amx,
        false,
    );
    assert_eq!(e.unwrap_err(), "no tiles");
    // k = 0: overwrite writes zeros, accumulate leaves `out` alone; no tiles are made.
    let empty = PackedBf16::from_rows(&[], 3, 0).unwrap();
    let mut out = vec![2f32; 6];
    let none = || Err::<Emulated, _>("unused".to_string());
    matmul_tiles(none, &[], 2, &empty, &mut out, true).unwrap();
    assert_eq!(out, [2.0; 6]);
    matmul_tiles(none, &[], 2, &empty, &mut out, false).unwrap();
    assert_eq!(out, [0.0; 6]);
}

/// Loads a tile from bf16 pairs given as f32 values `(lo, hi)`.
fn pairs(v: &[(f32, f32)]) -> Vec<u32> {
    v.iter()
        .map(|&(l, h)| u32::from(bits(l)) | (u32::from(bits(h)) << 16))
        .collect()
}

/// One `tdpbf16ps` on odd shapes (C 3 × 5, A 3 × 7 pairs, B 7 × 5 pairs, all rows in wider
/// strided buffers) on `m`, returning C (3 rows × 5, stored 6 apart, with the sixth column left
/// as it was) and the inputs.
fn odd_shapes<M: TileMachine>(m: &mut M) -> (Vec<f32>, Vec<u32>, Vec<u32>, Vec<f32>) {
    let cfg = TileConfig::empty()
        .with(0, 3, 20)
        .and_then(|c| c.with(1, 3, 28))
        .and_then(|c| c.with(2, 7, 20))
        .unwrap();
    let a: Vec<u32> = pairs(
        &values(2 * 3 * 9, 11)
            .chunks(2)
            .map(|p| (p[0], p[1]))
            .collect::<Vec<_>>(),
    ); // 3 rows, 9 apart
    let b: Vec<u32> = pairs(
        &values(2 * 7 * 6, 12)
            .chunks(2)
            .map(|p| (p[0], p[1]))
            .collect::<Vec<_>>(),
    ); // 7 rows, 6 apart
    let c0: Vec<u32> = values(3 * 6, 13).iter().map(|v| v.to_bits()).collect();
    m.configure(&cfg).unwrap();
    m.load::<0>(&c0, 6).unwrap();
    m.load::<1>(&a, 9).unwrap();
    m.load::<2>(&b, 6).unwrap();
    m.dpbf16ps::<0, 1, 2>().unwrap();
    let mut c = vec![-7f32; 3 * 6];
    m.store::<0>(&mut c, 6).unwrap();
    m.release();
    (c, a, b, c0.iter().map(|&v| f32::from_bits(v)).collect())
}

#[test]
fn emulated_tdpbf16ps_computes_the_product_on_odd_shapes() {
    let (c, a, b, c0) = odd_shapes(&mut Emulated::new());
    let lo = |p: u32| f64::from(f32::from_bits(p << 16));
    let hi = |p: u32| f64::from(f32::from_bits(p & 0xffff_0000));
    for m in 0..3 {
        for n in 0..5 {
            let mut want = f64::from(c0[m * 6 + n]);
            for p in 0..7 {
                let (x, y) = (a[m * 9 + p], b[p * 6 + n]);
                want += lo(x) * lo(y) + hi(x) * hi(y);
            }
            let got = f64::from(c[m * 6 + n]);
            assert!((got - want).abs() < 1e-5, "({m}, {n}): {got} vs {want}");
        }
        assert_eq!(c[m * 6 + 5], -7.0, "tilestored wrote past colsb");
    }
}

/// `C = 0.5` plus three pairs whose even halves are 2^24, 1, -2^24 and odd halves 1, 1, 1. In the
/// SDM's order the even and odd halves are summed apart (2^24 + 1 rounds back to 2^24, so the even
/// lane ends at 0, the odd one at 3), then together, then added to C: 3.5. Adding both products of
/// each pair into C in turn (as `vdpbf16ps` does) gives 4; the exact sum is 4.5.
fn order_case<M: TileMachine>(m: &mut M) -> f32 {
    let big = 16_777_216f32;
    let cfg = TileConfig::empty()
        .with(0, 1, 4)
        .and_then(|c| c.with(1, 1, 12))
        .and_then(|c| c.with(2, 3, 4))
        .unwrap();
    let a = pairs(&[(1.0, 1.0); 3]);
    let b = pairs(&[(big, 1.0), (1.0, 1.0), (-big, 1.0)]);
    m.configure(&cfg).unwrap();
    m.load::<0>(&[0.5f32.to_bits()], 1).unwrap();
    m.load::<1>(&a, 3).unwrap();
    m.load::<2>(&b, 1).unwrap();
    m.dpbf16ps::<0, 1, 2>().unwrap();
    let mut c = [0f32];
    m.store::<0>(&mut c, 1).unwrap();
    m.release();
    c[0]
}

#[test]
fn emulated_tdpbf16ps_rounds_in_the_sdm_order_with_daz_and_ftz() {
    assert_eq!(order_case(&mut Emulated::new()), 3.5);
    // DAZ: a denormal bf16 input counts as zero; FTZ: a denormal sum becomes zero.
    let tiny = f32::from_bits(1 << 16); // the smallest denormal bf16
    let normal = f32::MIN_POSITIVE; // 2^-126, a normal bf16
    let cfg = TileConfig::empty()
        .with(0, 1, 4)
        .and_then(|c| c.with(1, 1, 4))
        .and_then(|c| c.with(2, 1, 4))
        .unwrap();
    let mut m = Emulated::new();
    let run = |m: &mut Emulated, a: (f32, f32), b: (f32, f32)| {
        m.configure(&cfg).unwrap();
        m.load::<1>(&pairs(&[a]), 1).unwrap();
        m.load::<2>(&pairs(&[b]), 1).unwrap();
        m.dpbf16ps::<0, 1, 2>().unwrap();
        let mut c = [9f32];
        m.store::<0>(&mut c, 1).unwrap();
        c[0]
    };
    assert_eq!(run(&mut m, (tiny, 1.0), (1.0, 2.0)), 2.0);
    assert_eq!(run(&mut m, (normal, 0.0), (0.5, 0.0)), 0.0); // 2^-127 is denormal
    assert_eq!(run(&mut m, (normal, 0.0), (2.0, 0.0)), 2.0 * normal);
}

#[test]
fn tiles_refuse_what_the_instructions_fault_on() {
    let mut m = Emulated::new();
    assert!(m
        .load::<0>(&[0; 256], 16)
        .unwrap_err()
        .contains("ldtilecfg"));
    assert!(TileConfig::empty().with(8, 1, 4).is_err());
    assert!(TileConfig::empty().with(0, 17, 4).is_err());
    assert!(TileConfig::empty().with(0, 1, 65).is_err());
    assert!(TileConfig::empty().with(0, 1, 6).is_err());
    assert!(TileConfig::empty().with(0, 0, 4).is_err());
    let cfg = TileConfig::empty()
        .with(0, 16, 64)
        .and_then(|c| c.with(1, 16, 64))
        .and_then(|c| c.with(2, 16, 64))
        .and_then(|c| c.with(3, 15, 64))
        .unwrap();
    m.configure(&cfg).unwrap();
    // 16 rows of 16 values, 16 apart: 256 values; one fewer, or rows 17 apart, is too short.
    m.load::<1>(&[0; 256], 16).unwrap();
    assert!(m.load::<1>(&[0; 255], 16).is_err());
    assert!(m.load::<1>(&[0; 256], 17).is_err());
    assert!(m.load::<1>(&[0; 256], usize::MAX).is_err());
    assert!(m.store::<0>(&mut [0f32; 255], 16).is_err());
    assert!(m
        .load::<4>(&[0; 256], 16)
        .unwrap_err()
        .contains("not configured"));
    assert!(m.zero::<4>().is_err());
    m.dpbf16ps::<0, 1, 2>().unwrap();
    assert!(m.dpbf16ps::<0, 0, 2>().unwrap_err().contains("repeats"));
    assert!(m.dpbf16ps::<0, 3, 2>().unwrap_err().contains("shapes"));
    assert!(m.dpbf16ps::<3, 1, 2>().unwrap_err().contains("shapes"));
    m.release();
    assert!(m.zero::<0>().is_err());
}

#[test]
fn tile_config_bytes_follow_the_palette_1_layout() {
    let b = TileConfig::empty()
        .with(0, 16, 64)
        .and_then(|c| c.with(7, 3, 12))
        .unwrap()
        .to_bytes();
    let mut want = [0u8; 64];
    want[0] = 1; // palette 1; byte 1 (start row) 0
    want[16] = 64; // tmm0.colsb, little-endian u16 at 16
    want[30] = 12; // tmm7.colsb at 16 + 2·7
    want[48] = 16; // tmm0.rows at 48
    want[55] = 3; // tmm7.rows at 48 + 7
    assert_eq!(b, want);
}

#[test]
fn the_amx_kernel_is_named_amx_and_refused_where_the_cpu_lacks_it() {
    assert_eq!(Bf16Kernel::Amx.name(), "amx");
    if available() {
        assert_eq!(Bf16Kernel::named("amx"), Ok(Bf16Kernel::Amx));
        assert_eq!(Bf16Kernel::named("AMX-BF16"), Ok(Bf16Kernel::Amx));
        assert_eq!(Bf16Kernel::best(), Bf16Kernel::Amx);
        return;
    }
    let e = Bf16Kernel::named("amx").unwrap_err();
    eprintln!("WILDREWARD_MATMUL=amx here: {e}");
    assert!(
        e.contains("WILDREWARD_MATMUL=amx") && e.contains("lacks amx") && e.contains("AMX"),
        "{e}"
    );
    assert_ne!(Bf16Kernel::best(), Bf16Kernel::Amx);
    assert!(Hardware::new().is_err());
    let packed = PackedBf16::from_rows(&[1.0; 4], 2, 2).unwrap();
    let e = matmul_bf16(Bf16Kernel::Amx, &[1.0; 2], 1, &packed, &mut [0.0; 2], false);
    assert!(e.unwrap_err().contains("lacks amx"));
}

#[test]
fn hardware_amx_matches_the_emulated_tiles_and_f64() {
    if !available() {
        eprintln!("SKIPPED: this CPU has no AMX-BF16 (hardware AMX test not run)");
        if let Err(why) = probe() {
            eprintln!("  ({why})");
        }
        return;
    }
    // One instruction on odd shapes, then the rounding-order case, on both machines.
    let (hw, ..) = odd_shapes(&mut Hardware::new().unwrap());
    let (em, ..) = odd_shapes(&mut Emulated::new());
    for (h, e) in hw.iter().zip(&em) {
        assert!((h - e).abs() <= 1e-6 * (1.0 + e.abs()), "{h} vs {e}");
    }
    let exact = hw
        .iter()
        .zip(&em)
        .filter(|(h, e)| h.to_bits() == e.to_bits())
        .count();
    eprintln!(
        "AMX odd shapes: {exact} of {} values bit-identical to the model",
        hw.len()
    );
    let order = order_case(&mut Hardware::new().unwrap());
    eprintln!(
        "AMX accumulation order case: hardware {order}, SDM model 3.5 (pair by pair 4, exact 4.5)"
    );
    assert!([3.5, 4.0, 4.5].contains(&order), "{order}");
    // One thread per machine: a second one on this thread is refused.
    let first = Hardware::new().unwrap();
    assert!(Hardware::new().is_err());
    drop(first);
    // The whole driver: against f64 on every shape, and against the model.
    run_grid("hardware amx", &|x, rows, w, out, acc| {
        let mut em = out.to_vec();
        matmul_bf16(Bf16Kernel::Amx, x, rows, w, out, acc).unwrap();
        matmul_tiles(|| Ok(Emulated::new()), x, rows, w, &mut em, acc).unwrap();
        let k = w.k() as f32;
        for (h, e) in out.iter().zip(&em) {
            assert!(
                (h - e).abs() <= 1e-5 * k.sqrt() * (1.0 + e.abs()),
                "{h} vs {e}"
            );
        }
    });
}

/// The start-up self-test passes on correct tiles and catches a wrong one (an emulated machine
/// whose `tilestored` adds 1 to the first value of each tile it stores).
#[test]
fn the_self_test_passes_correct_tiles_and_turns_off_wrong_ones() {
    hardware::self_test_on(|| Ok(Emulated::new())).unwrap();
    let broken = hardware::self_test_on(|| Ok(StoresOneTooMuch(Emulated::new())));
    let why = broken.unwrap_err();
    assert!(
        why.contains("AMX self-test") && why.contains("portable"),
        "{why}"
    );
}

/// An emulated machine with a planted bug, for the self-test's test.
struct StoresOneTooMuch(Emulated);

impl TileMachine for StoresOneTooMuch {
    fn configure(&mut self, cfg: &TileConfig) -> Result<(), String> {
        self.0.configure(cfg)
    }
    fn load<const T: usize>(&mut self, src: &[u32], stride: usize) -> Result<(), String> {
        self.0.load::<T>(src, stride)
    }
    fn store<const T: usize>(&mut self, dst: &mut [f32], stride: usize) -> Result<(), String> {
        self.0.store::<T>(dst, stride)?;
        dst[0] += 1.0;
        Ok(())
    }
    fn zero<const T: usize>(&mut self) -> Result<(), String> {
        self.0.zero::<T>()
    }
    fn dpbf16ps<const C: usize, const A: usize, const B: usize>(&mut self) -> Result<(), String> {
        self.0.dpbf16ps::<C, A, B>()
    }
    fn release(&mut self) {
        self.0.release()
    }
}
