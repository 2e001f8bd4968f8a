//! Pure compute on slices for the CPU forward passes: no candle or model types, so the kernels can
//! be tested against f64 products on their own and reused by every caller (scorer, training nodes,
//! generation, MiniLM). The only crate of the workspace whose kernels use `unsafe` for SIMD
//! intrinsics; each `unsafe` block sits behind a run-time CPUID check and a safe function that
//! checks every extent first.
//!
//! - [`bf16`]: `y (+)= x · Wᵀ` with W packed once as bf16 pairs and x rounded to bf16 per call,
//!   f32 accumulation: AVX512_BF16's `vdpbf16ps` (two products per f32 lane per instruction, twice
//!   the f32 FMA rate on AMD Zen 4/5 and Intel Xeons), a portable loop with the same rounding
//!   elsewhere. Chosen at run time ([`bf16::Bf16Kernel::detect`]), overridable with
//!   `WILDREWARD_MATMUL`.
//!
//! Dependencies and why: `rayon` runs row blocks on the caller's pool; `half` rounds f32 to bf16
//! (round to nearest even, the same rounding the instruction's conversion uses).

pub mod bf16;

pub use bf16::{matmul_bf16, Bf16Kernel, PackedBf16};
