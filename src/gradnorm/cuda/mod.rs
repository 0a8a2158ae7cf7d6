//! The CUDA engine: the kernels of `kernels/*.cu`, compiled by NVRTC at run time and launched
//! through cudarc.
//!
//! Rollouts are processed in chunks whose features fit the device-memory budget
//! (`Gpu::chunk_budget`), so bundles larger than GPU memory stream through. A chunk goes up
//! through two pinned staging buffers in turn, filled on the host's threads straight from the
//! memory-mapped bundle (gathering a scattered subset on the way) while the copy stream moves
//! the other; the compute stream waits for the last copy. Uploaded chunks stay on the device,
//! keyed by the bundle's instance number and the chunk's rollouts, until a new chunk needs the
//! room: the repeated calls of GraNd, the informativeness points and selection sweeps upload a
//! bundle that fits one chunk once per process. Per chunk:
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
mod resident;

pub use context::{compile_ptx, nvrtc_available};
pub use engine::{CudaEngine, bench_kernels, copy_bandwidth, time_cold_calls};
