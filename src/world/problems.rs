//! Procedurally generated multi-step integer problems: four sources that differ in how hard each
//! step is to get right, each with a per-problem difficulty knob.
//!
//! Every problem is a start value v₀ and a plan of K operations (∘ₖ, bₖ); its values are
//! vₖ = vₖ₋₁ ∘ₖ bₖ (modulo m for the modular source) and its answer is v_K. A solution writes one
//! step per operation as `a∘b=c`, so every step is checkable on its own (see [`super::verify`]).
//!
//! | source | question | steps | what makes it hard |
//! |---|---|---|---|
//! | `chain` | `C:17+5*3-4` (left to right) | one per operation, 2–6 | carries, products of two-digit numbers |
//! | `modular` | `M13:4*5+7*3` (every result mod 13) | one per operation, 2–5 | reducing mod m |
//! | `equation` | `E:3(x+4)+5=26` or `E:3x+5=26` | undo the outer operations, 2–3 | subtraction and exact division |
//! | `list` | `L:[3,8,2,7]` (the sum) | running sums, 2–6 | long chains of two-digit additions |
//!
//! Difficulty d ∈ [0, 1] sets the number of steps and the size of the operands; a corpus draws d
//! uniformly from its source's range ([`DifficultyRange`]), so the problems of one source spread
//! from easy to hard.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::sim::rng::keyed;

/// The key kind of problem streams (clear of the simulator's stream kinds).
const PROBLEM_STREAM: u64 = 0x574F_0001;

/// Where a problem comes from: its `data_source` in the annotation files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Chained +, − and × evaluated left to right.
    Chain,
    /// +, − and × modulo a small prime.
    Modular,
    /// A linear equation in x with an integer solution, solved by undoing its operations.
    Equation,
    /// The sum of a list, by running sums.
    List,
}

impl Source {
    /// Every source, in the order corpora list them.
    pub const ALL: [Source; 4] = [
        Source::Chain,
        Source::Modular,
        Source::Equation,
        Source::List,
    ];

    /// The source's name (`data_source`, annotation file stem).
    pub fn name(self) -> &'static str {
        match self {
            Source::Chain => "chain",
            Source::Modular => "modular",
            Source::Equation => "equation",
            Source::List => "list",
        }
    }

    /// The source called `name`.
    pub fn from_name(name: &str) -> Result<Source> {
        Source::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown problem source {name:?} (expected chain, modular, equation or list)"
                ))
            })
    }

    fn index(self) -> u64 {
        self as u64
    }
}

/// One operation of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// a + b.
    Add,
    /// a − b.
    Sub,
    /// a × b.
    Mul,
    /// a ÷ b, exact (plans only divide where the division is exact).
    Div,
}

impl Op {
    /// The operator's character in step text.
    pub fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
        }
    }

    /// The operator written as `c`.
    pub fn from_symbol(c: char) -> Option<Op> {
        match c {
            '+' => Some(Op::Add),
            '-' => Some(Op::Sub),
            '*' => Some(Op::Mul),
            '/' => Some(Op::Div),
            _ => None,
        }
    }

    /// a ∘ b, reduced into [0, m) under a modulus; `None` for an inexact or zero division and on
    /// overflow (so a wrong claim never panics the verifier).
    pub fn apply(self, a: i64, b: i64, modulus: Option<i64>) -> Option<i64> {
        let v = match self {
            Op::Add => a.checked_add(b)?,
            Op::Sub => a.checked_sub(b)?,
            Op::Mul => a.checked_mul(b)?,
            Op::Div => {
                if b == 0 || a.checked_rem(b)? != 0 {
                    return None;
                }
                a / b
            }
        };
        Some(match modulus {
            Some(m) => v.rem_euclid(m),
            None => v,
        })
    }
}

/// A problem: its question text, start value, plan and (modular source) modulus.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The source.
    pub source: Source,
    /// The question as the policy reads it, e.g. `C:17+5*3-4`.
    pub question: String,
    /// v₀.
    pub start: i64,
    /// The K operations, in order.
    pub plan: Vec<(Op, i64)>,
    /// Every value is reduced mod m (modular source only).
    pub modulus: Option<i64>,
    /// The difficulty the problem was drawn at, in [0, 1].
    pub difficulty: f64,
}

impl Problem {
    /// v₀, v₁, …, v_K.
    pub fn values(&self) -> Vec<i64> {
        let mut v = vec![self.start];
        for &(op, b) in &self.plan {
            let last = *v.last().expect("starts with v0");
            v.push(
                op.apply(last, b, self.modulus)
                    .expect("plans are built so that every operation is exact"),
            );
        }
        v
    }

    /// v_K.
    pub fn answer(&self) -> i64 {
        *self.values().last().expect("at least v0")
    }

    /// The correct solution's steps, `a∘b=c` each.
    pub fn solution(&self) -> Vec<String> {
        let v = self.values();
        self.plan
            .iter()
            .enumerate()
            .map(|(k, &(op, b))| step_text(v[k], op, b, v[k + 1]))
            .collect()
    }
}

/// The text of a step: `a∘b=c`.
pub fn step_text(a: i64, op: Op, b: i64, c: i64) -> String {
    format!("{a}{}{b}={c}", op.symbol())
}

/// The range a source's per-problem difficulty is drawn from, uniformly.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DifficultyRange {
    /// Lowest difficulty, in [0, 1].
    pub lo: f64,
    /// Highest difficulty, in [lo, 1].
    pub hi: f64,
}

impl DifficultyRange {
    /// The whole range.
    pub const FULL: DifficultyRange = DifficultyRange { lo: 0.0, hi: 1.0 };

    /// Checks 0 ≤ lo ≤ hi ≤ 1.
    pub fn check(&self) -> Result<()> {
        if (0.0..=1.0).contains(&self.lo) && (self.lo..=1.0).contains(&self.hi) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "a difficulty range needs 0 <= lo <= hi <= 1; got [{}, {}]",
                self.lo, self.hi
            )))
        }
    }
}

/// Problem `index` of `source` under `seed`: a function of those three and the range only (its
/// own random stream), so problems can be generated in any order or in parallel.
pub fn generate(source: Source, seed: u64, index: u64, range: DifficultyRange) -> Result<Problem> {
    range.check()?;
    let mut rng = keyed(seed, PROBLEM_STREAM, source.index(), index);
    let difficulty = range.lo + (range.hi - range.lo) * rng.random::<f64>();
    Ok(match source {
        Source::Chain => chain(&mut rng, difficulty),
        Source::Modular => modular(&mut rng, difficulty),
        Source::Equation => equation(&mut rng, difficulty),
        Source::List => list(&mut rng, difficulty),
    })
}

/// 2 + round(span·d) steps.
fn steps_for(d: f64, span: f64) -> usize {
    2 + (span * d).round() as usize
}

/// The largest operand at difficulty d: one digit below `split`, two digits above.
fn operand_max(d: f64, split: f64) -> i64 {
    if d < split { 9 } else { 99 }
}

fn chain(rng: &mut ChaCha8Rng, d: f64) -> Problem {
    let k = steps_for(d, 4.0);
    let top = operand_max(d, 0.4);
    let start = rng.random_range(1..=top);
    let mut value = start;
    let mut plan = Vec::with_capacity(k);
    let mut question = format!("C:{start}");
    for _ in 0..k {
        let mut op = [Op::Add, Op::Sub, Op::Mul][rng.random_range(0..3)];
        // Products take a one-digit factor, and stop once values reach four digits, so that
        // every value stays a short token sequence.
        let b = match op {
            Op::Mul if value.abs() < 1000 => rng.random_range(2..=9),
            Op::Mul => {
                op = Op::Sub;
                rng.random_range(1..=top)
            }
            _ => rng.random_range(1..=top),
        };
        value = op.apply(value, b, None).expect("small values");
        plan.push((op, b));
        question.push(op.symbol());
        question.push_str(&b.to_string());
    }
    Problem {
        source: Source::Chain,
        question,
        start,
        plan,
        modulus: None,
        difficulty: d,
    }
}

fn modular(rng: &mut ChaCha8Rng, d: f64) -> Problem {
    const PRIMES: [i64; 6] = [7, 11, 13, 17, 19, 23];
    let m = PRIMES[((d * PRIMES.len() as f64) as usize).min(PRIMES.len() - 1)];
    let k = steps_for(d, 3.0);
    let start = rng.random_range(1..m);
    let mut plan = Vec::with_capacity(k);
    let mut question = format!("M{m}:{start}");
    for _ in 0..k {
        let op = [Op::Add, Op::Sub, Op::Mul][rng.random_range(0..3)];
        let b = rng.random_range(2..m);
        plan.push((op, b));
        question.push(op.symbol());
        question.push_str(&b.to_string());
    }
    Problem {
        source: Source::Modular,
        question,
        start: start.rem_euclid(m),
        plan,
        modulus: Some(m),
        difficulty: d,
    }
}

fn equation(rng: &mut ChaCha8Rng, d: f64) -> Problem {
    let top = operand_max(d, 0.5);
    let a = rng.random_range(2..=if d < 0.5 { 5 } else { 12 });
    let x = rng.random_range(1..=top);
    let b = rng.random_range(1..=top);
    let c = rng.random_range(1..=top);
    // Nested form a(x + b) + c = rhs, three steps, from difficulty 0.6 on.
    let (question, start, plan) = if d >= 0.6 {
        let rhs = a * (x + b) + c;
        (
            format!("E:{a}(x+{b})+{c}={rhs}"),
            rhs,
            vec![(Op::Sub, c), (Op::Div, a), (Op::Sub, b)],
        )
    } else {
        let rhs = a * x + b;
        (
            format!("E:{a}x+{b}={rhs}"),
            rhs,
            vec![(Op::Sub, b), (Op::Div, a)],
        )
    };
    Problem {
        source: Source::Equation,
        question,
        start,
        plan,
        modulus: None,
        difficulty: d,
    }
}

fn list(rng: &mut ChaCha8Rng, d: f64) -> Problem {
    let len = 1 + steps_for(d, 4.0);
    let top = operand_max(d, 0.3);
    let items: Vec<i64> = (0..len).map(|_| rng.random_range(1..=top)).collect();
    let question = format!(
        "L:[{}]",
        items
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    Problem {
        source: Source::List,
        question,
        start: items[0],
        plan: items[1..].iter().map(|&b| (Op::Add, b)).collect(),
        modulus: None,
        difficulty: d,
    }
}

/// The chain problem `C:17+5*3-4` (answer 62), the fixture of the world's tests.
#[cfg(test)]
pub(crate) fn chain_fixture() -> Problem {
    Problem {
        source: Source::Chain,
        question: "C:17+5*3-4".into(),
        start: 17,
        plan: vec![(Op::Add, 5), (Op::Mul, 3), (Op::Sub, 4)],
        modulus: None,
        difficulty: 0.5,
    }
}

/// The modular problem `M13:4*5+7` (answer 1), the world's other test fixture.
#[cfg(test)]
pub(crate) fn modular_fixture() -> Problem {
    Problem {
        source: Source::Modular,
        question: "M13:4*5+7".into(),
        start: 4,
        plan: vec![(Op::Mul, 5), (Op::Add, 7)],
        modulus: Some(13),
        difficulty: 0.3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_and_solutions_read_as_documented() {
        let p = chain_fixture();
        assert_eq!(p.solution(), ["17+5=22", "22*3=66", "66-4=62"]);
        assert_eq!(p.answer(), 62);
        let m = modular_fixture();
        assert_eq!(m.solution(), ["4*5=7", "7+7=1"]);
    }

    #[test]
    fn every_source_plans_exact_steps_and_spreads_with_difficulty() {
        for source in Source::ALL {
            let mut steps = (usize::MAX, 0);
            for i in 0..400 {
                let p = generate(source, 5, i, DifficultyRange::FULL).unwrap();
                assert!((0.0..=1.0).contains(&p.difficulty));
                // values() panics on an inexact plan; the answer is the last step's result
                let sol = p.solution();
                assert!(sol.last().unwrap().ends_with(&format!("={}", p.answer())));
                assert!(p.question.starts_with(&source.name()[..1].to_uppercase()));
                steps = (steps.0.min(sol.len()), steps.1.max(sol.len()));
                if let Some(m) = p.modulus {
                    assert!(p.values().iter().all(|v| (0..m).contains(v)));
                }
            }
            assert!(steps.0 == 2 && steps.1 >= 3, "{source:?}: {steps:?}");
            assert_eq!(Source::from_name(source.name()).unwrap(), source);
        }
        assert!(Source::from_name("algebra").is_err());
    }

    #[test]
    fn a_problem_is_a_function_of_seed_source_and_index() {
        let a = generate(Source::Equation, 9, 17, DifficultyRange::FULL).unwrap();
        let b = generate(Source::Equation, 9, 17, DifficultyRange::FULL).unwrap();
        let c = generate(Source::Equation, 9, 18, DifficultyRange::FULL).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let easy = DifficultyRange { lo: 0.0, hi: 0.1 };
        assert!(generate(Source::Chain, 1, 0, easy).unwrap().plan.len() == 2);
        assert!(generate(Source::Chain, 1, 0, DifficultyRange { lo: 0.5, hi: 0.2 }).is_err());
    }
}
