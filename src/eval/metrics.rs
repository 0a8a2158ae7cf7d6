//! The VisualProcessBench step metric, exactly as the reference evaluation script computes it.
//!
//! * Neutral steps (label 0) are dropped; a step is predicted correct iff `score >= t`.
//! * Per source: F1 of the correct class, F1 of the incorrect class, and their mean (macro-F1).
//!   A class absent from both truth and prediction scores 0, not 1.
//! * "Overall" (the paper's Overall column) is the step-count-weighted mean of per-source
//!   macro-F1, accumulated as `Σ macro·n` in source first-appearance order and divided once —
//!   the order matters because threshold ties are broken by a strict `>` on this value.
//! * Pooled macro-F1 and ROC-AUC (ties count one half) are reported alongside.
//!
//! Counts are exact integers, so computing them by binary search over sorted scores gives the
//! same floats as the reference's per-threshold loop, at a fraction of the cost.

/// Non-neutral steps of one source, split by truth and sorted by score.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSteps {
    /// `data_source`.
    pub name: String,
    /// Scores of correct steps, ascending.
    pub positive: Vec<f64>,
    /// Scores of incorrect steps, ascending.
    pub negative: Vec<f64>,
}

impl SourceSteps {
    /// Number of non-neutral steps.
    pub fn n(&self) -> usize {
        self.positive.len() + self.negative.len()
    }

    /// The confusion counts at threshold `t`.
    pub fn confusion(&self, t: f64) -> Confusion {
        let tp = count_at_least(&self.positive, t);
        let fp = count_at_least(&self.negative, t);
        Confusion {
            tp,
            fp,
            fn_: self.positive.len() - tp,
            tn: self.negative.len() - fp,
        }
    }
}

/// Number of elements of ascending `sorted` that are `>= t`.
fn count_at_least(sorted: &[f64], t: f64) -> usize {
    sorted.len() - sorted.partition_point(|&s| s < t)
}

/// Steps grouped by source, sources in first-appearance order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepSet {
    /// One entry per source that has at least one non-neutral step.
    pub sources: Vec<SourceSteps>,
}

impl StepSet {
    /// Collects `(source, labels, scores)` triples, pairing labels and scores positionally and
    /// truncating to the shorter list (as the reference does), dropping neutral steps.
    pub fn collect<'a>(records: impl IntoIterator<Item = (&'a str, &'a [i8], &'a [f64])>) -> Self {
        let mut set = StepSet::default();
        for (source, labels, scores) in records {
            let mut slot = None;
            for (&y, &s) in labels.iter().zip(scores) {
                if y == 0 {
                    continue;
                }
                let idx = *slot.get_or_insert_with(|| set.slot(source));
                let src = &mut set.sources[idx];
                if y == 1 {
                    src.positive.push(s);
                } else {
                    src.negative.push(s);
                }
            }
        }
        for s in &mut set.sources {
            s.positive.sort_by(f64::total_cmp);
            s.negative.sort_by(f64::total_cmp);
        }
        set
    }

    fn slot(&mut self, source: &str) -> usize {
        match self.sources.iter().position(|s| s.name == source) {
            Some(i) => i,
            None => {
                self.sources.push(SourceSteps {
                    name: source.to_string(),
                    positive: Vec::new(),
                    negative: Vec::new(),
                });
                self.sources.len() - 1
            }
        }
    }

    /// Total non-neutral steps.
    pub fn n(&self) -> usize {
        self.sources.iter().map(SourceSteps::n).sum()
    }

    /// All steps as one source (for pooled metrics).
    pub fn pooled(&self) -> SourceSteps {
        let mut positive: Vec<f64> = self
            .sources
            .iter()
            .flat_map(|s| s.positive.iter().copied())
            .collect();
        let mut negative: Vec<f64> = self
            .sources
            .iter()
            .flat_map(|s| s.negative.iter().copied())
            .collect();
        positive.sort_by(f64::total_cmp);
        negative.sort_by(f64::total_cmp);
        SourceSteps {
            name: "pooled".into(),
            positive,
            negative,
        }
    }

    /// The paper's Overall: Σ n_s · macroF1_s(t) / Σ n_s, in source order; 0 with no steps.
    pub fn overall(&self, t: f64) -> f64 {
        let mut acc = 0.0;
        let mut n = 0usize;
        for s in &self.sources {
            acc += s.confusion(t).macro_f1() * s.n() as f64;
            n += s.n();
        }
        if n > 0 { acc / n as f64 } else { 0.0 }
    }
}

/// Confusion counts of the "correct" class (positive = label 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Confusion {
    /// Correct steps predicted correct.
    pub tp: usize,
    /// Incorrect steps predicted correct.
    pub fp: usize,
    /// Correct steps predicted incorrect.
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// Incorrect steps predicted incorrect.
    pub tn: usize,
}

impl Confusion {
    /// F1 of the correct class.
    pub fn f1_positive(&self) -> f64 {
        f1(self.tp, self.fp, self.fn_)
    }

    /// F1 of the incorrect class (its true positives are our true negatives).
    pub fn f1_negative(&self) -> f64 {
        f1(self.tn, self.fn_, self.fp)
    }

    /// Mean of the two class F1s.
    pub fn macro_f1(&self) -> f64 {
        (self.f1_positive() + self.f1_negative()) / 2.0
    }
}

/// `2tp / (2tp + fp + fn)`, or 0 when the class is absent from truth and prediction.
pub fn f1(tp: usize, fp: usize, fn_: usize) -> f64 {
    let denom = 2 * tp + fp + fn_;
    if denom > 0 {
        (2 * tp) as f64 / denom as f64
    } else {
        0.0
    }
}

/// ROC-AUC of `steps` (positive = correct), ties between a positive and a negative counting one
/// half; `None` when either class is empty.
pub fn auc(steps: &SourceSteps) -> Option<f64> {
    let (pos, neg) = (&steps.positive, &steps.negative);
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    // Twice the Mann–Whitney U, in integers: 2 per negative strictly below, 1 per tie.
    let mut twice_u: u128 = 0;
    for &s in pos {
        let below = neg.partition_point(|&x| x < s);
        let up_to = neg.partition_point(|&x| x <= s);
        twice_u += 2 * below as u128 + (up_to - below) as u128;
    }
    Some(twice_u as f64 / (2.0 * pos.len() as f64 * neg.len() as f64))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The hand-worked example of the reference notes (§7.5).
    pub(crate) fn worked_example() -> StepSet {
        let a1 = (vec![1i8, 1, -1, 0], vec![0.9, 0.6, 0.3, 0.1]);
        let a2 = (vec![1i8, -1, -1], vec![0.55, 0.5, 0.2]);
        let b1 = (vec![1i8, 0, -1, 1], vec![0.8, 0.7, 0.65, 0.4]);
        StepSet::collect([
            ("DynaMath", &a1.0[..], &a1.1[..]),
            ("DynaMath", &a2.0[..], &a2.1[..]),
            ("WeMath", &b1.0[..], &b1.1[..]),
        ])
    }

    #[test]
    fn worked_example_at_one_half() {
        let set = worked_example();
        assert_eq!(set.sources.len(), 2);
        assert_eq!(set.sources[0].name, "DynaMath");
        assert_eq!(set.sources[0].n(), 6);
        assert_eq!(set.sources[1].n(), 3);
        let dyn_c = set.sources[0].confusion(0.5);
        assert_eq!(dyn_c.f1_positive(), 0.8571428571428571);
        assert_eq!(dyn_c.f1_negative(), 0.8);
        assert_eq!(dyn_c.macro_f1(), 0.8285714285714285);
        let we = set.sources[1].confusion(0.5);
        assert_eq!(we.f1_positive(), 0.5);
        assert_eq!(we.f1_negative(), 0.0);
        assert_eq!(we.macro_f1(), 0.25);
        assert_eq!(set.overall(0.5), 0.6357142857142857);
        assert_eq!(set.pooled().confusion(0.5).macro_f1(), 0.6493506493506493);
    }

    #[test]
    fn worked_example_overall_per_threshold() {
        let set = worked_example();
        let expected = [
            (0.2, 0.35555555555555557),
            (0.3, 0.55),
            (0.4, 0.6857142857142857),
            (0.5, 0.6357142857142857),
            (0.55, 0.75),
            (0.6, 0.6357142857142857),
            (0.65, 0.5),
            (0.8, 0.6388888888888888),
            (0.9, 0.5),
        ];
        for (t, want) in expected {
            assert_eq!(set.overall(t), want, "t = {t}");
        }
    }

    #[test]
    fn absent_class_scores_zero_not_one() {
        // A source with no incorrect steps, everything predicted correct: the incorrect class is
        // absent from truth and prediction, so its F1 is 0 and macro-F1 is 0.5.
        let labels = [1i8, 1, 1];
        let scores = [0.7, 0.8, 0.9];
        let set = StepSet::collect([("S", &labels[..], &scores[..])]);
        let c = set.sources[0].confusion(0.5);
        assert_eq!((c.tp, c.fp, c.fn_, c.tn), (3, 0, 0, 0));
        assert_eq!(c.f1_positive(), 1.0);
        assert_eq!(c.f1_negative(), 0.0);
        assert_eq!(set.overall(0.5), 0.5);
        // All predicted incorrect: both F1s are 0.
        assert_eq!(set.overall(0.95), 0.0);
        assert_eq!(auc(&set.pooled()), None);
    }

    #[test]
    fn all_neutral_contributes_nothing() {
        let labels = [0i8, 0];
        let scores = [0.1, 0.9];
        let set = StepSet::collect([("S", &labels[..], &scores[..])]);
        assert!(set.sources.is_empty());
        assert_eq!(set.overall(0.5), 0.0);
        assert_eq!(set.n(), 0);
    }

    #[test]
    fn labels_and_scores_pair_up_to_the_shorter_list() {
        let labels = [1i8, -1, 1];
        let scores = [0.9, 0.1];
        let set = StepSet::collect([("S", &labels[..], &scores[..])]);
        assert_eq!(set.n(), 2);
    }

    #[test]
    fn auc_counts_ties_as_half() {
        let s = SourceSteps {
            name: "x".into(),
            positive: vec![0.5, 0.9],
            negative: vec![0.1, 0.5],
        };
        // Pairs: (0.5,0.1)=1, (0.5,0.5)=½, (0.9,0.1)=1, (0.9,0.5)=1 → 3.5/4.
        assert_eq!(auc(&s), Some(0.875));
        let set = worked_example();
        // Pooled worked example: positives .9 .6 .55 .8 .4, negatives .3 .5 .2 .65.
        // Pairs won: .9→4, .6→3, .55→3, .8→4, .4→2 = 16 of 20.
        assert_eq!(auc(&set.pooled()), Some(0.8));
    }
}
