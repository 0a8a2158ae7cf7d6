//! Selected-rollout id lists: which rollouts a selector kept, never a copy of the data.
//!
//! Format (`mprm-ids/2`), tab-separated, one chosen rollout per row:
//!
//! ```text
//! # mprm-ids/2 corpus=fp1-2967-0cd62f3e6a7ee595 <free-form settings: method, alpha, ratio, ...>
//! source<TAB>line<TAB>rollout<TAB>steps<TAB>score
//! ai2d<TAB>0<TAB>0<TAB>5<TAB>0.05
//! ```
//!
//! `corpus` is the fingerprint of the corpus the selection ran on ([`crate::data::fingerprint`]),
//! `source` the annotation file stem, `line` the 0-based physical line in that file, `rollout`
//! the 0-based index in corpus order (sources in sorted file order, valid rollouts in line order:
//! the order of a features bundle built from the same corpus), `steps` the rollout's number of
//! (scored) steps, `score` the selector's key. `mprm train --subset` checks the fingerprint and
//! every row's step count against the bundle. Lines starting with `#` are comments.
//!
//! Older layouts are still read, without those checks: `mprm-ids/1` (no fingerprint, no `steps`
//! column), and a file holding one integer per line, read as corpus-order rollout indices.

use std::io::Write;
use std::path::Path;

use crate::data::fingerprint::CorpusFingerprint;
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
    /// Number of (scored) steps; `None` when read from an older layout.
    pub steps: Option<u64>,
    /// Selector key; NaN when unknown.
    pub score: f64,
}

/// An id list and the corpus it indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdsFile {
    /// Fingerprint of the corpus the ids were chosen from; `None` for older layouts.
    pub corpus: Option<CorpusFingerprint>,
    /// The chosen rollouts, in file order.
    pub ids: Vec<SelectedId>,
}

/// Header tag of the format.
pub const IDS_TAG: &str = "mprm-ids/2";

/// Writes `ids` atomically, with the corpus fingerprint and `settings` in the comment line.
pub fn write_ids(
    path: impl AsRef<Path>,
    corpus: &CorpusFingerprint,
    settings: &str,
    ids: &[SelectedId],
) -> Result<()> {
    stage_ids(path, corpus, settings, ids)?.commit()
}

/// Writes `ids` to a temporary sibling of `path`, to be committed with other outputs.
pub fn stage_ids(
    path: impl AsRef<Path>,
    corpus: &CorpusFingerprint,
    settings: &str,
    ids: &[SelectedId],
) -> Result<AtomicFile> {
    let path = path.as_ref();
    let mut f = AtomicFile::create(path)?;
    let mut text =
        format!("# {IDS_TAG} corpus={corpus} {settings}\nsource\tline\trollout\tsteps\tscore\n");
    for id in ids {
        let line = id.line.map(|l| l.to_string()).unwrap_or_default();
        let steps = id.steps.map(|l| l.to_string()).unwrap_or_default();
        text.push_str(&format!(
            "{}\t{line}\t{}\t{steps}\t{}\n",
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
    Ok(f)
}

/// Reads the rollouts of an id list (any layout described in the module docs).
pub fn read_ids(path: impl AsRef<Path>) -> Result<Vec<SelectedId>> {
    Ok(read_ids_file(path)?.ids)
}

/// Reads an id list with its corpus fingerprint (any layout described in the module docs).
pub fn read_ids_file(path: impl AsRef<Path>) -> Result<IdsFile> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).at(path)?;
    let mut out = Vec::new();
    let mut corpus = None;
    let mut header_seen = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("# ").filter(|r| r.starts_with(IDS_TAG)) {
            let fp = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("corpus="))
                .ok_or_else(|| {
                    Error::bad_record(path, i as u64, "the mprm-ids/2 header has no corpus=")
                })?;
            corpus = Some(
                fp.parse::<CorpusFingerprint>()
                    .map_err(|e| Error::bad_record(path, i as u64, e.to_string()))?,
            );
            continue;
        }
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
                    steps: None,
                    score: f64::NAN,
                });
            }
            [source, line_no, rollout, rest @ ..] if matches!(rest.len(), 1 | 2) => {
                let (steps, score) = match rest {
                    [score] => (None, score),
                    [steps, score] => (
                        Some(
                            steps
                                .parse::<u64>()
                                .map_err(|_| bad("`steps` is not an integer"))?,
                        ),
                        score,
                    ),
                    _ => unreachable!("matched lengths 1 and 2"),
                };
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
                    steps,
                    score: score
                        .parse::<f64>()
                        .map_err(|_| bad("`score` is not a number"))?,
                });
            }
            _ => {
                return Err(bad(
                    "expected 5 tab-separated fields (4 in mprm-ids/1) or a single index",
                ));
            }
        }
    }
    Ok(IdsFile { corpus, ids: out })
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
                steps: Some(4),
                score: 0.15,
            },
            SelectedId {
                source: "b".into(),
                line: None,
                rollout: 9,
                steps: Some(1),
                score: 0.05,
            },
        ];
        let fp = CorpusFingerprint::of([("a", 3, 4)]);
        write_ids(&p, &fp, "method=bis", &ids).unwrap();
        let back = read_ids_file(&p).unwrap();
        assert_eq!(back.ids, ids);
        assert_eq!(back.corpus, Some(fp));
        // The older layout still reads, without a fingerprint or step counts.
        std::fs::write(
            &p,
            "# mprm-ids/1 x\nsource\tline\trollout\tscore\na\t3\t2\t0.15\n",
        )
        .unwrap();
        let old = read_ids_file(&p).unwrap();
        assert_eq!(
            (old.corpus, old.ids[0].steps, old.ids[0].rollout),
            (None, None, 2)
        );
        std::fs::write(&p, "4\n1\n\n7\n").unwrap();
        let r: Vec<usize> = read_ids(&p).unwrap().iter().map(|i| i.rollout).collect();
        assert_eq!(r, vec![4, 1, 7]);
        std::fs::write(&p, "4\nx\n").unwrap();
        assert!(read_ids(&p).unwrap_err().to_string().contains(":2:"));
    }
}
