//! bf16 product GFLOP/s at the shapes SmolLM2's and MiniLM's projections run (`rows × k → n`), on all
//! of rayon's threads, for each kernel this CPU has: the best of several timings, with the weight
//! packed once (as the model does at load) and the activations rounded per call (as it does per
//! layer). Prints one JSON line per shape and kernel; scripts/bench/matmul.sh puts them beside the
//! f32 product and PyTorch's bf16 on the same shapes.
//!
//! `cargo run --release -p wildreward-kernels --example bench_bf16`

use std::time::Instant;
use wildreward_kernels::{matmul_bf16, Bf16Kernel, PackedBf16};

fn main() -> Result<(), String> {
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for (m, k, n) in [
        (2048, 576, 576),
        (2048, 576, 192),
        (2048, 576, 1536),
        (2048, 1536, 576),
        (1024, 1024, 1024),
        (2048, 384, 1536),
        (2048, 1536, 384),
        (8, 576, 1536),
    ] {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104729) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let packed = PackedBf16::from_rows(&w, n, k)?;
        let mut out = vec![0f32; m * n];
        for kernel in [
            Bf16Kernel::Amx,
            Bf16Kernel::Avx512Bf16,
            Bf16Kernel::Portable,
        ] {
            if !kernel.available() || (kernel == Bf16Kernel::Portable && m > 64) {
                continue;
            }
            let mut best = f64::MAX;
            for _ in 0..=reps {
                let t = Instant::now();
                matmul_bf16(kernel, &x, m, &packed, &mut out, false)?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            std::hint::black_box(&out);
            println!(
                "{{\"m\":{m},\"k\":{k},\"n\":{n},\"kernel\":\"{}\",\"threads\":{},\"gflops\":{:.1}}}",
                kernel.name(),
                rayon::current_num_threads(),
                2.0 * (m * k * n) as f64 / best / 1e9
            );
        }
    }
    Ok(())
}
