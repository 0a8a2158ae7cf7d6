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
use crate::data::fingerprint::CorpusFingerprint;
use crate::device::Device;
use crate::error::{Error, IoContext, Result, TrainError};
use crate::eval::{EvalReport, evaluate_model};
use crate::fused_ops::TrainBackend;
use crate::head::HeadParams;
use crate::lock::DirLock;
use crate::output::{write_json, write_text};
use crate::prm_model::{HostBatch, PrmModel};
use crate::train::checkpoint::{self, CheckpointState, Optim};
use crate::train::config::TrainConfig;
use crate::train::loss::{step_weights, weighted_bce};
use crate::train::plan::Plan;
use crate::train::run_record::{RunRecord, SubsetRecord};
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
    /// Where the subset came from (recorded in `run.json` and the manifest).
    pub subset_label: Option<String>,
    /// The corpus fingerprint the subset's ids file records (recorded likewise).
    pub subset_corpus: Option<CorpusFingerprint>,
    /// Where the global-norm clip is decided (the default: by device).
    pub clip: ClipAt,
}

/// Where a step's gradient clip is decided, and when its loss and gradient norm are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClipAt {
    /// On the host for the CPU device, on the device otherwise.
    #[default]
    Auto,
    /// The norm is read before the update and the scale chosen on the host, so a non-finite
    /// loss or norm stops the run before its update is computed. On the CPU a read costs
    /// nothing, and this is the path every committed result was trained on.
    Host,
    /// The scale min(1, max/(‖g‖ + 1e-6)) is computed and applied as tensor operations, and
    /// the loss and norm come back in one read after the update is queued: a GPU step waits
    /// for the host once, at its end, instead of twice before its update. A non-finite value
    /// still stops the run before anything of that step is saved. The scale is rounded in f32
    /// rather than f64, so clipped steps can differ from [`ClipAt::Host`] in the last bit.
    Device,
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

/// One run as backend-generic work for [`crate::device::burn::run`].
pub struct TrainJob<'a> {
    /// What to train on.
    pub inputs: TrainInputs<'a>,
    /// Where to write and how to resume.
    pub opts: &'a RunOptions,
}

impl crate::device::burn::BurnJob for TrainJob<'_> {
    type Output = TrainOutcome;

    fn run<B: TrainBackend>(
        self,
        device: &B::Device,
        at: Device,
        backend: &'static str,
    ) -> Result<TrainOutcome> {
        train_on::<B>(self.inputs, self.opts, device, at, backend)
    }
}

/// Trains on backend `B`. `device_label` and `backend_name` go into the manifest;
/// `device_label` also picks where [`ClipAt::Auto`] clips.
pub fn train_on<B: TrainBackend>(
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
    // The run folder is locked before anything in it is read, and stays locked until return.
    let run = opts
        .out_dir
        .as_deref()
        .map(|dir| RunFiles::open(dir, opts.resume))
        .transpose()?;
    // A resumed run trains on what it was started on: its record decides the subset.
    let resumed = match &run {
        Some(files) if files.resume_from.is_some() => {
            let record = RunRecord::read(&files.dir)?;
            let subset =
                record.check_resume(&files.dir, bundle, subset, opts.subset_label.as_deref())?;
            Some((record, subset))
        }
        _ => None,
    };
    let subset = match &resumed {
        Some((_, s)) => s.as_deref(),
        None => subset,
    };
    let rollouts = check_subset(bundle, subset)?;
    let targets = checked_targets(config, bundle)?;
    if let Some(b) = bench {
        check_bench(b, bundle.dim())?;
    }
    let record = match resumed {
        Some((record, _)) => record,
        None => RunRecord::new(
            bundle,
            subset.map(|s| SubsetRecord {
                from: opts.subset_label.clone(),
                corpus: opts.subset_corpus,
                rollouts: s.to_vec(),
            }),
        ),
    };
    let mut plan = Plan::new(rollouts, config.global_batch, config.epochs, config.seed);
    let total = plan.total_steps();
    let schedule = Schedule::new(config.optim.lr, total, config.optim.warmup_fraction);
    let manifest_at = |plan: &Plan, step: usize, status: &str| {
        Manifest::new(
            config,
            &record,
            plan,
            &schedule,
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

    if let Some(files) = &run {
        if let Some(ckpt) = files.resume_from.as_deref() {
            let state = checkpoint::read_state(ckpt)?;
            let differs = config_differences(&state.config, config, ckpt)?;
            if !differs.is_empty() {
                return Err(Error::invalid(format!(
                    "different config: {} was written with different settings ({}); resume \
                     with the run's own config.toml",
                    ckpt.display(),
                    differs.join(", ")
                )));
            }
            model = checkpoint::load_model(ckpt, &config.head, dim, device)?;
            optim = checkpoint::load_optimizer(ckpt, &model, optim, device)?;
            start = state.step;
            lines = files.read_metrics(&state, ckpt)?;
            files.remove_stale_temporaries()?;
            last_checkpoint = Some(ckpt.to_path_buf());
        } else {
            files.start(config, &record)?;
        }
        files.write_manifest(&manifest_at(&plan, start, "running"))?;
    }

    let clip_on_device = match opts.clip {
        ClipAt::Host => false,
        ClipAt::Device => true,
        ClipAt::Auto => !matches!(device_label, Device::Cpu),
    };
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
        let (loss_value, grad_norm, next) = if clip_on_device {
            let loss_inner = loss.clone().inner();
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            let norm = clip_global_norm_on_device(&model, &mut grads, config.optim.grad_clip);
            let next = optim.step(lr, model, grads);
            let [loss_value, grad_norm] = read_pair(loss_inner, norm);
            (loss_value, grad_norm, Some(next))
        } else {
            let loss_value = scalar(loss.clone());
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            let grad_norm = clip_global_norm(&model, &mut grads, config.optim.grad_clip);
            if loss_value.is_finite() && grad_norm.is_finite() {
                (loss_value, grad_norm, Some(optim.step(lr, model, grads)))
            } else {
                (loss_value, grad_norm, None)
            }
        };
        if !loss_value.is_finite() || !grad_norm.is_finite() {
            let why = format!(
                "loss {loss_value}, gradient norm {grad_norm} at optimiser step {done} (lr {lr:e}); \
                 stopped {}; last good checkpoint: {}",
                if clip_on_device {
                    "with nothing of that step saved"
                } else {
                    "before applying it"
                },
                last_checkpoint
                    .as_deref()
                    .map_or("none written yet".into(), |p| p.display().to_string())
            );
            if let Some(files) = &run {
                files.write_metrics(&lines)?;
                let mut m = Manifest::new(
                    config,
                    &record,
                    &plan,
                    &schedule,
                    device_label,
                    backend_name,
                    step,
                    "failed",
                );
                m.error = Some(why.clone());
                files.write_manifest(&m)?;
            }
            return Err(TrainError::Diverged {
                step: done,
                detail: why,
            }
            .into());
        }
        model = next.expect("a finite step was applied");
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
            // metrics.jsonl first: it then always holds at least the lines of the checkpoint
            // LATEST names, and a resume cuts it back to exactly those.
            let text = files.write_metrics(&lines)?;
            let state = CheckpointState {
                step: done,
                total_steps: total,
                model: config.head,
                dim,
                config: config.to_toml(),
                metrics_lines: lines.len(),
                metrics_hash: checkpoint::metrics_hash(&text),
                mprm_version: env!("CARGO_PKG_VERSION").into(),
            };
            last_checkpoint = Some(checkpoint::save(
                &files.dir,
                &model,
                &optim,
                &state,
                eval_json.as_ref(),
            )?);
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

/// The settings (dotted TOML keys) in which a checkpoint's config differs from `config`; the
/// device may differ.
fn config_differences(saved: &str, config: &TrainConfig, ckpt: &Path) -> Result<Vec<String>> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::Other(format!(
            "{}: the config does not parse: {e}",
            ckpt.join("state.json").display()
        ))
    };
    let mut parsed: TrainConfig = toml::from_str(saved).map_err(|e| bad(&e))?;
    parsed.device = config.device;
    if parsed == *config {
        return Ok(Vec::new());
    }
    let flat = |c: &TrainConfig| -> Result<Vec<(String, String)>> {
        let value: toml::Value = toml::from_str(&c.to_toml()).map_err(|e| bad(&e))?;
        let mut out = Vec::new();
        flatten_toml("", &value, &mut out);
        Ok(out)
    };
    let (was, now) = (flat(&parsed)?, flat(config)?);
    let keys: std::collections::BTreeSet<&String> =
        was.iter().chain(&now).map(|(k, _)| k).collect();
    let get = |list: &[(String, String)], k: &str| {
        list.iter()
            .find(|(key, _)| key == k)
            .map_or("(unset)".to_string(), |(_, v)| v.clone())
    };
    let mut out: Vec<String> = keys
        .into_iter()
        .filter_map(|k| {
            let (a, b) = (get(&was, k), get(&now, k));
            (a != b).then(|| format!("{k}: run {a}, now {b}"))
        })
        .collect();
    if out.is_empty() {
        out.push("settings that are not written to config.toml".into());
    }
    Ok(out)
}

fn flatten_toml(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_toml(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Σ‖g‖² over the model's parameters that have a gradient, as a one-element tensor (`None`
/// when none has).
fn squared_grad_norm<B: AutodiffBackend>(
    model: &PrmModel<B>,
    grads: &GradientsParams,
) -> Option<Tensor<B::InnerBackend, 1>> {
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
    let mut norm = SquaredNorm::<B> { grads, total: None };
    model.visit(&mut norm);
    norm.total
}

/// Multiplies every gradient by `factor`, a plain number or a one-element tensor.
fn scale_grads<B: AutodiffBackend>(
    model: &PrmModel<B>,
    grads: &mut GradientsParams,
    factor: GradScale<B>,
) {
    struct Scale<'a, B: AutodiffBackend> {
        grads: &'a mut GradientsParams,
        factor: GradScale<B>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                let scaled = match &self.factor {
                    GradScale::Number(f) => g.mul_scalar(*f),
                    GradScale::Tensor(f) => g.mul(f.clone().reshape([1; D])),
                };
                self.grads.register(param.id, scaled);
            }
        }
    }
    model.visit(&mut Scale { grads, factor });
}

/// A gradient scale, known on the host or left on the device.
enum GradScale<B: AutodiffBackend> {
    Number(f64),
    Tensor(Tensor<B::InnerBackend, 1>),
}

/// Scales the gradients so their global L2 norm is at most `max_norm` (0 = no clipping) and
/// returns the norm before scaling, read to the host ([`ClipAt::Host`]).
fn clip_global_norm<B: AutodiffBackend>(
    model: &PrmModel<B>,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let total = squared_grad_norm(model, grads).map_or(0.0, |t| scalar(t).sqrt());
    if max_norm > 0.0 && total.is_finite() {
        let factor = max_norm / (total + 1e-6);
        if factor < 1.0 {
            scale_grads(model, grads, GradScale::Number(factor));
        }
    }
    total
}

/// [`clip_global_norm`] without reading anything ([`ClipAt::Device`]): the scale
/// min(1, max/(‖g‖ + 1e-6)) is a tensor, applied to every gradient (a scale of 1 changes no
/// bit), and the norm is returned as a tensor.
fn clip_global_norm_on_device<B: AutodiffBackend>(
    model: &PrmModel<B>,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Tensor<B::InnerBackend, 1> {
    let Some(sq) = squared_grad_norm(model, grads) else {
        return Tensor::zeros([1], &model.devices()[0]);
    };
    let norm = sq.sqrt();
    if max_norm > 0.0 {
        let factor = norm
            .clone()
            .add_scalar(1e-6)
            .recip()
            .mul_scalar(max_norm)
            .clamp_max(1.0);
        scale_grads(model, grads, GradScale::Tensor(factor));
    }
    norm
}

/// Two one-element tensors read to the host in one transfer.
fn read_pair<B: Backend>(a: Tensor<B, 1>, b: Tensor<B, 1>) -> [f64; 2] {
    let v = Tensor::cat(vec![a, b], 0)
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("converted");
    [v[0], v[1]]
}

/// The files of a run folder, locked for the life of the value.
struct RunFiles {
    dir: PathBuf,
    resume_from: Option<PathBuf>,
    _lock: DirLock,
}

impl RunFiles {
    /// Locks `dir` and finds the checkpoint to resume from; writes nothing else.
    fn open(dir: &Path, resume: bool) -> Result<Self> {
        if resume && !dir.is_dir() {
            return Err(Error::invalid(format!(
                "{} has no checkpoint to resume from (no such folder)",
                dir.display()
            )));
        }
        let lock = DirLock::acquire(dir)?;
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
            None
        };
        Ok(RunFiles {
            dir: dir.to_path_buf(),
            resume_from,
            _lock: lock,
        })
    }

    /// Writes what defines a fresh run: `config.toml` and `run.json`.
    fn start(&self, config: &TrainConfig, record: &RunRecord) -> Result<()> {
        write_text(self.dir.join("config.toml"), &config.to_toml())?;
        record.write(&self.dir)
    }

    /// Removes checkpoint folders a killed writer left under temporary names (the lock is held,
    /// so no live writer owns them).
    fn remove_stale_temporaries(&self) -> Result<()> {
        let root = self.dir.join("checkpoints");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(());
        };
        for entry in entries {
            let path = entry.at(&root)?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(".step-") && name.ends_with(".tmp") {
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).at(&path)?;
                } else {
                    std::fs::remove_file(&path).at(&path)?;
                }
            }
        }
        Ok(())
    }

    /// The metrics lines of checkpoint `ckpt`: the first `state.metrics_lines` lines of
    /// `metrics.jsonl` (a stopped or killed run may have written more), checked against the hash
    /// the checkpoint recorded.
    fn read_metrics(&self, state: &CheckpointState, ckpt: &Path) -> Result<Vec<MetricsLine>> {
        let path = self.dir.join("metrics.jsonl");
        let text = if state.metrics_lines == 0 {
            String::new()
        } else {
            std::fs::read_to_string(&path).at(&path)?
        };
        let mut prefix = String::new();
        let mut lines = Vec::with_capacity(state.metrics_lines);
        for (i, line) in text.lines().take(state.metrics_lines).enumerate() {
            prefix.push_str(line);
            prefix.push('\n');
            lines.push(
                serde_json::from_str(line)
                    .map_err(|e| Error::bad_record(&path, i as u64, e.to_string()))?,
            );
        }
        if lines.len() != state.metrics_lines
            || checkpoint::metrics_hash(&prefix) != state.metrics_hash
        {
            return Err(Error::Other(format!(
                "{}: its first {} lines are not the metrics {} recorded ({} lines found); the \
                 metrics log was changed after the checkpoint was written",
                path.display(),
                state.metrics_lines,
                ckpt.join("state.json").display(),
                lines.len()
            )));
        }
        Ok(lines)
    }

    /// Rewrites `metrics.jsonl` with `lines` and returns its text.
    fn write_metrics(&self, lines: &[MetricsLine]) -> Result<String> {
        let mut text = String::new();
        for l in lines {
            text.push_str(&serde_json::to_string(l).expect("serialisable"));
            text.push('\n');
        }
        write_text(self.dir.join("metrics.jsonl"), &text)?;
        Ok(text)
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
        record: &RunRecord,
        plan: &Plan,
        schedule: &Schedule,
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
                "path": record.bundle.path,
                "corpus": record.bundle.corpus,
                "rollouts": record.bundle.rollouts,
                "steps": record.bundle.steps,
                "dim": record.bundle.dim,
            }),
            subset: serde_json::json!({
                "from": record.subset.as_ref().and_then(|s| s.from.clone()),
                "corpus": record.subset.as_ref().and_then(|s| s.corpus),
                "rollouts": plan.n_rollouts(),
            }),
            total_steps: plan.total_steps(),
            warmup_steps: schedule.warmup_steps,
            steps_done,
            config: config.clone(),
        }
    }
}
