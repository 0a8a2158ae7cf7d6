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
        let mut columns = StatColumns::with_capacity(input.head, rows.len());
        columns.extend(rows);
        Self::for_input_columns(input, reduction, columns, projection, projected)
    }

    /// [`Self::for_input`] from rows already gathered into columns.
    pub(crate) fn for_input_columns(
        input: &GradInput<'_>,
        reduction: Reduction,
        columns: StatColumns,
        projection: Option<&ProjectionMatrix>,
        projected: Option<Vec<f32>>,
    ) -> Self {
        columns.finish(
            reduction,
            input.rollout_indices(),
            input.n_steps(),
            projection.zip(projected).map(|(p, v)| (p.k, v)),
        )
    }

    /// Assembles the arrays from per-rollout rows.
    #[cfg(test)]
    pub(crate) fn from_rows(
        head: &HeadParams,
        reduction: Reduction,
        rollouts: Vec<usize>,
        n_steps: Vec<u32>,
        rows: &[RolloutRow],
        projected: Option<(usize, Vec<f32>)>,
    ) -> Self {
        let mut columns = StatColumns::with_capacity(head, rows.len());
        columns.extend(rows);
        columns.finish(reduction, rollouts, n_steps, projected)
    }
}

/// The scalar columns of a [`RolloutGradStats`], filled from rows pushed in rollout order. An
/// engine that scores rollouts in blocks pushes each block while its rows are still in cache,
/// rather than keeping every row and reading them all back once per column.
pub(crate) struct StatColumns {
    groups: Vec<&'static str>,
    loss: Vec<f64>,
    grad_sq: Vec<f64>,
    centered: Vec<f64>,
    sum_step: Vec<f64>,
    resid_sq: Vec<f64>,
    by_group: Vec<Vec<f64>>,
}

impl StatColumns {
    /// Empty columns for `head`'s parameter groups, with room for `n` rollouts.
    pub(crate) fn with_capacity(head: &HeadParams, n: usize) -> Self {
        let groups: Vec<&'static str> = param_groups(head).iter().map(|(g, _)| *g).collect();
        let column = || Vec::with_capacity(n);
        StatColumns {
            by_group: groups.iter().map(|_| column()).collect(),
            groups,
            loss: column(),
            grad_sq: column(),
            centered: column(),
            sum_step: column(),
            resid_sq: column(),
        }
    }

    /// Appends `rows`, in order: one tight loop per column over rows that are in cache.
    pub(crate) fn extend(&mut self, rows: &[RolloutRow]) {
        let n_groups = self.groups.len();
        self.loss.extend(rows.iter().map(|r| r.loss));
        self.grad_sq.extend(
            rows.iter()
                .map(|r| r.groups[..n_groups].iter().sum::<f64>()),
        );
        self.centered.extend(rows.iter().map(|r| r.centered));
        self.sum_step.extend(rows.iter().map(|r| r.sum_step));
        self.resid_sq.extend(rows.iter().map(|r| r.resid_sq));
        for (g, col) in self.by_group.iter_mut().enumerate() {
            col.extend(rows.iter().map(|r| r.groups[g]));
        }
    }

    fn finish(
        self,
        reduction: Reduction,
        rollouts: Vec<usize>,
        n_steps: Vec<u32>,
        projected: Option<(usize, Vec<f32>)>,
    ) -> RolloutGradStats {
        RolloutGradStats {
            rollouts,
            reduction,
            loss: self.loss,
            grad_sq: self.grad_sq,
            centered_grad_sq: self.centered,
            sum_step_grad_sq: self.sum_step,
            resid_sq: self.resid_sq,
            n_steps,
            group_grad_sq: self
                .groups
                .iter()
                .map(|g| g.to_string())
                .zip(self.by_group)
                .collect(),
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
