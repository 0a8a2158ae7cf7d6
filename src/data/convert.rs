//! Full-data conversion: every rollout of a raw annotation folder to PRM training lines, with the
//! reference converter's rules (unusable steps left out, rollouts without an image or without any
//! usable step dropped) and hard (`s > τ`) or soft (`s`) labels.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::data::prm_line::{ConvertLabels, DropReason, converter_line};
use crate::data::raw::{
    LineCounts, Strictness, for_each_record, list_annotation_files, source_name,
};
use crate::error::{Error, Result};
use crate::output::par_map_concat;

/// What happened to one source file.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConvertSource {
    /// Source name.
    pub source: String,
    /// Input file.
    pub file: PathBuf,
    /// Line-level counts.
    pub lines: LineCounts,
    /// Lines written.
    pub written: u64,
    /// Records that produced no line, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
}

/// The conversion, as recorded next to its output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConvertReport {
    /// Producer.
    pub tool: String,
    /// Input folder.
    pub input: PathBuf,
    /// Label rule.
    pub labels: ConvertLabels,
    /// How bad lines were treated.
    pub strictness: Strictness,
    /// Per source, in sorted file order.
    pub sources: Vec<ConvertSource>,
    /// Lines written in all.
    pub written: u64,
}

/// Converts every `*.jsonl` file of `dir` (sorted) into one PRM-line file at `output`.
pub fn convert_annotations(
    dir: &Path,
    labels: ConvertLabels,
    strictness: Strictness,
    output: &Path,
) -> Result<ConvertReport> {
    if let ConvertLabels::Hard { threshold } = labels
        && !threshold.is_finite()
    {
        return Err(Error::invalid(format!(
            "label threshold {threshold} is not finite"
        )));
    }
    let files = list_annotation_files(dir)?;
    if files.is_empty() {
        return Err(Error::EmptyInput(format!(
            "no *.jsonl files in {}",
            dir.display()
        )));
    }
    let bar = crate::progress::bar(files.len() as u64, "convert");
    let (sources, out) = par_map_concat(&files, Some(output), |_, path, out| {
        let r = convert_file(path, labels, strictness, out);
        bar.inc(1);
        r
    })?;
    bar.finish_and_clear();
    let written = sources.iter().map(|s| s.written).sum();
    out.expect("a destination was given").commit()?;
    Ok(ConvertReport {
        tool: format!("mprm {}", env!("CARGO_PKG_VERSION")),
        input: dir.to_path_buf(),
        labels,
        strictness,
        sources,
        written,
    })
}

fn convert_file(
    path: &Path,
    labels: ConvertLabels,
    strictness: Strictness,
    out: &mut dyn Write,
) -> Result<ConvertSource> {
    let mut report = ConvertSource {
        source: source_name(path),
        file: path.to_path_buf(),
        ..Default::default()
    };
    let mut pending = String::new();
    let mut io_error = None;
    let mut fatal = None;
    let counts = for_each_record(path, strictness, |line, rec, _| {
        let start = pending.len();
        match converter_line(rec, labels, &mut pending) {
            Ok(()) => {
                pending.push('\n');
                report.written += 1;
            }
            Err(reason) => {
                pending.truncate(start);
                // Drops are the reference's normal behaviour; anything else would crash it.
                let reference_drop = matches!(reason, DropReason::NoImage | DropReason::NoSteps);
                if strictness == Strictness::Strict && !reference_drop && fatal.is_none() {
                    fatal = Some(Error::bad_record(
                        path,
                        line.index,
                        format!("cannot convert: {reason:?}"),
                    ));
                }
                *report.dropped.entry(reason).or_default() += 1;
            }
        }
        if pending.len() >= 1 << 20 && io_error.is_none() {
            io_error = out.write_all(pending.as_bytes()).err();
            pending.clear();
        }
        Ok(())
    })?;
    if let Some(e) = fatal {
        return Err(e);
    }
    if io_error.is_none() {
        io_error = out.write_all(pending.as_bytes()).err();
    }
    if let Some(e) = io_error {
        return Err(Error::io(path, e));
    }
    report.lines = counts;
    Ok(report)
}
