//! Tables and figures of the results: a pure function of them, side by side with the paper.

use std::collections::BTreeMap;

use crate::experiments::config::CorpusKind;
use crate::experiments::plot::{Plot, Series};
use crate::experiments::report::Rendered;
use crate::experiments::stats::{MeanCi, mean_ci95};
use crate::experiments::table::{Cell, Table};
use crate::experiments::training::{BestOfN, LrAudit, RunResult, lr_edge};

use super::config::SelectorSpec;
use super::run::{CellRecord, SelectionResults};

/// The paper's InternVL2.5-8B Overall numbers (Tables 2, 4, 5), for side-by-side tables.
pub(super) mod paper {
    pub const BUDGETS: [f64; 6] = [0.05, 0.10, 0.15, 0.25, 0.35, 0.50];
    pub const RANDOM: [f64; 6] = [63.34, 62.86, 63.27, 63.37, 63.52, 64.02];
    pub const BIS: [f64; 6] = [64.51, 65.46, 64.98, 65.46, 64.98, 65.00];
    pub const QWEN_RANDOM: [f64; 6] = [53.54, 61.99, 59.82, 64.44, 64.77, 64.54];
    pub const QWEN_BIS: [f64; 6] = [64.42, 64.63, 65.29, 65.53, 65.69, 65.02];
    pub const BASE: f64 = 52.28;
    pub const FULL: f64 = 65.12;
    /// (labelling, InternVL, Qwen) on full data.
    pub const LABELLING: [(&str, f64, f64); 4] = [
        ("hard-0", 65.12, 65.57),
        ("hard-1/16", 64.26, 65.27),
        ("hard-2/16", 63.02, 62.72),
        ("soft", 61.54, 62.23),
    ];
    /// Table 4 at 25%.
    pub const ABLATION: [(&str, f64); 5] = [
        ("bis", 65.46),
        ("mixed", 64.70),
        ("reliable", 62.75),
        ("low-mc", 64.18),
        ("random", 63.37),
    ];
    /// Table 5 at 25%.
    pub const ALPHA: [(f64, f64); 3] = [(0.02, 64.84), (0.05, 65.46), (0.08, 64.86)];

    pub fn at(budgets: &[f64], values: &[f64], b: f64) -> Option<f64> {
        budgets
            .iter()
            .position(|x| (x - b).abs() < 1e-9)
            .map(|i| values[i])
    }
}

pub(super) fn same(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

impl SelectionResults {
    pub(super) fn runs(&self, row: &str, budget: f64) -> Vec<&RunResult> {
        let mut v: Vec<&CellRecord> = self
            .cells
            .iter()
            .filter(|c| c.row == row && same(c.budget, budget))
            .collect();
        v.sort_by_key(|c| c.seed_index);
        v.into_iter().map(|c| &c.result).collect()
    }

    pub(super) fn overall(&self, row: &str, budget: f64) -> Option<MeanCi> {
        let v: Vec<f64> = self
            .runs(row, budget)
            .iter()
            .map(|r| 100.0 * r.test_overall)
            .collect();
        (!v.is_empty()).then(|| mean_ci95(&v))
    }

    /// Paired (same seed index) differences row − reference, ×100.
    pub(super) fn paired_delta(&self, row: &str, reference: &str, budget: f64) -> Option<MeanCi> {
        self.paired_delta_of(row, reference, budget, Metric::Overall)
    }

    /// Paired (same seed index) differences row − reference of `metric`, ×100.
    pub(super) fn paired_delta_of(
        &self,
        row: &str,
        reference: &str,
        budget: f64,
        metric: Metric,
    ) -> Option<MeanCi> {
        let a = self.runs(row, budget);
        let b = self.runs(reference, budget);
        if a.is_empty() || a.len() != b.len() {
            return None;
        }
        let d: Option<Vec<f64>> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| Some(100.0 * (metric.of(x)? - metric.of(y)?)))
            .collect();
        d.map(|d| mean_ci95(&d))
    }

    /// Mean and 95% CI of `metric` ×100 over the seeds of (row, budget).
    pub(super) fn metric(&self, row: &str, budget: f64, metric: Metric) -> Option<MeanCi> {
        let v: Option<Vec<f64>> = self
            .runs(row, budget)
            .iter()
            .map(|r| metric.of(r).map(|v| 100.0 * v))
            .collect();
        v.filter(|v| !v.is_empty()).map(|v| mean_ci95(&v))
    }

    pub(super) fn rows(&self) -> Vec<String> {
        self.config
            .selectors
            .iter()
            .map(SelectorSpec::label)
            .collect()
    }
}

/// A bench-test measurement of a trained head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Metric {
    /// Overall (the paper's headline).
    Overall,
    /// Step-level AUC.
    Auc,
    /// Best-of-N accuracy, candidates ranked by their weakest step's score.
    BestOfNMin,
}

impl Metric {
    fn of(self, r: &RunResult) -> Option<f64> {
        match self {
            Metric::Overall => Some(r.test_overall),
            Metric::Auc => Some(r.test_auc).filter(|v| v.is_finite()),
            Metric::BestOfNMin => r.best_of_n.as_ref().map(|n| n.min),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Metric::Overall => "Overall",
            Metric::Auc => "step AUC",
            Metric::BestOfNMin => "best-of-N accuracy (min aggregation)",
        }
    }
}

pub(super) fn ci_cell(v: Option<MeanCi>) -> Cell {
    match v {
        Some(ci) => Cell::Ci { ci, digits: 2 },
        None => Cell::Empty,
    }
}

pub(super) fn num_cell(v: Option<f64>, digits: usize) -> Cell {
    v.map_or(Cell::Empty, |x| Cell::num(x, digits))
}

pub(super) fn pct(b: f64) -> String {
    format!("{}%", (b * 100.0 * 100.0).round() / 100.0)
}

/// Tables, figures and the summary of the results; `corpus` names the world they ran on (the
/// oracle's note says whose teacher it reads).
pub fn render(r: &SelectionResults, corpus: CorpusKind) -> Rendered {
    let full = r.overall("full", 1.0);
    let t2 = overall_table(r, full, corpus);
    let gap = bis_minus_random(r);
    let tl = labelling_table(r);
    let (ts, saturation_plot) = saturation(r, full);
    let mut out = Rendered::default();
    out.tables.push(("table2_overall".into(), t2.clone()));
    out.tables.push(("bis_minus_random".into(), gap.clone()));
    out.tables.push(("delta_vs_bis".into(), delta_vs_bis(r)));
    for (stem, metric) in [("auc", Metric::Auc), ("best_of_n_min", Metric::BestOfNMin)] {
        out.tables.push((stem.into(), metric_table(r, metric)));
        out.tables
            .push((format!("delta_vs_bis_{stem}"), delta_vs_bis_of(r, metric)));
    }
    out.tables.push(("table4_ablations".into(), ablations(r)));
    out.tables.push(("table5_alpha".into(), alpha_sweep(r)));
    out.tables.push(("labelling".into(), tl.clone()));
    out.tables.push(("saturation".into(), ts));
    out.plots.push(("saturation".into(), saturation_plot));
    out.plots.push(("budgets".into(), budget_curves(r, full)));
    out.tables.push(("best_of_n".into(), best_of_n_table(r)));
    out.tables.push(("subset_profiles".into(), profiles(r)));
    out.tables
        .push(("learning_rates".into(), learning_rates(r)));
    out.summary = super::summary::summary(r, &t2, &gap, &tl, full);
    // Results written before checks existed get them from the stored runs.
    let checks = if r.checks.is_empty() {
        derived_checks(r)
    } else {
        r.checks.clone()
    };
    let checks = crate::experiments::checks::checks_table(
        &checks,
        "Selection checks (decision rule fixed in the config)",
    );
    out.summary.push('\n');
    out.summary.push_str(&checks.to_markdown());
    out.tables.push(("checks".into(), checks));
    out.key_table = format!("{}\n{}", t2.to_markdown(), gap.to_markdown());
    out
}

/// "selector" and one column per budget.
fn budget_columns(r: &SelectionResults) -> Vec<String> {
    let mut cols: Vec<String> = vec!["selector".into()];
    cols.extend(r.config.budgets.iter().map(|b| pct(*b)));
    cols
}

/// Table 2 shape: selectors × budgets, with full data, the untrained head and the paper's rows.
fn overall_table(r: &SelectionResults, full: Option<MeanCi>, corpus: CorpusKind) -> Table {
    let cfg = &r.config;
    let cols = budget_columns(r);
    let col_refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    let mut t2 = Table::new(
        "Bench test Overall (×100, threshold tuned on dev), mean ± 95% CI over seeds",
        &col_refs,
    );
    for row in r.rows() {
        let mut cells = vec![Cell::text(&row)];
        cells.extend(cfg.budgets.iter().map(|&b| ci_cell(r.overall(&row, b))));
        t2.push(cells);
    }
    let mut full_row = vec![Cell::text("full data")];
    full_row.extend(cfg.budgets.iter().map(|_| ci_cell(full)));
    t2.push(full_row);
    let mut base_row = vec![Cell::text("base (untrained)")];
    base_row.extend(
        cfg.budgets
            .iter()
            .map(|_| Cell::num(100.0 * r.base.test_overall, 2)),
    );
    t2.push(base_row);
    for (name, values) in [
        ("paper random (InternVL2.5-8B)", &paper::RANDOM),
        ("paper BIS (InternVL2.5-8B)", &paper::BIS),
    ] {
        let mut cells = vec![Cell::text(name)];
        cells.extend(
            cfg.budgets
                .iter()
                .map(|&b| num_cell(paper::at(&paper::BUDGETS, values, b), 2)),
        );
        t2.push(cells);
    }
    let listed = |methods: &[&str]| -> Vec<String> {
        r.rows()
            .into_iter()
            .filter(|row| methods.contains(&row.as_str()))
            .map(|row| format!("`{row}`"))
            .collect()
    };
    let dev_users = listed(&["less", "tracin", "influence", "bis-tracin"]);
    let mut privileged = String::new();
    if !dev_users.is_empty() {
        privileged.push_str(&format!(
            " {} use{} the bench's labelled dev split, which BIS and the other selectors do not.",
            dev_users.join(", "),
            if dev_users.len() == 1 { "s" } else { "" }
        ));
    }
    if !listed(&["oracle"]).is_empty() {
        privileged.push_str(match corpus {
            CorpusKind::Synth => {
                " `oracle` reads the simulator's teacher, which no real method can."
            }
            CorpusKind::Policy => {
                " `oracle` reads the world's linear teacher (a ridge logistic fit of the \
                 verifier's step labels on the policy's hidden states), which no real method has."
            }
        });
    }
    t2.notes.push(format!(
        "{} seeds per cell; corpus of {} rollouts, global batch {} (the paper's 512 scaled to the corpus, so a budget gets the paper's number of updates).{privileged} \
         The paper's rows are single runs on VisualProcessBench (its full data: {}, base: {}).",
        cfg.seeds, r.corpus_rollouts, r.global_batch, paper::FULL, paper::BASE
    ));
    t2
}

/// One `bis-vs-random@B` check per budget where both rows ran, decided by the config's rule (a
/// pure function of the stored runs, so older results get them from `mprm report`).
pub fn derived_checks(r: &SelectionResults) -> Vec<crate::experiments::checks::Check> {
    use crate::experiments::checks::{Check, CheckKind};
    r.config
        .budgets
        .iter()
        .filter_map(|&b| {
            let d = r.paired_delta("bis", "random", b)?;
            Some(Check::decided(
                &format!("bis-vs-random@{}%", 100.0 * b),
                CheckKind::Intervention,
                &format!(
                    "BIS's {}% subset trains a better head than a random {}% subset (bench-test \
                     Overall ×100, paired by seed)",
                    100.0 * b,
                    100.0 * b
                ),
                d.mean,
                [d.lo(), d.hi()],
                r.config.bis_vs_random,
            ))
        })
        .collect()
}

/// BIS − random, paired by seed, against the paper's gap.
fn bis_minus_random(r: &SelectionResults) -> Table {
    let cfg = &r.config;
    let mut gap = Table::new(
        "BIS − random at each budget (×100, paired by seed), against the paper",
        &[
            "budget",
            "mprm Δ (95% CI)",
            "paper Δ InternVL",
            "paper Δ Qwen",
        ],
    );
    for &b in &cfg.budgets {
        let p = |v: &[f64; 6], w: &[f64; 6]| {
            paper::at(&paper::BUDGETS, v, b)
                .zip(paper::at(&paper::BUDGETS, w, b))
                .map(|(x, y)| x - y)
        };
        gap.push(vec![
            Cell::text(pct(b)),
            ci_cell(r.paired_delta("bis", "random", b)),
            num_cell(p(&paper::BIS, &paper::RANDOM), 2),
            num_cell(p(&paper::QWEN_BIS, &paper::QWEN_RANDOM), 2),
        ]);
    }
    gap
}

/// Every selector's `metric` at each budget (mean over seeds, 95% CI).
fn metric_table(r: &SelectionResults, metric: Metric) -> Table {
    let cols = budget_columns(r);
    let col_refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    let mut t = Table::new(
        format!(
            "Bench-test {} ×100 (mean over seeds, 95% CI)",
            metric.title()
        ),
        &col_refs,
    );
    for row in r.rows() {
        let mut cells = vec![Cell::text(&row)];
        cells.extend(
            r.config
                .budgets
                .iter()
                .map(|&b| ci_cell(r.metric(&row, b, metric))),
        );
        t.push(cells);
    }
    let mut full = vec![Cell::text("full data")];
    full.extend(
        r.config
            .budgets
            .iter()
            .map(|_| ci_cell(r.metric("full", 1.0, metric))),
    );
    t.push(full);
    t
}

/// Every selector − BIS in `metric`, paired by seed, at each budget.
fn delta_vs_bis_of(r: &SelectionResults, metric: Metric) -> Table {
    let cols = budget_columns(r);
    let col_refs: Vec<&str> = cols.iter().map(String::as_str).collect();
    let mut vs = Table::new(
        format!(
            "Each selector − BIS in bench-test {} (×100, paired by seed, 95% CI)",
            metric.title()
        ),
        &col_refs,
    );
    for row in r.rows().into_iter().filter(|x| x != "bis") {
        let mut cells = vec![Cell::text(&row)];
        cells.extend(
            r.config
                .budgets
                .iter()
                .map(|&b| ci_cell(r.paired_delta_of(&row, "bis", b, metric))),
        );
        vs.push(cells);
    }
    vs
}

/// Every selector against BIS in Overall, paired, at each budget.
fn delta_vs_bis(r: &SelectionResults) -> Table {
    delta_vs_bis_of(r, Metric::Overall)
}

/// Table 4 shape at the sweep budget.
fn ablations(r: &SelectionResults) -> Table {
    let cfg = &r.config;
    let b25 = cfg.sweep_budget;
    let mut t4 = Table::new(
        format!("Selection ablations at {} (Table 4 shape)", pct(b25)),
        &[
            "selector",
            "mprm Overall",
            "mprm Δ vs BIS",
            "paper Overall",
            "paper Δ vs BIS",
        ],
    );
    for (name, p) in paper::ABLATION {
        let pbis = paper::ABLATION[0].1;
        t4.push(vec![
            Cell::text(name),
            ci_cell(r.overall(name, b25)),
            if name == "bis" {
                Cell::Empty
            } else {
                ci_cell(r.paired_delta(name, "bis", b25))
            },
            Cell::num(p, 2),
            if name == "bis" {
                Cell::Empty
            } else {
                Cell::num(p - pbis, 2)
            },
        ]);
    }
    t4
}

/// Table 5: BIS α sensitivity at the sweep budget.
fn alpha_sweep(r: &SelectionResults) -> Table {
    let cfg = &r.config;
    let b25 = cfg.sweep_budget;
    let mut t5 = Table::new(
        format!("BIS α sensitivity at {} (Table 5 shape)", pct(b25)),
        &["α", "mprm Overall", "paper Overall"],
    );
    for &a in &cfg.alpha_sweep {
        let label = if a == 0.05 {
            "bis".to_string()
        } else {
            format!("bis α={a}")
        };
        let paper_v = paper::ALPHA
            .iter()
            .find(|(x, _)| same(*x, a))
            .map(|(_, v)| *v);
        t5.push(vec![
            Cell::num(a, 2),
            ci_cell(r.overall(&label, b25)),
            num_cell(paper_v, 2),
        ]);
    }
    t5
}

/// Labelling schemes on full data.
fn labelling_table(r: &SelectionResults) -> Table {
    let cfg = &r.config;
    let mut tl = Table::new(
        "Labelling schemes on full data",
        &["labels", "mprm Overall", "paper InternVL", "paper Qwen"],
    );
    for l in &cfg.labelling {
        let row = if l == "hard-0" {
            "full".to_string()
        } else {
            format!("full {l}")
        };
        let p = paper::LABELLING.iter().find(|(n, ..)| n == l);
        tl.push(vec![
            Cell::text(l),
            ci_cell(r.overall(&row, 1.0)),
            num_cell(p.map(|x| x.1), 2),
            num_cell(p.map(|x| x.2), 2),
        ]);
    }
    tl
}

/// Saturation of random subsets: the table and its figure.
fn saturation(r: &SelectionResults, full: Option<MeanCi>) -> (Table, Plot) {
    let cfg = &r.config;
    let mut sat_budgets: Vec<f64> = cfg.saturation_budgets.clone();
    sat_budgets.sort_by(f64::total_cmp);
    let mut ts = Table::new(
        "Random-subsampling saturation",
        &["budget", "mprm Overall", "share of full-data Overall"],
    );
    let mut pts = Vec::new();
    for &b in &sat_budgets {
        let v = r.overall("random", b);
        ts.push(vec![
            Cell::text(pct(b)),
            ci_cell(v),
            num_cell(v.zip(full).map(|(x, f)| x.mean / f.mean), 3),
        ]);
        if let Some(v) = v {
            pts.push((b, v.mean, Some(v.half_width)));
        }
    }
    if let Some(f) = full {
        ts.push(vec![
            Cell::text("100%"),
            ci_cell(Some(f)),
            Cell::num(1.0, 3),
        ]);
        pts.push((1.0, f.mean, Some(f.half_width)));
    }
    let plot = Plot::Lines {
        title: "Random subsets saturate: bench test Overall vs budget".into(),
        x_label: "budget (fraction of every source)".into(),
        y_label: "Overall ×100 (mean, 95% CI)".into(),
        series: vec![
            Series {
                name: "random".into(),
                points: pts,
                reference: false,
            },
            Series {
                name: "base (untrained)".into(),
                points: vec![(0.0, 100.0 * r.base.test_overall, None)],
                reference: true,
            },
        ],
    };
    (ts, plot)
}

/// Budget curves of every selector, with full data as a reference line.
fn budget_curves(r: &SelectionResults, full: Option<MeanCi>) -> Plot {
    let cfg = &r.config;
    let mut series: Vec<Series> = r
        .rows()
        .iter()
        .map(|row| Series {
            name: row.clone(),
            points: cfg
                .budgets
                .iter()
                .filter_map(|&b| r.overall(row, b).map(|v| (b, v.mean, Some(v.half_width))))
                .collect(),
            reference: false,
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if let Some(f) = full {
        series.push(Series {
            name: "full data".into(),
            points: vec![(0.0, f.mean, None)],
            reference: true,
        });
    }
    Plot::Lines {
        title: "Selectors at equal budgets: bench test Overall".into(),
        x_label: "budget".into(),
        y_label: "Overall ×100 (mean, 95% CI)".into(),
        series,
    }
}

/// Best-of-N at the sweep budget.
fn best_of_n_table(r: &SelectionResults) -> Table {
    let b25 = r.config.sweep_budget;
    let mut bon = Table::new(
        format!(
            "Best-of-N on bench test questions at {} (accuracy ×100)",
            pct(b25)
        ),
        &[
            "selector",
            "mean agg.",
            "min agg.",
            "last agg.",
            "random pick",
            "oracle",
        ],
    );
    let bon_rows: Vec<(String, f64)> = r
        .rows()
        .into_iter()
        .map(|row| (row, b25))
        .chain([("full".to_string(), 1.0)])
        .collect();
    for (row, b) in bon_rows {
        let runs = r.runs(&row, b);
        let get = |f: fn(&BestOfN) -> f64| {
            let v: Vec<f64> = runs
                .iter()
                .filter_map(|x| x.best_of_n.as_ref().map(|n| 100.0 * f(n)))
                .collect();
            (!v.is_empty()).then(|| mean_ci95(&v))
        };
        if runs.is_empty() {
            continue;
        }
        bon.push(vec![
            Cell::text(if b == 1.0 {
                "full data".to_string()
            } else {
                row
            }),
            ci_cell(get(|n| n.mean)),
            ci_cell(get(|n| n.min)),
            ci_cell(get(|n| n.last)),
            ci_cell(get(|n| n.random)),
            ci_cell(get(|n| n.oracle)),
        ]);
    }
    bon
}

/// What each selector keeps at the sweep budget.
fn profiles(r: &SelectionResults) -> Table {
    let b25 = r.config.sweep_budget;
    let mut prof = Table::new(
        format!("What each selector keeps at {} (first seed)", pct(b25)),
        &[
            "selector",
            "rollouts",
            "mixed",
            "all-negative",
            "mean p(1−p)",
            "mean R",
            "error steps",
            "pseudo-positives",
        ],
    );
    for p in r.profiles.iter().filter(|p| same(p.budget, b25)) {
        prof.push(vec![
            Cell::text(&p.row),
            Cell::num(p.rollouts as f64, 0),
            Cell::num(p.mixed, 3),
            Cell::num(p.all_negative, 3),
            Cell::num(p.mixture, 3),
            Cell::num(p.reliability, 3),
            Cell::num(p.error_steps, 3),
            Cell::num(p.pseudo_positive, 3),
        ]);
    }
    prof.notes.push(
        "pseudo-positives: share of positive (s > 0) steps that are truly wrong in the simulator."
            .into(),
    );
    prof
}

/// Learning rates chosen on dev, with how many choices needed rates past the grid and how many
/// are still at an end of the rates tried.
fn learning_rates(r: &SelectionResults) -> Table {
    let mut lr = Table::new(
        "Learning rates chosen on the dev split",
        &[
            "row",
            "budget",
            "lr",
            "dev Overall at lr",
            "rates tried",
            "past grid",
            "at edge",
        ],
    );
    let mut audit = LrAudit::default();
    for c in &r.lr_choices {
        let dev = c
            .trials
            .iter()
            .find(|t| same(t.lr, c.lr))
            .map(|t| t.dev_overall);
        let at_edge = lr_edge(&c.trials).1.is_some();
        audit.add(&c.trials, c.extensions);
        lr.push(vec![
            Cell::text(&c.row),
            Cell::text(pct(c.budget)),
            Cell::num(c.lr, 4),
            num_cell(dev, 4),
            Cell::num(c.trials.len() as f64, 0),
            Cell::num(c.extensions as f64, 0),
            Cell::text(if at_edge { "yes" } else { "no" }),
        ]);
    }
    lr.notes.push(audit.sentence());
    lr
}

/// The selection-cost table from the timings a run recorded (wall seconds to compute a method's
/// keys and choose one budget, as a ratio to BIS). It changes from run to run, unlike the rest.
pub fn cost_table(cost: &BTreeMap<String, f64>) -> Option<Table> {
    let bis = *cost.get("bis")?;
    let mut t = Table::new(
        "Selection cost: wall time to compute keys and choose a subset (first seed)",
        &["selector", "seconds", "× BIS"],
    );
    for (name, secs) in cost {
        t.push(vec![
            Cell::text(name),
            Cell::num(*secs, 4),
            Cell::num(secs / bis, 1),
        ]);
    }
    t.notes.push(
        "Measured in the run that produced these results; timings vary between runs and machines \
         (the only numbers in this folder that do)."
            .into(),
    );
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle's note names the teacher of the world the results came from: the committed
    /// learned-policy results must not say "the simulator's teacher".
    #[test]
    fn the_oracle_note_names_the_world_it_ran_on() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("experiments/results/policy/corpus-42/selection/results.json");
        let r: SelectionResults =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let note = |corpus| {
            let out = render(&r, corpus);
            let (_, t2) = out
                .tables
                .iter()
                .find(|(name, _)| name == "table2_overall")
                .unwrap();
            t2.notes.join(" ")
        };
        let world = note(CorpusKind::Policy);
        assert!(world.contains("the world's linear teacher"), "{world}");
        assert!(!world.contains("simulator's teacher"), "{world}");
        let synth = note(CorpusKind::Synth);
        assert!(
            synth.contains("`oracle` reads the simulator's teacher"),
            "{synth}"
        );
    }
}
