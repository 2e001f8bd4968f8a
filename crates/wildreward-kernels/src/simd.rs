//! The scalar building blocks of the elementwise loops, written so the compiler vectorises them:
//! a branch-free `exp`, row reductions in explicit lanes, the RMS norm's scale, and [`wide`], which
//! compiles a loop body for AVX-512 where the CPU has it. The packed forward, the training nodes and
//! MiniLM all use them, so the inference and training paths round alike.
#![allow(unsafe_code)]

use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

/// The float types the kernels run in: f32 (inference and training) and f64 (the finite-difference
/// checks of the training nodes).
pub trait Float:
    Copy
    + Send
    + Sync
    + 'static
    + PartialOrd
    + From<f32>
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    /// `eˣ` ([`fast_exp`] for f32).
    fn exp(self) -> Self;
    /// `√x`.
    fn sqrt(self) -> Self;
}

impl Float for f32 {
    /// The branch-free [`fast_exp`] (within 2 ulp), which the compiler vectorises.
    fn exp(self) -> Self {
        fast_exp(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Float for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// `eˣ` to within 2 ulp over the f32 range (Cephes' `expf` polynomial), written without branches or
/// calls so the compiler vectorises the loops that use it. Saturates below −87.3 (to ~1e-38) and
/// above 88.3 (to ~2e38).
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer in the float unit.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    // The integer n sits in the low mantissa bits of t: read it there rather than through a float to
    // integer cast, whose saturation keeps the compiler from vectorising the loop.
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r2 + r + 1.0;
    let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    e * scale
}

/// Runs `body` with the loops inlined into it compiled for AVX-512 (16 lanes) where the CPU has it,
/// for the elementwise passes (softmax, norms, RoPE, SiLU) that otherwise build for the baseline's
/// 4-lane SSE2. The same operations in the same order either way (no FMA contraction, reductions in
/// explicit lanes), so the numbers do not depend on the CPU.
#[inline(always)]
pub fn wide<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512 F (checked just above).
        return unsafe { wide_avx512(body) };
    }
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn wide_avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// Lanes of the row reductions: independent partial results the compiler keeps in one vector.
const LANES: usize = 8;

/// The largest value of `row` (−∞ for an empty row).
#[inline]
pub fn lanes_max<T: Float>(row: &[T]) -> T {
    let neg = T::from(f32::NEG_INFINITY);
    let mut acc = [neg; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let tail = chunks.remainder().iter().copied();
    acc.into_iter()
        .chain(tail)
        .fold(neg, |a, b| if b > a { b } else { a })
}

/// The sum of `row`, in [`LANES`] partial sums.
#[inline]
pub fn lanes_sum<T: Float>(row: &[T]) -> T {
    let zero = T::from(0.0);
    let mut acc = [zero; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let tail = chunks.remainder().iter().copied();
    acc.into_iter().chain(tail).fold(zero, |a, b| a + b)
}

/// `1 / √(mean(x²) + ε)`: an RMS norm's scale for one row (the training node and the packed forward).
/// The squares are summed in 16 partial sums, so the loop vectorises instead of waiting on one
/// add chain.
#[inline]
pub fn inv_rms<T: Float>(x: &[T], eps: T) -> T {
    const PARTS: usize = 16;
    let zero = T::from(0.0);
    let mut acc = [zero; PARTS];
    let mut chunks = x.chunks_exact(PARTS);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let tail = chunks.remainder().iter().fold(zero, |a, &v| a + v * v);
    let sum = acc.into_iter().fold(tail, |a, b| a + b);
    T::from(1.0) / (sum / T::from(x.len() as f32) + eps).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std_to_a_few_ulp() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (fast_exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert!(fast_exp(-1000.0) < 1e-37);
        assert_eq!(fast_exp(0.0), 1.0);
    }

    #[test]
    fn reductions_and_the_rms_scale_match_plain_loops() {
        let row: Vec<f64> = (0..37)
            .map(|i| ((i * 7919) % 101) as f64 / 10.0 - 5.0)
            .collect();
        let max = row.iter().cloned().fold(f64::MIN, f64::max);
        let sum: f64 = row.iter().sum();
        assert_eq!(lanes_max(&row), max);
        assert!((lanes_sum(&row) - sum).abs() < 1e-12);
        assert_eq!(lanes_max::<f64>(&[]), f64::NEG_INFINITY);
        let want = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / 37.0 + 1e-6).sqrt();
        assert!((inv_rms(&row, 1e-6) - want).abs() < 1e-12);
    }
}
