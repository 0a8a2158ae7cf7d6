//! Rollout features on the device: the chunks the engine keeps between calls, and the staged,
//! asynchronous uploads that put them there. The policy (keys, eviction, piece planning) is in
//! [`crate::gradnorm::resident`], where the CPU tests check it.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream, DeviceRepr, PinnedHostSlice};

use super::context::{CudaResultExt, poisoned};
use crate::data::features::{FeatureBundle, FeatureDtype, FeatureRows};
use crate::error::Result;
use crate::gradnorm::resident::{CacheStats, ChunkKey, ResidentCache, fill_piece, stage_pieces};

/// Bytes per pinned staging buffer. Two alternate: while the device copies one, the host fills
/// the other, so the copy engine and the host's memory reads overlap.
const STAGE_BYTES: usize = 32 << 20;

/// Feature rows on the device, in the bundle's stored type (bf16 as raw bits).
pub(super) enum DevRows {
    F32(CudaSlice<f32>),
    Bf16(CudaSlice<u16>),
}

impl DevRows {
    pub(super) fn dtype(&self) -> FeatureDtype {
        match self {
            DevRows::F32(_) => FeatureDtype::F32,
            DevRows::Bf16(_) => FeatureDtype::Bf16,
        }
    }
}

/// One chunk of rollouts' features and offsets, resident on the device; shared between the cache
/// and the call using it.
pub(super) struct DevChunk {
    pub x: DevRows,
    /// Chunk-relative step offsets, R + 1.
    pub offsets: CudaSlice<i64>,
    pub n_rollouts: usize,
    pub n_steps: usize,
    pub feature_bytes: usize,
}

/// Two pinned host buffers, the stream their copies run on, and an event per buffer marking its
/// last copy.
struct Staging {
    copy: Arc<CudaStream>,
    buffers: [PinnedHostSlice<u8>; 2],
    copied: [CudaEvent; 2],
}

impl Staging {
    fn new(ctx: &Arc<CudaContext>) -> Result<Self> {
        let buffer = || -> Result<PinnedHostSlice<u8>> {
            // SAFETY: the memory is zeroed right below, before anything reads it.
            let mut b =
                unsafe { ctx.alloc_pinned::<u8>(STAGE_BYTES) }.w("allocating pinned memory")?;
            let p = b.as_mut_ptr().w("reaching pinned memory")?;
            // SAFETY: `p` points at STAGE_BYTES bytes just allocated for `b`.
            unsafe { std::ptr::write_bytes(p, 0, STAGE_BYTES) };
            Ok(b)
        };
        let event = || ctx.new_event(None).w("creating an event");
        Ok(Staging {
            copy: ctx.new_stream().w("creating the copy stream")?,
            buffers: [buffer()?, buffer()?],
            copied: [event()?, event()?],
        })
    }

    /// A new device array holding the elements `runs` of `src`, concatenated in order. The
    /// copies go through the staging buffers in turn on the copy stream; `compute` waits for the
    /// last of them, so kernels queued on it afterwards see the whole array.
    fn upload<T: DeviceRepr + bytemuck::Pod + Send + Sync>(
        &mut self,
        compute: &Arc<CudaStream>,
        src: &[T],
        runs: &[Range<usize>],
    ) -> Result<CudaSlice<T>> {
        let size = std::mem::size_of::<T>();
        let total: usize = runs.iter().map(|r| r.len()).sum();
        // SAFETY: the copies below write every one of the `total` elements before `compute`,
        // which waits for them, runs anything that reads the array.
        let mut dev = unsafe { compute.alloc::<T>(total.max(1)) }.w("allocating device rows")?;
        // The copy stream starts after the allocation and whatever else `compute` has queued.
        self.copy.join(compute).w("ordering the copy stream")?;
        {
            // SAFETY: bytes have no invalid values, and the view spans the array exactly.
            let mut bytes = unsafe { dev.transmute_mut::<u8>(total * size) }
                .expect("the array holds `total` elements");
            for (i, piece) in stage_pieces(runs, STAGE_BYTES / size).iter().enumerate() {
                let k = i % 2;
                // The device has finished reading this buffer's previous piece.
                self.copied[k]
                    .synchronize()
                    .w("waiting for a staging copy")?;
                let n = piece.dst.len() * size;
                let buf = self.buffers[k].as_mut_slice().w("reaching pinned memory")?;
                fill_piece(bytemuck::cast_slice_mut(&mut buf[..n]), src, &piece.parts);
                let at = piece.dst.start * size;
                // A plain slice of pinned memory: the copy is asynchronous, and the event
                // recorded next guards the buffer until the device has read it.
                self.copy
                    .memcpy_htod(&buf[..n], &mut bytes.slice_mut(at..at + n))
                    .w("copying rows to the device")?;
                self.copied[k].record(&self.copy).w("recording a copy")?;
            }
        }
        compute.join(&self.copy).w("ordering the compute stream")?;
        Ok(dev)
    }
}

/// A device's resident chunks and its staging buffers.
pub(super) struct Uploads {
    cache: Mutex<ResidentCache<Arc<DevChunk>>>,
    staging: Mutex<Option<Staging>>,
}

impl Uploads {
    pub(super) fn new() -> Self {
        Uploads {
            cache: Mutex::new(ResidentCache::new(0)),
            staging: Mutex::new(None),
        }
    }

    fn lock_cache(&self) -> Result<std::sync::MutexGuard<'_, ResidentCache<Arc<DevChunk>>>> {
        self.cache
            .lock()
            .map_err(|_| poisoned("the resident chunks"))
    }

    /// Bytes the resident chunks hold now.
    pub(super) fn held_bytes(&self) -> Result<usize> {
        Ok(self.lock_cache()?.held_bytes())
    }

    /// The cache's counters.
    pub(super) fn stats(&self) -> Result<CacheStats> {
        Ok(self.lock_cache()?.stats())
    }

    /// Frees every resident chunk no call is using.
    pub(super) fn release(&self) -> Result<()> {
        self.lock_cache()?.clear();
        Ok(())
    }

    /// Rollouts `ids` of `bundle` (in that order) on the device: the resident chunk when there
    /// is one, otherwise uploaded and, if `limit` bytes allow, kept for later calls.
    pub(super) fn chunk(
        &self,
        ctx: &Arc<CudaContext>,
        compute: &Arc<CudaStream>,
        bundle: &FeatureBundle,
        ids: &[usize],
        limit: usize,
    ) -> Result<Arc<DevChunk>> {
        let key = ChunkKey::new(bundle.instance(), ids.iter().copied());
        let mut cache = self.lock_cache()?;
        cache.set_limit(limit);
        if let Some(hit) = cache.get(&key) {
            return Ok(hit);
        }
        let d = bundle.dim();
        let mut offsets = Vec::with_capacity(ids.len() + 1);
        offsets.push(0i64);
        let mut rows = Vec::new();
        for run in key.runs() {
            let steps = bundle.offsets()[run.start]..bundle.offsets()[run.end];
            rows.push(steps.start * d..steps.end * d);
        }
        for &i in ids {
            let len = bundle.rollout_len(i) as i64;
            offsets.push(offsets.last().expect("starts with 0") + len);
        }
        let n_steps = *offsets.last().expect("starts with 0") as usize;
        let feature_bytes = n_steps * d * bundle.dtype().size();
        let bytes = feature_bytes + offsets.len() * 8;
        // Evict first: the room the new chunk needs must be free before it is allocated.
        let keep = cache.reserve(bytes);
        let x = self.upload_rows(ctx, compute, bundle, &rows)?;
        let chunk = Arc::new(DevChunk {
            x,
            offsets: compute.clone_htod(&offsets).w("uploading offsets")?,
            n_rollouts: ids.len(),
            n_steps,
            feature_bytes,
        });
        if keep {
            cache.insert(key, chunk.clone(), bytes);
        }
        Ok(chunk)
    }

    /// The feature elements `rows` of `bundle`, concatenated, as a new device array.
    pub(super) fn upload_rows(
        &self,
        ctx: &Arc<CudaContext>,
        compute: &Arc<CudaStream>,
        bundle: &FeatureBundle,
        rows: &[Range<usize>],
    ) -> Result<DevRows> {
        let mut staging = self
            .staging
            .lock()
            .map_err(|_| poisoned("the staging buffers"))?;
        if staging.is_none() {
            *staging = Some(Staging::new(ctx)?);
        }
        let staging = staging.as_mut().expect("just created");
        Ok(match bundle.features() {
            FeatureRows::F32(all) => DevRows::F32(staging.upload(compute, all, rows)?),
            FeatureRows::Bf16(all) => {
                let raw: &[u16] = bytemuck::cast_slice(all);
                DevRows::Bf16(staging.upload(compute, raw, rows)?)
            }
        })
    }
}
