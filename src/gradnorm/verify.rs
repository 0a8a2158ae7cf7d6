//! Checking an engine against the f64 oracle on the user's own data (`mprm verify`).
//!
//! Per-sample gradient libraries offer no way to validate their numbers on a user's hardware;
//! this does: the same rollouts go through the chosen engine and through [`super::oracle`], and
//! the report lists the worst absolute and relative error of every statistic with the rollout
//! where it occurs.
//!
//! Relative error of a per-rollout statistic is `|a − b| / max(m, 10⁻⁶ · max_k m_k)`, where m is
//! the size the statistic would have if none of its sums cancelled ([`oracle::magnitudes`]): the
//! squared norm of Σ_j |r_j| |∂z_j/∂θ| for a gradient norm, of Σ_j (|r_j| + mean_i |r_i|)
//! |∂z_j/∂θ| for the centred one, and the value itself for the loss, Σ_j ‖∇_θ(c·BCE_j)‖² and Σ_j r_j² (sums of
//! non-negative terms). An engine that rounds each term in f32 errs by a multiple of m, not of
//! the value: judged against the value, the bias gradient (Σ_j r_j)² of a rollout whose residuals
//! nearly cancel, and the centred norm, whose weights r_j − r̄ sum to zero, read up to 1.4e-4 with
//! correct f32 sums (the CPU engine's `--accumulate f32` on 50,000 rollouts of a d = 4096 bf16
//! bundle at the teacher, 2026-12-06), 14 times the 10⁻⁵ that a dropped column must exceed. The
//! floor keeps near-zero entries (the centred norm of a one-step rollout is exactly 0) judged
//! against the statistic's scale. Vector outputs are judged as vectors: a
//! rollout's projections by `‖Δ‖ / ‖b‖` over its k directions, the summed gradient by
//! `max |Δ| / max |b|` (a component that cancels across rollouts is small only by accident, and
//! f32 accumulation cannot resolve it better than the other components).

use crate::data::features::FeatureDtype;
use crate::error::{Error, Result};

use super::{Accumulation, GradInput, GradNormEngine, Reduction, RolloutGradStats, oracle};

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
/// CPU engine sums in f64 by default. The linear head's CUDA kernel accumulates in f32 along
/// chains of at most L = 16 + log₂(512) = 25 additions per reduction (each thread folds up to 16
/// columns, then a tree over its group), plus the rollout's steps for g and s: the worst-case
/// bound 2·(L + n)·u, u = 2⁻²⁴, is 7e-6 of the summed magnitudes (the scales of the module docs)
/// for rollouts of up to 30 steps, at any d the kernel takes (≤ 8,192). The MLP head's products run over d in one chain per thread
/// (worst case 2·d·u = 4.9e-4 at d = 4096); there 1e-5 rests on the typical √d growth of rounding
/// error (3.8e-6 at d = 4096), which the GPU check (`scripts/gpu-check.sh`) puts to the test. A
/// dropped column at d = 4096 moves the squared norms by about 1/4096 = 2.4e-4, so it fails (a
/// test drops one). The emulated kernel tests use per-output bounds instead (`gradnorm::twins`).
pub fn default_tolerance(dtype: FeatureDtype) -> f64 {
    match dtype {
        FeatureDtype::F32 | FeatureDtype::Bf16 => 1e-5,
    }
}

/// Errors of `candidate` against `reference`, statistic by statistic, each relative to the
/// reference value itself (floored).
pub fn compare(
    reference: &RolloutGradStats,
    candidate: &RolloutGradStats,
) -> Result<Vec<StatError>> {
    compare_scaled(reference, candidate, reference)
}

/// [`compare`] with each rollout's error relative to its entry in `scales` (floored), a table
/// of the same rollouts and statistics: [`oracle::magnitudes`] in [`verify`].
pub fn compare_scaled(
    reference: &RolloutGradStats,
    candidate: &RolloutGradStats,
    scales: &RolloutGradStats,
) -> Result<Vec<StatError>> {
    if reference.rollouts != candidate.rollouts || reference.rollouts != scales.rollouts {
        return Err(Error::invalid("the two runs scored different rollouts"));
    }
    fn column<'a>(table: &'a RolloutGradStats, name: &str, role: &str) -> Result<&'a [f64]> {
        table
            .columns()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::invalid(format!("{role} lacks statistic {name}")))
    }
    let mut out = Vec::new();
    for (name, want) in reference.columns() {
        let got = column(candidate, &name, "candidate")?;
        let scale = column(scales, &name, "the scales")?;
        out.push(scaled_error(
            &name,
            want,
            got,
            scale,
            &reference.rollouts,
            COLUMN_FLOOR,
        ));
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
        let mut e = scaled_error(
            "projected",
            &rows_want,
            &rows_want,
            &rows_want,
            &reference.rollouts,
            COLUMN_FLOOR,
        );
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

/// The floor of a per-rollout scale, as a fraction of the column's largest.
const COLUMN_FLOOR: f64 = 1e-6;

/// A vector judged as a whole, `max |Δ| / max |b|` (see the module docs). It has no per-rollout
/// owner: its "worst rollout" column reads 0.
fn vector_error(name: &str, want: &[f64], got: &[f64]) -> StatError {
    let owners = vec![0; want.len()];
    scaled_error(name, want, got, want, &owners, 1.0)
}

/// Errors |a − b| relative to `max(|s|, floor_fraction · max_k |s_k|)`, s the scale of the entry.
fn scaled_error(
    name: &str,
    want: &[f64],
    got: &[f64],
    scales: &[f64],
    owners: &[usize],
    floor_fraction: f64,
) -> StatError {
    let largest = scales.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = (floor_fraction * largest).max(f64::MIN_POSITIVE);
    let mut e = StatError {
        name: name.to_string(),
        max_abs: 0.0,
        max_rel: 0.0,
        worst_rollout: owners.first().copied().unwrap_or(0),
    };
    for (((w, g), s), &owner) in want.iter().zip(got).zip(scales).zip(owners) {
        // A NaN from either side must fail the check, so it counts as an infinite error.
        let abs = match (w - g).abs() {
            a if a.is_nan() => f64::INFINITY,
            a => a,
        };
        let rel = abs / s.abs().max(floor);
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
    let (want, scales, want_total) = match reference {
        // One pass of the oracle gives the values, their scales and the summed gradient.
        Reference::Oracle => {
            let c = oracle::checked(input, reduction);
            (c.stats, c.scales, c.total)
        }
        Reference::Engine(e) => {
            // The reference sums in f64 whatever the candidate sums in (`--accumulate f32` checks
            // the CPU engine's f32 sums against its own f64 ones).
            let exact = input.with_accumulation(Accumulation::F64)?;
            (
                e.rollout_stats(&exact, reduction, None)?,
                oracle::magnitudes(input, reduction),
                e.total_gradient(&exact, reduction)?,
            )
        }
    };
    let got = engine.rollout_stats(input, reduction, None)?;
    let mut errors = compare_scaled(&want, &got, &scales)?;
    let got_total = engine.total_gradient(input, reduction)?;
    errors.push(vector_error("total_gradient", &want_total, &got_total));
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

    /// The default labels: a step is positive when its MC score is above 0.
    fn hard_mc_targets(bundle: &crate::data::features::FeatureBundle) -> Vec<f32> {
        bundle
            .mc_scores()
            .iter()
            .map(|&m| (m > 0.0) as u8 as f32)
            .collect()
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
        let targets = hard_mc_targets(&bundle);
        let tol = default_tolerance(dtype);
        let input = GradInput::new(&bundle, &targets, &head, None).unwrap();
        let faithful = verify(&CpuEngine, Reference::Oracle, &input, Reduction::Mean, tol).unwrap();
        assert!(faithful.passed(), "{:?}", faithful.errors);
        let want = oracle::stats(&input, Reduction::Mean, None).unwrap();
        let scales = oracle::magnitudes(&input, Reduction::Mean);
        let broken = GradInput::new(&dropped, &targets, &head, None).unwrap();
        let got = CpuEngine
            .rollout_stats(&broken, Reduction::Mean, None)
            .unwrap();
        let worst = compare_scaled(&want, &got, &scales)
            .unwrap()
            .iter()
            .map(|e| e.max_rel)
            .fold(0.0, f64::max);
        assert!(
            worst > 10.0 * tol,
            "a dropped column moved the statistics by only {worst}"
        );
    }

    /// One column left out of the gradient sums only, the logits intact (the fault a reduction
    /// over columns could have), and the bias gradient off by 1e-3: the scales must still see
    /// both. The loss and the residuals, judged by their values, are unchanged here, so only the
    /// gradient statistics' scales can fail this.
    #[test]
    fn the_scales_still_see_a_column_missing_from_the_gradient_sums() {
        use crate::data::features::FeatureDtype;
        use crate::gradnorm::GradInput;
        use crate::gradnorm::fixture::{RandomBundleSpec, random_bundle};

        let (d, dtype) = (4096, FeatureDtype::Bf16);
        let bundle = random_bundle(&RandomBundleSpec::realistic(400, d, dtype, 3)).unwrap();
        let head = HeadParams::init(HeadKind::Linear, d, 5);
        let targets = hard_mc_targets(&bundle);
        let input = GradInput::new(&bundle, &targets, &head, None).unwrap();
        let want = oracle::stats(&input, Reduction::Mean, None).unwrap();
        let scales = oracle::magnitudes(&input, Reduction::Mean);
        let tol = default_tolerance(dtype);
        let k = 1234;
        let mut dropped = want.clone();
        let mut bias_off = want.clone();
        for i in 0..input.len() {
            let (x, y) = oracle::rollout_data(&input, input.rollout(i));
            let g = oracle::rollout_gradient(&head, &x, &y, Reduction::Mean);
            let (gk, ck) = (g.grad[k] * g.grad[k], g.centered[k] * g.centered[k]);
            dropped.grad_sq[i] -= gk;
            dropped.group_grad_sq[0].1[i] -= gk;
            dropped.centered_grad_sq[i] -= ck;
            bias_off.group_grad_sq[1].1[i] *= 1.0 + 1e-3;
            bias_off.grad_sq[i] += 1e-3 * want.group_grad_sq[1].1[i];
        }
        let worst = |got: &RolloutGradStats, name: &str| {
            compare_scaled(&want, got, &scales)
                .unwrap()
                .into_iter()
                .find(|e| e.name == name)
                .unwrap()
                .max_rel
        };
        // The scales cost sensitivity: the centred norm's weights cancel by construction, so its
        // scale sits far above its value. When written, the missing column read 8.9e-4 on the
        // gradient norms and 6.8e-5 on the centred one (2.2e-3 and 2.7e-3 judged by value).
        for (name, margin) in [
            ("grad_sq", 10.0),
            ("grad_sq_w", 10.0),
            ("centered_grad_sq", 3.0),
        ] {
            let e = worst(&dropped, name);
            assert!(e > margin * tol, "{name}: a missing column read {e}");
        }
        let e = worst(&bias_off, "grad_sq_b");
        assert!(e > 10.0 * tol, "grad_sq_b: an error of 1e-3 read {e}");
        let e = worst(&dropped, "loss").max(worst(&dropped, "resid_sq"));
        assert_eq!(e, 0.0);
    }

    #[test]
    fn f32_sums_pass_where_only_cancellation_would_fail_them() {
        use crate::data::features::FeatureDtype;
        use crate::gradnorm::cpu::CpuEngine;
        use crate::gradnorm::fixture::{RandomBundleSpec, random_bundle};
        use crate::gradnorm::point::ParamPoint;
        use crate::gradnorm::{Accumulation, GradInput};

        let (d, dtype) = (64, FeatureDtype::Bf16);
        let bundle = random_bundle(&RandomBundleSpec::realistic(40_000, d, dtype, 11)).unwrap();
        // At the teacher the residuals are small and of both signs: sums of them cancel.
        let head = ParamPoint::Teacher
            .resolve(HeadKind::Linear, &bundle, 0)
            .unwrap();
        let targets = hard_mc_targets(&bundle);
        let input = GradInput::new(&bundle, &targets, &head, None).unwrap();
        let f32_sums = input.with_accumulation(Accumulation::F32).unwrap();
        let tol = default_tolerance(dtype);
        let report = verify(
            &CpuEngine,
            Reference::Oracle,
            &f32_sums,
            Reduction::Mean,
            tol,
        )
        .unwrap();
        assert!(report.passed(), "{:?}", report.errors);
        // Against the values themselves, the centred norm (weights r_j − r̄ that sum to zero)
        // reads above the tolerance with the same correct sums (6.7e-5 when written): the
        // reason for the scales. It takes tens of thousands of rollouts to meet such a one.
        let want = oracle::stats(&input, Reduction::Mean, None).unwrap();
        let got = CpuEngine
            .rollout_stats(&f32_sums, Reduction::Mean, None)
            .unwrap();
        let by_value = compare(&want, &got).unwrap();
        let centred = by_value
            .iter()
            .find(|e| e.name == "centered_grad_sq")
            .unwrap();
        assert!(centred.max_rel > tol, "{centred:?}");
    }

    #[test]
    fn one_oracle_pass_gives_what_three_did() {
        use crate::data::features::FeatureDtype;
        use crate::gradnorm::GradInput;
        use crate::gradnorm::fixture::{RandomBundleSpec, random_bundle};

        // More rollouts than one block, so the blocks' sums are exercised.
        let bundle =
            random_bundle(&RandomBundleSpec::realistic(150, 40, FeatureDtype::F32, 4)).unwrap();
        let targets = hard_mc_targets(&bundle);
        for head in [
            HeadParams::init(HeadKind::Linear, 40, 1),
            HeadParams::init(
                HeadKind::Mlp {
                    hidden: 6,
                    activation: crate::head::Activation::Gelu,
                },
                40,
                1,
            ),
        ] {
            let input = GradInput::new(&bundle, &targets, &head, None).unwrap();
            let c = oracle::checked(&input, Reduction::Mean);
            assert_eq!(
                c.stats,
                oracle::stats(&input, Reduction::Mean, None).unwrap()
            );
            assert_eq!(c.scales, oracle::magnitudes(&input, Reduction::Mean));
            let total = oracle::total_gradient(&input, Reduction::Mean);
            let scale = total.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (a, b) in c.total.iter().zip(&total) {
                assert!((a - b).abs() <= 1e-13 * scale, "{a} against {b}");
            }
            // The scales are never below the values.
            for ((_, v), (_, s)) in c.stats.columns().iter().zip(c.scales.columns()) {
                assert!(v.iter().zip(s).all(|(v, s)| s >= &(v * (1.0 - 1e-12))));
            }
        }
    }

    #[test]
    fn the_summed_gradient_is_judged_against_its_largest_component() {
        // A component that cancels across rollouts (1e-4 of the largest) carries the same
        // absolute rounding as the others: judged alone it would read 1e-2, as a vector 1e-6.
        let want = [1.0, -0.5, 1e-4];
        let got = [1.0, -0.5, 1e-4 + 1e-6];
        let e = vector_error("total_gradient", &want, &got);
        assert!((e.max_rel - 1e-6).abs() < 1e-15, "{e:?}");
        assert!((e.max_abs - 1e-6).abs() < 1e-15 && e.worst_rollout == 0);
        // Negative control: the same error on a component stays an error of the vector.
        let e = vector_error("total_gradient", &want, &[1.0, -0.5 + 2e-3, 1e-4]);
        assert!((e.max_rel - 2e-3).abs() < 1e-12, "{e:?}");
        assert!(
            vector_error("total_gradient", &want, &[1.0, f64::NAN, 0.0])
                .max_rel
                .is_infinite()
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
