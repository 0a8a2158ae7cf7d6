//! Experiment configs (TOML): one file names the corpus, the training protocol and which
//! experiments to run; everything else has a documented default.

use std::path::{Path, PathBuf};

use crate::device::DeviceRequest;
use crate::error::{Error, IoContext, Result};
use crate::head::{Activation, HeadKind, HeadName};
use crate::sim::ModelPreset;
use crate::train::loss::LossReduction;

use super::selection::SelectionConfig;
use super::theory::TheoryConfig;

/// A whole experiment file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Name; the default results folder is `experiments/runs/<name>`.
    pub name: String,
    /// Master seed (each seed-indexed repeat derives its own from it).
    #[serde(default)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[serde(default)]
    pub device: DeviceRequest,
    /// The synthetic corpus everything runs on.
    pub corpus: CorpusConfig,
    /// The training protocol of every head trained.
    #[serde(default)]
    pub train: TrainSettings,
    /// Theory checks, when present.
    #[serde(default)]
    pub theory: Option<TheoryConfig>,
    /// The regime map (see [`super::regime`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regime: Option<super::regime::RegimeConfig>,
    /// The interventions (`[intervention]`): a mixture × reliability factorial and a datamodel
    /// regression, each over several corpus draws.
    pub intervention: Option<super::intervention::InterventionConfig>,
    /// Selection comparison, when present.
    #[serde(default)]
    pub selection: Option<SelectionConfig>,
}

/// Which world an experiment's corpus comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorpusKind {
    /// The calibrated simulator (`mprm synth`), with the settings of `[corpus]`.
    #[default]
    Synth,
    /// The learned-policy world (`mprm world`), with the settings of `[corpus.world]`.
    Policy,
}

impl CorpusKind {
    /// True for the simulator (the default, left out of manifests).
    pub fn is_synth(&self) -> bool {
        *self == CorpusKind::Synth
    }
}

/// The settings of the experiment's corpus: the simulator's (see `mprm synth`), or with
/// `kind = "policy"` the learned-policy world's (`[corpus.world]`, see `mprm world`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorpusConfig {
    /// `synth` (the default) or `policy`.
    #[serde(skip_serializing_if = "CorpusKind::is_synth")]
    pub kind: CorpusKind,
    /// The world's settings when `kind = "policy"` (the simulator settings are then unused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world: Option<crate::world::WorldConfig>,
    /// Fraction of VisualPRM400K's 565,096 rollouts.
    pub scale: f64,
    /// Feature dimension d.
    pub dim: usize,
    /// Seed of the corpus (fixed across the experiment's repeats).
    pub seed: u64,
    /// Smallest source size.
    pub min_rollouts: usize,
    /// Benchmark questions (8 candidate solutions each).
    pub bench_questions: usize,
    /// Multiplier of the feature nuisance (difficulty of finding the teacher direction).
    pub nuisance_scale: f64,
    /// Use this existing `mprm synth` folder instead of generating one.
    pub existing: Option<PathBuf>,
    /// The simulator's knob set (`paper` = the current model, `v1` = the first one).
    pub preset: ModelPreset,
    /// Fix E[ρ], the mean post-error success rate, instead of fitting it to Table 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_error_success: Option<f64>,
    /// σ_q, the spread of question difficulty (logits), instead of the preset's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difficulty_spread: Option<f64>,
    /// γ, the progress signal's scale in the features, instead of the preset's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_scale: Option<f64>,
    /// `shuffled` makes the corpus a negative control: every step carries the MC annotation of
    /// a random step of its source (see `sim::McLabels`). Left out of manifests when faithful.
    #[serde(skip_serializing_if = "crate::sim::McLabels::is_faithful")]
    pub mc_labels: crate::sim::McLabels,
}

impl Default for CorpusConfig {
    fn default() -> Self {
        CorpusConfig {
            kind: CorpusKind::Synth,
            world: None,
            scale: 0.02,
            dim: 64,
            seed: 42,
            min_rollouts: 40,
            bench_questions: 360,
            nuisance_scale: 1.0,
            existing: None,
            preset: ModelPreset::Paper,
            post_error_success: None,
            difficulty_spread: None,
            progress_scale: None,
            mc_labels: crate::sim::McLabels::Faithful,
        }
    }
}

/// How every head of an experiment is trained: the paper's protocol, with the batch scaled to
/// the corpus and the learning rate chosen on the bench's dev split.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSettings {
    /// `linear` or `mlp` (anything else is refused when the config is read).
    pub head: HeadName,
    /// Hidden width of the mlp head.
    pub hidden: usize,
    /// Nonlinearity of the mlp head.
    pub activation: Activation,
    /// Learning rates tried on the dev split (the chosen one is recorded per cell).
    pub lr_grid: Vec<f64>,
    /// Rollouts per optimiser step; `None` scales the paper's 512 by corpus size, so a budget
    /// gets as many updates as in the paper (full data ≈ 1,104 steps).
    pub global_batch: Option<usize>,
    /// Rollouts per micro-batch.
    pub micro_batch: usize,
    /// Loss reduction (the reference's micro-batch mean, or the paper's rollout sum).
    pub loss: LossReduction,
    /// Passes over the training subset.
    pub epochs: usize,
    /// AdamW weight decay.
    pub weight_decay: f64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            head: HeadName::Linear,
            hidden: 64,
            activation: Activation::Gelu,
            lr_grid: vec![1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
            global_batch: None,
            micro_batch: 2,
            loss: LossReduction::MicroBatchMean,
            epochs: 1,
            weight_decay: 0.05,
        }
    }
}

pub use crate::train::config::{FULL_CORPUS_ROLLOUTS, PAPER_GLOBAL_BATCH};

impl TrainSettings {
    /// The head these settings train: `hidden` and `activation` apply to the mlp only.
    pub fn head_kind(&self) -> HeadKind {
        match self.head {
            HeadName::Linear => HeadKind::Linear,
            HeadName::Mlp => HeadKind::Mlp {
                hidden: self.hidden,
                activation: self.activation,
            },
        }
    }

    /// The global batch for a corpus of `n_rollouts`.
    pub fn global_batch_for(&self, n_rollouts: usize) -> usize {
        self.global_batch
            .unwrap_or_else(|| crate::train::config::paper_global_batch(n_rollouts))
    }
}

impl ExperimentConfig {
    /// Reads and checks a config; relative paths are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        let mut cfg: ExperimentConfig = toml::from_str(&text)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        if let Some(p) = cfg.corpus.existing.as_mut()
            && p.is_relative()
        {
            *p = path.parent().unwrap_or(Path::new("")).join(&*p);
        }
        cfg.validate()
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        Ok(cfg)
    }

    /// Checks every setting once.
    pub fn validate(&self) -> Result<()> {
        let rule = |ok: bool, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::invalid(msg.to_string()))
            }
        };
        rule(
            !self.name.is_empty() && !self.name.contains('/'),
            "name must be a plain folder name",
        )?;
        rule(
            self.corpus.scale > 0.0 && self.corpus.scale <= 1.0,
            "corpus.scale must be in (0, 1]",
        )?;
        rule(self.corpus.dim > 0, "corpus.dim must be positive")?;
        rule(
            self.corpus.bench_questions > 0,
            "corpus.bench_questions must be positive",
        )?;
        self.train.head_kind().validate()?;
        rule(
            !self.train.lr_grid.is_empty(),
            "train.lr_grid must not be empty",
        )?;
        rule(
            self.train.lr_grid.iter().all(|l| l.is_finite() && *l > 0.0),
            "learning rates must be positive",
        )?;
        rule(
            self.theory.is_some()
                || self.selection.is_some()
                || self.regime.is_some()
                || self.intervention.is_some(),
            "nothing to run: add [theory], [selection], [regime] or [intervention]",
        )?;
        if let Some(i) = &self.intervention {
            i.validate()?;
        }
        if let Some(r) = &self.regime {
            r.validate()?;
        }
        if let Some(t) = &self.theory {
            t.validate()?;
        }
        if let Some(s) = &self.selection {
            s.validate()?;
        }
        Ok(())
    }
}
