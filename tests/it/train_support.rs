//! Fixtures for the trainer and evaluation tests: a linear-logistic teacher, a features bundle
//! drawn from it, and a small synthetic bench (records + features) in the layout the simulator
//! writes.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use mprm::data::features::{BundleMeta, BundleParts, FeatureBundle, FeatureData, TeacherInfo};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// q*(ϕ) = σ(⟨w*, ϕ⟩ + b*).
pub struct Teacher {
    pub w: Vec<f32>,
    pub b: f32,
}

impl Teacher {
    /// Gaussian direction scaled to norm `scale` (a larger norm makes labels more decisive).
    pub fn new(dim: usize, scale: f32, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w: Vec<f32> = (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect();
        let norm = w.iter().map(|x| x * x).sum::<f32>().sqrt();
        Teacher {
            w: w.iter().map(|x| x * scale / norm).collect(),
            b: 0.5,
        }
    }

    pub fn q(&self, phi: &[f32]) -> f32 {
        let z: f32 = self.w.iter().zip(phi).map(|(a, b)| a * b).sum::<f32>() + self.b;
        1.0 / (1.0 + (-z).exp())
    }
}

/// Steps of `lengths.len()` rollouts drawn from the teacher: features, q*, true correctness.
pub struct Draw {
    pub features: Vec<f32>,
    pub offsets: Vec<usize>,
    pub q: Vec<f32>,
    pub correct: Vec<u8>,
}

pub fn draw(teacher: &Teacher, lengths: &[usize], rng: &mut ChaCha8Rng) -> Draw {
    let dim = teacher.w.len();
    let mut d = Draw {
        features: Vec::new(),
        offsets: vec![0],
        q: Vec::new(),
        correct: Vec::new(),
    };
    for &len in lengths {
        for _ in 0..len {
            let phi: Vec<f32> = (0..dim).map(|_| StandardNormal.sample(&mut *rng)).collect();
            let q = teacher.q(&phi);
            d.correct.push(u8::from(rng.random::<f32>() < q));
            d.q.push(q);
            d.features.extend(phi);
        }
        d.offsets.push(d.q.len());
    }
    d
}

/// A training bundle: rollouts of 2–7 steps, two sources, MC scores k/16 for correct steps
/// (k ≥ 1) and 0 otherwise, teacher tensors, and a `line` tensor.
pub fn train_bundle(n: usize, dim: usize, teacher: &Teacher, seed: u64) -> FeatureBundle {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lengths: Vec<usize> = (0..n).map(|_| rng.random_range(2..8)).collect();
    let d = draw(teacher, &lengths, &mut rng);
    let mc_scores = d
        .correct
        .iter()
        .map(|&z| {
            if z == 1 {
                rng.random_range(1..=16) as f32 / 16.0
            } else {
                0.0
            }
        })
        .collect();
    FeatureBundle::from_parts(BundleParts {
        features: FeatureData::F32(d.features),
        dim,
        offsets: d.offsets,
        mc_scores,
        source: (0..n).map(|i| (i % 2) as u32).collect(),
        line: Some((0..n).map(|i| (i / 2) as u64).collect()),
        labels: None,
        teacher: Some(TeacherInfo {
            q: d.q,
            true_correct: d.correct,
            w_star: teacher.w.clone(),
            b_star: teacher.b,
        }),
        meta: BundleMeta {
            sources: vec!["src-a".into(), "src-b".into()],
            seed: Some(seed),
            ..Default::default()
        },
    })
    .unwrap()
}

pub const BENCH_SOURCES: [&str; 3] = ["DynaMath", "WeMath", "MathVision_MINI"];

/// Writes `bench.jsonl` and `bench.safetensors` into `dir`: `questions` questions of
/// `candidates` candidates each, sources cycled, even questions in dev; labels are the true
/// step correctness (1 / −1, every 17th step neutral); `final_correct` = every step correct.
pub fn write_bench(
    dir: &Path,
    questions: usize,
    candidates: usize,
    teacher: &Teacher,
    seed: u64,
) -> (PathBuf, PathBuf) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = questions * candidates;
    let lengths: Vec<usize> = (0..n).map(|_| rng.random_range(2..7)).collect();
    let d = draw(teacher, &lengths, &mut rng);
    let jsonl = dir.join("bench.jsonl");
    let mut f = std::fs::File::create(&jsonl).unwrap();
    let mut step = 0;
    for q in 0..questions {
        let source = BENCH_SOURCES[q % BENCH_SOURCES.len()];
        for c in 0..candidates {
            let i = q * candidates + c;
            let range = d.offsets[i]..d.offsets[i + 1];
            let labels: Vec<i32> = range
                .clone()
                .map(|s| {
                    step += 1;
                    if step % 17 == 0 {
                        0
                    } else if d.correct[s] == 1 {
                        1
                    } else {
                        -1
                    }
                })
                .collect();
            let steps: Vec<String> = (0..labels.len()).map(|k| format!("step {k}")).collect();
            let final_correct = range.clone().all(|s| d.correct[s] == 1);
            let rec = serde_json::json!({
                "image": [format!("images/{source}/{q}.png")],
                "question": format!("question {q}"),
                "answer": "42",
                "response": {"steps": steps, "process_correctness": labels},
                "policy_model": "synthetic",
                "data_source": source,
                "split": if q % 2 == 0 { "dev" } else { "test" },
                "question_id": format!("{source}-{q}"),
                "final_correct": final_correct,
            });
            writeln!(f, "{rec}").unwrap();
        }
    }
    let sources: Vec<u32> = (0..n)
        .map(|i| ((i / candidates) % BENCH_SOURCES.len()) as u32)
        .collect();
    let mc_scores = d.correct.iter().map(|&z| z as f32).collect();
    let bundle = FeatureBundle::from_parts(BundleParts {
        features: FeatureData::F32(d.features),
        dim: teacher.w.len(),
        offsets: d.offsets,
        mc_scores,
        source: sources,
        line: None,
        labels: None,
        teacher: Some(TeacherInfo {
            q: d.q,
            true_correct: d.correct,
            w_star: teacher.w.clone(),
            b_star: teacher.b,
        }),
        meta: BundleMeta {
            sources: BENCH_SOURCES.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    })
    .unwrap();
    let features = dir.join("bench.safetensors");
    bundle.save(&features).unwrap();
    (jsonl, features)
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Every file under a run folder (recursively), by relative path, with its bytes — except the
/// lock file, which holds the pid of the last writer. `timing.json` holds wall-clock figures and
/// the rollouts trained *in the last call* (fewer after a resume), so it is kept with those
/// fields removed.
pub fn run_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                walk(root, &path, out);
            } else if rel == mprm::lock::LOCK_FILE {
                continue;
            } else if rel == "timing.json" {
                let mut v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let obj = v.as_object_mut().unwrap();
                for wall_clock in ["wall_seconds", "rollouts", "rollouts_per_second"] {
                    assert!(
                        obj.remove(wall_clock).is_some(),
                        "timing.json: {wall_clock}"
                    );
                }
                out.insert(rel, serde_json::to_vec(&v).unwrap());
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Asserts two run folders hold the same files with the same bytes (see [`run_files`]).
pub fn assert_same_run(a: &Path, b: &Path) {
    let (fa, fb) = (run_files(a), run_files(b));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "{} vs {}",
        a.display(),
        b.display()
    );
    for (name, bytes) in &fa {
        assert!(
            bytes == &fb[name],
            "{name} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// An `mprm-ids/2` file naming every `every`-th rollout of `bundle` (by source and line), with
/// `bundle`'s corpus fingerprint and each rollout's step count.
pub fn write_ids_v2(path: &Path, bundle: &FeatureBundle, every: usize) {
    let mut text = format!(
        "# mprm-ids/2 corpus={} method=test\nsource\tline\trollout\tsteps\tscore\n",
        bundle.fingerprint()
    );
    let lines = bundle.line().unwrap();
    for i in (0..bundle.n_rollouts()).step_by(every) {
        text.push_str(&format!(
            "{}\t{}\t{i}\t{}\t0.5\n",
            bundle.source_name(i),
            lines[i],
            bundle.rollout_len(i)
        ));
    }
    std::fs::write(path, text).unwrap();
}
