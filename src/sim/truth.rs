//! Reading the simulator's ground truth (`truth.safetensors`) back.
//!
//! The features bundle carries the teacher (q*, true correctness, w*, b*), which is all a
//! training run needs. The theory checks need more of the simulator's hidden state: each step's
//! one-shot success rate r (the quantity Lemma 3 puts a prior on), whether its prefix is intact
//! (what a pseudo-positive is), and how many continuations were sampled. [`corpus`] writes these
//! next to the bundle; this module reads and validates them, naming the tensor that breaks a
//! rule.
//!
//! | tensor | dtype | shape | meaning |
//! |---|---|---|---|
//! | `offsets` | I64 | \[R+1\] | rollout i owns steps `offsets[i]..offsets[i+1]` (as in the bundle) |
//! | `success_rate` | F32 | \[S\] | r_j, the one-shot success rate behind step j's MC score |
//! | `prefix_correct` | U8 | \[S\] | 1 while every step up to j is truly correct |
//! | `mc_total` | U8 | \[S\] | continuations sampled (16, or 0 after an early stop) |
//! | `ability` | F32 | \[R\] | the rollout's ability a_x |
//! | `recovery` | F32 | \[R\] | its post-error success rate ρ_x |
//! | `early_stop` | U8 | \[R\] | 1 when its annotation stops at the first zero |
//! | `question` | I64 | \[R\] | question index within the source |
//!
//! Metadata: `format` = [`TRUTH_FORMAT`], `sources` (JSON list, as in the bundle).
//!
//! [`corpus`]: super::corpus

use std::path::{Path, PathBuf};

use safetensors::Dtype;

use super::corpus::TRUTH_FORMAT;
use super::model::MC_SAMPLES;
use crate::data::features::FeatureBundle;
use crate::data::safetensors_io::MappedSafetensors;
use crate::error::{Error, Result};

/// The simulator's per-step and per-rollout ground truth of one corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// The file it was read from.
    pub path: PathBuf,
    /// Source names, as in the bundle.
    pub sources: Vec<String>,
    /// CSR offsets, R + 1 entries.
    pub offsets: Vec<usize>,
    /// One-shot success rate r_j per step.
    pub success_rate: Vec<f32>,
    /// Prefix through step j truly correct (0/1) per step.
    pub prefix_correct: Vec<u8>,
    /// Continuations sampled per step (16, or 0 after an early stop).
    pub mc_total: Vec<u8>,
    /// Ability a_x per rollout.
    pub ability: Vec<f32>,
    /// Post-error success rate ρ_x per rollout.
    pub recovery: Vec<f32>,
    /// Early-stopping annotation (0/1) per rollout.
    pub early_stop: Vec<u8>,
    /// Question index per rollout.
    pub question: Vec<i64>,
}

impl Truth {
    /// Reads and validates `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_mapped(path, &MappedSafetensors::open(path)?)
    }

    /// Reads the truth from `file`, already mapped from `path` (named in errors).
    pub fn from_mapped(path: &Path, file: &MappedSafetensors) -> Result<Self> {
        file.require_format(TRUTH_FORMAT)?;
        let sources = file.sources_metadata()?;
        let offsets = file.csr_offsets("offsets")?;
        let truth = Truth {
            path: path.to_path_buf(),
            sources,
            success_rate: file.vector_1d("success_rate", Dtype::F32)?,
            prefix_correct: file.vector_1d("prefix_correct", Dtype::U8)?,
            mc_total: file.vector_1d("mc_total", Dtype::U8)?,
            ability: file.vector_1d("ability", Dtype::F32)?,
            recovery: file.vector_1d("recovery", Dtype::F32)?,
            early_stop: file.vector_1d("early_stop", Dtype::U8)?,
            question: file.vector_1d("question", Dtype::I64)?,
            offsets,
        };
        truth.validate()?;
        Ok(truth)
    }

    fn validate(&self) -> Result<()> {
        let err = |tensor: &str, reason: String| Err(Error::bundle(&self.path, tensor, reason));
        let (r, s) = (self.n_rollouts(), self.n_steps());
        for (name, len, want) in [
            ("success_rate", self.success_rate.len(), s),
            ("prefix_correct", self.prefix_correct.len(), s),
            ("mc_total", self.mc_total.len(), s),
            ("ability", self.ability.len(), r),
            ("recovery", self.recovery.len(), r),
            ("early_stop", self.early_stop.len(), r),
            ("question", self.question.len(), r),
        ] {
            if len != want {
                let what = if want == s { "S" } else { "R" };
                return err(name, format!("{len} entries; expected {what} = {want}"));
            }
        }
        if let Some(j) = self
            .success_rate
            .iter()
            .position(|v| !(0.0..=1.0).contains(v))
        {
            return err(
                "success_rate",
                format!(
                    "step {j} has rate {}; expected a number in [0, 1]",
                    self.success_rate[j]
                ),
            );
        }
        for (name, flags) in [
            ("prefix_correct", &self.prefix_correct),
            ("early_stop", &self.early_stop),
        ] {
            if let Some(i) = flags.iter().position(|&v| v > 1) {
                return err(name, format!("entry {i} is {}; expected 0 or 1", flags[i]));
            }
        }
        if let Some(j) = self
            .mc_total
            .iter()
            .position(|&v| v != 0 && v as u32 != MC_SAMPLES)
        {
            return err(
                "mc_total",
                format!(
                    "step {j} has {} continuations; expected 0 or {MC_SAMPLES}",
                    self.mc_total[j]
                ),
            );
        }
        if let Some(i) = self.recovery.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return err(
                "recovery",
                format!("rollout {i} has rate {}; expected [0, 1]", self.recovery[i]),
            );
        }
        Ok(())
    }

    /// Number of rollouts R.
    pub fn n_rollouts(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Number of steps S.
    pub fn n_steps(&self) -> usize {
        *self.offsets.last().expect("validated: at least one offset")
    }

    /// Checks that this truth describes `bundle`: same rollouts, steps and sources.
    pub fn check_matches(&self, bundle: &FeatureBundle) -> Result<()> {
        bundle.check_side_file(&self.path, &self.offsets, &self.sources)
    }

    /// The MC success count K_j = round(16 · s_j) of every step of `bundle`, with `None` for
    /// steps whose annotation was never sampled (early stop).
    pub fn mc_counts(&self, bundle: &FeatureBundle) -> Vec<Option<u32>> {
        bundle
            .mc_scores()
            .iter()
            .zip(&self.mc_total)
            .map(|(&s, &total)| (total != 0).then(|| (s as f64 * MC_SAMPLES as f64).round() as u32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::safetensors_io::{SafetensorsWriter, TensorSpec};

    fn write(path: &Path, rate: &[f32], total: &[u8], format: &str) {
        let (s, r) = (rate.len(), 2);
        let specs = [
            TensorSpec::new("offsets", Dtype::I64, &[r + 1]),
            TensorSpec::new("success_rate", Dtype::F32, &[s]),
            TensorSpec::new("prefix_correct", Dtype::U8, &[s]),
            TensorSpec::new("mc_total", Dtype::U8, &[s]),
            TensorSpec::new("ability", Dtype::F32, &[r]),
            TensorSpec::new("recovery", Dtype::F32, &[r]),
            TensorSpec::new("early_stop", Dtype::U8, &[r]),
            TensorSpec::new("question", Dtype::I64, &[r]),
        ];
        let mut header = std::collections::BTreeMap::new();
        header.insert("format".to_string(), format.to_string());
        let mut w = SafetensorsWriter::create(path, &specs, &header).unwrap();
        w.write_all("offsets", &[0i64, 2, s as i64]).unwrap();
        w.write_all("success_rate", rate).unwrap();
        w.write_all("prefix_correct", &vec![1u8; s]).unwrap();
        w.write_all("mc_total", total).unwrap();
        w.write_all("ability", &[0.5f32, 1.0]).unwrap();
        w.write_all("recovery", &[0.1f32, 0.2]).unwrap();
        w.write_all("early_stop", &[0u8, 1]).unwrap();
        w.write_all("question", &[0i64, 0]).unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn reads_a_valid_file_and_names_broken_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("t.safetensors");
        write(&good, &[0.9, 0.5, 0.1], &[16, 16, 0], TRUTH_FORMAT);
        let t = Truth::open(&good).unwrap();
        assert_eq!((t.n_rollouts(), t.n_steps()), (2, 3));
        assert_eq!(t.success_rate, vec![0.9, 0.5, 0.1]);
        assert_eq!(t.early_stop, vec![0, 1]);

        let bad_rate = dir.path().join("r.safetensors");
        write(&bad_rate, &[0.9, 1.5, 0.1], &[16, 16, 0], TRUTH_FORMAT);
        let e = Truth::open(&bad_rate).unwrap_err().to_string();
        assert!(e.contains("success_rate") && e.contains("step 1"), "{e}");

        let bad_total = dir.path().join("m.safetensors");
        write(&bad_total, &[0.9, 0.5, 0.1], &[16, 8, 0], TRUTH_FORMAT);
        let e = Truth::open(&bad_total).unwrap_err().to_string();
        assert!(e.contains("mc_total") && e.contains("step 1"), "{e}");

        let bad_format = dir.path().join("f.safetensors");
        write(&bad_format, &[0.9, 0.5, 0.1], &[16, 16, 0], "other/1");
        let e = Truth::open(&bad_format).unwrap_err().to_string();
        assert!(e.contains("__metadata__"), "{e}");
    }
}
