//! `RUN_DIR/run.json`: what a run was trained on besides its config, so `--resume` continues
//! exactly that run or refuses.
//!
//! ```json
//! {
//!   "format": "mprm-run/1",
//!   "bundle": {"path": "train.safetensors", "corpus": "fp1-600-…", "rollouts": 600, "steps": 2710, "dim": 8},
//!   "subset": {"from": "bis25.ids.tsv", "corpus": "fp1-600-…", "rollouts": [17, 3, …]}
//! }
//! ```
//!
//! `bundle.corpus` is the fingerprint of the bundle's rollouts ([`crate::data::fingerprint`]),
//! `subset` is `null` for a run on the whole bundle, otherwise the resolved bundle rollout indices
//! in file order, the ids file they came from and the corpus that file records (`null` for an
//! older ids file). The config is `config.toml`, and every checkpoint's `state.json` repeats it.

use std::path::{Path, PathBuf};

use crate::data::features::FeatureBundle;
use crate::data::fingerprint::CorpusFingerprint;
use crate::error::{Error, Result};
use crate::output::write_json;

/// File name of the record in a run folder.
pub const RUN_RECORD: &str = "run.json";

/// Format tag.
pub const RUN_FORMAT: &str = "mprm-run/1";

/// The bundle a run trains on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BundleRecord {
    /// The bundle file, as given.
    pub path: Option<String>,
    /// Fingerprint of its rollouts.
    pub corpus: CorpusFingerprint,
    /// Rollouts.
    pub rollouts: usize,
    /// Steps.
    pub steps: usize,
    /// Feature dimension d.
    pub dim: usize,
}

/// The subset a run trains on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubsetRecord {
    /// The ids file it was read from.
    pub from: Option<String>,
    /// The corpus that ids file records (`None`: an older ids file, unchecked).
    pub corpus: Option<CorpusFingerprint>,
    /// Bundle rollout indices, in file order.
    pub rollouts: Vec<usize>,
}

/// Everything besides the config that defines a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// [`RUN_FORMAT`].
    pub format: String,
    /// The bundle.
    pub bundle: BundleRecord,
    /// The subset; `None` trains on every rollout.
    pub subset: Option<SubsetRecord>,
}

impl RunRecord {
    /// The record of a run on `bundle`, restricted to `subset` when given.
    pub fn new(bundle: &FeatureBundle, subset: Option<SubsetRecord>) -> Self {
        RunRecord {
            format: RUN_FORMAT.into(),
            bundle: BundleRecord {
                path: bundle.path().map(|p| p.display().to_string()),
                corpus: bundle.fingerprint(),
                rollouts: bundle.n_rollouts(),
                steps: bundle.n_steps(),
                dim: bundle.dim(),
            },
            subset,
        }
    }

    /// Path of the record in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(RUN_RECORD)
    }

    /// Reads the record of run folder `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::invalid(format!(
                    "{} has no {RUN_RECORD}: the run was written by an older mprm that did not \
                     record its subset and corpus, so it cannot be resumed safely; start a new run \
                     in another folder",
                    dir.display()
                )));
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let record: RunRecord = serde_json::from_str(&text)
            .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
        if record.format != RUN_FORMAT {
            return Err(Error::invalid(format!(
                "{}: format `{}`, expected `{RUN_FORMAT}`",
                path.display(),
                record.format
            )));
        }
        Ok(record)
    }

    /// Writes the record into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_json(Self::path(dir), self)
    }

    /// Checks that `bundle` is the bundle this run was trained on, and returns the subset to
    /// train on: `given` must name the run's own rollouts; `None` means the run's own subset.
    ///
    /// `dir` is the run folder and `given_from` the ids file `given` came from, for messages.
    pub fn check_resume(
        &self,
        dir: &Path,
        bundle: &FeatureBundle,
        given: Option<&[usize]>,
        given_from: Option<&str>,
    ) -> Result<Option<Vec<usize>>> {
        let record = Self::path(dir);
        let now = bundle.fingerprint();
        let bundle_path = bundle.path().map_or_else(
            || "(in-memory bundle)".to_string(),
            |p| p.display().to_string(),
        );
        let was = self.bundle.path.as_deref().unwrap_or("(in-memory bundle)");
        if now != self.bundle.corpus {
            return Err(Error::CorpusMismatch {
                left: record.clone(),
                right: PathBuf::from(&bundle_path),
                reason: format!(
                    "cannot resume {}: it was trained on bundle {was} (corpus {}, {} rollouts, \
                     recorded in {}), but the bundle given now, {bundle_path}, is corpus {now} \
                     ({} rollouts)",
                    dir.display(),
                    self.bundle.corpus,
                    self.bundle.rollouts,
                    record.display(),
                    bundle.n_rollouts()
                ),
            });
        }
        if bundle.dim() != self.bundle.dim {
            return Err(Error::invalid(format!(
                "feature dimension mismatch: cannot resume {}: it was trained on d = {} ({}), \
                 {bundle_path} has d = {}",
                dir.display(),
                self.bundle.dim,
                record.display(),
                bundle.dim()
            )));
        }
        let from = given_from.unwrap_or("the subset given");
        match (&self.subset, given) {
            (None, None) => Ok(None),
            (Some(s), None) => Ok(Some(s.rollouts.clone())),
            (Some(s), Some(g)) if s.rollouts == g => Ok(Some(s.rollouts.clone())),
            (Some(s), Some(g)) => {
                let was: std::collections::HashSet<usize> = s.rollouts.iter().copied().collect();
                let shared = g.iter().filter(|r| was.contains(r)).count();
                Err(Error::invalid(format!(
                    "different subset: cannot resume {}: it was trained on {} rollouts from {} \
                     (recorded in {}), but {from} names {} rollouts ({shared} in common{}); resume \
                     without --subset to continue the run as it was",
                    dir.display(),
                    s.rollouts.len(),
                    s.from.as_deref().unwrap_or("a subset"),
                    record.display(),
                    g.len(),
                    if shared == g.len() && shared == s.rollouts.len() {
                        ", in another order"
                    } else {
                        ""
                    }
                )))
            }
            (None, Some(g)) => Err(Error::invalid(format!(
                "different subset: cannot resume {}: it was trained on all {} rollouts of the \
                 bundle (recorded in {}), but {from} names {} rollouts; resume without --subset",
                dir.display(),
                self.bundle.rollouts,
                record.display(),
                g.len()
            ))),
        }
    }
}
