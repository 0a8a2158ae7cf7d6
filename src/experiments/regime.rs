//! The regime map: where BIS beats random selection, over the simulator's knobs.
//!
//! The sign of BIS − random changed between committed configs (−1.42 ± 1.89 at 5% in the main
//! job, +6.23 ± 0.60 in the selection config), so a single config cannot say where BIS wins.
//! This experiment sweeps feature dimension × post-error success × difficulty spread × nuisance
//! scale, draws every grid point's corpus several times (different corpus seeds), and at each
//! budget trains random and BIS subsets for several training seeds. A cell's estimate is the
//! mean over corpus draws of the per-draw mean paired difference (×100, paired by training
//! seed), and its 95% interval is a Student-t interval over the draw means: the corpus draw is
//! the replication unit, so between-draw variance is never hidden behind seed-level noise. The
//! spread between seeds within a draw is reported beside it.
//!
//! A cell's verdict is `wins` when the interval lies above 0, `loses` when it lies below, and
//! `tie` otherwise (rule fixed here, before any run).

use serde::{Deserialize, Serialize};

use super::cells::CellStore;
use super::checks::{Check, CheckKind, Rule};
use super::config::{CorpusConfig, TrainSettings};
use super::context::{Corpus, ExperimentContext};
use super::plot::Plot;
use super::report::Rendered;
use super::selection::{self, SelectionConfig, SelectorSpec};
use super::stats::{MeanCi, mean_ci95};
use super::table::{Cell, Table};
use super::training::LrAudit;
use crate::device::Device;
use crate::error::{Error, Result};

/// The grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegimeConfig {
    /// Feature dimensions d.
    pub dims: Vec<usize>,
    /// Mean post-error success rates E[ρ]; 0 means fitted to Table 1 (the default).
    pub post_error_success: Vec<f64>,
    /// Question-difficulty spreads σ_q.
    pub difficulty_spread: Vec<f64>,
    /// Nuisance multipliers.
    pub nuisance_scale: Vec<f64>,
    /// Budgets (fractions of each source).
    pub budgets: Vec<f64>,
    /// Corpus seeds: one corpus draw per seed at every grid point.
    pub corpus_seeds: Vec<u64>,
    /// Training seeds per cell.
    pub seeds: usize,
    /// Decision rule of each cell's `bis-vs-random` check: BIS − random on bench-test Overall
    /// ×100, 95% t-interval over corpus draws.
    pub bis_vs_random: Rule,
}

impl Default for RegimeConfig {
    fn default() -> Self {
        RegimeConfig {
            dims: vec![64, 256, 512],
            post_error_success: vec![0.0, 0.25],
            difficulty_spread: vec![1.0, 2.0],
            nuisance_scale: vec![0.5, 1.0, 2.0],
            budgets: vec![0.05, 0.10, 0.25],
            corpus_seeds: vec![42, 43, 44],
            seeds: 5,
            bis_vs_random: Rule::new(0.0, 10.0),
        }
    }
}

impl RegimeConfig {
    /// Checks every axis.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid(format!("regime: {m}")));
        if self.dims.is_empty()
            || self.post_error_success.is_empty()
            || self.difficulty_spread.is_empty()
            || self.nuisance_scale.is_empty()
            || self.budgets.is_empty()
        {
            return bad("every axis needs at least one value");
        }
        if self.corpus_seeds.len() < 2 || self.seeds < 2 {
            return bad("at least 2 corpus seeds and 2 training seeds (intervals need them)");
        }
        if self.dims.contains(&0) {
            return bad("dims must be positive");
        }
        if !self
            .post_error_success
            .iter()
            .all(|p| (0.0..1.0).contains(p))
        {
            return bad("post_error_success values must lie in [0, 1) (0 = fitted)");
        }
        if !self
            .difficulty_spread
            .iter()
            .chain(&self.nuisance_scale)
            .all(|v| v.is_finite() && *v >= 0.0)
        {
            return bad("difficulty_spread and nuisance_scale must be finite and ≥ 0");
        }
        if !self.budgets.iter().all(|b| *b > 0.0 && *b < 1.0) {
            return bad("budgets must lie in (0, 1)");
        }
        self.bis_vs_random.validate("regime: bis_vs_random")
    }

    fn points(&self) -> Vec<RegimePoint> {
        let mut out = Vec::new();
        for &dim in &self.dims {
            for &post_error_success in &self.post_error_success {
                for &difficulty_spread in &self.difficulty_spread {
                    for &nuisance_scale in &self.nuisance_scale {
                        out.push(RegimePoint {
                            dim,
                            post_error_success,
                            difficulty_spread,
                            nuisance_scale,
                        });
                    }
                }
            }
        }
        out
    }
}

/// One grid point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegimePoint {
    /// d.
    pub dim: usize,
    /// E[ρ] (0 = fitted).
    pub post_error_success: f64,
    /// σ_q.
    pub difficulty_spread: f64,
    /// Nuisance multiplier.
    pub nuisance_scale: f64,
}

impl RegimePoint {
    fn key(&self) -> String {
        format!(
            "d{}-rho{}-sq{}-nu{}",
            self.dim, self.post_error_success, self.difficulty_spread, self.nuisance_scale
        )
    }

    fn rho_label(&self) -> String {
        if self.post_error_success == 0.0 {
            "fitted".into()
        } else {
            format!("{}", self.post_error_success)
        }
    }

    fn corpus(&self, base: &CorpusConfig, seed: u64) -> CorpusConfig {
        CorpusConfig {
            dim: self.dim,
            seed,
            nuisance_scale: self.nuisance_scale,
            difficulty_spread: Some(self.difficulty_spread),
            post_error_success: (self.post_error_success > 0.0).then_some(self.post_error_success),
            existing: None,
            ..base.clone()
        }
    }
}

/// One corpus draw at one grid point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointDraw {
    /// The grid point.
    pub point: RegimePoint,
    /// Its corpus seed.
    pub corpus_seed: u64,
    /// Mean full-data test Overall (×100) over training seeds.
    pub full: f64,
    /// Per budget: BIS − random test Overall (×100), one entry per training seed.
    pub deltas: Vec<(f64, Vec<f64>)>,
    /// Chosen learning rates still at an end of the rates tried after extending the grid (for
    /// the audit; results written before the extensions counted ends of the configured grid).
    pub lr_at_edge: usize,
    /// Choices that needed rates beyond the configured grid (0 in older results).
    #[serde(default)]
    pub lr_extended: usize,
    /// Learning-rate choices made (0 in older results, which made `2 × budgets + 1`).
    #[serde(default)]
    pub lr_choices: usize,
}

/// Everything the regime map measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegimeResults {
    /// The grid, as run.
    pub config: RegimeConfig,
    /// The base corpus settings every point modifies.
    pub corpus: CorpusConfig,
    /// Every (point, corpus draw).
    pub draws: Vec<PointDraw>,
    /// One `bis-vs-random` check per grid point and budget (derived from `draws` and the rule;
    /// results written before checks existed get them from `mprm report`).
    #[serde(default)]
    pub checks: Vec<Check>,
    /// True when `checks` was added after the run by `mprm report` (the run predates decision
    /// rules stated in its config), so its verdicts are post hoc.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checks_post_hoc: bool,
}

/// Runs the grid into `dir` (one work folder per point and draw under `dir/cells/regime`, kept
/// out of the results like every cache; its corpus is deleted once its cells are saved, and a
/// finished draw is cached in `cells`).
pub fn run(
    cfg: &RegimeConfig,
    base: &CorpusConfig,
    train: &TrainSettings,
    device: Device,
    seed: u64,
    dir: &std::path::Path,
    cells: &CellStore,
) -> Result<RegimeResults> {
    let points = cfg.points();
    let bar = crate::progress::bar(
        (points.len() * cfg.corpus_seeds.len()) as u64,
        "regime points",
    );
    let mut draws = Vec::new();
    for point in &points {
        for &corpus_seed in &cfg.corpus_seeds {
            let key = format!("regime/{}/corpus{corpus_seed}", point.key());
            let (draw, _) = cells.get_or_compute(&key, || {
                let here = dir
                    .join("cells")
                    .join("regime")
                    .join(format!("{}-c{corpus_seed}", point.key()));
                let corpus = Corpus::prepare(&point.corpus(base, corpus_seed), &here)?;
                let point_cells = CellStore::open(&here)?;
                let ctx = ExperimentContext {
                    corpus: &corpus,
                    cells: &point_cells,
                    device,
                    seed,
                    train,
                };
                let sel = SelectionConfig {
                    budgets: cfg.budgets.clone(),
                    seeds: cfg.seeds,
                    selectors: vec![SelectorSpec::new("random"), SelectorSpec::new("bis")],
                    saturation_budgets: vec![],
                    labelling: vec![],
                    alpha_sweep: vec![],
                    sweep_budget: cfg.budgets[0],
                    ..SelectionConfig::default()
                };
                let (results, _) = selection::run(&sel, &ctx)?;
                drop(corpus);
                // The corpus can be regenerated from its settings; only the cells are kept.
                std::fs::remove_dir_all(here.join("corpus"))
                    .map_err(|e| Error::io(here.join("corpus"), e))?;
                Ok(summarise(*point, corpus_seed, &results))
            })?;
            draws.push(draw);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mut results = RegimeResults {
        config: cfg.clone(),
        corpus: base.clone(),
        draws,
        checks: Vec::new(),
        checks_post_hoc: false,
    };
    results.checks = checks(&results);
    Ok(results)
}

/// The verdict of every map cell under the config's rule: does BIS beat random there?
pub fn checks(r: &RegimeResults) -> Vec<Check> {
    map_cells(r)
        .iter()
        .map(|c| {
            Check::decided(
                &format!("bis-vs-random@{}@{:.0}%", c.point.key(), 100.0 * c.budget),
                CheckKind::Intervention,
                &format!(
                    "At d = {}, E[ρ] = {}, σ_q = {}, nuisance ×{}, BIS's {:.0}% subset trains a \
                     better head than a random one (bench-test Overall ×100, over corpus draws)",
                    c.point.dim,
                    c.point.rho_label(),
                    c.point.difficulty_spread,
                    c.point.nuisance_scale,
                    100.0 * c.budget
                ),
                c.delta.mean,
                [c.delta.lo(), c.delta.hi()],
                r.config.bis_vs_random,
            )
        })
        .collect()
}

fn summarise(point: RegimePoint, corpus_seed: u64, r: &selection::SelectionResults) -> PointDraw {
    let score = |row: &str, budget: f64, i: usize| {
        r.cells
            .iter()
            .find(|c| c.row == row && (c.budget - budget).abs() < 1e-12 && c.seed_index == i)
            .map(|c| 100.0 * c.result.test_overall)
    };
    let seeds = r.config.seeds;
    let full: Vec<f64> = (0..seeds).filter_map(|i| score("full", 1.0, i)).collect();
    let deltas = r
        .config
        .budgets
        .iter()
        .map(|&b| {
            let d = (0..seeds)
                .filter_map(|i| Some(score("bis", b, i)? - score("random", b, i)?))
                .collect();
            (b, d)
        })
        .collect();
    let mut audit = LrAudit::default();
    for c in &r.lr_choices {
        audit.add(&c.trials, c.extensions);
    }
    PointDraw {
        point,
        corpus_seed,
        full: full.iter().sum::<f64>() / full.len().max(1) as f64,
        deltas,
        lr_at_edge: audit.at_edge,
        lr_extended: audit.extended,
        lr_choices: audit.choices,
    }
}

/// One cell of the map: a grid point at one budget, over its corpus draws.
struct MapCell {
    point: RegimePoint,
    budget: f64,
    full: f64,
    /// Over draw means.
    delta: MeanCi,
    /// Mean within-draw standard deviation over seeds.
    seed_sd: f64,
}

impl MapCell {
    fn verdict(&self) -> &'static str {
        if self.delta.lo() > 0.0 {
            "wins"
        } else if self.delta.hi() < 0.0 {
            "loses"
        } else {
            "tie"
        }
    }
}

fn map_cells(r: &RegimeResults) -> Vec<MapCell> {
    let mut out = Vec::new();
    for point in r.config.points() {
        let draws: Vec<&PointDraw> = r.draws.iter().filter(|d| d.point == point).collect();
        for &budget in &r.config.budgets {
            let per_draw: Vec<&Vec<f64>> = draws
                .iter()
                .filter_map(|d| {
                    d.deltas
                        .iter()
                        .find(|(b, _)| (b - budget).abs() < 1e-12)
                        .map(|(_, v)| v)
                })
                .collect();
            let means: Vec<f64> = per_draw
                .iter()
                .map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
                .collect();
            let sds: Vec<f64> = per_draw
                .iter()
                .map(|v| super::stats::sample_sd(v))
                .collect();
            out.push(MapCell {
                point,
                budget,
                full: draws.iter().map(|d| d.full).sum::<f64>() / draws.len().max(1) as f64,
                delta: mean_ci95(&means),
                seed_sd: sds.iter().sum::<f64>() / sds.len().max(1) as f64,
            });
        }
    }
    out
}

/// Tables, heat maps (one per budget) and a summary whose every sentence is a computed number.
pub fn render(r: &RegimeResults) -> Rendered {
    let cells = map_cells(r);
    let mut table = Table::new(
        "BIS − random over the regime grid (×100; mean over corpus draws, 95% t-interval over draws)",
        &[
            "d",
            "E[ρ]",
            "σ_q",
            "nuisance",
            "budget",
            "full Overall",
            "BIS − random",
            "95% CI",
            "seed SD",
            "verdict",
        ],
    );
    for c in &cells {
        table.push(vec![
            Cell::text(c.point.dim.to_string()),
            Cell::text(c.point.rho_label()),
            Cell::num(c.point.difficulty_spread, 1),
            Cell::num(c.point.nuisance_scale, 1),
            Cell::text(format!("{:.0}%", 100.0 * c.budget)),
            Cell::num(c.full, 2),
            Cell::num(c.delta.mean, 2),
            Cell::text(format!("[{:.2}, {:.2}]", c.delta.lo(), c.delta.hi())),
            Cell::num(c.seed_sd, 2),
            Cell::text(c.verdict()),
        ]);
    }

    // Marginal means: each axis level averaged over everything else.
    let mut marginal = Table::new(
        "Mean BIS − random by axis level (×100, over all other axes and budgets)",
        &["axis", "level", "mean", "wins", "ties", "losses"],
    );
    let mut axis = |name: &str, label: &dyn Fn(&MapCell) -> String| {
        let mut levels: Vec<String> = Vec::new();
        for c in &cells {
            let l = label(c);
            if !levels.contains(&l) {
                levels.push(l);
            }
        }
        for l in levels {
            let sel: Vec<&MapCell> = cells.iter().filter(|c| label(c) == l).collect();
            let count = |v: &str| sel.iter().filter(|c| c.verdict() == v).count();
            marginal.push(vec![
                Cell::text(name),
                Cell::text(l.clone()),
                Cell::num(
                    sel.iter().map(|c| c.delta.mean).sum::<f64>() / sel.len() as f64,
                    2,
                ),
                Cell::text(count("wins").to_string()),
                Cell::text(count("tie").to_string()),
                Cell::text(count("loses").to_string()),
            ]);
        }
    };
    axis("d", &|c| c.point.dim.to_string());
    axis("E[ρ]", &|c| c.point.rho_label());
    axis("σ_q", &|c| format!("{}", c.point.difficulty_spread));
    axis("nuisance", &|c| format!("{}", c.point.nuisance_scale));
    axis("budget", &|c| format!("{:.0}%", 100.0 * c.budget));

    // Heat maps: rows d × E[ρ], columns σ_q × nuisance.
    let cfg = &r.config;
    let mut plots = Vec::new();
    let rows: Vec<(usize, f64)> = cfg
        .dims
        .iter()
        .flat_map(|&d| cfg.post_error_success.iter().map(move |&p| (d, p)))
        .collect();
    let cols: Vec<(f64, f64)> = cfg
        .difficulty_spread
        .iter()
        .flat_map(|&s| cfg.nuisance_scale.iter().map(move |&n| (s, n)))
        .collect();
    for &budget in &cfg.budgets {
        let values = rows
            .iter()
            .map(|&(d, p)| {
                cols.iter()
                    .map(|&(s, n)| {
                        cells
                            .iter()
                            .find(|c| {
                                c.point.dim == d
                                    && c.point.post_error_success == p
                                    && c.point.difficulty_spread == s
                                    && c.point.nuisance_scale == n
                                    && (c.budget - budget).abs() < 1e-12
                            })
                            .map(|c| c.delta.mean)
                    })
                    .collect()
            })
            .collect();
        plots.push((
            format!("regime_map_{:.0}pct", 100.0 * budget),
            Plot::Heatmap {
                title: format!(
                    "BIS − random at {:.0}% (×100, mean over corpus draws)",
                    100.0 * budget
                ),
                x_label: "σ_q / nuisance".into(),
                y_label: "d / E[ρ]".into(),
                x_ticks: cols.iter().map(|(s, n)| format!("{s} / {n}")).collect(),
                y_ticks: rows
                    .iter()
                    .map(|&(d, p)| {
                        if p == 0.0 {
                            format!("{d} / fitted")
                        } else {
                            format!("{d} / {p}")
                        }
                    })
                    .collect(),
                values,
            },
        ));
    }

    let n = cells.len();
    let count = |v: &str| cells.iter().filter(|c| c.verdict() == v).count();
    let best = cells
        .iter()
        .max_by(|a, b| a.delta.mean.total_cmp(&b.delta.mean));
    let worst = cells
        .iter()
        .min_by(|a, b| a.delta.mean.total_cmp(&b.delta.mean));
    let describe = |c: &MapCell| {
        format!(
            "d = {}, E[ρ] {}, σ_q = {}, nuisance {}, {:.0}%: {:+.2} [{:.2}, {:.2}]",
            c.point.dim,
            c.point.rho_label(),
            c.point.difficulty_spread,
            c.point.nuisance_scale,
            100.0 * c.budget,
            c.delta.mean,
            c.delta.lo(),
            c.delta.hi()
        )
    };
    // Draws summarised before the count was recorded made one choice per (row, budget) plus the
    // full-data one.
    let audit = r.draws.iter().fold(LrAudit::default(), |a, d| LrAudit {
        choices: a.choices
            + if d.lr_choices > 0 {
                d.lr_choices
            } else {
                2 * cfg.budgets.len() + 1
            },
        at_edge: a.at_edge + d.lr_at_edge,
        extended: a.extended + d.lr_extended,
    });
    let mut summary = format!(
        "### Regime map\n\nOver {} grid cells ({} points × {} budgets, {} corpus draws and {} training \
         seeds each), BIS beats random in {} (95% interval above 0), ties in {} and loses in {}. ",
        n,
        n / cfg.budgets.len().max(1),
        cfg.budgets.len(),
        cfg.corpus_seeds.len(),
        cfg.seeds,
        count("wins"),
        count("tie"),
        count("loses"),
    );
    if let (Some(b), Some(w)) = (best, worst) {
        summary.push_str(&format!(
            "Largest gain: {}. Largest loss: {}. ",
            describe(b),
            describe(w)
        ));
    }
    summary.push_str(&audit.sentence());
    let before = r.draws.iter().filter(|d| d.lr_choices == 0).count();
    if before > 0 {
        summary.push_str(&format!(
            " {before} of the {} draws were run before the grid was extended automatically: \
             their choices at an end of the grid were not re-tuned.",
            r.draws.len()
        ));
    }
    summary.push_str("\n\n");
    summary.push_str(&marginal.to_markdown());
    Rendered {
        key_table: marginal.to_markdown(),
        tables: vec![
            ("regime_map".into(), table),
            ("regime_marginals".into(), marginal),
        ],
        plots,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(deltas_by_draw: &[[f64; 3]]) -> RegimeResults {
        let config = RegimeConfig {
            dims: vec![8],
            post_error_success: vec![0.0],
            difficulty_spread: vec![1.0],
            nuisance_scale: vec![1.0],
            budgets: vec![0.1],
            corpus_seeds: (0..deltas_by_draw.len() as u64).collect(),
            seeds: 3,
            bis_vs_random: Rule::new(0.0, 10.0),
        };
        let point = config.points()[0];
        RegimeResults {
            corpus: CorpusConfig::default(),
            draws: deltas_by_draw
                .iter()
                .enumerate()
                .map(|(i, d)| PointDraw {
                    point,
                    corpus_seed: i as u64,
                    full: 60.0,
                    deltas: vec![(0.1, d.to_vec())],
                    lr_at_edge: 0,
                    lr_extended: 0,
                    lr_choices: 0,
                })
                .collect(),
            config,
            checks: Vec::new(),
            checks_post_hoc: false,
        }
    }

    #[test]
    fn the_interval_is_over_corpus_draws_and_decides_the_verdict() {
        // Seeds agree within each draw, draws agree: a clear win.
        let win = map_cells(&results(&[
            [1.0, 1.2, 0.8],
            [1.1, 0.9, 1.0],
            [0.9, 1.0, 1.1],
        ]));
        assert_eq!(win[0].verdict(), "wins");
        assert!((win[0].delta.mean - 1.0).abs() < 1e-12);
        assert_eq!(win[0].delta.n, 3, "one sample per corpus draw");
        // Tight seeds but draws that disagree in sign: the draws decide, so it is a tie.
        let split = map_cells(&results(&[
            [2.0, 2.0, 2.0],
            [-2.0, -2.0, -2.0],
            [1.0, 1.0, 1.0],
        ]));
        assert_eq!(split[0].seed_sd, 0.0);
        assert_eq!(split[0].verdict(), "tie");
        let lose = map_cells(&results(&[
            [-1.0, -1.1, -0.9],
            [-1.2, -1.0, -0.8],
            [-1.0, -1.0, -1.0],
        ]));
        assert_eq!(lose[0].verdict(), "loses");
        let text = render(&results(&[
            [1.0, 1.2, 0.8],
            [1.1, 0.9, 1.0],
            [0.9, 1.0, 1.1],
        ]))
        .summary;
        assert!(
            text.contains("BIS beats random in 1 (95% interval above 0), ties in 0 and loses in 0"),
            "{text}"
        );
    }

    #[test]
    fn each_map_cell_gets_a_check_decided_by_the_rule() {
        use crate::experiments::checks::Verdict;
        let win = results(&[[1.0, 1.2, 0.8], [1.1, 0.9, 1.0], [0.9, 1.0, 1.1]]);
        let c = checks(&win);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].id, "bis-vs-random@d8-rho0-sq1-nu1@10%");
        assert_eq!(c[0].verdict, Verdict::Agrees);
        let split = results(&[[2.0; 3], [-2.0; 3], [1.0; 3]]);
        assert_eq!(checks(&split)[0].verdict, Verdict::Inconclusive);
        let lose = results(&[[-1.0, -1.1, -0.9], [-1.2, -1.0, -0.8], [-1.0; 3]]);
        assert_eq!(checks(&lose)[0].verdict, Verdict::Disagrees);
        // A rule that needs a narrower interval than the draws give: inconclusive.
        // Draw means 1.0, 1.2, 0.8: the interval is about 1 point wide, above 0.
        let mut spread = results(&[[1.0; 3], [1.2; 3], [0.8; 3]]);
        assert_eq!(checks(&spread)[0].verdict, Verdict::Agrees);
        spread.config.bis_vs_random = Rule::new(0.0, 0.1);
        assert_eq!(checks(&spread)[0].verdict, Verdict::Inconclusive);
    }

    #[test]
    fn draws_written_before_the_lr_extensions_still_load_and_render() {
        let mut r = results(&[[1.0, 1.2, 0.8], [1.1, 0.9, 1.0], [0.9, 1.0, 1.1]]);
        // An older draw: no extension counts, two grid-edge choices.
        let mut old = serde_json::to_value(&r.draws[0]).unwrap();
        old.as_object_mut().unwrap().remove("lr_extended");
        old.as_object_mut().unwrap().remove("lr_choices");
        old["lr_at_edge"] = 2.into();
        r.draws[0] = serde_json::from_value(old).unwrap();
        assert_eq!((r.draws[0].lr_extended, r.draws[0].lr_choices), (0, 0));
        // Three draws × (2 rows × 1 budget + full) choices, the older one counted by its shape.
        r.draws[1].lr_choices = 3;
        r.draws[1].lr_extended = 1;
        let text = render(&r).summary;
        assert!(
            text.contains(": 2 of 9 choices; 1 of 9 needed an extension"),
            "{text}"
        );
    }

    #[test]
    fn a_grid_without_replication_is_refused() {
        let cfg = RegimeConfig {
            corpus_seeds: vec![1],
            ..RegimeConfig::default()
        };
        assert!(cfg.validate().is_err());
        assert!(RegimeConfig::default().validate().is_ok());
    }
}
