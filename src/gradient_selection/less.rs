//! LESS (Xia et al., 2024), for a PRM head.
//!
//! 1. **Warm-up**: the head trained on a seeded random `proxy.fraction` (5%) of every source for
//!    `less.epochs` passes, a checkpoint at the end of each pass, each weighted by the mean
//!    scheduled learning rate of its pass (η_c).
//! 2. **Training gradient features**: at checkpoint c, each rollout's gradient g_x (the trainer's
//!    per-rollout reduction, MC hard labels) is preconditioned as Adam would step on it from the
//!    checkpoint's optimiser state: m' = β₁m + (1 − β₁)g, v' = β₂v + (1 − β₂)g²,
//!    Γ = m' / √(v' + ε), with ε inside the root and no bias correction, as in the authors' code.
//! 3. **Projection**: Γ and the dev gradients go through one seeded random projection to
//!    `less.dims` dimensions.
//! 4. **Dev gradients**: one per bench source, the plain (unpreconditioned) gradient of the mean
//!    BCE over that source's labelled dev steps, at each checkpoint.
//! 5. **Score**: max over sources of Σ_c η_c cos(Γ̃_c(x), ∇̃L_dev,s(w_c)).
//!
//! Deviations, stated: the projection is a CountSketch (every parameter hashed to one output with
//! a random sign, O(P) per rollout) rather than TRAK's dense Rademacher matrix, because on two CPU
//! cores a dense k × P product per rollout costs minutes for the MLP head; both are random
//! projections that preserve inner products in expectation. The dev side is one mean gradient per
//! source, where the paper averages the cosines to each dev example of a task. The selector keeps
//! per-source quotas, as every other selector here.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::bench::BenchSet;
use crate::data::features::FeatureBundle;
use crate::error::{Error, Result};
use crate::gradnorm::{GradInput, cpu::map_rollout_gradients};
use crate::train::plan::derive_seed;

use super::GradientSettings;
use super::dev::{SourceDev, dev_gradient, labelled_dev_by_source};
use super::runs::{AdamCheckpoint, random_fraction, run_config, train_with_checkpoints};

/// LESS's settings besides the warm-up fraction (`proxy.fraction`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LessSpec {
    /// Warm-up passes over the warm-up subset, one checkpoint after each.
    pub epochs: usize,
    /// Dimensions of the random projection.
    pub dims: usize,
}

impl Default for LessSpec {
    fn default() -> Self {
        LessSpec {
            epochs: 4,
            dims: 256,
        }
    }
}

/// Adam's β₁, β₂ and ε as LESS applies them to one gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamShape {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε (inside the square root).
    pub eps: f64,
}

/// Γ(g) = m' / √(v' + ε) with m' = β₁m + (1 − β₁)g and v' = β₂v + (1 − β₂)g², elementwise.
pub fn adam_precondition(g: &[f64], m: &[f64], v: &[f64], a: AdamShape, out: &mut Vec<f64>) {
    out.clear();
    out.extend(g.iter().zip(m).zip(v).map(|((&g, &m), &v)| {
        let m1 = a.beta1 * m + (1.0 - a.beta1) * g;
        let v1 = a.beta2 * v + (1.0 - a.beta2) * g * g;
        m1 / (v1 + a.eps).sqrt()
    }));
}

/// A CountSketch from P parameters to k dimensions: parameter p goes to output `bucket[p]` with
/// sign `sign[p]`, both drawn from ChaCha8 seeded with `seed` (so the sketch is a function of the
/// seed, P and k only).
#[derive(Debug, Clone, PartialEq)]
pub struct CountSketch {
    /// Output dimension of each parameter.
    pub bucket: Vec<u32>,
    /// ±1 per parameter.
    pub sign: Vec<f64>,
    /// Output dimensions k.
    pub dims: usize,
}

impl CountSketch {
    /// The sketch for `params` inputs and `dims` outputs.
    pub fn new(params: usize, dims: usize, seed: u64) -> Result<Self> {
        if dims == 0 {
            return Err(Error::invalid(
                "the LESS projection needs at least one dimension",
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut bucket = Vec::with_capacity(params);
        let mut sign = Vec::with_capacity(params);
        for _ in 0..params {
            bucket.push(rng.random_range(0..dims as u32));
            sign.push(if rng.random::<bool>() { 1.0 } else { -1.0 });
        }
        Ok(CountSketch { bucket, sign, dims })
    }

    /// The sketch of `u` (length P) into `out` (length k).
    pub fn project(&self, u: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.resize(self.dims, 0.0);
        for ((&b, &s), &x) in self.bucket.iter().zip(&self.sign).zip(u) {
            out[b as usize] += s * x;
        }
    }
}

/// cos(a, b), 0 when either is zero.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa > 0.0 && bb > 0.0 {
        ab / (aa.sqrt() * bb.sqrt())
    } else {
        0.0
    }
}

/// LESS keys from given checkpoints and per-source dev data: max over sources of
/// Σ_c η_c cos(sketch(Γ_c(g_x)), sketch(∇L_dev,s(w_c))). Separated from the warm-up so that tests
/// can check it against a hand computation.
pub fn less_keys_at(
    bundle: &FeatureBundle,
    targets: &[f32],
    checkpoints: &[AdamCheckpoint],
    dev: &[SourceDev],
    sketch: &CountSketch,
    adam: AdamShape,
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    if checkpoints.is_empty() || dev.is_empty() {
        return Err(Error::invalid(
            "LESS needs at least one checkpoint and one dev source",
        ));
    }
    let n = bundle.n_rollouts();
    let n_src = dev.len();
    let mut sums = vec![0.0; n * n_src];
    for c in checkpoints {
        let head = &c.point.head;
        if c.moments.m.len() != head.n_params() || sketch.bucket.len() != head.n_params() {
            return Err(Error::invalid(format!(
                "LESS: the optimiser state has {} entries, the sketch {}, the head {} parameters",
                c.moments.m.len(),
                sketch.bucket.len(),
                head.n_params()
            )));
        }
        let dev_sketches: Vec<Vec<f64>> = dev
            .iter()
            .map(|sd| {
                let g = dev_gradient(sd.steps(), head, s.device)?;
                let mut out = Vec::new();
                sketch.project(&g, &mut out);
                Ok(out)
            })
            .collect::<Result<_>>()?;
        let input = GradInput::new(bundle, targets, head, None)?;
        let cosines: Vec<Vec<f64>> = map_rollout_gradients(&input, s.reduction, |_, g| {
            let mut pre = Vec::with_capacity(g.len());
            adam_precondition(g, &c.moments.m, &c.moments.v, adam, &mut pre);
            let mut sk = Vec::with_capacity(sketch.dims);
            sketch.project(&pre, &mut sk);
            dev_sketches.iter().map(|d| cosine(&sk, d)).collect()
        });
        for (x, row) in cosines.iter().enumerate() {
            for (t, v) in row.iter().enumerate() {
                sums[x * n_src + t] += c.point.lr * v;
            }
        }
    }
    Ok(sums
        .chunks(n_src)
        .map(|row| row.iter().copied().fold(f64::NEG_INFINITY, f64::max))
        .collect())
}

/// LESS end to end: warm-up, checkpoints with optimiser state, per-source dev gradients, keys.
pub fn less_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    bench: &BenchSet,
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    let p = s.proxy;
    if !(p.fraction > 0.0 && p.fraction <= 1.0) {
        return Err(Error::invalid(format!(
            "LESS's warm-up fraction {} must be in (0, 1]",
            p.fraction
        )));
    }
    if s.less.epochs < 2 {
        return Err(Error::invalid(format!(
            "LESS needs at least 2 warm-up epochs (one checkpoint each); got {}",
            s.less.epochs
        )));
    }
    let dev = labelled_dev_by_source(bench)?;
    let subset = random_fraction(bundle, p.fraction, s.seed)?;
    let cfg = run_config(s, s.seed, s.less.epochs);
    let per_epoch = subset.len().div_ceil(cfg.global_batch);
    let checkpoints = train_with_checkpoints(&cfg, bundle, Some(&subset), per_epoch, s)?;
    let adam = AdamShape {
        beta1: cfg.optim.beta1,
        beta2: cfg.optim.beta2,
        eps: cfg.optim.eps,
    };
    let params = checkpoints[0].point.head.n_params();
    let sketch = CountSketch::new(params, s.less.dims, derive_seed(s.seed, 0x1E55, 0))?;
    less_keys_at(bundle, targets, &checkpoints, &dev, &sketch, adam, s)
}
