//! The statistics every experiment reports: means with 95% confidence intervals over seeds,
//! Spearman correlations with bootstrap intervals, and top-fraction means.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{ContinuousCDF, StudentsT};

pub use crate::linalg::solve;

/// A mean with the half-width of its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeanCi {
    /// Sample mean.
    #[serde(with = "super::nan")]
    pub mean: f64,
    /// Half-width of the 95% t-interval (NaN with fewer than two samples).
    #[serde(with = "super::nan")]
    pub half_width: f64,
    /// Number of samples.
    pub n: usize,
}

impl MeanCi {
    /// Lower end of the interval.
    pub fn lo(&self) -> f64 {
        self.mean - self.half_width
    }

    /// Upper end of the interval.
    pub fn hi(&self) -> f64 {
        self.mean + self.half_width
    }
}

/// Mean and 95% Student-t confidence interval of `xs`.
pub fn mean_ci95(xs: &[f64]) -> MeanCi {
    let n = xs.len();
    if n == 0 {
        return MeanCi {
            mean: f64::NAN,
            half_width: f64::NAN,
            n,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return MeanCi {
            mean,
            half_width: f64::NAN,
            n,
        };
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .expect("positive degrees of freedom")
        .inverse_cdf(0.975);
    MeanCi {
        mean,
        half_width: t * (var / n as f64).sqrt(),
        n,
    }
}

/// Ranks with ties sharing their average rank (1-based).
pub fn average_ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut ranks = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Pearson correlation; NaN when either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// Spearman rank correlation (ties get average ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// A statistic with a percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    /// The statistic on the full sample.
    #[serde(with = "super::nan")]
    pub value: f64,
    /// 2.5th percentile of the bootstrap distribution.
    #[serde(with = "super::nan")]
    pub lo: f64,
    /// 97.5th percentile of the bootstrap distribution.
    #[serde(with = "super::nan")]
    pub hi: f64,
}

/// Spearman correlation of paired samples with a 95% percentile bootstrap interval over
/// `resamples` paired resamples drawn with `seed`.
pub fn spearman_bootstrap(x: &[f64], y: &[f64], resamples: usize, seed: u64) -> Estimate {
    let value = spearman(x, y);
    let n = x.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draws = Vec::with_capacity(resamples);
    let (mut bx, mut by) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..resamples {
        for k in 0..n {
            let i = rng.random_range(0..n);
            bx[k] = x[i];
            by[k] = y[i];
        }
        let r = spearman(&bx, &by);
        if r.is_finite() {
            draws.push(r);
        }
    }
    let [lo, hi] = percentile_ci95(draws);
    Estimate { value, lo, hi }
}

/// The 2.5th and 97.5th percentiles of bootstrap draws (nearest rank; NaN without draws).
pub fn percentile_ci95(mut draws: Vec<f64>) -> [f64; 2] {
    draws.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if draws.is_empty() {
            f64::NAN
        } else {
            draws[((draws.len() - 1) as f64 * p).round() as usize]
        }
    };
    [q(0.025), q(0.975)]
}

/// A proportion with its 95% Wilson score interval (sound near 0 and 1, unlike the normal
/// approximation).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Proportion {
    /// successes / trials (NaN without trials).
    #[serde(with = "super::nan")]
    pub value: f64,
    /// Lower end of the interval.
    #[serde(with = "super::nan")]
    pub lo: f64,
    /// Upper end of the interval.
    #[serde(with = "super::nan")]
    pub hi: f64,
    /// Successes.
    pub successes: u64,
    /// Trials.
    pub trials: u64,
}

impl Proportion {
    /// `successes` out of `trials` with the 95% Wilson interval.
    pub fn wilson(successes: u64, trials: u64) -> Self {
        Self::wilson_z(successes, trials, 1.959_963_984_540_054)
    }

    /// The same at an explicit normal quantile `z` (e.g. a Bonferroni-adjusted one).
    pub fn wilson_z(successes: u64, trials: u64, z: f64) -> Self {
        if trials == 0 {
            return Proportion {
                value: f64::NAN,
                lo: f64::NAN,
                hi: f64::NAN,
                successes,
                trials,
            };
        }
        let n = trials as f64;
        let p = successes as f64 / n;
        let z2 = z * z;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        Proportion {
            value: p,
            lo: (centre - half).max(0.0),
            hi: (centre + half).min(1.0),
            successes,
            trials,
        }
    }

    /// True when `x` lies inside the interval.
    pub fn covers(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// Sample standard deviation (n − 1 denominator); NaN with fewer than two samples.
pub fn sample_sd(xs: &[f64]) -> f64 {
    let n = xs.len();
    if n < 2 {
        return f64::NAN;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
}

/// Rollouts grouped for a cluster bootstrap: strata (sources) → clusters (questions) → members.
/// Rollouts that share a question are not independent, and BIS ranks within each source, so a
/// resample draws whole questions with replacement, separately within every source.
#[derive(Debug, Clone)]
pub struct Clusters {
    strata: Vec<Vec<Vec<usize>>>,
}

impl Clusters {
    /// Groups items `0..stratum.len()` by stratum and, within it, by cluster id (in order of
    /// first appearance, so the grouping is deterministic).
    pub fn new(stratum: &[u32], cluster: &[i64]) -> Self {
        use std::collections::BTreeMap;
        // Per stratum: its clusters' members, and where each cluster id sits in that list.
        type Stratum = (Vec<Vec<usize>>, std::collections::HashMap<i64, usize>);
        let mut by: BTreeMap<u32, Stratum> = BTreeMap::new();
        for (i, (&s, &c)) in stratum.iter().zip(cluster).enumerate() {
            let (list, index) = by.entry(s).or_default();
            let k = *index.entry(c).or_insert_with(|| {
                list.push(Vec::new());
                list.len() - 1
            });
            list[k].push(i);
        }
        Clusters {
            strata: by.into_values().map(|(l, _)| l).collect(),
        }
    }

    /// Every item once, in stratum and cluster order.
    pub fn all(&self) -> Vec<usize> {
        self.strata.iter().flatten().flatten().copied().collect()
    }

    /// Number of clusters over all strata.
    pub fn n_clusters(&self) -> usize {
        self.strata.iter().map(Vec::len).sum()
    }

    /// One resample: within every stratum, as many clusters as it has, drawn with replacement.
    pub fn resample(&self, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let mut out = Vec::new();
        for clusters in &self.strata {
            for _ in 0..clusters.len() {
                out.extend_from_slice(&clusters[rng.random_range(0..clusters.len())]);
            }
        }
        out
    }
}

/// A statistic of an index list with its 95% percentile interval from a cluster bootstrap.
pub fn cluster_bootstrap(
    clusters: &Clusters,
    resamples: usize,
    seed: u64,
    statistic: impl Fn(&[usize]) -> f64,
) -> Estimate {
    let value = statistic(&clusters.all());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let draws: Vec<f64> = (0..resamples)
        .map(|_| statistic(&clusters.resample(&mut rng)))
        .filter(|v| v.is_finite())
        .collect();
    let [lo, hi] = percentile_ci95(draws);
    Estimate { value, lo, hi }
}

/// Residuals of `y` after least squares on an intercept and `controls` (each as long as `y`).
/// A control that is constant (or collinear) is absorbed by a tiny ridge term instead of failing.
pub fn residualize(y: &[f64], controls: &[Vec<f64>]) -> Vec<f64> {
    let k = controls.len() + 1;
    let col = |c: usize, i: usize| if c == 0 { 1.0 } else { controls[c - 1][i] };
    let mut a = vec![0.0; k * k];
    let mut b = vec![0.0; k];
    for (i, &yi) in y.iter().enumerate() {
        for r in 0..k {
            b[r] += col(r, i) * yi;
            for c in 0..k {
                a[r * k + c] += col(r, i) * col(c, i);
            }
        }
    }
    let trace: f64 = (0..k).map(|r| a[r * k + r]).sum();
    for r in 0..k {
        a[r * k + r] += 1e-9 * trace.max(1.0);
    }
    let beta = solve(&mut a, &mut b, k);
    y.iter()
        .enumerate()
        .map(|(i, yi)| yi - (0..k).map(|c| beta[c] * col(c, i)).sum::<f64>())
        .collect()
}

/// Spearman correlation of `x` and `y` controlling for `controls`: the Pearson correlation of the
/// ranks of `x` and `y` after each is regressed on the ranks of the controls. With no controls it
/// is the plain Spearman correlation.
pub fn partial_spearman(x: &[f64], y: &[f64], controls: &[Vec<f64>]) -> f64 {
    if controls.is_empty() {
        return spearman(x, y);
    }
    let ranked: Vec<Vec<f64>> = controls.iter().map(|c| average_ranks(c)).collect();
    pearson(
        &residualize(&average_ranks(x), &ranked),
        &residualize(&average_ranks(y), &ranked),
    )
}

/// The (partial) Spearman correlation of `x` and `y` computed within each group of the items
/// `idx` and averaged with weights equal to the groups' sizes; groups where it is undefined
/// (fewer than 3 items, or a constant side) are left out. `controls` are per-item covariates.
pub fn within_group_spearman(
    idx: &[usize],
    group: &[u32],
    x: &[f64],
    y: &[f64],
    controls: &[&[f64]],
) -> f64 {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for &i in idx {
        by.entry(group[i]).or_default().push(i);
    }
    let (mut acc, mut weight) = (0.0, 0.0);
    for members in by.values() {
        if members.len() < 3 {
            continue;
        }
        let pick = |v: &[f64]| members.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let cs: Vec<Vec<f64>> = controls.iter().map(|c| pick(c)).collect();
        let r = partial_spearman(&pick(x), &pick(y), &cs);
        if r.is_finite() {
            acc += r * members.len() as f64;
            weight += members.len() as f64;
        }
    }
    if weight > 0.0 { acc / weight } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_matches_a_hand_computation() {
        // mean 2, sd 1, n 3: t(0.975, 2) = 4.302652729911275.
        let m = mean_ci95(&[1.0, 2.0, 3.0]);
        assert_eq!(m.mean, 2.0);
        assert!((m.half_width - 4.302652729911275 / 3f64.sqrt()).abs() < 1e-9);
        assert!(mean_ci95(&[1.0]).half_width.is_nan());
    }

    #[test]
    fn spearman_with_ties() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // x = [1,2,3,4,5], y = [2,1,4,3,5]: d² = 1+1+1+1+0 = 4 → 1 − 6·4/(5·24) = 0.8.
        assert!(
            (spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]) - 0.8).abs() < 1e-12
        );
    }

    #[test]
    fn bootstrap_brackets_the_estimate() {
        let x: Vec<f64> = (0..200).map(|i| i as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| v + ((v * 7.0) % 13.0) * 10.0).collect();
        let e = spearman_bootstrap(&x, &y, 200, 1);
        assert!(e.lo <= e.value && e.value <= e.hi, "{e:?}");
        assert_eq!(e, spearman_bootstrap(&x, &y, 200, 1));
    }

    #[test]
    fn wilson_matches_a_hand_computation() {
        // 8 of 10 at z = 1.96: centre (0.8 + 0.19208)/1.38416 = 0.71674, half-width
        // 1.96/1.38416 · √(0.016 + 0.009604) = 0.22658.
        let p = Proportion::wilson_z(8, 10, 1.96);
        assert_eq!(p.value, 0.8);
        assert!(
            (p.lo - 0.49016).abs() < 1e-4 && (p.hi - 0.94332).abs() < 1e-4,
            "{p:?}"
        );
        assert!(p.covers(0.8) && !p.covers(0.45));
        let zero = Proportion::wilson(0, 50);
        assert_eq!(zero.lo, 0.0);
        assert!(zero.hi > 0.0 && zero.hi < 0.1);
        assert!(Proportion::wilson(0, 0).value.is_nan());
    }

    #[test]
    fn partial_spearman_removes_a_shared_driver() {
        // x and y both follow z; given z they are independent noise.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let z: Vec<f64> = (0..4000).map(|_| rng.random_range(0.0..1.0)).collect();
        let x: Vec<f64> = z
            .iter()
            .map(|v| v + 0.3 * rng.random_range(0.0..1.0))
            .collect();
        let y: Vec<f64> = z
            .iter()
            .map(|v| v + 0.3 * rng.random_range(0.0..1.0))
            .collect();
        assert!(spearman(&x, &y) > 0.7);
        assert!(partial_spearman(&x, &y, std::slice::from_ref(&z)).abs() < 0.06);
    }

    #[test]
    fn residuals_of_a_linear_fit_are_orthogonal_to_its_columns() {
        let c = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        let y = vec![2.1, 3.9, 6.2, 7.8, 10.1];
        // Up to the tiny ridge term that keeps a constant control from failing.
        let r = residualize(&y, std::slice::from_ref(&c));
        assert!(r.iter().sum::<f64>().abs() < 1e-5);
        assert!(r.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>().abs() < 1e-5);
        assert!(r.iter().map(|v| v.abs()).fold(0.0, f64::max) < 0.3);
    }

    #[test]
    fn within_group_spearman_ignores_between_group_shifts() {
        // Inside each group y falls with x, but the groups are shifted so the pooled
        // correlation is positive: the within-group value must be −1.
        let x = vec![1.0, 2.0, 3.0, 11.0, 12.0, 13.0];
        let y = vec![3.0, 2.0, 1.0, 13.0, 12.0, 11.0];
        let g = vec![0, 0, 0, 1, 1, 1];
        assert!(spearman(&x, &y) > 0.5);
        let w = within_group_spearman(&[0, 1, 2, 3, 4, 5], &g, &x, &y, &[]);
        assert!((w + 1.0).abs() < 1e-12, "{w}");
    }

    #[test]
    fn cluster_bootstrap_resamples_whole_clusters_within_strata() {
        let stratum = vec![0, 0, 0, 1, 1];
        let cluster = vec![7, 7, 8, 7, 9];
        let c = Clusters::new(&stratum, &cluster);
        assert_eq!(c.n_clusters(), 4);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let r = c.resample(&mut rng);
            // Stratum 0 contributes two clusters: {0,1} twice, {2} twice, or one of each.
            let s0: Vec<usize> = r.iter().copied().filter(|&i| i < 3).collect();
            assert!([2, 3, 4].contains(&s0.len()), "{s0:?}");
            assert_eq!(
                s0.iter().filter(|&&i| i == 0).count(),
                s0.iter().filter(|&&i| i == 1).count()
            );
            assert_eq!(r.iter().filter(|&&i| i >= 3).count(), 2);
        }
        let e = cluster_bootstrap(&c, 200, 5, |idx| idx.len() as f64);
        assert_eq!(e.value, 5.0);
        assert!(e.lo >= 4.0 && e.hi <= 6.0);
    }
}
