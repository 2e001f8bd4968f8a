//! Pure compute on slices for the CPU forward passes: no candle or model types, so the kernels can
//! be tested against f64 products on their own and reused by every caller (the packed scorer
//! forward, the training nodes, generation, MiniLM). The only crate of the workspace whose code
//! uses `unsafe` (SIMD intrinsics, AMX instructions, gemm's raw-pointer API, two libc calls); each
//! `unsafe` block sits behind a run-time CPUID check and a safe function that checks every extent
//! first.
//!
//! - [`matmul`]: the one safe door to the f32/f64 products (this crate's AVX-512 [`sgemm`]-style
//!   kernel, or `gemm`), over the strided views and causal limits of [`layout`].
//! - [`simd`]: branch-free `exp`, lane reductions, the RMS scale, [`simd::wide`] (AVX-512 loop
//!   bodies).
//! - [`rows`]: RMS norm, RoPE, SiLU·up and the linear projection on `[tokens, width]` rows.
//! - [`attention`]: the packed causal attention over concatenated rows.
//! - [`dense`]: MiniLM's (BERT's) layer norm, erf GELU, softmax rows.
//! - [`threads`], [`memory`]: the worker-thread placement and the allocator setting that binaries
//!   make once at start-up (never hidden inside a loader).
//! - [`bf16`]: `y (+)= x · Wᵀ` with W packed once as bf16 pairs and x rounded to bf16 per call,
//!   f32 accumulation. Three kernels on the same packed weight and the same rounding, chosen at run
//!   time ([`bf16::Bf16Kernel::detect`], best first), overridable with `WILDREWARD_MATMUL`:
//!   - `amx` ([`amx`]): Intel AMX-BF16's `tdpbf16ps` on tile registers (a 16 × 32 by 32 × 16
//!     product per instruction; Sapphire Rapids and later Xeons, Linux), written against a small
//!     tile-machine trait so its blocking is tested on any CPU with a software model of the tiles;
//!   - `avx512bf16`: AVX512_BF16's `vdpbf16ps` (two products per f32 lane per instruction, twice
//!     the f32 FMA rate on AMD Zen 4/5 and Intel Xeons);
//!   - `portable`: a scalar loop with the same rounding, everywhere else.
//!
//! Dependencies and why: `rayon` runs row blocks on the caller's pool (and [`threads`] places its
//! workers); `gemm` is the f32/f64 kernel candle's own CPU matmul calls (same series, linked once),
//! used for f64 and on CPUs without AVX-512; `half` rounds f32 to bf16
//! (round to nearest even, the same rounding the instruction's conversion uses); `libc` (Linux on
//! x86_64 only) makes the one `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)` system call with
//! which a process must ask Linux for the AMX tile state before its first tile instruction (the
//! standard library has no wrapper for it), and glibc's `mallopt` ([`memory`]).

pub mod amx;
pub mod attention;
pub mod bf16;
pub mod dense;
pub mod layout;
pub mod matmul;
pub mod memory;
pub mod rows;
#[cfg(target_arch = "x86_64")]
mod sgemm;
pub mod simd;
pub mod threads;

pub use bf16::{matmul_bf16, Bf16Kernel, PackedBf16};
pub use layout::{Limit, Staircase, Strided};
pub use matmul::{matmul, matmul_banded, matmul_f32, matmul_limited};
pub use simd::Float;

/// The start-up settings of a process that runs these kernels: workers placed as [`threads`] says and
/// glibc keeping freed memory ([`memory`]). Binaries call it once at the top of `main`, before
/// anything starts rayon's global pool or allocates a large tensor; libraries never do.
pub fn init_process() {
    threads::init_global();
    memory::keep_freed_memory();
}
