//! The one place that names concrete Burn backends.
//!
//! The trainer and evaluation are generic over the backend; they describe their work as a
//! [`BurnJob`] and [`run`] picks `Autodiff<NdArray>` (CPU) or, with the `cuda` feature,
//! `Autodiff<Cuda>`, after [`super::probe_cuda`], because burn-cuda panics on a worker thread
//! instead of returning an error when the driver is missing.

use super::Device;
use crate::error::Result;
use crate::fused_ops::TrainBackend;

/// Backend-generic work: a training run, a checkpoint evaluation.
pub trait BurnJob {
    /// What the work returns.
    type Output;

    /// Runs on backend `B` (inference can use `B::InnerBackend`, which shares `B::Device`).
    /// `at` is the resolved device and `backend` a name for manifests.
    fn run<B: TrainBackend>(
        self,
        device: &B::Device,
        at: Device,
        backend: &'static str,
    ) -> Result<Self::Output>;
}

/// Runs `job` on `device`.
pub fn run<J: BurnJob>(device: Device, job: J) -> Result<J::Output> {
    match device {
        Device::Cpu => job.run::<burn::backend::Autodiff<burn::backend::NdArray<f32>>>(
            &Default::default(),
            device,
            "burn-ndarray (autodiff)",
        ),
        Device::Cuda(ordinal) => cuda::run(job, ordinal),
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use burn::backend::cuda::CudaDevice;
    use burn::backend::{Autodiff, Cuda};

    use super::BurnJob;
    use crate::device::{Device, probe_cuda};
    use crate::error::Result;

    pub fn run<J: BurnJob>(job: J, ordinal: usize) -> Result<J::Output> {
        // Must come first: constructing a CudaDevice without a driver panics on a worker thread.
        probe_cuda(ordinal)?;
        let device = CudaDevice::new(ordinal);
        job.run::<Autodiff<Cuda>>(&device, Device::Cuda(ordinal), "burn-cuda (autodiff)")
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use super::BurnJob;
    use crate::error::{CudaError, Result};

    pub fn run<J: BurnJob>(_job: J, _ordinal: usize) -> Result<J::Output> {
        Err(CudaError::NotCompiled.into())
    }
}
