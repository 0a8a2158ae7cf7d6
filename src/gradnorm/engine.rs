//! The engine contract and the entry points that pick an engine for a device (the only place
//! in `gradnorm` that matches on [`Device`]).

use super::input::GradInput;
use super::options::{Accumulation, GradNormOptions, ProjectionMatrix, Reduction};
use super::sketch::{PreconditionedSketch, check_directions};
use super::stats::RolloutGradStats;
use super::{cpu, cuda};
use crate::data::features::FeatureBundle;
use crate::device::Device;
use crate::error::Result;
use crate::head::HeadParams;

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

    /// G = Σ_j w_j x̃_j x̃_jᵀ over every step j of `bundle`, x̃_j = [x_j; 1]: the (d + 1)² weighted
    /// Gram matrix, row-major and symmetric (the Hessian of influence functions, before its mean).
    fn weighted_gram(&self, bundle: &FeatureBundle, weights: &[f64]) -> Result<Vec<f64>>;

    /// For every rollout x of `input` and every direction t (given in sketch space), the cosine
    /// of sketch(Γ(g_x)) with t, row-major [rollouts, directions] (see [`super::sketch`]). The
    /// caller has checked `pre` and `directions` against the head ([`sketch_cosines`]).
    fn sketch_cosines(
        &self,
        input: &GradInput<'_>,
        reduction: Reduction,
        pre: &PreconditionedSketch,
        directions: &[Vec<f64>],
    ) -> Result<Vec<f64>>;
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
    let input = with_sums(device, input, opts.accumulation)?;
    engine(device)?.rollout_stats(&input, opts.reduction, projection.as_ref())
}

/// `input` with the CPU engine's sums set to `accumulation` ([`GradInput::with_accumulation`]);
/// on CUDA, `input` as it is, since that engine always sums in f32.
pub fn with_sums<'a>(
    device: Device,
    input: GradInput<'a>,
    accumulation: Accumulation,
) -> Result<GradInput<'a>> {
    match device {
        Device::Cpu => input.with_accumulation(accumulation),
        Device::Cuda(_) => Ok(input),
    }
}

/// [`GradNormEngine::weighted_gram`] on `device`, after checking one weight per step.
pub fn weighted_gram(device: Device, bundle: &FeatureBundle, weights: &[f64]) -> Result<Vec<f64>> {
    if weights.len() != bundle.n_steps() {
        return Err(crate::error::Error::invalid(format!(
            "{} Gram weights for {} steps",
            weights.len(),
            bundle.n_steps()
        )));
    }
    engine(device)?.weighted_gram(bundle, weights)
}

/// [`GradNormEngine::sketch_cosines`] on `device` for every rollout of `bundle`, after checking
/// that the optimiser state and the sketch cover the head and that every direction lives in the
/// sketch space.
pub fn sketch_cosines(
    device: Device,
    input: &GradInput<'_>,
    reduction: Reduction,
    pre: &PreconditionedSketch,
    directions: &[Vec<f64>],
) -> Result<Vec<f64>> {
    pre.check(input.head.n_params())?;
    check_directions(directions, pre.sketch.dims)?;
    engine(device)?.sketch_cosines(input, reduction, pre, directions)
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
