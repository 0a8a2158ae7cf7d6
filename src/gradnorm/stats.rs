//! Per-rollout gradient statistics as the engines return them (a struct of arrays).

use super::input::GradInput;
use super::options::{ProjectionMatrix, Reduction};
use super::params::param_groups;
use crate::head::HeadParams;

/// Per-rollout gradient statistics, as a struct of arrays (one entry per scored rollout).
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutGradStats {
    /// Bundle index of each scored rollout.
    pub rollouts: Vec<usize>,
    /// Reduction the statistics were computed with.
    pub reduction: Reduction,
    /// Loss L.
    pub loss: Vec<f64>,
    /// ‖∇L‖² over all parameters.
    pub grad_sq: Vec<f64>,
    /// ‖∇L‖² with residuals centred within the rollout.
    pub centered_grad_sq: Vec<f64>,
    /// Σ_j ‖∇ℓ_j‖².
    pub sum_step_grad_sq: Vec<f64>,
    /// ‖r‖².
    pub resid_sq: Vec<f64>,
    /// Steps per rollout.
    pub n_steps: Vec<u32>,
    /// ‖∇L‖² per parameter group, in [`param_groups`] order.
    pub group_grad_sq: Vec<(String, Vec<f64>)>,
    /// k and the projected gradients, row-major [R, k].
    pub projected: Option<(usize, Vec<f32>)>,
}

impl RolloutGradStats {
    /// Number of scored rollouts.
    pub fn len(&self) -> usize {
        self.rollouts.len()
    }

    /// True when no rollout was scored.
    pub fn is_empty(&self) -> bool {
        self.rollouts.is_empty()
    }

    /// The scalar statistics by name, in output-column order (`n_steps` excluded).
    pub fn columns(&self) -> Vec<(String, &[f64])> {
        let mut cols: Vec<(String, &[f64])> = vec![
            ("loss".into(), &self.loss),
            ("grad_sq".into(), &self.grad_sq),
        ];
        for (name, v) in &self.group_grad_sq {
            cols.push((format!("grad_sq_{name}"), v));
        }
        cols.push(("centered_grad_sq".into(), &self.centered_grad_sq));
        cols.push(("sum_step_grad_sq".into(), &self.sum_step_grad_sq));
        cols.push(("resid_sq".into(), &self.resid_sq));
        cols
    }

    /// The engines' common exit: the rows of `input`'s rollouts, in order, and their projections
    /// when a projection was asked for.
    pub(crate) fn for_input(
        input: &GradInput<'_>,
        reduction: Reduction,
        rows: &[RolloutRow],
        projection: Option<&ProjectionMatrix>,
        projected: Option<Vec<f32>>,
    ) -> Self {
        Self::from_rows(
            input.head,
            reduction,
            input.rollout_indices(),
            input.n_steps(),
            rows,
            projection.zip(projected).map(|(p, v)| (p.k, v)),
        )
    }

    /// Assembles the arrays from per-rollout rows.
    pub(crate) fn from_rows(
        head: &HeadParams,
        reduction: Reduction,
        rollouts: Vec<usize>,
        n_steps: Vec<u32>,
        rows: &[RolloutRow],
        projected: Option<(usize, Vec<f32>)>,
    ) -> Self {
        let groups = param_groups(head);
        let group_grad_sq = groups
            .iter()
            .enumerate()
            .map(|(g, (name, _))| (name.to_string(), rows.iter().map(|r| r.groups[g]).collect()))
            .collect();
        RolloutGradStats {
            rollouts,
            reduction,
            loss: rows.iter().map(|r| r.loss).collect(),
            grad_sq: rows
                .iter()
                .map(|r| r.groups[..groups.len()].iter().sum())
                .collect(),
            centered_grad_sq: rows.iter().map(|r| r.centered).collect(),
            sum_step_grad_sq: rows.iter().map(|r| r.sum_step).collect(),
            resid_sq: rows.iter().map(|r| r.resid_sq).collect(),
            n_steps,
            group_grad_sq,
            projected,
        }
    }
}

/// Most parameter groups any head has.
pub(crate) const MAX_GROUPS: usize = 4;

/// One rollout's scalar statistics, as the engines produce them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RolloutRow {
    pub loss: f64,
    /// Per-group squared norms; unused trailing slots stay 0.
    pub groups: [f64; MAX_GROUPS],
    pub centered: f64,
    pub sum_step: f64,
    pub resid_sq: f64,
}
