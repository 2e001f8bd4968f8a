//! Pure compute on slices for the CPU forward passes: no candle or model types, so the kernels can
//! be tested against f64 products on their own and reused by every caller (scorer, training nodes,
//! generation, MiniLM). The only crate of the workspace whose kernels use `unsafe` for SIMD
//! intrinsics and AMX instructions; each `unsafe` block sits behind a run-time CPUID check and a safe
//! function that checks every extent first.
//!
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
//! Dependencies and why: `rayon` runs row blocks on the caller's pool; `half` rounds f32 to bf16
//! (round to nearest even, the same rounding the instruction's conversion uses); `libc` (Linux on
//! x86_64 only) makes the one `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)` system call with
//! which a process must ask Linux for the AMX tile state before its first tile instruction (the
//! standard library has no wrapper for it).

pub mod amx;
pub mod bf16;

pub use bf16::{matmul_bf16, Bf16Kernel, PackedBf16};
