//! Training the policy on generated traces: next-token cross-entropy, AdamW, linear warm-up then
//! cosine decay ([`crate::train::schedule::Schedule`]).
//!
//! Step s trains on `batch` fresh problems, cycling through the sources, each a function of
//! (seed, source, index) ([`problems::generate`]), with its trace (slip or not) drawn from a
//! stream keyed by (seed, s, row). Nothing depends on thread scheduling, and the graph keeps
//! every tensor to at most two consumers ([`super::policy`]), so a seed gives the same policy
//! bytes.

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;

use crate::error::{Error, Result};
use crate::progress;
use crate::sim::rng::keyed;
use crate::train::plan::derive_seed;
use crate::train::schedule::Schedule;

use super::policy::{Policy, PolicySpec};
use super::problems::{self, DifficultyRange, Source};
use super::tokens::{BOS, EOS, encode};
use super::traces::training_trace;

/// Key kinds of the training streams (clear of the simulator's and the problems').
const TRAIN_PROBLEMS: u64 = 0x574F_0010;
const TRAIN_TRACES: u64 = 0x574F_0011;

/// Which implementation trains the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trainer {
    /// mprm's CPU trainer ([`super::train_engine`]) on the CPU, Burn's autodiff on CUDA.
    #[default]
    Auto,
    /// Burn's autodiff on either device: the same function, other bits (the committed
    /// learned-policy results predate the CPU trainer and pin it, so they rebuild byte for byte).
    Burn,
}

impl std::str::FromStr for Trainer {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Trainer::Auto),
            "burn" => Ok(Trainer::Burn),
            _ => Err(Error::invalid(format!(
                "unknown policy trainer {s:?} (auto or burn)"
            ))),
        }
    }
}

/// How the policy is trained.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTraining {
    /// Optimiser steps.
    pub steps: usize,
    /// Traces per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Share of the steps spent warming up.
    pub warmup_fraction: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Share of traces with a slip that the next step corrects.
    pub slip_rate: f64,
    /// Difficulty range of the training problems.
    pub difficulty: DifficultyRange,
    /// Seed of the initialisation and of the data.
    pub seed: u64,
    /// Which implementation trains it.
    #[serde(default)]
    pub trainer: Trainer,
}

impl Default for PolicyTraining {
    fn default() -> Self {
        PolicyTraining {
            steps: 1500,
            batch: 64,
            lr: 3e-3,
            warmup_fraction: 0.05,
            weight_decay: 0.01,
            slip_rate: 0.15,
            difficulty: DifficultyRange::FULL,
            seed: 0,
            trainer: Trainer::Auto,
        }
    }
}

impl PolicyTraining {
    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        self.difficulty.check()?;
        if self.steps == 0 || self.batch == 0 {
            return Err(Error::invalid("policy training needs steps and a batch"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid(format!(
                "policy lr {} must be positive",
                self.lr
            )));
        }
        for (what, v) in [
            ("warmup_fraction", self.warmup_fraction),
            ("slip_rate", self.slip_rate),
            ("weight_decay", self.weight_decay),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::invalid(format!(
                    "policy {what} {v} must be in [0, 1]"
                )));
            }
        }
        Ok(())
    }
}

/// The token rows of training step `step`: `<bos>` trace `<eos>` each.
pub fn training_batch(t: &PolicyTraining, step: usize) -> Result<Vec<Vec<u32>>> {
    let n = Source::ALL.len();
    (0..t.batch)
        .map(|row| {
            let source = Source::ALL[row % n];
            let index = (step * t.batch + row) / n;
            let problem = problems::generate(
                source,
                derive_seed(t.seed, TRAIN_PROBLEMS, 0),
                index as u64,
                t.difficulty,
            )?;
            let mut rng = keyed(t.seed, TRAIN_TRACES, step as u64, row as u64);
            let trace = training_trace(&problem, t.slip_rate, &mut rng);
            let mut tokens = vec![BOS];
            tokens.extend(encode(&trace.text)?);
            tokens.push(EOS);
            Ok(tokens)
        })
        .collect()
}

/// The loop both trainers run: step s takes one optimiser step on [`training_batch`]`(t, s)` at
/// the schedule's rate through `step(rows, lr)`, which returns the batch's loss before its update.
/// Returns every step's loss; a loss that is not finite stops training with an error.
pub(crate) fn drive(
    t: &PolicyTraining,
    mut step: impl FnMut(&[Vec<u32>], f64) -> Result<f64>,
) -> Result<Vec<f64>> {
    let schedule = Schedule::new(t.lr, t.steps, t.warmup_fraction);
    let bar = progress::bar(t.steps as u64, "policy training");
    let mut losses = Vec::with_capacity(t.steps);
    for s in 0..t.steps {
        let rows = training_batch(t, s)?;
        let value = step(&rows, schedule.lr(s))?;
        if !value.is_finite() {
            return Err(Error::invalid(format!(
                "policy training diverged at step {s} (loss {value}); lower the learning rate"
            )));
        }
        losses.push(value);
        bar.inc(1);
        if s % 50 == 0 {
            bar.set_message(format!("loss {value:.3}"));
        }
    }
    bar.finish_and_clear();
    Ok(losses)
}

/// The trained policy and its loss after every step.
pub struct TrainedPolicy<B: AutodiffBackend> {
    /// The policy, detached from the autodiff graph.
    pub policy: Policy<B::InnerBackend>,
    /// Mean next-token cross-entropy of each step's batch, before its update.
    pub losses: Vec<f64>,
}

/// Trains a policy of shape `spec` under `t`.
pub fn train_policy<B: AutodiffBackend>(
    spec: PolicySpec,
    t: &PolicyTraining,
    device: &B::Device,
) -> Result<TrainedPolicy<B>> {
    t.check()?;
    let mut policy = Some(Policy::<B>::init(spec, t.seed, device)?);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(t.weight_decay as f32)
        .init::<B, Policy<B>>();
    let losses = drive(t, |rows, lr| {
        let p = policy
            .take()
            .expect("the policy is put back after every step");
        let (loss, value) = p.next_token_loss(rows)?;
        let grads = GradientsParams::from_grads(loss.backward(), &p);
        policy = Some(optim.step(lr, p, grads));
        Ok(value)
    })?;
    let policy = policy.expect("the policy is put back after every step");
    Ok(TrainedPolicy {
        policy: policy.valid(),
        losses,
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};

    use super::*;

    type Ad = Autodiff<NdArray<f32>>;

    fn tiny() -> (PolicySpec, PolicyTraining) {
        (
            PolicySpec {
                width: 32,
                layers: 1,
                heads: 2,
                max_len: 160,
            },
            PolicyTraining {
                steps: 40,
                batch: 16,
                lr: 1e-2,
                seed: 9,
                ..PolicyTraining::default()
            },
        )
    }

    #[test]
    fn every_training_trace_fits_the_default_policy() {
        let t = PolicyTraining {
            batch: 64,
            slip_rate: 1.0,
            ..PolicyTraining::default()
        };
        let longest = (0..200)
            .flat_map(|s| training_batch(&t, s).unwrap())
            .map(|r| r.len())
            .max()
            .unwrap();
        assert!(longest <= PolicySpec::default().max_len, "{longest}");
        assert!(longest > 60, "{longest}");
    }

    #[test]
    fn training_lowers_the_loss_and_is_reproducible() {
        let (spec, t) = tiny();
        let dev = Default::default();
        let a = train_policy::<Ad>(spec, &t, &dev).unwrap();
        let early: f64 = a.losses[..5].iter().sum::<f64>() / 5.0;
        let late: f64 = a.losses[35..].iter().sum::<f64>() / 5.0;
        assert!(late < 0.75 * early, "{early} → {late}");
        // the same bytes again, and on a one-thread pool
        let b = train_policy::<Ad>(spec, &t, &dev).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let one = pool.install(|| train_policy::<Ad>(spec, &t, &dev).unwrap());
        for other in [&b, &one] {
            assert_eq!(a.losses, other.losses);
            assert_eq!(a.policy.parameter_values(), other.policy.parameter_values());
        }
        let rows = training_batch(&t, 3).unwrap();
        assert_eq!(rows.len(), 16);
        assert!(
            rows.iter()
                .all(|r| r[0] == BOS && *r.last().unwrap() == EOS)
        );
        assert_ne!(rows, training_batch(&t, 4).unwrap());
    }
}
