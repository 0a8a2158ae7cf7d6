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
//! Steps 2, 3 and the cosines run through the gradient engine ([`gradnorm::sketch_cosines`]): on
//! a GPU each sub-chunk of per-rollout gradients is materialised, preconditioned and sketched on
//! the device (`kernels/sketch.cu`), and only k numbers per rollout come back; the CPU engine is
//! the kernel's f64 twin.
//!
//! Deviations, stated: the projection is a CountSketch (every parameter hashed to one output with
//! a random sign, O(P) per rollout) rather than TRAK's dense Rademacher matrix, because on two CPU
//! cores a dense k × P product per rollout costs minutes for the MLP head; both are random
//! projections that preserve inner products in expectation. The dev side is one mean gradient per
//! source, where the paper averages the cosines to each dev example of a task. The selector keeps
//! per-source quotas, as every other selector here.

use crate::data::bench::BenchSet;
use crate::data::features::FeatureBundle;
use crate::error::{Error, Result};
use crate::gradnorm::{self, GradInput};
use crate::train::plan::derive_seed;

use super::GradientSettings;
use super::dev::{SourceDev, dev_gradient, labelled_dev_by_source};
use super::runs::{AdamCheckpoint, random_fraction, run_config, train_with_checkpoints};

pub use crate::gradnorm::sketch::{
    AdamShape, CountSketch, PreconditionedSketch, adam_precondition, cosine,
};

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
        let pre = PreconditionedSketch {
            m: c.moments.m.clone(),
            v: c.moments.v.clone(),
            adam,
            sketch: sketch.clone(),
        };
        pre.check(head.n_params())
            .map_err(|e| Error::invalid(format!("LESS: {e}")))?;
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
        let cosines = gradnorm::sketch_cosines(s.device, &input, s.reduction, &pre, &dev_sketches)?;
        for (sum, cos) in sums.iter_mut().zip(cosines) {
            *sum += c.point.lr * cos;
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
