//! Choosing the decision threshold, and the bench report built around that choice.
//!
//! The reference script sweeps thresholds on the benchmark itself and reports the best Overall —
//! an oracle number. mprm tunes on the dev split and reports on test; it also reports the
//! test-tuned number (labelled `test_oracle`) and the reference script's own number on every
//! record (`reference_auto`), so results can be compared with the paper's tables.
//!
//! Candidates are the sorted distinct scores rounded half-to-even to 4 decimals (the exact binary
//! value is rounded, as Python's `round(x, 4)` does), thinned to every `(|C| div 1000)`-th when
//! there are more than 1000; a strict `>` keeps the lowest threshold among equal Overall values.
//! Predictions compare the unrounded score with the rounded threshold.

use crate::data::bench::{BenchSet, Split, SplitOrigin};
use crate::eval::metrics::{Confusion, SourceSteps, StepSet, auc};
use crate::eval::scores::StepScores;

/// `x` rounded half-to-even at the 4th decimal of its exact binary value, then back to the
/// nearest double (Python's `round(x, 4)`).
pub fn round_half_even_4dp(x: f64) -> f64 {
    // Rust's fixed-precision formatting is exact on the binary value and breaks ties to even,
    // which is precisely Python's rule; parsing back is correctly rounded.
    format!("{x:.4}").parse().expect("a formatted float parses")
}

/// Candidate thresholds for `set` (see the module docs).
pub fn candidates(set: &StepSet) -> Vec<f64> {
    let mut c: Vec<f64> = set
        .sources
        .iter()
        .flat_map(|s| s.positive.iter().chain(&s.negative))
        .map(|&s| round_half_even_4dp(s))
        .collect();
    c.sort_by(f64::total_cmp);
    c.dedup();
    if c.len() > 1000 {
        let stride = c.len() / 1000;
        c = c.into_iter().step_by(stride).collect();
    }
    c
}

/// A threshold and the Overall it achieves on the set it was tuned on.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tuned {
    /// t*.
    pub threshold: f64,
    /// Overall(t*) on the tuning set.
    pub overall: f64,
}

/// The threshold maximising Overall on `set` (0.5 when `set` has no steps).
pub fn tune(set: &StepSet) -> Tuned {
    let mut best = Tuned {
        threshold: 0.5,
        overall: -1.0,
    };
    for t in candidates(set) {
        let overall = set.overall(t);
        if overall > best.overall {
            best = Tuned {
                threshold: t,
                overall,
            };
        }
    }
    if best.overall < 0.0 {
        best.overall = set.overall(best.threshold);
    }
    best
}

/// Metrics of one source at a threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceMetrics {
    /// `data_source`.
    pub source: String,
    /// Non-neutral steps.
    pub n: usize,
    /// F1 of the correct class.
    pub f1_positive: f64,
    /// F1 of the incorrect class.
    pub f1_negative: f64,
    /// Their mean (the per-source columns of the paper's tables).
    pub macro_f1: f64,
    /// The counts behind them.
    pub counts: Confusion,
}

impl SourceMetrics {
    fn of(steps: &SourceSteps, t: f64) -> Self {
        let c = steps.confusion(t);
        SourceMetrics {
            source: steps.name.clone(),
            n: steps.n(),
            f1_positive: c.f1_positive(),
            f1_negative: c.f1_negative(),
            macro_f1: c.macro_f1(),
            counts: c,
        }
    }
}

/// Every metric of a step set at one threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricsAt {
    /// The threshold.
    pub threshold: f64,
    /// Step-weighted mean of per-source macro-F1 (the paper's Overall).
    pub overall: f64,
    /// Macro-F1 over all steps pooled (reported by the reference, unused by the paper).
    pub pooled_macro_f1: f64,
    /// ROC-AUC over all steps pooled; `None` when a class is missing.
    pub auc: Option<f64>,
    /// Non-neutral steps.
    pub n_steps: usize,
    /// Per source, in first-appearance order.
    pub per_source: Vec<SourceMetrics>,
}

/// All metrics of `set` at threshold `t`.
pub fn metrics_at(set: &StepSet, t: f64) -> MetricsAt {
    let pooled = set.pooled();
    MetricsAt {
        threshold: t,
        overall: set.overall(t),
        pooled_macro_f1: pooled.confusion(t).macro_f1(),
        auc: auc(&pooled),
        n_steps: set.n(),
        per_source: set
            .sources
            .iter()
            .map(|s| SourceMetrics::of(s, t))
            .collect(),
    }
}

/// The threshold tuned on dev and what it gives on test.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DevTuned {
    /// t* and the Overall it reached on dev.
    pub dev: Tuned,
    /// Test metrics at t* (the honest number).
    pub test: MetricsAt,
}

/// The evaluation of one set of step scores on a bench.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchReport {
    /// How records were assigned to dev and test.
    pub split: SplitOrigin,
    /// Records in dev.
    pub n_dev_records: usize,
    /// Records in test.
    pub n_test_records: usize,
    /// Threshold tuned on dev, reported on test; absent when dev is empty.
    pub dev_tuned: Option<DevTuned>,
    /// ORACLE: the threshold tuned on test itself, reported on test.
    pub test_oracle: MetricsAt,
    /// Test metrics at the fixed threshold 0.5 (the reference script without `--auto`).
    pub test_at_half: MetricsAt,
    /// ORACLE, as the reference script computes it: tuned and reported on every record.
    pub reference_auto: MetricsAt,
    /// Records whose score list length differs from their label count (paired up to the shorter
    /// list, as the reference does).
    pub mismatched_records: usize,
}

impl BenchReport {
    /// The headline number: dev-tuned Overall on test, or the test oracle when there is no dev.
    pub fn headline(&self) -> f64 {
        match &self.dev_tuned {
            Some(d) => d.test.overall,
            None => self.test_oracle.overall,
        }
    }
}

/// Evaluates `scores` (one list per record) on `bench`.
pub fn evaluate(bench: &BenchSet, scores: &StepScores) -> BenchReport {
    let collect = |split: Option<Split>| {
        StepSet::collect(
            bench
                .records
                .iter()
                .enumerate()
                .filter(|&(i, _)| split.is_none_or(|s| bench.split[i] == s))
                .map(|(i, r)| (r.source.as_str(), &r.labels[..], scores.record(i))),
        )
    };
    let dev = collect(Some(Split::Dev));
    let test = collect(Some(Split::Test));
    let all = collect(None);
    let n_dev_records = bench.split.iter().filter(|&&s| s == Split::Dev).count();
    let dev_tuned = (n_dev_records > 0).then(|| {
        let tuned = tune(&dev);
        DevTuned {
            dev: tuned,
            test: metrics_at(&test, tuned.threshold),
        }
    });
    let mismatched_records = (0..bench.records.len())
        .filter(|&i| scores.record(i).len() != bench.records[i].labels.len())
        .count();
    BenchReport {
        split: bench.split_origin.clone(),
        n_dev_records,
        n_test_records: bench.records.len() - n_dev_records,
        dev_tuned,
        test_oracle: metrics_at(&test, tune(&test).threshold),
        test_at_half: metrics_at(&test, 0.5),
        reference_auto: metrics_at(&all, tune(&all).threshold),
        mismatched_records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::metrics::tests::worked_example;

    #[test]
    fn rounding_is_half_even_on_the_exact_binary_value() {
        assert_eq!(round_half_even_4dp(0.03125), 0.0312);
        assert_eq!(round_half_even_4dp(0.09375), 0.0938);
        assert_eq!(round_half_even_4dp(0.15625), 0.1562);
        // 0.00015 is slightly below the tie in binary, so it rounds down whatever the rule.
        assert_eq!(round_half_even_4dp(0.00015), 0.0001);
        assert_eq!(round_half_even_4dp(0.12345678), 0.1235);
        assert_eq!(round_half_even_4dp(1.0), 1.0);
        assert_eq!(round_half_even_4dp(0.0), 0.0);
    }

    #[test]
    fn worked_example_tunes_to_0_55() {
        let set = worked_example();
        assert_eq!(
            candidates(&set),
            vec![0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.8, 0.9]
        );
        let t = tune(&set);
        assert_eq!(t.threshold, 0.55);
        assert_eq!(t.overall, 0.75);
        let m = metrics_at(&set, t.threshold);
        assert_eq!(m.per_source[0].macro_f1, 1.0);
        assert_eq!(m.per_source[1].macro_f1, 0.25);
    }

    #[test]
    fn lowest_threshold_wins_ties() {
        // Every threshold in (0.2, 0.8] separates perfectly; the lowest candidate above the
        // negatives wins.
        let labels = [-1i8, 1, -1, 1];
        let scores = [0.1, 0.8, 0.2, 0.9];
        let set = StepSet::collect([("S", &labels[..], &scores[..])]);
        let t = tune(&set);
        assert_eq!((t.threshold, t.overall), (0.8, 1.0));
    }

    #[test]
    fn many_candidates_are_thinned() {
        let scores: Vec<f64> = (0..2500).map(|i| i as f64 / 2500.0).collect();
        let labels: Vec<i8> = (0..2500).map(|i| if i % 2 == 0 { 1 } else { -1 }).collect();
        let set = StepSet::collect([("S", &labels[..], &scores[..])]);
        let c = candidates(&set);
        // 2500 distinct 4-decimal values, stride 2 → 1250 candidates starting at 0.
        assert_eq!(c.len(), 1250);
        assert_eq!(c[0], 0.0);
        assert_eq!(c[1], 0.0008);
    }

    #[test]
    fn empty_set_defaults_to_one_half() {
        let t = tune(&StepSet::default());
        assert_eq!((t.threshold, t.overall), (0.5, 0.0));
    }
}
