//! Fitting the model to the paper's statistics.
//!
//! Two nested solves on the exact expectations of [`super::model`]:
//!
//! * inner, per source: the mean ability μ_s that gives the source's Table 8 mean MC per step
//!   (mean MC rises monotonically with ability, so a bracketing root finder cannot miss);
//! * outer, global: the location and spread of the post-error success rate ρ that give Table 1's
//!   fraction of zero-score steps and of mixed rollouts, by a damped Newton iteration with a
//!   finite-difference Jacobian. Every outer evaluation re-solves all inner equations, so the
//!   per-source means stay matched whatever ρ does.
//!
//! Steps per rollout need no fitting: the step-count distribution is built with the Table 8 mean.
//! The benchmark's ability level is fitted the same way, to VisualProcessBench's share of correct
//! steps among the non-neutral ones. Everything is deterministic and takes well under a second.

use rayon::prelude::*;
use serde::Serialize;

use super::model::{
    ModelParams, Quadrature, Recovery, RecoveryMoments, SourceExpectation, SourceShape,
    expect_correct_fraction, expect_source, step_count_pmf,
};
use super::numeric::bracketed_root;
use super::preset::{BenchSourceSpec, CorpusTargets, SourceSpec};

/// The fitted parameters of one training source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceFit {
    /// Paper name.
    pub name: String,
    /// Mean ability μ_s (logits).
    pub ability: f64,
    /// E\[ρ\] for this source (the recovery location plus its answer-kind bonus).
    pub recovery_mean: f64,
    /// Probability that a rollout's annotation stops after its first zero.
    pub early_stop: f64,
    /// Table 8 mean MC per step.
    pub target_mean_mc: f64,
    /// Table 8 steps per rollout.
    pub target_steps_per_rollout: f64,
    /// Model expectations at the fitted parameters (per rollout).
    pub expected: SourceExpectation,
    /// P(n = k), k = 0..=max_steps.
    #[serde(skip)]
    pub steps_pmf: Vec<f64>,
}

/// Corpus-wide expectations, weighting sources by their Table 8 rollout counts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct GlobalExpectation {
    /// Steps per rollout.
    pub steps_per_rollout: f64,
    /// Mean MC per step.
    pub mean_mc: f64,
    /// Fraction of zero-score steps.
    pub zero_mc_fraction: f64,
    /// Fraction of mixed rollouts.
    pub mixed_fraction: f64,
    /// Fraction of positive-score steps whose prefix is already wrong.
    pub pseudo_positive_share: f64,
}

/// The result of calibrating the model to a preset.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// The post-error success-rate distribution (before the answer-kind bonus).
    pub recovery: Recovery,
    /// Whether ρ was fitted (false when the user fixed the post-error success rate).
    pub recovery_fitted: bool,
    /// Outer Newton iterations used.
    pub iterations: usize,
    /// Whether the global targets were met to 1e-6.
    pub converged: bool,
    /// Per-source fits, in preset order.
    pub sources: Vec<SourceFit>,
    /// Expected corpus statistics at the fit.
    pub expected: GlobalExpectation,
}

/// Calibrates `params` to the training sources and corpus targets of a preset.
///
/// With `post_error_success = Some(m)` the post-error success rate is not fitted to the global
/// targets: the spread keeps its fitted value and the location is moved so that E\[ρ\] = m for a
/// source without answer-kind bonus; per-source mean MC is still matched.
pub fn calibrate(
    specs: &[SourceSpec],
    targets: &CorpusTargets,
    params: &ModelParams,
    post_error_success: Option<f64>,
) -> Calibration {
    let quad = Quadrature::default();
    let pmfs: Vec<Vec<f64>> = specs
        .iter()
        .map(|s| {
            step_count_pmf(
                s.steps_per_rollout(),
                params.max_steps,
                params.steps_concentration,
            )
        })
        .collect();
    let eval = |rec: Recovery| fit_sources(specs, &pmfs, rec, params, &quad);
    let residual = |g: &GlobalExpectation| {
        [
            g.zero_mc_fraction - targets.zero_mc_fraction,
            g.mixed_fraction - targets.mixed_fraction,
        ]
    };

    // Damped Newton on (loc, scale).
    let clamp = |r: Recovery| Recovery {
        loc: r.loc.clamp(-12.0, 6.0),
        scale: r.scale.clamp(0.05, 8.0),
    };
    // Start where the preset's solution lies; Newton only polishes from there.
    let mut rec = Recovery {
        loc: -2.7,
        scale: 0.7,
    };
    let (mut fits, mut global) = eval(rec);
    let mut f = residual(&global);
    let mut iterations = 0;
    let norm = |f: [f64; 2]| f[0].abs().max(f[1].abs());
    while norm(f) > 1e-7 && iterations < 40 {
        iterations += 1;
        let h = 1e-5;
        let f_loc = residual(
            &eval(Recovery {
                loc: rec.loc + h,
                ..rec
            })
            .1,
        );
        let f_scale = residual(
            &eval(Recovery {
                scale: rec.scale + h,
                ..rec
            })
            .1,
        );
        let j = [
            [(f_loc[0] - f[0]) / h, (f_scale[0] - f[0]) / h],
            [(f_loc[1] - f[1]) / h, (f_scale[1] - f[1]) / h],
        ];
        let det = j[0][0] * j[1][1] - j[0][1] * j[1][0];
        if det.abs() < 1e-300 {
            break;
        }
        let step = [
            (j[1][1] * f[0] - j[0][1] * f[1]) / det,
            (-j[1][0] * f[0] + j[0][0] * f[1]) / det,
        ];
        let mut t = 1.0;
        let mut improved = false;
        for _ in 0..30 {
            let cand = clamp(Recovery {
                loc: rec.loc - t * step[0],
                scale: rec.scale - t * step[1],
            });
            let (cand_fits, cand_global) = eval(cand);
            let cand_f = residual(&cand_global);
            if norm(cand_f) < norm(f) {
                rec = cand;
                fits = cand_fits;
                global = cand_global;
                f = cand_f;
                improved = true;
                break;
            }
            t /= 2.0;
        }
        if !improved {
            break;
        }
    }
    let converged = norm(f) <= 1e-6;

    let mut recovery_fitted = true;
    if let Some(mean) = post_error_success {
        let target = mean.clamp(1e-9, 1.0 - 1e-9);
        let scale = rec.scale;
        let loc = bracketed_root(
            |loc| Recovery { loc, scale }.mean(0.0, &quad) - target,
            -40.0,
            40.0,
            1e-12,
        );
        rec = Recovery { loc, scale };
        (fits, global) = eval(rec);
        recovery_fitted = false;
    }
    Calibration {
        recovery: rec,
        recovery_fitted,
        iterations,
        converged: converged || !recovery_fitted,
        sources: fits,
        expected: global,
    }
}

/// Solves every source's mean ability for a given ρ distribution and aggregates.
fn fit_sources(
    specs: &[SourceSpec],
    pmfs: &[Vec<f64>],
    recovery: Recovery,
    params: &ModelParams,
    quad: &Quadrature,
) -> (Vec<SourceFit>, GlobalExpectation) {
    let fits: Vec<SourceFit> = specs
        .par_iter()
        .zip(pmfs.par_iter())
        .map(|(spec, pmf)| {
            let shape = SourceShape {
                steps_pmf: pmf.clone(),
                recovery: RecoveryMoments::new(
                    recovery,
                    params.guess_bonus(spec.kind),
                    params.max_steps,
                    quad,
                ),
                early_stop: params.early_stop_for(spec.name),
            };
            let ability = bracketed_root(
                |mu| expect_source(mu, &shape, params, quad).mean_mc() - spec.mean_mc,
                -20.0,
                30.0,
                1e-10,
            );
            SourceFit {
                name: spec.name.to_string(),
                ability,
                recovery_mean: shape.recovery.mean,
                early_stop: shape.early_stop,
                target_mean_mc: spec.mean_mc,
                target_steps_per_rollout: spec.steps_per_rollout(),
                expected: expect_source(ability, &shape, params, quad),
                steps_pmf: pmf.clone(),
            }
        })
        .collect();
    let global = aggregate(&fits, specs.iter().map(|s| s.rollouts as f64));
    (fits, global)
}

/// Corpus-wide expectations with per-source weights (rollout counts).
pub fn aggregate(fits: &[SourceFit], weights: impl Iterator<Item = f64>) -> GlobalExpectation {
    let (mut rollouts, mut steps, mut score, mut zeros, mut mixed, mut pseudo) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (fit, w) in fits.iter().zip(weights) {
        let e = &fit.expected;
        rollouts += w;
        steps += w * e.steps;
        score += w * e.score_sum;
        zeros += w * e.zero_steps;
        mixed += w * e.mixed;
        pseudo += w * e.pseudo_positive_steps;
    }
    GlobalExpectation {
        steps_per_rollout: steps / rollouts,
        mean_mc: score / steps,
        zero_mc_fraction: zeros / steps,
        mixed_fraction: mixed / rollouts,
        pseudo_positive_share: pseudo / (steps - zeros),
    }
}

/// The fitted benchmark: one ability per source.
#[derive(Debug, Clone, Serialize)]
pub struct BenchCalibration {
    /// Common ability level; each source adds its preset offset.
    pub ability_level: f64,
    /// Per-source mean ability, in preset order.
    pub abilities: Vec<f64>,
    /// Per-source step-count distributions.
    #[serde(skip)]
    pub steps_pmfs: Vec<Vec<f64>>,
    /// Expected share of truly correct steps at the fit.
    pub expected_correct_fraction: f64,
    /// Most steps per solution.
    pub max_steps: usize,
}

/// Fits the benchmark's ability level so that the expected share of correct steps is `target`.
pub fn calibrate_bench(
    specs: &[BenchSourceSpec],
    max_steps: usize,
    target: f64,
    params: &ModelParams,
) -> BenchCalibration {
    let quad = Quadrature::default();
    let pmfs: Vec<Vec<f64>> = specs
        .iter()
        .map(|s| step_count_pmf(s.steps_per_solution, max_steps, params.steps_concentration))
        .collect();
    // Equal questions per source: weight each source by its expected steps.
    let share = |level: f64| {
        let (mut correct, mut steps) = (0.0, 0.0);
        for (spec, pmf) in specs.iter().zip(&pmfs) {
            let n: f64 = pmf.iter().enumerate().map(|(k, p)| k as f64 * p).sum();
            let f = expect_correct_fraction(level + spec.ability_offset, pmf, params, &quad);
            correct += f * n;
            steps += n;
        }
        correct / steps
    };
    let level = bracketed_root(|l| share(l) - target, -20.0, 30.0, 1e-10);
    let expected_correct_fraction = share(level);
    BenchCalibration {
        ability_level: level,
        abilities: specs.iter().map(|s| level + s.ability_offset).collect(),
        steps_pmfs: pmfs,
        expected_correct_fraction,
        max_steps,
    }
}

/// E[σ(loc + scale·X)] helper for reports: the post-error success rate of a bonus-free source.
pub fn base_recovery_mean(recovery: Recovery) -> f64 {
    recovery.mean(0.0, &Quadrature::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::preset::{
        VISUALPRM400K_SOURCES, VISUALPRM400K_TARGETS, VISUALPROCESSBENCH_SOURCES,
    };

    #[test]
    fn preset_calibrates_exactly_in_expectation() {
        let params = ModelParams::default();
        let cal = calibrate(
            &VISUALPRM400K_SOURCES,
            &VISUALPRM400K_TARGETS,
            &params,
            None,
        );
        assert!(cal.converged, "{:?}", cal.expected);
        for fit in &cal.sources {
            assert!(
                (fit.expected.mean_mc() - fit.target_mean_mc).abs() < 1e-7,
                "{}: {}",
                fit.name,
                fit.expected.mean_mc()
            );
            assert!((fit.expected.steps - fit.target_steps_per_rollout).abs() < 1e-7);
        }
        let t = VISUALPRM400K_TARGETS;
        assert!((cal.expected.zero_mc_fraction - t.zero_mc_fraction).abs() < 1e-6);
        assert!((cal.expected.mixed_fraction - t.mixed_fraction).abs() < 1e-6);
        // Harder sources need lower ability.
        let ability = |name: &str| cal.sources.iter().find(|f| f.name == name).unwrap().ability;
        assert!(ability("ScienceQA") > ability("FigureQA"));
        assert!(ability("FigureQA") > ability("GeoQA+ (Open)"));
    }

    #[test]
    fn fixed_post_error_success_keeps_source_means() {
        let params = ModelParams::default();
        let cal = calibrate(
            &VISUALPRM400K_SOURCES,
            &VISUALPRM400K_TARGETS,
            &params,
            Some(0.4),
        );
        assert!(!cal.recovery_fitted);
        assert!((base_recovery_mean(cal.recovery) - 0.4).abs() < 1e-9);
        for fit in &cal.sources {
            assert!((fit.expected.mean_mc() - fit.target_mean_mc).abs() < 1e-7);
        }
    }

    #[test]
    fn bench_hits_its_correct_share() {
        let params = ModelParams::default();
        let b = calibrate_bench(&VISUALPROCESSBENCH_SOURCES, 20, 0.68, &params);
        assert!((b.expected_correct_fraction - 0.68).abs() < 1e-8);
        assert!(b.abilities[3] < b.abilities[0]); // MathVision harder than DynaMath
    }
}
