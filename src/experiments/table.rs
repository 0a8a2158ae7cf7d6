//! Result tables, written three ways from one value: Markdown for reading, CSV for
//! spreadsheets, JSON for `mprm report` and other programs.

use std::path::Path;

use super::stats::MeanCi;
use crate::error::Result;
use crate::output::{push_csv_field, write_json, write_text};

/// One table cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cell {
    /// Free text.
    Text {
        /// The text.
        text: String,
    },
    /// A number shown with `digits` decimals.
    Num {
        /// The value.
        #[serde(with = "super::nan")]
        value: f64,
        /// Decimals shown.
        digits: usize,
    },
    /// A mean ± 95% CI half-width.
    Ci {
        /// Mean and interval.
        ci: MeanCi,
        /// Decimals shown.
        digits: usize,
    },
    /// An estimate with an explicit [lo, hi] interval.
    Interval {
        /// Point value.
        #[serde(with = "super::nan")]
        value: f64,
        /// Lower end.
        #[serde(with = "super::nan")]
        lo: f64,
        /// Upper end.
        #[serde(with = "super::nan")]
        hi: f64,
        /// Decimals shown.
        digits: usize,
    },
    /// Nothing.
    Empty,
}

impl Cell {
    /// A text cell.
    pub fn text(s: impl Into<String>) -> Self {
        Cell::Text { text: s.into() }
    }

    /// A number cell.
    pub fn num(value: f64, digits: usize) -> Self {
        Cell::Num { value, digits }
    }

    fn fmt(v: f64, digits: usize) -> String {
        if v.is_nan() {
            "–".into()
        } else {
            format!("{v:.digits$}")
        }
    }

    /// The cell as shown in Markdown.
    pub fn display(&self) -> String {
        match self {
            Cell::Text { text } => text.clone(),
            Cell::Num { value, digits } => Self::fmt(*value, *digits),
            Cell::Ci { ci, digits } => {
                if ci.half_width.is_nan() {
                    Self::fmt(ci.mean, *digits)
                } else {
                    format!(
                        "{} ± {}",
                        Self::fmt(ci.mean, *digits),
                        Self::fmt(ci.half_width, *digits)
                    )
                }
            }
            Cell::Interval {
                value,
                lo,
                hi,
                digits,
            } => format!(
                "{} [{}, {}]",
                Self::fmt(*value, *digits),
                Self::fmt(*lo, *digits),
                Self::fmt(*hi, *digits)
            ),
            Cell::Empty => String::new(),
        }
    }

    fn csv_fields(&self) -> Vec<String> {
        match self {
            Cell::Text { text } => vec![text.clone()],
            Cell::Num { value, .. } => vec![value.to_string()],
            Cell::Ci { ci, .. } => vec![ci.mean.to_string(), ci.half_width.to_string()],
            Cell::Interval { value, lo, hi, .. } => {
                vec![value.to_string(), lo.to_string(), hi.to_string()]
            }
            Cell::Empty => vec![String::new()],
        }
    }
}

/// A titled table with notes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Table {
    /// Heading.
    pub title: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of cells, one per column.
    pub rows: Vec<Vec<Cell>>,
    /// Sentences printed under the table.
    pub notes: Vec<String>,
}

impl Table {
    /// An empty table with columns.
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Self {
        Table {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// Markdown rendering (heading level 3).
    pub fn to_markdown(&self) -> String {
        let mut out = format!("### {}\n\n| {} |\n|", self.title, self.columns.join(" | "));
        for _ in &self.columns {
            out.push_str("---|");
        }
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(Cell::display).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        for note in &self.notes {
            out.push_str(&format!("\n{note}\n"));
        }
        out
    }

    /// CSV rendering: interval cells expand to `col`, `col_ci95` (or `col_lo`, `col_hi`).
    pub fn to_csv(&self) -> String {
        let mut header = Vec::new();
        for (j, c) in self.columns.iter().enumerate() {
            match self.rows.first().map(|r| &r[j]) {
                Some(Cell::Ci { .. }) => header.extend([c.clone(), format!("{c}_ci95")]),
                Some(Cell::Interval { .. }) => {
                    header.extend([c.clone(), format!("{c}_lo"), format!("{c}_hi")])
                }
                _ => header.push(c.clone()),
            }
        }
        let quote = |s: &str| {
            let mut field = String::new();
            push_csv_field(&mut field, s);
            field
        };
        let mut out = header
            .iter()
            .map(|h| quote(h))
            .collect::<Vec<_>>()
            .join(",")
            + "\n";
        for row in &self.rows {
            let fields: Vec<String> = row
                .iter()
                .flat_map(Cell::csv_fields)
                .map(|f| quote(&f))
                .collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }

    /// Writes `stem.md`, `stem.csv` and `stem.json` into `dir`.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<()> {
        write_text(dir.join(format!("{stem}.md")), &self.to_markdown())?;
        write_text(dir.join(format!("{stem}.csv")), &self.to_csv())?;
        write_json(dir.join(format!("{stem}.json")), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_formats() {
        let mut t = Table::new("T", &["name", "score"]);
        t.push(vec![
            Cell::text("a,b"),
            Cell::Ci {
                ci: MeanCi {
                    mean: 0.5,
                    half_width: 0.125,
                    n: 5,
                },
                digits: 3,
            },
        ]);
        t.notes.push("note".into());
        assert_eq!(
            t.to_markdown(),
            "### T\n\n| name | score |\n|---|---|\n| a,b | 0.500 ± 0.125 |\n\nnote\n"
        );
        assert_eq!(t.to_csv(), "name,score,score_ci95\n\"a,b\",0.5,0.125\n");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Table>(&json).unwrap(), t);
    }
}
