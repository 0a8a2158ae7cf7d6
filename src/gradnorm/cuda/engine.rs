//! The CUDA engine: device-resident bundles, kernel launches and the per-rollout statistics they
//! return, plus the kernel timings and copy bandwidth of `mprm bench`.

use super::context::{CudaResultExt, Gpu};
use super::resident::{DevChunk, DevRows};
use crate::data::features::FeatureBundle;
use crate::device::Device;
use crate::error::{CudaError, Error, Result};
use crate::gradnorm::bench::KernelTiming;
use crate::gradnorm::kernels::{KernelId, cuda_kernel_names, symbol};
use crate::gradnorm::sketch::{PreconditionedSketch, cosine};
use crate::gradnorm::{
    GradInput, GradNormEngine, ProjectionMatrix, Reduction, RolloutGradStats, RolloutRow,
    chunk_rollouts, ghost_limit,
};
use crate::head::{Activation, HeadParams};
use cudarc::driver::{CudaEvent, CudaSlice, LaunchArgs, LaunchConfig, PushKernelArg};
use std::ops::Range;
use std::sync::Arc;

/// Columns each thread of `linear_stats` keeps in registers (`LINEAR_VEC` in the kernel).
const LINEAR_VEC: usize = 16;
/// Floats written per rollout by `linear_stats` (`LINEAR_OUT`).
const LINEAR_OUT: usize = 6;
/// Floats written per rollout by `mlp_stats` (`MLP_OUT`).
const MLP_OUT: usize = 8;
/// Up to this d a warp handles a whole rollout, several rollouts sharing a block.
const WARP_MODE_MAX_DIM: usize = 32 * LINEAR_VEC;
/// Rollouts (warps) per block in warp mode.
const WARPS_PER_BLOCK: usize = 8;
/// Most threads in a block of `linear_stats` (`LINEAR_MAX_THREADS`, the kernel's launch bound).
const LINEAR_MAX_THREADS: usize = 512;
/// Largest d the linear kernel covers (LINEAR_MAX_THREADS × LINEAR_VEC columns).
const MAX_LINEAR_DIM: usize = LINEAR_MAX_THREADS * LINEAR_VEC;
/// Steps one thread of `weighted_gram` sums in f32 before `gram_accumulate_f64` takes over in
/// f64: the bound of the kernel's rounding error (see the twin test).
pub const GRAM_SLICE: usize = 1024;
/// Most slices (partial tiles) one `weighted_gram` launch writes.
const MAX_GRAM_SLICES: usize = 256;
/// Threads per block of `gram_accumulate_f64` (one per entry of the Gram matrix).
const GRAM_ACCUMULATE_THREADS: usize = 256;
/// Device memory for one sub-chunk of materialised gradients.
const GRAD_BUDGET_BYTES: usize = 256 << 20;

/// Launches kernel `$name` of family `$id`: `$b` is the argument builder the body fills, in
/// the kernel's parameter order.
macro_rules! launch {
    ($gpu:expr, $id:expr, $name:expr, $cfg:expr, |$b:ident| $body:block) => {{
        let name: &str = $name;
        let f = $gpu.function($id, name)?;
        let mut $b = $gpu.stream.launch_builder(&f);
        $body
        // SAFETY: every call site pushes exactly the arguments the kernel declares, in order and
        // with matching types, and sizes each buffer for the grid it launches.
        unsafe { $b.launch($cfg) }.w(&format!("launching {name}"))?;
    }};
}

/// The CUDA implementation of [`GradNormEngine`].
pub struct CudaEngine {
    gpu: Arc<Gpu>,
    ordinal: usize,
}

impl CudaEngine {
    /// Opens device `ordinal` (an error, never a panic, when CUDA is unusable).
    pub fn new(ordinal: usize) -> Result<Self> {
        Ok(CudaEngine {
            gpu: Gpu::get(ordinal)?,
            ordinal,
        })
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.gpu.name
    }
}

fn push_rows<'a>(b: &mut LaunchArgs<'a>, x: &'a DevRows) {
    match x {
        DevRows::F32(s) => b.arg(s),
        DevRows::Bf16(s) => b.arg(s),
    };
}

/// One chunk of rollouts on the device: its features and offsets (kept between calls) and this
/// call's targets.
struct Resident {
    rows: Arc<DevChunk>,
    y: CudaSlice<f32>,
}

impl std::ops::Deref for Resident {
    type Target = DevChunk;
    fn deref(&self) -> &DevChunk {
        &self.rows
    }
}

enum HeadDev {
    Linear {
        w: CudaSlice<f32>,
        b: f32,
    },
    Mlp {
        w1: CudaSlice<f32>,
        b1: CudaSlice<f32>,
        w2: CudaSlice<f32>,
        b2: f32,
        act: i32,
        hidden: usize,
    },
}

/// What the stats kernels leave on the device.
struct StatsOut {
    out: CudaSlice<f32>,
    resid: CudaSlice<f32>,
    /// MLP only: activations and w₂ ⊙ φ'(u), [S, h] each.
    mlp: Option<(CudaSlice<f32>, CudaSlice<f32>)>,
}

fn as_i32(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| unsupported(format!("{what} = {v} exceeds the kernels' 32-bit index")))
}

fn as_u32(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| unsupported(format!("{what} = {v} exceeds a grid dimension")))
}

fn unsupported(why: String) -> Error {
    CudaError::Unsupported(why).into()
}

/// The kernels' activation codes (`mprm_act` in common.cuh).
fn activation_code(a: Activation) -> i32 {
    match a {
        Activation::Relu => 0,
        Activation::Gelu => 1,
    }
}

fn mean_flag(reduction: Reduction) -> i32 {
    match reduction {
        Reduction::Mean => 1,
        Reduction::Sum => 0,
    }
}

/// Launch shape of `linear_stats`: (config, rollouts per block).
fn linear_launch(dim: usize, n_rollouts: usize) -> Result<(LaunchConfig, i32)> {
    if dim > MAX_LINEAR_DIM {
        return Err(unsupported(format!(
            "d = {dim} exceeds the linear kernel's limit of {MAX_LINEAR_DIM}"
        )));
    }
    if dim <= WARP_MODE_MAX_DIM {
        // Small rows: a warp per rollout keeps 8 rollouts in flight per block with no
        // block-wide barriers, instead of one barely-used block per rollout.
        let blocks = n_rollouts.div_ceil(WARPS_PER_BLOCK);
        Ok((
            LaunchConfig {
                grid_dim: (as_u32(blocks, "blocks")?, 1, 1),
                block_dim: (32 * WARPS_PER_BLOCK as u32, 1, 1),
                shared_mem_bytes: 0,
            },
            WARPS_PER_BLOCK as i32,
        ))
    } else {
        // Large rows: the whole block shares one rollout; enough threads that each holds at
        // most LINEAR_VEC columns, rounded to whole warps for the shuffles.
        let threads = dim.div_ceil(LINEAR_VEC).div_ceil(32) * 32;
        Ok((
            LaunchConfig {
                grid_dim: (as_u32(n_rollouts, "rollouts")?, 1, 1),
                block_dim: (threads.clamp(32, LINEAR_MAX_THREADS) as u32, 1, 1),
                shared_mem_bytes: 0,
            },
            1,
        ))
    }
}

fn block_of(threads: usize) -> u32 {
    (threads.div_ceil(32) * 32).clamp(32, 256) as u32
}

/// `gemm_nt`: 32 × 32 output tiles of C [m, n], 32 × 8 threads each.
fn gemm_config(m: usize, n: usize) -> Result<LaunchConfig> {
    Ok(LaunchConfig {
        grid_dim: (
            as_u32(m.div_ceil(32), "GEMM row tiles")?,
            as_u32(n.div_ceil(32), "GEMM column tiles")?,
            1,
        ),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    })
}

/// `mlp_step_f32`: one block per step.
fn mlp_step_config(steps: usize, h: usize) -> Result<LaunchConfig> {
    Ok(LaunchConfig {
        grid_dim: (as_u32(steps, "steps")?, 1, 1),
        block_dim: (block_of(h), 1, 1),
        shared_mem_bytes: 0,
    })
}

/// `project_f32`: one block per (rollout, direction).
fn project_config(count: usize, k: usize) -> Result<LaunchConfig> {
    Ok(LaunchConfig {
        grid_dim: (as_u32(count, "rollouts")?, as_u32(k, "directions")?, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// `column_sum_f32`: one thread per parameter.
fn column_sum_config(n_params: usize) -> Result<LaunchConfig> {
    Ok(LaunchConfig {
        grid_dim: (as_u32(n_params.div_ceil(256), "parameter blocks")?, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    })
}

mod blocks;

impl CudaEngine {
    fn upload_head(&self, head: &HeadParams) -> Result<HeadDev> {
        let s = &self.gpu.stream;
        Ok(match head {
            HeadParams::Linear(h) => HeadDev::Linear {
                w: s.clone_htod(&h.w).w("uploading w")?,
                b: h.b,
            },
            HeadParams::Mlp(h) => HeadDev::Mlp {
                w1: s.clone_htod(&h.w1).w("uploading w1")?,
                b1: s.clone_htod(&h.b1).w("uploading b1")?,
                w2: s.clone_htod(&h.w2).w("uploading w2")?,
                b2: h.b2,
                act: activation_code(h.activation),
                hidden: h.hidden(),
            },
        })
    }

    /// Splits the scored rollouts into chunks that fit the device budget; also returns the
    /// budget.
    fn plan(&self, input: &GradInput<'_>) -> Result<(Vec<Range<usize>>, usize)> {
        let budget = self.gpu.chunk_budget()?;
        let d = input.bundle.dim();
        let hidden = match input.head {
            HeadParams::Linear(_) => 0,
            HeadParams::Mlp(h) => h.hidden(),
        };
        // Features, target and residual per step, plus U, E, z and ‖a‖² for the MLP head.
        let per_step =
            d * input.bundle.dtype().size() + 8 + if hidden > 0 { 8 * hidden + 8 } else { 0 };
        let per_rollout = 8 + 4 * MLP_OUT;
        // Keep indices inside the kernels' 32-bit grid and int arguments.
        let max_steps = (i32::MAX as usize / 2).min(budget / per_step.max(1)).max(1);
        let lens = (0..input.len()).map(|k| input.bundle.rollout_len(input.rollout(k)));
        let chunks = chunk_rollouts(lens, per_step, per_rollout, budget, max_steps);
        Ok((chunks, budget))
    }

    /// The features and offsets of scored rollouts `ks` (resident from an earlier call, or
    /// uploaded now), and their targets.
    fn upload(&self, input: &GradInput<'_>, ks: Range<usize>, budget: usize) -> Result<Resident> {
        let bundle = input.bundle;
        let ids: Vec<usize> = ks.map(|k| input.rollout(k)).collect();
        let limit = self.gpu.resident_limit(budget);
        let rows = self
            .gpu
            .uploads
            .chunk(&self.gpu.ctx, &self.gpu.stream, bundle, &ids, limit)?;
        // Targets change from call to call (labels, soft scores) and are 1/d of the features:
        // they go up every time. `GradInput` refuses rollouts without steps, so no chunk asks the
        // driver for a zero-byte buffer (which it refuses) or a kernel for an empty grid.
        let y: Vec<f32> = ids
            .iter()
            .flat_map(|&i| input.targets[bundle.rollout_steps(i)].iter().copied())
            .collect();
        let y = self.gpu.stream.clone_htod(&y).w("uploading targets")?;
        Ok(Resident { rows, y })
    }

    /// Counters of the device-resident chunks: hits, misses, bytes uploaded and evicted (for
    /// tests and benchmarks).
    pub fn resident_stats(&self) -> Result<crate::gradnorm::resident::CacheStats> {
        self.gpu.uploads.stats()
    }

    /// Frees the device-resident chunks of this device (those no call is using).
    pub fn release_resident(&self) -> Result<()> {
        self.gpu.uploads.release()
    }

    /// Records `marks[k]` (when present) after the k-th kernel of a pass, for timing.
    fn mark(&self, marks: &[CudaEvent], k: usize) -> Result<()> {
        match marks.get(k) {
            Some(e) => e.record(&self.gpu.stream).w("recording an event"),
            None => Ok(()),
        }
    }

    /// Launches the statistics kernels for one resident chunk; `marks` (empty unless timing)
    /// receive an event after each kernel.
    fn run_stats(
        &self,
        res: &Resident,
        head: &HeadDev,
        d: usize,
        reduction: Reduction,
        marks: &[CudaEvent],
    ) -> Result<StatsOut> {
        let s = &self.gpu.stream;
        let mut resid = s
            .alloc_zeros::<f32>(res.n_steps)
            .w("allocating residuals")?;
        let (d_i, r_i) = (as_i32(d, "d")?, as_i32(res.n_rollouts, "rollouts")?);
        let mean = mean_flag(reduction);
        let dtype = res.x.dtype();
        match head {
            HeadDev::Linear { w, b } => {
                let mut out = s
                    .alloc_zeros::<f32>(res.n_rollouts * LINEAR_OUT)
                    .w("allocating outputs")?;
                let (cfg, rpb) = linear_launch(d, res.n_rollouts)?;
                let name = symbol("linear_stats", dtype);
                launch!(self.gpu, KernelId::LinearStats, &name, cfg, |l| {
                    push_rows(&mut l, &res.x);
                    l.arg(&res.offsets)
                        .arg(&res.y)
                        .arg(w)
                        .arg(b)
                        .arg(&d_i)
                        .arg(&r_i);
                    l.arg(&mean).arg(&rpb).arg(&mut out).arg(&mut resid);
                });
                self.mark(marks, 0)?;
                Ok(StatsOut {
                    out,
                    resid,
                    mlp: None,
                })
            }
            HeadDev::Mlp {
                w1,
                b1,
                w2,
                b2,
                act,
                hidden,
            } => {
                let h = *hidden;
                let h_i = as_i32(h, "hidden")?;
                let m_rows = res.n_steps as i64;
                let mut u = s.alloc_zeros::<f32>(res.n_steps * h).w("allocating U")?;
                let mut e = s.alloc_zeros::<f32>(res.n_steps * h).w("allocating E")?;
                let mut z = s.alloc_zeros::<f32>(res.n_steps).w("allocating z")?;
                let mut a_sq = s.alloc_zeros::<f32>(res.n_steps).w("allocating |a|^2")?;
                let gemm = symbol("gemm_nt", dtype);
                let cfg = gemm_config(res.n_steps, h)?;
                launch!(self.gpu, KernelId::Gemm, &gemm, cfg, |l| {
                    push_rows(&mut l, &res.x);
                    l.arg(w1).arg(&mut u).arg(&m_rows).arg(&h_i).arg(&d_i);
                });
                self.mark(marks, 0)?;
                let cfg = mlp_step_config(res.n_steps, h)?;
                launch!(self.gpu, KernelId::MlpStats, "mlp_step_f32", cfg, |l| {
                    l.arg(&mut u)
                        .arg(&mut e)
                        .arg(b1)
                        .arg(w2)
                        .arg(b2)
                        .arg(&h_i)
                        .arg(act);
                    l.arg(&mut z).arg(&mut a_sq);
                });
                self.mark(marks, 1)?;
                let mut out = s
                    .alloc_zeros::<f32>(res.n_rollouts * MLP_OUT)
                    .w("allocating outputs")?;
                let limit = ghost_limit(d, h) as f32;
                let name = symbol("mlp_stats", dtype);
                let cfg = LaunchConfig {
                    grid_dim: (as_u32(res.n_rollouts, "rollouts")?, 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                launch!(self.gpu, KernelId::MlpStats, &name, cfg, |l| {
                    push_rows(&mut l, &res.x);
                    l.arg(&res.offsets)
                        .arg(&res.y)
                        .arg(&u)
                        .arg(&e)
                        .arg(&z)
                        .arg(&a_sq);
                    l.arg(&d_i)
                        .arg(&h_i)
                        .arg(&mean)
                        .arg(&limit)
                        .arg(&mut out)
                        .arg(&mut resid);
                });
                self.mark(marks, 2)?;
                Ok(StatsOut {
                    out,
                    resid,
                    mlp: Some((u, e)),
                })
            }
        }
    }

    /// Per-rollout gradients of chunk rollouts `rollouts`, [count, P] on the device.
    fn materialise(
        &self,
        res: &Resident,
        stats: &StatsOut,
        head: &HeadDev,
        d: usize,
        n_params: usize,
        rollouts: Range<usize>,
    ) -> Result<CudaSlice<f32>> {
        let (first, count) = (rollouts.start, rollouts.len());
        let s = &self.gpu.stream;
        let mut grad = s
            .alloc_zeros::<f32>(count * n_params)
            .w("allocating gradients")?;
        let (d_i, first_i) = (as_i32(d, "d")?, as_i32(first, "rollout")?);
        let cfg = LaunchConfig {
            grid_dim: (
                as_u32(count, "rollouts")?,
                n_params.div_ceil(256).min(65535) as u32,
                1,
            ),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let dtype = res.x.dtype();
        match (head, &stats.mlp) {
            (HeadDev::Linear { .. }, _) => {
                let name = symbol("linear_grad", dtype);
                launch!(self.gpu, KernelId::RolloutGrad, &name, cfg, |l| {
                    push_rows(&mut l, &res.x);
                    l.arg(&res.offsets)
                        .arg(&stats.resid)
                        .arg(&d_i)
                        .arg(&first_i)
                        .arg(&mut grad);
                });
            }
            (HeadDev::Mlp { hidden, .. }, Some((act, e))) => {
                let h_i = as_i32(*hidden, "hidden")?;
                let name = symbol("mlp_grad", dtype);
                launch!(self.gpu, KernelId::RolloutGrad, &name, cfg, |l| {
                    push_rows(&mut l, &res.x);
                    l.arg(&res.offsets)
                        .arg(&stats.resid)
                        .arg(act)
                        .arg(e)
                        .arg(&d_i)
                        .arg(&h_i);
                    l.arg(&first_i).arg(&mut grad);
                });
            }
            (HeadDev::Mlp { .. }, None) => {
                return Err(unsupported("MLP gradients need the forward buffers".into()));
            }
        }
        Ok(grad)
    }

    /// Sub-chunks of a resident chunk small enough to materialise [count, P] gradients.
    fn sub_chunks(n_rollouts: usize, n_params: usize) -> impl Iterator<Item = Range<usize>> {
        let per = (GRAD_BUDGET_BYTES / (4 * n_params)).max(1);
        (0..n_rollouts)
            .step_by(per)
            .map(move |a| a..(a + per).min(n_rollouts))
    }

    fn rows_of(head: &HeadDev, out: &[f32], n: usize) -> Vec<RolloutRow> {
        (0..n)
            .map(|i| match head {
                HeadDev::Linear { .. } => {
                    let o = &out[i * LINEAR_OUT..(i + 1) * LINEAR_OUT];
                    RolloutRow {
                        loss: o[0] as f64,
                        groups: [o[1] as f64, o[2] as f64, 0.0, 0.0],
                        centered: o[3] as f64,
                        sum_step: o[4] as f64,
                        resid_sq: o[5] as f64,
                    }
                }
                HeadDev::Mlp { .. } => {
                    let o = &out[i * MLP_OUT..(i + 1) * MLP_OUT];
                    RolloutRow {
                        loss: o[0] as f64,
                        groups: [o[1] as f64, o[2] as f64, o[3] as f64, o[4] as f64],
                        centered: o[5] as f64,
                        sum_step: o[6] as f64,
                        resid_sq: o[7] as f64,
                    }
                }
            })
            .collect()
    }
}

impl GradNormEngine for CudaEngine {
    fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    fn kernel_names(&self, input: &GradInput<'_>, projection: bool) -> Vec<String> {
        cuda_kernel_names(input, projection)
    }

    fn rollout_stats(
        &self,
        input: &GradInput<'_>,
        reduction: Reduction,
        projection: Option<&ProjectionMatrix>,
    ) -> Result<RolloutGradStats> {
        let d = input.bundle.dim();
        let n_params = input.head.n_params();
        let head = self.upload_head(input.head)?;
        let s = &self.gpu.stream;
        let dirs = projection
            .map(|p| s.clone_htod(&p.data).w("uploading projection directions"))
            .transpose()?;
        let mut rows = Vec::with_capacity(input.len());
        let mut projected = projection.map(|p| Vec::with_capacity(input.len() * p.k));
        let (chunks, budget) = self.plan(input)?;
        for ks in chunks {
            let res = self.upload(input, ks, budget)?;
            let stats = self.run_stats(&res, &head, d, reduction, &[])?;
            let out = s.clone_dtoh(&stats.out).w("downloading statistics")?;
            rows.extend(Self::rows_of(&head, &out, res.n_rollouts));
            if let (Some(p), Some(dirs), Some(acc)) =
                (projection, dirs.as_ref(), projected.as_mut())
            {
                // The projections are one product, [rollouts, P] × [k, P]ᵀ, through the GEMM:
                // each gradient row is read once per tile of 32 directions, where `project_f32`
                // reads it once per direction.
                let k_i = as_i32(p.k, "directions")?;
                let p_len = as_i32(n_params, "parameters")?;
                for sub in Self::sub_chunks(res.n_rollouts, n_params) {
                    let grad = self.materialise(&res, &stats, &head, d, n_params, sub.clone())?;
                    let mut out = s
                        .alloc_zeros::<f32>(sub.len() * p.k)
                        .w("allocating projections")?;
                    let m_rows = sub.len() as i64;
                    let cfg = gemm_config(sub.len(), p.k)?;
                    launch!(self.gpu, KernelId::Gemm, "gemm_nt_f32", cfg, |l| {
                        l.arg(&grad).arg(dirs).arg(&mut out);
                        l.arg(&m_rows).arg(&k_i).arg(&p_len);
                    });
                    acc.extend(s.clone_dtoh(&out).w("downloading projections")?);
                }
            }
        }
        s.synchronize().w("finishing the statistics kernels")?;
        Ok(RolloutGradStats::for_input(
            input, reduction, &rows, projection, projected,
        ))
    }

    fn total_gradient(&self, input: &GradInput<'_>, reduction: Reduction) -> Result<Vec<f64>> {
        let d = input.bundle.dim();
        let n_params = input.head.n_params();
        let head = self.upload_head(input.head)?;
        let s = &self.gpu.stream;
        let mut total = vec![0.0f64; n_params];
        let p_i = n_params as i64;
        let (chunks, budget) = self.plan(input)?;
        for ks in chunks {
            let res = self.upload(input, ks, budget)?;
            let stats = self.run_stats(&res, &head, d, reduction, &[])?;
            for sub in Self::sub_chunks(res.n_rollouts, n_params) {
                let grad = self.materialise(&res, &stats, &head, d, n_params, sub.clone())?;
                let mut sums = s.alloc_zeros::<f32>(n_params).w("allocating column sums")?;
                let count = as_i32(sub.len(), "rollouts")?;
                let cfg = column_sum_config(n_params)?;
                launch!(self.gpu, KernelId::Project, "column_sum_f32", cfg, |l| {
                    l.arg(&grad).arg(&p_i).arg(&count).arg(&mut sums);
                });
                for (t, v) in total
                    .iter_mut()
                    .zip(s.clone_dtoh(&sums).w("downloading column sums")?)
                {
                    *t += v as f64;
                }
            }
        }
        Ok(total)
    }

    fn weighted_gram(&self, bundle: &FeatureBundle, weights: &[f64]) -> Result<Vec<f64>> {
        let d = bundle.dim();
        let p = d + 1;
        let n_steps = bundle.n_steps();
        let s = &self.gpu.stream;
        // The running f64 sum stays on the device for the whole call; each launch's partial
        // tiles ([slices, p, p] f32) and its rows share what is left of the chunk budget.
        let acc_bytes = p * p * 8;
        let budget = self.gpu.chunk_budget()?;
        if acc_bytes >= budget / 2 {
            return Err(unsupported(format!(
                "weighted Gram matrix: the {p} × {p} f64 sum ({acc_bytes} bytes) needs more than \
                 half of the device's chunk budget ({budget} bytes)"
            )));
        }
        let budget = budget - acc_bytes;
        let tile_bytes = p * p * 4;
        let row_bytes = d * bundle.dtype().size() + 4;
        let slices = (budget / 2 / tile_bytes)
            .min(budget / 2 / (row_bytes * GRAM_SLICE).max(1))
            .clamp(1, MAX_GRAM_SLICES);
        let chunk = slices * GRAM_SLICE;
        let tiles = as_u32(p.div_ceil(32), "Gram tiles")?;
        let entries = as_u32((p * p).div_ceil(GRAM_ACCUMULATE_THREADS), "Gram entries")?;
        let d_i = as_i32(d, "d")?;
        let p_i = as_i32(p, "p")?;
        let slice_i = GRAM_SLICE as i32;
        let mut acc = s.alloc_zeros::<f64>(p * p).w("allocating the Gram sum")?;
        for first in (0..n_steps).step_by(chunk) {
            let last = (first + chunk).min(n_steps);
            let steps = last - first;
            let n_slices = steps.div_ceil(GRAM_SLICE);
            let x = self.gpu.uploads.upload_rows(
                &self.gpu.ctx,
                s,
                bundle,
                std::slice::from_ref(&(first * d..last * d)),
            )?;
            let w32: Vec<f32> = weights[first..last].iter().map(|&v| v as f32).collect();
            let w = s.clone_htod(&w32).w("uploading Gram weights")?;
            let mut out = s
                .alloc_zeros::<f32>(n_slices * p * p)
                .w("allocating Gram tiles")?;
            let n_i = steps as i64;
            let cfg = LaunchConfig {
                grid_dim: (tiles, tiles, as_u32(n_slices, "Gram slices")?),
                block_dim: (32, 8, 1),
                shared_mem_bytes: 0,
            };
            let name = symbol("weighted_gram", x.dtype());
            launch!(self.gpu, KernelId::Gram, &name, cfg, |l| {
                push_rows(&mut l, &x);
                l.arg(&w).arg(&n_i).arg(&d_i).arg(&slice_i).arg(&mut out);
            });
            // Slices in order, upper triangle only (blocks below the diagonal write nothing).
            let n_slices_i = n_slices as i64;
            let cfg = LaunchConfig {
                grid_dim: (entries, 1, 1),
                block_dim: (GRAM_ACCUMULATE_THREADS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            launch!(self.gpu, KernelId::Gram, "gram_accumulate_f64", cfg, |l| {
                l.arg(&out).arg(&n_slices_i).arg(&p_i).arg(&mut acc);
            });
        }
        let mut gram = s.clone_dtoh(&acc).w("downloading the Gram matrix")?;
        for r in 0..p {
            for k in 0..r {
                gram[r * p + k] = gram[k * p + r];
            }
        }
        Ok(gram)
    }
    /// Materialised gradients, sketched on the device by `precondition_sketch_f32`; the k-wide
    /// rows come back per sub-chunk and their cosines are taken on the host in f64.
    fn sketch_cosines(
        &self,
        input: &GradInput<'_>,
        reduction: Reduction,
        pre: &PreconditionedSketch,
        directions: &[Vec<f64>],
    ) -> Result<Vec<f64>> {
        let d = input.bundle.dim();
        let n_params = input.head.n_params();
        let k = pre.sketch.dims;
        let head = self.upload_head(input.head)?;
        let s = &self.gpu.stream;
        let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let m = s.clone_htod(&narrow(&pre.m)).w("uploading Adam's m")?;
        let v = s.clone_htod(&narrow(&pre.v)).w("uploading Adam's v")?;
        let buckets = pre.sketch.by_bucket();
        let start = s.clone_htod(&buckets.start).w("uploading the sketch")?;
        let members = s.clone_htod(&buckets.members).w("uploading the sketch")?;
        let signs = s.clone_htod(&buckets.signs).w("uploading the sketch")?;
        let (beta1, beta2, eps) = (
            pre.adam.beta1 as f32,
            pre.adam.beta2 as f32,
            pre.adam.eps as f32,
        );
        let p_i = n_params as i64;
        let k_i = as_i32(k, "sketch dimensions")?;
        let mut cosines = Vec::with_capacity(input.len() * directions.len());
        let (chunks, budget) = self.plan(input)?;
        for ks in chunks {
            let res = self.upload(input, ks, budget)?;
            let stats = self.run_stats(&res, &head, d, reduction, &[])?;
            for sub in Self::sub_chunks(res.n_rollouts, n_params) {
                let grad = self.materialise(&res, &stats, &head, d, n_params, sub.clone())?;
                let mut out = s
                    .alloc_zeros::<f32>(sub.len() * k)
                    .w("allocating sketches")?;
                let cfg = LaunchConfig {
                    grid_dim: (
                        as_u32(sub.len(), "rollouts")?,
                        as_u32(k.div_ceil(256), "sketch blocks")?,
                        1,
                    ),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                launch!(
                    self.gpu,
                    KernelId::Sketch,
                    "precondition_sketch_f32",
                    cfg,
                    |l| {
                        l.arg(&grad).arg(&m).arg(&v);
                        l.arg(&beta1).arg(&beta2).arg(&eps);
                        l.arg(&start).arg(&members).arg(&signs);
                        l.arg(&p_i).arg(&k_i).arg(&mut out);
                    }
                );
                let host = s.clone_dtoh(&out).w("downloading sketches")?;
                for row in host.chunks(k) {
                    let row: Vec<f64> = row.iter().map(|&x| f64::from(x)).collect();
                    cosines.extend(directions.iter().map(|t| cosine(&row, t)));
                }
            }
        }
        Ok(cosines)
    }
}

/// Times the statistics kernels on the first chunk of `input` (resident, after `warmup` runs)
/// with CUDA events; one timing per kernel plus the whole pass.
pub fn bench_kernels(
    ordinal: usize,
    input: &GradInput<'_>,
    reduction: Reduction,
    warmup: usize,
    repeats: usize,
) -> Result<(String, Vec<KernelTiming>)> {
    use cudarc::driver::sys::CUevent_flags;
    let engine = CudaEngine::new(ordinal)?;
    let gpu = &engine.gpu;
    let d = input.bundle.dim();
    let head = engine.upload_head(input.head)?;
    let (chunks, budget) = engine.plan(input)?;
    let first = chunks
        .into_iter()
        .next()
        .ok_or_else(|| Error::EmptyInput("no rollouts to time".into()))?;
    let res = engine.upload(input, first, budget)?;
    for _ in 0..warmup {
        engine.run_stats(&res, &head, d, reduction, &[])?;
    }
    gpu.stream.synchronize().w("warm-up")?;
    let names = cuda_kernel_names(input, false);
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(repeats); names.len() + 1];
    for _ in 0..repeats {
        // One event before the pass and one after each kernel: the gaps are per-kernel times.
        let events = (0..=names.len())
            .map(|_| {
                gpu.ctx
                    .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                    .w("creating an event")
            })
            .collect::<Result<Vec<_>>>()?;
        events[0].record(&gpu.stream).w("recording an event")?;
        engine.run_stats(&res, &head, d, reduction, &events[1..])?;
        for (k, pair) in events.windows(2).enumerate() {
            samples[k].push(pair[0].elapsed_ms(&pair[1]).w("reading an event")? as f64);
        }
        samples[names.len()].push(
            events[0]
                .elapsed_ms(&events[names.len()])
                .w("reading an event")? as f64,
        );
    }
    let mut out: Vec<KernelTiming> = names
        .iter()
        .cloned()
        .chain(["whole pass".to_string()])
        .zip(samples)
        .map(|(name, t)| {
            KernelTiming::from_samples(name, t, res.feature_bytes, res.n_rollouts, res.n_steps)
        })
        .collect();
    out.shrink_to_fit();
    Ok((gpu.name.clone(), out))
}

/// Wall-clock times of whole `rollout_stats` calls that find nothing resident (the chunks are
/// released before each): what every call cost before chunks were kept, to set beside the warm
/// calls of [`crate::gradnorm::bench::time_engine`]. The chunks of the last call stay resident.
pub fn time_cold_calls(
    ordinal: usize,
    input: &GradInput<'_>,
    reduction: Reduction,
    repeats: usize,
) -> Result<KernelTiming> {
    let engine = CudaEngine::new(ordinal)?;
    let mut samples = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        engine.release_resident()?;
        engine.gpu.stream.synchronize().w("draining the stream")?;
        let t = std::time::Instant::now();
        let stats = engine.rollout_stats(input, reduction, None)?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(&stats);
    }
    Ok(KernelTiming::whole_calls(
        format!("{} rollout_stats, uploading", engine.device()),
        samples,
        input,
    ))
}

/// Device-to-device copy bandwidth of device `ordinal` in GB/s (bytes read + written per
/// second), median of `repeats` copies of `bytes` bytes.
pub fn copy_bandwidth(ordinal: usize, bytes: usize, repeats: usize) -> Result<f64> {
    use cudarc::driver::sys::CUevent_flags;
    let gpu = Gpu::get(ordinal)?;
    let s = &gpu.stream;
    let n = bytes / 4;
    let src = s.alloc_zeros::<f32>(n).w("allocating the copy source")?;
    let mut dst = s
        .alloc_zeros::<f32>(n)
        .w("allocating the copy destination")?;
    s.memcpy_dtod(&src, &mut dst).w("warm-up copy")?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let a = gpu
            .ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .w("creating an event")?;
        let b = gpu
            .ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .w("creating an event")?;
        a.record(s).w("recording an event")?;
        s.memcpy_dtod(&src, &mut dst).w("device copy")?;
        b.record(s).w("recording an event")?;
        times.push(a.elapsed_ms(&b).w("reading an event")? as f64);
    }
    let median = crate::gradnorm::bench::median(&mut times);
    Ok(2.0 * (n * 4) as f64 / (median * 1e-3) / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradnorm::kernels::ALL;

    /// The value of `#define NAME value` in `source`.
    fn define(source: &str, name: &str) -> usize {
        source
            .lines()
            .find_map(|l| {
                l.strip_prefix("#define ")?
                    .strip_prefix(name)?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no #define {name}"))
    }

    #[test]
    fn linear_launch_constants_are_the_kernels() {
        let src = ALL
            .iter()
            .find(|k| k.id == KernelId::LinearStats)
            .unwrap()
            .source;
        assert_eq!(define(src, "LINEAR_VEC"), LINEAR_VEC);
        assert_eq!(define(src, "LINEAR_OUT"), LINEAR_OUT);
        assert_eq!(define(src, "LINEAR_MAX_THREADS"), LINEAR_MAX_THREADS);
        assert!(src.contains("__launch_bounds__(LINEAR_MAX_THREADS)"));
    }

    #[test]
    fn linear_blocks_stay_within_the_launch_bound() {
        for dim in [1, 64, 512, 513, 4096, 8000, MAX_LINEAR_DIM] {
            let (cfg, per_block) = linear_launch(dim, 10).unwrap();
            let threads = cfg.block_dim.0 as usize;
            assert!(
                threads <= LINEAR_MAX_THREADS && threads.is_multiple_of(32),
                "d = {dim}"
            );
            // Every column has a thread: a group of threads holds at most LINEAR_VEC each.
            let group = if per_block == 1 { threads } else { 32 };
            assert!(group * LINEAR_VEC >= dim, "d = {dim}: {threads} threads");
        }
        let err = linear_launch(MAX_LINEAR_DIM + 1, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("8192"), "{err}");
    }
}
