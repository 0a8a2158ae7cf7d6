//! Throughput of the learned-policy world on the CPU against the same model, training step and
//! sampling loop in PyTorch (`benches/torch_policy.py`), run side by side, interleaved, in one
//! invocation:
//!
//! ```sh
//! cargo bench --bench world            # MPRM_PYTHON=/path/to/python to pick the interpreter
//! ```
//!
//! * **Training**: the world's default policy (width 128, 2 layers, 4 heads) trained for
//!   `MPRM_BENCH_STEPS` (default 30) steps of 64 traces by mprm's CPU trainer
//!   (`mprm::world::train_engine`, what `mprm world` uses on the CPU), by Burn
//!   (`mprm::world::learn::train_policy`, what it uses on CUDA) and by PyTorch, on the same rows
//!   from the same initial weights; tokens = predicted (non-padding) targets. Burn and PyTorch pad
//!   each batch to its longest trace; the engine packs the traces (the bench prints how much of a
//!   padded batch is padding).
//! * **Sampling**: Monte Carlo continuations, as the world annotates: 64 on-track step prefixes of
//!   generated problems, 16 continuations each, at temperature 1 until `<eos>`, with mprm's CPU
//!   engine (`mprm::world::engine`), Burn's batched sampler, and PyTorch (batches of 256 rows,
//!   key/value cache); tokens = sampled tokens. The policy is `MPRM_BENCH_POLICY` (e.g. a world's
//!   `policy.safetensors`) or else the one the training measurement produced.
//!
//! `MPRM_BENCH_REPEATS` (default 3) repeats; medians are reported. `MPRM_BENCH_THREADS`
//! (default: all logical CPUs) gives every framework the same number of threads.

mod support;

use support::{cpu_model, env_usize, median, python};

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use burn::backend::{Autodiff, NdArray};
use mprm::world::annotate::{Continuer, PolicyContinuer, prompt};
use mprm::world::build::DEFAULT_DIFFICULTY;
use mprm::world::engine::CpuPolicy;
use mprm::world::learn::{PolicyTraining, train_policy, training_batch};
use mprm::world::policy::{Policy, PolicySpec};
use mprm::world::problems::{self, Source};
use mprm::world::sample::SampleSpec;
use mprm::world::tokens::{EOS, PAD, encode};
use mprm::world::train_engine::train_policy_on_cpu;

type Cpu = NdArray<f32>;

fn write_rows(dir: &Path, stem: &str, rows: &[Vec<u32>]) {
    let mut tokens = Vec::new();
    let mut offsets = vec![0i64];
    for r in rows {
        tokens.extend(r.iter().flat_map(|&t| t.to_le_bytes()));
        offsets.push(offsets.last().unwrap() + r.len() as i64);
    }
    std::fs::write(dir.join(format!("{stem}.u32")), tokens).unwrap();
    let off: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
    std::fs::write(dir.join(format!("{stem}.offsets.i64")), off).unwrap();
}

fn torch_run(dir: &Path, threads: usize, part: &str) -> Option<(f64, serde_json::Value)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/torch_policy.py");
    let out = Command::new(python())
        .arg(script)
        .args(["--data", dir.to_str().unwrap(), "--part", part])
        .args(["--threads", &threads.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "torch baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).ok()?;
    Some((v["tokens_per_second"].as_f64()?, v))
}

/// 64 on-track prefixes (the prompt and the first j steps of the reference solution), 16 copies
/// each, as the Monte Carlo annotation lays them out.
fn mc_prompts() -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for i in 0..64u64 {
        let source = Source::ALL[i as usize % Source::ALL.len()];
        let p = problems::generate(source, 11, i / 4, DEFAULT_DIFFICULTY).unwrap();
        let solution = p.solution();
        let j = (i as usize / 4) % solution.len();
        let mut tokens = prompt(&p).unwrap();
        for step in &solution[..=j] {
            tokens.extend(encode(&format!("{step};")).unwrap());
        }
        for _ in 0..16 {
            out.push(tokens.clone());
        }
    }
    out
}

fn main() {
    mprm::alloc::keep_freed_memory();
    let cpus = std::thread::available_parallelism().map_or(1, |p| p.get());
    let threads = env_usize("MPRM_BENCH_THREADS", cpus).max(1);
    // SAFETY: nothing else runs yet; the pools read these once, on first use.
    unsafe {
        std::env::set_var("MATMUL_NUM_THREADS", threads.to_string());
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
        std::env::set_var("MPRM_NO_PROGRESS", "1");
    }
    let repeats = env_usize("MPRM_BENCH_REPEATS", 3).max(1);
    let spec = PolicySpec::default();
    let training = PolicyTraining {
        steps: env_usize("MPRM_BENCH_STEPS", 30),
        difficulty: DEFAULT_DIFFICULTY,
        seed: 3,
        ..PolicyTraining::default()
    };
    let dev = Default::default();
    let dir = tempfile::tempdir().expect("temp dir");
    let rows: Vec<Vec<u32>> = (0..training.steps)
        .flat_map(|s| training_batch(&training, s).unwrap())
        .collect();
    let train_tokens: usize = rows.iter().map(|r| r.len() - 1).sum();
    write_rows(dir.path(), "train", &rows);
    let mut spec_meta = BTreeMap::new();
    spec_meta.insert("bench".to_string(), "init".to_string());
    Policy::<Cpu>::init(spec, training.seed, &dev)
        .unwrap()
        .save(&dir.path().join("init.safetensors"), &spec_meta)
        .unwrap();
    let prompts = mc_prompts();
    write_rows(dir.path(), "prompts", &prompts);
    let meta = serde_json::json!({
        "pad": PAD, "eos": EOS, "batch": training.batch, "lr": training.lr,
        "warmup_steps": ((training.steps as f64) * training.warmup_fraction).ceil() as usize,
    });
    std::fs::File::create(dir.path().join("meta.json"))
        .unwrap()
        .write_all(meta.to_string().as_bytes())
        .unwrap();
    println!(
        "world policy throughput: width {}, {} layers, {} heads; {} ({cpus} logical CPUs), \
         {threads} thread(s) each",
        spec.width,
        spec.layers,
        spec.heads,
        cpu_model()
    );
    println!(
        "training: {} steps of {} traces, {train_tokens} predicted tokens",
        training.steps, training.batch
    );

    let padded: usize = rows
        .chunks(training.batch)
        .map(|b| b.len() * (b.iter().map(Vec::len).max().unwrap_or(1) - 1))
        .sum();
    println!(
        "  a padded batch (Burn, PyTorch) computes {padded} positions, {:.0}% of them padding; \
         the engine packs the traces and computes only the {train_tokens} predicted ones",
        100.0 * (padded - train_tokens) as f64 / padded as f64
    );

    let mut trained = None;
    let (mut engine_train, mut burn_train, mut torch_train) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..repeats {
        let start = Instant::now();
        let t = train_policy_on_cpu(spec, &training).expect("engine training");
        let rate = train_tokens as f64 / start.elapsed().as_secs_f64();
        println!("  run {r}: engine {rate:>9.0} tokens/s");
        engine_train.push(rate);
        trained = Some(Policy::<Cpu>::from_values(spec, t.params, &dev).unwrap());
        let start = Instant::now();
        train_policy::<Autodiff<Cpu>>(spec, &training, &dev).expect("burn training");
        let rate = train_tokens as f64 / start.elapsed().as_secs_f64();
        println!("  run {r}: burn   {rate:>9.0} tokens/s");
        burn_train.push(rate);
        if let Some((rate, _)) = torch_run(dir.path(), threads, "train") {
            println!("  run {r}: torch  {rate:>9.0} tokens/s");
            torch_train.push(rate);
        }
    }
    let policy = match std::env::var("MPRM_BENCH_POLICY") {
        Ok(p) => Policy::<Cpu>::load(Path::new(&p), &dev).expect("MPRM_BENCH_POLICY loads"),
        Err(_) => trained.expect("at least one repeat"),
    };
    policy
        .save(&dir.path().join("policy.safetensors"), &BTreeMap::new())
        .unwrap();
    let engine = CpuPolicy::from_policy(&policy);
    let sampling = SampleSpec {
        temperature: 1.0,
        max_new: spec.max_len,
    };
    let keys: Vec<u64> = (0..prompts.len() as u64).collect();
    println!(
        "sampling: {} rows ({} prefixes x 16), temperature 1, policy {}",
        prompts.len(),
        prompts.len() / 16,
        std::env::var("MPRM_BENCH_POLICY").unwrap_or_else(|_| "from the training runs".into())
    );
    let (mut ours, mut burn, mut torch) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..repeats {
        let start = Instant::now();
        let out = engine.sample(&prompts, &keys, sampling).unwrap();
        let n: usize = out.iter().map(Vec::len).sum();
        let rate = n as f64 / start.elapsed().as_secs_f64();
        println!("  run {r}: engine {rate:>9.0} tokens/s ({n} tokens)");
        ours.push(rate);
        let continuer = PolicyContinuer {
            policy: &policy,
            spec: sampling,
            rows: 256,
            device: dev,
        };
        let start = Instant::now();
        let out = continuer.continue_rows(&prompts, &keys).unwrap();
        let n: usize = out.iter().map(Vec::len).sum();
        let rate = n as f64 / start.elapsed().as_secs_f64();
        println!("  run {r}: burn   {rate:>9.0} tokens/s ({n} tokens)");
        burn.push(rate);
        if let Some((rate, _)) = torch_run(dir.path(), threads, "sample") {
            println!("  run {r}: torch  {rate:>9.0} tokens/s");
            torch.push(rate);
        }
    }
    let (et, bt, e, bs) = (
        median(engine_train),
        median(burn_train),
        median(ours),
        median(burn),
    );
    println!(
        "training: engine median {et:.0} tokens/s, burn {bt:.0} tokens/s ({:.2}x)",
        et / bt
    );
    println!(
        "sampling: engine median {e:.0} tokens/s, burn sampler {bs:.0} tokens/s ({:.2}x)",
        e / bs
    );
    if torch_train.is_empty() || torch.is_empty() {
        println!("torch baseline unavailable (set MPRM_PYTHON to a python with torch)");
        return;
    }
    let (tt, ts) = (median(torch_train), median(torch));
    println!(
        "training: torch median {tt:.0} tokens/s; ratio engine / torch = {:.2}x, burn / torch = {:.2}x",
        et / tt,
        bt / tt
    );
    println!(
        "sampling: torch median {ts:.0} tokens/s; ratio engine / torch = {:.2}x, burn / torch = {:.2}x",
        e / ts,
        bs / ts
    );
}
