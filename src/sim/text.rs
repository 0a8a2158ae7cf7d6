//! Synthetic question and step text.
//!
//! The text carries no signal (the features do); it exists so that the annotation files look and
//! measure like the real ones: prompted and original questions, an answer, steps of about 28 words
//! on average (Table 1) that never contain a blank line (so `response.split("\n\n")` gives the
//! steps back), and a last step that is usually `Final answer: X`. Non-final steps have an exact,
//! randomly drawn word count: sentences from a per-domain template bank are added while they fit
//! and short fillers make up the rest, so the corpus-wide mean is controlled exactly.

use rand_chacha::ChaCha8Rng;

use super::preset::{AnswerKind, Domain};
use super::rng::{normal, uniform};

/// The instruction template the VisualPRM generator wraps questions in (see the formats notes,
/// §1.2); the original question follows it.
pub const PROMPT_PREFIX: &str = "<image>\nYour task is to answer the question below. Give step by step reasoning before you answer, and when you're ready to answer, please use the format \"Final answer: ..\"\n\nQuestion:\n\n";

/// Words of a final step on average: `Final answer: X` (about 3 words), preceded in 15% of
/// rollouts by `Thus, the answer is X.` (about 5 more).
const FINAL_STEP_WORDS: f64 = 3.8;
/// Sentences that fail to fit a step's remaining words before fillers take over.
const FIT_ATTEMPTS: usize = 4;

struct Lexicon {
    things: &'static [&'static str],
    properties: &'static [&'static str],
    units: &'static [&'static str],
    phrases: &'static [&'static str],
}

fn lexicon(domain: Domain) -> &'static Lexicon {
    match domain {
        Domain::Geometry => &Lexicon {
            things: &[
                "triangle ABC",
                "angle ABC",
                "segment AB",
                "side BC",
                "circle O",
                "chord CD",
                "radius OA",
                "arc AB",
                "quadrilateral ABCD",
                "altitude AD",
                "diagonal AC",
                "the base angle at B",
                "the inscribed angle ACB",
                "line l",
                "the tangent at P",
                "the central angle AOB",
            ],
            properties: &["measure", "length", "area", "perimeter", "height"],
            units: &["degrees", "cm", "units", "square units"],
            phrases: &["isosceles", "parallel", "congruent", "similar"],
        },
        Domain::Function => &Lexicon {
            things: &[
                "the curve",
                "the function f(x)",
                "the graph",
                "the vertex",
                "the y-intercept",
                "the x-intercept",
                "the vertical asymptote",
                "the maximum point",
                "the minimum point",
                "the point (1, 2)",
                "the interval from 0 to 2",
                "the symmetry axis",
            ],
            properties: &["value", "slope", "amplitude", "period", "coordinate"],
            units: &["units", "radians", "steps"],
            phrases: &["increasing", "decreasing", "periodic", "odd", "even"],
        },
        Domain::Chart => &Lexicon {
            things: &[
                "the blue bar",
                "the red line",
                "the x-axis",
                "the y-axis",
                "the legend",
                "the tallest bar",
                "the 2019 value",
                "the slice for Asia",
                "the second column",
                "the trend line",
                "the highest point",
                "the last data point",
            ],
            properties: &["value", "height", "share", "count", "total"],
            units: &["percent", "units", "million", "points"],
            phrases: &[
                "Asia",
                "2019",
                "Germany",
                "Q3",
                "Dark Blue",
                "Medium Orchid",
            ],
        },
        Domain::Document => &Lexicon {
            things: &[
                "the header",
                "the total amount",
                "the invoice date",
                "the second paragraph",
                "the row for March",
                "the company name",
                "the address line",
                "the footnote",
                "the subtotal",
                "the caption",
                "the title",
                "the signature block",
            ],
            properties: &["value", "entry", "amount", "number", "count"],
            units: &["dollars", "items", "pages", "lines"],
            phrases: &[
                "ACME Corp",
                "March 3",
                "Total",
                "Chapter 2",
                "Smith",
                "24.50",
            ],
        },
        Domain::Scene => &Lexicon {
            things: &[
                "the red cube",
                "the large sphere",
                "the small cylinder",
                "the person on the left",
                "the dog",
                "the car in the background",
                "the metal object",
                "the green ball",
                "the table",
                "the window",
                "the bicycle",
                "the group of people",
            ],
            properties: &["count", "color", "size", "position", "number"],
            units: &["objects", "items", "people"],
            phrases: &["red", "two", "cat", "left", "wood", "tennis", "blue"],
        },
        Domain::Science => &Lexicon {
            things: &[
                "the food web",
                "the cell membrane",
                "the magnet",
                "the north pole",
                "the organism",
                "the diagram",
                "the arrow from A to B",
                "the producer",
                "the energy source",
                "the solution",
                "the plant",
                "the experiment",
            ],
            properties: &["role", "amount", "temperature", "direction", "mass"],
            units: &["grams", "degrees", "units", "joules"],
            phrases: &["producer", "attract", "evaporation", "mammal", "solid"],
        },
    }
}

/// Sentence templates; `{a}`, `{b}` are things, `{p}` a property, `{u}` a unit, `{x}`, `{y}`,
/// `{z}` numbers (`{z}` = x + y), `{h}` a phrase.
const SENTENCES: &[&str] = &[
    "Looking at {a}, we can see that its {p} is {x} {u}.",
    "The {p} of {a} equals {x} {u}, which we will use below.",
    "Comparing {a} with {b}, the difference in {p} is {y} {u}.",
    "Next, we consider {a} and relate it to {b}.",
    "From the image, {a} and {b} appear to share the same {p}.",
    "Adding {x} and {y} gives {z}, so the combined {p} is {z} {u}.",
    "Therefore the {p} of {b} must also be {z} {u}.",
    "We need to determine the {p} of {a} before answering the question.",
    "It follows that {a} has a {p} of about {y} {u}.",
    "Note that {a} is the key element in this question.",
    "Subtracting {y} from {z}, we obtain {x}, as expected.",
    "Let us check this against {b} to make sure the reasoning is consistent.",
    "The question asks about {a}, so we focus on its {p}.",
    "Since {a} is described as {h}, the same holds for {b}.",
    "This means that the {p} of {a} cannot exceed {z} {u}.",
    "In other words, {b} is {h} with respect to {a}.",
    "Reading the labels carefully, the {p} of {b} is given as {y} {u}.",
    "Using this relation, we can now compute the {p} of {a} directly.",
    "Observe that {a} lies next to {b} in the figure.",
    "So far we know the {p} of {a} and the {p} of {b}.",
];

/// Short sentences that pad a step to its exact word count, by length.
const FILLERS: &[&[&str]] = &[
    &[],
    &["Indeed.", "Clearly.", "Right.", "Good."],
    &["This holds.", "That checks.", "Noted here."],
    &["This is consistent.", "We note this.", "That seems right."],
    &["We keep this result.", "This matches the figure."],
    &["We will use this below.", "This agrees with the image."],
    &[
        "We will rely on this later.",
        "This is what the figure shows.",
    ],
    &[
        "We can move to the next part.",
        "This detail matters for the final answer.",
    ],
    &["Keeping this in mind, we continue the analysis."],
];

/// A question with its answer and a plausible wrong answer.
#[derive(Debug, Clone)]
pub struct QuestionText {
    /// The original question.
    pub question_orig: String,
    /// The ground-truth answer.
    pub answer: String,
    /// A wrong final answer a failed rollout ends with.
    pub wrong_answer: String,
}

impl QuestionText {
    /// The prompted form the policy saw.
    pub fn prompted(&self) -> String {
        format!("{PROMPT_PREFIX}{}", self.question_orig)
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[(uniform(rng) * items.len() as f64) as usize % items.len()]
}

fn number(rng: &mut ChaCha8Rng) -> u32 {
    2 + (uniform(rng) * 88.0) as u32
}

/// Draws a question of `domain` whose answer has `kind`.
pub fn question(domain: Domain, kind: AnswerKind, rng: &mut ChaCha8Rng) -> QuestionText {
    let lex = lexicon(domain);
    let a = pick(rng, lex.things);
    let b = pick(rng, lex.things);
    let p = pick(rng, lex.properties);
    match kind {
        AnswerKind::Choice => {
            let base = number(rng);
            let options: Vec<u32> = (0..4).map(|i| base + 3 * i).collect();
            let right = (uniform(rng) * 4.0) as usize % 4;
            let wrong = (right + 1 + (uniform(rng) * 3.0) as usize % 3) % 4;
            let letters = ["A", "B", "C", "D"];
            let choices: Vec<String> = options
                .iter()
                .zip(letters)
                .map(|(v, l)| format!("{l}. {v}"))
                .collect();
            QuestionText {
                question_orig: format!(
                    "As shown in the figure, what is the {p} of {a}? Choices: {}",
                    choices.join(" ")
                ),
                answer: letters[right].to_string(),
                wrong_answer: letters[wrong].to_string(),
            }
        }
        AnswerKind::YesNo => {
            let yes = uniform(rng) < 0.5;
            let (answer, wrong) = if yes { ("Yes", "No") } else { ("No", "Yes") };
            QuestionText {
                question_orig: format!("Is the {p} of {a} greater than that of {b}?"),
                answer: answer.into(),
                wrong_answer: wrong.into(),
            }
        }
        AnswerKind::Numeric => {
            let v = number(rng);
            let off = 1 + (uniform(rng) * 9.0) as u32;
            QuestionText {
                question_orig: format!("What is the {p} of {a}?"),
                answer: v.to_string(),
                wrong_answer: (v + off).to_string(),
            }
        }
        AnswerKind::Phrase => {
            let answer = pick(rng, lex.phrases);
            let mut wrong = pick(rng, lex.phrases);
            if wrong == answer {
                wrong = lex.phrases[(lex.phrases.iter().position(|&x| x == answer).unwrap_or(0)
                    + 1)
                    % lex.phrases.len()];
            }
            QuestionText {
                question_orig: format!("Which value is shown for {a}? Answer with a short phrase."),
                answer: answer.into(),
                wrong_answer: wrong.into(),
            }
        }
    }
}

/// Appends one rendered template sentence to `out`; returns its word count.
fn sentence(lex: &Lexicon, rng: &mut ChaCha8Rng, out: &mut String) -> usize {
    let template = pick(rng, SENTENCES);
    let x = number(rng);
    let y = number(rng);
    let start = out.len();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let slot = rest.as_bytes()[open + 1];
        match slot {
            b'a' | b'b' => out.push_str(pick(rng, lex.things)),
            b'p' => out.push_str(pick(rng, lex.properties)),
            b'u' => out.push_str(pick(rng, lex.units)),
            b'h' => out.push_str(pick(rng, lex.phrases)),
            b'x' => out.push_str(&x.to_string()),
            b'y' => out.push_str(&y.to_string()),
            _ => out.push_str(&(x + y).to_string()),
        }
        rest = &rest[open + 3..];
    }
    out.push_str(rest);
    out[start..].split_ascii_whitespace().count()
}

/// Appends fillers worth exactly `words` words (each preceded by a space).
fn pad(words: usize, rng: &mut ChaCha8Rng, out: &mut String) {
    let mut left = words;
    while left > 0 {
        let len = left.min(FILLERS.len() - 1);
        out.push(' ');
        out.push_str(pick(rng, FILLERS[len]));
        left -= len;
    }
}

/// Draws one step of exactly a random number of words around `mean_words`.
fn reasoning_step(lex: &Lexicon, mean_words: f64, spread: f64, rng: &mut ChaCha8Rng) -> String {
    // Log-normal lengths with the requested mean (clipped below at 4 words).
    let target = (mean_words * (spread * normal(rng) - spread * spread / 2.0).exp())
        .round()
        .clamp(4.0, 400.0) as usize;
    let mut out = String::with_capacity(target * 7);
    let mut words = 0;
    let mut trial = String::new();
    let mut misses = 0;
    while words < target && misses < FIT_ATTEMPTS {
        trial.clear();
        let n = sentence(lex, rng, &mut trial);
        if words + n > target {
            misses += 1;
            continue;
        }
        if words > 0 {
            out.push(' ');
        }
        out.push_str(&trial);
        words += n;
    }
    if words == 0 {
        // No sentence fitted: the fillers carry the whole step.
        pad(target, rng, &mut out);
        return out.trim_start().to_string();
    }
    pad(target - words, rng, &mut out);
    out
}

/// Mean words of a reasoning step so that the `steps` steps of `rollouts` rollouts average
/// `words_per_step`: every rollout ends with a short final step, and each of the
/// `single_step_rollouts` also carries one reasoning block inside that step.
pub fn reasoning_mean_words(
    words_per_step: f64,
    steps: usize,
    rollouts: usize,
    single_step_rollouts: usize,
) -> f64 {
    let reasoning_blocks = (steps - rollouts + single_step_rollouts).max(1) as f64;
    ((words_per_step * steps as f64 - FINAL_STEP_WORDS * rollouts as f64) / reasoning_blocks)
        .max(4.0)
}

/// The steps of one rollout: `n − 1` reasoning steps and a final step naming `final_answer`.
/// A one-step rollout puts its reasoning and the answer line in the same step.
pub fn rollout_steps(
    domain: Domain,
    n: usize,
    final_answer: &str,
    mean_words: f64,
    spread: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<String> {
    let lex = lexicon(domain);
    let mut steps: Vec<String> = (1..n)
        .map(|_| reasoning_step(lex, mean_words, spread, rng))
        .collect();
    let last = if n == 1 || uniform(rng) < 0.15 {
        let lead = if n == 1 {
            reasoning_step(lex, mean_words, spread, rng)
        } else {
            format!("Thus, the answer is {final_answer}.")
        };
        format!("{lead}\nFinal answer: {final_answer}")
    } else {
        format!("Final answer: {final_answer}")
    };
    steps.push(last);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::rng::{Stream, stream};

    #[test]
    fn reasoning_steps_have_the_drawn_mean_length() {
        let mut rng = stream(3, Stream::Text, 0, 0);
        let lex = lexicon(Domain::Geometry);
        let n = 4000;
        let total: usize = (0..n)
            .map(|_| {
                let s = reasoning_step(lex, 33.0, 0.45, &mut rng);
                assert!(!s.contains('\n') && !s.is_empty() && !s.starts_with(' '));
                s.split_ascii_whitespace().count()
            })
            .sum();
        let mean = total as f64 / n as f64;
        assert!((mean - 33.0).abs() < 0.6, "{mean}");
    }

    #[test]
    fn fillers_have_their_word_counts() {
        for (len, group) in FILLERS.iter().enumerate() {
            for f in *group {
                assert_eq!(f.split_ascii_whitespace().count(), len, "{f}");
            }
        }
    }

    #[test]
    fn steps_split_back_and_end_with_the_answer() {
        let mut rng = stream(3, Stream::Text, 0, 1);
        for kind in [
            AnswerKind::Choice,
            AnswerKind::YesNo,
            AnswerKind::Numeric,
            AnswerKind::Phrase,
        ] {
            for domain in [
                Domain::Chart,
                Domain::Document,
                Domain::Scene,
                Domain::Science,
            ] {
                let q = question(domain, kind, &mut rng);
                assert_ne!(q.answer, q.wrong_answer);
                assert!(q.prompted().ends_with(&q.question_orig));
                for n in [1, 2, 7] {
                    let steps = rollout_steps(domain, n, &q.answer, 30.0, 0.45, &mut rng);
                    assert_eq!(steps.len(), n);
                    let response = steps.join("\n\n");
                    assert_eq!(response.split("\n\n").count(), n);
                    assert!(steps[n - 1].ends_with(&format!("Final answer: {}", q.answer)));
                }
            }
        }
    }
}
