//! Per-rollout gradients of the MPRM loss with respect to a PRM head.
//!
//! For rollout x with steps j = 1..n, step features h_j, targets y_j and logits z_j = head(h_j),
//! the loss is `L = c · Σ_j BCE(z_j, y_j)` with `c = 1/n` (the [`Reduction::Mean`] default, the
//! reference trainer's per-step mean) or `c = 1` ([`Reduction::Sum`]). With residuals
//! `r_j = ∂L/∂z_j = c(σ(z_j) − y_j)` every statistic below follows (see
//! `gradient-methods.md` §2–3 for the algebra):
//!
//! | statistic | meaning |
//! |---|---|
//! | `loss` | L |
//! | `grad_sq` | ‖∇_θ L‖² over all head parameters (= Σ of the per-group values) |
//! | `group_grad_sq` | the same per parameter group: linear `w`, `b`; mlp `w1`, `b1`, `w2`, `b2` |
//! | `centered_grad_sq` | ‖∇_θ L‖² with r replaced by r − r̄ (residuals centred within the rollout) |
//! | `sum_step_grad_sq` | Σ_j ‖∇_θ (c · BCE_j)‖² |
//! | `resid_sq` | ‖r‖² = Σ_j r_j² (so EL2N = √resid_sq / c) |
//! | `n_steps` | n |
//!
//! Flattened parameter order (used by [`Projection::Directions`], [`total_gradient`],
//! [`flatten_params`]): linear `w[0..d], b`; mlp `w1` row-major `[h, d]`, `b1[h]`, `w2[h]`, `b2`.
//!
//! Three implementations share this contract: [`oracle`] (f64, direct per-step gradients, slow,
//! the ground truth), [`cpu`] (f32 or bf16 inputs, f64 sums, or f32 sums for the linear head when
//! [`Accumulation::F32`] asks; rayon) and `cuda` (NVRTC kernels, f32 accumulation). This module is the only place that matches on [`Device`].

pub mod bench;
pub mod cpu;
pub mod engine;
pub mod fixture;
pub mod input;
pub mod kernels;
pub mod options;
pub mod oracle;
pub mod params;
pub mod plan;
pub mod point;
pub mod resident;
pub mod sketch;
pub mod stats;
pub mod table;
pub mod twins;
pub mod verify;

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_disabled.rs"]
pub mod cuda;

pub use engine::{
    GradNormEngine, engine, rollout_grad_stats, rollout_grad_stats_subset, sketch_cosines,
    total_gradient, weighted_gram,
};
pub use input::GradInput;
pub use options::{Accumulation, GradNormOptions, Projection, ProjectionMatrix, Reduction};
pub use params::{flatten_params, head_from_flat, param_groups};
pub use plan::{chunk_rollouts, ghost_is_cheaper, ghost_limit};
pub use stats::RolloutGradStats;
pub(crate) use stats::{RolloutRow, StatColumns};
