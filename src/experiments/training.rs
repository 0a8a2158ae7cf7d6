//! Training a head for an experiment cell and reading off what the tables need.
//!
//! Every run follows the experiment's protocol (single pass, AdamW, warm-up + cosine, the scaled
//! global batch); the learning rate of a cell is chosen on the bench's dev split, never on test.

use crate::data::labels::LabelScheme;
use crate::error::{Error, Result, TrainError};
use crate::eval::EvalReport;
use crate::eval::best_of_n::Aggregate;
use crate::head::{HeadKind, HeadParams};
use crate::prm_model::ModelSpec;
use crate::train::{self, TrainConfig};

use super::context::ExperimentContext;

/// The headline numbers of one trained head on the bench.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunResult {
    /// Peak learning rate used (NaN for an untrained head).
    #[serde(with = "super::nan")]
    pub lr: f64,
    /// Seed of the run (order and initialisation).
    pub seed: u64,
    /// Rollouts trained on.
    pub n_rollouts: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Loss of the last optimiser step.
    #[serde(with = "super::nan")]
    pub final_loss: f64,
    /// Overall (step-weighted per-source macro-F1) on test at the dev-tuned threshold.
    pub test_overall: f64,
    /// Overall on dev at its own threshold.
    pub dev_overall: f64,
    /// The dev-tuned threshold.
    pub threshold: f64,
    /// ORACLE: Overall on test at the threshold tuned on test.
    pub test_oracle_overall: f64,
    /// Pooled ROC-AUC on test.
    #[serde(with = "super::nan")]
    pub test_auc: f64,
    /// Per-source macro-F1 on test at the dev-tuned threshold, in bench order.
    pub per_source: Vec<(String, f64)>,
    /// Best-of-N accuracy on test questions: mean, min and last step aggregation.
    pub best_of_n: Option<BestOfN>,
}

/// Best-of-N accuracies of one head.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BestOfN {
    /// Pick by mean step score (the paper's rule).
    pub mean: f64,
    /// Pick by minimum step score.
    pub min: f64,
    /// Pick by last step score.
    pub last: f64,
    /// Expected accuracy of a random pick.
    pub random: f64,
    /// At least one correct candidate.
    pub oracle: f64,
}

impl RunResult {
    /// Reads the headline numbers off an evaluation.
    pub fn from_report(
        report: &EvalReport,
        lr: f64,
        seed: u64,
        n_rollouts: usize,
        steps: usize,
        final_loss: f64,
    ) -> Result<Self> {
        let b = &report.bench;
        let tuned = b.dev_tuned.as_ref().ok_or_else(|| {
            Error::Other("the bench has no dev split to tune the threshold on".into())
        })?;
        let pick = |a: Aggregate| {
            report.best_of_n.as_ref().and_then(|r| {
                r.picks
                    .iter()
                    .find(|p| p.aggregate == a)
                    .map(|p| p.accuracy)
            })
        };
        Ok(RunResult {
            lr,
            seed,
            n_rollouts,
            steps,
            final_loss,
            test_overall: tuned.test.overall,
            dev_overall: tuned.dev.overall,
            threshold: tuned.dev.threshold,
            test_oracle_overall: b.test_oracle.overall,
            test_auc: tuned.test.auc.unwrap_or(f64::NAN),
            per_source: tuned
                .test
                .per_source
                .iter()
                .map(|s| (s.source.clone(), s.macro_f1))
                .collect(),
            best_of_n: report.best_of_n.as_ref().map(|r| BestOfN {
                mean: pick(Aggregate::Mean).unwrap_or(f64::NAN),
                min: pick(Aggregate::Min).unwrap_or(f64::NAN),
                last: pick(Aggregate::Last).unwrap_or(f64::NAN),
                random: r.random,
                oracle: r.oracle,
            }),
        })
    }
}

/// One learning rate tried on dev.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrTrial {
    /// Peak learning rate.
    pub lr: f64,
    /// Dev Overall at the dev-tuned threshold (NaN when training diverged).
    #[serde(with = "super::nan")]
    pub dev_overall: f64,
}

/// The model the experiment trains.
pub fn model_spec(ctx: &ExperimentContext<'_>) -> ModelSpec {
    ModelSpec::Head(head_kind(ctx))
}

/// The head the experiment trains (and takes gradients of).
pub fn head_kind(ctx: &ExperimentContext<'_>) -> HeadKind {
    ctx.train.head_kind()
}

/// The training config of one run.
pub fn train_config(
    ctx: &ExperimentContext<'_>,
    labels: LabelScheme,
    lr: f64,
    seed: u64,
) -> TrainConfig {
    let t = ctx.train;
    let mut cfg = TrainConfig::new(model_spec(ctx));
    cfg.seed = seed;
    cfg.epochs = t.epochs;
    cfg.global_batch = t.global_batch_for(ctx.corpus.bundle.n_rollouts());
    cfg.micro_batch = t.micro_batch;
    cfg.loss = t.loss;
    cfg.labels = labels;
    cfg.optim.lr = lr;
    cfg.optim.weight_decay = t.weight_decay;
    cfg
}

/// Trains on `subset` (all rollouts when `None`) and evaluates on the bench.
pub fn train_eval(
    ctx: &ExperimentContext<'_>,
    subset: Option<&[usize]>,
    labels: LabelScheme,
    lr: f64,
    seed: u64,
) -> Result<(RunResult, Option<HeadParams>)> {
    let cfg = train_config(ctx, labels, lr, seed);
    let out = train::run(
        &cfg,
        &ctx.corpus.bundle,
        subset,
        Some(&ctx.corpus.bench),
        ctx.device,
        None,
    )?;
    let report = out.last_eval().ok_or_else(|| {
        TrainError::MissingOutput("the run ended without a bench evaluation".into())
    })?;
    let final_loss = out.history.last().map_or(f64::NAN, |s| s.loss);
    let n = subset.map_or(ctx.corpus.bundle.n_rollouts(), <[usize]>::len);
    Ok((
        RunResult::from_report(report, lr, seed, n, out.steps_done, final_loss)?,
        out.final_head,
    ))
}

/// How many rates [`tune_lr`] may add beyond each end of the configured grid. Four steps of a
/// half-decade grid reach two decades past the end, which covers any grid that was merely a bit
/// short; a best rate still at the edge after that points at a broken run (flat dev scores, say)
/// rather than a small grid, and more training runs would not fix it. The cap also bounds the
/// cost of a cell to the grid plus eight runs.
pub const MAX_LR_EXTENSIONS: usize = 4;

/// An end of the range of learning rates tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrSide {
    /// Below the smallest rate tried.
    Low,
    /// Above the largest rate tried.
    High,
}

/// The best rate among `trials` (highest finite dev Overall, ties to the smaller rate) and the
/// end of the tried range it sits at, if any.
///
/// The rule: a rate whose run diverged (NaN dev Overall) ranks below every finite one but still
/// counts as tried, so the best is at the low end only when no rate below it was tried, and at
/// the high end only when no rate above it was tried — a diverged rate right above the best
/// brackets the optimum as well as a worse finite one does, so that best is interior. When every
/// rate diverged there is no best and the low side is the open one (smaller rates are where a
/// finite run can be found). A single rate is at both ends; it is reported as the high end.
pub fn lr_edge(trials: &[LrTrial]) -> (Option<f64>, Option<LrSide>) {
    let best =
        trials
            .iter()
            .filter(|t| t.dev_overall.is_finite())
            .fold(None::<&LrTrial>, |best, t| match best {
                Some(b) if b.dev_overall > t.dev_overall => best,
                Some(b) if b.dev_overall == t.dev_overall && b.lr <= t.lr => best,
                _ => Some(t),
            });
    let Some(best) = best else {
        return (None, (!trials.is_empty()).then_some(LrSide::Low));
    };
    let below = trials.iter().any(|t| t.lr < best.lr);
    let above = trials.iter().any(|t| t.lr > best.lr);
    let side = if !above {
        Some(LrSide::High)
    } else if !below {
        Some(LrSide::Low)
    } else {
        None
    };
    (Some(best.lr), side)
}

/// The next rate past `side` of the tried range: one more geometric step at the ratio of the two
/// rates nearest that end, so the extension continues the grid's own spacing. `None` when fewer
/// than two distinct rates were tried (no spacing to continue).
pub fn next_lr(trials: &[LrTrial], side: LrSide) -> Option<f64> {
    let mut lrs: Vec<f64> = trials.iter().map(|t| t.lr).collect();
    lrs.sort_by(f64::total_cmp);
    lrs.dedup();
    let n = lrs.len();
    if n < 2 {
        return None;
    }
    let next = match side {
        LrSide::Low => lrs[0] * lrs[0] / lrs[1],
        LrSide::High => lrs[n - 1] * lrs[n - 1] / lrs[n - 2],
    };
    (next.is_finite() && next > 0.0).then_some(next)
}

/// A learning rate chosen on dev, with how it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct TunedLr {
    /// The chosen peak learning rate.
    pub lr: f64,
    /// Every rate tried, grid and extensions, sorted by rate.
    pub trials: Vec<LrTrial>,
    /// Rates tried beyond the configured grid.
    pub extensions: usize,
    /// The choice is still at an end of the rates tried (the extension cap was hit, or the grid
    /// had a single rate and no spacing to continue).
    pub at_edge: bool,
}

/// The learning rate with the best dev Overall for this subset and labels (ties go to the smaller
/// rate), with every trial's dev Overall.
///
/// The configured grid is tried first. While the best rate sits at an end of the rates tried (see
/// [`lr_edge`] for the rule, diverged runs included), one more rate is tried past that end at the
/// grid's own geometric step ([`next_lr`]), up to [`MAX_LR_EXTENSIONS`] per side — a best rate at
/// an end only says the grid stopped too early, and a baseline tuned that way is under-tuned.
/// Every run is a deterministic function of (config, rate, seed), so the result is too.
pub fn tune_lr(
    ctx: &ExperimentContext<'_>,
    subset: Option<&[usize]>,
    labels: LabelScheme,
    seed: u64,
) -> Result<TunedLr> {
    let grid = &ctx.train.lr_grid;
    if grid.is_empty() {
        return Err(Error::invalid("no learning rates to try"));
    }
    let bench = &ctx.corpus.bench;
    if bench.indices(crate::data::bench::Split::Dev).is_empty() {
        return Err(Error::invalid(format!(
            "{} has no dev records to tune on",
            bench.path.display()
        )));
    }
    let cfg = train_config(ctx, labels, grid[0], seed);
    let trial = |lr: f64| -> Result<LrTrial> {
        let t = train::lr_trial(&cfg, &ctx.corpus.bundle, subset, bench, ctx.device, lr)?;
        Ok(LrTrial {
            lr: t.lr,
            dev_overall: t.dev_overall.unwrap_or(f64::NAN),
        })
    };
    let mut trials = grid
        .iter()
        .map(|&lr| trial(lr))
        .collect::<Result<Vec<_>>>()?;
    let (mut low, mut high) = (0usize, 0usize);
    loop {
        let (_, side) = lr_edge(&trials);
        let used = match side {
            Some(LrSide::Low) => &mut low,
            Some(LrSide::High) => &mut high,
            None => break,
        };
        if *used >= MAX_LR_EXTENSIONS {
            break;
        }
        let Some(lr) = side.and_then(|s| next_lr(&trials, s)) else {
            break;
        };
        *used += 1;
        trials.push(trial(lr)?);
    }
    trials.sort_by(|a, b| a.lr.total_cmp(&b.lr));
    let (best, side) = lr_edge(&trials);
    let lr = best.ok_or(TrainError::EveryRateDiverged)?;
    Ok(TunedLr {
        lr,
        trials,
        extensions: low + high,
        at_edge: side.is_some(),
    })
}

/// How a set of learning-rate choices came out after [`tune_lr`]'s extensions, for the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LrAudit {
    /// Choices.
    pub choices: usize,
    /// Choices still at an end of the rates tried.
    pub at_edge: usize,
    /// Choices that needed rates beyond the configured grid.
    pub extended: usize,
}

impl LrAudit {
    /// Adds one choice: its trials decide whether it is at an edge (so results written before
    /// the extensions existed are audited by the same rule), `extensions` whether it was extended.
    pub fn add(&mut self, trials: &[LrTrial], extensions: usize) {
        self.choices += 1;
        self.at_edge += usize::from(lr_edge(trials).1.is_some());
        self.extended += usize::from(extensions > 0);
    }

    /// One sentence for a table note or summary, generated from the counts.
    pub fn sentence(&self) -> String {
        format!(
            "Learning rates still at an end of the rates tried after extending the grid (up to {} \
             rates per side at the grid's own step): {} of {} choices; {} of {} needed an extension.",
            MAX_LR_EXTENSIONS, self.at_edge, self.choices, self.extended, self.choices
        )
    }
}

/// Heads along one training run: the head after each of `steps` optimiser steps (0 = the
/// initialisation), for measurements at "mid-training" parameter points.
pub fn heads_along_training(
    ctx: &ExperimentContext<'_>,
    subset: Option<&[usize]>,
    labels: LabelScheme,
    lr: f64,
    seed: u64,
    steps: &[usize],
) -> Result<Vec<HeadParams>> {
    let cfg = train_config(ctx, labels, lr, seed);
    let dim = ctx.corpus.bundle.dim();
    let mut heads = Vec::with_capacity(steps.len());
    for &step in steps {
        if step == 0 {
            heads.push(HeadParams::init(head_kind(ctx), dim, seed));
            continue;
        }
        // A run stopped after `step` updates is exactly the full run's state at that step (the
        // schedule is the full run's).
        let opts = train::RunOptions {
            stop_after: Some(step),
            ..Default::default()
        };
        let out = train::execute(
            train::TrainInputs {
                config: &cfg,
                bundle: &ctx.corpus.bundle,
                subset,
                bench: None,
            },
            &opts,
            ctx.device,
        )?;
        heads.push(
            out.final_head
                .ok_or_else(|| TrainError::MissingOutput("no head to measure".into()))?,
        );
    }
    Ok(heads)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trials from (rate, dev Overall) pairs; NaN marks a diverged run.
    fn trials(pairs: &[(f64, f64)]) -> Vec<LrTrial> {
        pairs
            .iter()
            .map(|&(lr, dev_overall)| LrTrial { lr, dev_overall })
            .collect()
    }

    #[test]
    fn a_best_rate_with_worse_rates_on_both_sides_is_interior() {
        let t = trials(&[(1e-3, 0.50), (3e-3, 0.62), (1e-2, 0.58)]);
        assert_eq!(lr_edge(&t), (Some(3e-3), None));
        // The order the rates were tried in does not matter.
        let mut r = t.clone();
        r.reverse();
        assert_eq!(lr_edge(&r), (Some(3e-3), None));
    }

    #[test]
    fn a_best_rate_at_either_end_is_at_that_edge() {
        let rising = trials(&[(1e-5, 0.40), (3e-5, 0.45)]);
        assert_eq!(lr_edge(&rising), (Some(3e-5), Some(LrSide::High)));
        let falling = trials(&[(1e-1, 0.40), (1e-2, 0.45), (1e-3, 0.60)]);
        assert_eq!(lr_edge(&falling), (Some(1e-3), Some(LrSide::Low)));
    }

    #[test]
    fn ties_go_to_the_smaller_rate() {
        let flat = trials(&[(1e-2, 0.5), (1e-3, 0.5), (1e-1, 0.5)]);
        assert_eq!(lr_edge(&flat), (Some(1e-3), Some(LrSide::Low)));
        let t = trials(&[(1e-3, 0.4), (1e-2, 0.6), (1e-1, 0.6), (1.0, 0.3)]);
        assert_eq!(lr_edge(&t), (Some(1e-2), None));
    }

    #[test]
    fn a_diverged_rate_above_the_best_brackets_it() {
        // The top rate diverged and the best is the finite rate right below it: interior.
        let t = trials(&[(1e-2, 0.50), (1e-1, 0.70), (1.0, f64::NAN)]);
        assert_eq!(lr_edge(&t), (Some(1e-1), None));
        // A diverged rate is worse than any finite one, even a poor one.
        let t = trials(&[(1e-2, 0.70), (1e-1, 0.01), (1.0, f64::NAN)]);
        assert_eq!(lr_edge(&t), (Some(1e-2), Some(LrSide::Low)));
        // A diverged rate below the best brackets it from below as well.
        let t = trials(&[(1e-3, f64::NAN), (1e-2, 0.70)]);
        assert_eq!(lr_edge(&t), (Some(1e-2), Some(LrSide::High)));
        let t = trials(&[(1e-3, f64::NAN), (1e-2, 0.70), (1e-1, f64::NAN)]);
        assert_eq!(lr_edge(&t), (Some(1e-2), None));
    }

    #[test]
    fn when_every_rate_diverged_the_low_side_is_open() {
        let t = trials(&[(1e-1, f64::NAN), (1.0, f64::NAN)]);
        assert_eq!(lr_edge(&t), (None, Some(LrSide::Low)));
        assert_eq!(lr_edge(&[]), (None, None));
    }

    #[test]
    fn a_single_rate_is_at_an_edge_with_no_step_to_extend_by() {
        let t = trials(&[(1e-2, 0.5)]);
        assert_eq!(lr_edge(&t), (Some(1e-2), Some(LrSide::High)));
        assert_eq!(next_lr(&t, LrSide::High), None);
        assert_eq!(next_lr(&t, LrSide::Low), None);
    }

    #[test]
    fn extensions_continue_the_grid_spacing_at_that_end() {
        let close = |a: Option<f64>, b: f64| (a.unwrap() / b - 1.0).abs() < 1e-12;
        // Unequal steps at the two ends: each side keeps its own ratio.
        let t = trials(&[(1e-3, 0.5), (3e-3, 0.5), (1e-2, 0.5), (3e-2, 0.5)]);
        assert!(close(next_lr(&t, LrSide::Low), 1e-3 / 3.0));
        assert!(close(next_lr(&t, LrSide::High), 9e-2));
        // A diverged end rate still sets the spacing (it was tried).
        let t = trials(&[(1e-5, 0.4), (3e-5, f64::NAN)]);
        assert!(close(next_lr(&t, LrSide::High), 9e-5));
        // Repeated rates are one rate.
        let t = trials(&[(1e-2, 0.5), (1e-2, 0.5), (1e-1, 0.6)]);
        assert!(close(next_lr(&t, LrSide::High), 1.0));
    }

    #[test]
    fn the_audit_counts_edges_from_the_trials_and_extensions_from_the_record() {
        let mut a = LrAudit::default();
        a.add(&trials(&[(1e-3, 0.5), (3e-3, 0.6), (1e-2, 0.5)]), 0);
        a.add(&trials(&[(1e-3, 0.5), (3e-3, 0.6), (1e-2, 0.7)]), 4);
        a.add(&trials(&[(1e-3, 0.5), (3e-3, 0.6), (1e-2, 0.5)]), 1);
        assert_eq!(
            a,
            LrAudit {
                choices: 3,
                at_edge: 1,
                extended: 2
            }
        );
        let s = a.sentence();
        assert!(
            s.contains(": 1 of 3 choices; 2 of 3 needed an extension"),
            "{s}"
        );
    }
}
