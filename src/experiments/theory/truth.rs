//! What the theory checks know about each step beyond its features, its MC score and the
//! teacher: the simulator's hidden state, or the learned-policy world's verifier.
//!
//! The two differ in one quantity. The simulator draws each step's MC score from a one-shot
//! success rate r it knows; the world's r is the trained policy's chance of finishing correctly
//! from the prefix, which nobody knows beyond the 16 continuations that estimate it. Every check
//! that needs r (the Beta prior fitted to r, the corpus's own P(r < τ | K), S(x) with η given
//! the truth) therefore either estimates it from the counts alone (the prior: see
//! [`super::reliability::corpus_prior`]) or is left out on the world, and the reports say which.

use std::path::Path;

use crate::data::features::FeatureBundle;
use crate::data::safetensors_io::MappedSafetensors;
use crate::error::{Error, Result};
use crate::sim::corpus::TRUTH_FILE;
use crate::sim::model::MC_SAMPLES;
use crate::sim::truth::Truth;
use crate::world::build::WORLD_TRUTH_FORMAT;
use crate::world::truth::WorldTruth;

/// Where a corpus's truth comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TruthKind {
    /// `mprm synth`: the generative model's own latent state.
    #[default]
    Simulator,
    /// `mprm world`: the exact verifier of a learned policy's steps.
    World,
}

impl TruthKind {
    /// True for the simulator (the default, left out of results written before worlds).
    pub fn is_simulator(&self) -> bool {
        *self == TruthKind::Simulator
    }
}

/// The per-step truth every check reads, whatever wrote it.
#[derive(Debug, Clone)]
pub struct StepTruth {
    /// Which corpus it describes.
    pub kind: TruthKind,
    /// Question (problem) per rollout: the bootstrap's cluster within a source.
    pub question: Vec<i64>,
    /// Successful continuations K per step, `None` where annotation stopped early.
    pub counts: Vec<Option<u32>>,
    /// Prefix through the step intact (0/1).
    pub prefix_correct: Vec<u8>,
    /// The one-shot success rate r per step: the simulator's only.
    pub success_rate: Option<Vec<f32>>,
}

impl StepTruth {
    /// Reads `truth.safetensors` in the corpus folder `dir`, simulator or world by its `format`
    /// tag, and checks that it describes `bundle`.
    pub fn open(dir: &Path, bundle: &FeatureBundle) -> Result<Self> {
        let path = dir.join(TRUTH_FILE);
        let file = MappedSafetensors::open(&path)?;
        let format = file.metadata().get("format").cloned();
        let truth = if format.as_deref() == Some(WORLD_TRUTH_FORMAT) {
            let t = WorldTruth::from_mapped(&path, &file)?;
            t.check_matches(bundle)?;
            StepTruth {
                kind: TruthKind::World,
                counts: t.mc_counts(),
                question: t.problem,
                prefix_correct: t.prefix_correct,
                success_rate: None,
            }
        } else {
            // Anything else is read as the simulator's, whose reader names a wrong format.
            let t = Truth::from_mapped(&path, &file)?;
            t.check_matches(bundle)?;
            StepTruth {
                kind: TruthKind::Simulator,
                counts: t.mc_counts(bundle),
                question: t.question,
                prefix_correct: t.prefix_correct,
                success_rate: Some(t.success_rate),
            }
        };
        truth.check_scores(&path, bundle)?;
        Ok(truth)
    }

    /// Every step's score in the bundle is K/16 of its count (0 where nothing was sampled): the
    /// truth and the features come from one annotation.
    fn check_scores(&self, path: &Path, bundle: &FeatureBundle) -> Result<()> {
        let n = MC_SAMPLES as f32;
        for (j, (&s, k)) in bundle.mc_scores().iter().zip(&self.counts).enumerate() {
            let expected = k.unwrap_or(0) as f32;
            if (s * n).round() != expected {
                return Err(Error::bundle(
                    path,
                    "mc_total",
                    format!(
                        "step {j}: the features bundle scores it {s}, but the truth counts \
                         {expected} of {MC_SAMPLES}: not the same annotation"
                    ),
                ));
            }
        }
        Ok(())
    }
}
