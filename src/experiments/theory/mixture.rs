//! Lemma 2: a rollout's label mixture p̂(1 − p̂) estimates its teacher uncertainty,
//! E[p̂(1 − p̂) | q] = θ_x − A(x)/n, with the bias A(x)/n inside [0, θ_x/n].
//!
//! Measured under the lemma's idealisation (Y_j ~ Bernoulli(q*_j), independent): per rollout,
//! `mixture_draws` label vectors are drawn and p̂(1 − p̂) averaged. The Monte Carlo standard error
//! uses the exact variance of p̂(1 − p̂), from the Poisson-binomial distribution of the positive
//! count (an O(n²) recursion), because a rollout whose draws all agree has a sample variance of 0
//! while its mean is still uncertain. The same distribution gives E[p̂(1 − p̂)] exactly, a
//! deterministic check of the algebra next to the Monte Carlo one.
//!
//! The lemma's idealisation is then dropped: on the corpus's own labels (the hard MC labels and
//! the true correctness) the observed mixture is compared with θ − A/n, and its rank correlation
//! with θ_x says whether label mixture tracks teacher uncertainty in an MC-annotated corpus.

use rayon::prelude::*;

use crate::data::label_stats::LabelStats;
use crate::error::{Error, Result};
use crate::experiments::context::ExperimentContext;
use crate::experiments::formulas::lemma2;
use crate::experiments::stats::{Estimate, Proportion, mean_ci95, spearman_bootstrap};
use crate::sim::rng::uniform;

use super::{StreamKind, TeacherView, TheoryConfig, derived_seed, stream};

/// 97.5% normal quantile.
const Z95: f64 = 1.959_963_984_540_054;

/// The measurement over a group of rollouts (one length, or all).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MixtureGroup {
    /// Steps per rollout (0 for all rollouts with at least two steps).
    pub n: usize,
    /// Rollouts in the group.
    pub rollouts: usize,
    /// Mean of θ_x − A(x)/n (Lemma 2).
    pub predicted: f64,
    /// Mean of θ_x (the target the mixture stands for).
    pub theta: f64,
    /// Mean of the Monte Carlo E[p̂(1 − p̂)].
    pub measured: f64,
    /// Σ measured / Σ predicted − 1, with a 95% interval from the Monte Carlo standard error.
    pub rel_error: Estimate,
    /// Rollouts whose measured bias θ − E[p̂(1 − p̂)] lies in [0, θ/n] up to the allowance.
    pub within: Proportion,
}

/// Lemma 2's results.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MixtureCheck {
    /// Monte Carlo draws per rollout.
    pub draws: usize,
    /// Standard errors of allowance in the bias check.
    pub allowance_z: f64,
    /// Rollouts with at least two steps (a one-step rollout's mixture is always 0 = θ − A/1).
    pub all: MixtureGroup,
    /// Rollouts within [0, θ/n] with no Monte Carlo allowance at all.
    pub within_strict: Proportion,
    /// Largest |exact E[p̂(1 − p̂)] − (θ − A/n)| over rollouts (the algebra, no sampling).
    pub exact_max_abs_diff: f64,
    /// By rollout length.
    pub by_n: Vec<MixtureGroup>,
    /// The corpus's hard MC labels: mean observed p̂(1 − p̂) / mean (θ − A/n) − 1, 95% CI over
    /// rollouts.
    pub corpus_mc: Estimate,
    /// The same with the simulator's true step correctness as labels.
    pub corpus_true: Estimate,
    /// Spearman(observed MC p̂(1 − p̂), θ_x) over all rollouts, bootstrap 95% CI.
    pub mixture_vs_theta: Estimate,
    /// Spearman(observed MC p̂(1 − p̂), A(x)).
    pub mixture_vs_a: Estimate,
    /// Share of rollouts whose MC labels are mixed.
    pub mixed_share: f64,
}

struct PerRollout {
    n: usize,
    theta: f64,
    a: f64,
    predicted: f64,
    measured: f64,
    exact: f64,
    /// Standard error of `measured`.
    se: f64,
}

/// Runs Lemma 2.
pub fn run(
    cfg: &TheoryConfig,
    ctx: &ExperimentContext<'_>,
    teacher: &TeacherView,
) -> Result<MixtureCheck> {
    let bundle = &ctx.corpus.bundle;
    let truth_labels = &bundle
        .teacher()
        .as_ref()
        .ok_or_else(|| Error::invalid("Lemma 2 needs the teacher"))?
        .true_correct;
    let draws = cfg.mixture_draws;
    let rows: Vec<PerRollout> = (0..bundle.n_rollouts())
        .into_par_iter()
        .map(|x| {
            let q = &teacher.q[bundle.rollout_steps(x)];
            let m = lemma2(q);
            let n = q.len();
            let (exact, var) = mixture_moments(q);
            let mut rng = stream(ctx.seed, StreamKind::Mixture, x as u64, 0);
            let mut sum = 0.0;
            for _ in 0..draws {
                let k = q.iter().filter(|&&qj| uniform(&mut rng) < qj).count();
                sum += mixture_of(k, n);
            }
            PerRollout {
                n,
                theta: m.theta,
                a: m.a,
                predicted: m.expected_mixture,
                measured: sum / draws as f64,
                exact,
                se: (var / draws as f64).sqrt(),
            }
        })
        .collect();

    let z = cfg.allowance_z;
    let group = |n: usize, members: &[&PerRollout]| {
        let predicted: f64 = members.iter().map(|r| r.predicted).sum();
        let measured: f64 = members.iter().map(|r| r.measured).sum();
        let se = members.iter().map(|r| r.se * r.se).sum::<f64>().sqrt() / predicted;
        let rel = measured / predicted - 1.0;
        let inside = members.iter().filter(|r| bias_within(r, z * r.se)).count();
        let count = members.len() as f64;
        MixtureGroup {
            n,
            rollouts: members.len(),
            predicted: predicted / count,
            theta: members.iter().map(|r| r.theta).sum::<f64>() / count,
            measured: measured / count,
            rel_error: Estimate {
                value: rel,
                lo: rel - Z95 * se,
                hi: rel + Z95 * se,
            },
            within: Proportion::wilson(inside as u64, members.len() as u64),
        }
    };
    let multi: Vec<&PerRollout> = rows.iter().filter(|r| r.n >= 2).collect();
    if multi.is_empty() {
        return Err(Error::EmptyInput(
            "Lemma 2 needs rollouts with at least two steps".into(),
        ));
    }
    let max_n = multi.iter().map(|r| r.n).max().unwrap_or(2);
    let by_n = (2..=max_n)
        .filter_map(|n| {
            let members: Vec<&PerRollout> = multi.iter().copied().filter(|r| r.n == n).collect();
            (!members.is_empty()).then(|| group(n, &members))
        })
        .collect();
    let strict = multi.iter().filter(|r| bias_within(r, 0.0)).count();

    // The corpus's own labels, without the idealisation.
    let stats: Vec<LabelStats> = (0..bundle.n_rollouts())
        .map(|x| {
            let scores: Vec<f64> = bundle.mc_scores()[bundle.rollout_steps(x)]
                .iter()
                .map(|&s| f64::from(s))
                .collect();
            LabelStats::of(&scores)
        })
        .collect();
    let observed_mc: Vec<f64> = stats.iter().map(LabelStats::mixture).collect();
    let observed_true: Vec<f64> = (0..bundle.n_rollouts())
        .map(|x| {
            let steps = bundle.rollout_steps(x);
            let n = steps.len();
            mixture_of(truth_labels[steps].iter().filter(|&&c| c == 1).count(), n)
        })
        .collect();
    let multi_idx: Vec<usize> = (0..rows.len()).filter(|&x| rows[x].n >= 2).collect();
    let against_prediction = |observed: &[f64]| {
        let diff: Vec<f64> = multi_idx
            .iter()
            .map(|&x| observed[x] - rows[x].predicted)
            .collect();
        let mean_pred =
            multi_idx.iter().map(|&x| rows[x].predicted).sum::<f64>() / multi_idx.len() as f64;
        let ci = mean_ci95(&diff);
        Estimate {
            value: ci.mean / mean_pred,
            lo: ci.lo() / mean_pred,
            hi: ci.hi() / mean_pred,
        }
    };
    let theta: Vec<f64> = rows.iter().map(|r| r.theta).collect();
    let a: Vec<f64> = rows.iter().map(|r| r.a).collect();
    let boot = |target: &[f64], i: u64| {
        spearman_bootstrap(
            &observed_mc,
            target,
            cfg.bootstrap,
            derived_seed(ctx.seed, StreamKind::Bootstrap, 2, i),
        )
    };
    Ok(MixtureCheck {
        draws,
        allowance_z: z,
        all: group(0, &multi),
        within_strict: Proportion::wilson(strict as u64, multi.len() as u64),
        exact_max_abs_diff: rows
            .iter()
            .map(|r| (r.exact - r.predicted).abs())
            .fold(0.0, f64::max),
        by_n,
        corpus_mc: against_prediction(&observed_mc),
        corpus_true: against_prediction(&observed_true),
        mixture_vs_theta: boot(&theta, 0),
        mixture_vs_a: boot(&a, 1),
        mixed_share: stats.iter().filter(|s| s.is_mixed()).count() as f64 / stats.len() as f64,
    })
}

/// p̂(1 − p̂) for k positives out of n.
fn mixture_of(k: usize, n: usize) -> f64 {
    let p = k as f64 / n as f64;
    p * (1.0 - p)
}

/// The measured bias θ − E[p̂(1 − p̂)] lies in [0, θ/n], widened by `allowance` on both sides
/// (and by a rounding margin, so a one-step rollout, whose bias is exactly θ/n, counts).
fn bias_within(r: &PerRollout, allowance: f64) -> bool {
    let bias = r.theta - r.measured;
    let margin = allowance + 1e-12;
    bias >= -margin && bias <= r.theta / r.n as f64 + margin
}

/// Exact mean and variance of p̂(1 − p̂) when Y_j ~ Bernoulli(q_j) independently: the
/// Poisson-binomial distribution of Σ Y_j by the usual one-step-at-a-time recursion.
pub fn mixture_moments(q: &[f64]) -> (f64, f64) {
    let n = q.len();
    let mut pmf = vec![0.0; n + 1];
    pmf[0] = 1.0;
    for (j, &p) in q.iter().enumerate() {
        for k in (0..=j + 1).rev() {
            let stay = pmf[k] * (1.0 - p);
            let up = if k > 0 { pmf[k - 1] * p } else { 0.0 };
            pmf[k] = stay + up;
        }
    }
    let (mut m1, mut m2) = (0.0, 0.0);
    for (k, &p) in pmf.iter().enumerate() {
        let v = mixture_of(k, n);
        m1 += p * v;
        m2 += p * v * v;
    }
    (m1, (m2 - m1 * m1).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_moments_match_lemma2_and_enumeration() {
        let q = [0.9, 0.2, 0.5, 0.7];
        let (mean, var) = mixture_moments(&q);
        assert!((mean - lemma2(&q).expected_mixture).abs() < 1e-15);
        // Brute force over all 16 label vectors.
        let (mut m1, mut m2) = (0.0, 0.0);
        for bits in 0u32..16 {
            let mut p = 1.0;
            for (j, &qj) in q.iter().enumerate() {
                p *= if bits >> j & 1 == 1 { qj } else { 1.0 - qj };
            }
            let v = mixture_of(bits.count_ones() as usize, 4);
            m1 += p * v;
            m2 += p * v * v;
        }
        assert!((mean - m1).abs() < 1e-15);
        assert!((var - (m2 - m1 * m1)).abs() < 1e-15);
    }
}
