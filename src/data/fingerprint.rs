//! Corpus identity: a short fingerprint that says which rollouts a file was made from.
//!
//! Ids files, features bundles, synthetic-corpus manifests, run folders and results folders all
//! refer to rollouts by (source, line) or by corpus index. Nothing in those references says *which*
//! corpus they index, so an ids file chosen on one corpus used to be accepted against another as
//! long as the lines existed. Every such file now records the fingerprint of its corpus, and every
//! command that joins two of them compares the fingerprints (and, where both sides know them, the
//! per-rollout step counts) before any work: a mismatch is an error naming both files.
//!
//! The fingerprint is FNV-1a (64-bit) over the corpus in corpus order (sources in sorted order,
//! rollouts in line order), each rollout contributing
//!
//! ```text
//! source name (UTF-8) · 0x00 · line (u64, little-endian) · number of steps (u64, little-endian)
//! ```
//!
//! written as `fp1-<rollouts>-<16 hex digits>`. A bundle without a `line` tensor uses each
//! rollout's position within its source as its line. The hash is for catching accidents, not
//! adversaries; it is simple enough to recompute in a few lines of Python:
//!
//! ```python
//! h = 0xcbf29ce484222325
//! for source, line, steps in rollouts:           # corpus order
//!     for b in source.encode() + b"\0" + line.to_bytes(8, "little") + steps.to_bytes(8, "little"):
//!         h = ((h ^ b) * 0x100000001b3) % 2**64
//! print(f"fp1-{len(rollouts)}-{h:016x}")
//! ```

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The identity of a corpus: how many rollouts it has and a hash of (source, line, steps) of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CorpusFingerprint {
    /// Number of rollouts hashed.
    pub rollouts: u64,
    /// FNV-1a 64 of the rollouts, in corpus order.
    pub hash: u64,
}

impl CorpusFingerprint {
    /// The fingerprint of `(source, line, steps)` triples given in corpus order.
    pub fn of<'a>(rollouts: impl IntoIterator<Item = (&'a str, u64, u64)>) -> Self {
        let mut b = FingerprintBuilder::default();
        for (source, line, steps) in rollouts {
            b.push(source, line, steps);
        }
        b.finish()
    }
}

impl fmt::Display for CorpusFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fp1-{}-{:016x}", self.rollouts, self.hash)
    }
}

impl FromStr for CorpusFingerprint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "`{s}` is not a corpus fingerprint (expected fp1-<rollouts>-<16 hex digits>)"
            ))
        };
        let rest = s.strip_prefix("fp1-").ok_or_else(bad)?;
        let (n, hash) = rest.split_once('-').ok_or_else(bad)?;
        if hash.len() != 16 {
            return Err(bad());
        }
        Ok(CorpusFingerprint {
            rollouts: n.parse().map_err(|_| bad())?,
            hash: u64::from_str_radix(hash, 16).map_err(|_| bad())?,
        })
    }
}

impl serde::Serialize for CorpusFingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CorpusFingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Accumulates a fingerprint one rollout at a time (in corpus order).
#[derive(Debug, Clone)]
pub struct FingerprintBuilder {
    hash: u64,
    rollouts: u64,
}

impl Default for FingerprintBuilder {
    fn default() -> Self {
        FingerprintBuilder {
            hash: FNV_OFFSET,
            rollouts: 0,
        }
    }
}

impl FingerprintBuilder {
    /// Adds the next rollout.
    pub fn push(&mut self, source: &str, line: u64, steps: u64) {
        self.bytes(source.as_bytes());
        self.bytes(&[0]);
        self.bytes(&line.to_le_bytes());
        self.bytes(&steps.to_le_bytes());
        self.rollouts += 1;
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash = (self.hash ^ b as u64).wrapping_mul(FNV_PRIME);
        }
    }

    /// The fingerprint of everything pushed.
    pub fn finish(self) -> CorpusFingerprint {
        CorpusFingerprint {
            rollouts: self.rollouts,
            hash: self.hash,
        }
    }
}

/// Checks that two files were made from one corpus: an error naming both files otherwise.
pub fn check_same_corpus(
    left: &Path,
    left_fp: &CorpusFingerprint,
    right: &Path,
    right_fp: &CorpusFingerprint,
) -> Result<()> {
    if left_fp == right_fp {
        return Ok(());
    }
    Err(Error::CorpusMismatch {
        left: left.to_path_buf(),
        right: right.to_path_buf(),
        reason: format!(
            "{} is from corpus {left_fp} ({} rollouts) but {} is from corpus {right_fp} ({} \
             rollouts); they were made from different data",
            left.display(),
            left_fp.rollouts,
            right.display(),
            right_fp.rollouts
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value_round_trip_and_sensitivity() {
        // Recomputed independently with the Python snippet in the module docs.
        let fp = CorpusFingerprint::of([("ai2d", 0, 3), ("ai2d", 1, 5), ("vqav2", 0, 1)]);
        assert_eq!(fp.to_string(), "fp1-3-0cd62f3e6a7ee595");
        assert_eq!(fp.to_string().parse::<CorpusFingerprint>().unwrap(), fp);
        // Any change of source, line, step count or order changes it.
        for other in [
            [("ai2d", 0, 3), ("ai2d", 1, 4), ("vqav2", 0, 1)],
            [("ai2d", 0, 3), ("ai2d", 2, 5), ("vqav2", 0, 1)],
            [("ai2d", 0, 3), ("ai2d", 1, 5), ("vqav3", 0, 1)],
            [("ai2d", 1, 5), ("ai2d", 0, 3), ("vqav2", 0, 1)],
        ] {
            assert_ne!(CorpusFingerprint::of(other), fp);
        }
        assert!("fp1-3-xyz".parse::<CorpusFingerprint>().is_err());
        assert!(
            "fp2-3-6a1cc7e5f7a4d7c2"
                .parse::<CorpusFingerprint>()
                .is_err()
        );
    }

    #[test]
    fn mismatch_names_both_files() {
        let a = CorpusFingerprint::of([("a", 0, 1)]);
        let b = CorpusFingerprint::of([("a", 0, 2)]);
        let e = check_same_corpus(Path::new("x.ids.tsv"), &a, Path::new("y.safetensors"), &b)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.ids.tsv") && e.contains("y.safetensors"),
            "{e}"
        );
        check_same_corpus(Path::new("x"), &a, Path::new("y"), &a).unwrap();
    }
}
