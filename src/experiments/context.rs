//! What every experiment runs against: the synthetic corpus (generated once per results folder),
//! its bench, the device, the cell cache, and the training protocol.

use std::path::{Path, PathBuf};

use crate::data::bench::{BenchSet, SplitSettings};
use crate::data::features::FeatureBundle;
use crate::device::Device;
use crate::error::{Error, IoContext, Result};
use crate::sim::{self, SynthConfig};

use super::cells::CellStore;
use super::config::{CorpusConfig, CorpusKind, TrainSettings};

/// The corpus an experiment runs on, opened.
pub struct Corpus {
    /// The `mprm synth` folder.
    pub dir: PathBuf,
    /// Training features (with the teacher).
    pub bundle: FeatureBundle,
    /// The VisualProcessBench-like evaluation set, with features and a dev/test split.
    pub bench: BenchSet,
    /// The simulator's manifest.
    pub manifest: serde_json::Value,
}

impl Corpus {
    /// Opens an `mprm synth` or `mprm world` folder (the same layout).
    pub fn open(dir: &Path) -> Result<Self> {
        let bundle = FeatureBundle::open(dir.join(sim::FEATURES_FILE))?;
        let bench = BenchSet::open(
            dir.join(sim::BENCH_FILE),
            Some(&dir.join(sim::BENCH_BUNDLE_FILE)),
            SplitSettings::default(),
        )?;
        let manifest_path = dir.join(sim::MANIFEST_FILE);
        let manifest =
            serde_json::from_str(&std::fs::read_to_string(&manifest_path).at(&manifest_path)?)
                .map_err(|e| Error::Other(format!("{}: {e}", manifest_path.display())))?;
        if bundle.teacher().is_none() {
            return Err(Error::invalid(format!(
                "{}: experiments need a synthetic bundle (with the teacher)",
                dir.display()
            )));
        }
        Ok(Corpus {
            dir: dir.to_path_buf(),
            bundle,
            bench,
            manifest,
        })
    }

    /// True when [`Corpus::prepare`] would reuse the corpus already in `results/corpus` (built
    /// with the same settings) rather than build one.
    pub fn is_prepared(cfg: &CorpusConfig, results: &Path) -> bool {
        cfg.existing.is_none() && Self::stamp_matches(cfg, &results.join("corpus"))
    }

    fn stamp_matches(cfg: &CorpusConfig, dir: &Path) -> bool {
        let wanted = serde_json::to_string_pretty(cfg).expect("config serialises");
        std::fs::read_to_string(dir.join("corpus-config.json")).ok() == Some(wanted)
    }

    /// The synthetic corpus of `cfg` in `results/corpus`: reused when it was generated with the
    /// same settings, generated otherwise (or `cfg.existing`, opened as is).
    pub fn prepare(cfg: &CorpusConfig, results: &Path) -> Result<Self> {
        if let Some(dir) = &cfg.existing {
            return Self::open(dir);
        }
        let dir = results.join("corpus");
        let stamp = dir.join("corpus-config.json");
        let wanted = serde_json::to_string_pretty(cfg).expect("config serialises");
        let reuse = Self::stamp_matches(cfg, &dir);
        if !reuse && cfg.kind == CorpusKind::Policy {
            // built on the CPU, so the bytes are those of `mprm world --device cpu`
            let world = cfg.world.clone().unwrap_or_default();
            crate::world::build_world(&world, &dir, Device::Cpu)?;
            crate::output::write_text(&stamp, &wanted)?;
        } else if !reuse {
            let defaults = SynthConfig::for_preset(cfg.preset);
            let synth = SynthConfig {
                post_error_success: cfg.post_error_success,
                mc_labels: cfg.mc_labels,
                scale: cfg.scale,
                dim: cfg.dim,
                seed: cfg.seed,
                min_rollouts: cfg.min_rollouts,
                bench_questions: cfg.bench_questions,
                model: sim::ModelParams {
                    source_scale: cfg.nuisance_scale * defaults.model.source_scale,
                    question_scale: cfg.nuisance_scale * defaults.model.question_scale,
                    step_scale: cfg.nuisance_scale * defaults.model.step_scale,
                    sigma_question: cfg
                        .difficulty_spread
                        .unwrap_or(defaults.model.sigma_question),
                    progress_scale: cfg.progress_scale.unwrap_or(defaults.model.progress_scale),
                    ..defaults.model.clone()
                },
                ..defaults
            };
            sim::synthesize(&synth, &dir)?;
            crate::output::write_text(&stamp, &wanted)?;
        }
        Self::open(&dir)
    }
}

/// Everything an experiment needs besides its own settings.
pub struct ExperimentContext<'a> {
    /// The corpus.
    pub corpus: &'a Corpus,
    /// Finished cells, for resuming.
    pub cells: &'a CellStore,
    /// The device that runs gradients and training.
    pub device: Device,
    /// Master seed.
    pub seed: u64,
    /// Training protocol.
    pub train: &'a TrainSettings,
}
