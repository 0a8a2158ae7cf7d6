//! Which processor runs the numeric work: the crate's one seam between the CPU and CUDA.
//!
//! * [`request`]: `auto | cpu | cuda | cuda:N` and what it resolves to. `auto` picks CUDA only
//!   when the crate was built with the `cuda` feature *and* the driver and NVRTC load *and* a
//!   device answers; `cuda` never falls back.
//! * [`probe`]: the check every CUDA path makes before touching cudarc or burn-cuda.
//! * [`burn`]: the only place that names concrete Burn backends; the trainer and evaluation hand
//!   it backend-generic work.
//!
//! The gradient engine's CUDA kernels (`gradnorm::cuda`) sit on cudarc directly and reach the
//! device through [`probe_cuda`] as well. A build without the `cuda` feature fails every CUDA path
//! with [`crate::error::CudaError::NotCompiled`].

pub mod burn;
pub mod probe;
pub mod request;

pub use probe::{NVRTC_MISSING, cuda_compiled, probe_cuda};
pub use request::{Device, DeviceRequest, resolve};
