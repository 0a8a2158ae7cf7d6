//! The training config: every protocol choice in one TOML file, saved with each run.
//!
//! ```toml
//! seed = 0
//! epochs = 1                 # single pass, as the paper
//! global_batch = 512         # rollouts per optimiser step
//! micro_batch = 2            # rollouts per loss-averaging group (the reference's 2 per GPU)
//! loss = "micro-batch-mean"  # or "rollout-sum" (the paper's formula)
//! checkpoint_every = 50      # optimiser steps; 0 = only the final checkpoint
//! device = "auto"            # auto | cpu | cuda | cuda:N
//!
//! [data]
//! bundle = "train.safetensors"
//! subset = "bis-25.ids"      # optional: `mprm select` output or a list of rollout indices
//!
//! [head]
//! kind = "mlp"               # linear | mlp | context
//! hidden = 256
//! activation = "gelu"
//!
//! [labels]
//! scheme = "hard"            # hard | soft | true | explicit
//! threshold = 0.0
//!
//! [optim]
//! lr = 1e-3                  # the paper's 1e-5 is for an 8B model; tune a head's on dev
//! weight_decay = 0.05
//! beta1 = 0.9
//! beta2 = 0.999
//! eps = 1e-8
//! grad_clip = 1.0            # global L2 norm; 0 disables
//! warmup_fraction = 0.05
//!
//! [bench]                    # optional: evaluated at every checkpoint
//! jsonl = "bench.jsonl"
//! features = "bench.safetensors"
//! dev_fraction = 0.5         # only for records without `split` keys
//! split_seed = 0
//! ```
//!
//! Relative paths are resolved against the config file's folder when it is loaded, and made
//! absolute.

use std::path::{Path, PathBuf};

use crate::data::bench::SplitSettings;
use crate::data::labels::LabelScheme;
use crate::device::DeviceRequest;
use crate::error::{Error, IoContext, Result};
use crate::prm_model::ModelSpec;
use crate::train::loss::LossReduction;

/// A complete training configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Seeds the initial weights and the data order.
    #[serde(default)]
    pub seed: u64,
    /// Passes over the data.
    #[serde(default = "one")]
    pub epochs: usize,
    /// Rollouts per optimiser step.
    #[serde(default = "default_global_batch")]
    pub global_batch: usize,
    /// Rollouts per micro-batch (the loss-averaging unit of `micro-batch-mean`).
    #[serde(default = "default_micro_batch")]
    pub micro_batch: usize,
    /// Loss reduction.
    #[serde(default)]
    pub loss: LossReduction,
    /// Checkpoint (and evaluate) every this many optimiser steps; 0 = only at the end.
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Where to train.
    #[serde(default)]
    pub device: DeviceRequest,
    /// Training data.
    #[serde(default)]
    pub data: DataConfig,
    /// The model.
    pub head: ModelSpec,
    /// Training targets.
    #[serde(default)]
    pub labels: LabelScheme,
    /// Optimiser and schedule.
    #[serde(default)]
    pub optim: OptimConfig,
    /// Benchmark evaluated at every checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench: Option<BenchConfig>,
}

/// VisualPRM400K-v1.1's rollout count, the reference for scaling the global batch.
pub const FULL_CORPUS_ROLLOUTS: usize = 565_096;
/// The paper's global batch.
pub const PAPER_GLOBAL_BATCH: usize = 512;

/// The paper's global batch scaled to a corpus of `n_rollouts`, so a run makes the paper's
/// number of updates per rollout (at least 1).
pub fn paper_global_batch(n_rollouts: usize) -> usize {
    ((PAPER_GLOBAL_BATCH * n_rollouts) as f64 / FULL_CORPUS_ROLLOUTS as f64)
        .round()
        .max(1.0) as usize
}

fn one() -> usize {
    1
}
fn default_global_batch() -> usize {
    512
}
fn default_micro_batch() -> usize {
    2
}

/// Training data paths.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The features bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
    /// Optional subset: an ids file or a list of rollout indices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<PathBuf>,
}

/// AdamW and the learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Adam ε.
    pub eps: f64,
    /// Maximum global gradient L2 norm; 0 disables clipping.
    pub grad_clip: f64,
    /// Fraction of steps spent warming up.
    pub warmup_fraction: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-3,
            weight_decay: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            grad_clip: 1.0,
            warmup_fraction: 0.05,
        }
    }
}

/// The bench evaluated during training.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    /// VisualProcessBench-layout records.
    pub jsonl: PathBuf,
    /// Step features, rollout i = record i.
    pub features: PathBuf,
    /// Dev fraction for records without `split` keys.
    #[serde(default = "default_dev_fraction")]
    pub dev_fraction: f64,
    /// Seed of that split.
    #[serde(default)]
    pub split_seed: u64,
}

fn default_dev_fraction() -> f64 {
    SplitSettings::default().dev_fraction
}

impl BenchConfig {
    /// The split settings.
    pub fn split(&self) -> SplitSettings {
        SplitSettings {
            dev_fraction: self.dev_fraction,
            seed: self.split_seed,
        }
    }
}

impl TrainConfig {
    /// A config with every default and the given head.
    pub fn new(head: ModelSpec) -> Self {
        TrainConfig {
            seed: 0,
            epochs: 1,
            global_batch: default_global_batch(),
            micro_batch: default_micro_batch(),
            loss: LossReduction::default(),
            checkpoint_every: 0,
            device: DeviceRequest::Auto,
            data: DataConfig::default(),
            head,
            labels: LabelScheme::default(),
            optim: OptimConfig::default(),
            bench: None,
        }
    }

    /// Reads a TOML config and resolves its relative paths against the file's folder.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).at(path)?;
        let mut cfg: TrainConfig = toml::from_str(&text)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new(""));
        // Absolute paths make the copy saved in a run folder usable from anywhere.
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = std::path::absolute(base.join(&*p)).unwrap_or_else(|_| base.join(&*p));
            }
        };
        if let Some(p) = cfg.data.bundle.as_mut() {
            resolve(p);
        }
        if let Some(p) = cfg.data.subset.as_mut() {
            resolve(p);
        }
        if let Some(b) = cfg.bench.as_mut() {
            resolve(&mut b.jsonl);
            resolve(&mut b.features);
        }
        cfg.validate()
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        Ok(cfg)
    }

    /// The config as TOML (what a run saves as `config.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a training config always serialises")
    }

    /// Checks every setting; the message names the offending key.
    pub fn validate(&self) -> Result<()> {
        let o = &self.optim;
        let rule = |ok: bool, msg: String| if ok { Ok(()) } else { Err(Error::invalid(msg)) };
        rule(self.epochs >= 1, "epochs must be at least 1".into())?;
        rule(
            self.global_batch >= 1,
            "global_batch must be at least 1".into(),
        )?;
        rule(
            self.micro_batch >= 1,
            "micro_batch must be at least 1".into(),
        )?;
        rule(
            self.micro_batch <= self.global_batch,
            format!(
                "micro_batch = {} is larger than global_batch = {}: a micro-batch is a group of \
                 rollouts within one optimiser step's global batch",
                self.micro_batch, self.global_batch
            ),
        )?;
        rule(
            o.lr.is_finite() && o.lr > 0.0,
            format!("optim.lr = {} must be a positive number", o.lr),
        )?;
        rule(
            o.weight_decay.is_finite() && o.weight_decay >= 0.0,
            format!("optim.weight_decay = {} must be ≥ 0", o.weight_decay),
        )?;
        for (name, b) in [("beta1", o.beta1), ("beta2", o.beta2)] {
            rule(
                (0.0..1.0).contains(&b),
                format!("optim.{name} = {b} must be in [0, 1)"),
            )?;
        }
        rule(
            o.eps.is_finite() && o.eps > 0.0,
            format!("optim.eps = {} must be positive", o.eps),
        )?;
        rule(
            o.grad_clip.is_finite() && o.grad_clip >= 0.0,
            format!("optim.grad_clip = {} must be ≥ 0", o.grad_clip),
        )?;
        rule(
            (0.0..=1.0).contains(&o.warmup_fraction),
            format!(
                "optim.warmup_fraction = {} must be in [0, 1]",
                o.warmup_fraction
            ),
        )?;
        if let LabelScheme::Hard { threshold } = self.labels {
            rule(
                threshold.is_finite(),
                "labels.threshold must be a number".into(),
            )?;
        }
        if let Some(b) = &self.bench {
            rule(
                (0.0..=1.0).contains(&b.dev_fraction),
                format!("bench.dev_fraction = {} must be in [0, 1]", b.dev_fraction),
            )?;
        }
        self.head.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::{Activation, HeadKind};

    #[test]
    fn micro_batch_larger_than_global_batch_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(
            &path,
            "global_batch = 4\nmicro_batch = 8\n[head]\nkind = \"linear\"\n",
        )
        .unwrap();
        let e = TrainConfig::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("run.toml") && e.contains("micro_batch = 8 is larger than global_batch = 4"),
            "{e}"
        );
        std::fs::write(
            &path,
            "global_batch = 8\nmicro_batch = 8\n[head]\nkind = \"linear\"\n",
        )
        .unwrap();
        assert_eq!(TrainConfig::load(&path).unwrap().micro_batch, 8);
    }

    #[test]
    fn module_doc_example_parses_with_resolved_paths() {
        let doc = include_str!("config.rs");
        let start = doc.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
        let end = start + doc[start..].find("//! ```\n").unwrap();
        let toml_text: String = doc[start..end]
            .lines()
            .map(|l| {
                l.strip_prefix("//! ")
                    .unwrap_or(l.strip_prefix("//!").unwrap_or(l))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.toml");
        std::fs::write(&p, toml_text).unwrap();
        let cfg = TrainConfig::load(&p).unwrap();
        assert_eq!(
            cfg.head,
            ModelSpec::Head(HeadKind::Mlp {
                hidden: 256,
                activation: Activation::Gelu
            })
        );
        assert_eq!(cfg.labels, LabelScheme::Hard { threshold: 0.0 });
        assert_eq!(cfg.loss, LossReduction::MicroBatchMean);
        assert_eq!(
            cfg.data.bundle.as_deref(),
            Some(dir.path().join("train.safetensors").as_path())
        );
        assert_eq!(cfg.optim, OptimConfig::default());
        assert_eq!(cfg.checkpoint_every, 50);
        // Round trip through the saved form.
        let again: TrainConfig = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn defaults_and_rules() {
        let cfg: TrainConfig = toml::from_str("[head]\nkind = \"linear\"\n").unwrap();
        assert_eq!(cfg, TrainConfig::new(ModelSpec::LINEAR));
        assert_eq!(cfg.global_batch, 512);
        let bad = |text: &str| {
            let c: TrainConfig = toml::from_str(text).unwrap();
            c.validate().unwrap_err().to_string()
        };
        assert!(bad("[head]\nkind = \"linear\"\n[optim]\nlr = -1.0\n").contains("optim.lr"));
        assert!(bad("epochs = 0\n[head]\nkind = \"linear\"\n").contains("epochs"));
        assert!(bad("[head]\nkind = \"mlp\"\nhidden = 0\n").contains("hidden"));
        assert!(toml::from_str::<TrainConfig>("bogus = 1\n[head]\nkind = \"linear\"\n").is_err());
        assert!(toml::from_str::<TrainConfig>("[head]\nkind = \"mlp\"\nhiden = 8\n").is_err());
        assert!(
            toml::from_str::<TrainConfig>("device = \"gpu\"\n[head]\nkind = \"linear\"\n").is_err()
        );
        let c: TrainConfig =
            toml::from_str("device = \"cuda:1\"\n[head]\nkind = \"linear\"\n").unwrap();
        assert_eq!(c.device, DeviceRequest::Cuda(1));
    }
}
