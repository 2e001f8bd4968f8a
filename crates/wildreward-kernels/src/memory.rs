//! The C allocator's settings for tensor workloads.
//!
//! glibc serves every allocation of 32 MiB or more (128 KiB before its dynamic threshold adapts)
//! with a fresh `mmap` and returns it with `munmap` on free, so each such tensor is zero-filled by
//! the kernel page by page on first touch. A full fine-tuning step of SmolLM2 at 4 × 512 tokens
//! creates and drops some 40 GiB of activations and gradients that way: 39 M minor page faults and
//! 115 s of kernel time over three steps, a step taking 38.8 s. With the threshold raised to 1 GiB
//! and freed memory kept in the heap, glibc reuses what the previous step freed: 3.8 M faults, 20.3 s
//! a step (`scripts/bench/train.sh`, docs/benchmarks.md). PyTorch keeps a caching allocator for the
//! same reason. The resident set stays at its peak, which it reaches every step anyway.
#![allow(unsafe_code)]

/// Largest single allocation glibc serves from the heap instead of a private mapping.
const MMAP_THRESHOLD: i32 = 1 << 30;

/// Tells glibc to keep freed memory for reuse (see the module docs); once per process, before the
/// first large tensor. Nothing happens on other C libraries.
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes malloc's tuning parameters; these values are within the
        // ranges glibc accepts (it returns 0 and changes nothing otherwise).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_TOP_PAD, MMAP_THRESHOLD);
        }
    });
}
