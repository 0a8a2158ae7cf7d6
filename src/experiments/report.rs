//! Turning saved results into tables and plots, and the results folder's README.
//!
//! Each experiment saves its raw numbers as `<experiment>/results.json`; everything a reader
//! looks at is derived from that file alone, so `mprm report DIR` regenerates the same bytes
//! without rerunning anything.

use std::path::Path;

use crate::error::Result;
use crate::output::write_text;

use super::plot::Plot;
use super::table::Table;

/// The readable form of one experiment's results.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// Tables, by file stem.
    pub tables: Vec<(String, Table)>,
    /// Figures, by file stem.
    pub plots: Vec<(String, Plot)>,
    /// Markdown for the results README: findings in words, key tables inline.
    pub summary: String,
    /// The table printed at the end of a run.
    pub key_table: String,
}

impl Rendered {
    /// Writes every table and figure into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        for (stem, t) in &self.tables {
            t.save(dir, stem)?;
        }
        for (stem, p) in &self.plots {
            p.save(dir, stem)?;
        }
        Ok(())
    }

    /// A Markdown list of the files written, relative to the results root.
    pub fn file_list(&self, sub: &str) -> String {
        let mut out = String::new();
        for (stem, t) in &self.tables {
            out.push_str(&format!(
                "- {} — [`{sub}/{stem}.md`]({sub}/{stem}.md) (also `.csv`, `.json`)\n",
                t.title
            ));
        }
        for (stem, _) in &self.plots {
            out.push_str(&format!(
                "- figure [`{sub}/{stem}.svg`]({sub}/{stem}.svg) / `.png`\n"
            ));
        }
        out
    }
}

/// Writes the results folder's README from the manifest line and each experiment's rendering.
pub fn write_readme(dir: &Path, header: &str, parts: &[(&str, &Rendered)]) -> Result<()> {
    let mut text = header.to_string();
    for (sub, r) in parts {
        text.push_str(&r.summary);
        text.push_str("\nFiles:\n\n");
        text.push_str(&r.file_list(sub));
        text.push('\n');
    }
    write_text(dir.join("README.md"), &text)
}
