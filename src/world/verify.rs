//! The exact verifier: each step's correctness, the prefix's, and the final answer's.
//!
//! A trace is a list of step texts `a∘b=c` and a final answer. The verifier reads it as a reader
//! would, carrying the latest claimed value `cur` and the number `k` of planned operations done:
//!
//! * a step **follows** the plan when a = cur and (∘, b) is operation k + 1; then k grows by one;
//! * a step **redoes** the last operation when a is the value it started from and (∘, b) is
//!   operation k (the correction after a slip: `17+5=23;17+5=22`); k stays;
//! * any other step (an unparsable one included) is **off plan**; k stays.
//!
//! Every parsed step sets cur = c. Per step the verifier reports
//! * `arithmetic`: c = a ∘ b (mod m for the modular source), whatever a and b are;
//! * `on_track`: the prefix through this step is right, cur = v_k (the value k correct steps
//!   reach; two errors that cancel put a trace back on track);
//! * `correct`: the step's label, `follows or redoes` and `arithmetic` and `on_track`. A step that
//!   computes correctly from an earlier wrong value is not correct (it is not on track), and a
//!   correct redo after a slip is.
//!
//! The final answer is correct when it equals v_K, however the trace got there (a lucky answer
//! counts, as Monte Carlo annotation counts it).

use super::problems::{Op, Problem};

/// What the verifier says of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepCheck {
    /// The text parsed as `a∘b=c`.
    pub parsed: bool,
    /// c = a ∘ b.
    pub arithmetic: bool,
    /// The step applies the next planned operation to the current value.
    pub follows: bool,
    /// The step redoes the last planned operation from the value before it.
    pub redoes: bool,
    /// The prefix through this step is right.
    pub on_track: bool,
    /// The step's label: (follows or redoes) and arithmetic and on track.
    pub correct: bool,
}

/// What the verifier says of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceCheck {
    /// One per step.
    pub steps: Vec<StepCheck>,
    /// Planned operations completed by the end.
    pub completed: usize,
    /// The final answer equals v_K.
    pub answer_correct: bool,
}

/// A step's text split into (a, ∘, b, c); `None` when it is not of that form.
pub fn parse_step(text: &str) -> Option<(i64, Op, i64, i64)> {
    let (lhs, c) = text.split_once('=')?;
    // The operator is the first operator character after a's optional sign.
    let body = lhs.strip_prefix('-').unwrap_or(lhs);
    let at = body.find(|ch: char| Op::from_symbol(ch).is_some())?;
    let sign_len = lhs.len() - body.len();
    let a = parse_int(&lhs[..sign_len + at])?;
    let op = Op::from_symbol(body[at..].chars().next()?)?;
    let b = parse_int(&body[at + 1..])?;
    Some((a, op, b, parse_int(c)?))
}

/// An optionally negative decimal integer without leading `+`, spaces or empty digits.
fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 12 {
        return None;
    }
    s.parse().ok()
}

/// Checks `steps` and `answer` (`None`: no answer was given) against `problem`.
pub fn check(problem: &Problem, steps: &[&str], answer: Option<i64>) -> TraceCheck {
    let values = problem.values();
    let plan = &problem.plan;
    let mut k = 0usize;
    let mut cur = problem.start;
    // The value the last followed step started from (what a redo must start from).
    let mut before_last: Option<i64> = None;
    let mut out = Vec::with_capacity(steps.len());
    for text in steps {
        let Some((a, op, b, c)) = parse_step(text) else {
            out.push(StepCheck {
                parsed: false,
                arithmetic: false,
                follows: false,
                redoes: false,
                on_track: false,
                correct: false,
            });
            continue;
        };
        let arithmetic = op.apply(a, b, problem.modulus) == Some(c);
        let follows = a == cur && k < plan.len() && plan[k] == (op, b);
        let redoes = !follows && k > 0 && before_last == Some(a) && plan[k - 1] == (op, b);
        if follows {
            before_last = Some(cur);
            k += 1;
        }
        cur = c;
        let on_track = cur == values[k];
        out.push(StepCheck {
            parsed: true,
            arithmetic,
            follows,
            redoes,
            on_track,
            correct: (follows || redoes) && arithmetic && on_track,
        });
    }
    TraceCheck {
        steps: out,
        completed: k,
        answer_correct: answer == Some(values[plan.len()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> Problem {
        super::super::problems::chain_fixture()
    }

    fn labels(c: &TraceCheck) -> Vec<bool> {
        c.steps.iter().map(|s| s.correct).collect()
    }

    #[test]
    fn steps_parse_with_signs_and_refuse_anything_else() {
        assert_eq!(parse_step("17+5=22"), Some((17, Op::Add, 5, 22)));
        assert_eq!(parse_step("-4-9=-13"), Some((-4, Op::Sub, 9, -13)));
        assert_eq!(parse_step("66/3=22"), Some((66, Op::Div, 3, 22)));
        for bad in [
            "", "17+5", "17+=22", "+5=22", "17+5=2 2", "a+5=3", "17+5=", "1+2+3=6", "--4+1=-3",
        ] {
            assert_eq!(parse_step(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_correct_solution_is_correct_at_every_step() {
        let p = chain();
        let sol = p.solution();
        let steps: Vec<&str> = sol.iter().map(String::as_str).collect();
        let c = check(&p, &steps, Some(62));
        assert_eq!(labels(&c), [true, true, true]);
        assert!(c.steps.iter().all(|s| s.follows && s.on_track));
        assert_eq!(c.completed, 3);
        assert!(c.answer_correct);
        assert!(!check(&p, &steps, Some(61)).answer_correct);
        assert!(!check(&p, &steps, None).answer_correct);
    }

    #[test]
    fn a_slip_propagates_until_a_redo_corrects_it() {
        let p = chain();
        // slip, then carried forward: arithmetic right, not on track, not correct
        let c = check(&p, &["17+5=23", "23*3=69", "69-4=65"], Some(65));
        assert_eq!(labels(&c), [false, false, false]);
        assert_eq!(
            c.steps.iter().map(|s| s.arithmetic).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert!(!c.answer_correct);
        // slip, redo, rest: the redo and what follows are correct
        let c = check(&p, &["17+5=23", "17+5=22", "22*3=66", "66-4=62"], Some(62));
        assert_eq!(labels(&c), [false, true, true, true]);
        assert!(c.steps[1].redoes && !c.steps[1].follows);
        assert_eq!(c.completed, 3);
        // two errors that cancel put the trace back on track: the step after them is correct
        let c = check(&p, &["17+5=23", "23*3=66", "66-4=62"], Some(62));
        assert_eq!(labels(&c), [false, false, true]);
        assert!(c.steps[1].on_track && !c.steps[1].arithmetic);
        assert!(c.answer_correct);
        // off plan and unparsable steps
        let c = check(&p, &["17*5=85", "garbage", "17+5=22"], None);
        assert_eq!(labels(&c), [false, false, false]);
        assert!(!c.steps[1].parsed);
    }

    #[test]
    fn modular_steps_are_checked_mod_m() {
        let p = super::super::problems::modular_fixture();
        let c = check(&p, &["4*5=7", "7+7=1"], Some(1));
        assert_eq!(labels(&c), [true, true]);
        let c = check(&p, &["4*5=20", "20+7=27"], Some(27));
        assert_eq!(labels(&c), [false, false]);
        assert!(!c.steps[0].arithmetic);
    }
}
