//! Statistics of a generated corpus, counted while it is written.
//!
//! All counters are integers (MC scores are K/16, so their sum is Σ K / 16), which makes the
//! totals independent of the order in which chunks are merged and exactly reproducible by any
//! tool that re-reads the annotation files.

use serde::Serialize;

use super::generate::RolloutDraw;
use super::model::MC_SAMPLES;

/// What the counters need of one annotated step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepFacts {
    /// Successful continuations K (0 when not sampled).
    pub mc_correct: u32,
    /// Continuations sampled (0 after an early stop).
    pub mc_total: u32,
    /// The step itself is right.
    pub correct: bool,
    /// Every step through this one is right (else a positive score is a pseudo-positive).
    pub prefix_correct: bool,
}

/// Counters over a set of rollouts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CorpusStats {
    /// Rollouts.
    pub rollouts: u64,
    /// Steps.
    pub steps: u64,
    /// Σ K over all steps (the MC score sum times 16).
    pub mc_correct_sum: u64,
    /// Steps with score 0 (including unsampled steps after an early stop).
    pub zero_steps: u64,
    /// Rollouts with both a positive and a zero step.
    pub mixed_rollouts: u64,
    /// Rollouts whose steps are all positive.
    pub all_positive_rollouts: u64,
    /// Rollouts whose steps are all zero.
    pub all_zero_rollouts: u64,
    /// Rollouts where the early stop actually cut the annotation short.
    pub early_stopped_rollouts: u64,
    /// Rollouts whose steps are all truly correct.
    pub all_correct_rollouts: u64,
    /// Whitespace-separated words over all step texts.
    pub words: u64,
    /// Steps with a positive score.
    pub positive_steps: u64,
    /// Positive steps whose prefix is already wrong (pseudo-positives).
    pub pseudo_positive_steps: u64,
    /// Steps that are themselves wrong.
    pub incorrect_steps: u64,
    /// Steps whose prefix is wrong.
    pub broken_prefix_steps: u64,
    /// Steps with a flipped training label.
    pub flipped_labels: u64,
    /// Steps by K (index k = 0..=16).
    pub steps_by_k: Vec<u64>,
    /// Wrong steps by K.
    pub incorrect_by_k: Vec<u64>,
    /// Broken-prefix steps by K.
    pub broken_prefix_by_k: Vec<u64>,
}

impl CorpusStats {
    /// Empty counters.
    pub fn new() -> Self {
        let bins = MC_SAMPLES as usize + 1;
        CorpusStats {
            steps_by_k: vec![0; bins],
            incorrect_by_k: vec![0; bins],
            broken_prefix_by_k: vec![0; bins],
            ..CorpusStats::default()
        }
    }

    /// Counts one simulated rollout with `words` words of step text.
    pub fn add(&mut self, rollout: &RolloutDraw, words: u64) {
        let facts: Vec<StepFacts> = rollout
            .steps
            .iter()
            .map(|s| StepFacts {
                mc_correct: s.mc_correct,
                mc_total: s.mc_total,
                correct: s.correct,
                prefix_correct: s.prefix_correct,
            })
            .collect();
        self.add_steps(&facts, words);
    }

    /// Counts one rollout given what each of its steps is, from any world.
    pub fn add_steps(&mut self, steps: &[StepFacts], words: u64) {
        let n = steps.len() as u64;
        self.rollouts += 1;
        self.steps += n;
        self.words += words;
        let mut positives = 0;
        for s in steps {
            let k = s.mc_correct as usize;
            self.mc_correct_sum += k as u64;
            self.steps_by_k[k] += 1;
            if k == 0 {
                self.zero_steps += 1;
            } else {
                positives += 1;
                if !s.prefix_correct {
                    self.pseudo_positive_steps += 1;
                }
            }
            if !s.correct {
                self.incorrect_steps += 1;
                self.incorrect_by_k[k] += 1;
            }
            if !s.prefix_correct {
                self.broken_prefix_steps += 1;
                self.broken_prefix_by_k[k] += 1;
            }
        }
        self.positive_steps += positives;
        match positives {
            0 => self.all_zero_rollouts += 1,
            p if p == n => self.all_positive_rollouts += 1,
            _ => self.mixed_rollouts += 1,
        }
        if steps.iter().any(|s| s.mc_total == 0) {
            self.early_stopped_rollouts += 1;
        }
        if steps.iter().all(|s| s.correct) {
            self.all_correct_rollouts += 1;
        }
    }

    /// Adds another set of counters.
    pub fn merge(&mut self, other: &CorpusStats) {
        self.rollouts += other.rollouts;
        self.steps += other.steps;
        self.mc_correct_sum += other.mc_correct_sum;
        self.zero_steps += other.zero_steps;
        self.mixed_rollouts += other.mixed_rollouts;
        self.all_positive_rollouts += other.all_positive_rollouts;
        self.all_zero_rollouts += other.all_zero_rollouts;
        self.early_stopped_rollouts += other.early_stopped_rollouts;
        self.all_correct_rollouts += other.all_correct_rollouts;
        self.words += other.words;
        self.positive_steps += other.positive_steps;
        self.pseudo_positive_steps += other.pseudo_positive_steps;
        self.incorrect_steps += other.incorrect_steps;
        self.broken_prefix_steps += other.broken_prefix_steps;
        self.flipped_labels += other.flipped_labels;
        for (a, b) in [
            (&mut self.steps_by_k, &other.steps_by_k),
            (&mut self.incorrect_by_k, &other.incorrect_by_k),
            (&mut self.broken_prefix_by_k, &other.broken_prefix_by_k),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }

    /// Mean MC score per step.
    pub fn mean_mc(&self) -> f64 {
        self.mc_correct_sum as f64 / MC_SAMPLES as f64 / self.steps as f64
    }

    /// Steps per rollout.
    pub fn steps_per_rollout(&self) -> f64 {
        self.steps as f64 / self.rollouts as f64
    }

    /// Fraction of zero-score steps.
    pub fn zero_fraction(&self) -> f64 {
        self.zero_steps as f64 / self.steps as f64
    }

    /// Fraction of mixed rollouts.
    pub fn mixed_fraction(&self) -> f64 {
        self.mixed_rollouts as f64 / self.rollouts as f64
    }

    /// Words per step.
    pub fn words_per_step(&self) -> f64 {
        self.words as f64 / self.steps as f64
    }

    /// Share of positive steps that are pseudo-positives.
    pub fn pseudo_positive_share(&self) -> f64 {
        self.pseudo_positive_steps as f64 / self.positive_steps.max(1) as f64
    }

    /// Empirical effective noise by MC count: for k = 1..=16, the share of steps with K = k
    /// that are wrong (`incorrect`) or sit on a wrong prefix (`broken`). Lemma 3 of the paper
    /// says these fall with k.
    pub fn effective_noise(&self) -> Vec<EffectiveNoise> {
        (0..self.steps_by_k.len())
            .map(|k| {
                let n = self.steps_by_k[k];
                let share = |c: u64| {
                    if n == 0 {
                        None
                    } else {
                        Some(c as f64 / n as f64)
                    }
                };
                EffectiveNoise {
                    k: k as u32,
                    steps: n,
                    incorrect: share(self.incorrect_by_k[k]),
                    broken_prefix: share(self.broken_prefix_by_k[k]),
                }
            })
            .collect()
    }
}

/// One row of the empirical η_eff table.
#[derive(Debug, Clone, Serialize)]
pub struct EffectiveNoise {
    /// Successful continuations.
    pub k: u32,
    /// Steps with this K.
    pub steps: u64,
    /// P(step wrong | K = k).
    pub incorrect: Option<f64>,
    /// P(prefix wrong | K = k).
    pub broken_prefix: Option<f64>,
}
