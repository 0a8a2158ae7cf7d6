//! The training runs the gradient-based methods read: short proxies (EL2N), LESS's warm-up and
//! the reference run TracIn, influence and the oracle trace. Each is an ordinary [`train`] run;
//! checkpoints come back with the learning rate that applied over the stretch they close and,
//! for LESS, AdamW's moments.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::data::features::FeatureBundle;
use crate::error::{Error, IoContext, Result, TrainError};
use crate::head::HeadParams;
use crate::select::baselines::Baseline;
use crate::select::pipeline::choose_from_bundle;
use crate::train::checkpoint::{self, AdamMoments};
use crate::train::schedule::{Schedule, total_steps};
use crate::train::{self, RunOptions, TrainConfig, TrainInputs};

use super::GradientSettings;

/// A head along a training run, with the learning rate that weighs it.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The head's parameters.
    pub head: HeadParams,
    /// The learning rate of the stretch of training the checkpoint stands for (TracIn's and
    /// LESS's weight η_c).
    pub lr: f64,
}

/// A checkpoint with AdamW's moments (LESS's preconditioner).
#[derive(Debug, Clone)]
pub struct AdamCheckpoint {
    /// The head and its weight.
    pub point: Checkpoint,
    /// The optimiser state at the checkpoint.
    pub moments: AdamMoments,
}

/// The training config of a run the methods make: the settings' head, labels and run spec.
pub fn run_config(s: &GradientSettings, seed: u64, epochs: usize) -> TrainConfig {
    let mut cfg = TrainConfig::new(s.head.into());
    cfg.seed = seed;
    cfg.labels = s.labels;
    cfg.global_batch = s.proxy.global_batch;
    cfg.epochs = epochs;
    cfg.optim.lr = s.proxy.lr;
    cfg
}

/// A seeded random `fraction` of every source (the `random` baseline), in corpus order.
pub fn random_fraction(bundle: &FeatureBundle, fraction: f64, seed: u64) -> Result<Vec<usize>> {
    let (_, ids) = choose_from_bundle(bundle, &Baseline::Random { seed }, fraction)?;
    Ok(ids.into_iter().map(|id| id.rollout).collect())
}

/// Trains the single proxy of the theory and intervention experiments' EL2N score: a seeded random
/// `proxy.fraction` of every source, `proxy.epochs` passes.
pub fn train_proxy(bundle: &FeatureBundle, s: &GradientSettings) -> Result<HeadParams> {
    let p = s.proxy;
    if !(p.fraction > 0.0 && p.fraction <= 1.0) {
        return Err(Error::invalid(format!(
            "proxy fraction {} must be in (0, 1]",
            p.fraction
        )));
    }
    let subset = random_fraction(bundle, p.fraction, s.seed)?;
    let cfg = run_config(s, s.seed, p.epochs);
    final_head(train::run(
        &cfg,
        bundle,
        Some(&subset),
        None,
        s.device,
        None,
    )?)
}

/// Trains `cfg` on `subset` and stops after `stop_after` optimiser steps (the schedule stays the
/// full run's, so the head is exactly that run's state there).
pub fn train_head_until(
    cfg: &TrainConfig,
    bundle: &FeatureBundle,
    subset: Option<&[usize]>,
    stop_after: usize,
    s: &GradientSettings,
) -> Result<HeadParams> {
    let opts = RunOptions {
        stop_after: Some(stop_after.max(1)),
        ..Default::default()
    };
    final_head(train::execute(
        TrainInputs {
            config: cfg,
            bundle,
            subset,
            bench: None,
        },
        &opts,
        s.device,
    )?)
}

/// The head a finished (or stopped) run ends with.
fn final_head(out: train::TrainOutcome) -> Result<HeadParams> {
    out.final_head
        .ok_or_else(|| TrainError::MissingOutput("the proxy run produced no head".into()).into())
}

/// Trains `cfg` on `subset`, saving a checkpoint every `every` optimiser steps and at the end,
/// and reads each back: head, AdamW moments and the mean scheduled learning rate over the stretch
/// since the previous checkpoint. The run folder is temporary and removed afterwards.
pub fn train_with_checkpoints(
    cfg: &TrainConfig,
    bundle: &FeatureBundle,
    subset: Option<&[usize]>,
    every: usize,
    s: &GradientSettings,
) -> Result<Vec<AdamCheckpoint>> {
    let n = subset.map_or(bundle.n_rollouts(), <[usize]>::len);
    let total = total_steps(n, cfg.global_batch, cfg.epochs);
    if total == 0 {
        return Err(Error::invalid("a recorded run needs at least one step"));
    }
    let every = every.clamp(1, total);
    let mut cfg = cfg.clone();
    cfg.checkpoint_every = every;
    let dir = TempRunDir::new()?;
    let opts = RunOptions {
        out_dir: Some(dir.0.clone()),
        ..Default::default()
    };
    train::execute(
        TrainInputs {
            config: &cfg,
            bundle,
            subset,
            bench: None,
        },
        &opts,
        s.device,
    )?;
    let schedule = Schedule::new(cfg.optim.lr, total, cfg.optim.warmup_fraction);
    let mut steps: Vec<usize> = (1..=total / every).map(|c| c * every).collect();
    if steps.last() != Some(&total) {
        steps.push(total);
    }
    let mut out = Vec::with_capacity(steps.len());
    let mut previous = 0;
    for &step in &steps {
        let at = checkpoint::at_step(&dir.0, step)?;
        let head = HeadParams::load(at.join("head.safetensors"))?;
        let moments = checkpoint::read_moments(&at)?;
        out.push(AdamCheckpoint {
            point: Checkpoint {
                head,
                lr: stretch_lr(&schedule, previous, step),
            },
            moments,
        });
        previous = step;
    }
    Ok(out)
}

/// The mean learning rate of updates `from..to` (0-based update indices).
pub fn stretch_lr(schedule: &Schedule, from: usize, to: usize) -> f64 {
    if to <= from {
        return 0.0;
    }
    (from..to).map(|t| schedule.lr(t)).sum::<f64>() / (to - from) as f64
}

/// A uniquely named folder under the system temp dir, removed when dropped.
struct TempRunDir(PathBuf);

impl TempRunDir {
    fn new() -> Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "mprm-run-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path).at(&path)?;
        }
        std::fs::create_dir_all(&path).at(&path)?;
        Ok(TempRunDir(path))
    }
}

impl Drop for TempRunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new(&self.0));
    }
}
