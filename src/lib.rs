//! mprm: data selection for multimodal process reward models.
//!
//! The crate follows the pipeline a researcher runs, one module per stage:
//!
//! ```text
//! data → select → gradnorm → train → eval → experiments
//! ```
//!
//! * [`data`]: MC-annotated rollouts in the VisualPRM400K raw layout (streaming, Python-exact
//!   parsing), converted PRM lines, VisualProcessBench records, and the features bundle.
//! * [`sim`]: a calibrated simulator with a known linear-logistic teacher.
//! * [`select`]: BIS and the paper's baselines behind one selector trait, plus gradient-based
//!   selectors; byte-compatible with the reference selection script.
//! * [`gradnorm`]: per-rollout gradients of the MPRM loss for linear and MLP heads, on the CPU or
//!   through custom CUDA kernels.
//! * [`train`]: PRM heads trained on step features with Burn under the paper's protocol.
//! * [`world`]: the learned-policy world: problems with an exact verifier, a small policy trained
//!   and sampled with Burn, and Monte Carlo annotation of its rollouts (no corpus command yet).
//! * [`eval`]: VisualProcessBench metrics with dev-tuned thresholds, and best-of-N reranking.
//! * [`experiments`]: theory checks and selection comparisons, with tables and plots.
#![warn(missing_docs)]

pub mod alloc;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod experiments;
pub mod fused_ops;
pub mod gradient_selection;
pub mod gradnorm;
pub mod head;
pub mod linalg;
pub mod lock;
pub mod logistic;
pub mod output;
pub mod paths;
pub mod prm_model;
pub mod progress;
pub mod select;
pub mod sim;
pub mod train;
pub mod world;

pub use error::{Error, Result};
