//! Running a selector over a whole corpus: raw annotation files (streamed, files in parallel) or
//! a features bundle.
//!
//! Raw input takes two passes per file, both streaming: the ranking pass keeps only each rankable
//! line's position and numeric scores; the writing pass reads back just the chosen lines by
//! offset and converts them. Each file's output is spilled to a part file and the parts are
//! concatenated in sorted file order, so memory stays at one file's scores per thread however
//! large the corpus, and the output order never depends on scheduling.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Selector, SourceView, check_ratio, select_source};
use crate::data::features::FeatureBundle;
use crate::data::fingerprint::{CorpusFingerprint, FingerprintBuilder, check_same_corpus};
use crate::data::ids::{SelectedId, stage_ids};
use crate::data::prm_line::{DropReason, bis_builder_line};
use crate::data::raw::{LineCounts, Strictness, list_annotation_files, parse_line, score_file};
use crate::error::{Error, IoContext, Result};
use crate::output::{AtomicFile, Staged, par_map_concat, stage_json};

/// Where a selection goes.
#[derive(Debug, Clone, Default)]
pub struct SelectOutputs {
    /// The PRM training lines of the chosen rollouts (the reference script's output).
    pub prm_lines: Option<PathBuf>,
    /// The chosen rollouts' ids and keys (`mprm-ids/1`).
    pub ids: Option<PathBuf>,
    /// The per-source report (JSON).
    pub report: Option<PathBuf>,
    /// A file (a features bundle) whose corpus the input must be, with its fingerprint: checked
    /// before any output is committed.
    pub same_corpus_as: Option<(PathBuf, CorpusFingerprint)>,
}

/// What happened to one source.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceReport {
    /// Source name.
    pub source: String,
    /// Input file (raw input only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Line-level counts (raw input only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<LineCounts>,
    /// Rankable rollouts m.
    pub ranked: usize,
    /// Chosen rollouts k.
    pub chosen: usize,
    /// Chosen rollouts written as PRM lines.
    pub written: usize,
    /// Chosen rollouts that produced no line, by reason (never back-filled).
    pub dropped: BTreeMap<DropReason, usize>,
}

/// The whole selection, as recorded next to its outputs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SelectReport {
    /// Producer.
    pub tool: String,
    /// The selector's settings.
    pub selector: serde_json::Value,
    /// Budget fraction ρ.
    pub top_ratio: f64,
    /// Input folder or bundle.
    pub input: PathBuf,
    /// Fingerprint of the input corpus (its rankable rollouts).
    pub corpus: Option<CorpusFingerprint>,
    /// How bad lines were treated.
    pub strictness: Strictness,
    /// Per source, in corpus order.
    pub sources: Vec<SourceReport>,
    /// Sums over sources.
    pub totals: SourceReport,
}

impl SelectReport {
    fn new(selector: &dyn Selector, ratio: f64, input: &Path, strictness: Strictness) -> Self {
        SelectReport {
            tool: format!("mprm {}", env!("CARGO_PKG_VERSION")),
            selector: selector.settings(),
            top_ratio: ratio,
            input: input.to_path_buf(),
            corpus: None,
            strictness,
            sources: Vec::new(),
            totals: SourceReport {
                source: "(all)".into(),
                ..Default::default()
            },
        }
    }

    fn push(&mut self, s: SourceReport) {
        let t = &mut self.totals;
        t.ranked += s.ranked;
        t.chosen += s.chosen;
        t.written += s.written;
        for (k, v) in &s.dropped {
            *t.dropped.entry(*k).or_default() += v;
        }
        if let Some(l) = &s.lines {
            t.lines.get_or_insert_with(LineCounts::default).add(l);
        }
        self.sources.push(s);
    }

    /// A short summary for stderr: skipped lines and dropped rollouts by reason.
    pub fn summary(&self) -> String {
        let t = &self.totals;
        let mut out = format!(
            "{}: {} sources, {} rankable rollouts, {} chosen, {} written",
            self.selector["method"].as_str().unwrap_or("selection"),
            self.sources.len(),
            t.ranked,
            t.chosen,
            t.written
        );
        if let Some(l) = &t.lines {
            if l.blank > 0 {
                out.push_str(&format!("\n  blank lines: {}", l.blank));
            }
            for (reason, n) in &l.skipped {
                out.push_str(&format!("\n  skipped lines ({}): {n}", reason.describe()));
            }
            let a = &l.anomalies;
            for (what, n) in [
                (
                    "scores given as strings (converted, as the reference does)",
                    a.string_scores,
                ),
                (
                    "NaN or -inf scores (counted negative)",
                    a.non_finite_scores - a.positive_infinite_scores,
                ),
                ("+inf scores (counted positive)", a.positive_infinite_scores),
                ("scores outside [0, 1] (kept)", a.out_of_range_scores),
                (
                    "steps without a score (left out of the ranking)",
                    a.missing_scores,
                ),
                (
                    "steps with a non-numeric score (left out of the ranking)",
                    a.unconvertible_scores,
                ),
            ] {
                if n > 0 {
                    out.push_str(&format!("\n  {what}: {n}"));
                }
            }
        }
        for (reason, n) in &t.dropped {
            out.push_str(&format!(
                "\n  chosen but dropped at write time ({reason:?}): {n}"
            ));
        }
        out
    }
}

/// One file's result before the ordered merge.
struct FileOutcome {
    report: SourceReport,
    chosen: Vec<(u64, usize, f64)>, // (line, position among ranked, key), written ones only
    ranked: Vec<(u64, u64)>,        // (line, scored steps) of every ranked rollout
}

/// Selects from a folder of raw annotation files (`*.jsonl`, sorted), writing the requested
/// outputs atomically. Fails without writing anything when the folder is missing or holds no
/// annotation file.
pub fn select_annotations(
    dir: &Path,
    selector: &dyn Selector,
    ratio: f64,
    strictness: Strictness,
    outputs: &SelectOutputs,
) -> Result<SelectReport> {
    check_ratio(ratio)?;
    let files = list_annotation_files(dir)?;
    if files.is_empty() {
        return Err(Error::EmptyInput(format!(
            "no *.jsonl files in {}",
            dir.display()
        )));
    }
    let bar = crate::progress::bar(files.len() as u64, "select");
    let (outcomes, prm) =
        par_map_concat(&files, outputs.prm_lines.as_deref(), |index, path, out| {
            let r = select_file(index, path, selector, ratio, strictness, out);
            bar.inc(1);
            r
        })?;
    bar.finish_and_clear();

    let mut report = SelectReport::new(selector, ratio, dir, strictness);
    let mut ids = Vec::new();
    let mut first_rollout = 0usize;
    let mut fingerprint = FingerprintBuilder::default();
    for outcome in outcomes {
        for &(line, steps) in &outcome.ranked {
            fingerprint.push(&outcome.report.source, line, steps);
        }
        for &(line, pos, key) in &outcome.chosen {
            ids.push(SelectedId {
                source: outcome.report.source.clone(),
                line: Some(line),
                rollout: first_rollout + pos,
                steps: Some(outcome.ranked[pos].1),
                score: key,
            });
        }
        first_rollout += outcome.report.ranked;
        report.push(outcome.report);
    }
    report.corpus = Some(fingerprint.finish());
    finish_outputs(&report, &ids, prm, outputs)?;
    Ok(report)
}

fn select_file(
    index: usize,
    path: &Path,
    selector: &dyn Selector,
    ratio: f64,
    strictness: Strictness,
    out: &mut dyn Write,
) -> Result<FileOutcome> {
    let scored = score_file(path, strictness)?;
    let lines: Vec<u64> = scored.rollouts.iter().map(|r| r.line).collect();
    let view = SourceView::new(
        index,
        &scored.source,
        &lines,
        &scored.score_offsets,
        &scored.scores,
    );
    let (keys, chosen) = select_source(selector, &view, ratio)?;

    let mut report = SourceReport {
        source: scored.source.clone(),
        file: Some(path.to_path_buf()),
        lines: Some(scored.counts.clone()),
        ranked: view.len(),
        chosen: chosen.len(),
        ..Default::default()
    };
    let mut kept = Vec::with_capacity(chosen.len());
    let file = File::open(path).at(path)?;
    let mut buf = Vec::new();
    let mut line_out = String::new();
    for &pos in &chosen {
        let r = scored.rollouts[pos];
        buf.resize(r.len as usize, 0);
        file.read_exact_at(&mut buf, r.offset).at(path)?;
        let rec = match parse_line(&buf) {
            Ok(Some(rec)) => rec,
            _ => {
                return Err(Error::bad_record(
                    path,
                    r.line,
                    "line changed between the ranking and the writing pass",
                ));
            }
        };
        line_out.clear();
        match bis_builder_line(&rec, &mut line_out) {
            Ok(()) => {
                line_out.push('\n');
                out.write_all(line_out.as_bytes()).at(path)?;
                report.written += 1;
                kept.push((r.line, pos, keys[pos]));
            }
            Err(reason) => *report.dropped.entry(reason).or_default() += 1,
        }
    }
    let ranked = (0..view.len())
        .map(|i| (lines[i], scored.scores_of(i).len() as u64))
        .collect();
    Ok(FileOutcome {
        report,
        chosen: kept,
        ranked,
    })
}

/// Selects from a features bundle (scores from `mc_scores`, sources from `source`); only id and
/// report outputs are possible, since a bundle holds no text.
pub fn select_bundle(
    bundle: &FeatureBundle,
    selector: &dyn Selector,
    ratio: f64,
    outputs: &SelectOutputs,
) -> Result<SelectReport> {
    if outputs.prm_lines.is_some() {
        return Err(Error::invalid(
            "a features bundle holds no text, so it cannot produce PRM lines; write --ids instead",
        ));
    }
    let (report, ids) = choose_from_bundle(bundle, selector, ratio)?;
    finish_outputs(&report, &ids, None, outputs)?;
    Ok(report)
}

/// The rollouts `selector` keeps from a bundle at budget `ratio` (in corpus order), without
/// writing anything.
pub fn choose_from_bundle(
    bundle: &FeatureBundle,
    selector: &dyn Selector,
    ratio: f64,
) -> Result<(SelectReport, Vec<SelectedId>)> {
    check_ratio(ratio)?;
    let input = bundle.path().map(Path::to_path_buf).unwrap_or_default();
    let mut report = SelectReport::new(selector, ratio, &input, Strictness::Strict);
    report.corpus = Some(bundle.fingerprint());
    let mut ids = Vec::new();
    for (s, name) in bundle.meta().sources.iter().enumerate() {
        let members: Vec<usize> = (0..bundle.n_rollouts())
            .filter(|&i| bundle.source()[i] as usize == s)
            .collect();
        let lines: Vec<u64> = members
            .iter()
            .enumerate()
            .map(|(pos, &i)| bundle.line().map_or(pos as u64, |l| l[i]))
            .collect();
        let mut offsets = Vec::with_capacity(members.len() + 1);
        offsets.push(0);
        let mut scores = Vec::new();
        for &i in &members {
            scores.extend(
                bundle.mc_scores()[bundle.rollout_steps(i)]
                    .iter()
                    .map(|&v| v as f64),
            );
            offsets.push(scores.len());
        }
        let mut view = SourceView::new(s, name, &lines, &offsets, &scores);
        view.corpus_index = Some(&members);
        let (keys, chosen) = select_source(selector, &view, ratio)?;
        for &pos in &chosen {
            ids.push(SelectedId {
                source: name.clone(),
                line: bundle.line().map(|l| l[members[pos]]),
                rollout: members[pos],
                steps: Some(bundle.rollout_len(members[pos]) as u64),
                score: keys[pos],
            });
        }
        report.push(SourceReport {
            source: name.clone(),
            ranked: members.len(),
            chosen: chosen.len(),
            written: chosen.len(),
            ..Default::default()
        });
    }
    ids.sort_by_key(|id| id.rollout);
    Ok((report, ids))
}

/// Checks the corpus against `outputs.same_corpus_as`, then makes every output visible together.
fn finish_outputs(
    report: &SelectReport,
    ids: &[SelectedId],
    prm: Option<AtomicFile>,
    outputs: &SelectOutputs,
) -> Result<()> {
    let corpus = report
        .corpus
        .expect("every selection fingerprints its input");
    if let Some((other, fp)) = &outputs.same_corpus_as {
        check_same_corpus(&report.input, &corpus, other, fp)?;
    }
    let mut staged = Staged::new();
    if let Some(f) = prm {
        staged.push(f);
    }
    if let Some(path) = &outputs.ids {
        let settings = format!(
            "selector={} top_ratio={} input={}",
            report.selector,
            report.top_ratio,
            report.input.display()
        );
        staged.push(stage_ids(path, &corpus, &settings, ids)?);
    }
    if let Some(path) = &outputs.report {
        staged.push(stage_json(path, report)?);
    }
    staged.commit()
}
