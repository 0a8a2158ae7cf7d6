//! Scores from gradient and error norms: GraNd at initialisation, EL2N over an ensemble of short
//! proxies, and the norm at a fixed head (the teacher, or a checkpoint).

use crate::data::features::FeatureBundle;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gradnorm::{self, GradNormOptions, Reduction};
use crate::head::{HeadParams, LinearHead};
use crate::train::plan::derive_seed;
use crate::train::schedule::total_steps;

use super::GradientSettings;
use super::runs::{run_config, train_head_until};

/// EL2N's ensemble (Paul et al., 2021).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct El2nSpec {
    /// Proxies averaged (independent initialisations and data orders).
    pub proxies: usize,
    /// Each proxy trains on the whole pool for this fraction of the full run's optimiser steps
    /// (under the full run's schedule).
    pub run_fraction: f64,
}

impl Default for El2nSpec {
    fn default() -> Self {
        El2nSpec {
            proxies: 4,
            run_fraction: 0.1,
        }
    }
}

/// GraNd at initialisation: the mean gradient norm over `settings.inits` random heads.
pub fn grand_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    if s.inits == 0 {
        return Err(Error::invalid("grand needs at least one initialisation"));
    }
    let mut sum = vec![0.0; bundle.n_rollouts()];
    for k in 0..s.inits {
        let head = HeadParams::init(s.head, bundle.dim(), s.seed.wrapping_add(k as u64));
        let norms = gradient_norms(bundle, targets, &head, s)?;
        sum.iter_mut().zip(norms).for_each(|(a, n)| *a += n);
    }
    Ok(sum.into_iter().map(|v| v / s.inits as f64).collect())
}

/// ‖∇ℓ_x‖ at a fixed head (the teacher, or a checkpoint).
pub fn gradient_norms(
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    let stats = gradnorm::rollout_grad_stats(
        s.device,
        bundle,
        targets,
        head,
        &GradNormOptions {
            reduction: s.reduction,
            projection: None,
            ..Default::default()
        },
    )?;
    Ok(stats.grad_sq.iter().map(|v| v.sqrt()).collect())
}

/// EL2N at one head: the rollout's error vector (σ(z_j) − y_j)_j with each step weighed as the
/// `reduction` weighs it in the loss, √(c · Σ_j (σ(z_j) − y_j)²): the root-mean-square step error
/// under the mean reduction (no length bias), the L2 norm of the error vector under the sum.
pub fn el2n_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    reduction: Reduction,
    device: Device,
) -> Result<Vec<f64>> {
    // With the sum reduction the engine's residuals are σ(z) − y themselves.
    let stats = gradnorm::rollout_grad_stats(
        device,
        bundle,
        targets,
        head,
        &GradNormOptions {
            reduction: Reduction::Sum,
            projection: None,
            ..Default::default()
        },
    )?;
    Ok(stats
        .resid_sq
        .iter()
        .enumerate()
        .map(|(i, &v)| (reduction.weight(bundle.rollout_len(i)) * v).sqrt())
        .collect())
}

/// EL2N as Paul et al. define it: the mean over `el2n.proxies` independently seeded proxies, each
/// trained on the whole pool for `el2n.run_fraction` of the full run, of [`el2n_keys`] under the
/// settings' reduction. The proxies see every rollout, so no rollout is scored as "unseen".
pub fn el2n_ensemble_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    let e = s.el2n;
    if e.proxies == 0 {
        return Err(Error::invalid("el2n needs at least one proxy"));
    }
    if !(e.run_fraction > 0.0 && e.run_fraction <= 1.0) {
        return Err(Error::invalid(format!(
            "el2n's run fraction {} must be in (0, 1]",
            e.run_fraction
        )));
    }
    let mut sum = vec![0.0; bundle.n_rollouts()];
    for k in 0..e.proxies {
        let seed = derive_seed(s.seed, 0xE12, k as u64);
        let cfg = run_config(s, seed, s.proxy.epochs);
        let total = total_steps(bundle.n_rollouts(), cfg.global_batch, cfg.epochs);
        let stop = (e.run_fraction * total as f64).ceil() as usize;
        let head = train_head_until(&cfg, bundle, None, stop, s)?;
        let keys = el2n_keys(bundle, targets, &head, s.reduction, s.device)?;
        sum.iter_mut().zip(keys).for_each(|(a, v)| *a += v);
    }
    Ok(sum.into_iter().map(|v| v / e.proxies as f64).collect())
}

/// The teacher head of a synthetic bundle.
pub fn teacher_head(bundle: &FeatureBundle) -> Result<HeadParams> {
    let t = bundle.teacher().ok_or_else(|| {
        Error::invalid("gradnorm-teacher needs a synthetic bundle (with w_star, b_star)")
    })?;
    Ok(HeadParams::Linear(LinearHead {
        w: t.w_star.clone(),
        b: t.b_star,
    }))
}
