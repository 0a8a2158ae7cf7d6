//! The f64 ground truth for per-rollout gradients: slow on purpose and obviously correct.
//!
//! Every step's logit gradient ∂z_j/∂θ is materialised as a full parameter vector and the
//! rollout gradient is the residual-weighted sum of those vectors, exactly the chain rule written
//! out. The engines ([`super::cpu`], `super::cuda`) use cheaper algebra (column accumulation,
//! ghost norms) and are tested against this module; this module is tested against finite
//! differences, burn's autodiff and the hand-computed fixtures of the reference notes.
//!
//! The Gram and ghost forms (`rᵀKr`, ⟨DDᵀ, HHᵀ⟩) live here too, as independent cross-checks of
//! the direct form.

use crate::error::Result;
use crate::head::{HeadParams, MlpHead};

use super::{GradInput, ProjectionMatrix, Reduction, RolloutGradStats, RolloutRow, param_groups};
use crate::logistic::{bce_with_logits, sigmoid};

/// Everything the oracle knows about one rollout's gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutGradient {
    /// L = c Σ BCE.
    pub loss: f64,
    /// r_j = c(σ(z_j) − y_j), length n.
    pub resid: Vec<f64>,
    /// ∇_θ L, flattened, length P.
    pub grad: Vec<f64>,
    /// ∇_θ L with r replaced by r − r̄, length P.
    pub centered: Vec<f64>,
    /// ‖∇_θ(c·BCE_j)‖² per step, length n.
    pub step_grad_sq: Vec<f64>,
    /// Σ_j |r_j| |∂z_j/∂θ|, elementwise, length P: `grad` as it would be if no sum cancelled.
    pub grad_abs: Vec<f64>,
    /// Σ_j (|r_j| + mean_i |r_i|) |∂z_j/∂θ|, length P: the same for `centered`, whose weights
    /// r_j − r̄ are differences of terms of these sizes (an f32 r̄ errs by a multiple of
    /// mean |r_i|, not of |r̄|, when the residuals cancel).
    pub centered_abs: Vec<f64>,
}

/// ∂z/∂θ for one feature row `phi` (length d), flattened, length P.
pub fn logit_gradient(head: &HeadParams, phi: &[f64]) -> Vec<f64> {
    match head {
        HeadParams::Linear(_) => phi.iter().copied().chain([1.0]).collect(),
        HeadParams::Mlp(h) => {
            let (d, hid) = (h.dim, h.hidden());
            let mut g = vec![0.0; head.n_params()];
            for m in 0..hid {
                let u = pre_activation(h, m, phi);
                // ∂z/∂u_m = w2_m φ'(u_m); ∂u_m/∂W1[m, e] = phi_e, ∂u_m/∂b1_m = 1.
                let back = h.w2[m] as f64 * h.activation.derivative(u);
                for e in 0..d {
                    g[m * d + e] = back * phi[e];
                }
                g[hid * d + m] = back;
                g[hid * d + hid + m] = h.activation.apply(u);
            }
            g[hid * d + 2 * hid] = 1.0;
            g
        }
    }
}

fn pre_activation(h: &MlpHead, m: usize, phi: &[f64]) -> f64 {
    let row = &h.w1[m * h.dim..(m + 1) * h.dim];
    row.iter()
        .zip(phi)
        .map(|(&w, &x)| w as f64 * x)
        .sum::<f64>()
        + h.b1[m] as f64
}

/// The rollout loss L for rows `rows` ([n, d] row-major) and `targets` (n).
pub fn rollout_loss(head: &HeadParams, rows: &[f64], targets: &[f64], reduction: Reduction) -> f64 {
    let d = head.dim();
    let c = reduction.weight(targets.len());
    targets
        .iter()
        .enumerate()
        .map(|(j, &y)| c * bce_with_logits(head.logit(&rows[j * d..(j + 1) * d]), y))
        .sum()
}

/// The full gradient record of one rollout: rows [n, d] row-major, targets [n], n ≥ 1.
pub fn rollout_gradient(
    head: &HeadParams,
    rows: &[f64],
    targets: &[f64],
    reduction: Reduction,
) -> RolloutGradient {
    let d = head.dim();
    let n = targets.len();
    let c = reduction.weight(n);
    let p = head.n_params();
    let row = |j: usize| &rows[j * d..(j + 1) * d];
    let z: Vec<f64> = (0..n).map(|j| head.logit(row(j))).collect();
    let resid: Vec<f64> = z
        .iter()
        .zip(targets)
        .map(|(&z, &y)| c * (sigmoid(z) - y))
        .collect();
    let loss = z
        .iter()
        .zip(targets)
        .map(|(&z, &y)| c * bce_with_logits(z, y))
        .sum();
    let r_bar = resid.iter().sum::<f64>() / n as f64;
    let mean_abs_r = resid.iter().map(|r| r.abs()).sum::<f64>() / n as f64;
    let mut grad = vec![0.0; p];
    let mut centered = vec![0.0; p];
    let mut grad_abs = vec![0.0; p];
    let mut centered_abs = vec![0.0; p];
    let mut step_grad_sq = Vec::with_capacity(n);
    for (j, &r) in resid.iter().enumerate() {
        let dz = logit_gradient(head, row(j));
        for k in 0..p {
            grad[k] += r * dz[k];
            centered[k] += (r - r_bar) * dz[k];
            grad_abs[k] += r.abs() * dz[k].abs();
            centered_abs[k] += (r.abs() + mean_abs_r) * dz[k].abs();
        }
        step_grad_sq.push(r * r * dz.iter().map(|v| v * v).sum::<f64>());
    }
    RolloutGradient {
        loss,
        resid,
        grad,
        centered,
        step_grad_sq,
        grad_abs,
        centered_abs,
    }
}

/// Central finite differences of [`rollout_loss`] in every parameter (step `eps`), flattened.
pub fn finite_difference_gradient(
    head: &HeadParams,
    rows: &[f64],
    targets: &[f64],
    reduction: Reduction,
    eps: f64,
) -> Vec<f64> {
    // Parameters are f32 in HeadParams, so perturb an f64 copy through a closure over the
    // flattened vector rather than the stored head.
    let base: Vec<f64> = super::flatten_params(head)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let loss_at = |theta: &[f64]| -> f64 {
        let d = head.dim();
        let c = reduction.weight(targets.len());
        targets
            .iter()
            .enumerate()
            .map(|(j, &y)| c * bce_with_logits(logit_at(head, theta, &rows[j * d..(j + 1) * d]), y))
            .sum()
    };
    (0..base.len())
        .map(|k| {
            let mut plus = base.clone();
            let mut minus = base.clone();
            plus[k] += eps;
            minus[k] -= eps;
            (loss_at(&plus) - loss_at(&minus)) / (2.0 * eps)
        })
        .collect()
}

/// z for a head of `head`'s shape with f64 flattened parameters `theta`.
fn logit_at(head: &HeadParams, theta: &[f64], phi: &[f64]) -> f64 {
    let d = head.dim();
    match head {
        HeadParams::Linear(_) => {
            theta[..d].iter().zip(phi).map(|(w, x)| w * x).sum::<f64>() + theta[d]
        }
        HeadParams::Mlp(h) => {
            let hid = h.hidden();
            let (b1, w2) = (hid * d, hid * d + hid);
            let mut z = theta[hid * d + 2 * hid];
            for m in 0..hid {
                let u = theta[m * d..(m + 1) * d]
                    .iter()
                    .zip(phi)
                    .map(|(w, x)| w * x)
                    .sum::<f64>()
                    + theta[b1 + m];
                z += theta[w2 + m] * h.activation.apply(u);
            }
            z
        }
    }
}

/// The Gram form of a linear head's weight-gradient norm: rᵀ K r with K = H Hᵀ.
pub fn linear_gram_sq(rows: &[f64], d: usize, resid: &[f64]) -> f64 {
    let k = gram(rows, d, resid.len());
    quadratic_form(&k, resid, resid)
}

/// ‖∇W₁‖² of an MLP head by the ghost form ⟨D Dᵀ, H Hᵀ⟩, with δ_j = r_j (w₂ ⊙ φ'(u_j)).
pub fn mlp_w1_ghost_sq(head: &MlpHead, rows: &[f64], resid: &[f64]) -> f64 {
    let n = resid.len();
    let deltas = mlp_deltas(head, rows, resid);
    let hid = head.hidden();
    let dd = gram(&deltas, hid, n);
    let k = gram(rows, head.dim, n);
    dd.iter().zip(&k).map(|(a, b)| a * b).sum()
}

/// ‖∇W₁‖² of an MLP head by materialising Dᵀ H ([h, d]).
pub fn mlp_w1_direct_sq(head: &MlpHead, rows: &[f64], resid: &[f64]) -> f64 {
    let (d, hid, n) = (head.dim, head.hidden(), resid.len());
    let deltas = mlp_deltas(head, rows, resid);
    let mut total = 0.0;
    for m in 0..hid {
        for e in 0..d {
            let g: f64 = (0..n).map(|j| deltas[j * hid + m] * rows[j * d + e]).sum();
            total += g * g;
        }
    }
    total
}

/// δ_j = r_j (w₂ ⊙ φ'(u_j)), stacked [n, h].
fn mlp_deltas(head: &MlpHead, rows: &[f64], resid: &[f64]) -> Vec<f64> {
    let (d, hid) = (head.dim, head.hidden());
    let mut out = Vec::with_capacity(resid.len() * hid);
    for (j, &r) in resid.iter().enumerate() {
        let phi = &rows[j * d..(j + 1) * d];
        for m in 0..hid {
            let u = pre_activation(head, m, phi);
            out.push(r * head.w2[m] as f64 * head.activation.derivative(u));
        }
    }
    out
}

/// A A ᵀ for `a` = [n, width] row-major; returns [n, n].
fn gram(a: &[f64], width: usize, n: usize) -> Vec<f64> {
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            k[i * n + j] = (0..width)
                .map(|e| a[i * width + e] * a[j * width + e])
                .sum();
        }
    }
    k
}

fn quadratic_form(k: &[f64], a: &[f64], b: &[f64]) -> f64 {
    let n = a.len();
    (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .map(|(i, j)| a[i] * k[i * n + j] * b[j])
        .sum()
}

/// Rows of bundle rollout `i` as f64 ([n, d] row-major) and its targets.
pub fn rollout_data(input: &GradInput<'_>, i: usize) -> (Vec<f64>, Vec<f64>) {
    let steps = input.bundle.rollout_steps(i);
    let rows = input
        .bundle
        .step_rows(steps.clone())
        .to_f32_vec()
        .into_iter()
        .map(f64::from)
        .collect();
    let targets = input.targets[steps].iter().map(|&t| t as f64).collect();
    (rows, targets)
}

/// Oracle statistics for every rollout of `input` (single-threaded).
pub fn stats(
    input: &GradInput<'_>,
    reduction: Reduction,
    projection: Option<&ProjectionMatrix>,
) -> Result<RolloutGradStats> {
    let groups = param_groups(input.head);
    let mut rows = Vec::with_capacity(input.len());
    let mut projected = projection.map(|p| Vec::with_capacity(input.len() * p.k));
    for k in 0..input.len() {
        let (x, y) = rollout_data(input, input.rollout(k));
        let g = rollout_gradient(input.head, &x, &y, reduction);
        rows.push(value_row(&g, &groups));
        if let (Some(out), Some(p)) = (projected.as_mut(), projection) {
            for dir in 0..p.k {
                let dot: f64 = p
                    .direction(dir)
                    .iter()
                    .zip(&g.grad)
                    .map(|(&a, &b)| a as f64 * b)
                    .sum();
                out.push(dot as f32);
            }
        }
    }
    Ok(RolloutGradStats::for_input(
        input, reduction, &rows, projection, projected,
    ))
}

fn sq(v: &[f64]) -> f64 {
    v.iter().map(|v| v * v).sum()
}

/// One rollout's statistics from its gradient record.
fn value_row(g: &RolloutGradient, groups: &[(&str, std::ops::Range<usize>)]) -> RolloutRow {
    let mut row = RolloutRow {
        loss: g.loss,
        centered: sq(&g.centered),
        sum_step: g.step_grad_sq.iter().sum(),
        resid_sq: sq(&g.resid),
        ..Default::default()
    };
    for (slot, (_, range)) in groups.iter().enumerate() {
        row.groups[slot] = sq(&g.grad[range.clone()]);
    }
    row
}

/// One rollout's cancellation-free sizes ([`magnitudes`]) from its gradient record and its
/// [`value_row`], whose loss, Σ_j ‖∇_θ(c·BCE_j)‖² and Σ_j r_j² are already their own sizes.
fn scale_row(
    g: &RolloutGradient,
    groups: &[(&str, std::ops::Range<usize>)],
    values: RolloutRow,
) -> RolloutRow {
    let mut row = RolloutRow {
        centered: sq(&g.centered_abs),
        ..values
    };
    for (slot, (_, range)) in groups.iter().enumerate() {
        row.groups[slot] = sq(&g.grad_abs[range.clone()]);
    }
    row
}

/// Per rollout of `input`, the size each statistic would have if none of its sums cancelled:
/// the squared norms of [`RolloutGradient::grad_abs`] (in all and per parameter group) and of
/// [`RolloutGradient::centered_abs`]; the loss, Σ_j ‖∇_θ(c·BCE_j)‖² and Σ_j r_j², sums of
/// non-negative terms, as they are. f32 rounding in an engine's sums is bounded by a multiple of
/// these, not of the statistics themselves: the bias gradient Σ_j r_j, or the centred gradient
/// Σ_j (r_j − r̄) ∂z_j/∂θ, can be far smaller than its terms. Rollouts run in parallel.
pub fn magnitudes(input: &GradInput<'_>, reduction: Reduction) -> RolloutGradStats {
    use rayon::prelude::*;
    let groups = param_groups(input.head);
    let rows: Vec<RolloutRow> = (0..input.len())
        .into_par_iter()
        .map(|k| {
            let (x, y) = rollout_data(input, input.rollout(k));
            let g = rollout_gradient(input.head, &x, &y, reduction);
            scale_row(&g, &groups, value_row(&g, &groups))
        })
        .collect();
    RolloutGradStats::for_input(input, reduction, &rows, None, None)
}

/// Everything `mprm verify` takes from the oracle, from one pass over the rollouts.
pub struct Checked {
    /// [`stats`] without projections.
    pub stats: RolloutGradStats,
    /// [`magnitudes`].
    pub scales: RolloutGradStats,
    /// Σ over the rollouts of their gradients ([`total_gradient`], summed in blocks of
    /// [`CHECKED_BLOCK`] rollouts, the blocks' sums then in order: the same bits for every
    /// thread count).
    pub total: Vec<f64>,
}

/// Rollouts per block of [`checked`]'s summed gradient.
pub const CHECKED_BLOCK: usize = 64;

/// [`Checked`] for `input`: blocks of rollouts in parallel, each rollout's gradient computed once.
pub fn checked(input: &GradInput<'_>, reduction: Reduction) -> Checked {
    use rayon::prelude::*;
    let groups = param_groups(input.head);
    let p = input.head.n_params();
    let ids: Vec<usize> = (0..input.len()).collect();
    let blocks: Vec<(Vec<RolloutRow>, Vec<RolloutRow>, Vec<f64>)> = ids
        .par_chunks(CHECKED_BLOCK)
        .map(|block| {
            let (mut values, mut scales, mut total) = (Vec::new(), Vec::new(), vec![0.0; p]);
            for &k in block {
                let (x, y) = rollout_data(input, input.rollout(k));
                let g = rollout_gradient(input.head, &x, &y, reduction);
                let row = value_row(&g, &groups);
                values.push(row);
                scales.push(scale_row(&g, &groups, row));
                for (t, v) in total.iter_mut().zip(&g.grad) {
                    *t += v;
                }
            }
            (values, scales, total)
        })
        .collect();
    let mut total = vec![0.0; p];
    let (mut values, mut scales) = (Vec::new(), Vec::new());
    for (v, s, t) in blocks {
        values.extend(v);
        scales.extend(s);
        for (a, b) in total.iter_mut().zip(&t) {
            *a += b;
        }
    }
    Checked {
        stats: RolloutGradStats::for_input(input, reduction, &values, None, None),
        scales: RolloutGradStats::for_input(input, reduction, &scales, None, None),
        total,
    }
}

/// Σ over the rollouts of `input` of the oracle's per-rollout gradient.
pub fn total_gradient(input: &GradInput<'_>, reduction: Reduction) -> Vec<f64> {
    let mut total = vec![0.0; input.head.n_params()];
    for k in 0..input.len() {
        let (x, y) = rollout_data(input, input.rollout(k));
        let g = rollout_gradient(input.head, &x, &y, reduction);
        for (t, v) in total.iter_mut().zip(&g.grad) {
            *t += v;
        }
    }
    total
}
