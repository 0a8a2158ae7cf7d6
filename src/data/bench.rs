//! VisualProcessBench records, and the dev/test split the metric needs.
//!
//! The benchmark (`test.jsonl`, one candidate solution per line) carries human step labels
//! (`1` correct, `-1` incorrect, `0` neutral) and no split: the reference script tunes its
//! threshold on the benchmark itself. mprm tunes on a dev part and reports on the rest, so this
//! module also provides a seeded split, stratified by `data_source`, for records without a
//! `split` key.
//!
//! The synthetic bench written by the simulator uses the same layout plus `split`
//! (`dev` | `test`), `question_id` (shared by the N candidates of one question, which always sit
//! in the same split) and `final_correct` (whether the candidate's final answer is right; used by
//! best-of-N). Its `bench.safetensors` features bundle holds rollout i = record i.
//!
//! Unknown keys are ignored. `image` may be an array of strings (the real file) or one string
//! (what the dataset card claims); it is not used for scoring.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::data::features::FeatureBundle;
use crate::error::{Error, IoContext, Result};

/// Which half of the bench a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used to tune the decision threshold.
    Dev,
    /// Used to report.
    Test,
}

/// One candidate solution of the benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRecord {
    /// 0-based physical line in the file.
    pub line: u64,
    /// `data_source` (the benchmark's per-source columns).
    pub source: String,
    /// Step labels: 1 correct, -1 incorrect, 0 neutral.
    pub labels: Vec<i8>,
    /// `policy_model`, when present.
    pub policy_model: Option<String>,
    /// `split`, when the record carries one.
    pub split: Option<Split>,
    /// `question_id`, when present (candidates of one question share it).
    pub question_id: Option<String>,
    /// `final_correct`, when present.
    pub final_correct: Option<bool>,
}

/// One candidate solution as written: the VisualProcessBench layout plus the split, the
/// question id and the final answer's correctness.
#[derive(Debug, Clone, Copy)]
pub struct BenchLine<'a> {
    /// `data_source`.
    pub source: &'a str,
    /// The (placeholder) image path.
    pub image: &'a str,
    /// The question, with its image tag.
    pub question: &'a str,
    /// The reference answer.
    pub answer: &'a str,
    /// The solution's steps.
    pub steps: &'a [String],
    /// Step labels: 1 correct, -1 incorrect, 0 neutral.
    pub labels: &'a [i32],
    /// `policy_model`.
    pub policy: &'a str,
    /// `dev` or `test`.
    pub split: &'a str,
    /// Shared by the candidates of one question.
    pub question_id: &'a str,
    /// Whether the final answer is right.
    pub final_correct: bool,
}

/// Appends `r` as one record (Python `json.dumps` spacing, the benchmark's key order) and a
/// newline.
pub fn write_record(out: &mut String, r: &BenchLine<'_>) {
    use crate::data::pyjson::write::write_str;
    out.push_str("{\"image\": [");
    write_str(out, r.image);
    out.push_str("], \"question\": ");
    write_str(out, r.question);
    out.push_str(", \"answer\": ");
    write_str(out, r.answer);
    out.push_str(", \"response\": {\"steps\": [");
    for (i, s) in r.steps.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(out, s);
    }
    out.push_str("], \"process_correctness\": [");
    let labels: Vec<String> = r.labels.iter().map(|l| l.to_string()).collect();
    out.push_str(&labels.join(", "));
    out.push_str("]}, \"policy_model\": ");
    write_str(out, r.policy);
    out.push_str(", \"data_source\": ");
    write_str(out, r.source);
    out.push_str(", \"split\": ");
    write_str(out, r.split);
    out.push_str(", \"question_id\": ");
    write_str(out, r.question_id);
    out.push_str(", \"final_correct\": ");
    out.push_str(if r.final_correct { "true" } else { "false" });
    out.push_str("}\n");
}

#[derive(Deserialize)]
struct RawRecord {
    #[serde(default)]
    image: Option<ImageField>,
    response: RawResponse,
    data_source: String,
    #[serde(default)]
    policy_model: Option<String>,
    #[serde(default)]
    split: Option<String>,
    #[serde(default)]
    question_id: Option<IdField>,
    #[serde(default)]
    final_correct: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ImageField {
    Many(#[allow(dead_code)] Vec<String>),
    One(#[allow(dead_code)] String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IdField {
    Text(String),
    Number(i64),
}

#[derive(Deserialize)]
struct RawResponse {
    steps: Vec<serde_json::Value>,
    process_correctness: Vec<i64>,
}

/// Reads every record of a VisualProcessBench-layout JSONL file. Blank lines are skipped.
pub fn read_bench(path: impl AsRef<Path>) -> Result<Vec<BenchRecord>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).at(path)?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        records.push(parse_record(path, i as u64, line)?);
    }
    if records.is_empty() {
        return Err(Error::EmptyInput(format!(
            "{}: no bench records",
            path.display()
        )));
    }
    Ok(records)
}

fn parse_record(path: &Path, line0: u64, text: &str) -> Result<BenchRecord> {
    let bad = |why: String| Error::bad_record(path, line0, why);
    let raw: RawRecord = serde_json::from_str(text).map_err(|e| bad(format!("{e}")))?;
    let _ = raw.image;
    let steps = raw.response.steps.len();
    let labels = raw.response.process_correctness;
    if labels.len() != steps {
        return Err(bad(format!(
            "response has {steps} steps but {} process_correctness labels",
            labels.len()
        )));
    }
    let labels = labels
        .iter()
        .enumerate()
        .map(|(k, &y)| match y {
            -1..=1 => Ok(y as i8),
            _ => Err(bad(format!(
                "process_correctness[{k}] = {y}; expected 1, 0 or -1"
            ))),
        })
        .collect::<Result<Vec<i8>>>()?;
    let split = match raw.split.as_deref() {
        None => None,
        Some("dev") => Some(Split::Dev),
        Some("test") => Some(Split::Test),
        Some(other) => return Err(bad(format!("split `{other}`; expected dev or test"))),
    };
    Ok(BenchRecord {
        line: line0,
        source: raw.data_source,
        labels,
        policy_model: raw.policy_model,
        split,
        question_id: raw.question_id.map(|q| match q {
            IdField::Text(s) => s,
            IdField::Number(n) => n.to_string(),
        }),
        final_correct: raw.final_correct,
    })
}

/// How the dev/test assignment was obtained; recorded in every report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "from", rename_all = "lowercase")]
pub enum SplitOrigin {
    /// Every record carried a `split` key.
    Keys,
    /// Seeded split stratified by `data_source`, keeping question groups together.
    Seeded {
        /// Fraction of each source's questions sent to dev.
        dev_fraction: f64,
        /// RNG seed.
        seed: u64,
    },
}

/// Settings for the split of benches without `split` keys.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitSettings {
    /// Fraction of each source's questions sent to dev (0 = everything is test).
    pub dev_fraction: f64,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SplitSettings {
    fn default() -> Self {
        SplitSettings {
            dev_fraction: 0.5,
            seed: 0,
        }
    }
}

/// Assigns every record to dev or test.
///
/// Records' own `split` keys win when all of them have one (a mix of keyed and unkeyed records is
/// an error). Otherwise each source's question groups (by `question_id`, or one group per record)
/// are shuffled by a ChaCha8 RNG seeded with `settings.seed`, sources taken in sorted order, and
/// the first `round(groups × dev_fraction)` go to dev.
pub fn assign_splits(
    path: &Path,
    records: &[BenchRecord],
    settings: SplitSettings,
) -> Result<(Vec<Split>, SplitOrigin)> {
    let keyed = records.iter().filter(|r| r.split.is_some()).count();
    if keyed == records.len() {
        return Ok((
            records
                .iter()
                .map(|r| r.split.expect("all keyed"))
                .collect(),
            SplitOrigin::Keys,
        ));
    }
    if keyed > 0 {
        let first = records
            .iter()
            .find(|r| r.split.is_none())
            .expect("some unkeyed");
        return Err(Error::bad_record(
            path,
            first.line,
            "no `split` key, but other records have one (all or none must)",
        ));
    }
    if !(0.0..=1.0).contains(&settings.dev_fraction) {
        return Err(Error::invalid(format!(
            "dev fraction {} is outside [0, 1]",
            settings.dev_fraction
        )));
    }
    let mut by_source: BTreeMap<&str, SourceGroups> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let SourceGroups { groups, index } = by_source.entry(&r.source).or_default();
        match r.question_id.as_deref() {
            Some(q) => match index.get(q) {
                Some(&g) => groups[g].push(i),
                None => {
                    index.insert(q, groups.len());
                    groups.push(vec![i]);
                }
            },
            None => groups.push(vec![i]),
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut split = vec![Split::Test; records.len()];
    for SourceGroups { groups, .. } in by_source.values_mut() {
        groups.shuffle(&mut rng);
        let n_dev = (groups.len() as f64 * settings.dev_fraction).round() as usize;
        for group in &groups[..n_dev] {
            for &i in group {
                split[i] = Split::Dev;
            }
        }
    }
    Ok((
        split,
        SplitOrigin::Seeded {
            dev_fraction: settings.dev_fraction,
            seed: settings.seed,
        },
    ))
}

/// The question groups of one source, in first-appearance order, with their member records.
#[derive(Default)]
struct SourceGroups<'a> {
    groups: Vec<Vec<usize>>,
    index: HashMap<&'a str, usize>,
}

/// A bench ready for evaluation: records, their split, and (for models on features) the step
/// features of each record.
#[derive(Debug)]
pub struct BenchSet {
    /// The JSONL file.
    pub path: PathBuf,
    /// Records in file order.
    pub records: Vec<BenchRecord>,
    /// Split of each record.
    pub split: Vec<Split>,
    /// How `split` was obtained.
    pub split_origin: SplitOrigin,
    /// Step features, rollout i = record i (absent for score-file evaluation).
    pub features: Option<FeatureBundle>,
}

impl BenchSet {
    /// Reads `jsonl`, splits it, and opens `features` (checking that rollout i has record i's
    /// step count).
    pub fn open(
        jsonl: impl AsRef<Path>,
        features: Option<&Path>,
        settings: SplitSettings,
    ) -> Result<Self> {
        let path = jsonl.as_ref().to_path_buf();
        crate::output::refuse_incomplete(&path)?;
        let records = read_bench(&path)?;
        let features = features.map(FeatureBundle::open).transpose()?;
        Self::from_parts(path, records, features, settings)
    }

    /// Builds a bench from records already in memory.
    pub fn from_parts(
        path: PathBuf,
        records: Vec<BenchRecord>,
        features: Option<FeatureBundle>,
        settings: SplitSettings,
    ) -> Result<Self> {
        if let Some(f) = &features {
            check_alignment(&path, &records, f)?;
        }
        let (split, split_origin) = assign_splits(&path, &records, settings)?;
        Ok(BenchSet {
            path,
            records,
            split,
            split_origin,
            features,
        })
    }

    /// Indices of the records in `split`.
    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.records.len())
            .filter(|&i| self.split[i] == split)
            .collect()
    }

    /// Total number of steps over all records.
    pub fn n_steps(&self) -> usize {
        self.records.iter().map(|r| r.labels.len()).sum()
    }
}

fn check_alignment(path: &Path, records: &[BenchRecord], f: &FeatureBundle) -> Result<()> {
    let fpath = f.path().unwrap_or(Path::new("(bench features)"));
    if f.n_rollouts() != records.len() {
        return Err(Error::bundle(
            fpath,
            "offsets",
            format!(
                "{} rollouts but {} has {} records",
                f.n_rollouts(),
                path.display(),
                records.len()
            ),
        ));
    }
    for (i, r) in records.iter().enumerate() {
        if f.rollout_len(i) != r.labels.len() {
            return Err(Error::bad_record(
                path,
                r.line,
                format!(
                    "{} steps, but rollout {i} of {} has {}",
                    r.labels.len(),
                    fpath.display(),
                    f.rollout_len(i)
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REC: &str = r#"{"image": ["images/DynaMath/0001.png"], "question": "q", "answer": "2", "response": {"steps": ["a", "b", "c", "d"], "process_correctness": [1, 1, -1, 0]}, "policy_model": "GPT4o_20241120_tem07", "data_source": "DynaMath", "extra": 3}"#;

    #[test]
    fn reads_the_reference_layout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test.jsonl");
        std::fs::write(&p, format!("{REC}\n\n{REC}\n")).unwrap();
        let recs = read_bench(&p).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].labels, vec![1, 1, -1, 0]);
        assert_eq!(recs[0].source, "DynaMath");
        assert_eq!(recs[1].line, 2);
        assert_eq!(recs[0].split, None);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test.jsonl");
        let bad_label = REC.replace("[1, 1, -1, 0]", "[1, 2, -1, 0]");
        std::fs::write(&p, format!("{REC}\n{bad_label}\n")).unwrap();
        let e = read_bench(&p).unwrap_err().to_string();
        assert!(
            e.contains("test.jsonl:2:") && e.contains("process_correctness[1] = 2"),
            "{e}"
        );

        let short = REC.replace("[1, 1, -1, 0]", "[1, 1, -1]");
        std::fs::write(&p, format!("{short}\n")).unwrap();
        let e = read_bench(&p).unwrap_err().to_string();
        assert!(e.contains(":1:") && e.contains("4 steps but 3"), "{e}");

        std::fs::write(&p, "{\"response\": 3}\n").unwrap();
        assert!(read_bench(&p).unwrap_err().to_string().contains(":1:"));
    }

    fn rec(source: &str, q: Option<&str>) -> BenchRecord {
        BenchRecord {
            line: 0,
            source: source.into(),
            labels: vec![1],
            policy_model: None,
            split: None,
            question_id: q.map(String::from),
            final_correct: None,
        }
    }

    #[test]
    fn seeded_split_is_stratified_and_keeps_groups() {
        let mut records = Vec::new();
        for s in ["A", "B"] {
            for q in 0..10 {
                for _ in 0..3 {
                    records.push(rec(s, Some(&format!("{s}-{q}"))));
                }
            }
        }
        let settings = SplitSettings {
            dev_fraction: 0.3,
            seed: 7,
        };
        let (split, origin) = assign_splits(Path::new("x"), &records, settings).unwrap();
        assert_eq!(
            origin,
            SplitOrigin::Seeded {
                dev_fraction: 0.3,
                seed: 7
            }
        );
        for s in ["A", "B"] {
            let dev = (0..records.len())
                .filter(|&i| records[i].source == s && split[i] == Split::Dev)
                .count();
            assert_eq!(dev, 9, "3 of 10 questions × 3 candidates in {s}");
        }
        for chunk in split.chunks(3) {
            assert!(chunk.iter().all(|&x| x == chunk[0]), "a question was split");
        }
        let (again, _) = assign_splits(Path::new("x"), &records, settings).unwrap();
        assert_eq!(split, again);
    }

    #[test]
    fn keyed_split_wins_and_mixed_is_an_error() {
        let mut records = vec![rec("A", None), rec("A", None)];
        records[0].split = Some(Split::Dev);
        records[1].split = Some(Split::Test);
        let (split, origin) =
            assign_splits(Path::new("x"), &records, SplitSettings::default()).unwrap();
        assert_eq!(split, vec![Split::Dev, Split::Test]);
        assert_eq!(origin, SplitOrigin::Keys);
        records[1].split = None;
        records[1].line = 4;
        let e = assign_splits(Path::new("b.jsonl"), &records, SplitSettings::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.jsonl:5:"), "{e}");
    }
}
