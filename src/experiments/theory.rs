//! Theory checks: the paper's formulas against measurements on the simulator.

use super::context::ExperimentContext;
use super::report::Rendered;
use crate::error::Result;

/// Settings of the theory checks.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TheoryConfig {}

/// Everything the theory checks measured.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TheoryResults {}

/// Runs every check.
pub fn run(_cfg: &TheoryConfig, _ctx: &ExperimentContext<'_>) -> Result<TheoryResults> {
    Ok(TheoryResults {})
}

/// Tables, figures and the summary of the results.
pub fn render(_r: &TheoryResults) -> Rendered {
    Rendered::default()
}
