//! Judging a PRM: VisualProcessBench step metrics with a dev-tuned threshold, and best-of-N
//! reranking.
//!
//! * [`metrics`]: the reference script's metric, exactly (per-source macro-F1, step-weighted
//!   Overall, pooled macro-F1, AUC).
//! * [`threshold`]: candidate thresholds, tuning on dev, and the [`BenchReport`].
//! * [`best_of_n`]: pick one of N candidates by aggregated step scores.
//! * [`scores`]: step scores from a file, for PRMs evaluated elsewhere.
//!
//! Scores come either from a model on bench features ([`evaluate_model`], [`evaluate_head`]) or
//! from a scores file ([`evaluate_scores`]); both end in the same report.

pub mod best_of_n;
pub mod metrics;
mod report;
pub mod scores;
pub mod threshold;

pub use best_of_n::{Aggregate, BestOfNReport, best_of_n};
pub use report::{
    EvalReport, ModelSource, check_scores_file, evaluate_head, evaluate_model, evaluate_scores,
    evaluate_source, model_scores,
};
pub use scores::{EntryPlace, ScoresFile, StepScores, read_scores, read_scores_file};
pub use threshold::{BenchReport, MetricsAt};
