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
///
/// On the CPU the job runs on a worker of rayon's global pool (unless it already is on one),
/// which is where its kernels run their parallel parts. From any other thread each parallel
/// part is a hand-off: the calling thread queues it, sleeps, and is woken when the pool is done,
/// a pair of futex calls and context switches per kernel, a dozen kernels per training step. On
/// a worker the caller takes part in the work and only the pool's other thread is woken.
pub fn run<J>(device: Device, job: J) -> Result<J::Output>
where
    J: BurnJob + Send,
    J::Output: Send,
{
    match device {
        Device::Cpu => on_the_pool(|| {
            job.run::<burn::backend::Autodiff<burn::backend::NdArray<f32>>>(
                &Default::default(),
                device,
                "burn-ndarray (autodiff)",
            )
        }),
        Device::Cuda(ordinal) => cuda::run(job, ordinal),
    }
}

/// `f()` on a worker of rayon's global pool: here when this thread is one, else handed to the
/// pool (`rayon::scope` runs its body on a worker).
fn on_the_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
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

#[cfg(test)]
mod tests {
    use super::on_the_pool;

    #[test]
    fn cpu_jobs_run_on_a_pool_worker() {
        // A test thread is not a worker: the job is handed to the pool.
        assert_eq!(rayon::current_thread_index(), None);
        assert!(on_the_pool(rayon::current_thread_index).is_some());
        // On a worker it stays where it is.
        rayon::scope(|_| {
            let here = rayon::current_thread_index();
            assert!(here.is_some());
            assert_eq!(on_the_pool(rayon::current_thread_index), here);
        });
    }
}
