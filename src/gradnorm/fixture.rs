//! Bundles and heads for checking and timing the gradient engines.
//!
//! * The hand-computed fixtures of the reference notes (`gradient-methods.md` §2.7 and §3.3):
//!   three rollouts, d = 2, a linear and a ReLU MLP head with known per-rollout norms.
//! * Seeded random bundles with realistic step counts (1–12 steps, mean 5.62 as in
//!   VisualPRM400K) and a linear-logistic teacher, in memory for tests and `mprm verify --random`,
//!   or streamed to disk for benchmarks of any size.
//!
//! Random values are drawn per rollout from ChaCha8 seeded with the bundle seed on stream
//! `rollout index + 1` (stream 0 draws the step counts and the teacher), so a bundle is the same
//! bytes whatever the thread count, and its first rollouts do not depend on how many follow.

use std::path::Path;

use half::bf16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution, Normal, StandardNormal};
use rayon::prelude::*;

use crate::data::features::{
    BundleLayout, BundleMeta, BundleParts, BundleWriter, FeatureBundle, FeatureData, FeatureDtype,
    FeatureRows, TeacherInfo,
};
use crate::error::{Error, Result};
use crate::head::{Activation, HeadParams, LinearHead, MlpHead};
use crate::progress;

/// Shape and seed of a random bundle.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandomBundleSpec {
    /// Number of rollouts.
    pub rollouts: usize,
    /// Feature dimension d.
    pub dim: usize,
    /// Element type of the features.
    pub dtype: FeatureDtype,
    /// Longest rollout (steps); the shortest has one step.
    pub max_steps: usize,
    /// Mean steps per rollout, in [1, max_steps].
    pub mean_steps: f64,
    /// Number of source files the rollouts are spread over (round robin).
    pub sources: usize,
    /// Seed of every random draw.
    pub seed: u64,
}

impl RandomBundleSpec {
    /// VisualPRM400K-like step counts (1–12, mean 5.62) for `rollouts` × d = `dim`.
    pub fn realistic(rollouts: usize, dim: usize, dtype: FeatureDtype, seed: u64) -> Self {
        RandomBundleSpec {
            rollouts,
            dim,
            dtype,
            max_steps: 12,
            mean_steps: 5.62,
            sources: 4,
            seed,
        }
    }

    fn check(&self) -> Result<()> {
        if self.rollouts == 0 || self.dim == 0 || self.max_steps == 0 || self.sources == 0 {
            return Err(Error::invalid(
                "a random bundle needs at least one rollout, step, dimension and source",
            ));
        }
        if !(1.0..=self.max_steps as f64).contains(&self.mean_steps) {
            return Err(Error::invalid(format!(
                "mean steps {} is outside [1, {}]",
                self.mean_steps, self.max_steps
            )));
        }
        Ok(())
    }
}

/// Step counts: 1 + Binomial(max − 1, p) with p chosen for the requested mean.
fn step_counts(spec: &RandomBundleSpec, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let extra = spec.max_steps - 1;
    if extra == 0 {
        return vec![1; spec.rollouts];
    }
    let p = (spec.mean_steps - 1.0) / extra as f64;
    let dist = Binomial::new(extra as u64, p).expect("p in [0, 1]");
    (0..spec.rollouts)
        .map(|_| 1 + dist.sample(rng) as usize)
        .collect()
}

/// Everything random about a bundle except the feature rows.
struct Skeleton {
    offsets: Vec<usize>,
    w_star: Vec<f32>,
    b_star: f32,
}

fn skeleton(spec: &RandomBundleSpec) -> Skeleton {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let counts = step_counts(spec, &mut rng);
    let mut offsets = Vec::with_capacity(counts.len() + 1);
    offsets.push(0);
    for n in counts {
        offsets.push(offsets.last().expect("non-empty") + n);
    }
    // ‖w*‖² ≈ 4 and features of variance ≈ 1.25 give teacher logits of spread ≈ 2.
    let scale = 2.0 / (spec.dim as f64).sqrt();
    let normal = Normal::new(0.0, scale).expect("finite scale");
    let w_star = (0..spec.dim)
        .map(|_| normal.sample(&mut rng) as f32)
        .collect();
    Skeleton {
        offsets,
        w_star,
        b_star: 0.25,
    }
}

/// Rows, teacher q*, true correctness and MC scores of one rollout.
struct RolloutDraw {
    rows: Vec<f32>,
    q: Vec<f32>,
    correct: Vec<u8>,
    mc: Vec<f32>,
}

fn draw_rollout(spec: &RandomBundleSpec, sk: &Skeleton, i: usize) -> RolloutDraw {
    let d = spec.dim;
    let n = sk.offsets[i + 1] - sk.offsets[i];
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(i as u64 + 1);
    // Shared-mean model of gradient-methods §2.4: a rollout mean plus per-step noise.
    let mean: Vec<f32> = (0..d)
        .map(|_| {
            let v: f32 = StandardNormal.sample(&mut rng);
            0.5 * v
        })
        .collect();
    let mut rows = Vec::with_capacity(n * d);
    let (mut q, mut correct, mut mc) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for _ in 0..n {
        let start = rows.len();
        for m in &mean {
            let noise: f32 = StandardNormal.sample(&mut rng);
            let v = m + noise;
            // Store exactly what the bundle will hold, so the teacher sees the stored value.
            rows.push(match spec.dtype {
                FeatureDtype::F32 => v,
                FeatureDtype::Bf16 => bf16::from_f32(v).to_f32(),
            });
        }
        let z: f64 = rows[start..]
            .iter()
            .zip(&sk.w_star)
            .map(|(&x, &w)| x as f64 * w as f64)
            .sum::<f64>()
            + sk.b_star as f64;
        let qj = 1.0 / (1.0 + (-z).exp());
        q.push(qj as f32);
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        correct.push(u8::from(u < qj));
        let hits = Binomial::new(16, qj).expect("q in [0, 1]").sample(&mut rng);
        mc.push(hits as f32 / 16.0);
    }
    RolloutDraw {
        rows,
        q,
        correct,
        mc,
    }
}

fn meta_for(spec: &RandomBundleSpec) -> BundleMeta {
    BundleMeta {
        sources: (0..spec.sources)
            .map(|s| format!("random_{s}.jsonl"))
            .collect(),
        seed: Some(spec.seed),
        generator: serde_json::json!({"mprm": "gradnorm::fixture::random", "spec": spec}),
        extra: Default::default(),
    }
}

fn to_features(dtype: FeatureDtype, rows: Vec<f32>) -> FeatureData {
    match dtype {
        FeatureDtype::F32 => FeatureData::F32(rows),
        FeatureDtype::Bf16 => FeatureData::Bf16(rows.into_iter().map(bf16::from_f32).collect()),
    }
}

/// A random bundle in memory.
pub fn random_bundle(spec: &RandomBundleSpec) -> Result<FeatureBundle> {
    spec.check()?;
    let sk = skeleton(spec);
    let draws: Vec<RolloutDraw> = (0..spec.rollouts)
        .into_par_iter()
        .map(|i| draw_rollout(spec, &sk, i))
        .collect();
    let mut rows = Vec::new();
    let (mut q, mut correct, mut mc) = (Vec::new(), Vec::new(), Vec::new());
    for d in draws {
        rows.extend(d.rows);
        q.extend(d.q);
        correct.extend(d.correct);
        mc.extend(d.mc);
    }
    FeatureBundle::from_parts(BundleParts {
        features: to_features(spec.dtype, rows),
        dim: spec.dim,
        source: (0..spec.rollouts)
            .map(|i| (i % spec.sources) as u32)
            .collect(),
        line: Some(
            (0..spec.rollouts)
                .map(|i| (i / spec.sources) as u64)
                .collect(),
        ),
        offsets: sk.offsets,
        mc_scores: mc,
        labels: None,
        teacher: Some(TeacherInfo {
            q,
            true_correct: correct,
            w_star: sk.w_star,
            b_star: sk.b_star,
        }),
        meta: meta_for(spec),
    })
}

/// Streams a random bundle of any size to `path` (atomically), a block of rollouts at a time.
pub fn write_random_bundle(spec: &RandomBundleSpec, path: impl AsRef<Path>) -> Result<()> {
    spec.check()?;
    let sk = skeleton(spec);
    let n_steps = *sk.offsets.last().expect("non-empty");
    let layout = BundleLayout {
        n_rollouts: spec.rollouts,
        n_steps,
        dim: spec.dim,
        dtype: spec.dtype,
        has_line: true,
        has_labels: false,
        has_teacher: true,
    };
    let mut writer = BundleWriter::create(path, &layout, &meta_for(spec))?;
    let (mut q, mut correct, mut mc) = (
        Vec::with_capacity(n_steps),
        Vec::with_capacity(n_steps),
        Vec::with_capacity(n_steps),
    );
    let bar = progress::bar(spec.rollouts as u64, "generating");
    const BLOCK: usize = 16_384;
    for start in (0..spec.rollouts).step_by(BLOCK) {
        let end = (start + BLOCK).min(spec.rollouts);
        let draws: Vec<RolloutDraw> = (start..end)
            .into_par_iter()
            .map(|i| draw_rollout(spec, &sk, i))
            .collect();
        let mut rows = Vec::with_capacity((sk.offsets[end] - sk.offsets[start]) * spec.dim);
        for d in draws {
            rows.extend(d.rows);
            q.extend(d.q);
            correct.extend(d.correct);
            mc.extend(d.mc);
        }
        let data = to_features(spec.dtype, rows);
        let view = match &data {
            FeatureData::F32(v) => FeatureRows::F32(v),
            FeatureData::Bf16(v) => FeatureRows::Bf16(v),
        };
        writer.write_features(sk.offsets[start], view)?;
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    writer.write_offsets(&sk.offsets)?;
    writer.write_mc_scores(&mc)?;
    writer.write_source(
        &(0..spec.rollouts)
            .map(|i| (i % spec.sources) as u32)
            .collect::<Vec<_>>(),
    )?;
    writer.write_line(
        &(0..spec.rollouts)
            .map(|i| (i / spec.sources) as u64)
            .collect::<Vec<_>>(),
    )?;
    writer.write_teacher(&TeacherInfo {
        q,
        true_correct: correct,
        w_star: sk.w_star,
        b_star: sk.b_star,
    })?;
    writer.finish()
}

/// The §2.7 fixture: six steps of d = 2 in rollouts of 3, 1 and 2 steps; MC scores equal the
/// hard labels (1, 1, 0, 0, 1, 1), so `mc` targets reproduce the table.
pub fn reference_bundle() -> FeatureBundle {
    let rows = vec![1.0, 0.0, 0.0, 2.0, 1.0, 1.0, 2.0, -1.0, 0.5, 0.5, -1.0, 1.0];
    FeatureBundle::from_parts(BundleParts {
        features: FeatureData::F32(rows),
        dim: 2,
        offsets: vec![0, 3, 4, 6],
        mc_scores: vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0],
        source: vec![0, 0, 0],
        line: None,
        labels: None,
        teacher: None,
        meta: BundleMeta {
            sources: vec!["reference-fixture".into()],
            ..Default::default()
        },
    })
    .expect("the fixture is a valid bundle")
}

/// The §2.7 linear head: w = (0.5, −0.25), b = 0.1.
pub fn reference_linear_head() -> HeadParams {
    HeadParams::Linear(LinearHead {
        w: vec![0.5, -0.25],
        b: 0.1,
    })
}

/// The §3.3 ReLU MLP head: W₁ = [[1, −1], [0.5, 0.5]], b₁ = (0.1, −0.25), w₂ = (1, −2),
/// b₂ = 0.05.
pub fn reference_mlp_head() -> HeadParams {
    HeadParams::Mlp(MlpHead {
        w1: vec![1.0, -1.0, 0.5, 0.5],
        b1: vec![0.1, -0.25],
        w2: vec![1.0, -2.0],
        b2: 0.05,
        activation: Activation::Relu,
        dim: 2,
    })
}
