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
//! the ground truth), [`cpu`] (f32 inputs, f64 accumulation, rayon) and `cuda` (NVRTC kernels,
//! f32 accumulation). This module is the only place that matches on [`Device`].

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::features::FeatureBundle;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::head::{HeadKind, HeadParams, LinearHead, MlpHead};

pub mod bench;
pub mod cpu;
pub mod fixture;
pub mod kernels;
pub mod oracle;
pub mod point;
pub mod table;
pub mod verify;

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_disabled.rs"]
pub mod cuda;

/// How the per-step losses of a rollout are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// c = 1/n: the mean over the rollout's steps (the reference loss; default).
    #[default]
    Mean,
    /// c = 1: the sum over steps (the theory's convention).
    Sum,
}

impl Reduction {
    /// The factor c for a rollout of `n` steps.
    pub fn weight(self, n: usize) -> f64 {
        match self {
            Reduction::Mean => 1.0 / n as f64,
            Reduction::Sum => 1.0,
        }
    }

    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        }
    }
}

impl std::str::FromStr for Reduction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            _ => Err(Error::invalid(format!(
                "unknown reduction `{s}`: expected mean or sum"
            ))),
        }
    }
}

/// Directions onto which each per-rollout gradient is projected (LESS-style sketches).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Projection {
    /// k Rademacher directions with entries ±1/√k. Direction `i` comes from ChaCha8 seeded with
    /// `seed` on stream `i`, one `next_u64` per 64 parameters (bit `p % 64`, 1 = +), so a
    /// direction never depends on k, on the device or on thread scheduling.
    Random {
        /// Number of directions.
        k: usize,
        /// Seed of the directions.
        seed: u64,
    },
    /// Explicit directions, each of length `n_params` in the flattened parameter order.
    Directions(Vec<Vec<f32>>),
}

impl Projection {
    /// Number of directions.
    pub fn k(&self) -> usize {
        match self {
            Projection::Random { k, .. } => *k,
            Projection::Directions(d) => d.len(),
        }
    }

    /// Materialises the k × P direction matrix (row-major).
    pub fn matrix(&self, n_params: usize) -> Result<ProjectionMatrix> {
        let k = self.k();
        if k == 0 {
            return Err(Error::invalid("a projection needs at least one direction"));
        }
        const LIMIT_BYTES: usize = 2 << 30;
        if k.saturating_mul(n_params).saturating_mul(4) > LIMIT_BYTES {
            return Err(Error::invalid(format!(
                "projection matrix of {k} × {n_params} parameters exceeds 2 GiB; use fewer directions"
            )));
        }
        let data = match self {
            Projection::Random { k, seed } => {
                let scale = 1.0 / (*k as f32).sqrt();
                let mut data = Vec::with_capacity(k * n_params);
                for dir in 0..*k {
                    let mut rng = ChaCha8Rng::seed_from_u64(*seed);
                    rng.set_stream(dir as u64);
                    let mut bits = 0u64;
                    for p in 0..n_params {
                        if p % 64 == 0 {
                            bits = rng.next_u64();
                        }
                        let positive = (bits >> (p % 64)) & 1 == 1;
                        data.push(if positive { scale } else { -scale });
                    }
                }
                data
            }
            Projection::Directions(dirs) => {
                let mut data = Vec::with_capacity(k * n_params);
                for (i, dir) in dirs.iter().enumerate() {
                    if dir.len() != n_params {
                        return Err(Error::invalid(format!(
                            "projection direction {i} has {} entries; the head has {n_params} parameters",
                            dir.len()
                        )));
                    }
                    if let Some(p) = dir.iter().position(|v| !v.is_finite()) {
                        return Err(Error::invalid(format!(
                            "projection direction {i} entry {p} is not finite"
                        )));
                    }
                    data.extend_from_slice(dir);
                }
                data
            }
        };
        Ok(ProjectionMatrix { k, n_params, data })
    }
}

/// A resolved projection: k directions over P parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionMatrix {
    /// Number of directions.
    pub k: usize,
    /// P, the head's parameter count.
    pub n_params: usize,
    /// Row-major [k, P].
    pub data: Vec<f32>,
}

impl ProjectionMatrix {
    /// Direction `i`, length P.
    pub fn direction(&self, i: usize) -> &[f32] {
        &self.data[i * self.n_params..(i + 1) * self.n_params]
    }
}

/// Settings of a gradient-statistics run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GradNormOptions {
    /// Mean (default) or sum over steps.
    pub reduction: Reduction,
    /// Optional projection of each per-rollout gradient.
    pub projection: Option<Projection>,
}

impl GradNormOptions {
    /// The direction matrix of the projection, if any, for a head with `n_params` parameters.
    pub fn projection_matrix(&self, n_params: usize) -> Result<Option<ProjectionMatrix>> {
        self.projection
            .as_ref()
            .map(|p| p.matrix(n_params))
            .transpose()
    }
}

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

/// Parameter groups of `head` with their ranges in the flattened parameter vector.
pub fn param_groups(head: &HeadParams) -> Vec<(&'static str, Range<usize>)> {
    match head {
        HeadParams::Linear(h) => {
            let d = h.w.len();
            vec![("w", 0..d), ("b", d..d + 1)]
        }
        HeadParams::Mlp(h) => {
            let (hd, hh) = (h.w1.len(), h.hidden());
            vec![
                ("w1", 0..hd),
                ("b1", hd..hd + hh),
                ("w2", hd + hh..hd + 2 * hh),
                ("b2", hd + 2 * hh..hd + 2 * hh + 1),
            ]
        }
    }
}

/// The head's parameters in the flattened order documented at the top of this module.
pub fn flatten_params(head: &HeadParams) -> Vec<f32> {
    match head {
        HeadParams::Linear(h) => h.w.iter().copied().chain([h.b]).collect(),
        HeadParams::Mlp(h) => {
            h.w1.iter()
                .chain(&h.b1)
                .chain(&h.w2)
                .copied()
                .chain([h.b2])
                .collect()
        }
    }
}

/// Rebuilds a head of `kind` and input dimension `dim` from flattened parameters.
pub fn head_from_flat(kind: HeadKind, dim: usize, flat: &[f32]) -> Result<HeadParams> {
    let expected = match kind {
        HeadKind::Linear => dim + 1,
        HeadKind::Mlp { hidden, .. } => hidden * dim + 2 * hidden + 1,
    };
    if flat.len() != expected {
        return Err(Error::invalid(format!(
            "{} flattened parameters; a {kind:?} head with d = {dim} has {expected}",
            flat.len()
        )));
    }
    Ok(match kind {
        HeadKind::Linear => HeadParams::Linear(LinearHead {
            w: flat[..dim].to_vec(),
            b: flat[dim],
        }),
        HeadKind::Mlp { hidden, activation } => {
            let hd = hidden * dim;
            HeadParams::Mlp(MlpHead {
                w1: flat[..hd].to_vec(),
                b1: flat[hd..hd + hidden].to_vec(),
                w2: flat[hd + hidden..hd + 2 * hidden].to_vec(),
                b2: flat[hd + 2 * hidden],
                activation,
                dim,
            })
        }
    })
}

/// True when the ghost form ⟨DDᵀ, HHᵀ⟩ is cheaper than materialising the W₁ gradient for a
/// rollout of `n` steps: T < d·h/(d + h) (gradient-methods §3.1, time rule).
pub fn ghost_is_cheaper(n: usize, dim: usize, hidden: usize) -> bool {
    (n as f64) < ghost_limit(dim, hidden)
}

/// The step count below which the ghost form is used: d·h/(d + h).
pub fn ghost_limit(dim: usize, hidden: usize) -> f64 {
    let (d, h) = (dim as f64, hidden as f64);
    d * h / (d + h)
}

/// Splits consecutive rollouts of lengths `lens` into chunks of at most `budget` bytes and
/// `max_steps` steps (a rollout costs `n · per_step + per_rollout` bytes); a rollout larger
/// than the budget gets a chunk of its own. Used by the CUDA engine to stream bundles larger
/// than device memory.
pub fn chunk_rollouts(
    lens: impl IntoIterator<Item = usize>,
    per_step: usize,
    per_rollout: usize,
    budget: usize,
    max_steps: usize,
) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut steps, mut bytes, mut count) = (0, 0usize, 0usize, 0usize);
    for (k, n) in lens.into_iter().enumerate() {
        let add = n * per_step + per_rollout;
        if k > start && (steps + n > max_steps || bytes + add > budget) {
            chunks.push(start..k);
            start = k;
            steps = 0;
            bytes = 0;
        }
        steps += n;
        bytes += add;
        count = k + 1;
    }
    if start < count {
        chunks.push(start..count);
    }
    chunks
}

/// A checked request: bundle, per-step targets, head and the rollouts to score.
#[derive(Debug, Clone, Copy)]
pub struct GradInput<'a> {
    /// The features bundle.
    pub bundle: &'a FeatureBundle,
    /// One target in [0, 1] per step of the bundle.
    pub targets: &'a [f32],
    /// The head to differentiate.
    pub head: &'a HeadParams,
    rollouts: Option<&'a [usize]>,
}

impl<'a> GradInput<'a> {
    /// Validates shapes, target ranges, rollout indices and that no scored rollout is empty.
    pub fn new(
        bundle: &'a FeatureBundle,
        targets: &'a [f32],
        head: &'a HeadParams,
        rollouts: Option<&'a [usize]>,
    ) -> Result<Self> {
        if head.dim() != bundle.dim() {
            return Err(Error::invalid(format!(
                "the head takes d = {} inputs but the bundle's features have d = {}",
                head.dim(),
                bundle.dim()
            )));
        }
        if targets.len() != bundle.n_steps() {
            return Err(Error::invalid(format!(
                "{} targets for {} steps",
                targets.len(),
                bundle.n_steps()
            )));
        }
        if let Some(j) = targets
            .iter()
            .position(|t| !(t.is_finite() && (0.0..=1.0).contains(t)))
        {
            return Err(Error::invalid(format!(
                "target of step {j} is {}; targets must lie in [0, 1]",
                targets[j]
            )));
        }
        let input = GradInput {
            bundle,
            targets,
            head,
            rollouts,
        };
        let n = bundle.n_rollouts();
        let mut check = |i: usize| -> Result<()> {
            if i >= n {
                return Err(Error::invalid(format!(
                    "rollout {i} is not in the bundle ({n} rollouts)"
                )));
            }
            if bundle.rollout_len(i) == 0 {
                return Err(Error::EmptyInput(format!(
                    "rollout {i} (source `{}`{}) has no steps; a gradient needs at least one",
                    bundle
                        .meta
                        .sources
                        .get(bundle.source[i] as usize)
                        .map(String::as_str)
                        .unwrap_or("?"),
                    bundle
                        .line
                        .as_ref()
                        .map(|l| format!(", line {}", l[i] + 1))
                        .unwrap_or_default()
                )));
            }
            Ok(())
        };
        match rollouts {
            Some(list) => list.iter().try_for_each(|&i| check(i))?,
            None => (0..n).try_for_each(&mut check)?,
        }
        Ok(input)
    }

    /// Number of scored rollouts.
    pub fn len(&self) -> usize {
        self.rollouts
            .map_or(self.bundle.n_rollouts(), <[usize]>::len)
    }

    /// True when nothing is scored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bundle index of the `k`-th scored rollout.
    pub fn rollout(&self, k: usize) -> usize {
        self.rollouts.map_or(k, |r| r[k])
    }

    /// The scored rollouts' bundle indices.
    pub fn rollout_indices(&self) -> Vec<usize> {
        (0..self.len()).map(|k| self.rollout(k)).collect()
    }

    /// Steps of each scored rollout.
    pub fn n_steps(&self) -> Vec<u32> {
        (0..self.len())
            .map(|k| self.bundle.rollout_len(self.rollout(k)) as u32)
            .collect()
    }
}

/// A gradient-statistics implementation for one processor.
pub trait GradNormEngine {
    /// The processor that runs the work.
    fn device(&self) -> Device;

    /// Names of the kernels (or CPU code paths) a run with these settings uses, for manifests.
    fn kernel_names(&self, input: &GradInput<'_>, projection: bool) -> Vec<String>;

    /// Per-rollout statistics of every rollout in `input`.
    fn rollout_stats(
        &self,
        input: &GradInput<'_>,
        reduction: Reduction,
        projection: Option<&ProjectionMatrix>,
    ) -> Result<RolloutGradStats>;

    /// Σ over the rollouts of `input` of the per-rollout gradient (flattened order).
    fn total_gradient(&self, input: &GradInput<'_>, reduction: Reduction) -> Result<Vec<f64>>;
}

/// The engine for `device`.
pub fn engine(device: Device) -> Result<Box<dyn GradNormEngine>> {
    match device {
        Device::Cpu => Ok(Box::new(cpu::CpuEngine)),
        Device::Cuda(ordinal) => Ok(Box::new(cuda::CudaEngine::new(ordinal)?)),
    }
}

/// Per-rollout statistics of every rollout of `bundle`.
pub fn rollout_grad_stats(
    device: Device,
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    opts: &GradNormOptions,
) -> Result<RolloutGradStats> {
    stats_of(device, GradInput::new(bundle, targets, head, None)?, opts)
}

/// Per-rollout statistics of the given rollouts (bundle indices, in this order).
pub fn rollout_grad_stats_subset(
    device: Device,
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    opts: &GradNormOptions,
    rollouts: &[usize],
) -> Result<RolloutGradStats> {
    stats_of(
        device,
        GradInput::new(bundle, targets, head, Some(rollouts))?,
        opts,
    )
}

fn stats_of(
    device: Device,
    input: GradInput<'_>,
    opts: &GradNormOptions,
) -> Result<RolloutGradStats> {
    let projection = opts.projection_matrix(input.head.n_params())?;
    engine(device)?.rollout_stats(&input, opts.reduction, projection.as_ref())
}

/// Σ over `rollouts` (all when `None`) of the per-rollout gradient vector, flattened.
pub fn total_gradient(
    device: Device,
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    reduction: Reduction,
    rollouts: Option<&[usize]>,
) -> Result<Vec<f64>> {
    let input = GradInput::new(bundle, targets, head, rollouts)?;
    engine(device)?.total_gradient(&input, reduction)
}

/// Numerically stable BCE with logits: `softplus(z) − y·z`.
pub fn bce_with_logits(z: f64, y: f64) -> f64 {
    z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()
}

/// σ(z), stable for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::Activation;

    #[test]
    fn flatten_round_trips() {
        for kind in [
            HeadKind::Linear,
            HeadKind::Mlp {
                hidden: 3,
                activation: Activation::Gelu,
            },
        ] {
            let head = HeadParams::init(kind, 5, 3);
            let flat = flatten_params(&head);
            assert_eq!(flat.len(), head.n_params());
            assert_eq!(head_from_flat(kind, 5, &flat).unwrap(), head);
            let groups = param_groups(&head);
            assert_eq!(groups.last().unwrap().1.end, head.n_params());
        }
        assert!(head_from_flat(HeadKind::Linear, 5, &[0.0; 5]).is_err());
    }

    #[test]
    fn random_directions_are_seeded_signs() {
        let a = Projection::Random { k: 3, seed: 9 }.matrix(70).unwrap();
        let b = Projection::Random { k: 3, seed: 9 }.matrix(70).unwrap();
        assert_eq!(a, b);
        let scale = 1.0 / 3f32.sqrt();
        assert!(a.data.iter().all(|&v| v == scale || v == -scale));
        // A direction depends on its index, not on k.
        let wider = Projection::Random { k: 5, seed: 9 }.matrix(70).unwrap();
        let s5 = 1.0 / 5f32.sqrt();
        let signs = |m: &ProjectionMatrix, i: usize| -> Vec<bool> {
            m.direction(i).iter().map(|&v| v > 0.0).collect()
        };
        assert_eq!(signs(&a, 2), signs(&wider, 2));
        assert!(wider.direction(4).iter().all(|&v| v.abs() == s5));
        assert_ne!(signs(&a, 0), signs(&a, 1));
    }

    #[test]
    fn chunks_respect_the_budget_and_cover_every_rollout() {
        let lens = [3, 1, 4, 1, 5, 9, 2, 6];
        // 10 bytes per step, 1 per rollout, 60-byte budget.
        let chunks = chunk_rollouts(lens, 10, 1, 60, usize::MAX);
        assert_eq!(chunks, vec![0..2, 2..4, 4..5, 5..6, 6..7, 7..8]);
        // A step cap splits too; an oversized rollout still gets its own chunk.
        assert_eq!(
            chunk_rollouts(lens, 10, 1, 1000, 9),
            vec![0..4, 4..5, 5..6, 6..8]
        );
        assert_eq!(
            chunk_rollouts([50, 1], 10, 0, 60, usize::MAX),
            vec![0..1, 1..2]
        );
        assert!(chunk_rollouts([], 10, 1, 60, 9).is_empty());
    }

    #[test]
    fn ghost_rule_matches_reference_example() {
        // §3.3: T = 20, d = 4096, h = 1024 → ghost (limit ≈ 819).
        assert!(ghost_is_cheaper(20, 4096, 1024));
        // Tiny layers: d = h = 2 → limit 1, so even one step uses the direct form.
        assert!(!ghost_is_cheaper(1, 2, 2));
    }

    #[test]
    fn bce_matches_naive_form() {
        for &(z, y) in &[(0.3, 1.0), (-2.0, 0.0), (5.0, 0.25)] {
            let s = sigmoid(z);
            let naive = -(y * s.ln() + (1.0 - y) * (1.0 - s).ln());
            assert!((bce_with_logits(z, y) - naive).abs() < 1e-12);
        }
        assert!(bce_with_logits(800.0, 1.0).abs() < 1e-12);
        assert!((bce_with_logits(-800.0, 1.0) - 800.0).abs() < 1e-9);
    }
}
