//! The VisualPRM400K-v1.1 raw annotation layout: one JSON object per line, one file per source.
//!
//! Reading follows the reference selection script exactly where it defines behaviour (Python's
//! `strip`, `json.loads`, `float` and universal newlines, line numbering from 0) and replaces its
//! crashes and silent skips with two explicit modes:
//!
//! * [`Strictness::Strict`] stops at the first bad line with `file:line: reason`;
//! * [`Strictness::Lenient`] skips what the reference skips (and what would crash it), counting
//!   every skip by reason so nothing disappears unreported.
//!
//! Files are streamed line by line; nothing holds a whole file of text.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::data::lines::{Line, LineSplitter};
use crate::data::pyjson::parse::{RecordShape, Value, parse, skim_record};
use crate::data::pyjson::python::{FloatError, py_float, py_strip};
use crate::data::pyjson::write::{write_f64, write_str};
use crate::data::rollout::{Corpus, Rollout, SourceRollouts, Step};
use crate::error::{Error, IoContext, Result};

/// Appends `rollout` as one raw annotation line (no newline), in the generator's key order and
/// with Python's `json.dumps` spacing, so synthetic corpora look like the real files.
pub fn write_raw_line(out: &mut String, rollout: &Rollout) {
    out.push('{');
    let mut first = true;
    let mut key = |out: &mut String, k: &str| {
        if !first {
            out.push_str(", ");
        }
        first = false;
        write_str(out, k);
        out.push_str(": ");
    };
    for (k, v) in [
        ("image", &rollout.image),
        ("question", &rollout.question),
        ("question_orig", &rollout.question_orig),
        ("answer", &rollout.answer),
        ("response", &rollout.response),
    ] {
        if let Some(v) = v {
            key(out, k);
            write_str(out, v);
        }
    }
    key(out, "steps_with_score");
    out.push('[');
    for (i, s) in rollout.steps.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str("{\"step\": ");
        write_str(out, &s.text);
        out.push_str(", \"score\": ");
        write_f64(out, s.score);
        out.push_str(&format!(
            ", \"num_mc_correct\": {}, \"num_mc_total\": {}}}",
            s.num_mc_correct, s.num_mc_total
        ));
    }
    out.push(']');
    key(out, "num_mc_sequences");
    out.push_str(&rollout.num_mc_sequences.to_string());
    out.push('}');
}

/// How to treat lines that are not usable records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strictness {
    /// The first bad line is an error naming file and line.
    Strict,
    /// Bad lines are skipped and counted by reason, as the reference skips them.
    Lenient,
}

/// Why a physical line yields no ranked rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// Bytes that are not UTF-8 (the reference aborts the whole run).
    InvalidUtf8,
    /// Not JSON by Python's rules (the reference skips it silently).
    InvalidJson,
    /// JSON, but not an object (the reference crashes).
    NotAnObject,
    /// `steps_with_score` is truthy but not a list (the reference crashes).
    StepsNotAList,
    /// An element of `steps_with_score` is not an object (the reference crashes).
    StepNotAnObject,
    /// No step has a usable numeric score (the reference skips it silently).
    NoNumericScores,
    /// A field breaks a strict-mode rule (score type or range, step text type).
    BadField,
}

impl SkipReason {
    /// A short description for reports.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::InvalidUtf8 => "invalid UTF-8",
            SkipReason::InvalidJson => "invalid JSON",
            SkipReason::NotAnObject => "not a JSON object",
            SkipReason::StepsNotAList => "steps_with_score is not a list",
            SkipReason::StepNotAnObject => "a step is not an object",
            SkipReason::NoNumericScores => "no step with a numeric score",
            SkipReason::BadField => "a field breaks a strict rule",
        }
    }
}

/// A line problem with its detail, before it is tied to a file and line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineProblem {
    /// The category, used for counting.
    pub reason: SkipReason,
    /// Specifics for the error message.
    pub detail: String,
}

impl LineProblem {
    fn new(reason: SkipReason, detail: impl Into<String>) -> Self {
        LineProblem {
            reason,
            detail: detail.into(),
        }
    }

    fn plain(reason: SkipReason) -> Self {
        LineProblem::new(reason, reason.describe())
    }
}

/// Scores the reference accepts but a careful user wants to hear about.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScoreAnomalies {
    /// Scores given as strings and converted with Python's `float()`.
    pub string_scores: u64,
    /// NaN or infinite scores, all signs (`+inf` counts as a positive label, as `inf > 0` is
    /// true in the reference; NaN and `-inf` count as negative).
    pub non_finite_scores: u64,
    /// The `+inf` scores among [`ScoreAnomalies::non_finite_scores`].
    pub positive_infinite_scores: u64,
    /// Finite scores outside [0, 1].
    pub out_of_range_scores: u64,
    /// Steps whose score is missing or null (the step is left out of the ranking).
    pub missing_scores: u64,
    /// Steps whose score cannot be converted to a float (left out of the ranking).
    pub unconvertible_scores: u64,
}

impl ScoreAnomalies {
    /// True when nothing unusual was seen.
    pub fn is_empty(&self) -> bool {
        *self == ScoreAnomalies::default()
    }

    fn add(&mut self, o: &ScoreAnomalies) {
        self.string_scores += o.string_scores;
        self.non_finite_scores += o.non_finite_scores;
        self.positive_infinite_scores += o.positive_infinite_scores;
        self.out_of_range_scores += o.out_of_range_scores;
        self.missing_scores += o.missing_scores;
        self.unconvertible_scores += o.unconvertible_scores;
    }
}

/// What happened to the lines of one file.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LineCounts {
    /// Physical lines.
    pub lines: u64,
    /// Lines that are empty after Python's `strip()`.
    pub blank: u64,
    /// Lines that produced a record.
    pub records: u64,
    /// Lines skipped, by reason.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// Unusual scores accepted or left out the way the reference does.
    pub anomalies: ScoreAnomalies,
}

impl LineCounts {
    /// Adds another file's counts.
    pub fn add(&mut self, o: &LineCounts) {
        self.lines += o.lines;
        self.blank += o.blank;
        self.records += o.records;
        for (k, v) in &o.skipped {
            *self.skipped.entry(*k).or_default() += v;
        }
        self.anomalies.add(&o.anomalies);
    }

    /// Total skipped lines.
    pub fn n_skipped(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Decodes and strips one physical line; `Ok(None)` for a blank line.
pub fn line_text(bytes: &[u8]) -> std::result::Result<Option<&str>, LineProblem> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        LineProblem::new(
            SkipReason::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    let t = py_strip(text);
    Ok(if t.is_empty() { None } else { Some(t) })
}

/// Decodes, strips and parses one physical line; `Ok(None)` for a blank line.
pub fn parse_line(bytes: &[u8]) -> std::result::Result<Option<Value<'_>>, LineProblem> {
    line_text(bytes)?.map(parse_record).transpose()
}

/// Parses the stripped text of a line.
fn parse_record(text: &str) -> std::result::Result<Value<'_>, LineProblem> {
    parse(text).map_err(|e| LineProblem::new(SkipReason::InvalidJson, e.to_string()))
}

/// The step list of a record as the reference reads it: absent or falsy means empty.
pub fn steps_of<'v, 'a>(rec: &'v Value<'a>) -> std::result::Result<&'v [Value<'a>], LineProblem> {
    if !matches!(rec, Value::Object(_)) {
        return Err(LineProblem::new(
            SkipReason::NotAnObject,
            format!("the record is {}, not an object", rec.type_name()),
        ));
    }
    match rec.get("steps_with_score") {
        None => Ok(&[]),
        Some(v) if !v.truthy() => Ok(&[]),
        Some(Value::Array(items)) => {
            if let Some(bad) = items.iter().find(|s| !matches!(s, Value::Object(_))) {
                return Err(LineProblem::new(
                    SkipReason::StepNotAnObject,
                    format!(
                        "a steps_with_score element is {}, not an object",
                        bad.type_name()
                    ),
                ));
            }
            Ok(items)
        }
        Some(v) => Err(LineProblem::new(
            SkipReason::StepsNotAList,
            format!("steps_with_score is {}, not a list", v.type_name()),
        )),
    }
}

/// The reference's `NUMERIC_SCORES`: every step score that `float()` accepts, in step order.
/// Steps with a missing, null or unconvertible score are left out (and counted).
pub fn numeric_scores(
    rec: &Value<'_>,
    out: &mut Vec<f64>,
    anomalies: &mut ScoreAnomalies,
) -> std::result::Result<(), LineProblem> {
    let start = out.len();
    for step in steps_of(rec)? {
        push_score(step.get("score"), out, anomalies);
    }
    if out.len() == start {
        return Err(LineProblem::plain(SkipReason::NoNumericScores));
    }
    Ok(())
}

/// One step's contribution to `NUMERIC_SCORES`: its `float()` value, or nothing (counted).
fn push_score(v: Option<&Value<'_>>, out: &mut Vec<f64>, anomalies: &mut ScoreAnomalies) {
    let v = match v {
        None | Some(Value::Null) => {
            anomalies.missing_scores += 1;
            return;
        }
        Some(v) => v,
    };
    match py_float(v) {
        Ok(f) => {
            if matches!(v, Value::Str(_)) {
                anomalies.string_scores += 1;
            }
            if !f.is_finite() {
                anomalies.non_finite_scores += 1;
                if f == f64::INFINITY {
                    anomalies.positive_infinite_scores += 1;
                }
            } else if !(0.0..=1.0).contains(&f) {
                anomalies.out_of_range_scores += 1;
            }
            out.push(f);
        }
        Err(FloatError::NotNumeric | FloatError::Overflow | FloatError::BadString) => {
            anomalies.unconvertible_scores += 1;
        }
    }
}

/// [`numeric_scores`] straight from the line text, without building a tree: the ranking pass
/// touches every line of the corpus, and only the scores matter there.
pub fn skim_scores(
    text: &str,
    out: &mut Vec<f64>,
    anomalies: &mut ScoreAnomalies,
) -> std::result::Result<(), LineProblem> {
    let mut items = Vec::with_capacity(12);
    {
        let shape = skim_record(text, "steps_with_score", "score", &mut items)
            .map_err(|e| LineProblem::new(SkipReason::InvalidJson, e.to_string()))?;
        match shape {
            RecordShape::NotAnObject(t) => {
                return Err(LineProblem::new(
                    SkipReason::NotAnObject,
                    format!("the record is {t}, not an object"),
                ));
            }
            RecordShape::NotAList(t) => {
                return Err(LineProblem::new(
                    SkipReason::StepsNotAList,
                    format!("steps_with_score is {t}, not a list"),
                ));
            }
            RecordShape::ItemNotAnObject(t) => {
                return Err(LineProblem::new(
                    SkipReason::StepNotAnObject,
                    format!("a steps_with_score element is {t}, not an object"),
                ));
            }
            RecordShape::Empty | RecordShape::Items => {}
        }
        let start = out.len();
        for v in items.drain(..) {
            push_score(v.as_ref(), out, anomalies);
        }
        if out.len() == start {
            return Err(LineProblem::plain(SkipReason::NoNumericScores));
        }
        Ok(())
    }
}

/// Strict-mode rules for a record: a non-empty step list of objects, each with string text and
/// a JSON number score that is finite and in [0, 1].
pub fn check_strict(rec: &Value<'_>) -> std::result::Result<(), LineProblem> {
    let steps = steps_of(rec)?;
    if steps.is_empty() {
        return Err(LineProblem::new(
            SkipReason::NoNumericScores,
            "steps_with_score is missing or empty",
        ));
    }
    for (j, step) in steps.iter().enumerate() {
        let bad = |what: String| {
            Err(LineProblem::new(
                SkipReason::BadField,
                format!("step {j}: {what}"),
            ))
        };
        match step.get("score") {
            Some(v @ (Value::Int(_) | Value::Float(_))) => match (v, py_float(v)) {
                (_, Ok(f)) if (0.0..=1.0).contains(&f) => {}
                (Value::Int(text), Err(_)) => {
                    return bad(format!(
                        "score {} is out of range: an integer too large for a 64-bit float, \
                         not a number in [0, 1]",
                        abbreviate(text)
                    ));
                }
                (_, Ok(f)) if f.is_infinite() => {
                    return bad(format!(
                        "score {} is out of range: infinite (`Infinity`, or a literal too large \
                         for a 64-bit float, such as 1e400), not a number in [0, 1]",
                        if f > 0.0 { "+inf" } else { "-inf" }
                    ));
                }
                (_, Ok(f)) if f.is_nan() => {
                    return bad("score is NaN, not a number in [0, 1]".into());
                }
                (Value::Int(text), Ok(_)) => {
                    return bad(format!("score {} is out of range [0, 1]", abbreviate(text)));
                }
                (_, Ok(f)) => return bad(format!("score {f} is out of range [0, 1]")),
                (_, Err(_)) => return bad("score is not a number".into()),
            },
            Some(other) => return bad(format!("score is {}, not a number", other.type_name())),
            None => return bad("score is missing".into()),
        }
        match step.get("step") {
            Some(Value::Str(_)) => {}
            Some(other) => return bad(format!("step text is {}, not a string", other.type_name())),
            None => return bad("step text is missing".into()),
        }
    }
    Ok(())
}

/// A long literal cut to its first and last digits, with its length, for messages.
fn abbreviate(text: &str) -> String {
    if text.len() <= 40 {
        text.to_string()
    } else {
        format!(
            "{}…{} ({} characters)",
            &text[..20],
            &text[text.len() - 8..],
            text.len()
        )
    }
}

/// The `*.jsonl` files of an annotation folder in sorted path order (hidden files excluded, as
/// Python's `glob` excludes them). A missing folder is an error; an empty list is returned as is.
pub fn list_annotation_files(dir: &Path) -> Result<Vec<PathBuf>> {
    crate::output::refuse_incomplete(dir)?;
    list_files_of_own_folder(dir)
}

/// [`list_annotation_files`] for the writer of a folder that is still marked incomplete (its
/// own staging folder, which every other reader must refuse).
fn list_files_of_own_folder(dir: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(dir).at(dir)?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".jsonl") {
            continue;
        }
        let path = entry.path();
        if path.is_file() {
            files.push(path);
        } else {
            // The reference's glob would hand it to `open()` and stop there; a silent skip would
            // drop a whole source from the selection.
            let what = if path.is_dir() {
                "a directory"
            } else {
                "not a readable file (a broken link or a special file)"
            };
            return Err(Error::invalid(format!(
                "{} is {what}, not an annotation file; every `*.jsonl` in {} must be one \
                 (move it out or rename it)",
                path.display(),
                dir.display()
            )));
        }
    }
    files.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    Ok(files)
}

/// The source name of an annotation file: its file name without `.jsonl`.
pub fn source_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.strip_suffix(".jsonl").unwrap_or(&name).to_string()
}

/// Streams the non-blank lines of one file (decoded and stripped) through `visit`, which may
/// reject a line with a problem: counted in lenient mode, an error naming file and line in strict
/// mode.
fn for_each_line(
    path: &Path,
    strictness: Strictness,
    mut visit: impl FnMut(&Line<'_>, &str, &mut LineCounts) -> std::result::Result<(), LineProblem>,
) -> Result<LineCounts> {
    let file = File::open(path).at(path)?;
    let mut lines = LineSplitter::new(file);
    let mut counts = LineCounts::default();
    while let Some(line) = lines.next().at(path)? {
        counts.lines += 1;
        let outcome = match line_text(line.bytes) {
            Ok(None) => {
                counts.blank += 1;
                continue;
            }
            Ok(Some(text)) => visit(&line, text, &mut counts),
            Err(problem) => Err(problem),
        };
        match outcome {
            Ok(()) => counts.records += 1,
            Err(problem) => match strictness {
                Strictness::Strict => {
                    return Err(Error::bad_record(path, line.index, problem.detail));
                }
                Strictness::Lenient => *counts.skipped.entry(problem.reason).or_default() += 1,
            },
        }
    }
    Ok(counts)
}

/// Streams the records of one file through `visit`, applying the strictness rules.
///
/// `visit` receives every parsed record (with its line) and may reject it with a problem, which
/// is counted (lenient) or returned as an error naming file and line (strict).
pub fn for_each_record(
    path: &Path,
    strictness: Strictness,
    mut visit: impl FnMut(
        &Line<'_>,
        &Value<'_>,
        &mut LineCounts,
    ) -> std::result::Result<(), LineProblem>,
) -> Result<LineCounts> {
    for_each_line(path, strictness, |line, text, counts| {
        let rec = parse_record(text)?;
        if strictness == Strictness::Strict {
            check_strict(&rec)?;
        }
        visit(line, &rec, counts)
    })
}

/// A ranked rollout's location in its file, so the line can be read again without rescanning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef {
    /// 0-based physical line.
    pub line: u64,
    /// Byte offset of the line.
    pub offset: u64,
    /// Length in bytes (terminator excluded).
    pub len: u32,
}

/// The rankable rollouts of one file: where they are and their numeric scores (CSR).
#[derive(Debug, Clone, Default)]
pub struct ScoredFile {
    /// The file.
    pub path: PathBuf,
    /// Its source name.
    pub source: String,
    /// Ranked rollouts in line order.
    pub rollouts: Vec<LineRef>,
    /// CSR offsets into `scores`, one more than `rollouts`.
    pub score_offsets: Vec<usize>,
    /// Numeric scores of all ranked rollouts.
    pub scores: Vec<f64>,
    /// What happened to every line.
    pub counts: LineCounts,
}

impl ScoredFile {
    /// Scores of ranked rollout `i`.
    pub fn scores_of(&self, i: usize) -> &[f64] {
        &self.scores[self.score_offsets[i]..self.score_offsets[i + 1]]
    }
}

/// Reads the numeric scores of every rankable rollout of one file (the ranking pass).
///
/// Lenient mode takes the fast path ([`skim_scores`], no tree); strict mode parses each record
/// to check every field.
pub fn score_file(path: &Path, strictness: Strictness) -> Result<ScoredFile> {
    let mut rollouts = Vec::new();
    let mut score_offsets = vec![0];
    let mut scores = Vec::new();
    let mut keep = |line: &Line<'_>, scores: &Vec<f64>| -> std::result::Result<(), LineProblem> {
        let len = u32::try_from(line.bytes.len())
            .map_err(|_| LineProblem::new(SkipReason::BadField, "line longer than 4 GiB"))?;
        rollouts.push(LineRef {
            line: line.index,
            offset: line.offset,
            len,
        });
        score_offsets.push(scores.len());
        Ok(())
    };
    let counts = match strictness {
        Strictness::Strict => for_each_record(path, strictness, |line, rec, counts| {
            numeric_scores(rec, &mut scores, &mut counts.anomalies)?;
            keep(line, &scores)
        })?,
        Strictness::Lenient => for_each_line(path, strictness, |line, text, counts| {
            let before = scores.len();
            skim_scores(text, &mut scores, &mut counts.anomalies)
                .and_then(|()| keep(line, &scores))
                .inspect_err(|_| scores.truncate(before))
        })?,
    };
    Ok(ScoredFile {
        path: path.to_path_buf(),
        source: source_name(path),
        rollouts,
        score_offsets,
        scores,
        counts,
    })
}

/// Converts a parsed record into the data model, keeping the steps with numeric scores.
pub fn rollout_from_value(
    source: &str,
    line: u64,
    rec: &Value<'_>,
) -> std::result::Result<Rollout, LineProblem> {
    let text = |key: &str| -> Option<String> {
        match rec.get(key) {
            Some(Value::Str(s)) => s.decode().ok().map(|c| c.into_owned()),
            _ => None,
        }
    };
    let mut steps = Vec::new();
    for step in steps_of(rec)? {
        let Some(Ok(score)) = step
            .get("score")
            .filter(|v| !matches!(v, Value::Null))
            .map(py_float)
        else {
            continue;
        };
        let count = |key: &str| match step.get(key) {
            Some(Value::Int(t)) => t.parse::<u32>().unwrap_or(0),
            _ => 0,
        };
        let text = match step.get("step") {
            Some(Value::Str(s)) => s.decode().map(|c| c.into_owned()).unwrap_or_default(),
            _ => String::new(),
        };
        steps.push(Step {
            text,
            score,
            num_mc_correct: count("num_mc_correct"),
            num_mc_total: count("num_mc_total"),
        });
    }
    if steps.is_empty() {
        return Err(LineProblem::plain(SkipReason::NoNumericScores));
    }
    let num_mc_sequences = match rec.get("num_mc_sequences") {
        Some(Value::Int(t)) => t.parse().unwrap_or(0),
        _ => 0,
    };
    Ok(Rollout {
        source: source.to_string(),
        line,
        image: text("image"),
        question: text("question"),
        question_orig: text("question_orig"),
        answer: text("answer"),
        response: text("response"),
        steps,
        num_mc_sequences,
    })
}

/// Reads a whole annotation folder into memory (for small corpora and tests; large corpora
/// should be streamed with [`for_each_record`] or [`score_file`]). Files are read in parallel.
pub fn read_corpus(dir: &Path, strictness: Strictness) -> Result<(Corpus, Vec<LineCounts>)> {
    read_files(list_annotation_files(dir)?, strictness)
}

/// [`read_corpus`] of the annotation folder a writer is still staging (see
/// [`crate::output::AtomicDir`]); only that writer may call it.
pub fn read_own_staged_corpus(dir: &Path) -> Result<Corpus> {
    Ok(read_files(list_files_of_own_folder(dir)?, Strictness::Strict)?.0)
}

fn read_files(files: Vec<PathBuf>, strictness: Strictness) -> Result<(Corpus, Vec<LineCounts>)> {
    let per_file: Vec<Result<(SourceRollouts, LineCounts)>> = files
        .par_iter()
        .map(|path| {
            let name = source_name(path);
            let mut rollouts = Vec::new();
            let counts = for_each_record(path, strictness, |line, rec, _| {
                rollouts.push(rollout_from_value(&name, line.index, rec)?);
                Ok(())
            })?;
            Ok((SourceRollouts { name, rollouts }, counts))
        })
        .collect();
    let mut corpus = Corpus::default();
    let mut counts = Vec::new();
    for r in per_file {
        let (s, c) = r?;
        corpus.sources.push(s);
        counts.push(c);
    }
    Ok((corpus, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_path(
        text: &str,
    ) -> (
        std::result::Result<(), SkipReason>,
        Vec<f64>,
        ScoreAnomalies,
    ) {
        let (mut out, mut a) = (Vec::new(), ScoreAnomalies::default());
        let r = parse(text)
            .map_err(|_| LineProblem::plain(SkipReason::InvalidJson))
            .and_then(|v| numeric_scores(&v, &mut out, &mut a))
            .map_err(|p| p.reason);
        (r, out, a)
    }

    fn skim_path(
        text: &str,
    ) -> (
        std::result::Result<(), SkipReason>,
        Vec<f64>,
        ScoreAnomalies,
    ) {
        let (mut out, mut a) = (Vec::new(), ScoreAnomalies::default());
        let r = skim_scores(text, &mut out, &mut a).map_err(|p| p.reason);
        (r, out, a)
    }

    #[test]
    fn skimming_agrees_with_the_tree_parser() {
        let mut lines: Vec<String> = vec![
            r#"{"steps_with_score": [{"score": 0.5}, {"score": "0.25"}, {"score": null}, {"score": [1]}, {"score": true}, {}]}"#.into(),
            r#"{"steps_with_score": [{"score": 1, "score": 0}], "steps_with_score": [{"score": 0.75}]}"#.into(),
            r#"{"steps_with_score": 0}"#.into(),
            r#"{"steps_with_score": "abc"}"#.into(),
            r#"{"steps_with_score": {"a": 1}}"#.into(),
            r#"{"steps_with_score": [{"score": NaN}, 3]}"#.into(),
            r#"{"steps_with_score": [], "x": [1, {"y": "z"}]}"#.into(),
            r#"{"st\u0065ps_with_score": [{"sc\u006fre": -Infinity}, {"score": 1e400}]}"#.into(),
            r#"[{"steps_with_score": [{"score": 1}]}]"#.into(),
            r#""just a string""#.into(),
            r#"{"steps_with_score": [{"score": 0.5}]"#.into(),
            r#"{"steps_with_score": [{"score": 0.5}]} x"#.into(),
            r#"{"steps_with_score": [{"score": "1_0"}, {"score": "nan"}, {"score": "x"}]}"#.into(),
        ];
        let corpus = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/experiments/example-corpus/annotations/chartqa.jsonl"
        );
        lines.extend(
            std::fs::read_to_string(corpus)
                .unwrap()
                .lines()
                .map(|l| py_strip(l).to_string()),
        );
        // Every prefix of a few tricky lines: truncation must never panic and must agree.
        let prefixes: Vec<String> = lines[..8]
            .iter()
            .flat_map(|l| {
                (0..l.len())
                    .filter(|&i| l.is_char_boundary(i))
                    .map(|i| l[..i].to_string())
            })
            .collect();
        lines.extend(prefixes);
        for line in &lines {
            let (tr, ts, ta) = tree_path(line);
            let (sr, ss, sa) = skim_path(line);
            assert_eq!(tr, sr, "{line}");
            assert_eq!(ta, sa, "{line}");
            assert_eq!(ts.len(), ss.len(), "{line}");
            assert!(
                ts.iter()
                    .zip(&ss)
                    .all(|(a, b)| a == b || (a.is_nan() && b.is_nan())),
                "{line}"
            );
        }
    }
}
