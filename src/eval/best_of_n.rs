//! Best-of-N reranking: how often a PRM picks a correct final answer among N candidates.
//!
//! The paper scores a candidate by the mean of its step scores and keeps the argmax; `min`
//! (the weakest step) and `last` (the final step) are the usual alternatives. Each is compared
//! with a random pick (its exact expectation, the mean fraction of correct candidates, so no
//! sampling noise) and with the oracle (a question counts when any candidate is correct).
//! Ties between candidates go to the earliest in file order.

use std::collections::HashMap;

use crate::data::bench::BenchSet;
use crate::eval::scores::StepScores;

/// How a candidate's step scores become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// Mean step score (the paper's choice).
    Mean,
    /// Lowest step score.
    Min,
    /// Score of the last step.
    Last,
}

impl Aggregate {
    /// All aggregators, in report order.
    pub const ALL: [Aggregate; 3] = [Aggregate::Mean, Aggregate::Min, Aggregate::Last];

    /// The candidate's score; `None` for a candidate without steps (never picked over one that
    /// has steps).
    pub fn apply(self, scores: &[f64]) -> Option<f64> {
        if scores.is_empty() {
            return None;
        }
        Some(match self {
            Aggregate::Mean => scores.iter().sum::<f64>() / scores.len() as f64,
            Aggregate::Min => scores.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Last => *scores.last().expect("non-empty"),
        })
    }
}

/// Accuracy of one aggregator.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PickAccuracy {
    /// The aggregator.
    pub aggregate: Aggregate,
    /// Fraction of questions whose picked candidate is correct.
    pub accuracy: f64,
}

/// Best-of-N over a set of questions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BestOfNReport {
    /// Questions (groups of candidates sharing a `question_id`).
    pub n_questions: usize,
    /// Mean candidates per question.
    pub mean_candidates: f64,
    /// One entry per aggregator.
    pub picks: Vec<PickAccuracy>,
    /// Expected accuracy of a uniformly random pick.
    pub random: f64,
    /// Fraction of questions with at least one correct candidate.
    pub oracle: f64,
}

/// Best-of-N over the records `subset` of `bench`; `None` when they lack `question_id` or
/// `final_correct`, or `subset` is empty.
pub fn best_of_n(bench: &BenchSet, scores: &StepScores, subset: &[usize]) -> Option<BestOfNReport> {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for &i in subset {
        let r = &bench.records[i];
        r.final_correct?;
        let q = r.question_id.as_deref()?;
        groups
            .entry(q)
            .or_insert_with(|| {
                order.push(q);
                Vec::new()
            })
            .push(i);
    }
    if order.is_empty() {
        return None;
    }
    let correct = |i: usize| bench.records[i].final_correct == Some(true);
    let n_questions = order.len() as f64;
    let picks = Aggregate::ALL
        .iter()
        .map(|&aggregate| {
            let hits = order
                .iter()
                .filter(|q| {
                    let mut best: Option<(f64, usize)> = None;
                    for &i in &groups[*q] {
                        let v = aggregate.apply(scores.record(i));
                        if let Some(v) = v.filter(|&v| best.is_none_or(|(b, _)| v > b)) {
                            best = Some((v, i));
                        }
                    }
                    let pick = best.map_or(groups[*q][0], |(_, i)| i);
                    correct(pick)
                })
                .count();
            PickAccuracy {
                aggregate,
                accuracy: hits as f64 / n_questions,
            }
        })
        .collect();
    let random = order
        .iter()
        .map(|q| {
            let g = &groups[*q];
            g.iter().filter(|&&i| correct(i)).count() as f64 / g.len() as f64
        })
        .sum::<f64>()
        / n_questions;
    let oracle = order
        .iter()
        .filter(|q| groups[**q].iter().any(|&i| correct(i)))
        .count() as f64
        / n_questions;
    Some(BestOfNReport {
        n_questions: order.len(),
        mean_candidates: subset.len() as f64 / n_questions,
        picks,
        random,
        oracle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::bench::{BenchRecord, SplitSettings};

    fn candidate(q: &str, correct: bool) -> BenchRecord {
        BenchRecord {
            line: 0,
            source: "S".into(),
            labels: vec![1, 1],
            policy_model: None,
            split: None,
            question_id: Some(q.into()),
            final_correct: Some(correct),
        }
    }

    #[test]
    fn picks_by_each_aggregate_against_random_and_oracle() {
        // q1: c0 wrong (mean .6, min .3, last .9), c1 right (mean .55, min .5, last .6).
        // q2: c2 right (mean .8, min .7, last .7), c3 wrong (mean .2, min .1, last .3),
        //     c4 wrong (mean .7, min .6, last .8).
        // q3: both wrong.
        let records = vec![
            candidate("q1", false),
            candidate("q1", true),
            candidate("q2", true),
            candidate("q2", false),
            candidate("q2", false),
            candidate("q3", false),
            candidate("q3", false),
        ];
        let scores = StepScores::from_lists([
            vec![0.3, 0.9],
            vec![0.5, 0.6],
            vec![0.9, 0.7],
            vec![0.1, 0.3],
            vec![0.6, 0.8],
            vec![0.5, 0.5],
            vec![0.4, 0.4],
        ]);
        let bench = BenchSet::from_parts(
            "b.jsonl".into(),
            records,
            None,
            SplitSettings {
                dev_fraction: 0.0,
                seed: 0,
            },
        )
        .unwrap();
        let all: Vec<usize> = (0..7).collect();
        let r = best_of_n(&bench, &scores, &all).unwrap();
        assert_eq!(r.n_questions, 3);
        let acc = |a| r.picks.iter().find(|p| p.aggregate == a).unwrap().accuracy;
        // mean: q1 → c0 (wrong), q2 → c2 (right), q3 wrong → 1/3.
        assert_eq!(acc(Aggregate::Mean), 1.0 / 3.0);
        // min: q1 → c1 (right), q2 → c2 (right) → 2/3.
        assert_eq!(acc(Aggregate::Min), 2.0 / 3.0);
        // last: q1 → c0 (wrong), q2 → c4 (wrong) → 0.
        assert_eq!(acc(Aggregate::Last), 0.0);
        assert_eq!(r.random, (0.5 + 1.0 / 3.0 + 0.0) / 3.0);
        assert_eq!(r.oracle, 2.0 / 3.0);
    }
}
