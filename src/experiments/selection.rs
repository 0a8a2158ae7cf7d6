//! Selection comparison: BIS against the paper's baselines and gradient-based selection, at
//! equal budgets, trained under the paper's protocol and scored on the bench with error bars.
//!
//! Every (selector, budget) cell trains one head per seed on the chosen subset (the seed drives
//! the random and mixed baselines, GraNd's initialisations, the EL2N/LESS proxies, the data order
//! and the initialisation; the corpus is fixed) and reports the bench's test Overall at the
//! threshold tuned on dev. A cell's learning rate is chosen on the dev split with the first
//! seed's subset. Cells are cached, so an interrupted sweep resumes where it stopped.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rayon::prelude::*;

use super::context::ExperimentContext;
use super::plot::{Plot, Series};
use super::report::Rendered;
use super::stats::{MeanCi, mean_ci95};
use super::table::{Cell, Table};
use super::training::{BestOfN, LrTrial, RunResult, head_kind, train_eval, tune_lr};
use crate::data::label_stats::LabelStats;
use crate::data::labels::LabelScheme;
use crate::error::{Error, Result};
use crate::gradient_selection::{
    GRADIENT_NAMES, GradientInputs, GradientSettings, ProxySpec, gradient_selector,
};
use crate::head::HeadParams;
use crate::select::Selector;
use crate::select::baselines::{BASELINE_NAMES, Baseline};
use crate::select::pipeline::choose_from_bundle;
use crate::train::plan::derive_seed;

/// One selector row of the comparison.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorSpec {
    /// Method name (`bis`, `random`, `mixed`, `reliable`, `low-mc`, `mixture`, `top-mc`, `grand`,
    /// `el2n`, `gradnorm-teacher`, `less`).
    pub method: String,
    /// BIS smoothing α (default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Run this row only up to this budget (the paper uses α = 0.2 at ≤ 10%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
}

impl SelectorSpec {
    fn new(method: &str) -> Self {
        SelectorSpec {
            method: method.into(),
            alpha: None,
            max_budget: None,
        }
    }

    /// The row label, e.g. `bis α=0.2`.
    pub fn label(&self) -> String {
        match self.alpha {
            Some(a) if self.method == "bis" => format!("bis α={a}"),
            _ => self.method.clone(),
        }
    }

    fn alpha(&self) -> f64 {
        self.alpha.unwrap_or(0.05)
    }

    /// Whether the selection depends on the seed (otherwise every seed trains on one subset).
    fn seeded(&self) -> bool {
        matches!(
            self.method.as_str(),
            "random" | "mixed" | "grand" | "el2n" | "less"
        )
    }
}

/// Settings of the selection comparison.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionConfig {
    /// Budgets ρ (fractions of every source).
    pub budgets: Vec<f64>,
    /// Repeats per cell (≥ 5 for the reported confidence intervals).
    pub seeds: usize,
    /// The compared selectors.
    pub selectors: Vec<SelectorSpec>,
    /// Budgets of the random-subsampling saturation curve (full data is always added).
    pub saturation_budgets: Vec<f64>,
    /// Labelling schemes trained on full data: `hard-0`, `hard-1/16`, `hard-2/16`, `soft`.
    pub labelling: Vec<String>,
    /// α values of the BIS sensitivity sweep.
    pub alpha_sweep: Vec<f64>,
    /// Budget of the α sweep and of the best-of-N table.
    pub sweep_budget: f64,
    /// GraNd: random initialisations averaged.
    pub grand_inits: usize,
    /// EL2N / LESS: fraction of every source the proxy trains on.
    pub proxy_fraction: f64,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        let mut selectors: Vec<SelectorSpec> = ["random", "bis"]
            .iter()
            .map(|m| SelectorSpec::new(m))
            .collect();
        selectors.push(SelectorSpec {
            method: "bis".into(),
            alpha: Some(0.2),
            max_budget: Some(0.10),
        });
        selectors.extend(
            [
                "mixed",
                "reliable",
                "low-mc",
                "grand",
                "el2n",
                "less",
                "gradnorm-teacher",
            ]
            .iter()
            .map(|m| SelectorSpec::new(m)),
        );
        SelectionConfig {
            budgets: vec![0.05, 0.10, 0.15, 0.25, 0.35, 0.50],
            seeds: 5,
            selectors,
            saturation_budgets: vec![0.01, 0.02, 0.05, 0.10, 0.25, 0.50],
            labelling: vec![
                "hard-0".into(),
                "hard-1/16".into(),
                "hard-2/16".into(),
                "soft".into(),
            ],
            alpha_sweep: vec![0.02, 0.05, 0.08, 0.2],
            sweep_budget: 0.25,
            grand_inits: 10,
            proxy_fraction: 0.05,
        }
    }
}

impl SelectionConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        let budget_ok = |b: &f64| *b > 0.0 && *b <= 1.0;
        if self.seeds == 0 {
            return Err(Error::invalid("selection.seeds must be at least 1"));
        }
        if !self
            .budgets
            .iter()
            .chain(&self.saturation_budgets)
            .chain([&self.sweep_budget])
            .all(budget_ok)
        {
            return Err(Error::invalid("selection budgets must be in (0, 1]"));
        }
        for s in &self.selectors {
            if !BASELINE_NAMES.contains(&s.method.as_str())
                && !GRADIENT_NAMES.contains(&s.method.as_str())
            {
                return Err(Error::invalid(format!("unknown selector `{}`", s.method)));
            }
            if s.method == "gradnorm-ckpt" {
                return Err(Error::invalid(
                    "gradnorm-ckpt needs a checkpoint; the experiment compares gradnorm-teacher",
                ));
            }
        }
        for l in &self.labelling {
            labelling_scheme(l)?;
        }
        Ok(())
    }
}

fn labelling_scheme(name: &str) -> Result<LabelScheme> {
    Ok(match name {
        "hard-0" => LabelScheme::Hard { threshold: 0.0 },
        "hard-1/16" => LabelScheme::Hard {
            threshold: 1.0 / 16.0,
        },
        "hard-2/16" => LabelScheme::Hard {
            threshold: 2.0 / 16.0,
        },
        "soft" => LabelScheme::Soft,
        _ => {
            return Err(Error::invalid(format!(
                "unknown labelling `{name}`: hard-0, hard-1/16, hard-2/16 or soft"
            )));
        }
    })
}

/// One trained head.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CellRecord {
    /// Row label (selector, `full`, or a labelling scheme).
    pub row: String,
    /// Budget (1 for full data).
    pub budget: f64,
    /// Repeat index.
    pub seed_index: usize,
    /// What the head scored.
    pub result: RunResult,
}

/// The learning rate chosen on dev for one (row, budget).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrChoice {
    /// Row label.
    pub row: String,
    /// Budget.
    pub budget: f64,
    /// The chosen peak learning rate.
    pub lr: f64,
    /// Dev Overall of every rate tried.
    pub trials: Vec<LrTrial>,
}

/// What a selector keeps at a budget (first seed): the data the theory says matters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubsetProfile {
    /// Row label.
    pub row: String,
    /// Budget.
    pub budget: f64,
    /// Rollouts kept.
    pub rollouts: usize,
    /// Share of mixed rollouts.
    pub mixed: f64,
    /// Share of all-negative rollouts.
    pub all_negative: f64,
    /// Mean p(1 − p).
    pub mixture: f64,
    /// Mean reliability R.
    pub reliability: f64,
    /// Share of steps with score 0.
    pub error_steps: f64,
    /// Share of positive steps that are truly wrong (pseudo-positives), from the simulator.
    pub pseudo_positive: f64,
}

/// Everything the comparison measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SelectionResults {
    /// The settings, as run.
    pub config: SelectionConfig,
    /// Rollouts in the corpus.
    pub corpus_rollouts: usize,
    /// Rollouts per optimiser step.
    pub global_batch: usize,
    /// The untrained head's result (the paper's "Base").
    pub base: RunResult,
    /// Every trained head.
    pub cells: Vec<CellRecord>,
    /// Learning rates chosen on dev.
    pub lr_choices: Vec<LrChoice>,
    /// Subset profiles.
    pub profiles: Vec<SubsetProfile>,
}

/// A selector built for (row label, seed index), with the seconds it took.
type BuiltSelector = ((String, usize), Box<dyn Selector>, f64);

/// A training job of the sweep.
#[derive(Debug, Clone)]
struct Job {
    row: String,
    budget: f64,
    labels: LabelScheme,
    /// The selector (None = full data).
    selector: Option<SelectorSpec>,
}

impl Job {
    fn key(&self) -> String {
        format!("{}@{}", self.row, self.budget)
    }
}

/// Runs the comparison; also returns each method's selection wall time (seconds), which is kept
/// out of the results so they stay byte-identical between runs.
pub fn run(
    cfg: &SelectionConfig,
    ctx: &ExperimentContext<'_>,
) -> Result<(SelectionResults, BTreeMap<String, f64>)> {
    let bundle = &ctx.corpus.bundle;
    let hard0 = LabelScheme::Hard { threshold: 0.0 };
    let seeds: Vec<u64> = (0..cfg.seeds)
        .map(|i| derive_seed(ctx.seed, 0x5E1, i as u64))
        .collect();

    // The grid of (row, budget) jobs.
    let mut jobs: Vec<Job> = Vec::new();
    let mut add = |job: Job| {
        if !jobs.iter().any(|j| j.key() == job.key()) {
            jobs.push(job);
        }
    };
    for spec in &cfg.selectors {
        for &b in &cfg.budgets {
            if spec.max_budget.is_none_or(|m| b <= m + 1e-12) {
                add(Job {
                    row: spec.label(),
                    budget: b,
                    labels: hard0,
                    selector: Some(spec.clone()),
                });
            }
        }
    }
    for &b in &cfg.saturation_budgets {
        add(Job {
            row: "random".into(),
            budget: b,
            labels: hard0,
            selector: Some(SelectorSpec::new("random")),
        });
    }
    for &a in &cfg.alpha_sweep {
        let spec = SelectorSpec {
            method: "bis".into(),
            alpha: if a == 0.05 { None } else { Some(a) },
            max_budget: None,
        };
        add(Job {
            row: spec.label(),
            budget: cfg.sweep_budget,
            labels: hard0,
            selector: Some(spec),
        });
    }
    for l in &cfg.labelling {
        let row = if l == "hard-0" {
            "full".to_string()
        } else {
            format!("full {l}")
        };
        add(Job {
            row,
            budget: 1.0,
            labels: labelling_scheme(l)?,
            selector: None,
        });
    }
    add(Job {
        row: "full".into(),
        budget: 1.0,
        labels: hard0,
        selector: None,
    });

    // Per-seed selectors (gradient keys are the expensive part: computed once per seed).
    let mut cost = BTreeMap::new();
    let specs: Vec<SelectorSpec> = {
        let mut v: Vec<SelectorSpec> = Vec::new();
        for j in &jobs {
            if let Some(s) = &j.selector
                && !v.contains(s)
            {
                v.push(s.clone());
            }
        }
        v
    };
    let proxy_lr = full_data_lr(ctx, hard0)?;
    let bar = crate::progress::bar((specs.len() * seeds.len()) as u64, "selectors");
    let built: Vec<Result<BuiltSelector>> = specs
        .par_iter()
        .flat_map(|spec| (0..seeds.len()).into_par_iter().map(move |i| (spec, i)))
        .map(|(spec, i)| {
            let seed = if spec.seeded() { seeds[i] } else { seeds[0] };
            // The cost of a method is computing its keys and choosing one budget's subset.
            let started = Instant::now();
            let sel = build_selector(spec, seed, ctx, cfg, proxy_lr)?;
            choose_from_bundle(bundle, sel.as_ref(), cfg.sweep_budget)?;
            let secs = started.elapsed().as_secs_f64();
            bar.inc(1);
            Ok(((spec.label(), i), sel, secs))
        })
        .collect();
    bar.finish_and_clear();
    let mut selectors: HashMap<(String, usize), Box<dyn Selector>> = HashMap::new();
    for r in built {
        let ((label, i), sel, secs) = r?;
        if i == 0 {
            cost.insert(label.clone(), secs);
        }
        selectors.insert((label, i), sel);
    }
    let subset = |job: &Job, i: usize| -> Result<Option<Vec<usize>>> {
        match &job.selector {
            None => Ok(None),
            Some(spec) => {
                let sel = &selectors[&(spec.label(), i)];
                let (_, ids) = choose_from_bundle(bundle, sel.as_ref(), job.budget)?;
                Ok(Some(ids.into_iter().map(|id| id.rollout).collect()))
            }
        }
    };

    // Learning rates on dev (first seed's subset), then every seed at that rate.
    let bar = crate::progress::bar(jobs.len() as u64, "tune lr");
    let lr_choices: Vec<Result<LrChoice>> = jobs
        .par_iter()
        .map(|job| {
            let key = format!("lr/{}", job.key());
            let (choice, _) = ctx.cells.get_or_compute(&key, || {
                let sub = subset(job, 0)?;
                let (lr, trials) = tune_lr(ctx, sub.as_deref(), job.labels, seeds[0])?;
                Ok(LrChoice {
                    row: job.row.clone(),
                    budget: job.budget,
                    lr,
                    trials,
                })
            })?;
            bar.inc(1);
            Ok(choice)
        })
        .collect();
    bar.finish_and_clear();
    let lr_choices: Vec<LrChoice> = lr_choices.into_iter().collect::<Result<_>>()?;

    let runs: Vec<(usize, usize)> = (0..jobs.len())
        .flat_map(|j| (0..seeds.len()).map(move |i| (j, i)))
        .collect();
    let bar = crate::progress::bar(runs.len() as u64, "train");
    let cells: Vec<Result<CellRecord>> = runs
        .par_iter()
        .map(|&(j, i)| {
            let job = &jobs[j];
            let key = format!("run/{}/seed{i}", job.key());
            let (result, _) = ctx.cells.get_or_compute(&key, || {
                let sub = subset(job, i)?;
                Ok(train_eval(ctx, sub.as_deref(), job.labels, lr_choices[j].lr, seeds[i])?.0)
            })?;
            bar.inc(1);
            Ok(CellRecord {
                row: job.row.clone(),
                budget: job.budget,
                seed_index: i,
                result,
            })
        })
        .collect();
    bar.finish_and_clear();
    let cells: Vec<CellRecord> = cells.into_iter().collect::<Result<_>>()?;

    let profiles = jobs
        .iter()
        .filter(|j| j.selector.is_some())
        .map(|job| {
            Ok(profile(
                ctx,
                &job.row,
                job.budget,
                &subset(job, 0)?.expect("a selector job"),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let base_head = HeadParams::init(head_kind(ctx), bundle.dim(), seeds[0]);
    let base_report = crate::eval::evaluate_head(&base_head, &ctx.corpus.bench)?;
    let base = RunResult::from_report(&base_report, f64::NAN, seeds[0], 0, 0, f64::NAN)?;

    Ok((
        SelectionResults {
            config: cfg.clone(),
            corpus_rollouts: bundle.n_rollouts(),
            global_batch: ctx.train.global_batch_for(bundle.n_rollouts()),
            base,
            cells,
            lr_choices,
            profiles,
        },
        cost,
    ))
}

/// The dev-tuned learning rate of full-data training (also the proxies' rate).
fn full_data_lr(ctx: &ExperimentContext<'_>, labels: LabelScheme) -> Result<f64> {
    let (choice, _) = ctx.cells.get_or_compute("lr/full@1", || {
        let (lr, trials) = tune_lr(ctx, None, labels, derive_seed(ctx.seed, 0x5E1, 0))?;
        Ok(LrChoice {
            row: "full".into(),
            budget: 1.0,
            lr,
            trials,
        })
    })?;
    Ok(choice.lr)
}

fn build_selector(
    spec: &SelectorSpec,
    seed: u64,
    ctx: &ExperimentContext<'_>,
    cfg: &SelectionConfig,
    proxy_lr: f64,
) -> Result<Box<dyn Selector>> {
    let bundle = &ctx.corpus.bundle;
    if GRADIENT_NAMES.contains(&spec.method.as_str()) {
        let settings = GradientSettings {
            head: head_kind(ctx),
            labels: LabelScheme::Hard { threshold: 0.0 },
            reduction: crate::gradnorm::Reduction::Mean,
            seed,
            inits: cfg.grand_inits,
            proxy: ProxySpec {
                fraction: cfg.proxy_fraction,
                lr: proxy_lr,
                global_batch: ctx.train.global_batch_for(bundle.n_rollouts()),
                epochs: 1,
            },
            device: ctx.device,
        };
        let inputs = GradientInputs {
            bundle,
            bench: Some(&ctx.corpus.bench),
            checkpoint: None,
        };
        Ok(Box::new(gradient_selector(
            &spec.method,
            &inputs,
            &settings,
        )?))
    } else {
        Ok(Box::new(Baseline::from_name(
            &spec.method,
            spec.alpha(),
            seed,
        )?))
    }
}

fn profile(ctx: &ExperimentContext<'_>, row: &str, budget: f64, subset: &[usize]) -> SubsetProfile {
    let b = &ctx.corpus.bundle;
    let truth = b.teacher().expect("experiments run on synthetic bundles");
    let (mut mixed, mut neg, mut mix, mut rel) = (0usize, 0usize, 0.0, 0.0);
    let (mut steps, mut zero, mut pos, mut pseudo) = (0usize, 0usize, 0usize, 0usize);
    for &i in subset {
        let range = b.rollout_steps(i);
        let scores: Vec<f64> = b.mc_scores()[range.clone()]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let st = LabelStats::of(&scores);
        mixed += st.is_mixed() as usize;
        neg += (st.n_pos == 0) as usize;
        mix += st.mixture();
        rel += st.reliability;
        for j in range {
            steps += 1;
            if b.mc_scores()[j] > 0.0 {
                pos += 1;
                pseudo += (truth.true_correct[j] == 0) as usize;
            } else {
                zero += 1;
            }
        }
    }
    let n = subset.len().max(1) as f64;
    SubsetProfile {
        row: row.into(),
        budget,
        rollouts: subset.len(),
        mixed: mixed as f64 / n,
        all_negative: neg as f64 / n,
        mixture: mix / n,
        reliability: rel / n,
        error_steps: zero as f64 / steps.max(1) as f64,
        pseudo_positive: pseudo as f64 / pos.max(1) as f64,
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering: a pure function of the results.

/// The paper's InternVL2.5-8B Overall numbers (Tables 2, 4, 5), for side-by-side tables.
mod paper {
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

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

impl SelectionResults {
    fn runs(&self, row: &str, budget: f64) -> Vec<&RunResult> {
        let mut v: Vec<&CellRecord> = self
            .cells
            .iter()
            .filter(|c| c.row == row && same(c.budget, budget))
            .collect();
        v.sort_by_key(|c| c.seed_index);
        v.into_iter().map(|c| &c.result).collect()
    }

    fn overall(&self, row: &str, budget: f64) -> Option<MeanCi> {
        let v: Vec<f64> = self
            .runs(row, budget)
            .iter()
            .map(|r| 100.0 * r.test_overall)
            .collect();
        (!v.is_empty()).then(|| mean_ci95(&v))
    }

    /// Paired (same seed index) differences row − reference, ×100.
    fn paired_delta(&self, row: &str, reference: &str, budget: f64) -> Option<MeanCi> {
        let a = self.runs(row, budget);
        let b = self.runs(reference, budget);
        if a.is_empty() || a.len() != b.len() {
            return None;
        }
        let d: Vec<f64> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| 100.0 * (x.test_overall - y.test_overall))
            .collect();
        Some(mean_ci95(&d))
    }

    fn rows(&self) -> Vec<String> {
        self.config
            .selectors
            .iter()
            .map(SelectorSpec::label)
            .collect()
    }
}

fn ci_cell(v: Option<MeanCi>) -> Cell {
    match v {
        Some(ci) => Cell::Ci { ci, digits: 2 },
        None => Cell::Empty,
    }
}

fn num_cell(v: Option<f64>, digits: usize) -> Cell {
    v.map_or(Cell::Empty, |x| Cell::num(x, digits))
}

fn pct(b: f64) -> String {
    format!("{}%", (b * 100.0 * 100.0).round() / 100.0)
}

/// Tables, figures and the summary of the results.
pub fn render(r: &SelectionResults) -> Rendered {
    let cfg = &r.config;
    let full = r.overall("full", 1.0);
    let mut out = Rendered::default();

    // Table 2 shape: selectors × budgets.
    let mut cols: Vec<String> = vec!["selector".into()];
    cols.extend(cfg.budgets.iter().map(|b| pct(*b)));
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
    t2.notes.push(format!(
        "{} seeds per cell; corpus of {} rollouts, global batch {} (the paper's 512 scaled to the corpus, so a budget gets the paper's number of updates). \
         `less` uses the bench's labelled dev split, which BIS and the other selectors do not. The paper's rows are single runs on VisualProcessBench (its full data: {}, base: {}).",
        cfg.seeds, r.corpus_rollouts, r.global_batch, paper::FULL, paper::BASE
    ));
    out.tables.push(("table2_overall".into(), t2.clone()));

    // BIS − random, paired by seed, against the paper's gap.
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
    out.tables.push(("bis_minus_random".into(), gap.clone()));

    // Every selector against BIS, paired, at each budget.
    let mut vs = Table::new(
        "Each selector − BIS (×100, paired by seed, 95% CI)",
        &col_refs,
    );
    for row in r.rows().into_iter().filter(|x| x != "bis") {
        let mut cells = vec![Cell::text(&row)];
        cells.extend(
            cfg.budgets
                .iter()
                .map(|&b| ci_cell(r.paired_delta(&row, "bis", b))),
        );
        vs.push(cells);
    }
    out.tables.push(("delta_vs_bis".into(), vs));

    // Table 4 shape at the sweep budget.
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
    out.tables.push(("table4_ablations".into(), t4));

    // Table 5: α sweep.
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
    out.tables.push(("table5_alpha".into(), t5));

    // Labelling schemes on full data.
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
    out.tables.push(("labelling".into(), tl.clone()));

    // Saturation curve of random subsets.
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
    out.tables.push(("saturation".into(), ts));
    out.plots.push((
        "saturation".into(),
        Plot::Lines {
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
        },
    ));

    // Budget curves of every selector.
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
    out.plots.push((
        "budgets".into(),
        Plot::Lines {
            title: "Selectors at equal budgets: bench test Overall".into(),
            x_label: "budget".into(),
            y_label: "Overall ×100 (mean, 95% CI)".into(),
            series,
        },
    ));

    // Best-of-N at the sweep budget.
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
    out.tables.push(("best_of_n".into(), bon));

    // What each selector keeps.
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
    out.tables.push(("subset_profiles".into(), prof));

    // Learning rates chosen on dev.
    let mut lr = Table::new(
        "Learning rates chosen on the dev split",
        &["row", "budget", "lr", "dev Overall at lr"],
    );
    for c in &r.lr_choices {
        let dev = c
            .trials
            .iter()
            .find(|t| same(t.lr, c.lr))
            .map(|t| t.dev_overall);
        lr.push(vec![
            Cell::text(&c.row),
            Cell::text(pct(c.budget)),
            Cell::num(c.lr, 4),
            num_cell(dev, 4),
        ]);
    }
    out.tables.push(("learning_rates".into(), lr));

    out.summary = summary(r, &t2, &gap, &tl, full);
    out.key_table = format!("{}\n{}", t2.to_markdown(), gap.to_markdown());
    out
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

fn summary(
    r: &SelectionResults,
    t2: &Table,
    gap: &Table,
    labelling: &Table,
    full: Option<MeanCi>,
) -> String {
    let mut s = String::from("## Selection comparison\n\n");
    let at = |row: &str, b: f64| r.overall(row, b);
    let describe = |b: f64| -> String {
        let d = r.paired_delta("bis", "random", b);
        match d {
            Some(d) if d.lo() > 0.0 => format!(
                "BIS beats random at {} by {:.2} points (95% CI {:.2} to {:.2})",
                pct(b),
                d.mean,
                d.lo(),
                d.hi()
            ),
            Some(d) if d.hi() < 0.0 => format!(
                "BIS is worse than random at {} by {:.2} points (95% CI {:.2} to {:.2})",
                pct(b),
                -d.mean,
                d.lo(),
                d.hi()
            ),
            Some(d) => format!(
                "BIS and random are indistinguishable at {} (Δ = {:.2}, 95% CI {:.2} to {:.2})",
                pct(b),
                d.mean,
                d.lo(),
                d.hi()
            ),
            None => format!("no BIS/random pair at {}", pct(b)),
        }
    };
    let sentences: Vec<String> = r.config.budgets.iter().map(|&b| describe(b)).collect();
    s.push_str(&format!("{}.\n\n", sentences.join("; ")));
    if let (Some(f), Some(b10), Some(b25)) = (full, at("bis", 0.10), at("bis", 0.25)) {
        s.push_str(&format!(
            "Full data reaches {:.2} ± {:.2}; BIS-10% reaches {:.2} ± {:.2} and BIS-25% {:.2} ± {:.2} (the paper: BIS-10% 65.46 vs full 65.12 on InternVL2.5-8B).\n\n",
            f.mean, f.half_width, b10.mean, b10.half_width, b25.mean, b25.half_width
        ));
    }
    let best_at = |b: f64| {
        r.rows()
            .into_iter()
            .filter_map(|row| at(&row, b).map(|v| (row, v.mean)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    for &b in &[0.10, 0.25] {
        if let Some((row, v)) = best_at(b) {
            s.push_str(&format!("Best mean at {}: `{row}` ({v:.2}).\n", pct(b)));
        }
    }
    s.push('\n');
    s.push_str(&t2.to_markdown());
    s.push('\n');
    s.push_str(&gap.to_markdown());
    s.push('\n');
    s.push_str(&labelling.to_markdown());
    s
}
