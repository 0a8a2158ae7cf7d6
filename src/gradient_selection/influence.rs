//! Scores that look along the dev loss: TracIn-CP over a run's checkpoints, influence functions at
//! its end (exact Hessian for the linear head, Gauss–Newton on the output layer for the MLP), and
//! the simulator-only oracle that traces the clean loss instead.

use rayon::prelude::*;

use crate::data::features::{BundleParts, FeatureBundle, FeatureData};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gradnorm;
use crate::head::{HeadParams, LinearHead};

use super::GradientSettings;
use super::dev::{DevSteps, dev_gradient, gradient_dots};
use super::runs::Checkpoint;

/// TracIn-CP (Pruthi et al., 2020): Σ over checkpoints c of lr_c · ⟨∇L_dev(w_c), g_x(w_c)⟩, the
/// first-order decrease of the dev loss that the training steps on x caused along the run.
/// Higher means more helpful. Works for either head.
///
/// Deviations from the paper: the dev loss is the mean BCE over the bench's labelled dev steps
/// (one dev gradient, not one per test example), and the gradients are plain SGD directions
/// although the trainer runs AdamW (as in the original TracIn-CP).
pub fn tracin_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    checkpoints: &[Checkpoint],
    dev: DevSteps<'_>,
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    if checkpoints.is_empty() {
        return Err(Error::invalid("tracin needs at least one checkpoint"));
    }
    let mut keys = vec![0.0; bundle.n_rollouts()];
    for c in checkpoints {
        let dev_grad = dev_gradient(dev, &c.head, s.device)?;
        let dots = gradient_dots(bundle, targets, &c.head, &dev_grad, s.reduction, s.device)?;
        keys.iter_mut().zip(dots).for_each(|(k, d)| *k += c.lr * d);
    }
    Ok(keys)
}

/// ORACLE (simulator only): TracIn-CP against the clean loss instead of the dev loss, i.e.
/// Σ_c lr_c · a_c(x) with a_c(x) = ⟨∇L_clean(w_c), g_x(w_c)⟩ and L_clean the mean BCE of the
/// training corpus's steps against the teacher's probabilities q*. No real method can compute it:
/// it is the ceiling a per-rollout first-order score could reach.
pub fn oracle_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    checkpoints: &[Checkpoint],
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    let teacher = bundle.teacher().ok_or_else(|| {
        Error::invalid("the oracle needs a synthetic bundle (with the teacher's q*)")
    })?;
    let clean = DevSteps {
        bundle,
        targets: &teacher.q,
    };
    tracin_keys(bundle, targets, checkpoints, clean, s)
}

/// The Hessian of the mean per-step BCE of the linear `head` over the steps of `bundle`, in the
/// augmented coordinates [w; b]: (1/S) Σ_j σ(z_j)(1 − σ(z_j)) [ϕ_j; 1][ϕ_j; 1]ᵀ, row-major
/// (d + 1) × (d + 1). The trainer's loss is a mean over the steps of a batch, so this is the
/// Hessian of the objective it minimises (weight decay aside, which the damping stands in for).
/// The weights σ′(z_j) come from one pass on the CPU; the O(S·d²) Gram product runs on `device`
/// ([`gradnorm::weighted_gram`]: a fixed-order f64 sum on the CPU, the `weighted_gram` kernel on
/// a GPU).
pub fn linear_hessian_on(
    bundle: &FeatureBundle,
    head: &HeadParams,
    device: Device,
) -> Result<Vec<f64>> {
    let HeadParams::Linear(h) = head else {
        return Err(Error::invalid(
            "the exact Hessian is implemented for the linear head only",
        ));
    };
    let d = bundle.dim();
    let n_steps = bundle.n_steps();
    if n_steps == 0 {
        return Err(Error::invalid("the Hessian needs at least one step"));
    }
    let rows = bundle.features();
    let weights: Vec<f64> = (0..n_steps)
        .into_par_iter()
        .with_min_len(1024)
        .map(|j| {
            let z =
                h.w.iter()
                    .enumerate()
                    .map(|(k, &w)| f64::from(w) * f64::from(rows.get(j * d + k)))
                    .sum::<f64>()
                    + f64::from(h.b);
            let q = crate::logistic::sigmoid(z);
            q * (1.0 - q)
        })
        .collect();
    let mut hess = gradnorm::weighted_gram(device, bundle, &weights)?;
    hess.iter_mut().for_each(|v| *v /= n_steps as f64);
    Ok(hess)
}

/// [`linear_hessian_on`] on the CPU.
pub fn linear_hessian(bundle: &FeatureBundle, head: &HeadParams) -> Result<Vec<f64>> {
    linear_hessian_on(bundle, head, Device::Cpu)
}

/// Influence scores (Koh & Liang, 2017): the predicted decrease of the dev loss when rollout x is
/// up-weighted in the training objective, ∇L_devᵀ (H + λI)⁻¹ g_x, i.e. minus Koh & Liang's
/// I_up,loss. Higher means more helpful.
///
/// * Linear head: H is the exact Hessian ([`linear_hessian`]) at the trained `head`.
/// * MLP head: the Gauss–Newton approximation restricted to the output layer (w₂, b₂), with the
///   hidden layer frozen. z is linear in (w₂, b₂), so this block of the Gauss–Newton matrix is
///   also the exact Hessian block: the influence of a linear head on the hidden activations
///   φ(W₁ϕ + b₁), with dev and training gradients restricted to the output layer. Directions
///   through W₁ and b₁ are ignored (a stated approximation, the last-layer influence of the
///   literature).
///
/// λ = `damping` · tr(H)/p (p the parameters H covers), a damping relative to the mean eigenvalue
/// that keeps the solve well posed where features barely vary and stands in for weight decay.
pub fn influence_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    dev: DevSteps<'_>,
    damping: f64,
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    if !(damping > 0.0 && damping.is_finite()) {
        return Err(Error::invalid(format!(
            "influence damping {damping} must be a positive number"
        )));
    }
    match head {
        HeadParams::Linear(_) => linear_influence(bundle, targets, head, dev, damping, s),
        HeadParams::Mlp(m) => {
            let hidden = hidden_bundle(bundle, head)?;
            let hidden_dev = hidden_bundle(dev.bundle, head)?;
            let out = HeadParams::Linear(LinearHead {
                w: m.w2.clone(),
                b: m.b2,
            });
            let dev = DevSteps {
                bundle: &hidden_dev,
                targets: dev.targets,
            };
            linear_influence(&hidden, targets, &out, dev, damping, s)
        }
    }
}

fn linear_influence(
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    dev: DevSteps<'_>,
    damping: f64,
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    let mut hess = linear_hessian_on(bundle, head, s.device)?;
    let p = bundle.dim() + 1;
    let lambda = damping * (0..p).map(|r| hess[r * p + r]).sum::<f64>() / p as f64;
    for r in 0..p {
        hess[r * p + r] += lambda;
    }
    let mut dev_grad = dev_gradient(dev, head, s.device)?;
    let direction = crate::linalg::solve(&mut hess, &mut dev_grad, p);
    gradient_dots(bundle, targets, head, &direction, s.reduction, s.device)
}

/// The MLP head's hidden activations φ(W₁ϕ_j + b₁) of every step of `bundle`, as a bundle with
/// the same rollouts (the output layer's inputs).
pub fn hidden_bundle(bundle: &FeatureBundle, head: &HeadParams) -> Result<FeatureBundle> {
    let HeadParams::Mlp(m) = head else {
        return Err(Error::invalid(
            "hidden activations exist for the mlp head only",
        ));
    };
    if m.dim != bundle.dim() {
        return Err(Error::invalid(format!(
            "the head takes d = {} inputs but the bundle's features have d = {}",
            m.dim,
            bundle.dim()
        )));
    }
    let (d, h) = (m.dim, m.hidden());
    let rows = bundle.features();
    let data: Vec<f32> = (0..bundle.n_steps())
        .into_par_iter()
        .with_min_len(256)
        .flat_map_iter(|j| {
            let x: Vec<f64> = (0..d).map(|e| f64::from(rows.get(j * d + e))).collect();
            (0..h).map(move |u| {
                let w = &m.w1[u * d..(u + 1) * d];
                let pre = w
                    .iter()
                    .zip(&x)
                    .map(|(&a, &b)| f64::from(a) * b)
                    .sum::<f64>()
                    + f64::from(m.b1[u]);
                m.activation.apply(pre) as f32
            })
        })
        .collect();
    FeatureBundle::from_parts(BundleParts {
        features: FeatureData::F32(data),
        dim: h,
        offsets: bundle.offsets().to_vec(),
        mc_scores: bundle.mc_scores().to_vec(),
        source: bundle.source().to_vec(),
        line: bundle.line().map(<[u64]>::to_vec),
        labels: bundle.labels().map(<[f32]>::to_vec),
        teacher: None,
        meta: bundle.meta().clone(),
    })
}
