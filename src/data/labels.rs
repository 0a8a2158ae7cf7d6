//! Training targets derived from a bundle's per-step annotations.
//!
//! The paper's default is the hard label `1[s > 0]`; it also studies higher thresholds and the raw
//! MC score as a soft target. Synthetic bundles additionally carry the true step correctness,
//! which lets experiments train on clean labels.

use crate::data::features::FeatureBundle;
use crate::error::{Error, Result};

/// Which per-step target to train or differentiate against.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "scheme", rename_all = "lowercase")]
pub enum LabelScheme {
    /// `1[s > threshold]` on the MC score (threshold 0 is the paper's default).
    Hard {
        /// τ: a step is positive iff its MC score exceeds it.
        threshold: f64,
    },
    /// The MC score itself as a probability target.
    Soft,
    /// The simulator's true step correctness (synthetic bundles only).
    True,
    /// The bundle's own `labels` tensor.
    Explicit,
}

impl Default for LabelScheme {
    fn default() -> Self {
        LabelScheme::Hard { threshold: 0.0 }
    }
}

impl LabelScheme {
    /// Parses the command-line spelling: `mc` (hard, τ given separately), `soft`, `true`,
    /// `explicit`.
    pub fn parse(name: &str, threshold: f64) -> Result<Self> {
        match name {
            "mc" | "hard" => Ok(LabelScheme::Hard { threshold }),
            "soft" => Ok(LabelScheme::Soft),
            "true" => Ok(LabelScheme::True),
            "explicit" => Ok(LabelScheme::Explicit),
            _ => Err(Error::invalid(format!(
                "unknown label scheme `{name}`: expected mc, soft, true or explicit"
            ))),
        }
    }

    /// A short human-readable description for manifests and tables.
    pub fn describe(&self) -> String {
        match self {
            LabelScheme::Hard { threshold } => format!("hard(s > {threshold})"),
            LabelScheme::Soft => "soft(s)".into(),
            LabelScheme::True => "true".into(),
            LabelScheme::Explicit => "explicit".into(),
        }
    }

    /// The target of a single MC score under a hard or soft scheme.
    pub fn from_score(&self, score: f64) -> Option<f32> {
        match self {
            LabelScheme::Hard { threshold } => Some(if score > *threshold { 1.0 } else { 0.0 }),
            LabelScheme::Soft => Some(score as f32),
            LabelScheme::True | LabelScheme::Explicit => None,
        }
    }

    /// One target per step of `bundle`.
    pub fn targets(&self, bundle: &FeatureBundle) -> Result<Vec<f32>> {
        match self {
            LabelScheme::Hard { .. } | LabelScheme::Soft => Ok(bundle
                .mc_scores()
                .iter()
                .map(|&s| self.from_score(s as f64).expect("hard or soft"))
                .collect()),
            LabelScheme::True => bundle
                .teacher()
                .as_ref()
                .map(|t| t.true_correct.iter().map(|&z| z as f32).collect())
                .ok_or_else(|| {
                    Error::invalid(
                        "labels `true` need a synthetic bundle (no `true_correct` tensor)",
                    )
                }),
            LabelScheme::Explicit => bundle.labels().map(<[f32]>::to_vec).ok_or_else(|| {
                Error::invalid("labels `explicit` need a `labels` tensor in the bundle")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_threshold_is_strict() {
        let hard = LabelScheme::Hard {
            threshold: 1.0 / 16.0,
        };
        assert_eq!(hard.from_score(0.0625), Some(0.0));
        assert_eq!(hard.from_score(0.125), Some(1.0));
        assert_eq!(LabelScheme::default().from_score(0.0), Some(0.0));
        assert_eq!(LabelScheme::default().from_score(0.0625), Some(1.0));
        assert_eq!(LabelScheme::Soft.from_score(0.375), Some(0.375));
    }
}
