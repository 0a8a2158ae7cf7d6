//! Selection comparison: BIS against the paper's baselines and gradient-based selection.

use super::context::ExperimentContext;
use super::report::Rendered;
use crate::error::Result;

/// Settings of the selection comparison.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionConfig {}

impl SelectionConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// Everything the comparison measured.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SelectionResults {}

/// Runs the comparison; also returns each method's selection wall time (seconds), which is kept
/// out of the results so they stay byte-identical between runs.
pub fn run(
    _cfg: &SelectionConfig,
    _ctx: &ExperimentContext<'_>,
) -> Result<(SelectionResults, std::collections::BTreeMap<String, f64>)> {
    Ok((SelectionResults {}, Default::default()))
}

/// Tables, figures and the summary of the results.
pub fn render(_r: &SelectionResults) -> Rendered {
    Rendered::default()
}
