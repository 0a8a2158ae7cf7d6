//! Checking an engine against the f64 oracle on the user's own data (`mprm verify`).
//!
//! Per-sample gradient libraries offer no way to validate their numbers on a user's hardware;
//! this does: the same rollouts go through the chosen engine and through [`super::oracle`], and
//! the report lists the worst absolute and relative error of every statistic with the rollout
//! where it occurs.
//!
//! Relative error of a per-rollout statistic is `|a − b| / max(|b|, 10⁻⁶ · max_k |b_k|)`:
//! near-zero entries (the centred norm of a one-step rollout is exactly 0) are judged against the
//! statistic's scale instead of against themselves. Vector outputs are judged as vectors: a
//! rollout's projections by `‖Δ‖ / ‖b‖` over its k directions, the summed gradient by
//! `max |Δ| / max |b|` (a component that cancels across rollouts is small only by accident, and
//! f32 accumulation cannot resolve it better than the other components).

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

/// The default relative tolerance for an engine reading features of `dtype`: 1e-5 for both.
///
/// Both sides widen the same stored values exactly (a bf16 value is an f32 with a shorter
/// mantissa), so the features' type adds no error and only the engine's accumulation remains. The
/// CPU engine sums in f64. The linear head's CUDA kernel accumulates in f32 along chains of at
/// most L = 16 + log₂(1024) = 26 additions per reduction (each thread folds up to 16 columns, then
/// a tree over its group), plus the rollout's steps for g and s: the worst-case bound
/// 2·(L + n)·u, u = 2⁻²⁴, is 7e-6 of the summed magnitudes for rollouts of up to 30 steps, at
/// any d the kernel takes (≤ 16,384). The MLP head's products run over d in one chain per thread
/// (worst case 2·d·u = 4.9e-4 at d = 4096); there 1e-5 rests on the typical √d growth of rounding
/// error (3.8e-6 at d = 4096), which the GPU check (`scripts/gpu-check.sh`) puts to the test. A
/// dropped column at d = 4096 moves the squared norms by about 1/4096 = 2.4e-4, so it fails (a
/// test drops one). The emulated kernel tests use per-output bounds instead (`gradnorm::twins`).
pub fn default_tolerance(dtype: FeatureDtype) -> f64 {
    match dtype {
        FeatureDtype::F32 | FeatureDtype::Bf16 => 1e-5,
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
        let norm = |v: &[f32]| {
            v.iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt()
        };
        let rows_want: Vec<f64> = want.chunks(*k).map(norm).collect();
        let diffs: Vec<f64> = want
            .chunks(*k)
            .zip(got.chunks(*k))
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        // Compare the per-rollout norms of the difference with those of the reference.
        let mut e = column_error("projected", &rows_want, &rows_want, &reference.rollouts);
        let floor = (1e-6 * rows_want.iter().fold(0.0f64, |m, v| m.max(*v))).max(f64::MIN_POSITIVE);
        for ((d, w), &owner) in diffs.iter().zip(&rows_want).zip(&reference.rollouts) {
            let d = if d.is_nan() { f64::INFINITY } else { *d };
            e.max_abs = e.max_abs.max(d);
            let rel = d / w.max(floor);
            if rel > e.max_rel {
                e.max_rel = rel;
                e.worst_rollout = owner;
            }
        }
        out.push(e);
    }
    Ok(out)
}

fn column_error(name: &str, want: &[f64], got: &[f64], owners: &[usize]) -> StatError {
    scaled_error(name, want, got, owners, 1e-6)
}

/// Errors relative to `max(|b|, floor_fraction · max_k |b_k|)`.
fn scaled_error(
    name: &str,
    want: &[f64],
    got: &[f64],
    owners: &[usize],
    floor_fraction: f64,
) -> StatError {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = (floor_fraction * scale).max(f64::MIN_POSITIVE);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradnorm::RolloutRow;
    use crate::head::{HeadKind, HeadParams};

    fn stats(rows: &[RolloutRow], projected: Option<Vec<f32>>) -> RolloutGradStats {
        let head = HeadParams::init(HeadKind::Linear, 2, 0);
        RolloutGradStats::from_rows(
            &head,
            Reduction::Mean,
            vec![4, 7],
            vec![1, 2],
            rows,
            projected.map(|p| (2, p)),
        )
    }

    fn row(scale: f64) -> RolloutRow {
        RolloutRow {
            loss: 0.5 * scale,
            groups: [2.0 * scale, 0.25 * scale, 0.0, 0.0],
            centered: 0.0,
            sum_step: scale,
            resid_sq: 0.1 * scale,
        }
    }

    #[test]
    fn errors_name_the_worst_rollout_and_floor_zeros() {
        let want = stats(&[row(1.0), row(2.0)], Some(vec![3.0, 4.0, 0.0, 1.0]));
        let same = compare(&want, &want).unwrap();
        assert!(same.iter().all(|e| e.max_abs == 0.0 && e.max_rel == 0.0));
        assert_eq!(same.len(), 2 + 2 + 3 + 1);

        let mut bad = row(2.0);
        bad.sum_step *= 1.0 + 1e-3;
        bad.centered = 1e-9; // the reference is exactly 0 here
        let got = stats(&[row(1.0), bad], Some(vec![3.0, 4.0, 0.0, 1.001]));
        let errs = compare(&want, &got).unwrap();
        let by = |n: &str| errs.iter().find(|e| e.name == n).unwrap().clone();
        let s = by("sum_step_grad_sq");
        assert!(
            (s.max_rel - 1e-3).abs() < 1e-12 && s.worst_rollout == 7,
            "{s:?}"
        );
        // Every reference centred value is 0, so the floor is 0 too: any error is enormous.
        assert!(by("centered_grad_sq").max_rel > 1e3);
        // Projections compare per rollout as vectors: ‖(0, 0.001)‖ / ‖(0, 1)‖.
        let p = by("projected");
        assert!(
            (p.max_rel - 1e-3).abs() < 1e-6 && p.worst_rollout == 7,
            "{p:?}"
        );
        assert!(by("loss").max_rel == 0.0);
    }

    #[test]
    fn a_dropped_column_fails_the_default_bf16_tolerance_at_d_4096() {
        use crate::data::features::{BundleParts, FeatureBundle, FeatureData, FeatureDtype};
        use crate::gradnorm::cpu::CpuEngine;
        use crate::gradnorm::fixture::{RandomBundleSpec, random_bundle};
        use crate::gradnorm::{GradInput, GradNormEngine};
        use half::bf16;

        let (d, dtype) = (4096, FeatureDtype::Bf16);
        let bundle = random_bundle(&RandomBundleSpec::realistic(24, d, dtype, 3)).unwrap();
        let mut rows = bundle.features().to_f32_vec();
        for r in rows.chunks_exact_mut(d) {
            r[1234] = 0.0;
        }
        let dropped = FeatureBundle::from_parts(BundleParts {
            features: FeatureData::Bf16(rows.into_iter().map(bf16::from_f32).collect()),
            dim: d,
            offsets: bundle.offsets().to_vec(),
            mc_scores: bundle.mc_scores().to_vec(),
            source: bundle.source().to_vec(),
            line: bundle.line().map(<[u64]>::to_vec),
            labels: None,
            teacher: None,
            meta: bundle.meta().clone(),
        })
        .unwrap();
        let head = HeadParams::init(HeadKind::Linear, d, 5);
        let targets: Vec<f32> = bundle
            .mc_scores()
            .iter()
            .map(|&m| (m > 0.0) as u8 as f32)
            .collect();
        let tol = default_tolerance(dtype);
        let input = GradInput::new(&bundle, &targets, &head, None).unwrap();
        let faithful = verify(&CpuEngine, Reference::Oracle, &input, Reduction::Mean, tol).unwrap();
        assert!(faithful.passed(), "{:?}", faithful.errors);
        let want = oracle::stats(&input, Reduction::Mean, None).unwrap();
        let broken = GradInput::new(&dropped, &targets, &head, None).unwrap();
        let got = CpuEngine
            .rollout_stats(&broken, Reduction::Mean, None)
            .unwrap();
        let worst = compare(&want, &got)
            .unwrap()
            .iter()
            .map(|e| e.max_rel)
            .fold(0.0, f64::max);
        assert!(
            worst > 10.0 * tol,
            "a dropped column moved the statistics by only {worst}"
        );
    }

    #[test]
    fn nan_is_an_infinite_error() {
        let want = stats(&[row(1.0), row(2.0)], None);
        let mut r = row(2.0);
        r.loss = f64::NAN;
        let errs = compare(&want, &stats(&[row(1.0), r], None)).unwrap();
        let loss = errs.iter().find(|e| e.name == "loss").unwrap();
        assert!(loss.max_rel.is_infinite() && loss.worst_rollout == 7);
        let report = VerifyReport {
            rollouts: 2,
            tolerance: 1e-5,
            errors: errs,
        };
        assert!(!report.passed());
    }
}
