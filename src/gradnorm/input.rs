//! A checked request to an engine: bundle, per-step targets, head and the rollouts to score.

use crate::data::features::FeatureBundle;
use crate::error::{Error, Result};
use crate::head::HeadParams;

use super::options::Accumulation;

/// A checked request: bundle, per-step targets, head and the rollouts to score.
#[derive(Debug, Clone, Copy)]
pub struct GradInput<'a> {
    /// The features bundle.
    pub bundle: &'a FeatureBundle,
    /// One target in [0, 1] per step of the bundle.
    pub targets: &'a [f32],
    /// The head to differentiate.
    pub head: &'a HeadParams,
    rollouts: Option<&'a [usize]>,
    accumulation: Accumulation,
}

impl<'a> GradInput<'a> {
    /// Validates shapes, target ranges, rollout indices and that no scored rollout is empty.
    pub fn new(
        bundle: &'a FeatureBundle,
        targets: &'a [f32],
        head: &'a HeadParams,
        rollouts: Option<&'a [usize]>,
    ) -> Result<Self> {
        if head.dim() != bundle.dim() {
            return Err(Error::invalid(format!(
                "the head takes d = {} inputs but the bundle's features have d = {}",
                head.dim(),
                bundle.dim()
            )));
        }
        if targets.len() != bundle.n_steps() {
            return Err(Error::invalid(format!(
                "{} targets for {} steps",
                targets.len(),
                bundle.n_steps()
            )));
        }
        if let Some(j) = targets
            .iter()
            .position(|t| !(t.is_finite() && (0.0..=1.0).contains(t)))
        {
            return Err(Error::invalid(format!(
                "target of step {j} is {}; targets must lie in [0, 1]",
                targets[j]
            )));
        }
        let input = GradInput {
            bundle,
            targets,
            head,
            rollouts,
            accumulation: Accumulation::F64,
        };
        let n = bundle.n_rollouts();
        let mut check = |i: usize| -> Result<()> {
            if i >= n {
                return Err(Error::invalid(format!(
                    "rollout {i} is not in the bundle ({n} rollouts)"
                )));
            }
            if bundle.rollout_len(i) == 0 {
                return Err(Error::EmptyInput(format!(
                    "rollout {i} (source `{}`{}) has no steps; a gradient needs at least one",
                    bundle
                        .meta()
                        .sources
                        .get(bundle.source()[i] as usize)
                        .map(String::as_str)
                        .unwrap_or("?"),
                    bundle
                        .line()
                        .as_ref()
                        .map(|l| format!(", line {}", l[i] + 1))
                        .unwrap_or_default()
                )));
            }
            Ok(())
        };
        match rollouts {
            Some(list) => list.iter().try_for_each(|&i| check(i))?,
            None => (0..n).try_for_each(&mut check)?,
        }
        Ok(input)
    }

    /// The same input summed as `accumulation` says on the CPU. f32 sums exist for the linear
    /// head only.
    pub fn with_accumulation(self, accumulation: Accumulation) -> Result<Self> {
        if accumulation == Accumulation::F32 && !matches!(self.head, HeadParams::Linear(_)) {
            return Err(Error::invalid(
                "f32 accumulation is implemented for the linear head only, not an mlp head; use f64"
                    .to_string(),
            ));
        }
        Ok(GradInput {
            accumulation,
            ..self
        })
    }

    /// How the CPU engine sums (f64 unless [`Self::with_accumulation`] said otherwise).
    pub fn accumulation(&self) -> Accumulation {
        self.accumulation
    }

    /// Number of scored rollouts.
    pub fn len(&self) -> usize {
        self.rollouts
            .map_or(self.bundle.n_rollouts(), <[usize]>::len)
    }

    /// True when nothing is scored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bundle index of the `k`-th scored rollout.
    pub fn rollout(&self, k: usize) -> usize {
        self.rollouts.map_or(k, |r| r[k])
    }

    /// The scored rollouts' bundle indices.
    pub fn rollout_indices(&self) -> Vec<usize> {
        (0..self.len()).map(|k| self.rollout(k)).collect()
    }

    /// Steps of each scored rollout.
    pub fn n_steps(&self) -> Vec<u32> {
        (0..self.len())
            .map(|k| self.bundle.rollout_len(self.rollout(k)) as u32)
            .collect()
    }
}
