//! The one place that names concrete Burn backends.
//!
//! Everything else in [`crate::train`] and [`crate::eval`] is generic over the backend; this
//! module maps a resolved [`Device`] to `Autodiff<NdArray>` (CPU) or, with the `cuda` feature,
//! `Autodiff<Cuda>` — after [`crate::device::probe_cuda`], because burn-cuda panics on a worker
//! thread instead of returning an error when the driver is missing.

use std::path::Path;

use burn::backend::{Autodiff, NdArray};

use crate::data::bench::BenchSet;
use crate::device::Device;
use crate::error::Result;
use crate::eval::{EvalReport, evaluate_model};
use crate::train::checkpoint;
use crate::train::model::ModelSpec;
use crate::train::train_loop::{RunOptions, TrainInputs, TrainOutcome, train_on};

/// Inference backend on the CPU.
pub type CpuBackend = NdArray<f32>;

/// Training backend on the CPU.
pub type CpuTrainBackend = Autodiff<CpuBackend>;

/// Trains on `device`.
pub fn train(inputs: TrainInputs<'_>, opts: &RunOptions, device: Device) -> Result<TrainOutcome> {
    match device {
        Device::Cpu => {
            keep_freed_memory();
            train_on::<CpuTrainBackend>(
                inputs,
                opts,
                &Default::default(),
                device,
                "burn-ndarray (autodiff)",
            )
        }
        Device::Cuda(ordinal) => cuda::train(inputs, opts, ordinal),
    }
}

/// Asks glibc to keep freed memory for reuse instead of returning it to the kernel.
///
/// Every tensor op of the CPU backend allocates a fresh buffer of a few MB; with glibc's default
/// thresholds those come from `mmap` or are trimmed from the heap top when freed, so each step
/// pays for zeroed page faults all over again (about a fifth of a training step in profiles).
/// Applied once per process; a no-op on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            unsafe extern "C" {
                fn mallopt(param: i32, value: i32) -> i32;
            }
            const M_TRIM_THRESHOLD: i32 = -1;
            const M_MMAP_THRESHOLD: i32 = -3;
            // SAFETY: mallopt only changes allocator thresholds; both values are in range
            // (32 MiB is glibc's maximum mmap threshold on 64-bit targets).
            unsafe {
                mallopt(M_MMAP_THRESHOLD, 32 << 20);
                mallopt(M_TRIM_THRESHOLD, 1 << 30);
            }
        });
    }
}

/// Loads checkpoint `dir` and evaluates it on `bench` on `device`.
pub fn evaluate_checkpoint(
    dir: &Path,
    spec: &ModelSpec,
    dim: usize,
    bench: &BenchSet,
    device: Device,
) -> Result<EvalReport> {
    match device {
        Device::Cpu => {
            let dev = Default::default();
            let model = checkpoint::load_model::<CpuBackend>(dir, spec, dim, &dev)?;
            evaluate_model(&model, bench, &dev)
        }
        Device::Cuda(ordinal) => cuda::evaluate_checkpoint(dir, spec, dim, bench, ordinal),
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::path::Path;

    use burn::backend::cuda::CudaDevice;
    use burn::backend::{Autodiff, Cuda};

    use crate::data::bench::BenchSet;
    use crate::device::{Device, probe_cuda};
    use crate::error::Result;
    use crate::eval::{EvalReport, evaluate_model};
    use crate::train::checkpoint;
    use crate::train::model::ModelSpec;
    use crate::train::train_loop::{RunOptions, TrainInputs, TrainOutcome, train_on};

    fn device(ordinal: usize) -> Result<CudaDevice> {
        // Must come first: constructing a CudaDevice without a driver panics on a worker thread.
        probe_cuda(ordinal)?;
        Ok(CudaDevice::new(ordinal))
    }

    pub fn train(
        inputs: TrainInputs<'_>,
        opts: &RunOptions,
        ordinal: usize,
    ) -> Result<TrainOutcome> {
        let dev = device(ordinal)?;
        train_on::<Autodiff<Cuda>>(
            inputs,
            opts,
            &dev,
            Device::Cuda(ordinal),
            "burn-cuda (autodiff)",
        )
    }

    pub fn evaluate_checkpoint(
        dir: &Path,
        spec: &ModelSpec,
        dim: usize,
        bench: &BenchSet,
        ordinal: usize,
    ) -> Result<EvalReport> {
        let dev = device(ordinal)?;
        let model = checkpoint::load_model::<Cuda>(dir, spec, dim, &dev)?;
        evaluate_model(&model, bench, &dev)
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use std::path::Path;

    use crate::data::bench::BenchSet;
    use crate::error::{Error, Result};
    use crate::eval::EvalReport;
    use crate::train::model::ModelSpec;
    use crate::train::train_loop::{RunOptions, TrainInputs, TrainOutcome};

    fn not_compiled() -> Error {
        Error::Cuda("support not compiled in; rebuild with `--features cuda`".into())
    }

    pub fn train(_: TrainInputs<'_>, _: &RunOptions, _: usize) -> Result<TrainOutcome> {
        Err(not_compiled())
    }

    pub fn evaluate_checkpoint(
        _: &Path,
        _: &ModelSpec,
        _: usize,
        _: &BenchSet,
        _: usize,
    ) -> Result<EvalReport> {
        Err(not_compiled())
    }
}
