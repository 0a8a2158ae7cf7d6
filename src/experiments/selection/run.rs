//! Running the sweep: selectors built once per seed, learning rates tuned on dev, one head
//! trained per (selector, budget, seed), and what each subset keeps.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rayon::prelude::*;

use crate::data::label_stats::LabelStats;
use crate::data::labels::LabelScheme;
use crate::error::Result;
use crate::experiments::context::ExperimentContext;
use crate::experiments::training::{LrTrial, RunResult, TunedLr, head_kind, train_eval, tune_lr};
use crate::gradient_selection::{
    El2nSpec, GRADIENT_NAMES, GradientInputs, GradientSettings, LessSpec, ProxySpec, ReferenceRun,
    ReferenceSpec, gradient_selector, reference_run,
};
use crate::head::HeadParams;
use crate::select::Selector;
use crate::select::baselines::Baseline;
use crate::select::pipeline::choose_from_bundle;
use crate::train::plan::derive_seed;

use super::config::{SelectionConfig, SelectorSpec, labelling_scheme};

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
    /// Dev Overall of every rate tried (the grid and any extensions past its ends).
    pub trials: Vec<LrTrial>,
    /// Rates tried beyond the configured grid because the best sat at an end (0 in results
    /// written before the grid was extended).
    #[serde(default)]
    pub extensions: usize,
    /// The choice is still at an end of the rates tried after extending.
    #[serde(default)]
    pub at_edge: bool,
}

impl LrChoice {
    fn new(row: String, budget: f64, tuned: TunedLr) -> Self {
        LrChoice {
            row,
            budget,
            lr: tuned.lr,
            trials: tuned.trials,
            extensions: tuned.extensions,
            at_edge: tuned.at_edge,
        }
    }
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
    /// The verdicts: BIS against random at every budget (an intervention: the training data
    /// chosen on purpose, the trained heads measured).
    #[serde(default)]
    pub checks: Vec<crate::experiments::checks::Check>,
    /// True when `checks` was added after the run by `mprm report` (the run predates decision
    /// rules stated in its config), so its verdicts are post hoc.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checks_post_hoc: bool,
}

/// The cost row of the reference run, which TracIn, influence, the oracle and the hybrid share
/// (their own rows exclude it).
pub const REFERENCE_COST_ROW: &str = "reference run (shared)";

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
    let stamp = cell_stamp(cfg, ctx);

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
    let proxy_lr = full_data_lr(ctx, hard0, &stamp)?;
    // The reference run (TracIn, influence, the oracle, the hybrid): one per seed, shared.
    let references: Vec<Option<ReferenceRun>> = if specs.iter().any(SelectorSpec::needs_reference) {
        let bar = crate::progress::bar(seeds.len() as u64, "reference runs");
        let runs: Vec<Result<(ReferenceRun, f64)>> = seeds
            .par_iter()
            .map(|&seed| {
                let started = Instant::now();
                let run = reference_run(bundle, &gradient_settings(ctx, cfg, seed, proxy_lr))?;
                bar.inc(1);
                Ok((run, started.elapsed().as_secs_f64()))
            })
            .collect();
        bar.finish_and_clear();
        let mut out = Vec::new();
        for (i, r) in runs.into_iter().enumerate() {
            let (run, secs) = r?;
            if i == 0 {
                cost.insert(REFERENCE_COST_ROW.to_string(), secs);
            }
            out.push(Some(run));
        }
        out
    } else {
        vec![None; seeds.len()]
    };
    let bar = crate::progress::bar((specs.len() * seeds.len()) as u64, "selectors");
    let built: Vec<Result<BuiltSelector>> = specs
        .par_iter()
        .flat_map(|spec| (0..seeds.len()).into_par_iter().map(move |i| (spec, i)))
        .map(|(spec, i)| {
            let seed = if spec.seeded() { seeds[i] } else { seeds[0] };
            // The cost of a method is computing its keys and choosing one budget's subset.
            let started = Instant::now();
            let reference = if spec.seeded() { i } else { 0 };
            let sel = build_selector(
                spec,
                seed,
                ctx,
                cfg,
                proxy_lr,
                references[reference].as_ref(),
            )?;
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
            let key = format!("lr/{}/{stamp}", job.key());
            let (choice, _) = ctx.cells.get_or_compute(&key, || {
                let sub = subset(job, 0)?;
                let tuned = tune_lr(ctx, sub.as_deref(), job.labels, seeds[0])?;
                Ok(LrChoice::new(job.row.clone(), job.budget, tuned))
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
            let key = format!("run/{}/seed{i}/{stamp}", job.key());
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

    let mut results = SelectionResults {
        config: cfg.clone(),
        corpus_rollouts: bundle.n_rollouts(),
        global_batch: ctx.train.global_batch_for(bundle.n_rollouts()),
        base,
        cells,
        lr_choices,
        profiles,
        checks: Vec::new(),
        checks_post_hoc: false,
    };
    results.checks = super::render::derived_checks(&results);
    Ok((results, cost))
}

/// The part of a selection cell's key that names what its value depends on besides its row,
/// budget and seed index: the corpus, the training protocol, the master seed, the device and
/// the selectors' own settings. (The lists of budgets, selectors and seeds only say which cells
/// exist, and the decision rule only reads them, so they are left out: adding a budget reuses
/// every finished cell.)
fn cell_stamp(cfg: &SelectionConfig, ctx: &ExperimentContext<'_>) -> String {
    crate::experiments::cells::settings_hash(&serde_json::json!({
        "corpus": ctx.corpus.manifest.get("settings"),
        "train": ctx.train,
        "seed": ctx.seed,
        "device": ctx.device.to_string(),
        "selection": cell_settings(cfg),
    }))
}

/// The selection settings a cell's value depends on (see [`cell_stamp`]).
fn cell_settings(cfg: &SelectionConfig) -> serde_json::Value {
    let mut selection = serde_json::to_value(cfg).expect("config serialises");
    if let Some(map) = selection.as_object_mut() {
        for listing in [
            "budgets",
            "seeds",
            "selectors",
            "saturation_budgets",
            "labelling",
            "alpha_sweep",
            "sweep_budget",
            "bis_vs_random",
        ] {
            map.remove(listing);
        }
    }
    selection
}

/// The dev-tuned learning rate of full-data training (also the proxies' rate).
fn full_data_lr(ctx: &ExperimentContext<'_>, labels: LabelScheme, stamp: &str) -> Result<f64> {
    let key = format!("lr/full@1/{stamp}");
    let (choice, _) = ctx.cells.get_or_compute(&key, || {
        let tuned = tune_lr(ctx, None, labels, derive_seed(ctx.seed, 0x5E1, 0))?;
        Ok(LrChoice::new("full".into(), 1.0, tuned))
    })?;
    Ok(choice.lr)
}

/// The settings of the gradient-based selectors for `seed`: the experiment's head, its full run
/// (dev-tuned `proxy_lr`, the scaled batch and epochs) and the config's method settings.
fn gradient_settings(
    ctx: &ExperimentContext<'_>,
    cfg: &SelectionConfig,
    seed: u64,
    proxy_lr: f64,
) -> GradientSettings {
    GradientSettings {
        head: head_kind(ctx),
        labels: LabelScheme::Hard { threshold: 0.0 },
        reduction: crate::gradnorm::Reduction::Mean,
        seed,
        inits: cfg.grand_inits,
        proxy: ProxySpec {
            fraction: cfg.proxy_fraction,
            lr: proxy_lr,
            global_batch: ctx.train.global_batch_for(ctx.corpus.bundle.n_rollouts()),
            epochs: ctx.train.epochs,
        },
        el2n: El2nSpec {
            proxies: cfg.el2n_proxies,
            run_fraction: cfg.el2n_run_fraction,
        },
        less: LessSpec {
            epochs: cfg.less_epochs,
            dims: cfg.less_dims,
        },
        reference: ReferenceSpec {
            checkpoints: cfg.reference_checkpoints,
            damping: cfg.influence_damping,
        },
        device: ctx.device,
    }
}

fn build_selector(
    spec: &SelectorSpec,
    seed: u64,
    ctx: &ExperimentContext<'_>,
    cfg: &SelectionConfig,
    proxy_lr: f64,
    reference: Option<&ReferenceRun>,
) -> Result<Box<dyn Selector>> {
    let bundle = &ctx.corpus.bundle;
    if GRADIENT_NAMES.contains(&spec.method.as_str()) {
        let settings = gradient_settings(ctx, cfg, seed, proxy_lr);
        let inputs = GradientInputs {
            bundle,
            bench: Some(&ctx.corpus.bench),
            checkpoint: None,
            reference,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_miss_the_cache_when_a_selector_setting_changes_but_not_when_a_budget_is_added() {
        let base = SelectionConfig::default();
        let more_budgets = SelectionConfig {
            budgets: vec![0.05, 0.5],
            seeds: base.seeds + 2,
            ..base.clone()
        };
        assert_eq!(cell_settings(&base), cell_settings(&more_budgets));
        let other_less = SelectionConfig {
            less_dims: base.less_dims + 1,
            ..base.clone()
        };
        assert_ne!(cell_settings(&base), cell_settings(&other_less));
        let other_el2n = SelectionConfig {
            el2n_proxies: base.el2n_proxies + 1,
            ..base.clone()
        };
        assert_ne!(cell_settings(&base), cell_settings(&other_el2n));
    }
}
