//! Entry points of a training run: in memory for experiments, on a resolved device, with its
//! data loaded from a config, and the learning-rate search.

use std::path::Path;

use super::config::TrainConfig;
use super::train_loop::{RunOptions, TrainInputs, TrainOutcome};
use super::{plan, train_loop};
use crate::data::bench::BenchSet;
use crate::data::features::FeatureBundle;
use crate::device::Device;
use crate::error::{Error, Result, TrainError};

/// Trains without progress bar or resume; writes a run folder only when `out_dir` is given.
///
/// This is the entry point for experiments: with `out_dir = None` nothing touches the disk.
pub fn run(
    config: &TrainConfig,
    bundle: &FeatureBundle,
    subset: Option<&[usize]>,
    bench: Option<&BenchSet>,
    device: Device,
    out_dir: Option<&Path>,
) -> Result<TrainOutcome> {
    let inputs = TrainInputs {
        config,
        bundle,
        subset,
        bench,
    };
    let opts = RunOptions {
        out_dir: out_dir.map(Path::to_path_buf),
        ..Default::default()
    };
    execute(inputs, &opts, device)
}

/// Trains on `device` (the backend is picked by [`crate::device::burn`]).
pub fn execute(inputs: TrainInputs<'_>, opts: &RunOptions, device: Device) -> Result<TrainOutcome> {
    crate::device::burn::run(device, train_loop::TrainJob { inputs, opts })
}

/// Everything a config points at, loaded and checked.
#[derive(Debug)]
pub struct RunData {
    /// Training features.
    pub bundle: FeatureBundle,
    /// Subset (bundle rollout indices, the ids file and its corpus), when one was given.
    pub subset: Option<plan::Subset>,
    /// The bench, when configured.
    pub bench: Option<BenchSet>,
}

/// Fewer optimiser steps than this and a run is flagged: a head barely moves from its
/// initialisation, and the warm-up alone can take the first step.
pub const FEW_STEPS: usize = 50;

impl RunData {
    /// Rollouts the run trains on (the subset's, else the whole bundle's).
    pub fn n_train(&self) -> usize {
        self.subset
            .as_ref()
            .map_or(self.bundle.n_rollouts(), |s| s.rollouts.len())
    }

    /// A warning when `config` would give this data fewer than [`FEW_STEPS`] optimiser steps,
    /// naming the global batch that would restore the paper's ratio of updates to data.
    pub fn few_steps_warning(&self, config: &TrainConfig) -> Option<String> {
        let n = self.n_train();
        let steps = (n * config.epochs).div_ceil(config.global_batch.max(1));
        (steps < FEW_STEPS).then(|| {
            let scaled = super::config::paper_global_batch(self.bundle.n_rollouts());
            format!(
                "warning: {n} rollouts × {} epoch(s) at global_batch = {} give only {steps} \
                 optimiser step(s) (fewer than {FEW_STEPS}); the head will barely train. The \
                 paper's 512 scaled to this corpus of {} rollouts is {scaled} \
                 (`global_batch = {scaled}`, as the experiments and experiments/train/*.toml do)",
                config.epochs,
                config.global_batch,
                self.bundle.n_rollouts()
            )
        })
    }
}

/// Opens the config's bundle, subset (`subset` overrides the config's; checked against the
/// bundle's corpus, see [`plan::load_subset`]) and bench.
pub fn load_data(config: &TrainConfig, subset: Option<&Path>) -> Result<RunData> {
    let bundle_path = config.data.bundle.as_deref().ok_or_else(|| {
        Error::invalid("the config names no features bundle (`[data] bundle = ...`)")
    })?;
    let bundle = FeatureBundle::open(bundle_path)?;
    let subset = subset
        .or(config.data.subset.as_deref())
        .map(|p| plan::load_subset(&bundle, p))
        .transpose()?;
    let bench = config
        .bench
        .as_ref()
        .map(|b| BenchSet::open(&b.jsonl, Some(&b.features), b.split()))
        .transpose()?;
    Ok(RunData {
        bundle,
        subset,
        bench,
    })
}

/// One learning rate tried by [`lr_sweep`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrTrial {
    /// The peak learning rate.
    pub lr: f64,
    /// Overall on the dev split at the dev-tuned threshold; `None` when training diverged.
    pub dev_overall: Option<f64>,
    /// Loss of the last optimiser step.
    pub final_loss: Option<f64>,
    /// Why the trial failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Trains once at `lr` (no files) and reads dev Overall off the bench; a run that diverged is a
/// trial without a score rather than an error, so a sweep can rank it below every finite rate.
pub fn lr_trial(
    config: &TrainConfig,
    bundle: &FeatureBundle,
    subset: Option<&[usize]>,
    bench: &BenchSet,
    device: Device,
    lr: f64,
) -> Result<LrTrial> {
    let mut cfg = config.clone();
    cfg.optim.lr = lr;
    cfg.checkpoint_every = 0;
    match run(&cfg, bundle, subset, Some(bench), device, None) {
        Ok(out) => Ok(LrTrial {
            lr,
            dev_overall: out
                .last_eval()
                .and_then(|r| r.bench.dev_tuned.as_ref())
                .map(|d| d.dev.overall),
            final_loss: out.history.last().map(|s| s.loss),
            error: None,
        }),
        Err(Error::Training(TrainError::Diverged { detail, .. })) => Ok(LrTrial {
            lr,
            dev_overall: None,
            final_loss: None,
            error: Some(detail),
        }),
        Err(e) => Err(e),
    }
}

/// Trains once per learning rate (no files) and ranks them by dev Overall at the dev-tuned
/// threshold — the test split is never looked at. Returns the trials and the best learning rate.
pub fn lr_sweep(
    config: &TrainConfig,
    bundle: &FeatureBundle,
    subset: Option<&[usize]>,
    bench: &BenchSet,
    device: Device,
    lrs: &[f64],
) -> Result<(Vec<LrTrial>, f64)> {
    if lrs.is_empty() {
        return Err(Error::invalid("no learning rates to try"));
    }
    if bench.indices(crate::data::bench::Split::Dev).is_empty() {
        return Err(Error::invalid(format!(
            "{} has no dev records to tune on",
            bench.path.display()
        )));
    }
    let trials = lrs
        .iter()
        .map(|&lr| lr_trial(config, bundle, subset, bench, device, lr))
        .collect::<Result<Vec<_>>>()?;
    let best = trials
        .iter()
        .filter_map(|t| t.dev_overall.map(|o| (o, t.lr)))
        .fold(None::<(f64, f64)>, |best, (o, lr)| match best {
            Some((bo, _)) if bo >= o => best,
            _ => Some((o, lr)),
        })
        .ok_or(TrainError::EveryRateDiverged)?;
    Ok((trials, best.1))
}
