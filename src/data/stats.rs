//! Corpus statistics in the shape of the paper's Table 1 (whole corpus) and Table 8 (per source).
//!
//! A step is an "error step" when its hard label is 0 (score not > 0); a rollout is mixed when it
//! has both a positive and a negative step. Statistics cover the steps with numeric scores, i.e.
//! exactly what BIS ranks.

use std::path::Path;

use rayon::prelude::*;

use crate::data::features::FeatureBundle;
use crate::data::pyjson::parse::Value;
use crate::data::pyjson::python::is_py_space;
use crate::data::raw::{
    LineCounts, Strictness, for_each_record, list_annotation_files, numeric_scores, source_name,
    steps_of,
};
use crate::error::{Error, Result};

/// Accumulated statistics of a set of rollouts.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CorpusStats {
    /// Rollouts.
    pub rollouts: u64,
    /// Steps with a numeric score.
    pub steps: u64,
    /// Steps whose score is 0 (hard label 0).
    pub error_steps: u64,
    /// Sum of step scores.
    pub score_sum: f64,
    /// Words in step texts (Python `len(text.split())`); absent for bundles.
    pub words: Option<u64>,
    /// Rollouts with both labels.
    pub mixed: u64,
    /// Rollouts whose steps are all positive.
    pub all_positive: u64,
    /// Rollouts whose steps are all negative.
    pub all_negative: u64,
}

impl CorpusStats {
    /// Adds one rollout's step scores (and its step word count, when known).
    pub fn add_rollout(&mut self, scores: &[f64], words: Option<u64>) {
        let n = scores.len() as u64;
        let n_pos = scores.iter().filter(|&&s| s > 0.0).count() as u64;
        // Words are known only while every rollout so far came with a count.
        self.words = match (self.rollouts, self.words, words) {
            (0, _, w) => w,
            (_, Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        self.rollouts += 1;
        self.steps += n;
        self.error_steps += n - n_pos;
        self.score_sum += scores.iter().sum::<f64>();
        if n_pos == n {
            self.all_positive += 1;
        } else if n_pos == 0 {
            self.all_negative += 1;
        } else {
            self.mixed += 1;
        }
    }

    /// Merges another set.
    pub fn merge(&mut self, o: &CorpusStats) {
        let words = match (self.rollouts, o.rollouts) {
            (0, _) => o.words,
            (_, 0) => self.words,
            _ => self.words.zip(o.words).map(|(a, b)| a + b),
        };
        self.rollouts += o.rollouts;
        self.steps += o.steps;
        self.error_steps += o.error_steps;
        self.score_sum += o.score_sum;
        self.words = words;
        self.mixed += o.mixed;
        self.all_positive += o.all_positive;
        self.all_negative += o.all_negative;
    }

    fn ratio(a: u64, b: u64) -> f64 {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    }

    /// Average steps per rollout.
    pub fn steps_per_rollout(&self) -> f64 {
        Self::ratio(self.steps, self.rollouts)
    }

    /// Average words per step, when texts were read.
    pub fn words_per_step(&self) -> Option<f64> {
        self.words.map(|w| Self::ratio(w, self.steps))
    }

    /// Fraction of steps with score 0.
    pub fn error_step_ratio(&self) -> f64 {
        Self::ratio(self.error_steps, self.steps)
    }

    /// Mean MC score per step.
    pub fn mean_mc(&self) -> f64 {
        if self.steps == 0 {
            f64::NAN
        } else {
            self.score_sum / self.steps as f64
        }
    }

    /// Fraction of mixed rollouts.
    pub fn mixed_ratio(&self) -> f64 {
        Self::ratio(self.mixed, self.rollouts)
    }

    /// Fraction of all-positive rollouts.
    pub fn all_positive_ratio(&self) -> f64 {
        Self::ratio(self.all_positive, self.rollouts)
    }

    /// Fraction of all-negative rollouts.
    pub fn all_negative_ratio(&self) -> f64 {
        Self::ratio(self.all_negative, self.rollouts)
    }
}

/// Statistics of a corpus, overall and per source.
///
/// As JSON (`mprm stats --json`, see [`StatsReport`]'s `Serialize`) every set of statistics
/// carries its counts and the derived numbers of the Markdown tables; sources are a list of
/// objects in corpus order, each naming itself in a `source` field (a list rather than a map
/// keyed by name, so the order of the table survives every JSON reader).
#[derive(Debug, Clone, Default)]
pub struct StatsReport {
    /// What was read.
    pub input: String,
    /// The whole corpus.
    pub total: CorpusStats,
    /// Per source, in corpus order.
    pub sources: Vec<(String, CorpusStats)>,
    /// Line-level counts (raw input only).
    pub lines: Option<LineCounts>,
}

/// The numbers the Markdown tables derive from the counts, unrounded; `null` where a table
/// shows "-" (nothing to divide by, or no word counts). Ratios are fractions (0.4286, shown as
/// 42.86% in the tables).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DerivedStats {
    /// Avg. steps / rollout.
    pub steps_per_rollout: Option<f64>,
    /// Avg. words / step.
    pub words_per_step: Option<f64>,
    /// Fraction of steps with score 0 ("Error-step ratio", "Error steps").
    pub error_step_ratio: Option<f64>,
    /// Avg. MC / step.
    pub mean_mc: Option<f64>,
    /// 16 × the mean MC score ("Avg./16": successful continuations out of 16).
    pub mean_mc_of_16: Option<f64>,
    /// Fraction of mixed rollouts.
    pub mixed_ratio: Option<f64>,
    /// Fraction of all-positive rollouts.
    pub all_positive_ratio: Option<f64>,
    /// Fraction of all-negative rollouts.
    pub all_negative_ratio: Option<f64>,
}

impl CorpusStats {
    /// The derived numbers of the tables.
    pub fn derived(&self) -> DerivedStats {
        let known = |x: f64| (!x.is_nan()).then_some(x);
        DerivedStats {
            steps_per_rollout: known(self.steps_per_rollout()),
            words_per_step: self.words_per_step().and_then(known),
            error_step_ratio: known(self.error_step_ratio()),
            mean_mc: known(self.mean_mc()),
            mean_mc_of_16: known(16.0 * self.mean_mc()),
            mixed_ratio: known(self.mixed_ratio()),
            all_positive_ratio: known(self.all_positive_ratio()),
            all_negative_ratio: known(self.all_negative_ratio()),
        }
    }
}

/// One set of statistics as JSON: the counts, then the derived numbers, in one object.
#[derive(serde::Serialize)]
struct StatsJson<'a> {
    #[serde(flatten)]
    counts: &'a CorpusStats,
    #[serde(flatten)]
    derived: DerivedStats,
}

impl<'a> StatsJson<'a> {
    fn of(s: &'a CorpusStats) -> Self {
        StatsJson {
            counts: s,
            derived: s.derived(),
        }
    }
}

#[derive(serde::Serialize)]
struct SourceJson<'a> {
    source: &'a str,
    #[serde(flatten)]
    stats: StatsJson<'a>,
}

#[derive(serde::Serialize)]
struct ReportJson<'a> {
    input: &'a str,
    total: StatsJson<'a>,
    sources: Vec<SourceJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<&'a LineCounts>,
}

impl serde::Serialize for StatsReport {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        ReportJson {
            input: &self.input,
            total: StatsJson::of(&self.total),
            sources: self
                .sources
                .iter()
                .map(|(name, s)| SourceJson {
                    source: name,
                    stats: StatsJson::of(s),
                })
                .collect(),
            lines: self.lines.as_ref(),
        }
        .serialize(serializer)
    }
}

/// Python's `len(text.split())`.
pub fn word_count(text: &str) -> u64 {
    text.split(is_py_space).filter(|w| !w.is_empty()).count() as u64
}

fn file_stats(path: &Path, strictness: Strictness) -> Result<(CorpusStats, LineCounts)> {
    let mut stats = CorpusStats::default();
    let mut scores = Vec::new();
    let counts = for_each_record(path, strictness, |_, rec, counts| {
        scores.clear();
        numeric_scores(rec, &mut scores, &mut counts.anomalies)?;
        let mut words = 0;
        for step in steps_of(rec)? {
            if !matches!(step.get("score"), None | Some(Value::Null))
                && let Some(Value::Str(t)) = step.get("step")
            {
                words += word_count(&t.decode().unwrap_or_default());
            }
        }
        stats.add_rollout(&scores, Some(words));
        Ok(())
    })?;
    Ok((stats, counts))
}

/// Statistics of a raw annotation folder, a single `.jsonl` file, or a features bundle
/// (`.safetensors`).
pub fn corpus_stats(input: &Path, strictness: Strictness) -> Result<StatsReport> {
    if input.extension().is_some_and(|e| e == "safetensors") {
        return Ok(bundle_stats(
            &FeatureBundle::open(input)?,
            &input.display().to_string(),
        ));
    }
    let files = if input.is_dir() {
        let files = list_annotation_files(input)?;
        if files.is_empty() {
            return Err(Error::EmptyInput(format!(
                "no *.jsonl files in {}",
                input.display()
            )));
        }
        files
    } else {
        std::fs::metadata(input).map_err(|e| Error::io(input, e))?;
        vec![input.to_path_buf()]
    };
    let per_file: Vec<Result<(CorpusStats, LineCounts)>> = files
        .par_iter()
        .map(|f| file_stats(f, strictness))
        .collect();
    let mut report = StatsReport {
        input: input.display().to_string(),
        lines: Some(LineCounts::default()),
        ..Default::default()
    };
    for (path, r) in files.iter().zip(per_file) {
        let (s, c) = r?;
        report.total.merge(&s);
        report.lines.as_mut().expect("set above").add(&c);
        report.sources.push((source_name(path), s));
    }
    Ok(report)
}

/// Statistics of a features bundle's MC scores.
pub fn bundle_stats(bundle: &FeatureBundle, input: &str) -> StatsReport {
    let mut sources: Vec<(String, CorpusStats)> = bundle
        .meta()
        .sources
        .iter()
        .map(|s| (s.clone(), CorpusStats::default()))
        .collect();
    let mut total = CorpusStats::default();
    for i in 0..bundle.n_rollouts() {
        let scores: Vec<f64> = bundle.mc_scores()[bundle.rollout_steps(i)]
            .iter()
            .map(|&v| v as f64)
            .collect();
        sources[bundle.source()[i] as usize]
            .1
            .add_rollout(&scores, None);
        total.add_rollout(&scores, None);
    }
    StatsReport {
        input: input.to_string(),
        total,
        sources,
        lines: None,
    }
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:.2}%", 100.0 * x)
    }
}

fn num(x: f64, digits: usize) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.digits$}")
    }
}

/// Renders the report as two Markdown tables: Table 1's rows for the whole corpus, then one row
/// per source in Table 8's shape (with mixture columns added).
pub fn render_markdown(report: &StatsReport) -> String {
    let t = &report.total;
    let mut out = format!("# Corpus statistics: {}\n\n", report.input);
    out.push_str("| Metric | Value |\n|---|---|\n");
    let rows = [
        ("# rollouts", t.rollouts.to_string()),
        ("# reasoning steps", t.steps.to_string()),
        ("Avg. steps / rollout", num(t.steps_per_rollout(), 2)),
        (
            "Avg. words / step",
            t.words_per_step().map_or("-".into(), |w| num(w, 1)),
        ),
        ("Error-step ratio", pct(t.error_step_ratio())),
        ("Avg. MC / step", num(t.mean_mc(), 4)),
        ("Mixed rollouts", pct(t.mixed_ratio())),
        ("All-positive rollouts", pct(t.all_positive_ratio())),
        ("All-negative rollouts", pct(t.all_negative_ratio())),
    ];
    for (k, v) in rows {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    if let Some(l) = &report.lines
        && (l.blank > 0 || l.n_skipped() > 0)
    {
        out.push_str(&format!(
            "\n{} blank lines; {} skipped lines",
            l.blank,
            l.n_skipped()
        ));
        for (reason, n) in &l.skipped {
            out.push_str(&format!("; {}: {n}", reason.describe()));
        }
        out.push('\n');
    }
    out.push_str("\n| Source | Avg. MC | Avg./16 | # Steps | # Rollouts | Steps/rollout | Error steps | Mixed | All-pos | All-neg |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for (name, s) in &report.sources {
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            num(s.mean_mc(), 4),
            num(16.0 * s.mean_mc(), 4),
            s.steps,
            s.rollouts,
            num(s.steps_per_rollout(), 2),
            pct(s.error_step_ratio()),
            pct(s.mixed_ratio()),
            pct(s.all_positive_ratio()),
            pct(s.all_negative_ratio()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_categories_and_ratios() {
        let mut s = CorpusStats::default();
        s.add_rollout(&[1.0, 0.5], Some(4));
        s.add_rollout(&[0.0, 0.0], Some(2));
        s.add_rollout(&[0.25, 0.0, 0.0625], Some(3));
        assert_eq!((s.rollouts, s.steps, s.error_steps), (3, 7, 3));
        assert_eq!((s.all_positive, s.all_negative, s.mixed), (1, 1, 1));
        assert_eq!(s.words_per_step(), Some(9.0 / 7.0));
        assert_eq!(s.mean_mc(), 1.8125 / 7.0);
        let mut m = CorpusStats::default();
        m.merge(&s);
        m.merge(&s);
        assert_eq!(m.rollouts, 6);
        assert_eq!(m.words, Some(18));
    }

    /// The cells of the Markdown table row that starts with `| {first} |`.
    fn row<'a>(md: &'a str, first: &str) -> Vec<&'a str> {
        let line = md
            .lines()
            .find(|l| l.starts_with(&format!("| {first} |")))
            .unwrap_or_else(|| panic!("no row {first:?} in\n{md}"));
        line.trim_matches('|').split(" | ").map(str::trim).collect()
    }

    /// Whether a table cell ("42.86%", "2.33", "-") shows `value` (a fraction when the cell is
    /// a percentage) at the cell's precision.
    fn shows(cell: &str, value: &serde_json::Value) -> bool {
        if cell == "-" {
            return value.is_null();
        }
        let (text, scale) = match cell.strip_suffix('%') {
            Some(p) => (p, 100.0),
            None => (cell, 1.0),
        };
        let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
        let shown: f64 = text.parse().unwrap();
        let v = value.as_f64().unwrap_or(f64::NAN) * scale;
        (v - shown).abs() <= 0.5 * 10f64.powi(-(decimals as i32)) + 1e-12
    }

    #[test]
    fn json_carries_the_tables_numbers() {
        let mut a = CorpusStats::default();
        a.add_rollout(&[1.0, 0.5], Some(4));
        a.add_rollout(&[0.0, 0.0], Some(2));
        let mut b = CorpusStats::default();
        b.add_rollout(&[0.25, 0.0, 0.0625], Some(3));
        let mut total = a.clone();
        total.merge(&b);
        let report = StatsReport {
            input: "fixture".into(),
            total,
            sources: vec![
                ("chartqa".into(), a),
                ("geo".into(), b),
                ("empty".into(), CorpusStats::default()),
            ],
            lines: None,
        };
        let md = render_markdown(&report);
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();

        let t = &json["total"];
        assert_eq!(t["rollouts"], 3);
        for (metric, field) in [
            ("# rollouts", "rollouts"),
            ("# reasoning steps", "steps"),
            ("Avg. steps / rollout", "steps_per_rollout"),
            ("Avg. words / step", "words_per_step"),
            ("Error-step ratio", "error_step_ratio"),
            ("Avg. MC / step", "mean_mc"),
            ("Mixed rollouts", "mixed_ratio"),
            ("All-positive rollouts", "all_positive_ratio"),
            ("All-negative rollouts", "all_negative_ratio"),
        ] {
            let cell = row(&md, metric)[1];
            assert!(shows(cell, &t[field]), "{metric}: {cell} vs {}", t[field]);
        }

        let sources = json["sources"].as_array().unwrap();
        let names: Vec<&str> = sources
            .iter()
            .map(|s| s["source"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["chartqa", "geo", "empty"]);
        let columns = [
            "mean_mc",
            "mean_mc_of_16",
            "steps",
            "rollouts",
            "steps_per_rollout",
            "error_step_ratio",
            "mixed_ratio",
            "all_positive_ratio",
            "all_negative_ratio",
        ];
        for s in sources {
            let cells = row(&md, s["source"].as_str().unwrap());
            for (cell, field) in cells[1..].iter().zip(columns) {
                assert!(
                    shows(cell, &s[field]),
                    "{}: {field}: {cell} vs {}",
                    s["source"],
                    s[field]
                );
            }
        }
        // An empty source has nothing to divide by: null here, "-" in the table.
        assert!(sources[2]["mean_mc"].is_null());
        assert_eq!(sources[1]["mean_mc_of_16"], 16.0 * 0.3125 / 3.0);
    }

    #[test]
    fn python_word_split() {
        assert_eq!(word_count("  a  b\u{3000}c\n"), 3);
        assert_eq!(word_count(""), 0);
    }
}
