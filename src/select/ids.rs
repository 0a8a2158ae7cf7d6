//! Selected-rollout id lists: which rollouts a selector kept, never a copy of the data.
//!
//! Format (`mprm-ids/1`), tab-separated, one chosen rollout per row:
//!
//! ```text
//! # mprm-ids/1 <free-form settings: method, alpha, ratio, seed, ...>
//! source<TAB>line<TAB>rollout<TAB>score
//! ai2d<TAB>0<TAB>0<TAB>0.05
//! ```
//!
//! `source` is the annotation file stem, `line` the 0-based physical line in that file, `rollout`
//! the 0-based index in corpus order (sources in sorted file order, valid rollouts in line order:
//! the order of a features bundle built from the same corpus), `score` the selector's key. Lines
//! starting with `#` are comments. A file holding one integer per line and nothing else is also
//! accepted and read as corpus-order rollout indices.

use std::io::Write;
use std::path::Path;

use crate::data::pyjson::write::f64_repr;
use crate::error::{Error, IoContext, Result};
use crate::output::AtomicFile;

/// One chosen rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedId {
    /// Source name (file stem); empty when read from a bare index list.
    pub source: String,
    /// 0-based physical line; `None` when unknown.
    pub line: Option<u64>,
    /// Corpus-order rollout index.
    pub rollout: usize,
    /// Selector key; NaN when unknown.
    pub score: f64,
}

/// Header tag of the format.
pub const IDS_TAG: &str = "mprm-ids/1";

/// Writes `ids` atomically, with `settings` in the comment line.
pub fn write_ids(path: impl AsRef<Path>, settings: &str, ids: &[SelectedId]) -> Result<()> {
    let path = path.as_ref();
    let mut f = AtomicFile::create(path)?;
    let mut text = format!("# {IDS_TAG} {settings}\nsource\tline\trollout\tscore\n");
    for id in ids {
        let line = id.line.map(|l| l.to_string()).unwrap_or_default();
        text.push_str(&format!(
            "{}\t{line}\t{}\t{}\n",
            id.source,
            id.rollout,
            f64_repr(id.score)
        ));
        if text.len() > 1 << 20 {
            f.write_all(text.as_bytes()).at(path)?;
            text.clear();
        }
    }
    f.write_all(text.as_bytes()).at(path)?;
    f.commit()
}

/// Reads an id list (either layout described in the module docs).
pub fn read_ids(path: impl AsRef<Path>) -> Result<Vec<SelectedId>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).at(path)?;
    let mut out = Vec::new();
    let mut header_seen = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| Error::bad_record(path, i as u64, why.to_string());
        if !header_seen && line.starts_with("source\t") {
            header_seen = true;
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            [index] => {
                let rollout = index
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| bad("expected a rollout index (a non-negative integer)"))?;
                out.push(SelectedId {
                    source: String::new(),
                    line: None,
                    rollout,
                    score: f64::NAN,
                });
            }
            [source, line_no, rollout, score] => {
                let line = if line_no.is_empty() {
                    None
                } else {
                    Some(
                        line_no
                            .parse::<u64>()
                            .map_err(|_| bad("`line` is not an integer"))?,
                    )
                };
                out.push(SelectedId {
                    source: source.to_string(),
                    line,
                    rollout: rollout
                        .parse::<usize>()
                        .map_err(|_| bad("`rollout` is not an integer"))?,
                    score: score
                        .parse::<f64>()
                        .map_err(|_| bad("`score` is not a number"))?,
                });
            }
            _ => return Err(bad("expected 4 tab-separated fields or a single index")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bare_indices() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.tsv");
        let ids = vec![
            SelectedId {
                source: "a".into(),
                line: Some(3),
                rollout: 2,
                score: 0.15,
            },
            SelectedId {
                source: "b".into(),
                line: None,
                rollout: 9,
                score: 0.05,
            },
        ];
        write_ids(&p, "method=bis", &ids).unwrap();
        assert_eq!(read_ids(&p).unwrap(), ids);
        std::fs::write(&p, "4\n1\n\n7\n").unwrap();
        let r: Vec<usize> = read_ids(&p).unwrap().iter().map(|i| i.rollout).collect();
        assert_eq!(r, vec![4, 1, 7]);
        std::fs::write(&p, "4\nx\n").unwrap();
        assert!(read_ids(&p).unwrap_err().to_string().contains(":2:"));
    }
}
