//! Reading a world's `truth.safetensors` back: the exact verifier's view of every training step,
//! in the corpus's order (what [`super::build`] writes).
//!
//! | tensor | dtype | shape | meaning |
//! |---|---|---|---|
//! | `offsets` | I64 | \[R+1\] | rollout i owns steps `offsets[i]..offsets[i+1]` (as in the bundle) |
//! | `step_correct` | U8 | \[S\] | the step is locally correct (the verifier) |
//! | `prefix_correct` | U8 | \[S\] | every step up to j is on track |
//! | `arithmetic` | U8 | \[S\] | the step's arithmetic is right |
//! | `mc_correct` | U8 | \[S\] | successful continuations K of the 16 sampled |
//! | `mc_total` | U8 | \[S\] | continuations sampled (16, or 0 after an early stop) |
//! | `problem` | I64 | \[R\] | the rollout's problem (unique across sources) |
//! | `difficulty` | F32 | \[R\] | the problem's difficulty |
//! | `answer_correct` | U8 | \[R\] | the final answer is right |
//!
//! Metadata: `format` = [`WORLD_TRUTH_FORMAT`], `sources` (JSON list, as in the bundle).
//!
//! Unlike the simulator's truth, there is no one-shot success rate r: the policy's chance of
//! finishing correctly from a prefix is only known through the 16 continuations themselves.

use std::path::{Path, PathBuf};

use safetensors::Dtype;

use super::build::{MC_CONTINUATIONS, WORLD_TRUTH_FORMAT};
use crate::data::features::FeatureBundle;
use crate::data::safetensors_io::MappedSafetensors;
use crate::error::{Error, Result};

/// The verifier's per-step and per-rollout view of one world corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldTruth {
    /// The file it was read from.
    pub path: PathBuf,
    /// Source names, as in the bundle.
    pub sources: Vec<String>,
    /// CSR offsets, R + 1 entries.
    pub offsets: Vec<usize>,
    /// Step locally correct (0/1).
    pub step_correct: Vec<u8>,
    /// Prefix through step j on track (0/1).
    pub prefix_correct: Vec<u8>,
    /// Successful continuations per step.
    pub mc_correct: Vec<u8>,
    /// Continuations sampled per step (16, or 0 after an early stop).
    pub mc_total: Vec<u8>,
    /// Problem index per rollout.
    pub problem: Vec<i64>,
    /// Final answer right (0/1) per rollout.
    pub answer_correct: Vec<u8>,
}

impl WorldTruth {
    /// Reads and validates `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_mapped(path, &MappedSafetensors::open(path)?)
    }

    /// Reads the truth from `file`, already mapped from `path` (named in errors).
    pub fn from_mapped(path: &Path, file: &MappedSafetensors) -> Result<Self> {
        file.require_format(WORLD_TRUTH_FORMAT)?;
        let truth = WorldTruth {
            path: path.to_path_buf(),
            sources: file.sources_metadata()?,
            offsets: file.csr_offsets("offsets")?,
            step_correct: file.vector_1d("step_correct", Dtype::U8)?,
            prefix_correct: file.vector_1d("prefix_correct", Dtype::U8)?,
            mc_correct: file.vector_1d("mc_correct", Dtype::U8)?,
            mc_total: file.vector_1d("mc_total", Dtype::U8)?,
            problem: file.vector_1d("problem", Dtype::I64)?,
            answer_correct: file.vector_1d("answer_correct", Dtype::U8)?,
        };
        truth.validate()?;
        Ok(truth)
    }

    fn validate(&self) -> Result<()> {
        let err = |tensor: &str, reason: String| Err(Error::bundle(&self.path, tensor, reason));
        let (r, s) = (
            self.offsets.len() - 1,
            *self.offsets.last().expect("from 0"),
        );
        for (name, len, want) in [
            ("step_correct", self.step_correct.len(), s),
            ("prefix_correct", self.prefix_correct.len(), s),
            ("mc_correct", self.mc_correct.len(), s),
            ("mc_total", self.mc_total.len(), s),
            ("problem", self.problem.len(), r),
            ("answer_correct", self.answer_correct.len(), r),
        ] {
            if len != want {
                let what = if want == s { "S" } else { "R" };
                return err(name, format!("{len} entries; expected {what} = {want}"));
            }
        }
        for (name, flags) in [
            ("step_correct", &self.step_correct),
            ("prefix_correct", &self.prefix_correct),
            ("answer_correct", &self.answer_correct),
        ] {
            if let Some(i) = flags.iter().position(|&v| v > 1) {
                return err(name, format!("entry {i} is {}; expected 0 or 1", flags[i]));
            }
        }
        let n = MC_CONTINUATIONS as u8;
        if let Some(j) = self.mc_total.iter().position(|&v| v != 0 && v != n) {
            return err(
                "mc_total",
                format!(
                    "step {j} has {} continuations; expected 0 or {n}",
                    self.mc_total[j]
                ),
            );
        }
        if let Some(j) = (0..s).find(|&j| self.mc_correct[j] > self.mc_total[j]) {
            return err(
                "mc_correct",
                format!(
                    "step {j} has {} successes of {} continuations",
                    self.mc_correct[j], self.mc_total[j]
                ),
            );
        }
        Ok(())
    }

    /// Checks that this truth describes `bundle`: same rollouts, steps and sources.
    pub fn check_matches(&self, bundle: &FeatureBundle) -> Result<()> {
        bundle.check_side_file(&self.path, &self.offsets, &self.sources)
    }

    /// The success count K of every step, `None` for steps never sampled (early stop).
    pub fn mc_counts(&self) -> Vec<Option<u32>> {
        self.mc_correct
            .iter()
            .zip(&self.mc_total)
            .map(|(&k, &n)| (n != 0).then_some(u32::from(k)))
            .collect()
    }
}
