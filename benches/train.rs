//! Training throughput of the Burn trainer on the CPU against the same model and protocol in
//! PyTorch (`benches/torch_train.py`), run side by side, interleaved, in one invocation:
//!
//! ```sh
//! cargo bench --bench train            # MPRM_PYTHON=/path/to/python to pick the interpreter
//! ```
//!
//! Model: mlp head, d = 256, hidden 256, GELU (`MPRM_BENCH_ACTIVATION=relu` for ReLU,
//! `MPRM_BENCH_HEAD=linear` for the linear head); protocol: global batch 512 rollouts,
//! micro-batches of 2, micro-batch-mean BCE, global-norm clipping 1.0, AdamW, warm-up + cosine,
//! one pass. The data are synthetic: Gaussian features, 2–10 steps per rollout, labels drawn from
//! a linear teacher. `MPRM_BENCH_ROLLOUTS` (default 20480) and `MPRM_BENCH_REPEATS` (default 3)
//! size the run; the median of the repeats is reported. `MPRM_BENCH_THREADS` (default: all
//! logical CPUs) gives both frameworks the same number of threads (Burn: matrixmultiply and
//! rayon; PyTorch: `torch.set_num_threads`).

mod support;

use support::{cpu_model, env_usize, median, python};

use std::io::Write;
use std::path::Path;
use std::process::Command;

use mprm::data::features::{BundleMeta, BundleParts, FeatureBundle, FeatureData};
use mprm::data::labels::LabelScheme;
use mprm::device::Device;
use mprm::head::{Activation, HeadKind, HeadParams};
use mprm::prm_model::ModelSpec;
use mprm::train::{self, TrainConfig};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

const DIM: usize = 256;
const HIDDEN: usize = 256;

fn synthetic_bundle(n: usize, seed: u64) -> FeatureBundle {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let teacher = HeadParams::init(HeadKind::Linear, DIM, seed ^ 1);
    let mut offsets = vec![0usize];
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..n {
        let len = rng.random_range(2..=10);
        for _ in 0..len {
            let phi: Vec<f64> = (0..DIM).map(|_| StandardNormal.sample(&mut rng)).collect();
            let q = 1.0 / (1.0 + (-4.0 * teacher.logit(&phi)).exp());
            labels.push(if rng.random::<f64>() < q { 1.0f32 } else { 0.0 });
            features.extend(phi.iter().map(|&v| v as f32));
        }
        offsets.push(labels.len());
    }
    FeatureBundle::from_parts(BundleParts {
        features: FeatureData::F32(features),
        dim: DIM,
        mc_scores: labels.clone(),
        offsets,
        source: vec![0; n],
        line: None,
        labels: Some(labels),
        teacher: None,
        meta: BundleMeta {
            sources: vec!["synthetic".into()],
            seed: Some(seed),
            ..Default::default()
        },
    })
    .expect("valid synthetic bundle")
}

fn config(head: ModelSpec) -> TrainConfig {
    let mut c = TrainConfig::new(head);
    c.labels = LabelScheme::Explicit;
    c.optim.lr = 1e-3;
    c
}

fn write_for_torch(dir: &Path, bundle: &FeatureBundle, cfg: &TrainConfig) {
    let put = |name: &str, bytes: &[u8]| {
        let mut f = std::fs::File::create(dir.join(name)).expect("bench temp file");
        f.write_all(bytes).expect("bench temp write");
    };
    put("features.f32", bundle.features().as_bytes());
    let offsets: Vec<i64> = bundle.offsets().iter().map(|&o| o as i64).collect();
    put("offsets.i64", bytemuck::cast_slice(&offsets));
    put(
        "targets.f32",
        bytemuck::cast_slice(bundle.labels().expect("labels")),
    );
    let (hidden, activation) = match cfg.head {
        ModelSpec::Head(HeadKind::Mlp { hidden, activation }) => (hidden, activation.name()),
        _ => (0, "none"),
    };
    let meta = serde_json::json!({
        "dim": DIM, "hidden": hidden, "activation": activation, "global_batch": cfg.global_batch,
        "micro_batch": cfg.micro_batch, "lr": cfg.optim.lr,
        "warmup_fraction": cfg.optim.warmup_fraction,
    });
    put("meta.json", meta.to_string().as_bytes());
}

fn torch_run(dir: &Path, threads: usize) -> Option<(f64, serde_json::Value)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/torch_train.py");
    let out = Command::new(python())
        .arg(script)
        .arg("--data")
        .arg(dir)
        .arg("--threads")
        .arg(threads.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "torch baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    Some((v["rollouts_per_second"].as_f64()?, v))
}

fn main() {
    mprm::alloc::keep_freed_memory();
    let cpus = std::thread::available_parallelism().map_or(1, |p| p.get());
    let threads = env_usize("MPRM_BENCH_THREADS", cpus).max(1);
    // SAFETY: nothing else runs yet; both pools read these once, on first use.
    unsafe {
        std::env::set_var("MATMUL_NUM_THREADS", threads.to_string());
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    let n = env_usize("MPRM_BENCH_ROLLOUTS", 20_480);
    let repeats = env_usize("MPRM_BENCH_REPEATS", 3).max(1);
    let activation: Activation = std::env::var("MPRM_BENCH_ACTIVATION")
        .unwrap_or_else(|_| "gelu".into())
        .parse()
        .expect("MPRM_BENCH_ACTIVATION is gelu or relu");
    let head = match std::env::var("MPRM_BENCH_HEAD").as_deref() {
        Ok("linear") => ModelSpec::LINEAR,
        Ok("mlp") | Err(_) => ModelSpec::Head(HeadKind::Mlp {
            hidden: HIDDEN,
            activation,
        }),
        Ok(other) => panic!("MPRM_BENCH_HEAD is mlp or linear, not {other}"),
    };
    let bundle = synthetic_bundle(n, 7);
    let cfg = config(head);
    let dir = tempfile::tempdir().expect("temp dir");
    write_for_torch(dir.path(), &bundle, &cfg);
    println!(
        "train throughput: {} d={DIM}, {n} rollouts ({} steps), global batch {}, \
         micro-batch {}, {} optimiser steps; {} ({cpus} logical CPUs), {threads} thread(s) each",
        cfg.head,
        bundle.n_steps(),
        cfg.global_batch,
        cfg.micro_batch,
        n.div_ceil(cfg.global_batch),
        cpu_model(),
    );
    let mut burn = Vec::new();
    let mut torch = Vec::new();
    let mut torch_info = None;
    for r in 0..repeats {
        let out = train::run(&cfg, &bundle, None, None, Device::Cpu, None).expect("burn run");
        println!(
            "  run {r}: burn  {:>9.0} rollouts/s",
            out.rollouts_per_second
        );
        burn.push(out.rollouts_per_second);
        if let Some((rate, info)) = torch_run(dir.path(), threads) {
            println!("  run {r}: torch {rate:>9.0} rollouts/s");
            torch.push(rate);
            torch_info = Some(info);
        }
    }
    let b = median(burn);
    println!("burn  (mprm, Autodiff<NdArray>): median {b:.0} rollouts/s");
    match torch_info {
        Some(info) => {
            let t = median(torch);
            println!(
                "torch ({}, {} threads): median {t:.0} rollouts/s",
                info["framework"].as_str().unwrap_or("?"),
                info["threads"]
            );
            println!("ratio burn / torch = {:.2}x", b / t);
        }
        None => println!("torch baseline unavailable (set MPRM_PYTHON to a python with torch)"),
    }
}
