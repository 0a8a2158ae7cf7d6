//! Checkpoints: everything needed to continue a run bit-for-bit, plus the head in the format
//! `mprm gradnorm --at` reads.
//!
//! ```text
//! RUN_DIR/checkpoints/step-000050/
//!     model.mpk               Burn record of the model (named MessagePack, full precision)
//!     head.safetensors        the head as HeadParams (linear and mlp only)
//!     optimizer.safetensors   AdamW moments `p<i>.m`, `p<i>.v` per parameter (module order),
//!                             step count `time` in the metadata
//!     state.json              optimiser steps done, model spec, d, config, number (and hash) of
//!                             the metrics.jsonl lines written so far
//! RUN_DIR/checkpoints/LATEST  name of the newest complete checkpoint
//! ```
//!
//! A checkpoint folder is written under a temporary name and renamed into place when complete,
//! and `LATEST` is updated only after that, so an interruption never leaves a half checkpoint
//! where `--resume` would find it. The sampler position needs no file: the data order of every
//! epoch is a function of the seed, so the step count is enough.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::record::AdaptorRecord;
use burn::optim::{AdamW, AdamWState, AdaptiveMomentumState, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use safetensors::Dtype;

use crate::data::bench::BenchSet;
use crate::data::safetensors_io::{MappedSafetensors, SafetensorsWriter, TensorSpec};
use crate::device::Device;
use crate::error::{Error, IoContext, Result};
use crate::eval::{EvalReport, ModelSource, evaluate_source};
use crate::output::{write_bytes, write_json, write_text};
use crate::prm_model::{ModelSpec, PrmModel};

/// The optimiser the trainer uses.
pub type Optim<B> = OptimizerAdaptor<AdamW, PrmModel<B>, B>;

/// The optimiser's state record (AdamW moments keyed by parameter id).
type OptimRecord<B> = <Optim<B> as Optimizer<PrmModel<B>, B>>::Record;

/// Name of the pointer file to the newest checkpoint.
pub const LATEST: &str = "LATEST";

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointState {
    /// Optimiser steps completed.
    pub step: usize,
    /// Optimiser steps of the whole run.
    pub total_steps: usize,
    /// The model.
    pub model: ModelSpec,
    /// Feature dimension d.
    pub dim: usize,
    /// The run's config (TOML), to refuse resuming under different settings.
    pub config: String,
    /// Number of `metrics.jsonl` lines written up to this step (a resume cuts the log back to
    /// them; the log itself is not repeated here).
    pub metrics_lines: usize,
    /// [`metrics_hash`] of those lines, to notice a log changed since.
    pub metrics_hash: String,
    /// mprm version that wrote it.
    pub mprm_version: String,
}

/// FNV-1a 64 of `text`, as 16 hex digits: identifies the metrics lines a checkpoint covers.
pub fn metrics_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in text.as_bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Folder name of the checkpoint after `step` optimiser steps.
pub fn checkpoint_name(step: usize) -> String {
    format!("step-{step:06}")
}

/// Writes a checkpoint under `run_dir/checkpoints` and points `LATEST` at it.
pub fn save<B: AutodiffBackend>(
    run_dir: &Path,
    model: &PrmModel<B>,
    optim: &Optim<B>,
    state: &CheckpointState,
    eval: Option<&serde_json::Value>,
) -> Result<PathBuf> {
    let root = run_dir.join("checkpoints");
    let name = checkpoint_name(state.step);
    let dest = root.join(&name);
    let tmp = root.join(format!(".{name}.{}.tmp", std::process::id()));
    let guard = DirGuard(tmp.clone());
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).at(&tmp)?;

    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = Recorder::<B>::record(&recorder, model.clone().into_record(), ())
        .map_err(|e| Error::Other(format!("cannot encode the model record: {e}")))?;
    write_bytes(tmp.join("model.mpk"), &bytes)?;
    if let Some(head) = model.to_head() {
        let mut meta = BTreeMap::new();
        meta.insert("step".into(), state.step.to_string());
        head.save(tmp.join("head.safetensors"), &meta)?;
    }
    save_optimizer(&tmp.join("optimizer.safetensors"), model, optim)?;
    write_json(tmp.join("state.json"), state)?;
    if let Some(eval) = eval {
        write_json(tmp.join("eval.json"), eval)?;
    }
    if dest.exists() {
        std::fs::remove_dir_all(&dest).at(&dest)?;
    }
    std::fs::rename(&tmp, &dest).at(&dest)?;
    std::mem::forget(guard);
    write_text(root.join(LATEST), &format!("{name}\n"))?;
    Ok(dest)
}

/// Removes a temporary checkpoint folder unless it was renamed into place.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    let pointer = run_dir.join("checkpoints").join(LATEST);
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).at(&pointer)?;
    let dir = run_dir.join("checkpoints").join(name.trim());
    if !dir.join("state.json").exists() {
        return Err(Error::Other(format!(
            "{} names {}, which is not a complete checkpoint",
            pointer.display(),
            dir.display()
        )));
    }
    Ok(Some(dir))
}

/// The checkpoint of `run_dir` after `step` optimiser steps.
pub fn at_step(run_dir: &Path, step: usize) -> Result<PathBuf> {
    let dir = run_dir.join("checkpoints").join(checkpoint_name(step));
    if !dir.join("state.json").exists() {
        let mut steps: Vec<usize> = std::fs::read_dir(run_dir.join("checkpoints"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("state.json").exists())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
            .collect();
        steps.sort_unstable();
        let have = match steps.as_slice() {
            [] => "none yet".to_string(),
            s => s
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        return Err(Error::invalid(format!(
            "{} has no checkpoint at step {step} (checkpoints at steps: {have}; the config's \
             checkpoint_every sets how often they are written)",
            run_dir.display()
        )));
    }
    Ok(dir)
}

/// Reads a checkpoint's `state.json`.
pub fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).at(&path)?;
    serde_json::from_str(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
}

/// Loads the model of checkpoint `dir`, checking it matches `spec` and `dim`.
pub fn load_model<B: Backend>(
    dir: &Path,
    spec: &ModelSpec,
    dim: usize,
    device: &B::Device,
) -> Result<PrmModel<B>> {
    let state = read_state(dir)?;
    if state.dim != dim {
        return Err(Error::invalid(format!(
            "feature dimension mismatch: checkpoint {} was trained on d = {}, the data has d = {dim}",
            dir.display(),
            state.dim
        )));
    }
    if state.model != *spec {
        return Err(Error::invalid(format!(
            "checkpoint {} holds a {} model, not {}",
            dir.display(),
            state.model,
            spec
        )));
    }
    let path = dir.join("model.mpk");
    let bytes = std::fs::read(&path).at(&path)?;
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let record = Recorder::<B>::load(&recorder, bytes, device)
        .map_err(|e| Error::Other(format!("{}: cannot decode: {e}", path.display())))?;
    Ok(PrmModel::init(spec, dim, 0, device).load_record(record))
}

/// Loads checkpoint `dir` and evaluates it on `bench` on `device`.
pub fn evaluate(
    dir: &Path,
    spec: &ModelSpec,
    dim: usize,
    bench: &BenchSet,
    device: Device,
) -> Result<EvalReport> {
    struct Checkpoint<'a> {
        dir: &'a Path,
        spec: &'a ModelSpec,
        dim: usize,
    }
    impl ModelSource for Checkpoint<'_> {
        fn build<B: Backend>(&self, device: &B::Device) -> Result<PrmModel<B>> {
            load_model(self.dir, self.spec, self.dim, device)
        }
    }
    evaluate_source(&Checkpoint { dir, spec, dim }, bench, device)
}

/// Opens a checkpoint's `optimizer.safetensors` and reads its step count.
fn open_optimizer(path: &Path) -> Result<(MappedSafetensors, usize)> {
    let file = MappedSafetensors::open(path)?;
    let time = file
        .metadata()
        .get("time")
        .and_then(|t| t.parse::<usize>().ok())
        .ok_or_else(|| Error::bundle(path, "__metadata__", "no step count `time`"))?;
    Ok((file, time))
}

/// AdamW's first and second moments of a head checkpoint, in the flattened parameter order of
/// [`crate::gradnorm`] (what LESS preconditions per-example gradients with).
#[derive(Debug, Clone, PartialEq)]
pub struct AdamMoments {
    /// First moments m.
    pub m: Vec<f64>,
    /// Second moments v.
    pub v: Vec<f64>,
    /// Optimiser steps taken (Adam's t).
    pub time: usize,
}

/// Reads the AdamW moments of checkpoint `dir` (a linear or mlp head) into the flattened order.
///
/// Burn stores a linear layer's weight as [d_in, d_out]; the head form keeps W₁ as [h, d], so
/// the first layer's moments are transposed exactly as [`PrmModel::to_head`] transposes W₁.
pub fn read_moments(dir: &Path) -> Result<AdamMoments> {
    let state = read_state(dir)?;
    let path = dir.join("optimizer.safetensors");
    let (file, time) = open_optimizer(&path)?;
    let read = |name: String, numel: usize| -> Result<Vec<f64>> {
        let t = file.require(&name)?;
        match t.to_f32() {
            Some(v) if v.len() == numel => Ok(v.into_iter().map(f64::from).collect()),
            _ => Err(Error::bundle(
                &path,
                &name,
                format!("expected {numel} float values"),
            )),
        }
    };
    let d = state.dim;
    let flat = |which: &str| -> Result<Vec<f64>> {
        match state.model {
            ModelSpec::Head(crate::head::HeadKind::Linear) => {
                let mut v = read(format!("p0.{which}"), d)?;
                v.extend(read(format!("p1.{which}"), 1)?);
                Ok(v)
            }
            ModelSpec::Head(crate::head::HeadKind::Mlp { hidden: h, .. }) => {
                let w1t = read(format!("p0.{which}"), d * h)?;
                let mut v = vec![0.0; d * h];
                for i in 0..d {
                    for j in 0..h {
                        v[j * d + i] = w1t[i * h + j];
                    }
                }
                v.extend(read(format!("p1.{which}"), h)?);
                v.extend(read(format!("p2.{which}"), h)?);
                v.extend(read(format!("p3.{which}"), 1)?);
                Ok(v)
            }
            ModelSpec::Context(_) => Err(Error::invalid(format!(
                "{}: the sequence model has no flattened head form",
                dir.display()
            ))),
        }
    };
    Ok(AdamMoments {
        m: flat("m")?,
        v: flat("v")?,
        time,
    })
}

/// Parameters in module order with their ids and shapes.
struct ParamList(Vec<(ParamId, Vec<usize>)>);

impl<B: Backend> ModuleVisitor<B> for ParamList {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push((param.id, param.shape().to_vec()));
    }
}

fn param_list<B: Backend>(model: &PrmModel<B>) -> Vec<(ParamId, Vec<usize>)> {
    let mut list = ParamList(Vec::new());
    model.visit(&mut list);
    list.0
}

/// Moves the AdamW moments out of the optimiser record, parameter by parameter.
struct MomentExport<'a, B: AutodiffBackend> {
    record: &'a mut OptimRecord<B>,
    moments: Vec<Option<Moments>>,
}

/// AdamW state of one parameter.
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
    time: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for MomentExport<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let entry = self.record.remove(&param.id).map(|rec| {
            let state: AdamWState<B::InnerBackend, D> = rec.into_state();
            let m = state.momentum;
            let to_vec = |t: Tensor<B::InnerBackend, D>| {
                t.into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("converted to f32")
            };
            Moments {
                m: to_vec(m.moment_1),
                v: to_vec(m.moment_2),
                time: m.time,
            }
        });
        self.moments.push(entry);
    }
}

fn save_optimizer<B: AutodiffBackend>(
    path: &Path,
    model: &PrmModel<B>,
    optim: &Optim<B>,
) -> Result<()> {
    let mut record = optim.to_record();
    let mut export = MomentExport::<B> {
        record: &mut record,
        moments: Vec::new(),
    };
    model.visit(&mut export);
    let shapes = param_list(model);
    let mut specs = Vec::new();
    let mut time = 0;
    for (i, (entry, (_, shape))) in export.moments.iter().zip(&shapes).enumerate() {
        if let Some(entry) = entry {
            time = entry.time;
            specs.push(TensorSpec::new(&format!("p{i}.m"), Dtype::F32, shape));
            specs.push(TensorSpec::new(&format!("p{i}.v"), Dtype::F32, shape));
        }
    }
    let mut meta = BTreeMap::new();
    meta.insert("optimizer".into(), "adamw".into());
    meta.insert("time".into(), time.to_string());
    let mut w = SafetensorsWriter::create(path, &specs, &meta)?;
    for (i, entry) in export.moments.iter().enumerate() {
        if let Some(entry) = entry {
            w.write_all(&format!("p{i}.m"), &entry.m)?;
            w.write_all(&format!("p{i}.v"), &entry.v)?;
        }
    }
    w.finish()
}

/// Rebuilds the optimiser record from `optimizer.safetensors`, keyed by `model`'s parameter ids.
struct MomentImport<'a, B: AutodiffBackend> {
    file: &'a MappedSafetensors,
    time: usize,
    device: B::Device,
    index: usize,
    record: OptimRecord<B>,
    error: Option<Error>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for MomentImport<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let i = self.index;
        self.index += 1;
        if self.error.is_some() {
            return;
        }
        let shape: [usize; D] = param.shape().dims();
        let mut read = |name: String| -> Option<Tensor<B::InnerBackend, D>> {
            let t = self.file.get(&name)?;
            let values = t
                .to_f32()
                .filter(|v| t.shape == shape && v.len() == t.numel());
            match values {
                Some(v) => Some(Tensor::from_data(TensorData::new(v, shape), &self.device)),
                None => {
                    self.error = Some(Error::bundle(
                        self.file.path(),
                        &name,
                        format!("expected f32 of shape {shape:?}"),
                    ));
                    None
                }
            }
        };
        let (Some(m), Some(v)) = (read(format!("p{i}.m")), read(format!("p{i}.v"))) else {
            return;
        };
        let mut momentum = AdaptiveMomentumState::new(self.time, m, v);
        momentum.max_moment_2 = None;
        let state = AdamWState::new(momentum);
        self.record
            .insert(param.id, AdaptorRecord::from_state::<D>(state));
    }
}

/// Restores the optimiser state of checkpoint `dir` into `optim` for `model` (which must have
/// been loaded from the same checkpoint).
pub fn load_optimizer<B: AutodiffBackend>(
    dir: &Path,
    model: &PrmModel<B>,
    optim: Optim<B>,
    device: &B::Device,
) -> Result<Optim<B>> {
    let path = dir.join("optimizer.safetensors");
    let (file, time) = open_optimizer(&path)?;
    let mut import = MomentImport::<B> {
        file: &file,
        time,
        device: device.clone(),
        index: 0,
        record: Default::default(),
        error: None,
    };
    model.visit(&mut import);
    if let Some(e) = import.error {
        return Err(e);
    }
    Ok(optim.load_record(import.record))
}
