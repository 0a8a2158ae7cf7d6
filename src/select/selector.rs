//! The selector contract and the per-source machinery every method shares: quotas, top-k with
//! the reference's tie order, and one source's selection.

use crate::error::{Error, Result};

/// The rankable rollouts of one source, as a selector sees them.
#[derive(Debug, Clone, Copy)]
pub struct SourceView<'a> {
    /// Position of the source in sorted file order.
    pub index: usize,
    /// Source name (annotation file stem).
    pub name: &'a str,
    /// Physical line of each rollout in its file (or its position, when lines are unknown).
    pub lines: &'a [u64],
    /// Corpus-order index of each rollout, when known (bundle input); selectors that need
    /// per-rollout data from elsewhere look it up by this or by `(name, line)`.
    pub corpus_index: Option<&'a [usize]>,
    score_offsets: &'a [usize],
    scores: &'a [f64],
}

impl<'a> SourceView<'a> {
    /// A view over CSR-packed scores: rollout i has `scores[score_offsets[i]..score_offsets[i+1]]`.
    pub fn new(
        index: usize,
        name: &'a str,
        lines: &'a [u64],
        score_offsets: &'a [usize],
        scores: &'a [f64],
    ) -> Self {
        debug_assert_eq!(lines.len() + 1, score_offsets.len());
        SourceView {
            index,
            name,
            lines,
            corpus_index: None,
            score_offsets,
            scores,
        }
    }

    /// Number of rankable rollouts m.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when the source has no rankable rollout.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The numeric MC scores of rollout `i`, in step order.
    pub fn scores(&self, i: usize) -> &'a [f64] {
        &self.scores[self.score_offsets[i]..self.score_offsets[i + 1]]
    }
}

/// Assigns every rollout of a source a ranking key; higher keys are kept first.
pub trait Selector: Send + Sync {
    /// Method name as typed on the command line (`bis`, `random`, ...).
    fn name(&self) -> &str;

    /// Settings that determine the selection, recorded in every output.
    fn settings(&self) -> serde_json::Value;

    /// One key per rollout of `source`, in the source's order. Keys must not be NaN.
    fn keys(&self, source: &SourceView<'_>) -> Result<Vec<f64>>;
}

/// The reference quota: `max(1, trunc(m · ratio))` evaluated in f64, 0 for an empty source.
///
/// The f64 product matters: `180 × 0.35` is `62.99999999999999`, so the quota is 62, not 63.
pub fn quota(m: usize, ratio: f64) -> usize {
    if m == 0 {
        return 0;
    }
    ((m as f64 * ratio) as usize).max(1)
}

/// Checks a budget fraction.
pub fn check_ratio(ratio: f64) -> Result<()> {
    if ratio.is_finite() && ratio > 0.0 && ratio <= 1.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "top ratio {ratio} must be in (0, 1]"
        )))
    }
}

/// The positions kept from `keys`: the first `k` of a stable descending sort (ties keep their
/// order), returned in ascending position order.
pub fn choose_top(keys: &[f64], k: usize) -> Result<Vec<usize>> {
    if let Some(i) = keys.iter().position(|k| k.is_nan()) {
        return Err(Error::Other(format!("ranking key of rollout {i} is NaN")));
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    // Compare b to a (not sort ascending and reverse), so equal keys keep their file order, as
    // Python's `sorted(..., reverse=True)` does.
    order.sort_by(|&a, &b| keys[b].partial_cmp(&keys[a]).expect("no NaN"));
    order.truncate(k);
    order.sort_unstable();
    Ok(order)
}

/// Keys and chosen positions of one source under `selector` at budget `ratio`.
pub fn select_source(
    selector: &dyn Selector,
    source: &SourceView<'_>,
    ratio: f64,
) -> Result<(Vec<f64>, Vec<usize>)> {
    let keys = selector.keys(source)?;
    if keys.len() != source.len() {
        return Err(Error::Other(format!(
            "selector {} returned {} keys for {} rollouts of {}",
            selector.name(),
            keys.len(),
            source.len(),
            source.name
        )));
    }
    let chosen = choose_top(&keys, quota(source.len(), ratio))?;
    Ok((keys, chosen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_follows_f64_truncation() {
        for (m, ratio, k) in [
            (7, 0.1, 1),
            (10, 0.25, 2),
            (10, 0.5, 5),
            (180, 0.35, 62),
            (340, 0.35, 118),
            (3, 0.25, 1),
            (0, 0.5, 0),
            (1, 1.0, 1),
        ] {
            assert_eq!(quota(m, ratio), k, "m = {m}, ratio = {ratio}");
        }
    }

    #[test]
    fn stable_descending_ties() {
        assert_eq!(choose_top(&[0.05, 0.1, 0.05, 0.05], 2).unwrap(), vec![0, 1]);
        assert_eq!(
            choose_top(&[0.05, 0.1, 0.05, 0.05], 3).unwrap(),
            vec![0, 1, 2]
        );
        assert!(choose_top(&[0.1, f64::NAN], 1).is_err());
    }
}
