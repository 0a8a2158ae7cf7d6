//! Experiments: configs in, result folders out (tables as Markdown/CSV/JSON, plots as SVG/PNG,
//! and a manifest), resumable cell by cell.
//!
//! * [`theory`]: the paper's formulas (Eqs. 5–6, Lemmas 2–3, Finding 6) and the informativeness
//!   of each rollout's update, measured against the simulator's ground truth.
//! * [`selection`]: BIS, the paper's baselines and gradient-based selectors at equal budgets,
//!   trained under the paper's protocol and scored on the bench with error bars.
//! * [`runner`]: `mprm experiment` / `mprm report`.

pub mod cells;
pub mod checks;
pub mod config;
pub mod context;
pub mod formulas;
pub mod intervention;
pub mod manifest;
pub mod nan;
pub mod plot;
pub mod regime;
pub mod report;
pub mod runner;
pub mod selection;
pub mod stats;
pub mod table;
pub mod theory;
pub mod training;
