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

/// The learning rate of the grid with the best dev Overall for this subset and labels (ties go
/// to the smaller rate), with every trial's dev Overall.
pub fn tune_lr(
    ctx: &ExperimentContext<'_>,
    subset: Option<&[usize]>,
    labels: LabelScheme,
    seed: u64,
) -> Result<(f64, Vec<LrTrial>)> {
    let cfg = train_config(ctx, labels, ctx.train.lr_grid[0], seed);
    let (trials, best) = train::lr_sweep(
        &cfg,
        &ctx.corpus.bundle,
        subset,
        &ctx.corpus.bench,
        ctx.device,
        &ctx.train.lr_grid,
    )?;
    Ok((
        best,
        trials
            .iter()
            .map(|t| LrTrial {
                lr: t.lr,
                dev_overall: t.dev_overall.unwrap_or(f64::NAN),
            })
            .collect(),
    ))
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
