//! The paper's baseline subsets and the extra rankings a researcher expects.
//!
//! | method | key (higher kept first) |
//! |---|---|
//! | `bis` | (p(1 − p) + α) · R |
//! | `random` | a seeded uniform draw |
//! | `mixed` | 1 for mixed rollouts, 0 otherwise, plus a seeded uniform draw (mixed first, the shortfall at random) |
//! | `reliable` | R (top reliability; all-negative rollouts have R = 1) |
//! | `low-mc` | −mean MC (the bottom of the mean-MC ranking) |
//! | `mixture` | p(1 − p) alone |
//! | `top-mc` | mean MC |
//!
//! Random draws come from a generator seeded by the run seed and the source name, so a source's
//! selection does not depend on which other files are present or on thread scheduling.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::bis::mean_mc;
use super::{Selector, SourceView};
use crate::data::label_stats::LabelStats;
use crate::error::{Error, Result};

/// A selector named on the command line, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// BIS with smoothing α.
    Bis {
        /// α.
        alpha: f64,
    },
    /// Uniform at random.
    Random {
        /// Seed.
        seed: u64,
    },
    /// Mixed rollouts first, then random.
    Mixed {
        /// Seed for the random order.
        seed: u64,
    },
    /// Top reliability R.
    Reliable,
    /// Bottom mean MC.
    LowMc,
    /// Top p(1 − p).
    Mixture,
    /// Top mean MC.
    TopMc,
}

/// Names of the score-only methods, in the order the CLI lists them.
pub const BASELINE_NAMES: [&str; 7] = [
    "bis", "random", "mixed", "reliable", "low-mc", "mixture", "top-mc",
];

/// Names of the gradient-based methods (built by [`crate::gradient_selection`], a layer above
/// this one), so that selection can name every method in its messages.
pub const GRADIENT_NAMES: [&str; 9] = [
    "grand",
    "el2n",
    "less",
    "tracin",
    "influence",
    "oracle",
    "bis-tracin",
    "gradnorm-teacher",
    "gradnorm-ckpt",
];

impl Baseline {
    /// Builds a baseline from its CLI name.
    pub fn from_name(name: &str, alpha: f64, seed: u64) -> Result<Self> {
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::invalid(format!(
                "--alpha {alpha}: BIS's smoothing α must be a finite number ≥ 0 (0 for none; \
                 the reference uses 0.05)"
            )));
        }
        Ok(match name {
            "bis" => Baseline::Bis { alpha },
            "random" => Baseline::Random { seed },
            "mixed" => Baseline::Mixed { seed },
            "reliable" => Baseline::Reliable,
            "low-mc" => Baseline::LowMc,
            "mixture" => Baseline::Mixture,
            "top-mc" => Baseline::TopMc,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown selection method `{name}`; expected a score-based one ({}) or a \
                     gradient-based one ({}; these need --bundle)",
                    BASELINE_NAMES.join(", "),
                    GRADIENT_NAMES.join(", ")
                )));
            }
        })
    }
}

/// A generator for the rollouts of one source: the same seed and name always give the same draws.
pub fn source_rng(seed: u64, source: &str) -> ChaCha8Rng {
    // FNV-1a: a fixed, dependency-free hash, so the stream never changes between builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in source.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(seed ^ h.rotate_left(17))
}

impl Selector for Baseline {
    fn name(&self) -> &str {
        match self {
            Baseline::Bis { .. } => "bis",
            Baseline::Random { .. } => "random",
            Baseline::Mixed { .. } => "mixed",
            Baseline::Reliable => "reliable",
            Baseline::LowMc => "low-mc",
            Baseline::Mixture => "mixture",
            Baseline::TopMc => "top-mc",
        }
    }

    fn settings(&self) -> serde_json::Value {
        match self {
            Baseline::Bis { alpha } => serde_json::json!({ "method": "bis", "alpha": alpha }),
            Baseline::Random { seed } | Baseline::Mixed { seed } => {
                serde_json::json!({ "method": self.name(), "seed": seed })
            }
            _ => serde_json::json!({ "method": self.name() }),
        }
    }

    fn keys(&self, source: &SourceView<'_>) -> Result<Vec<f64>> {
        let m = source.len();
        let stats = || (0..m).map(|i| LabelStats::of(source.scores(i)));
        Ok(match self {
            Baseline::Bis { alpha } => stats().map(|s| s.bis(*alpha)).collect(),
            Baseline::Random { seed } => {
                let mut rng = source_rng(*seed, source.name);
                (0..m).map(|_| rng.random::<f64>()).collect()
            }
            Baseline::Mixed { seed } => {
                let mut rng = source_rng(*seed, source.name);
                stats()
                    .map(|s| if s.is_mixed() { 1.0 } else { 0.0 } + rng.random::<f64>())
                    .collect()
            }
            Baseline::Reliable => stats().map(|s| s.reliability).collect(),
            Baseline::LowMc => (0..m).map(|i| -mean_mc(source.scores(i))).collect(),
            Baseline::Mixture => stats().map(|s| s.mixture()).collect(),
            Baseline::TopMc => (0..m).map(|i| mean_mc(source.scores(i))).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{choose_top, quota};
    use super::*;

    fn view<'a>(
        name: &'a str,
        lines: &'a [u64],
        offs: &'a [usize],
        scores: &'a [f64],
    ) -> SourceView<'a> {
        SourceView::new(0, name, lines, offs, scores)
    }

    // Rollouts: pure positive, mixed low-R, all-negative, mixed reliable, pure 1.0.
    const SCORES: [f64; 11] = [0.5, 0.5, 0.0625, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.25];
    const OFFS: [usize; 6] = [0, 2, 4, 6, 8, 11];
    const LINES: [u64; 5] = [0, 1, 2, 3, 4];

    fn top(b: Baseline, k: usize) -> Vec<usize> {
        let v = view("s", &LINES, &OFFS, &SCORES);
        choose_top(&b.keys(&v).unwrap(), k).unwrap()
    }

    #[test]
    fn rankings_on_a_hand_made_source() {
        // BIS: [0.025, 0.0625·0.3 = 0.01875, 0.05, 0.3, 0.05·0.75 = 0.0375] → top 2 = 3 then 2.
        assert_eq!(top(Baseline::Bis { alpha: 0.05 }, 2), vec![2, 3]);
        // Reliability: R = [0.5, 0.0625, 1, 1, 0.75]; ties at 1 keep order → 2, 3.
        assert_eq!(top(Baseline::Reliable, 2), vec![2, 3]);
        // Mean MC: [0.5, 0.03125, 0, 0.5, 0.75].
        assert_eq!(top(Baseline::LowMc, 2), vec![1, 2]);
        assert_eq!(top(Baseline::TopMc, 1), vec![4]);
        // Mixture: only rollouts 1 and 3 are mixed (0.25 each).
        assert_eq!(top(Baseline::Mixture, 2), vec![1, 3]);
        assert_eq!(top(Baseline::Mixed { seed: 3 }, 2), vec![1, 3]);
    }

    #[test]
    fn random_is_seeded_per_source() {
        let a = top(Baseline::Random { seed: 1 }, 3);
        assert_eq!(a, top(Baseline::Random { seed: 1 }, 3));
        let draws = |seed, name| {
            let v = view(name, &LINES, &OFFS, &SCORES);
            Baseline::Random { seed }.keys(&v).unwrap()
        };
        assert_ne!(draws(1, "a"), draws(2, "a"));
        assert_ne!(draws(1, "a"), draws(1, "b"));
        assert_eq!(quota(5, 0.5), 2);
    }

    #[test]
    fn unknown_method_and_bad_alpha() {
        let e = Baseline::from_name("nope", 0.05, 0)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid argument: unknown selection method `nope`; expected a score-based one (bis, \
             random, mixed, reliable, low-mc, mixture, top-mc) or a gradient-based one (grand, \
             el2n, less, tracin, influence, oracle, bis-tracin, gradnorm-teacher, gradnorm-ckpt; \
             these need --bundle)"
        );
        assert!(Baseline::from_name("bis", f64::NAN, 0).is_err());
        let e = Baseline::from_name("bis", -1.0, 0).unwrap_err().to_string();
        assert!(
            e.contains("--alpha -1: BIS's smoothing α must be a finite number ≥ 0"),
            "{e}"
        );
    }
}
