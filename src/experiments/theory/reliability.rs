//! Lemma 3: the pseudo-positive probability of a step with k of N = 16 successful
//! continuations, η_eff(k) = P(r < τ | K = k) = I_τ(a + k, b + N − k) under a Beta(a, b) prior on
//! the one-shot success rate r, falls strictly with k.
//!
//! Four views of the same quantity, per k:
//!
//! 1. the closed form (statrs's regularised incomplete beta), with (a, b) fitted to the
//!    simulator's success rates by the method of moments;
//! 2. simulated posteriors: r ~ Beta(a, b), K ~ Binomial(16, r), the empirical P(r < τ | K = k)
//!    with a Wilson interval (this checks the formula and its implementation);
//! 3. the corpus itself: P(r_j < τ | K_j = k) over the simulator's steps, whose r is *not* Beta
//!    distributed (intact prefixes sit near 1, broken ones at the rollout's small ρ), so the gap
//!    to 1. measures how much the Beta prior assumption costs;
//! 4. the simulator's semantic unreliability: P(prefix broken | K = k) and P(step wrong | K = k),
//!    what the paper's "pseudo-positive" stands for.
//!
//! Only steps whose continuations were sampled count (an early-stopped step has no K).

use rand_distr::{Beta, Distribution};
use rayon::prelude::*;
use statrs::function::beta::beta_reg;

use crate::error::{Error, Result};
use crate::experiments::context::ExperimentContext;
use crate::experiments::formulas::eta_eff;
use crate::experiments::stats::Proportion;
use crate::sim::model::MC_SAMPLES;
use crate::sim::rng::uniform;

use super::truth::StepTruth;
use super::{StreamKind, TheoryConfig, stream};

/// Simulated pairs per independent stream (the unit of parallel work).
const DRAWS_PER_CHUNK: usize = 1 << 16;
/// Simulated k with fewer draws than this are shown but left out of the error summary.
pub const MIN_SIMULATED: u64 = 200;

/// The Beta prior fitted to the corpus's success rates.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BetaFit {
    /// a.
    pub a: f64,
    /// b.
    pub b: f64,
    /// Sample mean of r.
    pub mean: f64,
    /// Sample variance of r.
    pub var: f64,
    /// Steps the fit used.
    pub steps: usize,
}

/// One k at one τ.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KRow {
    /// Successful continuations.
    pub k: u32,
    /// I_τ(a + k, b + N − k).
    pub closed: f64,
    /// Empirical P(r < τ | K = k) under the fitted prior, Wilson 95% interval.
    pub simulated: Proportion,
    /// The corpus's P(r < τ | K = k).
    pub corpus: Proportion,
}

/// Lemma 3 at one τ.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TauCheck {
    /// Reliability threshold.
    pub tau: f64,
    /// k = 0..=16.
    pub rows: Vec<KRow>,
    /// η_eff(k + 1) < η_eff(k) for every k where f64 can tell (see `underflow_from`).
    pub strictly_decreasing: bool,
    /// First k from which η_eff underflows to 0 in f64 (the ordering is then invisible, not
    /// violated).
    pub underflow_from: Option<u32>,
    /// Largest |simulated − closed| over k with at least [`MIN_SIMULATED`] draws.
    pub max_abs_error: f64,
    /// Of those k, how many have the closed form inside the simulated interval.
    pub within_ci: usize,
    /// Number of k compared.
    pub compared: usize,
    /// Largest |corpus − closed| over k with at least [`MIN_SIMULATED`] corpus steps; `None`
    /// (null) when no k has that many, as in a policy world without per-step success rates, so
    /// that an empty comparison never reads as a perfect one.
    pub corpus_max_abs_gap: Option<f64>,
}

/// The simulator's own unreliability at one k.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SimulatorNoise {
    /// Successful continuations.
    pub k: u32,
    /// P(prefix broken | K = k).
    pub broken_prefix: Proportion,
    /// P(step wrong | K = k).
    pub incorrect: Proportion,
}

/// Lemma 3's results.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReliabilityCheck {
    /// The prior.
    pub prior: BetaFit,
    /// Simulated (r, K) pairs.
    pub draws: usize,
    /// One check per τ.
    pub taus: Vec<TauCheck>,
    /// The simulator's per-k unreliability, k = 0..=16.
    pub simulator: Vec<SimulatorNoise>,
}

/// Runs Lemma 3.
pub fn run(
    cfg: &TheoryConfig,
    ctx: &ExperimentContext<'_>,
    truth: &StepTruth,
) -> Result<ReliabilityCheck> {
    let bundle = &ctx.corpus.bundle;
    let true_correct = &bundle
        .teacher()
        .as_ref()
        .ok_or_else(|| Error::invalid("Lemma 3 needs the teacher"))?
        .true_correct;
    let counts = &truth.counts;
    let sampled: Vec<usize> = (0..counts.len()).filter(|&j| counts[j].is_some()).collect();
    let prior = corpus_prior(truth)?;
    let n = MC_SAMPLES;
    let bins = n as usize + 1;
    let sim = simulate(prior, &cfg.taus, cfg.posterior_draws, ctx.seed);

    // The corpus, by k.
    let mut steps_k = vec![0u64; bins];
    let mut below_k = vec![vec![0u64; bins]; cfg.taus.len()];
    let mut broken_k = vec![0u64; bins];
    let mut wrong_k = vec![0u64; bins];
    for &j in &sampled {
        let k = counts[j].expect("sampled") as usize;
        steps_k[k] += 1;
        // Without r (the world) the corpus column stays empty: 0 of 0.
        if let Some(rates) = &truth.success_rate {
            let r = f64::from(rates[j]);
            for (t, &tau) in cfg.taus.iter().enumerate() {
                below_k[t][k] += u64::from(r < tau);
            }
        }
        broken_k[k] += u64::from(truth.prefix_correct[j] == 0);
        wrong_k[k] += u64::from(true_correct[j] == 0);
    }

    let taus = cfg
        .taus
        .iter()
        .enumerate()
        .map(|(t, &tau)| {
            let rows: Vec<KRow> = (0..=n)
                .map(|k| KRow {
                    k,
                    closed: eta_eff(k, n, prior.a, prior.b, tau),
                    simulated: Proportion::wilson(sim.below[t][k as usize], sim.count[k as usize]),
                    corpus: Proportion::wilson(
                        below_k[t][k as usize],
                        if truth.success_rate.is_some() {
                            steps_k[k as usize]
                        } else {
                            0
                        },
                    ),
                })
                .collect();
            let (strictly_decreasing, underflow_from) = monotone(&rows, prior, tau);
            let compared: Vec<&KRow> = rows
                .iter()
                .filter(|r| r.simulated.trials >= MIN_SIMULATED)
                .collect();
            TauCheck {
                tau,
                strictly_decreasing,
                underflow_from,
                max_abs_error: compared
                    .iter()
                    .map(|r| (r.simulated.value - r.closed).abs())
                    .fold(0.0, f64::max),
                within_ci: compared
                    .iter()
                    .filter(|r| r.simulated.covers(r.closed))
                    .count(),
                compared: compared.len(),
                corpus_max_abs_gap: corpus_max_abs_gap(&rows),
                rows,
            }
        })
        .collect();
    Ok(ReliabilityCheck {
        prior,
        draws: cfg.posterior_draws,
        taus,
        simulator: (0..bins)
            .map(|k| SimulatorNoise {
                k: k as u32,
                broken_prefix: Proportion::wilson(broken_k[k], steps_k[k]),
                incorrect: Proportion::wilson(wrong_k[k], steps_k[k]),
            })
            .collect(),
    })
}

/// The Beta prior of the steps' success rates, fitted by moments to the steps the MC annotation
/// sampled (early-stopped steps have no K).
///
/// With the simulator's r known, the moments are r's own. Without it (the world), they are
/// recovered from the counts alone, as a researcher with real MC annotations would have to: for
/// K | r ~ Binomial(N, r), E[K/N] = E[r] and Var(K/N) = E[r](1 − E[r])/N + (1 − 1/N)·Var(r), so
/// Var(r) = (Var(K/N) − m(1 − m)/N)·N/(N − 1): the beta-binomial method of moments.
pub fn corpus_prior(truth: &StepTruth) -> Result<BetaFit> {
    let sampled = truth
        .counts
        .iter()
        .enumerate()
        .filter_map(|(j, k)| k.map(|k| (j, k)));
    match &truth.success_rate {
        Some(rates) => {
            let r: Vec<f64> = sampled.map(|(j, _)| f64::from(rates[j])).collect();
            fit_beta(&r)
        }
        None => {
            let n = f64::from(MC_SAMPLES);
            let shares: Vec<f64> = sampled.map(|(_, k)| f64::from(k) / n).collect();
            let (mean, var_share) = mean_var(&shares)?;
            let var = (var_share - mean * (1.0 - mean) / n) * n / (n - 1.0);
            beta_from_moments(mean, var, shares.len())
        }
    }
}

/// Sample mean and (n − 1) variance.
fn mean_var(v: &[f64]) -> Result<(f64, f64)> {
    let n = v.len();
    if n < 2 {
        return Err(Error::EmptyInput(
            "Lemma 3 needs at least two annotated steps to fit a prior".into(),
        ));
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    Ok((mean, var))
}

/// Method-of-moments Beta fit: a + b = m(1 − m)/v − 1.
pub fn fit_beta(r: &[f64]) -> Result<BetaFit> {
    let (mean, var) = mean_var(r)?;
    beta_from_moments(mean, var, r.len())
}

/// The Beta(a, b) with `mean` and `var`, from `n` steps.
fn beta_from_moments(mean: f64, var: f64, n: usize) -> Result<BetaFit> {
    if !(var > 0.0 && var < mean * (1.0 - mean)) {
        return Err(Error::Other(format!(
            "success rates with mean {mean} and variance {var} admit no Beta prior"
        )));
    }
    let total = mean * (1.0 - mean) / var - 1.0;
    Ok(BetaFit {
        a: mean * total,
        b: (1.0 - mean) * total,
        mean,
        var,
        steps: n,
    })
}

/// Strict decrease of η_eff over k, judged where f64 resolves it: near 1 through the complement
/// 1 − I_τ(a + k, b + N − k) = I_{1−τ}(b + N − k, a + k), and a run of exact zeros at the end is
/// underflow, reported rather than counted as a tie.
fn monotone(rows: &[KRow], prior: BetaFit, tau: f64) -> (bool, Option<u32>) {
    let n = MC_SAMPLES as f64;
    let complement = |k: u32| beta_reg(prior.b + n - k as f64, prior.a + k as f64, 1.0 - tau);
    let underflow_from = rows.iter().position(|r| r.closed == 0.0).map(|i| i as u32);
    let strict = rows.windows(2).all(|w| {
        let (k, a, b) = (w[0].k, w[0].closed, w[1].closed);
        b < a || (a == 0.0 && b == 0.0) || (a == b && complement(k + 1) > complement(k))
    });
    (strict, underflow_from)
}

struct Simulated {
    /// Draws per k.
    count: Vec<u64>,
    /// Draws with r < τ per τ and k.
    below: Vec<Vec<u64>>,
}

/// Draws r ~ Beta(a, b) and K ~ Binomial(16, r) `draws` times; counts are integers, so their
/// merge does not depend on how the chunks were scheduled.
fn simulate(prior: BetaFit, taus: &[f64], draws: usize, seed: u64) -> Simulated {
    let bins = MC_SAMPLES as usize + 1;
    let beta = Beta::new(prior.a, prior.b).expect("a fitted prior has positive parameters");
    let chunks = draws.div_ceil(DRAWS_PER_CHUNK);
    let empty = || Simulated {
        count: vec![0; bins],
        below: vec![vec![0; bins]; taus.len()],
    };
    (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut out = empty();
            let mut rng = stream(seed, StreamKind::Posterior, c as u64, 0);
            let todo = DRAWS_PER_CHUNK.min(draws - c * DRAWS_PER_CHUNK);
            for _ in 0..todo {
                let r: f64 = beta.sample(&mut rng);
                let k = (0..MC_SAMPLES).filter(|_| uniform(&mut rng) < r).count();
                out.count[k] += 1;
                for (t, &tau) in taus.iter().enumerate() {
                    out.below[t][k] += u64::from(r < tau);
                }
            }
            out
        })
        .reduce(empty, |mut a, b| {
            a.count.iter_mut().zip(&b.count).for_each(|(x, y)| *x += y);
            for (at, bt) in a.below.iter_mut().zip(&b.below) {
                at.iter_mut().zip(bt).for_each(|(x, y)| *x += y);
            }
            a
        })
}

/// Largest |corpus − closed| over the rows with at least [`MIN_SIMULATED`] corpus steps, or
/// `None` when there are none.
fn corpus_max_abs_gap(rows: &[KRow]) -> Option<f64> {
    rows.iter()
        .filter(|r| r.corpus.trials >= MIN_SIMULATED)
        .map(|r| (r.corpus.value - r.closed).abs())
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moment_fit_recovers_a_known_beta() {
        // Beta(2, 6): mean 1/4, variance ab/((a+b)²(a+b+1)) = 12/(64·9) = 1/48.
        let fit_of = |mean: f64, var: f64| {
            let total = mean * (1.0 - mean) / var - 1.0;
            (mean * total, (1.0 - mean) * total)
        };
        let (a, b) = fit_of(0.25, 1.0 / 48.0);
        assert!((a - 2.0).abs() < 1e-12 && (b - 6.0).abs() < 1e-12);
        let fit = fit_beta(&[0.1, 0.2, 0.3, 0.4]).unwrap();
        // mean 0.25, sample variance 0.05/3.
        assert!((fit.mean - 0.25).abs() < 1e-15);
        assert!((fit.var - 0.05 / 3.0).abs() < 1e-15);
        assert!((fit.a / (fit.a + fit.b) - 0.25).abs() < 1e-12);
        assert!(fit_beta(&[0.5, 0.5]).is_err());
    }

    #[test]
    fn the_prior_from_counts_alone_recovers_the_prior_of_the_rates() {
        // r ~ Beta(0.6, 1.4), K ~ Binomial(16, r): the world's case, where only K is seen.
        let prior = BetaFit {
            a: 0.6,
            b: 1.4,
            mean: 0.3,
            var: 0.07,
            steps: 0,
        };
        let mut rng = stream(11, StreamKind::Posterior, 0, 0);
        let beta = Beta::new(prior.a, prior.b).unwrap();
        let counts: Vec<Option<u32>> = (0..200_000)
            .map(|_| {
                let r: f64 = beta.sample(&mut rng);
                Some((0..MC_SAMPLES).filter(|_| uniform(&mut rng) < r).count() as u32)
            })
            .collect();
        let truth = |rates: Option<Vec<f32>>| StepTruth {
            kind: super::super::truth::TruthKind::World,
            question: vec![],
            counts: counts.clone(),
            prefix_correct: vec![],
            success_rate: rates,
        };
        let fit = corpus_prior(&truth(None)).unwrap();
        assert!(
            (fit.a - 0.6).abs() < 0.03 && (fit.b - 1.4).abs() < 0.07,
            "{fit:?}"
        );
        // The naive fit, treating K/16 as r, mistakes the binomial noise for spread in r.
        let shares: Vec<f64> = counts
            .iter()
            .map(|k| f64::from(k.unwrap()) / 16.0)
            .collect();
        let naive = fit_beta(&shares).unwrap();
        assert!(naive.var > fit.var * 1.1, "{naive:?} vs {fit:?}");
        // With rates present, the fit is theirs and the counts are not used.
        let rates = vec![0.1f32, 0.2, 0.3, 0.4];
        let mut with_rates = truth(Some(rates));
        with_rates.counts = vec![Some(0); 4];
        let fit = corpus_prior(&with_rates).unwrap();
        assert!((fit.mean - 0.25).abs() < 1e-7, "{fit:?}");
    }

    #[test]
    fn simulated_posteriors_match_the_closed_form() {
        let prior = BetaFit {
            a: 2.0,
            b: 3.0,
            mean: 0.4,
            var: 0.04,
            steps: 0,
        };
        let sim = simulate(prior, &[0.2], 200_000, 5);
        assert_eq!(sim.count.iter().sum::<u64>(), 200_000);
        for k in 0..=16u32 {
            let (c, b) = (sim.count[k as usize], sim.below[0][k as usize]);
            if c < 2000 {
                continue;
            }
            let p = Proportion::wilson_z(b, c, 4.0);
            let closed = eta_eff(k, 16, 2.0, 3.0, 0.2);
            assert!(p.covers(closed), "k = {k}: {p:?} vs {closed}");
        }
        // Chunking does not change the counts' meaning: the same seed gives the same counts.
        let again = simulate(prior, &[0.2], 200_000, 5);
        assert_eq!(sim.count, again.count);
    }

    #[test]
    fn no_comparable_corpus_row_gives_no_gap_rather_than_zero() {
        let row = |k: u32, successes: u64, trials: u64| KRow {
            k,
            closed: 0.5,
            simulated: Proportion::wilson(1, 2),
            corpus: Proportion::wilson(successes, trials),
        };
        assert_eq!(corpus_max_abs_gap(&[]), None);
        assert_eq!(corpus_max_abs_gap(&[row(0, 3, MIN_SIMULATED - 1)]), None);
        let gap = corpus_max_abs_gap(&[
            row(0, 3, MIN_SIMULATED - 1),
            row(1, 70, 200),
            row(2, 120, 200),
        ]);
        // 70/200 is 0.15 from 0.5, 120/200 is 0.10; the short row is left out.
        assert!((gap.unwrap() - 0.15).abs() < 1e-12, "{gap:?}");
    }
}
