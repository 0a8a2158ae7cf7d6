//! The training loop, generic over the Burn autodiff backend.
//!
//! One optimiser step = one global batch: gather its rollouts' feature rows, compute the
//! weighted BCE of [`crate::train::loss`] in one forward/backward pass, clip the global gradient
//! norm (as `torch.nn.utils.clip_grad_norm_`: scale by `max/(norm + 1e-6)` when that is below 1),
//! and take an AdamW step at the scheduled learning rate.
//!
//! With an output folder the loop writes `config.toml`, `manifest.json` (settings, seed,
//! device, version: byte-identical for identical runs), `timing.json` (wall-clock only),
//! `metrics.jsonl` (one line per optimiser step and per evaluation, rewritten atomically at each
//! checkpoint) and checkpoints. Without one it writes nothing, which is the fast path for
//! experiments that train hundreds of heads.
//!
//! A non-finite loss or gradient stops the run before the bad update is applied; checkpoints
//! already written are left as they are.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use crate::data::bench::BenchSet;
use crate::data::features::FeatureBundle;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::{EvalReport, evaluate_model};
use crate::head::HeadParams;
use crate::output::{write_json, write_text};
use crate::train::checkpoint::{self, CheckpointState, Optim};
use crate::train::config::TrainConfig;
use crate::train::loss::{step_weights, weighted_bce};
use crate::train::model::{HostBatch, PrmModel};
use crate::train::plan::Plan;
use crate::train::schedule::Schedule;

/// How a run interacts with the file system and the terminal.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run folder; `None` writes nothing.
    pub out_dir: Option<PathBuf>,
    /// Continue from the newest checkpoint in `out_dir`.
    pub resume: bool,
    /// Stop (as if interrupted) once this many optimiser steps are done.
    pub stop_after: Option<usize>,
    /// Show a progress bar.
    pub progress: bool,
    /// Where the subset came from, for the manifest.
    pub subset_label: Option<String>,
}

/// One optimiser step, as logged.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepLog {
    /// Optimiser steps done after this one (1-based).
    pub step: usize,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Loss of the global batch (before the update).
    pub loss: f64,
    /// Global gradient L2 norm before clipping.
    pub grad_norm: f64,
    /// Rollouts in the batch.
    pub rollouts: usize,
    /// Steps in the batch.
    pub steps: usize,
}

/// An evaluation at a checkpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalLog {
    /// Optimiser steps done.
    pub step: usize,
    /// The report.
    pub report: EvalReport,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MetricsLine {
    /// An optimiser step.
    Step(StepLog),
    /// An evaluation.
    Eval(Box<EvalLog>),
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The final head (linear and mlp models).
    pub final_head: Option<HeadParams>,
    /// Every optimiser step, including those before a resume.
    pub history: Vec<StepLog>,
    /// Every evaluation, including those before a resume.
    pub evals: Vec<EvalLog>,
    /// Optimiser steps done.
    pub steps_done: usize,
    /// Optimiser steps the run was planned for.
    pub total_steps: usize,
    /// Rollouts per second over the steps run in this call.
    pub rollouts_per_second: f64,
    /// The run folder, when there is one.
    pub run_dir: Option<PathBuf>,
}

impl TrainOutcome {
    /// True when every planned step ran.
    pub fn completed(&self) -> bool {
        self.steps_done == self.total_steps
    }

    /// The newest evaluation.
    pub fn last_eval(&self) -> Option<&EvalReport> {
        self.evals.last().map(|e| &e.report)
    }
}

/// The inputs of a run.
#[derive(Debug, Clone, Copy)]
pub struct TrainInputs<'a> {
    /// Settings.
    pub config: &'a TrainConfig,
    /// Training features.
    pub bundle: &'a FeatureBundle,
    /// Bundle rollout indices to train on (all when `None`).
    pub subset: Option<&'a [usize]>,
    /// Bench evaluated at checkpoints.
    pub bench: Option<&'a BenchSet>,
}

/// Trains on backend `B`. `device_label` and `backend_name` only go into the manifest.
pub fn train_on<B: AutodiffBackend>(
    inputs: TrainInputs<'_>,
    opts: &RunOptions,
    device: &B::Device,
    device_label: Device,
    backend_name: &str,
) -> Result<TrainOutcome> {
    let TrainInputs {
        config,
        bundle,
        subset,
        bench,
    } = inputs;
    config.validate()?;
    let rollouts = check_subset(bundle, subset)?;
    let targets = checked_targets(config, bundle)?;
    if let Some(b) = bench {
        check_bench(b, bundle.dim())?;
    }
    let mut plan = Plan::new(rollouts, config.global_batch, config.epochs, config.seed);
    let total = plan.total_steps();
    let schedule = Schedule::new(config.optim.lr, total, config.optim.warmup_fraction);
    let manifest_at = |plan: &Plan, step: usize, status: &str| {
        Manifest::new(
            config,
            bundle,
            plan,
            &schedule,
            opts,
            device_label,
            backend_name,
            step,
            status,
        )
    };
    let dim = bundle.dim();

    let mut model = PrmModel::<B>::init(&config.head, dim, config.seed, device);
    let mut optim: Optim<B> = AdamWConfig::new()
        .with_beta_1(config.optim.beta1 as f32)
        .with_beta_2(config.optim.beta2 as f32)
        .with_epsilon(config.optim.eps as f32)
        .with_weight_decay(config.optim.weight_decay as f32)
        .init();
    let mut lines: Vec<MetricsLine> = Vec::new();
    let mut start = 0;
    let mut last_checkpoint: Option<PathBuf> = None;

    let run = opts
        .out_dir
        .as_deref()
        .map(|dir| RunFiles::open(dir, opts.resume, config))
        .transpose()?;
    if let Some(files) = &run {
        if let Some(ckpt) = files.resume_from.as_deref() {
            let state = checkpoint::read_state(ckpt)?;
            if same_settings(&state.config, config)? {
                model = checkpoint::load_model(ckpt, &config.head, dim, device)?;
                optim = checkpoint::load_optimizer(ckpt, &model, optim, device)?;
                start = state.step;
                lines = state
                    .metrics
                    .into_iter()
                    .map(serde_json::from_value)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| Error::Other(format!("{}: metrics: {e}", ckpt.display())))?;
                last_checkpoint = Some(ckpt.to_path_buf());
            } else {
                return Err(Error::invalid(format!(
                    "{} was written with different settings; resume with the run's own config.toml",
                    ckpt.display()
                )));
            }
        }
        files.write_manifest(&manifest_at(&plan, start, "running"))?;
    }

    let bar = opts
        .progress
        .then(|| crate::progress::bar(total as u64, "train"));
    if let Some(b) = &bar {
        b.set_position(start as u64);
    }
    let clock = Instant::now();
    let mut rollouts_run = 0usize;
    let stop = opts.stop_after.unwrap_or(total).min(total);

    for step in start..stop {
        let done = step + 1;
        let batch_ids = plan.batch(step).to_vec();
        let lr = schedule.lr(step);
        let batch = HostBatch::gather(bundle, &batch_ids);
        let n_steps = batch.n_steps();
        let weights = step_weights(config.loss, &batch.lengths, config.micro_batch);
        let batch_targets: Vec<f32> = batch_ids
            .iter()
            .flat_map(|&r| targets[bundle.rollout_steps(r)].iter().copied())
            .collect();
        let input = batch.into_input::<B>(&config.head, device);
        let loss = weighted_bce(
            model.logits(input),
            vector::<B>(batch_targets, device),
            vector::<B>(weights, device),
        );
        let loss_value = scalar(loss.clone());
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let grad_norm = clip_global_norm(&model, &mut grads, config.optim.grad_clip);
        if !loss_value.is_finite() || !grad_norm.is_finite() {
            let why = format!(
                "loss {loss_value}, gradient norm {grad_norm} at optimiser step {done} (lr {lr:e}); \
                 stopped before applying it; last good checkpoint: {}",
                last_checkpoint
                    .as_deref()
                    .map_or("none written yet".into(), |p| p.display().to_string())
            );
            if let Some(files) = &run {
                files.write_metrics(&lines)?;
                let mut m = Manifest::new(
                    config,
                    bundle,
                    &plan,
                    &schedule,
                    opts,
                    device_label,
                    backend_name,
                    step,
                    "failed",
                );
                m.error = Some(why.clone());
                files.write_manifest(&m)?;
            }
            return Err(Error::Training(why));
        }
        model = optim.step(lr, model, grads);
        rollouts_run += batch_ids.len();
        lines.push(MetricsLine::Step(StepLog {
            step: done,
            epoch: plan.epoch_of(step),
            lr,
            loss: loss_value,
            grad_norm,
            rollouts: batch_ids.len(),
            steps: n_steps,
        }));
        if let Some(b) = &bar {
            b.inc(1);
            b.set_message(format!("loss {loss_value:.4}"));
        }

        let due =
            done == total || (config.checkpoint_every > 0 && done % config.checkpoint_every == 0);
        if !due {
            continue;
        }
        let eval = match bench {
            Some(b) => {
                let report = evaluate_model(&model.valid(), b, device)?;
                lines.push(MetricsLine::Eval(Box::new(EvalLog { step: done, report })));
                lines.last()
            }
            None => None,
        };
        if let Some(files) = &run {
            let eval_json = eval.map(|l| serde_json::to_value(l).expect("serialisable"));
            let state = CheckpointState {
                step: done,
                total_steps: total,
                model: config.head,
                dim,
                config: config.to_toml(),
                metrics: lines
                    .iter()
                    .map(|l| serde_json::to_value(l).expect("serialisable"))
                    .collect(),
                mprm_version: env!("CARGO_PKG_VERSION").into(),
            };
            last_checkpoint = Some(checkpoint::save(
                &files.dir,
                &model,
                &optim,
                &state,
                eval_json.as_ref(),
            )?);
            files.write_metrics(&lines)?;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let seconds = clock.elapsed().as_secs_f64();
    let steps_done = stop.max(start);
    if let Some(files) = &run {
        files.write_metrics(&lines)?;
        let status = if steps_done == total {
            "complete"
        } else {
            "stopped"
        };
        files.write_manifest(&manifest_at(&plan, steps_done, status))?;
        write_json(
            files.dir.join("timing.json"),
            &serde_json::json!({
                "wall_seconds": seconds,
                "rollouts": rollouts_run,
                "rollouts_per_second": rollouts_run as f64 / seconds.max(1e-9),
                "device": device_label.to_string(),
                "backend": backend_name,
            }),
        )?;
    }
    let (history, evals) = split_lines(lines);
    Ok(TrainOutcome {
        final_head: model.to_head(),
        history,
        evals,
        steps_done,
        total_steps: total,
        rollouts_per_second: rollouts_run as f64 / seconds.max(1e-9),
        run_dir: run.map(|f| f.dir),
    })
}

fn split_lines(lines: Vec<MetricsLine>) -> (Vec<StepLog>, Vec<EvalLog>) {
    let mut history = Vec::new();
    let mut evals = Vec::new();
    for l in lines {
        match l {
            MetricsLine::Step(s) => history.push(s),
            MetricsLine::Eval(e) => evals.push(*e),
        }
    }
    (history, evals)
}

fn vector<B: Backend>(values: Vec<f32>, device: &B::Device) -> Tensor<B, 1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("converted")[0]
}

fn check_subset(bundle: &FeatureBundle, subset: Option<&[usize]>) -> Result<Vec<usize>> {
    let rollouts: Vec<usize> = match subset {
        Some(s) => s.to_vec(),
        None => (0..bundle.n_rollouts()).collect(),
    };
    if rollouts.is_empty() {
        return Err(Error::EmptyInput("no rollouts to train on".into()));
    }
    if let Some(&bad) = rollouts.iter().find(|&&r| r >= bundle.n_rollouts()) {
        return Err(Error::invalid(format!(
            "subset names rollout {bad}, but the bundle has {} rollouts",
            bundle.n_rollouts()
        )));
    }
    Ok(rollouts)
}

fn checked_targets(config: &TrainConfig, bundle: &FeatureBundle) -> Result<Vec<f32>> {
    let targets = config.labels.targets(bundle)?;
    if let Some(s) = targets.iter().position(|y| !(0.0..=1.0).contains(y)) {
        return Err(Error::invalid(format!(
            "training target {} of step {s} ({}) is outside [0, 1]",
            targets[s],
            config.labels.describe()
        )));
    }
    Ok(targets)
}

fn check_bench(bench: &BenchSet, dim: usize) -> Result<()> {
    let features = bench.features.as_ref().ok_or_else(|| {
        Error::invalid(format!(
            "bench {} has no features bundle; training evaluation needs one",
            bench.path.display()
        ))
    })?;
    if features.dim() != dim {
        return Err(Error::invalid(format!(
            "feature dimension mismatch: training features have d = {dim}, bench features {} have d = {}",
            features
                .path()
                .map_or("(in memory)".into(), |p| p.display().to_string()),
            features.dim()
        )));
    }
    Ok(())
}

/// True when a checkpoint's config matches `config` in everything but the device.
fn same_settings(saved: &str, config: &TrainConfig) -> Result<bool> {
    let mut saved: TrainConfig = toml::from_str(saved)
        .map_err(|e| Error::Other(format!("checkpoint config does not parse: {e}")))?;
    saved.device = config.device;
    Ok(saved == *config)
}

/// Scales the gradients so their global L2 norm is at most `max_norm` (0 = no clipping) and
/// returns the norm before scaling.
fn clip_global_norm<B: AutodiffBackend>(
    model: &PrmModel<B>,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    struct SquaredNorm<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        total: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let sq = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + sq,
                    None => sq,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut norm = SquaredNorm::<B> { grads, total: None };
    model.visit(&mut norm);
    let total = norm.total.map_or(0.0, |t| scalar(t).sqrt());
    if max_norm > 0.0 && total.is_finite() {
        let factor = max_norm / (total + 1e-6);
        if factor < 1.0 {
            model.visit(&mut Scale { grads, factor });
        }
    }
    total
}

/// The files of a run folder.
struct RunFiles {
    dir: PathBuf,
    resume_from: Option<PathBuf>,
}

impl RunFiles {
    fn open(dir: &Path, resume: bool, config: &TrainConfig) -> Result<Self> {
        let resume_from = if resume {
            let found = checkpoint::latest(dir)?;
            if found.is_none() {
                return Err(Error::invalid(format!(
                    "{} has no checkpoint to resume from",
                    dir.display()
                )));
            }
            found
        } else {
            if dir.join("config.toml").exists() || dir.join("checkpoints").exists() {
                return Err(Error::invalid(format!(
                    "{} already holds a run; pass --resume to continue it or choose another folder",
                    dir.display()
                )));
            }
            write_text(dir.join("config.toml"), &config.to_toml())?;
            None
        };
        Ok(RunFiles {
            dir: dir.to_path_buf(),
            resume_from,
        })
    }

    fn write_metrics(&self, lines: &[MetricsLine]) -> Result<()> {
        let mut text = String::new();
        for l in lines {
            text.push_str(&serde_json::to_string(l).expect("serialisable"));
            text.push('\n');
        }
        write_text(self.dir.join("metrics.jsonl"), &text)
    }

    fn write_manifest(&self, m: &Manifest) -> Result<()> {
        write_json(self.dir.join("manifest.json"), m)
    }
}

/// `manifest.json`: everything that determines the run, and how far it got.
#[derive(Debug, serde::Serialize)]
struct Manifest {
    command: &'static str,
    mprm_version: &'static str,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    seed: u64,
    device: String,
    backend: String,
    bundle: serde_json::Value,
    subset: serde_json::Value,
    total_steps: usize,
    warmup_steps: usize,
    steps_done: usize,
    config: TrainConfig,
}

impl Manifest {
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: &TrainConfig,
        bundle: &FeatureBundle,
        plan: &Plan,
        schedule: &Schedule,
        opts: &RunOptions,
        device: Device,
        backend: &str,
        steps_done: usize,
        status: &str,
    ) -> Self {
        Manifest {
            command: "mprm train",
            mprm_version: env!("CARGO_PKG_VERSION"),
            status: status.into(),
            error: None,
            seed: config.seed,
            device: device.to_string(),
            backend: backend.into(),
            bundle: serde_json::json!({
                "path": bundle.path().map(|p| p.display().to_string()),
                "rollouts": bundle.n_rollouts(),
                "steps": bundle.n_steps(),
                "dim": bundle.dim(),
            }),
            subset: serde_json::json!({
                "from": opts.subset_label,
                "rollouts": plan.n_rollouts(),
            }),
            total_steps: plan.total_steps(),
            warmup_steps: schedule.warmup_steps,
            steps_done,
            config: config.clone(),
        }
    }
}
