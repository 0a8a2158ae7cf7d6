//! The policy's training traces: correct solutions, and a controllable share with a slip that the
//! next step corrects.
//!
//! A slip writes a wrong result for one step; the next step redoes that step correctly and the
//! solution goes on (`17+5=23;17+5=22;22*3=66;…`). A policy trained on such traces learns that a
//! wrong step can be followed by its correction, so continuations sampled from a wrong prefix
//! sometimes recover: the paper's pseudo-positives (wrong steps with a nonzero MC score) arise
//! from that learned behaviour, not from a noise rate we set. Traces that carry a slip forward
//! are never shown; the policy's own sampling errors produce those.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::problems::{Problem, step_text};
use super::tokens::trace_text;

/// A training trace and where its slip is, if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingTrace {
    /// `question?steps;#answer`.
    pub text: String,
    /// Index of the slipped step (the correction is the step after it).
    pub slip: Option<usize>,
}

/// A wrong result near `c`: off by ±1, ±2 or ±10 (reduced mod m under a modulus), the kind of
/// slip arithmetic makes; never `c`, and never `a`, the step's own input (a result equal to its
/// input would read as a step that did nothing, and its correction as the next step).
pub fn slipped_value(a: i64, c: i64, modulus: Option<i64>, rng: &mut ChaCha8Rng) -> i64 {
    const OFFSETS: [i64; 6] = [1, -1, 2, -2, 10, -10];
    loop {
        let wrong = c + OFFSETS[rng.random_range(0..OFFSETS.len())];
        let wrong = match modulus {
            Some(m) => wrong.rem_euclid(m),
            None => wrong,
        };
        if wrong != c && wrong != a {
            return wrong;
        }
    }
}

/// The trace of `problem`: with probability `slip_rate` one uniformly chosen step slips and the
/// next step corrects it.
pub fn training_trace(problem: &Problem, slip_rate: f64, rng: &mut ChaCha8Rng) -> TrainingTrace {
    let values = problem.values();
    let mut steps = problem.solution();
    let slip = (rng.random::<f64>() < slip_rate).then(|| rng.random_range(0..steps.len()));
    if let Some(k) = slip {
        let (op, b) = problem.plan[k];
        let wrong = slipped_value(values[k], values[k + 1], problem.modulus, rng);
        steps.insert(k, step_text(values[k], op, b, wrong));
    }
    TrainingTrace {
        text: trace_text(&problem.question, &steps, problem.answer()),
        slip,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::super::problems::{DifficultyRange, Source, generate};
    use super::super::tokens::split_trace;
    use super::super::verify::check;
    use super::*;

    #[test]
    fn a_slipped_trace_verifies_as_one_wrong_step_then_a_correct_solution() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut slipped = 0;
        for source in Source::ALL {
            for i in 0..200 {
                let p = generate(source, 2, i, DifficultyRange::FULL).unwrap();
                let t = training_trace(&p, 0.5, &mut rng);
                let (q, steps, answer) = split_trace(&t.text).unwrap();
                assert_eq!(q, p.question);
                let c = check(&p, &steps, answer);
                assert!(c.answer_correct && c.completed == p.plan.len());
                let wrong: Vec<usize> = (0..steps.len()).filter(|&j| !c.steps[j].correct).collect();
                match t.slip {
                    None => assert!(wrong.is_empty(), "{}", t.text),
                    Some(k) => {
                        slipped += 1;
                        assert_eq!(wrong, [k], "{}", t.text);
                        assert!(c.steps[k + 1].redoes, "{}", t.text);
                    }
                }
            }
        }
        // 800 traces at rate 0.5
        assert!((330..=470).contains(&slipped), "{slipped}");
        let p = generate(Source::List, 2, 0, DifficultyRange::FULL).unwrap();
        assert_eq!(training_trace(&p, 0.0, &mut rng).slip, None);
    }
}
