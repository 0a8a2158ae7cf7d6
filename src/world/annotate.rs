//! Rollouts and their Monte Carlo annotation, as VisualPRM400K annotated its rollouts.
//!
//! * **Rollout.** The policy continues `<bos>question?` at its sampling temperature. Its steps
//!   are the pieces ended by `<step>` tokens; what follows the last one is the final answer
//!   (`#v<eos>`). A rollout without a step carries no step label and is skipped (counted).
//! * **MC score of step j.** The prefix through step j's `<step>` token is continued `N` times
//!   (16 by default); the score is the share of continuations that end in `<eos>` with the
//!   correct final answer, k/N.
//! * **Early stop** (the generator's default, [`McSpec::early_stop`]): once a step scores 0,
//!   every later step gets score 0 with `num_mc_total` 0 and is not sampled. Steps are annotated
//!   in rounds (round j continues step j of every rollout still going), so early stop saves the
//!   sampling it skips, and a continuation's random stream is keyed by (rollout, step, index)
//!   alone, so the scores are the same however the rounds are batched.
//!
//! The continuations come from a [`Continuer`]: the policy's sampler, or a script in tests.

use burn::tensor::backend::Backend;

use crate::error::{Error, Result};
use crate::train::plan::derive_seed;

use super::policy::Policy;
use super::problems::Problem;
use super::sample::{SampleSpec, sample};
use super::tokens::{BOS, EOS, STEP, decode, encode, split_trace};
use super::verify::{TraceCheck, check};

/// Key tag of continuation streams.
const MC_TAG: u64 = 0x574F_0020;

/// Continues token prompts, row r from random stream `keys[r]`.
pub trait Continuer {
    /// The new tokens of each row.
    fn continue_rows(&self, prompts: &[Vec<u32>], keys: &[u64]) -> Result<Vec<Vec<u32>>>;
}

/// The policy's sampler as a [`Continuer`], `rows` prompts per batch.
pub struct PolicyContinuer<'a, B: Backend> {
    /// The policy.
    pub policy: &'a Policy<B>,
    /// Temperature and length limit.
    pub spec: SampleSpec,
    /// Rows per batch.
    pub rows: usize,
    /// Where the policy lives.
    pub device: B::Device,
}

impl<B: Backend> Continuer for PolicyContinuer<'_, B> {
    fn continue_rows(&self, prompts: &[Vec<u32>], keys: &[u64]) -> Result<Vec<Vec<u32>>> {
        let mut out = Vec::with_capacity(prompts.len());
        for (p, k) in prompts
            .chunks(self.rows.max(1))
            .zip(keys.chunks(self.rows.max(1)))
        {
            out.extend(sample(self.policy, p, k, self.spec, &self.device)?);
        }
        Ok(out)
    }
}

/// Monte Carlo settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct McSpec {
    /// Continuations per step (16 in VisualPRM400K).
    pub continuations: u32,
    /// Stop sampling a rollout after its first zero score.
    pub early_stop: bool,
}

impl Default for McSpec {
    fn default() -> Self {
        McSpec {
            continuations: 16,
            early_stop: true,
        }
    }
}

/// One sampled rollout of a problem, parsed and verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// `<bos>question?` and what the policy wrote after it.
    pub tokens: Vec<u32>,
    /// Index in `tokens` of each step's `<step>` token.
    pub step_ends: Vec<usize>,
    /// Each step's text.
    pub steps: Vec<String>,
    /// The final answer, when the rollout ended in `<eos>` after an integer answer.
    pub answer: Option<i64>,
    /// The verifier's view.
    pub check: TraceCheck,
}

/// The prompt of `problem`: `<bos>question?`.
pub fn prompt(problem: &Problem) -> Result<Vec<u32>> {
    let mut p = vec![BOS];
    p.extend(encode(&format!("{}?", problem.question))?);
    Ok(p)
}

/// The final answer of a finished sequence (`<eos>` last), else `None`.
fn final_answer(tokens: &[u32]) -> Result<Option<i64>> {
    if tokens.last() != Some(&EOS) {
        return Ok(None);
    }
    Ok(split_trace(&decode(tokens)?).and_then(|(_, _, a)| a))
}

/// Parses the sequence `tokens` (prompt included) of a rollout of `problem`; `None` when it has
/// no step.
pub fn parse_rollout(problem: &Problem, tokens: Vec<u32>) -> Result<Option<Rollout>> {
    let step_ends: Vec<usize> = (0..tokens.len()).filter(|&i| tokens[i] == STEP).collect();
    if step_ends.is_empty() {
        return Ok(None);
    }
    let text = decode(&tokens)?;
    let Some((_, steps, _)) = split_trace(&text) else {
        return Ok(None);
    };
    // split_trace drops empty pieces; a rollout whose steps are empty text is not a solution
    if steps.len() != step_ends.len() {
        return Ok(None);
    }
    let answer = final_answer(&tokens)?;
    let check = check(problem, &steps, answer);
    Ok(Some(Rollout {
        steps: steps.iter().map(|s| s.to_string()).collect(),
        tokens,
        step_ends,
        answer,
        check,
    }))
}

/// Per-step MC counts of one rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McCounts {
    /// Continuations that reached the correct answer, per step.
    pub correct: Vec<u32>,
    /// Continuations sampled, per step (0 after an early stop).
    pub total: Vec<u32>,
}

/// Annotates `rollouts` (each with its problem and a stable id for its random streams) in rounds.
pub fn mc_annotate(
    rollouts: &[(&Problem, &Rollout, u64)],
    continuer: &dyn Continuer,
    spec: McSpec,
    seed: u64,
) -> Result<Vec<McCounts>> {
    if spec.continuations == 0 {
        return Err(Error::invalid(
            "MC annotation needs at least one continuation",
        ));
    }
    let n = spec.continuations as usize;
    let mut out: Vec<McCounts> = rollouts
        .iter()
        .map(|(_, r, _)| McCounts {
            correct: vec![0; r.steps.len()],
            total: vec![0; r.steps.len()],
        })
        .collect();
    let mut alive: Vec<bool> = vec![true; rollouts.len()];
    let longest = rollouts
        .iter()
        .map(|(_, r, _)| r.steps.len())
        .max()
        .unwrap_or(0);
    for j in 0..longest {
        let members: Vec<usize> = (0..rollouts.len())
            .filter(|&i| alive[i] && j < rollouts[i].1.steps.len())
            .collect();
        let mut prompts = Vec::with_capacity(members.len() * n);
        let mut keys = Vec::with_capacity(members.len() * n);
        for &i in &members {
            let (_, r, id) = rollouts[i];
            let prefix = &r.tokens[..=r.step_ends[j]];
            let base = derive_seed(seed, MC_TAG, id);
            for c in 0..n {
                prompts.push(prefix.to_vec());
                keys.push(derive_seed(base, j as u64, c as u64));
            }
        }
        let continued = continuer.continue_rows(&prompts, &keys)?;
        for (slot, &i) in members.iter().enumerate() {
            let (problem, _, _) = rollouts[i];
            let mut k = 0;
            for c in 0..n {
                let row = slot * n + c;
                let mut full = prompts[row].clone();
                full.extend(&continued[row]);
                if final_answer(&full)? == Some(problem.answer()) {
                    k += 1;
                }
            }
            out[i].correct[j] = k;
            out[i].total[j] = spec.continuations;
            if spec.early_stop && k == 0 {
                alive[i] = false;
            }
        }
    }
    Ok(out)
}

/// The policy's final hidden state at every step end of `rollout`, [steps][width].
pub fn step_features<B: Backend>(
    policy: &Policy<B>,
    rollout: &Rollout,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>> {
    use burn::tensor::{Int, Tensor, TensorData};
    let t = rollout.tokens.len();
    let ids: Vec<i64> = rollout.tokens.iter().map(|&x| i64::from(x)).collect();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, t]), device);
    let (_, hidden) = policy.forward(tokens)?;
    let w = policy.spec().width;
    let h: Vec<f32> = hidden
        .into_data()
        .convert::<f32>()
        .into_vec()
        .expect("f32 hidden states");
    Ok(rollout
        .step_ends
        .iter()
        .map(|&e| h[e * w..(e + 1) * w].to_vec())
        .collect())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::super::tokens::trace_text;
    use super::*;

    fn chain() -> Problem {
        super::super::problems::chain_fixture()
    }

    fn tokens_of(text: &str) -> Vec<u32> {
        let mut t = vec![BOS];
        t.extend(encode(text).unwrap());
        t.push(EOS);
        t
    }

    /// Finishes with the right answer when the prefix is on track and key % 4 != 0, else with a
    /// wrong one; records every key it was given.
    struct Script {
        problem: Problem,
        keys: RefCell<Vec<u64>>,
    }

    impl Continuer for Script {
        fn continue_rows(&self, prompts: &[Vec<u32>], keys: &[u64]) -> Result<Vec<Vec<u32>>> {
            self.keys.borrow_mut().extend(keys);
            Ok(prompts
                .iter()
                .zip(keys)
                .map(|(p, &k)| {
                    let text = decode(p).unwrap();
                    let (_, steps, _) = split_trace(&text).unwrap();
                    let c = check(&self.problem, &steps, None);
                    let on_track = c.steps.last().unwrap().on_track;
                    let answer = if on_track && !k.is_multiple_of(4) {
                        self.problem.answer()
                    } else {
                        -1
                    };
                    let mut t = encode(&format!("#{answer}")).unwrap();
                    t.push(EOS);
                    t
                })
                .collect())
        }
    }

    #[test]
    fn rollouts_parse_into_steps_answers_and_verdicts() {
        let p = chain();
        let good = trace_text("C:17+5*3-4", &p.solution(), 62);
        let r = parse_rollout(&p, tokens_of(&good)).unwrap().unwrap();
        assert_eq!(r.steps, p.solution());
        assert_eq!(r.answer, Some(62));
        assert!(r.check.answer_correct);
        assert_eq!(r.step_ends.len(), 3);
        assert!(r.step_ends.iter().all(|&e| r.tokens[e] == STEP));
        // no <eos>: no answer
        let mut cut = tokens_of(&good);
        cut.pop();
        assert_eq!(parse_rollout(&p, cut).unwrap().unwrap().answer, None);
        // no step at all
        assert!(
            parse_rollout(&p, tokens_of("C:17+5*3-4?#62"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn mc_scores_count_correct_continuations_and_stop_after_a_zero() {
        let p = chain();
        let script = Script {
            problem: p.clone(),
            keys: RefCell::new(Vec::new()),
        };
        let good = parse_rollout(&p, tokens_of("C:17+5*3-4?17+5=22;22*3=66;66-4=62;#62"))
            .unwrap()
            .unwrap();
        // a slip at step 2 carried forward: steps 2 and 3 are off track
        let bad = parse_rollout(&p, tokens_of("C:17+5*3-4?17+5=22;22*3=67;67-4=63;#63"))
            .unwrap()
            .unwrap();
        let spec = McSpec::default();
        let rollouts = [(&p, &good, 0u64), (&p, &bad, 1u64)];
        let counts = mc_annotate(&rollouts, &script, spec, 5).unwrap();
        let keys = script.keys.borrow().clone();
        // every step of `good`, then `bad`'s first two steps (it stops after its zero)
        assert_eq!(keys.len(), 16 * (3 + 2));
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
        // the expected counts: on-track prefixes succeed for keys ≢ 0 mod 4
        let base = |id| derive_seed(5, MC_TAG, id);
        let expect = |id: u64, j: u64| {
            (0..16)
                .filter(|&c| !derive_seed(base(id), j, c).is_multiple_of(4))
                .count() as u32
        };
        assert_eq!(
            counts[0].correct,
            [expect(0, 0), expect(0, 1), expect(0, 2)]
        );
        assert_eq!(counts[0].total, [16, 16, 16]);
        assert_eq!(counts[1].correct, [expect(1, 0), 0, 0]);
        assert_eq!(counts[1].total, [16, 16, 0]);
        // without early stop the third step is sampled too (and scores 0)
        let all = McSpec {
            early_stop: false,
            ..spec
        };
        let counts = mc_annotate(&rollouts, &script, all, 5).unwrap();
        assert_eq!(counts[1].total, [16, 16, 16]);
        assert!(
            mc_annotate(
                &rollouts,
                &script,
                McSpec {
                    continuations: 0,
                    ..spec
                },
                5
            )
            .is_err()
        );
    }
}
