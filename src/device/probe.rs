//! Whether CUDA can be used, asked without ever letting cudarc panic.
//!
//! cudarc (and burn-cuda, which sits on it) panics on first use when the driver or NVRTC library
//! is missing, so every CUDA path of the crate goes through [`probe_cuda`] before it creates a
//! context or a `CudaDevice`.

use crate::error::{CudaError, Result};

/// NVRTC cannot be loaded (the one wording, shared by the probe and the PTX compiler).
pub const NVRTC_MISSING: CudaError = CudaError::LibraryMissing {
    library: "NVRTC (libnvrtc.so.13)",
    hint: "put the CUDA 13 library folder on LD_LIBRARY_PATH",
};

/// True when the binary was built with the `cuda` feature (a compile-time fact, not a probe).
pub const fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

/// Checks that CUDA device `ordinal` can be used.
pub fn probe_cuda(ordinal: usize) -> Result<()> {
    imp::probe(ordinal)
}

#[cfg(feature = "cuda")]
mod imp {
    use super::NVRTC_MISSING;
    use crate::error::{CudaError, Result};

    pub fn probe(ordinal: usize) -> Result<()> {
        // SAFETY: these only try to dlopen the libraries; no CUDA function is called.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(CudaError::LibraryMissing {
                library: "the CUDA driver library (libcuda.so.1)",
                hint: "this machine has no NVIDIA driver",
            }
            .into());
        }
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(NVRTC_MISSING.into());
        }
        let count = cudarc::driver::CudaContext::device_count().map_err(|e| CudaError::Driver {
            operation: "counting devices".into(),
            detail: e.to_string(),
        })? as usize;
        if ordinal >= count {
            return Err(CudaError::NoSuchDevice { ordinal, count }.into());
        }
        Ok(())
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use crate::error::{CudaError, Result};

    pub fn probe(_ordinal: usize) -> Result<()> {
        Err(CudaError::NotCompiled.into())
    }
}
