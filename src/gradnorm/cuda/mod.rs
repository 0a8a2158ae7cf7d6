//! The CUDA engine: the kernels of `kernels/*.cu`, compiled by NVRTC at run time and launched
//! through cudarc.
//!
//! Rollouts are processed in chunks whose features fit the device-memory budget
//! ([`Gpu::chunk_budget`]), so bundles larger than GPU memory stream through; a chunk of
//! consecutive rollouts is uploaded straight from the memory-mapped bundle, a scattered subset
//! is gathered on the host first. Per chunk:
//!
//! * linear head: `linear_stats_<dtype>` (one fused pass);
//! * MLP head: `gemm_nt_<dtype>` (U = H W₁ᵀ), `mlp_step_f32` (epilogue), `mlp_stats_<dtype>`
//!   (ghost or direct W₁ norm and the other groups);
//! * projections and summed gradients additionally materialise per-rollout gradients for
//!   sub-chunks (`linear_grad_*`/`mlp_grad_*`) and reduce them: projections as one product
//!   through `gemm_nt_f32` (gradients [rollouts, P] × directions [k, P]ᵀ), sums by
//!   `column_sum_f32`. `project_f32`, one block per (rollout, direction), stays as a building
//!   block with its CPU twin; the engine no longer launches it.
//!
//! Accumulation is f32 with fixed-order reductions, so reruns give the same bits.

mod context;
mod engine;

pub use context::{compile_ptx, nvrtc_available};
pub use engine::{CudaEngine, bench_kernels, copy_bandwidth};
