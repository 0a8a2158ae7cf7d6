//! Which rollouts the trainer sees, and in which order.
//!
//! The subset (an `mprm select` ids file or a bare index list) is matched to bundle rollouts; the
//! order of each epoch is a seeded permutation of it, cut into global batches of `global_batch`
//! rollouts (the last one of an epoch may be short, as a PyTorch loader without `drop_last`).
//! The permutation of epoch e depends only on (seed, e), so a resumed run needs nothing but the
//! number of optimiser steps done to find its place.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::data::features::FeatureBundle;
use crate::data::fingerprint::{CorpusFingerprint, check_same_corpus};
use crate::data::ids::{SelectedId, read_ids_file};
use crate::error::{Error, Result};

/// A subset read from an ids file and matched to a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Subset {
    /// The ids file.
    pub path: PathBuf,
    /// The corpus fingerprint the ids file records; `None` for older layouts, which cannot be
    /// checked against the bundle.
    pub corpus: Option<CorpusFingerprint>,
    /// Bundle rollout indices, in file order.
    pub rollouts: Vec<usize>,
}

/// Reads a subset file and returns the bundle rollout indices it names, in file order.
///
/// An ids file that records its corpus (`mprm-ids/2`) must come from the bundle's corpus (the
/// fingerprints must agree) and every row's step count must equal the bundle rollout's; an error
/// names both files otherwise. Older ids files load unchecked (`corpus: None`).
pub fn load_subset(bundle: &FeatureBundle, path: &Path) -> Result<Subset> {
    let file = read_ids_file(path)?;
    let bundle_path = bundle
        .path()
        .map_or_else(|| PathBuf::from("(in-memory bundle)"), Path::to_path_buf);
    if let Some(fp) = &file.corpus {
        check_same_corpus(path, fp, &bundle_path, &bundle.recorded_fingerprint()?)?;
    }
    let rollouts = resolve_subset(bundle, &file.ids, path)?;
    check_step_counts(bundle, &bundle_path, &file.ids, &rollouts, path)?;
    Ok(Subset {
        path: path.to_path_buf(),
        corpus: file.corpus,
        rollouts,
    })
}

/// Compares every id's recorded step count with the bundle rollout it was matched to.
fn check_step_counts(
    bundle: &FeatureBundle,
    bundle_path: &Path,
    ids: &[SelectedId],
    rollouts: &[usize],
    path: &Path,
) -> Result<()> {
    for (k, (id, &r)) in ids.iter().zip(rollouts).enumerate() {
        let Some(steps) = id.steps else { continue };
        let have = bundle.rollout_len(r) as u64;
        if steps != have {
            return Err(Error::CorpusMismatch {
                left: path.to_path_buf(),
                right: bundle_path.to_path_buf(),
                reason: format!(
                    "{}: entry {} (source `{}`, rollout {}) has {steps} steps, but rollout {r} of \
                     {} has {have}; the ids were chosen on other data",
                    path.display(),
                    k + 1,
                    id.source,
                    id.rollout,
                    bundle_path.display()
                ),
            });
        }
    }
    Ok(())
}

/// Matches ids to bundle rollouts: by (source name, line) when the bundle has a `line` tensor and
/// the ids carry lines, otherwise by corpus-order rollout index.
pub fn resolve_subset(
    bundle: &FeatureBundle,
    ids: &[SelectedId],
    path: &Path,
) -> Result<Vec<usize>> {
    if ids.is_empty() {
        return Err(Error::EmptyInput(format!(
            "{}: the subset names no rollouts",
            path.display()
        )));
    }
    let by_line = bundle.line().filter(|_| {
        ids.iter()
            .all(|id| id.line.is_some() && !id.source.is_empty())
    });
    let lookup: Option<HashMap<(&str, u64), usize>> = by_line.map(|lines| {
        (0..bundle.n_rollouts())
            .map(|i| ((bundle.source_name(i), lines[i]), i))
            .collect()
    });
    let mut seen = HashSet::with_capacity(ids.len());
    let mut out = Vec::with_capacity(ids.len());
    for (k, id) in ids.iter().enumerate() {
        let index = match &lookup {
            Some(map) => {
                let line = id.line.expect("checked above");
                *map.get(&(id.source.as_str(), line)).ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: entry {} (source `{}`, line {line}) is not in the bundle",
                        path.display(),
                        k + 1,
                        id.source
                    ))
                })?
            }
            None if id.rollout < bundle.n_rollouts() => id.rollout,
            None => {
                return Err(Error::invalid(format!(
                    "{}: entry {} names rollout {}, but the bundle has {} rollouts",
                    path.display(),
                    k + 1,
                    id.rollout,
                    bundle.n_rollouts()
                )));
            }
        };
        if !seen.insert(index) {
            return Err(Error::invalid(format!(
                "{}: entry {} repeats rollout {index}",
                path.display(),
                k + 1
            )));
        }
        out.push(index);
    }
    Ok(out)
}

/// A seed for a named sub-stream (SplitMix64 of seed, tag and index), so init, data order and
/// anything else seeded never share a random stream.
pub fn derive_seed(seed: u64, tag: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(tag.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const DATA_ORDER_TAG: u64 = 1;

/// The batches of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    rollouts: Vec<usize>,
    global_batch: usize,
    epochs: usize,
    seed: u64,
    cached: Option<(usize, Vec<usize>)>,
}

impl Plan {
    /// Plans `epochs` passes over `rollouts` (bundle indices).
    pub fn new(rollouts: Vec<usize>, global_batch: usize, epochs: usize, seed: u64) -> Self {
        Plan {
            rollouts,
            global_batch,
            epochs,
            seed,
            cached: None,
        }
    }

    /// Rollouts per epoch.
    pub fn n_rollouts(&self) -> usize {
        self.rollouts.len()
    }

    /// Optimiser steps per epoch, ⌈N / global_batch⌉.
    pub fn steps_per_epoch(&self) -> usize {
        self.rollouts.len().div_ceil(self.global_batch)
    }

    /// Optimiser steps of the whole run.
    pub fn total_steps(&self) -> usize {
        self.steps_per_epoch() * self.epochs
    }

    /// The epoch that update `step` (0-based) belongs to.
    pub fn epoch_of(&self, step: usize) -> usize {
        step / self.steps_per_epoch()
    }

    /// Bundle indices of the rollouts of update `step` (0-based), in batch order.
    pub fn batch(&mut self, step: usize) -> &[usize] {
        let per_epoch = self.steps_per_epoch();
        let epoch = step / per_epoch;
        if self.cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order = self.rollouts.clone();
            let mut rng =
                ChaCha8Rng::seed_from_u64(derive_seed(self.seed, DATA_ORDER_TAG, epoch as u64));
            order.shuffle(&mut rng);
            self.cached = Some((epoch, order));
        }
        let order = &self.cached.as_ref().expect("just filled").1;
        let start = (step % per_epoch) * self.global_batch;
        let end = (start + self.global_batch).min(order.len());
        &order[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::features::{BundleMeta, BundleParts, FeatureData};

    fn bundle(with_lines: bool) -> FeatureBundle {
        FeatureBundle::from_parts(BundleParts {
            features: FeatureData::F32(vec![0.0; 8]),
            dim: 2,
            offsets: vec![0, 1, 2, 3, 4],
            mc_scores: vec![0.5; 4],
            source: vec![0, 0, 1, 1],
            line: with_lines.then(|| vec![0, 5, 0, 7]),
            labels: None,
            teacher: None,
            meta: BundleMeta {
                sources: vec!["a".into(), "b".into()],
                ..Default::default()
            },
        })
        .unwrap()
    }

    fn id(source: &str, line: Option<u64>, rollout: usize) -> SelectedId {
        SelectedId {
            source: source.into(),
            line,
            rollout,
            steps: None,
            score: f64::NAN,
        }
    }

    #[test]
    fn matches_by_source_and_line_then_by_index() {
        let p = Path::new("ids.tsv");
        let ids = [id("b", Some(7), 99), id("a", Some(5), 99)];
        assert_eq!(resolve_subset(&bundle(true), &ids, p).unwrap(), vec![3, 1]);
        // Without a line tensor the rollout column is used (and 99 is out of range).
        let e = resolve_subset(&bundle(false), &ids, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry 1 names rollout 99"), "{e}");
        let bare = [id("", None, 2), id("", None, 0)];
        assert_eq!(resolve_subset(&bundle(true), &bare, p).unwrap(), vec![2, 0]);
    }

    #[test]
    fn bad_subsets_are_clear_errors() {
        let p = Path::new("ids.tsv");
        let missing = [id("a", Some(6), 0)];
        let e = resolve_subset(&bundle(true), &missing, p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ids.tsv: entry 1 (source `a`, line 6) is not in the bundle"),
            "{e}"
        );
        let e = resolve_subset(&bundle(true), &[], p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no rollouts"), "{e}");
        let twice = [id("", None, 1), id("", None, 1)];
        let e = resolve_subset(&bundle(true), &twice, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry 2 repeats rollout 1"), "{e}");
    }

    #[test]
    fn batches_cover_each_epoch_once_in_a_seeded_order() {
        let mut plan = Plan::new((0..10).collect(), 4, 2, 3);
        assert_eq!(plan.steps_per_epoch(), 3);
        assert_eq!(plan.total_steps(), 6);
        let sizes: Vec<usize> = (0..6).map(|s| plan.batch(s).len()).collect();
        assert_eq!(sizes, vec![4, 4, 2, 4, 4, 2]);
        for epoch in 0..2 {
            let mut seen: Vec<usize> = (0..3)
                .flat_map(|s| plan.batch(epoch * 3 + s).to_vec())
                .collect();
            seen.sort();
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
        let e0: Vec<usize> = plan.batch(0).to_vec();
        let e1: Vec<usize> = plan.batch(3).to_vec();
        assert_ne!(e0, e1, "epochs are reshuffled");
        // A fresh plan (a resumed run) finds the same batch from the step alone.
        let mut again = Plan::new((0..10).collect(), 4, 2, 3);
        assert_eq!(again.batch(4), plan.batch(4));
    }
}
