//! Step scores of a bench, from a model or from a file written by any other evaluator.
//!
//! A scores file has one entry per bench record, in record order, each either
//! * a JSON array of step scores,
//! * an object with `prm_scores` (a list holding one list, as the reference evaluation writes),
//! * or an object with `scores` (a list).
//!
//! Entries are either one per line (JSONL) or the elements of one top-level JSON array (the
//! reference's whole output file, `visualprocessbench_*.json`).

use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Scores of every step, record by record (CSR layout).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepScores {
    /// All scores, records contiguous.
    pub flat: Vec<f64>,
    /// Record i owns `flat[offsets[i]..offsets[i+1]]`.
    pub offsets: Vec<usize>,
}

impl StepScores {
    /// Builds from one list per record.
    pub fn from_lists(lists: impl IntoIterator<Item = Vec<f64>>) -> Self {
        let mut s = StepScores {
            flat: Vec::new(),
            offsets: vec![0],
        };
        for l in lists {
            s.flat.extend(l);
            s.offsets.push(s.flat.len());
        }
        s
    }

    /// Scores of record `i`.
    pub fn record(&self, i: usize) -> &[f64] {
        &self.flat[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Number of records.
    pub fn n_records(&self) -> usize {
        self.offsets.len() - 1
    }
}

/// Where one entry of a scores file sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPlace {
    /// A JSONL line, 0-based (printed 1-based).
    Line(u64),
    /// An element of the top-level JSON array, 0-based.
    Element(usize),
}

impl std::fmt::Display for EntryPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryPlace::Line(l) => write!(f, "line {}", l + 1),
            EntryPlace::Element(i) => write!(f, "element {i}"),
        }
    }
}

/// A scores file as read: the scores and where each record's entry sits in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoresFile {
    /// The file.
    pub path: std::path::PathBuf,
    /// The scores, record by record.
    pub scores: StepScores,
    /// Entry i's place in the file.
    pub places: Vec<EntryPlace>,
}

/// Reads a scores file (see the module docs). Every score must be a finite number.
pub fn read_scores(path: impl AsRef<Path>) -> Result<StepScores> {
    read_scores_file(path).map(|f| f.scores)
}

/// Reads a scores file, keeping where each entry sits (for messages naming the line).
pub fn read_scores_file(path: impl AsRef<Path>) -> Result<ScoresFile> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).at(path)?;
    let whole = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| match v {
            serde_json::Value::Array(items)
                if items.iter().all(|x| x.is_object() || x.is_array()) && !items.is_empty() =>
            {
                Some(items)
            }
            _ => None,
        });
    let entries = match whole {
        Some(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                entry_scores(item)
                    .map(|l| (EntryPlace::Element(i), l))
                    .map_err(|why| Error::Other(format!("{}: element {i}: {why}", path.display())))
            })
            .collect::<Result<Vec<_>>>()?,
        None => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let bad = |why: String| Error::bad_record(path, i as u64, why);
                let v: serde_json::Value =
                    serde_json::from_str(l).map_err(|e| bad(e.to_string()))?;
                entry_scores(&v)
                    .map(|l| (EntryPlace::Line(i as u64), l))
                    .map_err(bad)
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let (places, lists): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
    Ok(ScoresFile {
        path: path.to_path_buf(),
        scores: StepScores::from_lists(lists),
        places,
    })
}

fn entry_scores(v: &serde_json::Value) -> std::result::Result<Vec<f64>, String> {
    let list = match v {
        serde_json::Value::Array(_) => v,
        serde_json::Value::Object(map) => match (map.get("prm_scores"), map.get("scores")) {
            (Some(serde_json::Value::Array(outer)), _) => match outer.as_slice() {
                [inner @ serde_json::Value::Array(_)] => inner,
                _ => return Err("`prm_scores` must be a list holding one list of scores".into()),
            },
            (Some(_), _) => return Err("`prm_scores` is not a list".into()),
            (None, Some(s)) => s,
            (None, None) => return Err("expected `prm_scores` or `scores`".into()),
        },
        _ => return Err("expected a list of scores or an object".into()),
    };
    let items = list.as_array().ok_or("scores are not a list")?;
    items
        .iter()
        .enumerate()
        .map(|(k, x)| match x.as_f64() {
            Some(s) if s.is_finite() => Ok(s),
            _ => Err(format!("score {k} is `{x}`; expected a finite number")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_three_entry_shapes_as_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        std::fs::write(
            &p,
            "[0.5, 0.25]\n{\"prm_scores\": [[0.125]], \"data_source\": \"X\"}\n\n{\"scores\": []}\n",
        )
        .unwrap();
        let s = read_scores(&p).unwrap();
        assert_eq!(s.n_records(), 3);
        assert_eq!(s.record(0), &[0.5, 0.25]);
        assert_eq!(s.record(1), &[0.125]);
        assert!(s.record(2).is_empty());
    }

    #[test]
    fn reads_the_reference_whole_output() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        std::fs::write(
            &p,
            "[\n {\"data_source\": \"A\", \"labels_per_step\": [1], \"prm_scores\": [[0.75]]},\n {\"data_source\": \"B\", \"prm_scores\": [[0.5, 0.25]]}\n]\n",
        )
        .unwrap();
        let s = read_scores(&p).unwrap();
        assert_eq!(s.flat, vec![0.75, 0.5, 0.25]);
        assert_eq!(s.offsets, vec![0, 1, 3]);
    }

    #[test]
    fn bad_entries_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        std::fs::write(&p, "[0.5]\n[0.5, \"x\"]\n").unwrap();
        let e = read_scores(&p).unwrap_err().to_string();
        assert!(e.contains("s.jsonl:2:") && e.contains("score 1"), "{e}");
        std::fs::write(&p, "[0.5]\n{\"prm_scores\": [0.5]}\n").unwrap();
        let e = read_scores(&p).unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("one list"), "{e}");
    }
}
