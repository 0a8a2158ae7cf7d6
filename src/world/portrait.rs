//! The measured portrait of a world: the statistics the paper reports for VisualPRM400K (Table 1)
//! and the ones its theory turns on (how often a score of k/16 sits on a wrong step), counted
//! with the same definitions for the learned-policy world and the simulator, so the three columns
//! compare like with like.
//!
//! Nothing here is fitted: the world is not calibrated to the paper. Which knobs move what:
//! * `training.slip_rate` (corrected slips in the policy's training traces) raises the share of
//!   rollouts that recover from a wrong step, hence positive-scored wrong steps;
//! * `training.steps` (how well the policy learns) raises the mean MC score and lowers the
//!   share of zero-score steps;
//! * `temperature` raises the policy's error rate, hence zero-score steps and mixed rollouts;
//! * `difficulty` (more steps, larger operands) lengthens rollouts and lowers the mean score;
//! * `early_stop` turns every step after a first zero into an unsampled zero.

use serde::Serialize;

use crate::sim::model::MC_SAMPLES;
use crate::sim::preset::VISUALPRM400K_TARGETS;
use crate::sim::stats::CorpusStats;

/// One column of the portrait.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortraitNumbers {
    /// Rollouts.
    pub rollouts: u64,
    /// Steps.
    pub steps: u64,
    /// Steps per rollout.
    pub steps_per_rollout: f64,
    /// Share of steps with score 0 (unsampled steps after an early stop included).
    pub zero_mc_fraction: f64,
    /// Mean MC score per step.
    pub mean_mc: f64,
    /// Share of rollouts with a positive and a zero-score step.
    pub mixed_fraction: f64,
    /// Share of rollouts whose steps all score > 0.
    pub all_positive_fraction: f64,
    /// Share of steps that are wrong.
    pub wrong_step_fraction: f64,
    /// P(step wrong | K = k) for k = 0..=16 (`None` where no step has K = k).
    pub wrong_given_k: Vec<Option<f64>>,
    /// Steps with K = k, k = 0..=16.
    pub steps_by_k: Vec<u64>,
    /// Share of positive-scored steps that are wrong.
    pub positive_wrong_share: f64,
    /// Share of positive-scored steps on a wrong prefix (pseudo-positives in the simulator's
    /// sense: the step or one before it is wrong).
    pub pseudo_positive_share: f64,
    /// Share of correct steps that score 0.
    pub correct_zero_share: f64,
}

impl PortraitNumbers {
    /// The numbers of the counters `s`.
    pub fn of(s: &CorpusStats) -> Self {
        let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
        let positive_wrong: u64 = s.incorrect_by_k[1..].iter().sum();
        let correct = s.steps - s.incorrect_steps;
        let zero_correct = s.steps_by_k[0] - s.incorrect_by_k[0];
        PortraitNumbers {
            rollouts: s.rollouts,
            steps: s.steps,
            steps_per_rollout: ratio(s.steps, s.rollouts),
            zero_mc_fraction: ratio(s.zero_steps, s.steps),
            mean_mc: s.mc_correct_sum as f64 / MC_SAMPLES as f64 / s.steps.max(1) as f64,
            mixed_fraction: ratio(s.mixed_rollouts, s.rollouts),
            all_positive_fraction: ratio(s.all_positive_rollouts, s.rollouts),
            wrong_step_fraction: ratio(s.incorrect_steps, s.steps),
            wrong_given_k: s
                .steps_by_k
                .iter()
                .zip(&s.incorrect_by_k)
                .map(|(&n, &w)| (n > 0).then(|| w as f64 / n as f64))
                .collect(),
            steps_by_k: s.steps_by_k.clone(),
            positive_wrong_share: ratio(positive_wrong, s.positive_steps),
            pseudo_positive_share: ratio(s.pseudo_positive_steps, s.positive_steps),
            correct_zero_share: ratio(zero_correct, correct),
        }
    }
}

/// The paper's Table 1 values the portrait can be set beside.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaperColumn {
    /// Steps per rollout (5.62).
    pub steps_per_rollout: f64,
    /// Zero-score step share (3.57%).
    pub zero_mc_fraction: f64,
    /// Mean MC (0.8566).
    pub mean_mc: f64,
    /// Mixed rollouts (7.67%).
    pub mixed_fraction: f64,
}

/// The world, the paper and the simulator's default corpus side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Portrait {
    /// The world as written.
    pub world: PortraitNumbers,
    /// Table 1 of the paper.
    pub paper: PaperColumn,
    /// `mprm synth` with its defaults (counted by the simulator without writing it), when it
    /// was measured.
    pub simulator: Option<PortraitNumbers>,
}

impl Portrait {
    /// The world's counters `s` beside the paper (and the simulator when given).
    pub fn new(s: &CorpusStats, simulator: Option<&CorpusStats>) -> Self {
        let t = VISUALPRM400K_TARGETS;
        Portrait {
            world: PortraitNumbers::of(s),
            paper: PaperColumn {
                steps_per_rollout: t.steps_per_rollout,
                zero_mc_fraction: t.zero_mc_fraction,
                mean_mc: t.mean_mc,
                mixed_fraction: t.mixed_fraction,
            },
            simulator: simulator.map(PortraitNumbers::of),
        }
    }

    /// The simulator's default corpus, counted (no file written).
    pub fn simulator_counts() -> crate::error::Result<CorpusStats> {
        let (_, per_source) =
            crate::sim::corpus::sample_statistics(&crate::sim::SynthConfig::default())?;
        let mut total = CorpusStats::new();
        per_source.iter().for_each(|s| total.merge(s));
        Ok(total)
    }

    /// A plain-text table: one row per statistic, columns paper / world / simulator.
    pub fn table(&self) -> String {
        let pct = |v: f64| format!("{:.2}%", 100.0 * v);
        let num = |v: f64| format!("{v:.3}");
        let w = &self.world;
        let s = self.simulator.as_ref();
        let mut rows = vec![format!(
            "{:<34} {:>10} {:>10} {:>10}",
            "statistic", "paper", "world", "simulator"
        )];
        let mut row = |name: &str, paper: Option<String>, world: String, sim: Option<String>| {
            rows.push(format!(
                "{:<34} {:>10} {:>10} {:>10}",
                name,
                paper.unwrap_or_else(|| "–".into()),
                world,
                sim.unwrap_or_else(|| "–".into())
            ));
        };
        let p = &self.paper;
        row(
            "rollouts",
            None,
            w.rollouts.to_string(),
            s.map(|s| s.rollouts.to_string()),
        );
        row(
            "steps / rollout",
            Some(num(p.steps_per_rollout)),
            num(w.steps_per_rollout),
            s.map(|s| num(s.steps_per_rollout)),
        );
        row(
            "zero-score steps",
            Some(pct(p.zero_mc_fraction)),
            pct(w.zero_mc_fraction),
            s.map(|s| pct(s.zero_mc_fraction)),
        );
        row(
            "mean MC / step",
            Some(num(p.mean_mc)),
            num(w.mean_mc),
            s.map(|s| num(s.mean_mc)),
        );
        row(
            "mixed rollouts",
            Some(pct(p.mixed_fraction)),
            pct(w.mixed_fraction),
            s.map(|s| pct(s.mixed_fraction)),
        );
        row(
            "wrong steps",
            None,
            pct(w.wrong_step_fraction),
            s.map(|s| pct(s.wrong_step_fraction)),
        );
        row(
            "wrong among positive-scored",
            None,
            pct(w.positive_wrong_share),
            s.map(|s| pct(s.positive_wrong_share)),
        );
        row(
            "wrong prefix among positive-scored",
            None,
            pct(w.pseudo_positive_share),
            s.map(|s| pct(s.pseudo_positive_share)),
        );
        row(
            "zero-scored among correct",
            None,
            pct(w.correct_zero_share),
            s.map(|s| pct(s.correct_zero_share)),
        );
        let opt = |v: Option<f64>| v.map_or_else(|| "–".to_string(), pct);
        for k in 0..w.wrong_given_k.len() {
            row(
                &format!("P(wrong | K = {k:>2}) [world n]"),
                None,
                format!("{} [{}]", opt(w.wrong_given_k[k]), w.steps_by_k[k]),
                s.map(|s| opt(s.wrong_given_k[k])),
            );
        }
        rows.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::stats::StepFacts;

    fn step(k: u32, correct: bool, prefix_correct: bool) -> StepFacts {
        StepFacts {
            mc_correct: k,
            mc_total: 16,
            correct,
            prefix_correct,
        }
    }

    #[test]
    fn portrait_counts_by_hand() {
        let mut s = CorpusStats::new();
        // mixed: right, wrong-but-recovered (positive), then a zero
        s.add_steps(
            &[
                step(16, true, true),
                step(4, false, false),
                step(0, false, false),
            ],
            3,
        );
        // all positive, all correct
        s.add_steps(&[step(12, true, true), step(8, true, true)], 2);
        // a correct step scored 0
        s.add_steps(&[step(0, true, true)], 1);
        let n = PortraitNumbers::of(&s);
        assert_eq!((n.rollouts, n.steps), (3, 6));
        assert_eq!(n.steps_per_rollout, 2.0);
        assert_eq!(n.zero_mc_fraction, 2.0 / 6.0);
        assert_eq!(n.mean_mc, 40.0 / 16.0 / 6.0);
        assert_eq!(n.mixed_fraction, 1.0 / 3.0);
        assert_eq!(n.all_positive_fraction, 1.0 / 3.0);
        assert_eq!(n.wrong_step_fraction, 2.0 / 6.0);
        assert_eq!(n.positive_wrong_share, 1.0 / 4.0);
        assert_eq!(n.pseudo_positive_share, 1.0 / 4.0);
        assert_eq!(n.correct_zero_share, 1.0 / 4.0);
        assert_eq!(n.wrong_given_k[0], Some(0.5));
        assert_eq!(n.wrong_given_k[4], Some(1.0));
        assert_eq!(n.wrong_given_k[16], Some(0.0));
        assert_eq!(n.wrong_given_k[1], None);
        let p = Portrait::new(&s, Some(&s));
        let table = p.table();
        assert!(table.contains("mixed rollouts"), "{table}");
        assert!(table.contains("7.67%"), "{table}");
        assert!(table.contains("33.33%"), "{table}");
    }
}
