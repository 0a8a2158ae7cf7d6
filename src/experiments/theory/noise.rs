//! Eqs. 5 and 6: the per-step gradient at the teacher carries q*(1 − q*) of information, and
//! symmetric label noise scales that by (1 − 4η) and adds a floor η‖ϕ‖².
//!
//! Both equations are conditional expectations over the label given ϕ, so the measurement holds
//! the features fixed and redraws labels: per draw t, Y_j ~ Bernoulli(q*_j) and, for each η,
//! Ỹ_j = Y_j XOR Bernoulli(η). Each step is made its own rollout (offsets 0..S) and the gradient
//! engine computes ‖∂L/∂w‖² = (σ(⟨w*, ϕ_j⟩ + b*) − Y_j)²‖ϕ_j‖² of the weight group with the sum
//! reduction, exactly the paper's g = (q* − Y)ϕ. Steps are grouped into equal-count bins of q*;
//! a bin's relative error is (mean measured ‖g‖²)/(mean predicted) − 1 per draw, and its 95%
//! t-interval is over the independent draws.

use crate::data::features::{BundleParts, FeatureBundle, FeatureData};
use crate::error::{Error, Result};
use crate::experiments::context::ExperimentContext;
use crate::experiments::formulas::{eq5_expected_sq_norm, eq6_expected_sq_norm};
use crate::experiments::stats::{MeanCi, mean_ci95};
use crate::gradient_selection::teacher_head;
use crate::gradnorm::{self, GradNormOptions, Reduction};
use crate::sim::rng::uniform;

use super::{StreamKind, TeacherView, TheoryConfig, stream};

/// One bin of q* (or all steps).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NoiseBin {
    /// Smallest q* in the bin.
    pub q_lo: f64,
    /// Largest q* in the bin.
    pub q_hi: f64,
    /// Mean q* of the bin.
    pub q_mean: f64,
    /// Steps in the bin.
    pub steps: usize,
    /// Bin mean of the formula's E‖g‖² (Eq. 5, or Eq. 6 at this η).
    pub predicted: f64,
    /// Bin mean of Eq. 5's q*(1 − q*)‖ϕ‖² (equal to `predicted` without flips).
    pub noiseless: f64,
    /// Bin mean of the measured ‖g‖², mean and 95% CI over draws.
    pub measured: MeanCi,
    /// measured / predicted − 1, mean and 95% CI over draws.
    pub rel_error: MeanCi,
}

impl NoiseBin {
    /// True when the relative error's interval contains 0.
    pub fn agrees(&self) -> bool {
        self.rel_error.lo() <= 0.0 && 0.0 <= self.rel_error.hi()
    }
}

/// Eq. 5 (η = 0) or Eq. 6 at one η.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NoiseCheck {
    /// Flip rate (0 for Eq. 5).
    pub eta: f64,
    /// Label draws per step.
    pub draws: usize,
    /// Equal-count bins of q*, ascending.
    pub bins: Vec<NoiseBin>,
    /// All steps together.
    pub pooled: NoiseBin,
}

impl NoiseCheck {
    /// Largest |relative error| over the bins.
    pub fn max_abs_rel_error(&self) -> f64 {
        self.bins
            .iter()
            .map(|b| b.rel_error.mean.abs())
            .fold(0.0, f64::max)
    }

    /// Bins whose interval contains 0.
    pub fn bins_agreeing(&self) -> usize {
        self.bins.iter().filter(|b| b.agrees()).count()
    }
}

/// Runs Eq. 5 and Eq. 6 (one check per `cfg.flip_etas`).
pub fn run(
    cfg: &TheoryConfig,
    ctx: &ExperimentContext<'_>,
    teacher: &TeacherView,
) -> Result<(NoiseCheck, Vec<NoiseCheck>)> {
    let bundle = &ctx.corpus.bundle;
    let head = teacher_head(bundle)?;
    let steps = one_rollout_per_step(bundle)?;
    let s = bundle.n_steps();
    let bins = equal_count_bins(&teacher.q, cfg.q_bins.min(s));
    let etas: Vec<f64> = std::iter::once(0.0)
        .chain(cfg.flip_etas.iter().copied())
        .collect();
    let opts = GradNormOptions {
        reduction: Reduction::Sum,
        projection: None,
        ..Default::default()
    };
    // measured[e][t][b]: bin means of ‖g_w‖² for flip rate e and draw t; the last "bin" is all
    // steps.
    let mut measured: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(cfg.label_draws); etas.len()];
    let mut targets = vec![vec![0f32; s]; etas.len()];
    for t in 0..cfg.label_draws {
        let mut rng = stream(ctx.seed, StreamKind::Labels, t as u64, 0);
        for (j, &q) in teacher.q.iter().enumerate() {
            let y = uniform(&mut rng) < q;
            targets[0][j] = f32::from(u8::from(y));
            for (e, &eta) in etas.iter().enumerate().skip(1) {
                let flip = uniform(&mut rng) < eta;
                targets[e][j] = f32::from(u8::from(y ^ flip));
            }
        }
        for (e, labels) in targets.iter().enumerate() {
            let stats = gradnorm::rollout_grad_stats(ctx.device, &steps, labels, &head, &opts)?;
            let g = weight_group(&stats)?;
            let mut means: Vec<f64> = bins.iter().map(|b| mean_over(g, b)).collect();
            means.push(g.iter().sum::<f64>() / s as f64);
            measured[e].push(means);
        }
    }
    let all: Vec<usize> = (0..s).collect();
    let mut checks = etas.iter().enumerate().map(|(e, &eta)| {
        let summarise = |members: &[usize], b: usize| {
            let predicted = mean_of(members, |j| {
                if eta == 0.0 {
                    eq5_expected_sq_norm(teacher.q[j], teacher.phi_sq[j])
                } else {
                    eq6_expected_sq_norm(teacher.q[j], eta, teacher.phi_sq[j])
                }
            });
            let per_draw: Vec<f64> = measured[e].iter().map(|m| m[b]).collect();
            let rel: Vec<f64> = per_draw.iter().map(|m| m / predicted - 1.0).collect();
            let (q_lo, q_hi) = members.iter().fold((1.0f64, 0.0f64), |(lo, hi), &j| {
                (lo.min(teacher.q[j]), hi.max(teacher.q[j]))
            });
            NoiseBin {
                q_lo,
                q_hi,
                q_mean: mean_of(members, |j| teacher.q[j]),
                steps: members.len(),
                predicted,
                noiseless: mean_of(members, |j| {
                    eq5_expected_sq_norm(teacher.q[j], teacher.phi_sq[j])
                }),
                measured: mean_ci95(&per_draw),
                rel_error: mean_ci95(&rel),
            }
        };
        NoiseCheck {
            eta,
            draws: cfg.label_draws,
            bins: bins
                .iter()
                .enumerate()
                .map(|(b, members)| summarise(members, b))
                .collect(),
            pooled: summarise(&all, bins.len()),
        }
    });
    let eq5 = checks.next().expect("η = 0 comes first");
    Ok((eq5, checks.collect()))
}

/// The bundle's steps, each as a one-step rollout (so per-rollout statistics are per-step ones).
fn one_rollout_per_step(bundle: &FeatureBundle) -> Result<FeatureBundle> {
    let s = bundle.n_steps();
    FeatureBundle::from_parts(BundleParts::one_source(
        FeatureData::F32(bundle.features().to_f32_vec()),
        bundle.dim(),
        (0..=s).collect(),
        bundle.mc_scores().to_vec(),
        "steps",
    ))
}

fn weight_group(stats: &gradnorm::RolloutGradStats) -> Result<&[f64]> {
    stats
        .group_grad_sq
        .iter()
        .find(|(name, _)| name == "w")
        .map(|(_, v)| v.as_slice())
        .ok_or_else(|| Error::Other("the linear head has no `w` gradient group".into()))
}

/// Step indices in `n_bins` equal-count bins of ascending `q` (ties broken by index, so the
/// binning is deterministic).
pub fn equal_count_bins(q: &[f64], n_bins: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..q.len()).collect();
    order.sort_by(|&a, &b| q[a].total_cmp(&q[b]).then(a.cmp(&b)));
    let n = q.len();
    (0..n_bins)
        .map(|b| order[b * n / n_bins..(b + 1) * n / n_bins].to_vec())
        .collect()
}

fn mean_over(values: &[f64], members: &[usize]) -> f64 {
    mean_of(members, |j| values[j])
}

fn mean_of(members: &[usize], f: impl Fn(usize) -> f64) -> f64 {
    members.iter().map(|&j| f(j)).sum::<f64>() / members.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_have_equal_counts_and_ascend() {
        let q = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8];
        let bins = equal_count_bins(&q, 3);
        assert_eq!(bins, vec![vec![1, 5], vec![3, 2], vec![4, 6, 0]]);
        assert_eq!(bins.iter().map(Vec::len).sum::<usize>(), q.len());
    }
}
