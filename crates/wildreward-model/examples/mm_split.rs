#![allow(unsafe_code, missing_docs)]
use gemm::Parallelism;
use std::time::Instant;
fn mm(dst: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize, par: Parallelism) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}
fn time(f: &mut dyn FnMut()) -> f64 {
    f();
    let reps = 10;
    let s = Instant::now();
    for _ in 0..reps {
        f();
    }
    s.elapsed().as_secs_f64() / reps as f64
}
fn main() {
    wildreward_model::threads::init_global();
    for (m, k, n) in [(2048usize, 576usize, 1536usize), (2048, 2048, 2048)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut d = vec![0f32; m * n];
        let fl = 2.0 * (m * n * k) as f64;
        let t0 = time(&mut || mm(&mut d, &a, &b, m, k, n, Parallelism::None));
        let mut t1 = 0.0;
        rayon::scope(|s| {
            s.spawn(|_| {
                t1 = time(&mut || mm(&mut d, &a, &b, m, k, n, Parallelism::None));
            })
        });
        let t2 = time(&mut || mm(&mut d, &a, &b, m, k, n, Parallelism::Rayon(2)));
        println!(
            "{m}x{k}x{n}: main thread {:6.1}  placed worker {:6.1}  rayon(2) {:6.1}",
            fl / t0 / 1e9,
            fl / t1 / 1e9,
            fl / t2 / 1e9
        );
    }
}
