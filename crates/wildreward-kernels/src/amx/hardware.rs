//! The AMX instructions themselves (`asm!`), and the run-time check that this CPU and OS run them.

use super::{TileConfig, TileMachine};
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::OnceLock;

/// Whether this process can run AMX-BF16 (see [`probe`]).
pub fn available() -> bool {
    probe().is_ok()
}

/// Checks, once per process, that the CPU has AMX-TILE and AMX-BF16 (CPUID leaf 7 subleaf 0, EDX
/// bits 24 and 22), asks Linux for the tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`, which a process must do before its first tile instruction, or that
/// instruction kills it with SIGILL; the permission holds for all of its threads), and checks that
/// the OS enabled the tile state (XCR0 bits 17 and 18). The error says which check failed.
///
/// Then it runs the tiles once on a small odd-shaped product against the portable kernel
/// ([`self_test`]): this path has not been run on every CPU it may meet, so a wrong answer turns
/// it off, with the reason, instead of scoring with it.
pub fn probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            supported()?;
            let tested = self_test();
            if let Err(why) = &tested {
                eprintln!("wildreward-kernels: WARNING: AMX turned off: {why}");
            }
            tested
        })
        .clone()
}

/// The CPU and OS checks of [`probe`] without the self-test (what [`Hardware::new`] needs).
fn supported() -> Result<(), String> {
    static SUPPORTED: OnceLock<Result<(), String>> = OnceLock::new();
    SUPPORTED.get_or_init(detect).clone()
}

/// The hardware product on a 37 × 83 · [45, 83]ᵀ problem (every edge class: partial row, column
/// and K tiles), on a one-thread pool of its own, against [`crate::Bf16Kernel::Portable`]; the
/// two differ only in f32 summation order.
fn self_test() -> Result<(), String> {
    self_test_on(Hardware::new)
}

/// [`self_test`] on the tile machines `machine` makes (the emulated ones in the tests).
pub(super) fn self_test_on<M, F>(machine: F) -> Result<(), String>
where
    M: TileMachine,
    F: Fn() -> Result<M, String> + Sync + Send,
{
    use crate::bf16::{matmul_bf16, Bf16Kernel, PackedBf16};
    let (rows, n, k) = (37, 45, 83);
    let value = |i: usize, m: usize| ((i * 7919) % m) as f32 / (m / 2) as f32 - 1.0;
    let x: Vec<f32> = (0..rows * k).map(|i| value(i, 251)).collect();
    let w: Vec<f32> = (0..n * k).map(|i| value(i, 257)).collect();
    let packed = PackedBf16::from_rows(&w, n, k)?;
    let mut want = vec![0f32; rows * n];
    matmul_bf16(Bf16Kernel::Portable, &x, rows, &packed, &mut want, false)?;
    let mut got = vec![f32::NAN; rows * n];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| format!("AMX self-test: no thread for it: {e}"))?;
    pool.install(|| super::driver::matmul_tiles(machine, &x, rows, &packed, &mut got, false))?;
    let bad = got
        .iter()
        .zip(&want)
        .position(|(g, w)| g.is_nan() || (g - w).abs() > 1e-4 * (1.0 + w.abs()));
    match bad {
        None => Ok(()),
        Some(i) => Err(format!(
            "AMX self-test: y[{}, {}] = {} on the tiles, {} by the portable kernel",
            i / n,
            i % n,
            got[i],
            want[i]
        )),
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn detect() -> Result<(), String> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY: CPUID exists on every x86_64 CPU and only writes the four registers it returns.
    // (`unsafe` for older compilers, on which these are still unsafe functions.)
    #[allow(unused_unsafe)]
    let (max, leaf1) = unsafe { (__cpuid(0).eax, __cpuid(1).ecx) };
    if max < 7 {
        return Err("this CPU has no AMX-BF16 (no CPUID leaf 7)".into());
    }
    // SAFETY: as above; leaf 7 exists (checked just above).
    #[allow(unused_unsafe)]
    let edx = unsafe { __cpuid_count(7, 0).edx };
    let (tile, bf16) = ((edx >> 24) & 1 == 1, (edx >> 22) & 1 == 1);
    if !(tile && bf16) {
        return Err(format!(
            "this CPU has no AMX-BF16: CPUID.(EAX=7,ECX=0):EDX AMX-TILE (bit 24) {tile}, AMX-BF16 (bit 22) {bf16}"
        ));
    }
    if (leaf1 >> 27) & 1 == 0 {
        return Err("the OS has not enabled XSAVE (CPUID.1:ECX.OSXSAVE), so no tile state".into());
    }
    // Ask first: some accounts have XCR0 show the tile data only once the process has permission.
    request_permission()?;
    let (lo, _hi): (u32, u32);
    // SAFETY: OSXSAVE is set (checked above), so `xgetbv` with ECX = 0 reads XCR0 instead of
    // faulting; it touches only EAX and EDX.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _hi,
            options(nomem, nostack, preserves_flags));
    }
    if (lo >> 17) & 3 != 3 {
        return Err(format!(
            "the OS has not enabled the tile state (XCR0 = {lo:#x}, bits 17 and 18 needed)"
        ));
    }
    Ok(())
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[allow(unsafe_code)]
fn request_permission() -> Result<(), String> {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, feature) takes two integers and reads or writes no
    // memory of this process; it only changes which XSAVE features the kernel lets it use.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "Linux refused the tile data (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): {}; \
             kernels before 5.16 have no AMX support)",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_permission() -> Result<(), String> {
    Err("the AMX kernel only runs on Linux (it asks for the tile data with arch_prctl)".into())
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Result<(), String> {
    Err("AMX is an x86_64 extension".into())
}

thread_local! {
    /// Whether a [`Hardware`] is alive on this thread: the tile registers are per thread, and a second
    /// one would change the shapes the first one checks against.
    static CLAIMED: Cell<bool> = const { Cell::new(false) };
}

/// The real tile registers of this thread. Exists only where [`probe`] succeeded, at most one per
/// thread at a time, and cannot move to another thread (the registers are per thread): so the shapes
/// it checks against are the ones `ldtilecfg` loaded. Dropping it releases the tiles.
#[derive(Debug)]
pub struct Hardware {
    cfg: Option<TileConfig>,
    _thread: PhantomData<*const ()>,
}

impl Hardware {
    /// This thread's tiles, unconfigured; an error where the CPU or OS lacks AMX-BF16 or this thread
    /// already holds a [`Hardware`].
    pub fn new() -> Result<Self, String> {
        supported()?;
        if CLAIMED.with(|c| c.replace(true)) {
            return Err("AMX: this thread's tiles are already held by another Hardware".into());
        }
        Ok(Self {
            cfg: None,
            _thread: PhantomData,
        })
    }

    fn cfg(&self) -> Result<&TileConfig, String> {
        self.cfg
            .as_ref()
            .ok_or_else(|| "AMX: tiles used before ldtilecfg".to_string())
    }
}

impl Drop for Hardware {
    fn drop(&mut self) {
        self.release();
        CLAIMED.with(|c| c.set(false));
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
impl TileMachine for Hardware {
    fn configure(&mut self, cfg: &TileConfig) -> Result<(), String> {
        #[repr(C, align(64))]
        struct Operand([u8; 64]);
        let bytes = Operand(cfg.to_bytes());
        // SAFETY: a `Hardware` exists only where `probe` found AMX-TILE and the OS granted the tile
        // data; `TileConfig` holds only shapes palette 1 accepts (≤ 16 rows, ≤ 64 bytes, unused tiles
        // zero, reserved bytes zero), so `ldtilecfg` does not fault; it reads the 64 bytes of `bytes`.
        unsafe { ops::ldtilecfg(bytes.0.as_ptr()) };
        self.cfg = Some(*cfg);
        Ok(())
    }

    #[inline]
    fn load<const T: usize>(&mut self, src: &[u32], stride: usize) -> Result<(), String> {
        self.cfg()?.check_extent(T, src.len(), stride)?;
        // SAFETY: the CPU runs AMX (see `configure`), tile T is configured (checked), and its rows
        // (`rows` of `colsb` bytes, `4·stride` bytes apart from `src`'s start) lie inside `src`
        // (checked, with `4·stride` ≤ isize::MAX).
        unsafe { ops::tileloadd::<T>(src.as_ptr(), stride * 4) };
        Ok(())
    }

    #[inline]
    fn store<const T: usize>(&mut self, dst: &mut [f32], stride: usize) -> Result<(), String> {
        self.cfg()?.check_extent(T, dst.len(), stride)?;
        // SAFETY: as for `load`; the rows written lie inside `dst` (checked).
        unsafe { ops::tilestored::<T>(dst.as_mut_ptr(), stride * 4) };
        Ok(())
    }

    #[inline]
    fn zero<const T: usize>(&mut self) -> Result<(), String> {
        self.cfg()?.shape(T)?;
        // SAFETY: the CPU runs AMX and tile T is configured (checked); no memory is touched.
        unsafe { ops::tilezero::<T>() };
        Ok(())
    }

    #[inline]
    fn dpbf16ps<const C: usize, const A: usize, const B: usize>(&mut self) -> Result<(), String> {
        self.cfg()?.check_dp(C, A, B)?;
        // SAFETY: the CPU has AMX-BF16 (`probe`), and the three tiles are distinct, configured and
        // of matching shapes (checked), which are all of the instruction's `#UD` conditions besides
        // the CPUID ones; no memory is touched.
        unsafe { ops::tdpbf16ps::<C, A, B>() };
        Ok(())
    }

    fn release(&mut self) {
        if self.cfg.take().is_some() {
            // SAFETY: the CPU runs AMX (this `Hardware` exists); `tilerelease` only resets the tile
            // state.
            unsafe { ops::tilerelease() };
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl TileMachine for Hardware {
    fn configure(&mut self, _: &TileConfig) -> Result<(), String> {
        Err("AMX is an x86_64 extension".into())
    }
    fn load<const T: usize>(&mut self, _: &[u32], _: usize) -> Result<(), String> {
        self.cfg().map(|_| ())
    }
    fn store<const T: usize>(&mut self, _: &mut [f32], _: usize) -> Result<(), String> {
        self.cfg().map(|_| ())
    }
    fn zero<const T: usize>(&mut self) -> Result<(), String> {
        self.cfg().map(|_| ())
    }
    fn dpbf16ps<const C: usize, const A: usize, const B: usize>(&mut self) -> Result<(), String> {
        self.cfg().map(|_| ())
    }
    fn release(&mut self) {}
}

/// The instructions, Intel syntax. Tile numbers are const operands (the instructions encode them);
/// `tileloadd`/`tilestored` need a SIB memory operand, so the address is `[base + stride*1]` with
/// the row stride in bytes as the index register.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod ops {
    use std::arch::asm;

    /// `ldtilecfg [cfg]`.
    ///
    /// # Safety
    /// The CPU must have AMX-TILE with the OS's permission; `cfg` must point to 64 readable bytes
    /// holding a valid palette-1 configuration.
    #[inline(always)]
    pub(super) unsafe fn ldtilecfg(cfg: *const u8) {
        asm!("ldtilecfg [{0}]", in(reg) cfg, options(nostack, readonly, preserves_flags));
    }

    /// `tileloadd tmmT, [src + stride*1]`.
    ///
    /// # Safety
    /// AMX-TILE, tile T configured, and its `rows` rows of `colsb` bytes, `stride` bytes apart from
    /// `src`, readable.
    #[inline(always)]
    pub(super) unsafe fn tileloadd<const T: usize>(src: *const u32, stride: usize) {
        const { assert!(T < 8) };
        asm!("tileloadd tmm{t}, [{p} + {s}*1]", t = const T, p = in(reg) src, s = in(reg) stride,
            options(nostack, readonly, preserves_flags));
    }

    /// `tilestored [dst + stride*1], tmmT`.
    ///
    /// # Safety
    /// AMX-TILE, tile T configured, and its `rows` rows of `colsb` bytes, `stride` bytes apart from
    /// `dst`, writable.
    #[inline(always)]
    pub(super) unsafe fn tilestored<const T: usize>(dst: *mut f32, stride: usize) {
        const { assert!(T < 8) };
        asm!("tilestored [{p} + {s}*1], tmm{t}", t = const T, p = in(reg) dst, s = in(reg) stride,
            options(nostack, preserves_flags));
    }

    /// `tilezero tmmT`.
    ///
    /// # Safety
    /// AMX-TILE, tile T configured.
    #[inline(always)]
    pub(super) unsafe fn tilezero<const T: usize>() {
        const { assert!(T < 8) };
        asm!("tilezero tmm{t}", t = const T, options(nostack, preserves_flags));
    }

    /// `tdpbf16ps tmmC, tmmA, tmmB` (destination, then the m × k tile, then the k × n tile).
    ///
    /// # Safety
    /// AMX-BF16; C, A, B distinct, configured, of shapes m × n f32, m × k pairs, k × n pairs.
    #[inline(always)]
    pub(super) unsafe fn tdpbf16ps<const C: usize, const A: usize, const B: usize>() {
        const { assert!(C < 8 && A < 8 && B < 8 && C != A && C != B && A != B) };
        asm!("tdpbf16ps tmm{c}, tmm{a}, tmm{b}", c = const C, a = const A, b = const B,
            options(nostack, preserves_flags));
    }

    /// `tilerelease`.
    ///
    /// # Safety
    /// AMX-TILE with the OS's permission.
    #[inline(always)]
    pub(super) unsafe fn tilerelease() {
        asm!("tilerelease", options(nostack, preserves_flags));
    }
}
