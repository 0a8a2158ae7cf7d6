//! One CUDA context per device ordinal per process, with its stream and its NVRTC-compiled
//! modules.
//!
//! Modules are compiled on first use for the device's own architecture and cached for the life of
//! the process (`KernelId` indexes a fixed slot array), so repeated engine calls along a training
//! run pay NVRTC once. Every cudarc error is turned into [`Error::Cuda`] naming what failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx, compile_ptx_with_opts};

use super::resident::Uploads;
use crate::error::{CudaError, Error, Result};
use crate::gradnorm::kernels::{ALL, KernelId, KernelSource};

/// Attaches context to cudarc results.
pub(crate) trait CudaResultExt<T> {
    /// Maps the error to [`Error::Cuda`] with `what` (a kernel or operation name).
    fn w(self, what: &str) -> Result<T>;
}

impl<T> CudaResultExt<T> for std::result::Result<T, DriverError> {
    fn w(self, what: &str) -> Result<T> {
        self.map_err(|e| {
            CudaError::Driver {
                operation: what.to_string(),
                detail: e.to_string(),
            }
            .into()
        })
    }
}

/// The error for a lock that an earlier panic poisoned.
pub(super) fn poisoned(what: &str) -> Error {
    CudaError::Driver {
        operation: format!("locking {what}"),
        detail: "poisoned by an earlier panic".into(),
    }
    .into()
}

/// True when NVRTC (`libnvrtc.so.13`) can be loaded.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen libnvrtc; no NVRTC function is called.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles one kernel family to PTX text for `arch` (e.g. `compute_90`) through NVRTC.
pub fn compile_ptx(kernel: &KernelSource, arch: &str) -> Result<String> {
    // cudarc panics on first use of a missing library, so ask before compiling.
    if !nvrtc_available() {
        return Err(crate::device::NVRTC_MISSING.into());
    }
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}")],
        name: Some(kernel.file.to_string()),
        ..Default::default()
    };
    compile_ptx_with_opts(kernel.expanded(), opts)
        .map(|ptx| ptx.to_src())
        .map_err(|e| {
            let log = match &e {
                CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
                other => format!("{other:?}"),
            };
            CudaError::Compile {
                file: kernel.file.to_string(),
                arch: arch.to_string(),
                log,
            }
            .into()
        })
}

/// A device's context, stream and module cache.
pub struct Gpu {
    /// The (primary) context.
    pub ctx: Arc<CudaContext>,
    /// The stream every launch and copy goes to, so work is ordered without extra events.
    pub stream: Arc<CudaStream>,
    /// `compute_XY` of the device.
    pub arch: String,
    /// Human-readable device name.
    pub name: String,
    modules: Mutex<Vec<Option<Arc<CudaModule>>>>,
    /// The chunks of rollout features kept between calls, and the staging buffers.
    pub(super) uploads: Uploads,
}

impl Gpu {
    /// The process-wide handle for device `ordinal`, created on first use.
    pub fn get(ordinal: usize) -> Result<Arc<Gpu>> {
        static GPUS: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();
        let mut gpus = GPUS
            .get_or_init(Default::default)
            .lock()
            .map_err(|_| poisoned("the device table"))?;
        if let Some(g) = gpus.get(&ordinal) {
            return Ok(g.clone());
        }
        // Never let cudarc see a missing driver: it panics instead of returning an error.
        crate::device::probe_cuda(ordinal)?;
        let ctx = CudaContext::new(ordinal).w("creating the CUDA context")?;
        let (major, minor) = ctx
            .compute_capability()
            .w("reading the compute capability")?;
        let name = ctx.name().w("reading the device name")?;
        let stream = ctx.default_stream();
        let gpu = Arc::new(Gpu {
            ctx,
            stream,
            arch: format!("compute_{major}{minor}"),
            name,
            modules: Mutex::new(vec![None; ALL.len()]),
            uploads: Uploads::new(),
        });
        gpus.insert(ordinal, gpu.clone());
        Ok(gpu)
    }

    /// The function `symbol` of family `id`, compiling and loading the module on first use.
    pub fn function(&self, id: KernelId, symbol: &str) -> Result<CudaFunction> {
        let module = {
            let mut slots = self
                .modules
                .lock()
                .map_err(|_| poisoned("the module cache"))?;
            match &slots[id.index()] {
                Some(m) => m.clone(),
                None => {
                    let ptx = compile_ptx(id.source(), &self.arch)?;
                    let m = self
                        .ctx
                        .load_module(Ptx::from_src(ptx))
                        .w(&format!("loading kernels/{}", id.source().file))?;
                    slots[id.index()] = Some(m.clone());
                    m
                }
            }
        };
        module.load_function(symbol).w(&format!("finding {symbol}"))
    }

    /// Bytes of device memory a run may use for one chunk: `MPRM_CUDA_CHUNK_MB` when set,
    /// otherwise 40% of what is free now, counting the resident chunks as free (they are
    /// evicted when a new chunk needs the room). Counting them keeps a bundle's chunks the same
    /// from call to call, so a later call finds them resident.
    pub fn chunk_budget(&self) -> Result<usize> {
        if let Some(mb) = env_mb("MPRM_CUDA_CHUNK_MB") {
            return Ok(mb.max(1) << 20);
        }
        let (free, _total) = self.ctx.mem_get_info().w("querying free memory")?;
        Ok((free + self.uploads.held_bytes()?) / 5 * 2)
    }

    /// Bytes the resident chunks may hold: `MPRM_CUDA_RESIDENT_MB` when set (0 keeps nothing),
    /// otherwise one chunk budget, so a bundle that fits one chunk stays on the device.
    pub fn resident_limit(&self, chunk_budget: usize) -> usize {
        env_mb("MPRM_CUDA_RESIDENT_MB").map_or(chunk_budget, |mb| mb << 20)
    }
}

/// A size in MiB from environment variable `name`, when set to a number.
fn env_mb(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
}
