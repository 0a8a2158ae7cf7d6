//! The theory checks as tables, figures, a written summary and a key table, from the saved
//! results alone.
//!
//! A ranking is "clearly ahead" when its interval does not overlap the runner-up's; the verdicts
//! on the formulas and the prose are in [`super::summary`].

use crate::experiments::plot::{Plot, Series};
use crate::experiments::report::Rendered;
use crate::experiments::stats::{Estimate, MeanCi, Proportion};
use crate::experiments::table::{Cell, Table};
use crate::experiments::training::LrAudit;

use super::TheoryResults;
use super::informativeness::{Finding6, Heatmap, Informativeness, PointCheck};
use super::mixture::{MixtureCheck, MixtureGroup};
use super::noise::{NoiseBin, NoiseCheck};
use super::reliability::{MIN_SIMULATED, ReliabilityCheck};
use super::summary;
use super::truth::TruthKind;

pub(super) fn render(r: &TheoryResults) -> Rendered {
    let mut tables = Vec::new();
    let mut plots = Vec::new();

    let all_noise: Vec<&NoiseCheck> = std::iter::once(&r.eq5).chain(&r.eq6).collect();
    tables.push(("eq5".to_string(), eq5_table(&r.eq5)));
    tables.push(("eq6".to_string(), eq6_table(&r.eq6)));
    plots.push(("eq5_plot".to_string(), noise_plot(&[&r.eq5], "Eq. 5")));
    if !r.eq6.is_empty() {
        let eq6: Vec<&NoiseCheck> = r.eq6.iter().collect();
        plots.push(("eq6_plot".to_string(), noise_plot(&eq6, "Eq. 6")));
    }
    plots.push(("eq56_rel_error".to_string(), rel_error_plot(&all_noise)));

    tables.push(("lemma2".to_string(), lemma2_table(&r.lemma2)));
    tables.push(("lemma2_corpus".to_string(), lemma2_corpus_table(&r.lemma2)));
    let world = r.setup.truth == TruthKind::World;
    tables.push(("lemma3".to_string(), lemma3_table(&r.lemma3, world)));
    plots.push(("lemma3_eta_eff".to_string(), lemma3_plot(&r.lemma3, world)));

    tables.push((
        "informativeness_points".to_string(),
        points_table(&r.informativeness),
    ));
    tables.push((
        "informativeness".to_string(),
        informativeness_table(&r.informativeness),
    ));
    if r.informativeness
        .points
        .iter()
        .any(|p| p.deconfounded.is_some())
    {
        tables.push((
            "informativeness_deconfounded".to_string(),
            deconfounded_table(&r.informativeness),
        ));
    }
    plots.push((
        "informativeness_spearman".to_string(),
        informativeness_heatmap(&r.informativeness),
    ));

    tables.push((
        "finding6_correlations".to_string(),
        finding6_table(&r.finding6, world),
    ));
    tables.push(("finding6_best".to_string(), best_table(&r.finding6)));
    plots.push((
        "finding6_spearman".to_string(),
        finding6_heatmap(&r.finding6),
    ));
    for h in &r.finding6.heatmaps {
        tables.push((h.name.clone(), heatmap_table(h)));
        plots.push((h.name.clone(), heatmap_plot(h)));
    }

    if let Some(e) = &r.empirical {
        tables.push(("wrong_by_count".to_string(), wrong_by_count_table(e)));
    }
    let key = summary::key_table(r);
    tables.push(("checks".to_string(), key.clone()));
    tables.push(("identities".to_string(), summary::identities_table(r)));
    let summary = summary::summary(r, &key, &tables);
    Rendered {
        tables,
        plots,
        summary,
        key_table: key.to_markdown(),
    }
}

/// Informativeness without its confounds: per point, the real step and how much of a(x) is
/// calibration; per score, within-source Spearman with each deconfounded target, including the
/// calibration-free ones (Δcos(w, w*), ΔAUC), whose point-level means are the table's notes.
fn deconfounded_table(inf: &Informativeness) -> Table {
    let mut t = Table::new(
        "Informativeness without confounds: within-source Spearman, 95% CI from resampling \
         questions within sources",
        &[
            "point",
            "score",
            "a(x)",
            "a(x) without bias",
            "a(x) given length, zeros",
            "a(x), trainer's reduction",
            "first-order dev gain at the real step",
            "Δcos(w, w*) at the real step",
            "Δ dev AUC at sgd_lr",
        ],
    );
    let e = |v: Estimate| Cell::text(format!("{:.3} [{:.3}, {:.3}]", v.value, v.lo, v.hi));
    let maybe = |v: Option<Estimate>| v.map_or(Cell::Empty, e);
    for p in &inf.points {
        let Some(d) = &p.deconfounded else { continue };
        for s in &d.scores {
            t.push(vec![
                Cell::text(&p.point),
                Cell::text(&s.score),
                e(s.a),
                e(s.a_weight),
                e(s.a_partial),
                e(s.a_trainer),
                e(s.gain_real),
                maybe(s.cos_gain),
                maybe(s.auc_gain),
            ]);
        }
        if let Some(note) = calibration_free_note(&p.point, d, inf.sgd_lr) {
            t.notes.push(note);
        }
    }
    t
}

/// The point-level means of the calibration-free targets, where they were measured.
fn calibration_free_note(
    point: &str,
    d: &super::informativeness::Deconfounded,
    sgd_lr: f64,
) -> Option<String> {
    let mut parts = Vec::new();
    if let (Some(c), Some(mean), Some(up)) = (d.cos_w_star, d.mean_cos_gain, d.positive_cos_gain) {
        parts.push(format!(
            "cos(w, w*) = {c:.4}; one step of ε = {:.2e} on a rollout changes it by {} on \
             average and raises it for {} of rollouts (second-order remainder {})",
            d.real_step,
            sci_ci(mean),
            pct(up),
            d.cos_second_order_share.map_or("–".into(), pct),
        ));
    }
    if let (Some(auc), Some(mean), Some(up)) = (d.dev_auc, d.mean_auc_gain, d.positive_auc_gain) {
        parts.push(format!(
            "dev AUC = {auc:.4}; one step of sgd_lr = {sgd_lr} changes it by {} on average and \
             raises it for {} of rollouts{}",
            sci_ci(mean),
            pct(up),
            d.zero_auc_gain_real.map_or(String::new(), |z| format!(
                "; at ε = {:.2e} it is exactly unchanged for {} of rollouts",
                d.real_step,
                pct(z)
            )),
        ));
    }
    (!parts.is_empty()).then(|| format!("{point}: {}.", parts.join("; ")))
}

/// A mean with its 95% interval in scientific notation (one-step changes are tiny).
pub(super) fn sci_ci(m: MeanCi) -> String {
    format!("{:.3e} [{:.3e}, {:.3e}]", m.mean, m.lo(), m.hi())
}

/// Finding 5's curve: the share of wrong steps at each observed count K, next to η_eff(K).
fn wrong_by_count_table(e: &super::empirical::EmpiricalChecks) -> Table {
    let mut t = Table::new(
        format!(
            "P(step wrong | K = k) on the corpus's MC labels, with η_eff(k) = P(r < {} | K = k) \
             under the fitted prior",
            e.tau
        ),
        &["k", "steps", "P(wrong | K = k)", "95% CI", "η_eff(k)"],
    );
    for row in &e.wrong_by_count {
        let p = Proportion::wilson(row.wrong, row.steps);
        t.push(vec![
            Cell::num(row.k as f64, 0),
            Cell::num(row.steps as f64, 0),
            Cell::num(p.value, 4),
            Cell::text(format!("[{:.4}, {:.4}]", p.lo, p.hi)),
            Cell::num(row.eta_eff, 4),
        ]);
    }
    t
}

fn ci(ci: MeanCi, digits: usize) -> Cell {
    Cell::Ci { ci, digits }
}

fn interval(e: Estimate, digits: usize) -> Cell {
    Cell::Interval {
        value: e.value,
        lo: e.lo,
        hi: e.hi,
        digits,
    }
}

fn proportion(p: Proportion, digits: usize) -> Cell {
    Cell::Interval {
        value: p.value,
        lo: p.lo,
        hi: p.hi,
        digits,
    }
}

pub(super) fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

pub(super) fn pct_ci(e: MeanCi) -> String {
    format!("{} [{}, {}]", pct(e.mean), pct(e.lo()), pct(e.hi()))
}

pub(super) fn est_text(e: Estimate) -> String {
    format!("{:.3} [{:.3}, {:.3}]", e.value, e.lo, e.hi)
}

fn q_range(b: &NoiseBin) -> String {
    format!("[{:.4}, {:.4}]", b.q_lo, b.q_hi)
}

fn noise_row(label: String, b: &NoiseBin) -> Vec<Cell> {
    vec![
        Cell::text(label),
        Cell::text(q_range(b)),
        Cell::num(b.steps as f64, 0),
        Cell::num(b.predicted, 5),
        ci(b.measured, 5),
        ci(b.rel_error, 4),
    ]
}

fn eq5_table(c: &NoiseCheck) -> Table {
    let mut t = Table::new(
        "Eq. 5 at the teacher: per-step E‖g‖² against q*(1−q*)‖ϕ‖², by q* bin",
        &[
            "q* bin",
            "q* range",
            "steps",
            "Eq. 5: mean q*(1−q*)‖ϕ‖²",
            "measured mean ‖g_w‖²",
            "relative error",
        ],
    );
    for (i, b) in c.bins.iter().enumerate() {
        t.push(noise_row(format!("{}", i + 1), b));
    }
    t.push(noise_row("all".into(), &c.pooled));
    t.notes.push(format!(
        "Labels Y ~ Bernoulli(q*) drawn {} times per step; g = (σ(⟨w*, ϕ⟩ + b*) − Y)ϕ is the \
         weight-group gradient from the gradient engine (one step per rollout, sum reduction). \
         ± is the 95% t-interval over draws. {} of {} bins agree (interval contains 0).",
        c.draws,
        c.bins_agreeing(),
        c.bins.len()
    ));
    t
}

fn eq6_table(checks: &[NoiseCheck]) -> Table {
    let mut t = Table::new(
        "Eq. 6 under symmetric flips: per-step E‖g̃‖² against [(1−4η)q*(1−q*)+η]‖ϕ‖², by q* bin",
        &[
            "η",
            "q* bin",
            "q* range",
            "steps",
            "Eq. 6: mean [(1−4η)q*(1−q*)+η]‖ϕ‖²",
            "measured mean ‖g̃_w‖²",
            "relative error",
            "relative error of Eq. 5 (η ignored)",
        ],
    );
    for c in checks {
        let bins = c
            .bins
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("{}", i + 1), b))
            .chain([("all".to_string(), &c.pooled)]);
        for (label, b) in bins {
            let mut row = vec![Cell::num(c.eta, 2)];
            row.extend(noise_row(label, b));
            row.push(Cell::num(b.measured.mean / b.noiseless - 1.0, 4));
            t.push(row);
        }
    }
    t.notes.push(
        "Each drawn label is flipped with probability η (the same Y draws as Eq. 5). The last \
         column shows what ignoring the noise would cost: the floor η‖ϕ‖² dominates where q* is \
         near 0 or 1."
            .into(),
    );
    t
}

fn noise_plot(checks: &[&NoiseCheck], formula: &str) -> Plot {
    let mut series = Vec::new();
    for c in checks {
        let tag = if c.eta == 0.0 {
            String::new()
        } else {
            format!(" η={}", c.eta)
        };
        series.push(Series {
            name: format!("measured{tag}"),
            points: c
                .bins
                .iter()
                .map(|b| {
                    (
                        logit(b.q_mean),
                        b.measured.mean,
                        Some(b.measured.half_width),
                    )
                })
                .collect(),
            reference: false,
        });
        series.push(Series {
            name: format!("{formula}{tag}"),
            points: c
                .bins
                .iter()
                .map(|b| (logit(b.q_mean), b.predicted, None))
                .collect(),
            reference: false,
        });
    }
    Plot::Lines {
        title: format!("{formula}: mean per-step ‖g‖² at w*, measured vs formula"),
        x_label: "logit of the bin's mean q*".into(),
        y_label: "mean ‖g_w‖²".into(),
        series,
    }
}

/// The bins crowd near q* = 1, so the noise plots use the teacher's own scale, the logit.
fn logit(q: f64) -> f64 {
    (q / (1.0 - q)).ln()
}

fn rel_error_plot(checks: &[&NoiseCheck]) -> Plot {
    let mut series: Vec<Series> = checks
        .iter()
        .map(|c| Series {
            name: if c.eta == 0.0 {
                "Eq. 5".into()
            } else {
                format!("Eq. 6, η={}", c.eta)
            },
            points: c
                .bins
                .iter()
                .map(|b| {
                    (
                        logit(b.q_mean),
                        b.rel_error.mean,
                        Some(b.rel_error.half_width),
                    )
                })
                .collect(),
            reference: false,
        })
        .collect();
    series.push(Series {
        name: "exact agreement".into(),
        points: vec![(0.0, 0.0, None)],
        reference: true,
    });
    Plot::Lines {
        title: "Eqs. 5–6: relative error per q* bin (95% CI over label draws)".into(),
        x_label: "logit of the bin's mean q*".into(),
        y_label: "measured / formula − 1".into(),
        series,
    }
}

fn lemma2_row(label: String, g: &MixtureGroup) -> Vec<Cell> {
    vec![
        Cell::text(label),
        Cell::num(g.rollouts as f64, 0),
        Cell::num(g.theta, 5),
        Cell::num(g.predicted, 5),
        Cell::num(g.measured, 5),
        interval(g.rel_error, 4),
        proportion(g.within, 4),
    ]
}

fn lemma2_table(m: &MixtureCheck) -> Table {
    let mut t = Table::new(
        "Lemma 2: Monte Carlo E[p̂(1−p̂)] against θ_x − A(x)/n, by rollout length",
        &[
            "n",
            "rollouts",
            "mean θ_x",
            "Lemma 2: mean θ_x − A(x)/n",
            "measured mean E[p̂(1−p̂)]",
            "relative error",
            "bias θ − E[p̂(1−p̂)] in [0, θ/n]",
        ],
    );
    for g in &m.by_n {
        t.push(lemma2_row(format!("{}", g.n), g));
    }
    t.push(lemma2_row("all (n ≥ 2)".into(), &m.all));
    t.notes.push(format!(
        "Y_j ~ Bernoulli(q*_j) independently, {} draws per rollout. The relative error is \
         Σ measured / Σ predicted − 1 with a 95% interval from the Monte Carlo standard error \
         (the exact variance of p̂(1−p̂), from the Poisson-binomial distribution). A rollout's \
         bias counts as inside [0, θ/n] when within {} standard errors of it; without that \
         allowance {} of rollouts are inside. The exact Poisson-binomial mean differs from \
         θ − A/n by at most {:.1e} (the algebra).",
        m.draws,
        m.allowance_z,
        pct(m.within_strict.value),
        m.exact_max_abs_diff
    ));
    t
}

fn lemma2_corpus_table(m: &MixtureCheck) -> Table {
    let mut t = Table::new(
        "Lemma 2 without the idealisation: the corpus's own labels",
        &["quantity", "value [95% CI]"],
    );
    t.push(vec![
        Cell::text("hard MC labels: mean p̂(1−p̂) / mean(θ − A/n) − 1"),
        interval(m.corpus_mc, 4),
    ]);
    t.push(vec![
        Cell::text("true correctness: mean p̂(1−p̂) / mean(θ − A/n) − 1"),
        interval(m.corpus_true, 4),
    ]);
    t.push(vec![
        Cell::text("Spearman(p̂(1−p̂) on MC labels, θ_x)"),
        interval(m.mixture_vs_theta, 3),
    ]);
    t.push(vec![
        Cell::text("Spearman(p̂(1−p̂) on MC labels, A(x))"),
        interval(m.mixture_vs_a, 3),
    ]);
    t.notes.push(format!(
        "Rollouts with at least two steps for the ratios (CI over rollouts); all rollouts for the \
         rank correlations (bootstrap CI). {} of rollouts have mixed MC labels, so p̂(1−p̂) ties \
         at 0 for the rest.",
        pct(m.mixed_share)
    ));
    t
}

fn lemma3_table(l: &ReliabilityCheck, world: bool) -> Table {
    // The world has no success rate r (no corpus P(r < τ | K) column); its truth is the
    // verifier's.
    let truth = if world { "verifier" } else { "simulator" };
    let mut columns = vec!["k".to_string()];
    for t in &l.taus {
        columns.push(format!("Lemma 3: η_eff(k), τ={}", t.tau));
        columns.push(format!("simulated posterior, τ={}", t.tau));
        if !world {
            columns.push(format!("corpus P(r<τ ∣ K=k), τ={}", t.tau));
        }
    }
    columns.extend([
        "corpus steps".to_string(),
        format!("{truth} P(prefix broken ∣ K=k)"),
        format!("{truth} P(step wrong ∣ K=k)"),
    ]);
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut t = Table::new(
        format!(
            "Lemma 3: η_eff(k) = I_τ(a+k, b+16−k) against simulated posteriors and the {truth}"
        ),
        &refs,
    );
    for (k, sim) in l.simulator.iter().enumerate() {
        let mut row = vec![Cell::text(format!("{k}"))];
        for tau in &l.taus {
            let r = &tau.rows[k];
            row.push(Cell::num(r.closed, 4));
            row.push(proportion(r.simulated, 4));
            if !world {
                row.push(proportion(r.corpus, 4));
            }
        }
        row.push(Cell::num(sim.broken_prefix.trials as f64, 0));
        row.push(proportion(sim.broken_prefix, 4));
        row.push(proportion(sim.incorrect, 4));
        t.push(row);
    }
    let fitted = if world {
        format!(
            "Prior Beta(a, b) fitted by the beta-binomial method of moments to the success counts \
             K of {} annotated steps (the world has no success rate r): a = {:.4}, b = {:.4} \
             (implied mean of r {:.4}, variance {:.4}).",
            l.prior.steps, l.prior.a, l.prior.b, l.prior.mean, l.prior.var
        )
    } else {
        format!(
            "Prior Beta(a, b) fitted by moments to the success rates r of {} annotated steps: \
             a = {:.4}, b = {:.4} (mean {:.4}, variance {:.4}).",
            l.prior.steps, l.prior.a, l.prior.b, l.prior.mean, l.prior.var
        )
    };
    t.notes.push(format!(
        "{fitted} Simulated: {} draws of r ~ Beta(a, b), K ~ Binomial(16, r), Wilson 95% \
         intervals. Only sampled steps (no early stop) count.",
        l.draws
    ));
    for tau in &l.taus {
        t.notes.push(format!(
            "τ = {}: η_eff strictly decreasing in k: {}{}; closed form inside the simulated \
             interval for {} of {} k (k with ≥ {} draws), max |simulated − closed| = {:.4}{}.",
            tau.tau,
            if tau.strictly_decreasing { "yes" } else { "NO" },
            tau.underflow_from
                .map(|k| format!(" (0 in f64 from k = {k})"))
                .unwrap_or_default(),
            tau.within_ci,
            tau.compared,
            MIN_SIMULATED,
            tau.max_abs_error,
            if world {
                String::new()
            } else {
                match tau.corpus_max_abs_gap {
                    Some(gap) => format!("; max |corpus − closed| = {gap:.4}"),
                    None => format!("; no k with {MIN_SIMULATED} corpus steps to compare"),
                }
            }
        ));
    }
    t
}

fn lemma3_plot(l: &ReliabilityCheck, world: bool) -> Plot {
    let proportion_points = |p: &dyn Fn(usize) -> Proportion| -> Vec<(f64, f64, Option<f64>)> {
        (0..l.simulator.len())
            .filter_map(|k| {
                let v = p(k);
                (v.trials > 0).then_some((k as f64, v.value, Some((v.hi - v.lo) / 2.0)))
            })
            .collect()
    };
    let mut series = Vec::new();
    for tau in &l.taus {
        series.push(Series {
            name: format!("Lemma 3 closed form, τ={}", tau.tau),
            points: tau
                .rows
                .iter()
                .map(|r| (r.k as f64, r.closed, None))
                .collect(),
            reference: false,
        });
        series.push(Series {
            name: format!("simulated posterior, τ={}", tau.tau),
            points: proportion_points(&|k| tau.rows[k].simulated),
            reference: false,
        });
        if !world {
            series.push(Series {
                name: format!("corpus P(r<τ|K), τ={}", tau.tau),
                points: proportion_points(&|k| tau.rows[k].corpus),
                reference: false,
            });
        }
    }
    series.push(Series {
        name: if world {
            "verifier P(prefix broken|K)".into()
        } else {
            "simulator P(prefix broken|K)".into()
        },
        points: proportion_points(&|k| l.simulator[k].broken_prefix),
        reference: false,
    });
    Plot::Lines {
        title: "Effective noise η_eff(k) of a step with k of 16 successful continuations".into(),
        x_label: "k (successful continuations)".into(),
        y_label: "probability".into(),
        series,
    }
}

fn points_table(inf: &Informativeness) -> Table {
    let mut t = Table::new(
        "Informativeness: the parameter points",
        &[
            "point",
            "optimiser step",
            "‖∇L_clean‖",
            "clean dev loss",
            "mean a(x)",
            "share a(x) > 0",
            "mean −ΔL_dev(x)",
            "Spearman(a(x), −ΔL_dev)",
        ],
    );
    for p in &inf.points {
        t.push(vec![
            Cell::text(p.point.clone()),
            Cell::num(p.step as f64, 0),
            Cell::num(p.clean_grad_norm, 5),
            Cell::num(p.dev_loss, 5),
            ci(p.mean_a, 5),
            Cell::num(p.positive_a, 3),
            ci(p.mean_dev_gain, 7),
            interval(p.a_vs_dev, 3),
        ]);
    }
    t.notes.push(format!(
        "Heads along one full-data run with hard MC labels at lr {} (tuned on the bench dev \
         split over {}; global batch {}, {} optimiser steps). ∇L_clean = total gradient against \
         q* (mean over each rollout's steps) / R. ΔL_dev: exact change of the clean dev loss \
         (BCE against q* on {} of {} bench dev steps) after one SGD step of size {} on the \
         rollout alone.",
        inf.lr,
        inf.lr_trials
            .iter()
            .map(|t| format!("{} → {:.4}", t.lr, t.dev_overall))
            .collect::<Vec<_>>()
            .join(", "),
        inf.global_batch,
        inf.total_steps,
        inf.dev_steps,
        inf.dev_steps_available,
        inf.sgd_lr
    ));
    let mut audit = LrAudit::default();
    audit.add(&inf.lr_trials, inf.lr_extensions);
    t.notes.push(audit.sentence());
    t
}

fn top_headers(inf: &Informativeness) -> Vec<String> {
    inf.points
        .first()
        .map(|p| {
            p.oracle_top
                .iter()
                .map(|t| format!("mean a(x), top {:.0}%", 100.0 * t.fraction))
                .collect()
        })
        .unwrap_or_default()
}

fn point_rows(p: &PointCheck) -> Vec<Vec<Cell>> {
    let none = Estimate {
        value: f64::NAN,
        lo: f64::NAN,
        hi: f64::NAN,
    };
    let mut rows = Vec::new();
    for s in &p.scores {
        let mut row = vec![
            Cell::text(p.point.clone()),
            Cell::text(s.score.clone()),
            interval(s.vs_a, 3),
            interval(s.vs_dev, 3),
        ];
        row.extend(s.top.iter().map(|t| ci(t.mean, 5)));
        rows.push(row);
    }
    let mut oracle = vec![
        Cell::text(p.point.clone()),
        Cell::text("a(x) itself (ceiling)"),
        interval(none, 3),
        interval(p.a_vs_dev, 3),
    ];
    oracle.extend(p.oracle_top.iter().map(|t| ci(t.mean, 5)));
    rows.push(oracle);
    let mut baseline = vec![
        Cell::text(p.point.clone()),
        Cell::text("all rollouts (baseline)"),
        interval(none, 3),
        interval(none, 3),
    ];
    baseline.extend(p.oracle_top.iter().map(|_| ci(p.mean_a, 5)));
    rows.push(baseline);
    rows
}

fn informativeness_table(inf: &Informativeness) -> Table {
    let mut columns = vec![
        "point".to_string(),
        "score".to_string(),
        "Spearman with a(x)".to_string(),
        "Spearman with −ΔL_dev".to_string(),
    ];
    columns.extend(top_headers(inf));
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut t = Table::new(
        "Informativeness: which scores predict the useful part of a rollout's update",
        &refs,
    );
    for p in &inf.points {
        for row in point_rows(p) {
            t.push(row);
        }
    }
    t.notes.push(
        "a(x) = ⟨g_x, ∇L_clean⟩/‖∇L_clean‖ with g_x the rollout's gradient under its hard MC \
         labels (mean over steps). Spearman intervals: percentile bootstrap over rollouts. Top \
         means: a tie group straddling the cut counts proportionally (random tie-breaking in \
         expectation); the interval treats the selection as fixed."
            .into(),
    );
    t
}

fn informativeness_heatmap(inf: &Informativeness) -> Plot {
    let scores: Vec<String> = inf
        .points
        .first()
        .map(|p| p.scores.iter().map(|s| s.score.clone()).collect())
        .unwrap_or_default();
    let mut x_ticks = Vec::new();
    for p in &inf.points {
        let at = short_point(p);
        x_ticks.push(format!("a(x) {at}"));
        x_ticks.push(format!("−ΔL {at}"));
    }
    let values = (0..scores.len())
        .map(|i| {
            inf.points
                .iter()
                .flat_map(|p| [Some(p.scores[i].vs_a.value), Some(p.scores[i].vs_dev.value)])
                .collect()
        })
        .collect();
    Plot::Heatmap {
        title: "Spearman correlation of each score with a(x) and −ΔL_dev".into(),
        x_label: "target at the parameter point (share of the full run)".into(),
        y_label: "score".into(),
        x_ticks,
        y_ticks: scores,
        values,
    }
}

/// "init" or the share of the run ("25%"), for crowded axes.
fn short_point(p: &PointCheck) -> String {
    match p.point.rsplit_once('(') {
        Some((_, share)) => share.trim_end_matches(')').to_string(),
        None => p.point.clone(),
    }
}

fn finding6_table(f: &Finding6, world: bool) -> Table {
    let mut columns = vec!["target".to_string()];
    columns.extend(f.predictors.iter().map(|p| format!("Spearman with {p}")));
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut t = Table::new(
        "Finding 6: S(x) and measured gradient norms against BIS and its parts",
        &refs,
    );
    for target in &f.targets {
        let mut row = vec![Cell::text(target.target.clone())];
        row.extend(target.vs.iter().map(|e| interval(*e, 3)));
        t.push(row);
    }
    t.notes.push(if world {
        "S(x) = (1/n)Σ_j (1−4η_j)q*_j(1−q*_j)‖ϕ_j‖², with q* the world's linear teacher (the \
         ridge-penalised logistic fit of the verifier's labels on the policy's hidden states). \
         \"η given K\": the share of labels that disagree with the verifier among the corpus's \
         steps with the same success count K (the paper's η ≈ η_eff(K), read off the corpus). \
         The world has no success rate r, so S(x) with η given the truth is not measured. η_j \
         above 1/4 makes a step's term negative. Gradient norms: MC labels, mean over steps. \
         Bootstrap 95% CIs."
            .into()
    } else {
        "S(x) = (1/n)Σ_j (1−4η_j)q*_j(1−q*_j)‖ϕ_j‖². \"η given truth\": the simulator's flip \
         probability of the hard MC label of a step, (1−r_j)^16 if the step is correct (all 16 \
         continuations fail), 1−(1−r_j)^16 if not. \"η given K\": the share of wrong labels among \
         the corpus's steps with the same success count K (the paper's η ≈ η_eff(K), with the \
         simulator's exact posterior). η_j above 1/4 makes a step's term negative. Gradient \
         norms: MC labels, mean over steps. Bootstrap 95% CIs."
            .into()
    });
    t
}

/// The predictor with the highest Spearman correlation, the runner-up, and whether the best's
/// interval clears the runner-up's.
pub(super) fn best_of(vs: &[Estimate]) -> Option<(usize, usize, bool)> {
    let mut order: Vec<usize> = (0..vs.len()).filter(|&i| vs[i].value.is_finite()).collect();
    order.sort_by(|&a, &b| vs[b].value.total_cmp(&vs[a].value));
    let (&best, &second) = (order.first()?, order.get(1)?);
    Some((best, second, vs[best].lo > vs[second].hi))
}

fn best_table(f: &Finding6) -> Table {
    let mut t = Table::new(
        "Finding 6: which stored score tracks the gradient signal best",
        &[
            "target",
            "best score",
            "its Spearman",
            "runner-up",
            "runner-up's Spearman",
            "clearly ahead",
        ],
    );
    t.notes.push(
        "Best = the highest signed Spearman correlation; a best score with a negative \
         correlation means no stored score tracks that target positively."
            .into(),
    );
    for target in &f.targets {
        let Some((best, second, clear)) = best_of(&target.vs) else {
            continue;
        };
        t.push(vec![
            Cell::text(target.target.clone()),
            Cell::text(f.predictors[best].clone()),
            interval(target.vs[best], 3),
            Cell::text(f.predictors[second].clone()),
            interval(target.vs[second], 3),
            Cell::text(if clear { "yes" } else { "no (CIs overlap)" }),
        ]);
    }
    t
}

fn finding6_heatmap(f: &Finding6) -> Plot {
    Plot::Heatmap {
        title: "Finding 6: Spearman correlation of each target with each score".into(),
        x_label: "score".into(),
        y_label: "target".into(),
        x_ticks: f.predictors.clone(),
        y_ticks: f.targets.iter().map(|t| t.target.clone()).collect(),
        values: f
            .targets
            .iter()
            .map(|t| t.vs.iter().map(|e| Some(e.value)).collect())
            .collect(),
    }
}

fn heatmap_table(h: &Heatmap) -> Table {
    let mut columns = vec!["p̂(1−p̂) \\ R".to_string()];
    columns.extend(h.reliability_bins.iter().cloned());
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut t = Table::new(format!("{} by p̂(1−p̂) and R", h.quantity), &refs);
    for (r, label) in h.mixture_bins.iter().enumerate() {
        let mut row = vec![Cell::text(label.clone())];
        row.extend(h.mean[r].iter().zip(&h.counts[r]).map(|(m, &n)| {
            Cell::text(match m {
                Some(v) => format!("{v:.4} (n={n})"),
                None => format!("– (n={n})"),
            })
        }));
        t.push(row);
    }
    t.notes.push(format!(
        "Cells with fewer than {} rollouts are left blank.",
        super::informativeness::HEATMAP_MIN_ROLLOUTS
    ));
    t
}

fn heatmap_plot(h: &Heatmap) -> Plot {
    Plot::Heatmap {
        title: format!("{} by label mixture and reliability", h.quantity),
        x_label: "R(x) (mean MC of positive steps)".into(),
        y_label: "p̂(1−p̂)".into(),
        x_ticks: h.reliability_bins.clone(),
        y_ticks: h.mixture_bins.clone(),
        values: h.mean.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_of_ranks_and_judges_overlap() {
        let e = |value, lo, hi| Estimate { value, lo, hi };
        let vs = [e(0.2, 0.1, 0.3), e(0.6, 0.5, 0.7), e(0.4, 0.3, 0.55)];
        assert_eq!(best_of(&vs), Some((1, 2, false)));
        let vs = [e(0.2, 0.1, 0.3), e(0.6, 0.5, 0.7)];
        assert_eq!(best_of(&vs), Some((1, 0, true)));
        assert_eq!(best_of(&[e(0.1, 0.0, 0.2)]), None);
    }
}
