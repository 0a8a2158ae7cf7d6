//! Experiments: configs in, result folders out (tables as Markdown/CSV/JSON, plots as SVG/PNG,
//! and a manifest), resumable cell by cell.

pub mod cells;
pub mod formulas;
pub mod manifest;
pub mod nan;
pub mod plot;
pub mod stats;
pub mod table;
