//! f32 matmul GFLOP/s at the shapes SmolLM2's forward and backward run (see scripts/bench/matmul.sh,
//! which times PyTorch on the same shapes in the same run): this crate's product
//! (`wildreward_kernels::matmul_f32`, AVX-512 where the CPU has it) against candle's (`Tensor::matmul`, the `gemm`
//! crate), on all of rayon's threads. Prints one JSON line per shape.
//!
//! `cargo run --example bench_matmul`

use candle_core::{Device, Tensor};
use std::time::Instant;

/// The best of `reps` timings of `run`, in seconds.
fn best_secs(reps: usize, run: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    run()?;
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        run()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> anyhow::Result<()> {
    wildreward_kernels::init_process();
    // (rows, depth, columns): q/o projections, k/v, gate/up, down, a square reference.
    for (m, k, n) in [
        (2048, 576, 576),
        (2048, 576, 192),
        (2048, 576, 1536),
        (2048, 1536, 576),
        (1024, 1024, 1024),
    ] {
        let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
        let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu)?;
        let (av, bv) = (
            a.flatten_all()?.to_vec1::<f32>()?,
            b.flatten_all()?.to_vec1::<f32>()?,
        );
        let flop = 2.0 * (m * k * n) as f64;
        let own = best_secs(10, &mut || {
            std::hint::black_box(wildreward_kernels::matmul_f32(&av, &bv, (m, k, n)));
            Ok(())
        })?;
        let candle = best_secs(10, &mut || {
            std::hint::black_box(a.matmul(&b)?);
            Ok(())
        })?;
        println!(
            "{}",
            serde_json::json!({
                "m": m, "k": k, "n": n, "threads": rayon::current_num_threads(),
                "own_gflops": flop / own / 1e9, "candle_gflops": flop / candle / 1e9,
            })
        );
    }
    Ok(())
}
