//! Worker threads for the CPU kernels, with their stacks placed at a fixed offset within a page.
//!
//! gemm's f32 AVX2 microkernel spills registers to its stack frame while it streams packed operands
//! from cache-line-aligned buffers. At some placements of that frame within a 4 KiB page the CPU
//! falsely sees the kernel's loads depending on its spill stores (4K aliasing: only address bits
//! 0–11 are compared at first) and the kernel slows by up to 1.7×. Where a worker's stack starts
//! within its page depends on the binary (glibc puts the static TLS block, whose size differs from
//! binary to binary, at the top of each thread's stack): the same 32 texts took 16.3 s to score in
//! `wildreward score` and 10 s in the benchmark example, and a 1024³ matmul ran 75 or 135 GFLOP/s.
//! Each worker here first moves its stack pointer to [`STACK_OFFSET`] within its page, so every
//! binary runs the kernels at the same placement. Measured on this project's 2-core AVX2 machine
//! (`WR_STACK_OFFSET=N wildreward score …`, N in steps of 256): 0, 2048 and 3328 are slow (12.8,
//! 16.3, 15.1 s), 256–1792 and 2304–3072 fast (9.7–10.8 s); `WR_STACK_OFFSET` overrides it for
//! another CPU.

use rayon::{ThreadBuilder, ThreadPoolBuilder};

/// Where, within a 4 KiB page, each worker's stack continues (measured; see the module docs).
pub const STACK_OFFSET: usize = 1280;

/// Granularity of the stack shift: one frame of [`descend`].
const STEP: usize = 64;

/// Makes the global rayon pool run at [`STACK_OFFSET`], unless something already started it.
pub fn init_global() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ThreadPoolBuilder::new()
            .spawn_handler(|t| spawn_at(t, target()))
            .build_global();
    });
}

fn target() -> usize {
    std::env::var("WR_STACK_OFFSET")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(STACK_OFFSET)
}

fn spawn_at(thread: ThreadBuilder, target: usize) -> std::io::Result<()> {
    let mut b = std::thread::Builder::new();
    if let Some(name) = thread.name() {
        b = b.name(name.to_string());
    }
    if let Some(size) = thread.stack_size() {
        b = b.stack_size(size);
    }
    b.spawn(move || descend(target, thread))?;
    Ok(())
}

/// Uses stack frames until the next frame starts just below `target` within its page, then runs the
/// worker.
#[inline(never)]
fn descend(target: usize, thread: ThreadBuilder) {
    let frame = [0u8; STEP];
    let here = std::hint::black_box(&frame) as *const _ as usize % 4096;
    let above = (here + 4096 - target) % 4096;
    if above >= 2 * STEP {
        descend(target, thread);
    } else {
        thread.run();
    }
    std::hint::black_box(&frame);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a job's stack frame sits within its page, on a one-thread pool placed at `target`.
    fn frame_offset(target: usize) -> usize {
        let pool = ThreadPoolBuilder::new()
            .num_threads(1)
            .spawn_handler(move |t| spawn_at(t, target))
            .build()
            .unwrap();
        pool.install(|| {
            let probe = [0u8; 8];
            std::hint::black_box(&probe) as *const _ as usize % 4096
        })
    }

    #[test]
    fn workers_run_at_the_requested_place_in_their_page() {
        // The same code path from the worker's start to the job: moving the target moves the job's
        // frame by the same amount, to within the stopping window of `descend` (its frame is one
        // step plus what the compiler adds, so the window varies with the build; 256 bytes is well
        // inside the fast stretches of the module docs).
        for (a, b) in [(1280, 3000), (256, 2304), (3900, 100)] {
            let moved = (frame_offset(b) + 4096 - frame_offset(a)) % 4096;
            let want = (b + 4096 - a) % 4096;
            let off = (moved as i64 - want as i64).rem_euclid(4096);
            assert!(
                off < 4 * STEP as i64 || off > 4096 - 4 * STEP as i64,
                "targets {a} -> {b}: the frame moved {moved}, wanted {want}"
            );
        }
    }
}
