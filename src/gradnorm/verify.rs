//! Checking an engine against the f64 oracle on the user's own data (`mprm verify`).
//!
//! Per-sample gradient libraries offer no way to validate their numbers on a user's hardware;
//! this does: the same rollouts go through the chosen engine and through [`super::oracle`], and
//! the report lists the worst absolute and relative error of every statistic with the rollout
//! where it occurs.
//!
//! Relative error is `|a − b| / max(|b|, 10⁻⁶ · max_k |b_k|)`: near-zero entries (the centred
//! norm of a one-step rollout is exactly 0) are judged against the statistic's scale instead of
//! against themselves.

use crate::data::features::FeatureDtype;
use crate::error::{Error, Result};

use super::{GradInput, GradNormEngine, Reduction, RolloutGradStats, oracle};

/// The worst disagreement of one statistic.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatError {
    /// Statistic name (an output column).
    pub name: String,
    /// Largest |engine − oracle|.
    pub max_abs: f64,
    /// Largest relative error (see the module docs).
    pub max_rel: f64,
    /// Bundle index of the rollout with the largest relative error.
    pub worst_rollout: usize,
}

/// The outcome of one verification.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VerifyReport {
    /// Rollouts compared.
    pub rollouts: usize,
    /// Relative tolerance applied.
    pub tolerance: f64,
    /// Per-statistic errors, in column order, then `total_gradient`.
    pub errors: Vec<StatError>,
}

impl VerifyReport {
    /// True when every statistic is within tolerance.
    pub fn passed(&self) -> bool {
        self.errors.iter().all(|e| e.max_rel <= self.tolerance)
    }
}

/// The default tolerance for an engine reading features of `dtype` (both the engine and the
/// oracle read the same stored values, so only accumulation error remains).
pub fn default_tolerance(dtype: FeatureDtype) -> f64 {
    match dtype {
        FeatureDtype::F32 => 1e-5,
        FeatureDtype::Bf16 => 1e-2,
    }
}

/// Errors of `candidate` against `reference`, statistic by statistic.
pub fn compare(
    reference: &RolloutGradStats,
    candidate: &RolloutGradStats,
) -> Result<Vec<StatError>> {
    if reference.rollouts != candidate.rollouts {
        return Err(Error::invalid("the two runs scored different rollouts"));
    }
    let cand = candidate.columns();
    let mut out = Vec::new();
    for (name, want) in reference.columns() {
        let got = cand
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| Error::invalid(format!("candidate lacks statistic {name}")))?;
        out.push(column_error(&name, want, got, &reference.rollouts));
    }
    if let (Some((k, want)), Some((k2, got))) = (&reference.projected, &candidate.projected) {
        if k != k2 {
            return Err(Error::invalid("the two runs used different projections"));
        }
        let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
        let owners: Vec<usize> = reference
            .rollouts
            .iter()
            .flat_map(|&r| std::iter::repeat_n(r, *k))
            .collect();
        out.push(column_error("projected", &want, &got, &owners));
    }
    Ok(out)
}

fn column_error(name: &str, want: &[f64], got: &[f64], owners: &[usize]) -> StatError {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = (1e-6 * scale).max(f64::MIN_POSITIVE);
    let mut e = StatError {
        name: name.to_string(),
        max_abs: 0.0,
        max_rel: 0.0,
        worst_rollout: owners.first().copied().unwrap_or(0),
    };
    for ((w, g), &owner) in want.iter().zip(got).zip(owners) {
        // A NaN from either side must fail the check, so it counts as an infinite error.
        let abs = match (w - g).abs() {
            a if a.is_nan() => f64::INFINITY,
            a => a,
        };
        let rel = abs / w.abs().max(floor);
        e.max_abs = e.max_abs.max(abs);
        if rel > e.max_rel {
            e.max_rel = rel;
            e.worst_rollout = owner;
        }
    }
    e
}

/// What an engine is checked against.
#[derive(Clone, Copy)]
pub enum Reference<'a> {
    /// The f64 oracle (slow, exact up to f64 rounding).
    Oracle,
    /// Another engine, e.g. the CPU engine when checking CUDA on a large bundle.
    Engine(&'a dyn GradNormEngine),
}

/// Runs `engine` and `reference` on `input` and compares every statistic and the summed
/// gradient.
pub fn verify(
    engine: &dyn GradNormEngine,
    reference: Reference<'_>,
    input: &GradInput<'_>,
    reduction: Reduction,
    tolerance: f64,
) -> Result<VerifyReport> {
    let (want, want_total) = match reference {
        Reference::Oracle => (
            oracle::stats(input, reduction, None)?,
            oracle::total_gradient(input, reduction),
        ),
        Reference::Engine(e) => (
            e.rollout_stats(input, reduction, None)?,
            e.total_gradient(input, reduction)?,
        ),
    };
    let got = engine.rollout_stats(input, reduction, None)?;
    let mut errors = compare(&want, &got)?;
    let got_total = engine.total_gradient(input, reduction)?;
    // The summed gradient has no per-rollout owner: its "worst rollout" column reads 0.
    let owners = vec![0; want_total.len()];
    errors.push(column_error(
        "total_gradient",
        &want_total,
        &got_total,
        &owners,
    ));
    Ok(VerifyReport {
        rollouts: input.len(),
        tolerance,
        errors,
    })
}
