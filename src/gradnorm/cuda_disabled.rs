//! Stand-in for the CUDA engine in builds without the `cuda` feature.
//!
//! It keeps the names of `cuda/` so the rest of the crate needs no `cfg`; every entry point
//! fails with one plain message and never falls back to the CPU behind the user's back.

use crate::device::Device;
use crate::error::{CudaError, Error, Result};

use super::bench::KernelTiming;
use super::kernels::KernelSource;
use super::{GradInput, GradNormEngine, ProjectionMatrix, Reduction, RolloutGradStats};

fn not_compiled() -> Error {
    CudaError::NotCompiled.into()
}

/// Uninhabited: a build without CUDA can never hold a CUDA engine.
pub enum CudaEngine {}

impl CudaEngine {
    /// Always fails: CUDA support is not compiled in.
    pub fn new(_ordinal: usize) -> Result<Self> {
        Err(not_compiled())
    }

    /// Unreachable (no value of this type exists).
    pub fn device_name(&self) -> &str {
        match *self {}
    }

    /// Unreachable (no value of this type exists).
    pub fn resident_stats(&self) -> Result<crate::gradnorm::resident::CacheStats> {
        match *self {}
    }

    /// Unreachable (no value of this type exists).
    pub fn release_resident(&self) -> Result<()> {
        match *self {}
    }
}

impl GradNormEngine for CudaEngine {
    fn device(&self) -> Device {
        match *self {}
    }

    fn kernel_names(&self, _input: &GradInput<'_>, _projection: bool) -> Vec<String> {
        match *self {}
    }

    fn rollout_stats(
        &self,
        _input: &GradInput<'_>,
        _reduction: Reduction,
        _projection: Option<&ProjectionMatrix>,
    ) -> Result<RolloutGradStats> {
        match *self {}
    }

    fn total_gradient(&self, _input: &GradInput<'_>, _reduction: Reduction) -> Result<Vec<f64>> {
        match *self {}
    }

    fn weighted_gram(
        &self,
        _bundle: &crate::data::features::FeatureBundle,
        _weights: &[f64],
    ) -> Result<Vec<f64>> {
        match *self {}
    }

    fn sketch_cosines(
        &self,
        _input: &GradInput<'_>,
        _reduction: Reduction,
        _pre: &super::sketch::PreconditionedSketch,
        _directions: &[Vec<f64>],
    ) -> Result<Vec<f64>> {
        match *self {}
    }
}

/// False: NVRTC is only used with the `cuda` feature.
pub fn nvrtc_available() -> bool {
    false
}

/// Always fails: NVRTC is only linked with the `cuda` feature.
pub fn compile_ptx(_kernel: &KernelSource, _arch: &str) -> Result<String> {
    Err(not_compiled())
}

/// Always fails: CUDA support is not compiled in.
pub fn bench_kernels(
    _ordinal: usize,
    _input: &GradInput<'_>,
    _reduction: Reduction,
    _warmup: usize,
    _repeats: usize,
) -> Result<(String, Vec<KernelTiming>)> {
    Err(not_compiled())
}

/// Always fails: CUDA support is not compiled in.
pub fn time_cold_calls(
    _ordinal: usize,
    _input: &GradInput<'_>,
    _reduction: Reduction,
    _repeats: usize,
) -> Result<KernelTiming> {
    Err(not_compiled())
}

/// Always fails: CUDA support is not compiled in.
pub fn copy_bandwidth(_ordinal: usize, _bytes: usize, _repeats: usize) -> Result<f64> {
    Err(not_compiled())
}
