//! The mlp head's two matrix products per training step, three ways side by side in one
//! invocation: matrixmultiply's sgemm (what `burn-ndarray` links), through
//! `ndarray::linalg::general_mat_mul` into an output allocated once and through `dot`, which
//! allocates one per call; the trainer's `fused_ops::dense_product` (sgemm's bits without its
//! packing, on AVX-512F CPUs); and PyTorch CPU (`benches/torch_gemm.py`):
//!
//! ```sh
//! cargo bench --bench gemm            # MPRM_PYTHON=/path/to/python to pick the interpreter
//! ```
//!
//! Shapes (the `train` bench's step: 3,072 step rows, d = 256, hidden 256): the forward product
//! x·W [3072 × 256]·[256 × 256], and the weight gradient xᵀ·g [256 × 3072]·[3072 × 256] with xᵀ a
//! transposed view (as `fused_ops` reads it). `MPRM_BENCH_THREADS` (default: all logical CPUs)
//! gives both the same number of threads; `MPRM_BENCH_REPEATS` (default 400) products are timed per
//! sample, 5 samples, the median reported. It tells whether the trainer's gap to PyTorch is in
//! the products or elsewhere.

mod support;

use std::process::Command;
use std::time::Instant;

use ndarray::Array2;
use support::{cpu_model, env_usize, median, python};

const ROWS: usize = 3072;
const DIM: usize = 256;
const HIDDEN: usize = 256;

/// Milliseconds per call of `f`, the median of 5 samples of `reps` calls after a warm-up.
fn time_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..reps.div_ceil(10) {
        f();
    }
    let samples = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() * 1e3 / reps as f64
        })
        .collect();
    median(samples)
}

fn gflops(ms: f64) -> f64 {
    2.0 * (ROWS * DIM * HIDDEN) as f64 / (ms * 1e-3) / 1e9
}

fn main() {
    let cpus = std::thread::available_parallelism().map_or(1, |p| p.get());
    let threads = env_usize("MPRM_BENCH_THREADS", cpus).max(1);
    // SAFETY: nothing else runs yet; matrixmultiply reads this once, on first use.
    unsafe {
        std::env::set_var("MATMUL_NUM_THREADS", threads.to_string());
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    let reps = env_usize("MPRM_BENCH_REPEATS", 400).max(1);
    let fill = |n: usize, m: usize, k: usize| {
        Array2::from_shape_fn((n, m), |(i, j)| {
            ((i * 31 + j * 17 + k) % 97) as f32 / 97.0 - 0.5
        })
    };
    let (x, w, g) = (
        fill(ROWS, DIM, 1),
        fill(DIM, HIDDEN, 2),
        fill(ROWS, HIDDEN, 3),
    );
    let mut y = Array2::<f32>::zeros((ROWS, HIDDEN));
    let mut dw = Array2::<f32>::zeros((DIM, HIDDEN));
    println!(
        "gemm: the mlp head's products, {ROWS} rows, d = {DIM}, hidden {HIDDEN}; {} \
         ({cpus} logical CPUs), {threads} thread(s) each",
        cpu_model()
    );
    let forward = time_ms(reps, || {
        ndarray::linalg::general_mat_mul(1.0, &x, &w, 0.0, &mut y)
    });
    let weight_grad = time_ms(reps, || {
        ndarray::linalg::general_mat_mul(1.0, &x.t(), &g, 0.0, &mut dw)
    });
    // sgemm again, through ndarray's `dot`, which allocates its output on every call as the
    // trainer's products do: the gap to the lines above is what that allocation costs.
    let forward_fresh = time_ms(reps, || {
        std::hint::black_box(x.dot(&w));
    });
    let weight_grad_fresh = time_ms(reps, || {
        std::hint::black_box(x.t().dot(&g));
    });
    // The trainer's products: `fused_ops::dense_product`, the same bits without sgemm's packing
    // where the CPU has AVX-512F (otherwise sgemm itself). As in the trainer, each call allocates
    // its output, where the sgemm lines above (not `dot`) and PyTorch write into one allocated
    // once.
    let forward_trainer = time_ms(reps, || {
        std::hint::black_box(mprm::fused_ops::dense_product(x.view(), w.view()));
    });
    let weight_grad_trainer = time_ms(reps, || {
        std::hint::black_box(mprm::fused_ops::dense_product(x.t(), g.view()));
    });
    std::hint::black_box((&y, &dw));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/torch_gemm.py");
    let torch = Command::new(python())
        .arg(script)
        .args([
            "--threads",
            &threads.to_string(),
            "--repeats",
            &reps.to_string(),
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    for (name, sgemm, fresh, mine) in [
        ("x·W", forward, forward_fresh, forward_trainer),
        ("xᵀ·g", weight_grad, weight_grad_fresh, weight_grad_trainer),
    ] {
        print!(
            "  {name:<5} matrixmultiply {sgemm:>7.3} ms ({:>6.1} GFLOP/s; {fresh:.3} ms with a \
             fresh output)   mprm {mine:>7.3} ms ({:>6.1} GFLOP/s, {:.2}x sgemm, {:.2}x sgemm \
             with a fresh output)",
            gflops(sgemm),
            gflops(mine),
            sgemm / mine,
            fresh / mine
        );
        match torch.as_ref().and_then(|t| t[name].as_f64()) {
            Some(t) => println!(
                "   torch {t:>7.3} ms ({:>6.1} GFLOP/s)   ratio mprm / torch = {:.2}x",
                gflops(t),
                t / mine
            ),
            None => println!("   torch unavailable (set MPRM_PYTHON to a python with torch)"),
        }
    }
    if let Some(t) = &torch {
        println!("  ({})", t["framework"].as_str().unwrap_or("?"));
    }
}
