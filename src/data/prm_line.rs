//! The converted PRM training line: `{"image": …, "conversations": [human, gpt]}`.
//!
//! The human turn is `"Question: {q}\nProcess: {step}<prm>\n\n{step}<prm>…"` and the gpt turn is
//! the label list. Two reference scripts build these lines with different rules, both reproduced
//! here byte for byte:
//!
//! * the BIS subset builder drops a whole rollout when any step is unusable;
//! * the full-data converter leaves out the unusable steps and keeps the rest.

use std::borrow::Cow;

use crate::data::pyjson::parse::{Value, parse};
use crate::data::pyjson::python::{py_float, py_str, py_strip, write_value};
use crate::data::pyjson::write::{write_f64, write_str};
use crate::error::{Error, Result};

/// Why a chosen rollout produced no output line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// `image` is missing or falsy.
    NoImage,
    /// `steps_with_score` is missing or empty (after leaving out bad steps, for the converter).
    NoSteps,
    /// A step's stripped text is empty.
    EmptyStepText,
    /// A step's text is not a string (the reference would crash on it).
    StepTextNotString,
    /// A step's score is missing or null.
    MissingScore,
    /// A step's score cannot be converted with `float()`.
    UnconvertibleScore,
    /// The question is a list or object (the reference would write its Python repr).
    QuestionNotText,
    /// A string holds an unpaired surrogate escape, which cannot be written as UTF-8.
    LoneSurrogate,
    /// The record is not an object or its step list is malformed.
    Malformed,
}

impl DropReason {
    /// A short description for reports.
    pub fn describe(self) -> &'static str {
        match self {
            DropReason::NoImage => "no image",
            DropReason::NoSteps => "no usable step",
            DropReason::EmptyStepText => "empty step text",
            DropReason::StepTextNotString => "step text is not a string",
            DropReason::MissingScore => "step without a score",
            DropReason::UnconvertibleScore => "non-numeric score",
            DropReason::QuestionNotText => "question is a list or object",
            DropReason::LoneSurrogate => "unpaired surrogate escape",
            DropReason::Malformed => "malformed record",
        }
    }
}

/// How the full-data converter labels a step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "labels", rename_all = "lowercase")]
pub enum ConvertLabels {
    /// `1.0 if score > threshold else 0.0`.
    Hard {
        /// τ (0 in the reference).
        threshold: f64,
    },
    /// `float(score)`.
    Soft,
}

/// Which reference script's rules to follow for unusable steps.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BadStepPolicy {
    DropRollout,
    SkipStep,
}

/// The BIS builder's `TO_PRM_LINE`: appends the line (no newline) or says why it is dropped.
pub fn bis_builder_line(rec: &Value<'_>, out: &mut String) -> std::result::Result<(), DropReason> {
    build(
        rec,
        ConvertLabels::Hard { threshold: 0.0 },
        BadStepPolicy::DropRollout,
        out,
    )
}

/// The full-data converter's line: unusable steps are left out; the rollout is dropped only when
/// no step remains or the image is missing.
pub fn converter_line(
    rec: &Value<'_>,
    labels: ConvertLabels,
    out: &mut String,
) -> std::result::Result<(), DropReason> {
    build(rec, labels, BadStepPolicy::SkipStep, out)
}

fn build(
    rec: &Value<'_>,
    labels: ConvertLabels,
    policy: BadStepPolicy,
    out: &mut String,
) -> std::result::Result<(), DropReason> {
    if !matches!(rec, Value::Object(_)) {
        return Err(DropReason::Malformed);
    }
    let image = match rec.get("image") {
        Some(v) if v.truthy() => v,
        _ => return Err(DropReason::NoImage),
    };
    let steps: &[Value<'_>] = match rec.get("steps_with_score") {
        Some(Value::Array(items)) => items,
        Some(v) if v.truthy() => return Err(DropReason::Malformed),
        _ => &[],
    };
    if steps.is_empty() {
        return Err(DropReason::NoSteps);
    }
    let mut texts: Vec<Cow<'_, str>> = Vec::with_capacity(steps.len());
    let mut values: Vec<f64> = Vec::with_capacity(steps.len());
    for step in steps {
        match step_parts(step) {
            Ok((text, score)) => {
                texts.push(text);
                values.push(match labels {
                    ConvertLabels::Hard { threshold } => {
                        if score > threshold {
                            1.0
                        } else {
                            0.0
                        }
                    }
                    ConvertLabels::Soft => score,
                });
            }
            Err(reason) => match (policy, reason) {
                (BadStepPolicy::DropRollout, _) => return Err(reason),
                // The converter skips empty or unscored steps but crashes on everything else.
                (BadStepPolicy::SkipStep, DropReason::EmptyStepText | DropReason::MissingScore) => {
                }
                (BadStepPolicy::SkipStep, _) => return Err(reason),
            },
        }
    }
    if texts.is_empty() {
        return Err(DropReason::NoSteps);
    }
    let question = question_text(rec)?;

    let mut human = String::with_capacity(
        question.len() + texts.iter().map(|t| t.len() + 7).sum::<usize>() + 24,
    );
    human.push_str("Question: ");
    human.push_str(&question);
    human.push_str("\nProcess: ");
    for (i, t) in texts.iter().enumerate() {
        if i > 0 {
            human.push_str("\n\n");
        }
        human.push_str(t);
        human.push_str("<prm>");
    }

    out.push_str("{\"image\": ");
    write_value(out, image).map_err(|_| DropReason::LoneSurrogate)?;
    out.push_str(", \"conversations\": [{\"from\": \"human\", \"value\": ");
    write_str(out, &human);
    out.push_str("}, {\"from\": \"gpt\", \"value\": [");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_f64(out, *v);
    }
    out.push_str("]}]}");
    Ok(())
}

/// A step's stripped text and its score, or why the step is unusable.
fn step_parts<'a>(step: &Value<'a>) -> std::result::Result<(Cow<'a, str>, f64), DropReason> {
    if !matches!(step, Value::Object(_)) {
        return Err(DropReason::Malformed);
    }
    let text: Cow<'a, str> = match step.get("step") {
        Some(Value::Str(s)) => {
            let decoded = s.decode().map_err(|_| DropReason::LoneSurrogate)?;
            match decoded {
                Cow::Borrowed(b) => Cow::Borrowed(py_strip(b)),
                Cow::Owned(o) => Cow::Owned(py_strip(&o).to_string()),
            }
        }
        Some(v) if v.truthy() => return Err(DropReason::StepTextNotString),
        _ => Cow::Borrowed(""),
    };
    let score = match step.get("score") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    };
    if text.is_empty() {
        return Err(DropReason::EmptyStepText);
    }
    let Some(score) = score else {
        return Err(DropReason::MissingScore);
    };
    let score = py_float(score).map_err(|_| DropReason::UnconvertibleScore)?;
    Ok((text, score))
}

/// `strip(str(first truthy of question_orig, question, ""))`.
fn question_text<'a>(rec: &Value<'a>) -> std::result::Result<Cow<'a, str>, DropReason> {
    let chosen = ["question_orig", "question"]
        .iter()
        .filter_map(|k| rec.get(k))
        .find(|v| v.truthy());
    let Some(v) = chosen else {
        return Ok(Cow::Borrowed(""));
    };
    let text = py_str(v)
        .ok_or(DropReason::QuestionNotText)?
        .map_err(|_| DropReason::LoneSurrogate)?;
    Ok(match text {
        Cow::Borrowed(b) => Cow::Borrowed(py_strip(b)),
        Cow::Owned(o) => Cow::Owned(py_strip(&o).to_string()),
    })
}

/// A converted PRM training line read back.
#[derive(Debug, Clone, PartialEq)]
pub struct PrmRecord {
    /// The image field, re-serialised as JSON (usually a quoted path).
    pub image_json: String,
    /// The question text.
    pub question: String,
    /// Step texts (without `<prm>`).
    pub steps: Vec<String>,
    /// One label per step.
    pub labels: Vec<f64>,
}

/// Parses one converted PRM line; `what` names the place for error messages (`file:line`).
pub fn read_prm_line(text: &str, what: &str) -> Result<PrmRecord> {
    let bad = |why: String| Error::Other(format!("{what}: {why}"));
    let v = parse(py_strip(text)).map_err(|e| bad(e.to_string()))?;
    let image = v.get("image").ok_or_else(|| bad("no `image`".into()))?;
    let mut image_json = String::new();
    write_value(&mut image_json, image).map_err(|_| bad("unpaired surrogate in `image`".into()))?;
    let Some(Value::Array(turns)) = v.get("conversations") else {
        return Err(bad("`conversations` is not a list".into()));
    };
    let [human, gpt] = turns.as_slice() else {
        return Err(bad(format!(
            "{} conversation turns; expected 2",
            turns.len()
        )));
    };
    let human = match human.get("value") {
        Some(Value::Str(s)) => s
            .decode()
            .map_err(|_| bad("unpaired surrogate".into()))?
            .into_owned(),
        _ => return Err(bad("the human turn has no string `value`".into())),
    };
    let labels: Vec<f64> = match gpt.get("value") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| py_float(x).map_err(|_| bad("a label is not a number".into())))
            .collect::<Result<_>>()?,
        _ => return Err(bad("the gpt turn has no label list".into())),
    };
    let rest = human
        .strip_prefix("Question: ")
        .ok_or_else(|| bad("the human turn does not start with `Question: `".into()))?;
    let (question, process) = rest
        .split_once("\nProcess: ")
        .ok_or_else(|| bad("the human turn has no `\\nProcess: `".into()))?;
    let mut pieces: Vec<&str> = process.split("<prm>").collect();
    if pieces.pop() != Some("") {
        return Err(bad("the process does not end with `<prm>`".into()));
    }
    let steps: Vec<String> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i == 0 {
                *p
            } else {
                p.strip_prefix("\n\n").unwrap_or(p)
            }
        })
        .map(str::to_string)
        .collect();
    if steps.len() != labels.len() {
        return Err(bad(format!(
            "{} steps but {} labels",
            steps.len(),
            labels.len()
        )));
    }
    Ok(PrmRecord {
        image_json,
        question: question.to_string(),
        steps,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"image": "VisualPRM400K-v1.1-Raw/Geometry3K/train/0001/img_diagram.png", "question": "<image>\nYour task is to answer the question below. Give step by step reasoning before you answer, and when you're ready to answer, please use the format \"Final answer: ..\"\n\nQuestion:\n\nFind x. Choices: A. 3 B. 5 C. 7 D. 9", "question_orig": "Find x. Choices: A. 3 B. 5 C. 7 D. 9", "answer": "B", "response": "x", "steps_with_score": [{"step": "The two marked sides are equal, so 2x - 1 = 9.", "score": 0.9375, "num_mc_correct": 15, "num_mc_total": 16}, {"step": "Adding 1 gives 2x = 10, so x = 4.", "score": 0.0625, "num_mc_correct": 1, "num_mc_total": 16}, {"step": "Final answer: A", "score": 0.0, "num_mc_correct": 0, "num_mc_total": 16}], "num_mc_sequences": 16}"#;

    #[test]
    fn reference_example_lines() {
        let rec = parse(RECORD).unwrap();
        let mut out = String::new();
        bis_builder_line(&rec, &mut out).unwrap();
        assert_eq!(
            out,
            r#"{"image": "VisualPRM400K-v1.1-Raw/Geometry3K/train/0001/img_diagram.png", "conversations": [{"from": "human", "value": "Question: Find x. Choices: A. 3 B. 5 C. 7 D. 9\nProcess: The two marked sides are equal, so 2x - 1 = 9.<prm>\n\nAdding 1 gives 2x = 10, so x = 4.<prm>\n\nFinal answer: A<prm>"}, {"from": "gpt", "value": [1.0, 1.0, 0.0]}]}"#
        );
        let mut soft = String::new();
        converter_line(&rec, ConvertLabels::Soft, &mut soft).unwrap();
        assert!(soft.ends_with(r#"{"from": "gpt", "value": [0.9375, 0.0625, 0.0]}]}"#));
        let back = read_prm_line(&out, "t").unwrap();
        assert_eq!(back.steps.len(), 3);
        assert_eq!(back.labels, vec![1.0, 1.0, 0.0]);
        assert_eq!(back.question, "Find x. Choices: A. 3 B. 5 C. 7 D. 9");
    }

    #[test]
    fn unicode_and_whitespace_example() {
        let rec = parse(
            r#"{"image": "VisualPRM400K-v1.1-Raw/GeoQA+/images/0002.png", "question_orig": "  如图，∠A = 30°，求 ∠B 的度数。 ", "steps_with_score": [{"step": "由三角形内角和，∠B = 180° − 90° − 30°。", "score": 0.5}, {"step": "所以 ∠B = 60°。\t", "score": 0.3125}]}"#,
        )
        .unwrap();
        let mut out = String::new();
        bis_builder_line(&rec, &mut out).unwrap();
        assert_eq!(
            out,
            r#"{"image": "VisualPRM400K-v1.1-Raw/GeoQA+/images/0002.png", "conversations": [{"from": "human", "value": "Question: 如图，∠A = 30°，求 ∠B 的度数。\nProcess: 由三角形内角和，∠B = 180° − 90° − 30°。<prm>\n\n所以 ∠B = 60°。<prm>"}, {"from": "gpt", "value": [1.0, 1.0]}]}"#
        );
    }

    #[test]
    fn builder_drops_while_converter_skips() {
        let rec = parse(r#"{"image": "i", "steps_with_score": [{"step": "a", "score": 0.5}, {"step": "  ", "score": 1}, {"step": "b", "score": null}]}"#).unwrap();
        let mut out = String::new();
        assert_eq!(
            bis_builder_line(&rec, &mut out),
            Err(DropReason::EmptyStepText)
        );
        converter_line(&rec, ConvertLabels::Hard { threshold: 0.0 }, &mut out).unwrap();
        assert_eq!(
            out,
            r#"{"image": "i", "conversations": [{"from": "human", "value": "Question: \nProcess: a<prm>"}, {"from": "gpt", "value": [1.0]}]}"#
        );
        let no_image =
            parse(r#"{"image": [], "steps_with_score": [{"step": "a", "score": 0.5}]}"#).unwrap();
        assert_eq!(
            bis_builder_line(&no_image, &mut String::new()),
            Err(DropReason::NoImage)
        );
    }
}
