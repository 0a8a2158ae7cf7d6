//! Selection comparison: BIS against the paper's baselines and gradient-based selection, at
//! equal budgets, trained under the paper's protocol and scored on the bench with error bars.
//!
//! Every (selector, budget) cell trains one head per seed on the chosen subset (the seed drives
//! the random and mixed baselines, GraNd's initialisations, the EL2N/LESS proxies, the data order
//! and the initialisation; the corpus is fixed) and reports the bench's test Overall at the
//! threshold tuned on dev. A cell's learning rate is chosen on the dev split with the first
//! seed's subset. Cells are cached, so an interrupted sweep resumes where it stopped.

mod config;
mod render;
mod run;
mod summary;

pub use config::{SelectionConfig, SelectorSpec};
pub use render::{cost_table, derived_checks, render};
pub use run::{CellRecord, LrChoice, SelectionResults, SubsetProfile, run};
