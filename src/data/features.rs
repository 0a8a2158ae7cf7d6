//! The features bundle: step representations ϕ of a corpus, in one safetensors file.
//!
//! This is the hand-off format between whatever produced the `<prm>` hidden states (the simulator,
//! or a PyTorch forward pass over a real MLLM) and everything in mprm that needs them (gradient
//! norms, training, gradient-based selection).
//!
//! | tensor | dtype | shape | meaning |
//! |---|---|---|---|
//! | `features` | F32 or BF16 | [S, d] | one row per step, rollouts contiguous in corpus order |
//! | `offsets` | I64 | [R+1] | rollout i owns rows `offsets[i]..offsets[i+1]` |
//! | `mc_scores` | F32 | [S] | MC score of each step, in [0, 1] |
//! | `source` | I32 | [R] | index into the `sources` metadata list |
//! | `line` | I64 | [R] | optional: 0-based physical line of the rollout in its source file |
//! | `labels` | F32 | [S] | optional: training targets in [0, 1] overriding the MC-derived ones |
//! | `teacher_q` | F32 | [S] | synthetic only: teacher probability q* of each step |
//! | `true_correct` | U8 or F32 | [S] | synthetic only: true step correctness (0/1) |
//! | `w_star` | F32 | [d] | synthetic only: teacher weights |
//! | `b_star` | F32 | [1] | synthetic only: teacher bias |
//!
//! Metadata (`__metadata__`, all strings): `format` = `mprm-features/1`, `sources` (a JSON list of
//! source names), `corpus_fingerprint` (see [`crate::data::fingerprint`]; every bundle mprm writes
//! has one, and a bundle whose recorded fingerprint disagrees with its rollouts is refused), and
//! optionally `seed` and `generator` (a JSON object of settings).
//!
//! Large files are memory-mapped: the feature matrix is viewed in place, never copied.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::bf16;
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::Dtype;

use crate::data::fingerprint::{CorpusFingerprint, FingerprintBuilder};
use crate::data::safetensors_io::{MappedSafetensors, SafetensorsWriter, TensorSpec, pod_vec};
use crate::error::{Error, Result};

/// Value of the `format` metadata key.
pub const FORMAT_TAG: &str = "mprm-features/1";

/// Metadata key of the corpus fingerprint.
pub const FINGERPRINT_KEY: &str = "corpus_fingerprint";

/// The fingerprint of a bundle's rollouts (a rollout without a line number counts by its position
/// within its source).
fn fingerprint_of(
    sources: &[String],
    offsets: &[usize],
    source: &[u32],
    line: Option<&[u64]>,
) -> CorpusFingerprint {
    let mut seen = vec![0u64; sources.len()];
    let mut b = FingerprintBuilder::default();
    for (i, &s) in source.iter().enumerate() {
        let s = s as usize;
        let name = sources.get(s).map_or("", String::as_str);
        let pos = seen.get(s).copied().unwrap_or(0);
        if let Some(slot) = seen.get_mut(s) {
            *slot += 1;
        }
        let line = line.map_or(pos, |l| l[i]);
        b.push(name, line, (offsets[i + 1] - offsets[i]) as u64);
    }
    b.finish()
}

/// Element type of the feature matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureDtype {
    /// 32-bit IEEE floats.
    F32,
    /// bfloat16, as exported from bf16 models.
    Bf16,
}

impl FeatureDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            FeatureDtype::F32 => 4,
            FeatureDtype::Bf16 => 2,
        }
    }

    fn safetensors(self) -> Dtype {
        match self {
            FeatureDtype::F32 => Dtype::F32,
            FeatureDtype::Bf16 => Dtype::BF16,
        }
    }
}

impl std::str::FromStr for FeatureDtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(FeatureDtype::F32),
            "bf16" => Ok(FeatureDtype::Bf16),
            _ => Err(Error::invalid(format!(
                "unknown feature dtype `{s}`: expected f32 or bf16"
            ))),
        }
    }
}

/// A contiguous block of feature rows (row-major, `dim` columns).
#[derive(Debug, Clone, Copy)]
pub enum FeatureRows<'a> {
    /// f32 elements.
    F32(&'a [f32]),
    /// bf16 elements.
    Bf16(&'a [bf16]),
}

impl<'a> FeatureRows<'a> {
    /// Number of elements (rows × dim).
    pub fn len(&self) -> usize {
        match self {
            FeatureRows::F32(s) => s.len(),
            FeatureRows::Bf16(s) => s.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element type.
    pub fn dtype(&self) -> FeatureDtype {
        match self {
            FeatureRows::F32(_) => FeatureDtype::F32,
            FeatureRows::Bf16(_) => FeatureDtype::Bf16,
        }
    }

    /// Element `i` as f32.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            FeatureRows::F32(s) => s[i],
            FeatureRows::Bf16(s) => s[i].to_f32(),
        }
    }

    /// Copies everything out as f32.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self {
            FeatureRows::F32(s) => s.to_vec(),
            FeatureRows::Bf16(s) => s.iter().map(|v| v.to_f32()).collect(),
        }
    }

    /// The sub-block of elements `range`.
    pub fn slice(&self, range: Range<usize>) -> FeatureRows<'a> {
        match self {
            FeatureRows::F32(s) => FeatureRows::F32(&s[range]),
            FeatureRows::Bf16(s) => FeatureRows::Bf16(&s[range]),
        }
    }

    /// The raw bytes (little-endian).
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            FeatureRows::F32(s) => bytemuck::cast_slice(s),
            FeatureRows::Bf16(s) => bytemuck::cast_slice(s),
        }
    }
}

/// Owned feature storage used when a bundle is built in memory.
#[derive(Debug, Clone)]
pub enum FeatureData {
    /// f32 elements, row-major.
    F32(Vec<f32>),
    /// bf16 elements, row-major.
    Bf16(Vec<bf16>),
}

enum FeatureStore {
    Owned(FeatureData),
    Mapped {
        mmap: Mmap,
        offset: usize,
        n_elems: usize,
        dtype: FeatureDtype,
    },
}

/// Teacher-side ground truth that only synthetic corpora carry.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherInfo {
    /// q* = σ(⟨w*, ϕ⟩ + b*) per step.
    pub q: Vec<f32>,
    /// True correctness Z per step (0 or 1).
    pub true_correct: Vec<u8>,
    /// Teacher weights, length d.
    pub w_star: Vec<f32>,
    /// Teacher bias.
    pub b_star: f32,
}

/// Descriptive metadata carried in the safetensors header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BundleMeta {
    /// Source (annotation file) names; `source[i]` indexes this list.
    pub sources: Vec<String>,
    /// Seed that produced the bundle, when known.
    pub seed: Option<u64>,
    /// Generator settings (free-form JSON).
    pub generator: serde_json::Value,
    /// Any other string metadata, kept verbatim.
    pub extra: BTreeMap<String, String>,
}

/// Everything needed to build a bundle in memory.
#[derive(Debug, Clone)]
pub struct BundleParts {
    /// Feature matrix, S × dim.
    pub features: FeatureData,
    /// Feature dimension d.
    pub dim: usize,
    /// CSR offsets, R + 1 entries.
    pub offsets: Vec<usize>,
    /// MC score per step.
    pub mc_scores: Vec<f32>,
    /// Source index per rollout.
    pub source: Vec<u32>,
    /// Physical line per rollout, when known.
    pub line: Option<Vec<u64>>,
    /// Explicit targets per step.
    pub labels: Option<Vec<f32>>,
    /// Synthetic ground truth.
    pub teacher: Option<TeacherInfo>,
    /// Header metadata.
    pub meta: BundleMeta,
}

impl BundleParts {
    /// The parts of a bundle whose rollouts (one per pair of consecutive `offsets`) all come
    /// from one source named `source`, with nothing else: no line numbers, explicit labels,
    /// teacher or other metadata. What tests, and derived bundles, usually need.
    pub fn one_source(
        features: FeatureData,
        dim: usize,
        offsets: Vec<usize>,
        mc_scores: Vec<f32>,
        source: &str,
    ) -> Self {
        let rollouts = offsets.len().saturating_sub(1);
        BundleParts {
            features,
            dim,
            offsets,
            mc_scores,
            source: vec![0; rollouts],
            line: None,
            labels: None,
            teacher: None,
            meta: BundleMeta {
                sources: vec![source.into()],
                ..Default::default()
            },
        }
    }
}

/// A validated features bundle (see the module docs for the format).
pub struct FeatureBundle {
    path: Option<PathBuf>,
    dim: usize,
    store: FeatureStore,
    // Every field below is checked by `validate` when the bundle is built, and the CUDA kernels
    // index features by `offsets` without bounds checks, so none of them is writable from outside.
    offsets: Vec<usize>,
    mc_scores: Vec<f32>,
    source: Vec<u32>,
    line: Option<Vec<u64>>,
    labels: Option<Vec<f32>>,
    teacher: Option<TeacherInfo>,
    meta: BundleMeta,
    /// Process-unique number of this bundle (see [`FeatureBundle::instance`]).
    instance: u64,
}

/// Numbers handed to bundles as they are built; never reused within a process.
static NEXT_INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_instance() -> u64 {
    NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl std::fmt::Debug for FeatureBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureBundle")
            .field("path", &self.path)
            .field("rollouts", &self.n_rollouts())
            .field("steps", &self.n_steps())
            .field("dim", &self.dim)
            .field("dtype", &self.dtype())
            .finish()
    }
}

impl FeatureBundle {
    /// A number no other bundle built in this process carries. A bundle's rows never change
    /// after it is built (nothing hands out `&mut` access to them), so caches of its rows, such
    /// as the CUDA engine's device-resident chunks, can key on this number without ever serving
    /// stale data: a freed bundle's number is not handed out again.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// CSR offsets: rollout i owns steps `offsets[i]..offsets[i+1]` (R + 1 entries, from 0 to
    /// the step count, non-decreasing).
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// MC score per step.
    pub fn mc_scores(&self) -> &[f32] {
        &self.mc_scores
    }

    /// Source index per rollout (each below `meta().sources.len()`).
    pub fn source(&self) -> &[u32] {
        &self.source
    }

    /// Physical line per rollout in its source file, when known.
    pub fn line(&self) -> Option<&[u64]> {
        self.line.as_deref()
    }

    /// Explicit per-step targets in [0, 1], when present.
    pub fn labels(&self) -> Option<&[f32]> {
        self.labels.as_deref()
    }

    /// Synthetic ground truth, when present.
    pub fn teacher(&self) -> Option<&TeacherInfo> {
        self.teacher.as_ref()
    }

    /// Header metadata.
    pub fn meta(&self) -> &BundleMeta {
        &self.meta
    }

    /// Checks that a per-step side file at `path` (a corpus's truth), with CSR `offsets` and
    /// `sources` (empty when it lists none), describes this bundle's rollouts and steps.
    pub fn check_side_file(
        &self,
        path: &Path,
        offsets: &[usize],
        sources: &[String],
    ) -> Result<()> {
        if offsets != self.offsets() {
            return Err(Error::bundle(
                path,
                "offsets",
                format!(
                    "{} rollouts / {} steps, but the features bundle has {} / {}: \
                     not the same corpus",
                    offsets.len().saturating_sub(1),
                    offsets.last().copied().unwrap_or(0),
                    self.n_rollouts(),
                    self.n_steps()
                ),
            ));
        }
        if !sources.is_empty() && sources != self.meta().sources {
            return Err(Error::bundle(
                path,
                "__metadata__",
                "its `sources` differ from the features bundle's: not the same corpus",
            ));
        }
        Ok(())
    }

    /// Builds and validates a bundle from in-memory parts.
    ///
    /// The bundle is its own corpus: its metadata gets the fingerprint of its rollouts, replacing
    /// any carried over from the bundle it was cut from.
    pub fn from_parts(parts: BundleParts) -> Result<Self> {
        let mut bundle = FeatureBundle {
            path: None,
            dim: parts.dim,
            store: FeatureStore::Owned(parts.features),
            offsets: parts.offsets,
            mc_scores: parts.mc_scores,
            source: parts.source,
            line: parts.line,
            labels: parts.labels,
            teacher: parts.teacher,
            meta: parts.meta,
            instance: next_instance(),
        };
        bundle.validate(Path::new("(in memory)"))?;
        let fp = bundle.fingerprint();
        bundle
            .meta
            .extra
            .insert(FINGERPRINT_KEY.into(), fp.to_string());
        Ok(bundle)
    }

    /// Opens and validates a bundle file, memory-mapping the feature matrix.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        crate::output::refuse_incomplete(path)?;
        let file = MappedSafetensors::open(path)?;
        let err = |tensor: &str, reason: String| Error::bundle(path, tensor, reason);

        let meta = parse_meta(path, file.metadata())?;
        check_tensor_names(path, &file.names())?;

        let feats = file.require("features")?;
        let dtype = match feats.dtype {
            Dtype::F32 => FeatureDtype::F32,
            Dtype::BF16 => FeatureDtype::Bf16,
            other => {
                return Err(err(
                    "features",
                    format!("dtype {other:?}; expected F32 or BF16"),
                ));
            }
        };
        if feats.shape.len() != 2 {
            return Err(err(
                "features",
                format!("shape {:?}; expected [S, d]", feats.shape),
            ));
        }
        let dim = feats.shape[1];
        let n_elems = feats.numel();
        let offset = feats.file_offset;
        let aligned = offset % dtype.size() == 0;
        let owned_features = if aligned {
            None
        } else {
            // A foreign writer may leave a tensor misaligned; copying is the only safe view.
            Some(match dtype {
                FeatureDtype::F32 => FeatureData::F32(pod_vec(feats.bytes)),
                FeatureDtype::Bf16 => FeatureData::Bf16(pod_vec(feats.bytes)),
            })
        };

        let offsets = int_tensor(&file, "offsets", true)?.unwrap_or_default();
        let mut neg = None;
        let offsets: Vec<usize> = offsets
            .into_iter()
            .map(|v| {
                if v < 0 {
                    neg = Some(v);
                }
                v.max(0) as usize
            })
            .collect();
        if let Some(v) = neg {
            return Err(err("offsets", format!("negative offset {v}")));
        }
        let mc_scores = float_tensor(&file, "mc_scores", true)?.unwrap_or_default();
        let source_raw = int_tensor(&file, "source", true)?.unwrap_or_default();
        if let Some(v) = source_raw.iter().find(|&&v| v < 0 || v > u32::MAX as i64) {
            return Err(err("source", format!("source index {v} out of range")));
        }
        let source = source_raw.into_iter().map(|v| v as u32).collect();
        let line = match int_tensor(&file, "line", false)? {
            Some(v) => {
                if let Some(bad) = v.iter().find(|&&x| x < 0) {
                    return Err(err("line", format!("negative line number {bad}")));
                }
                Some(v.into_iter().map(|x| x as u64).collect())
            }
            None => None,
        };
        let labels = float_tensor(&file, "labels", false)?;
        let teacher = match float_tensor(&file, "teacher_q", false)? {
            None => None,
            Some(q) => {
                let true_correct: Vec<u8> = match file.get("true_correct") {
                    None => {
                        return Err(err(
                            "true_correct",
                            "missing while teacher_q is present".into(),
                        ));
                    }
                    Some(t) => match t.dtype {
                        Dtype::U8 => t.bytes.to_vec(),
                        _ => t
                            .to_f32()
                            .ok_or_else(|| err("true_correct", format!("dtype {:?}", t.dtype)))?
                            .into_iter()
                            .map(|v| {
                                if v == 1.0 {
                                    1
                                } else if v == 0.0 {
                                    0
                                } else {
                                    2
                                }
                            })
                            .collect(),
                    },
                };
                let w_star = float_tensor(&file, "w_star", true)?.unwrap_or_default();
                let b_star = float_tensor(&file, "b_star", true)?.unwrap_or_default();
                if b_star.len() != 1 {
                    return Err(err(
                        "b_star",
                        format!("{} elements; expected 1", b_star.len()),
                    ));
                }
                Some(TeacherInfo {
                    q,
                    true_correct,
                    w_star,
                    b_star: b_star[0],
                })
            }
        };

        let store = match owned_features {
            Some(data) => FeatureStore::Owned(data),
            None => FeatureStore::Mapped {
                mmap: file.into_mmap(),
                offset,
                n_elems,
                dtype,
            },
        };
        let bundle = FeatureBundle {
            path: Some(path.to_path_buf()),
            dim,
            store,
            offsets,
            mc_scores,
            source,
            line,
            labels,
            teacher,
            meta,
            instance: next_instance(),
        };
        bundle.validate(path)?;
        if let Some(text) = bundle.meta.extra.get(FINGERPRINT_KEY) {
            let recorded: CorpusFingerprint = text.parse().map_err(|e| {
                Error::bundle(path, "__metadata__", format!("`{FINGERPRINT_KEY}`: {e}"))
            })?;
            let actual = bundle.fingerprint();
            if recorded != actual {
                return Err(Error::bundle(
                    path,
                    "__metadata__",
                    format!(
                        "`{FINGERPRINT_KEY}` says {recorded} but the rollouts hash to {actual}: \
                         the tensors were changed after the file was written"
                    ),
                ));
            }
        }
        Ok(bundle)
    }

    /// The fingerprint of this bundle's rollouts, computed from its tensors.
    pub fn fingerprint(&self) -> CorpusFingerprint {
        fingerprint_of(
            &self.meta.sources,
            &self.offsets,
            &self.source,
            self.line.as_deref(),
        )
    }

    /// The fingerprint recorded in the bundle's metadata (checked against its tensors on open).
    ///
    /// Commands that join a bundle with another file call this: a bundle written before
    /// fingerprints existed is refused with the command that adds one.
    pub fn recorded_fingerprint(&self) -> Result<CorpusFingerprint> {
        match self.meta.extra.get(FINGERPRINT_KEY) {
            Some(text) => text.parse(),
            None => {
                let path = self.path.as_deref().unwrap_or(Path::new("(in memory)"));
                Err(Error::bundle(
                    path,
                    "__metadata__",
                    format!(
                        "no `{FINGERPRINT_KEY}`: the bundle was written before mprm recorded \
                         corpus fingerprints, so it cannot be checked against the file it is \
                         joined with; add one with `mprm bundle-info {} --add-fingerprint \
                         NEW.safetensors` and use NEW.safetensors",
                        path.display()
                    ),
                ))
            }
        }
    }

    /// Checks every rule of the format; the error names the tensor that breaks one.
    fn validate(&self, path: &Path) -> Result<()> {
        let err = |tensor: &str, reason: String| Err(Error::bundle(path, tensor, reason));
        let n_steps_elems = self.features().len();
        if self.dim == 0 {
            return err("features", "dimension d is 0".into());
        }
        if !n_steps_elems.is_multiple_of(self.dim) {
            return err(
                "features",
                format!(
                    "{n_steps_elems} elements is not a multiple of d = {}",
                    self.dim
                ),
            );
        }
        let s = n_steps_elems / self.dim;
        if self.offsets.is_empty() {
            return err("offsets", "empty; expected R + 1 entries".into());
        }
        if self.offsets[0] != 0 {
            return err(
                "offsets",
                format!("starts at {}; expected 0", self.offsets[0]),
            );
        }
        if let Some(w) = self.offsets.windows(2).position(|w| w[1] < w[0]) {
            return err(
                "offsets",
                format!(
                    "decreases at rollout {w} ({} then {})",
                    self.offsets[w],
                    self.offsets[w + 1]
                ),
            );
        }
        let last = *self.offsets.last().expect("non-empty");
        if last != s {
            return err("offsets", format!("ends at {last}; expected S = {s}"));
        }
        let r = self.offsets.len() - 1;
        if self.mc_scores.len() != s {
            return err(
                "mc_scores",
                format!("{} entries; expected S = {s}", self.mc_scores.len()),
            );
        }
        if let Some(i) = self.mc_scores.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return err(
                "mc_scores",
                format!(
                    "step {i} has score {}; expected a number in [0, 1]",
                    self.mc_scores[i]
                ),
            );
        }
        if self.source.len() != r {
            return err(
                "source",
                format!("{} entries; expected R = {r}", self.source.len()),
            );
        }
        let n_sources = self.meta.sources.len();
        if let Some(i) = self.source.iter().position(|&v| v as usize >= n_sources) {
            return err(
                "source",
                format!(
                    "rollout {i} has source {} but the metadata names {n_sources} source(s)",
                    self.source[i]
                ),
            );
        }
        if let Some(line) = &self.line
            && line.len() != r
        {
            return err("line", format!("{} entries; expected R = {r}", line.len()));
        }
        if let Some(labels) = &self.labels {
            if labels.len() != s {
                return err(
                    "labels",
                    format!("{} entries; expected S = {s}", labels.len()),
                );
            }
            if let Some(i) = labels.iter().position(|v| !(0.0..=1.0).contains(v)) {
                return err(
                    "labels",
                    format!("step {i} has label {}; expected [0, 1]", labels[i]),
                );
            }
        }
        if let Some(t) = &self.teacher {
            if t.q.len() != s {
                return err(
                    "teacher_q",
                    format!("{} entries; expected S = {s}", t.q.len()),
                );
            }
            if let Some(i) = t.q.iter().position(|v| !(0.0..=1.0).contains(v)) {
                return err(
                    "teacher_q",
                    format!("step {i} has q = {}; expected [0, 1]", t.q[i]),
                );
            }
            if t.true_correct.len() != s {
                return err(
                    "true_correct",
                    format!("{} entries; expected S = {s}", t.true_correct.len()),
                );
            }
            if let Some(i) = t.true_correct.iter().position(|&v| v > 1) {
                return err("true_correct", format!("step {i} is not 0 or 1"));
            }
            if t.w_star.len() != self.dim {
                return err(
                    "w_star",
                    format!("{} entries; expected d = {}", t.w_star.len(), self.dim),
                );
            }
            if t.w_star.iter().chain([&t.b_star]).any(|v| !v.is_finite()) {
                return err("w_star", "holds a NaN or infinity".into());
            }
        }
        if let Some(bad) = self.first_non_finite_feature() {
            return err(
                "features",
                format!("step {} holds a NaN or infinity", bad / self.dim),
            );
        }
        Ok(())
    }

    fn first_non_finite_feature(&self) -> Option<usize> {
        const CHUNK: usize = 1 << 16;
        // A value is NaN or infinite when its exponent bits are all ones. The test ORs a flag
        // over a whole chunk without stopping early, so it vectorises (the bundle is read in
        // full on every open); only a chunk that holds one is searched for the position.
        fn first_with_full_exponent(
            bits: impl Iterator<Item = u32> + Clone,
            exp: u32,
        ) -> Option<usize> {
            let any = bits.clone().fold(false, |acc, b| acc | (b & exp == exp));
            if any {
                bits.clone().position(|b| b & exp == exp)
            } else {
                None
            }
        }
        match self.features() {
            FeatureRows::F32(s) => s.par_chunks(CHUNK).enumerate().find_map_first(|(c, xs)| {
                first_with_full_exponent(xs.iter().map(|v| v.to_bits()), 0x7f80_0000)
                    .map(|i| c * CHUNK + i)
            }),
            FeatureRows::Bf16(s) => s.par_chunks(CHUNK).enumerate().find_map_first(|(c, xs)| {
                first_with_full_exponent(xs.iter().map(|v| v.to_bits() as u32), 0x7f80)
                    .map(|i| c * CHUNK + i)
            }),
        }
    }

    /// Writes the bundle to `path` atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let layout = BundleLayout {
            n_rollouts: self.n_rollouts(),
            n_steps: self.n_steps(),
            dim: self.dim,
            dtype: self.dtype(),
            has_line: self.line.is_some(),
            has_labels: self.labels.is_some(),
            has_teacher: self.teacher.is_some(),
        };
        let mut w = BundleWriter::create(path, &layout, &self.meta)?;
        w.write_features(0, self.features())?;
        w.write_offsets(&self.offsets)?;
        w.write_mc_scores(&self.mc_scores)?;
        w.write_source(&self.source)?;
        if let Some(line) = &self.line {
            w.write_line(line)?;
        }
        if let Some(labels) = &self.labels {
            w.write_labels(labels)?;
        }
        if let Some(t) = &self.teacher {
            w.write_teacher(t)?;
        }
        w.finish()
    }

    /// Where the bundle was read from, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Feature dimension d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rollouts R.
    pub fn n_rollouts(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Number of steps S.
    pub fn n_steps(&self) -> usize {
        *self.offsets.last().expect("validated")
    }

    /// Element type of the feature matrix.
    pub fn dtype(&self) -> FeatureDtype {
        self.features().dtype()
    }

    /// The whole feature matrix.
    pub fn features(&self) -> FeatureRows<'_> {
        match &self.store {
            FeatureStore::Owned(FeatureData::F32(v)) => FeatureRows::F32(v),
            FeatureStore::Owned(FeatureData::Bf16(v)) => FeatureRows::Bf16(v),
            FeatureStore::Mapped {
                mmap,
                offset,
                n_elems,
                dtype,
            } => {
                let bytes = &mmap[*offset..*offset + n_elems * dtype.size()];
                match dtype {
                    FeatureDtype::F32 => FeatureRows::F32(bytemuck::cast_slice(bytes)),
                    FeatureDtype::Bf16 => FeatureRows::Bf16(bytemuck::cast_slice(bytes)),
                }
            }
        }
    }

    /// Feature rows of steps `steps` (a step range, not an element range).
    pub fn step_rows(&self, steps: Range<usize>) -> FeatureRows<'_> {
        self.features()
            .slice(steps.start * self.dim..steps.end * self.dim)
    }

    /// The step range of rollout `i`.
    pub fn rollout_steps(&self, i: usize) -> Range<usize> {
        self.offsets[i]..self.offsets[i + 1]
    }

    /// Number of steps of rollout `i`.
    pub fn rollout_len(&self, i: usize) -> usize {
        self.offsets[i + 1] - self.offsets[i]
    }

    /// The name of the source of rollout `i`.
    pub fn source_name(&self, i: usize) -> &str {
        &self.meta.sources[self.source[i] as usize]
    }

    /// A new in-memory bundle holding only `rollouts` (in the given order).
    pub fn subset(&self, rollouts: &[usize]) -> Result<FeatureBundle> {
        if let Some(&bad) = rollouts.iter().find(|&&i| i >= self.n_rollouts()) {
            return Err(Error::invalid(format!(
                "rollout {bad} is not in the bundle ({} rollouts)",
                self.n_rollouts()
            )));
        }
        let d = self.dim;
        let mut offsets = Vec::with_capacity(rollouts.len() + 1);
        offsets.push(0);
        let mut steps = Vec::new();
        for &i in rollouts {
            steps.extend(self.rollout_steps(i));
            offsets.push(steps.len());
        }
        let gather_f = |v: &[f32]| steps.iter().map(|&s| v[s]).collect::<Vec<f32>>();
        let features = match self.features() {
            FeatureRows::F32(x) => FeatureData::F32(
                steps
                    .iter()
                    .flat_map(|&s| x[s * d..(s + 1) * d].iter().copied())
                    .collect(),
            ),
            FeatureRows::Bf16(x) => FeatureData::Bf16(
                steps
                    .iter()
                    .flat_map(|&s| x[s * d..(s + 1) * d].iter().copied())
                    .collect(),
            ),
        };
        FeatureBundle::from_parts(BundleParts {
            features,
            dim: d,
            offsets,
            mc_scores: gather_f(&self.mc_scores),
            source: rollouts.iter().map(|&i| self.source[i]).collect(),
            line: self
                .line
                .as_ref()
                .map(|l| rollouts.iter().map(|&i| l[i]).collect()),
            labels: self.labels.as_ref().map(|l| gather_f(l)),
            teacher: self.teacher.as_ref().map(|t| TeacherInfo {
                q: gather_f(&t.q),
                true_correct: steps.iter().map(|&s| t.true_correct[s]).collect(),
                w_star: t.w_star.clone(),
                b_star: t.b_star,
            }),
            meta: self.meta.clone(),
        })
    }
}

/// Shapes and optional parts of a bundle about to be written.
#[derive(Debug, Clone)]
pub struct BundleLayout {
    /// R.
    pub n_rollouts: usize,
    /// S.
    pub n_steps: usize,
    /// d.
    pub dim: usize,
    /// Element type of `features`.
    pub dtype: FeatureDtype,
    /// Whether a `line` tensor follows.
    pub has_line: bool,
    /// Whether a `labels` tensor follows.
    pub has_labels: bool,
    /// Whether the synthetic teacher tensors follow.
    pub has_teacher: bool,
}

/// Streams a bundle to disk: features may arrive in chunks, in any order, from any thread that
/// holds the writer. Nothing appears at the destination until [`BundleWriter::finish`].
pub struct BundleWriter {
    inner: SafetensorsWriter,
    layout: BundleLayout,
    sources: Vec<String>,
    offsets: Vec<usize>,
    source: Vec<u32>,
    line: Option<Vec<u64>>,
    fingerprint_placeholder: String,
}

impl BundleWriter {
    /// Lays out the file for `layout` and writes its header.
    pub fn create(
        path: impl AsRef<Path>,
        layout: &BundleLayout,
        meta: &BundleMeta,
    ) -> Result<Self> {
        let (s, r, d) = (layout.n_steps, layout.n_rollouts, layout.dim);
        let mut specs = vec![
            TensorSpec::new("features", layout.dtype.safetensors(), &[s, d]),
            TensorSpec::new("offsets", Dtype::I64, &[r + 1]),
            TensorSpec::new("mc_scores", Dtype::F32, &[s]),
            TensorSpec::new("source", Dtype::I32, &[r]),
        ];
        if layout.has_line {
            specs.push(TensorSpec::new("line", Dtype::I64, &[r]));
        }
        if layout.has_labels {
            specs.push(TensorSpec::new("labels", Dtype::F32, &[s]));
        }
        if layout.has_teacher {
            specs.push(TensorSpec::new("teacher_q", Dtype::F32, &[s]));
            specs.push(TensorSpec::new("true_correct", Dtype::U8, &[s]));
            specs.push(TensorSpec::new("w_star", Dtype::F32, &[d]));
            specs.push(TensorSpec::new("b_star", Dtype::F32, &[1]));
        }
        let mut header = meta.extra.clone();
        header.insert("format".into(), FORMAT_TAG.into());
        // The fingerprint is known only once offsets, sources and lines are written; reserve its
        // exact length now and fill it in at `finish`.
        let fingerprint_placeholder = format!("fp1-{r}-{}", "?".repeat(16));
        header.insert(FINGERPRINT_KEY.into(), fingerprint_placeholder.clone());
        header.insert(
            "sources".into(),
            serde_json::to_string(&meta.sources).expect("strings serialise"),
        );
        if let Some(seed) = meta.seed {
            header.insert("seed".into(), seed.to_string());
        }
        if !meta.generator.is_null() {
            header.insert("generator".into(), meta.generator.to_string());
        }
        Ok(BundleWriter {
            inner: SafetensorsWriter::create(path, &specs, &header)?,
            layout: layout.clone(),
            sources: meta.sources.clone(),
            offsets: Vec::new(),
            source: Vec::new(),
            line: None,
            fingerprint_placeholder,
        })
    }

    /// Writes feature rows starting at step `first_step`.
    pub fn write_features(&mut self, first_step: usize, rows: FeatureRows<'_>) -> Result<()> {
        if rows.dtype() != self.layout.dtype {
            return Err(Error::invalid(format!(
                "feature rows are {:?} but the bundle was declared {:?}",
                rows.dtype(),
                self.layout.dtype
            )));
        }
        self.inner
            .write("features", first_step * self.layout.dim, rows.as_bytes())
    }

    /// Writes the CSR offsets.
    pub fn write_offsets(&mut self, offsets: &[usize]) -> Result<()> {
        let v: Vec<i64> = offsets.iter().map(|&o| o as i64).collect();
        self.inner.write_all("offsets", &v)?;
        self.offsets = offsets.to_vec();
        Ok(())
    }

    /// Writes the MC scores.
    pub fn write_mc_scores(&mut self, scores: &[f32]) -> Result<()> {
        self.inner.write_all("mc_scores", scores)
    }

    /// Writes the per-rollout source indices.
    pub fn write_source(&mut self, source: &[u32]) -> Result<()> {
        let v: Vec<i32> = source.iter().map(|&s| s as i32).collect();
        self.inner.write_all("source", &v)?;
        self.source = source.to_vec();
        Ok(())
    }

    /// Writes the per-rollout line numbers.
    pub fn write_line(&mut self, line: &[u64]) -> Result<()> {
        let v: Vec<i64> = line.iter().map(|&l| l as i64).collect();
        self.inner.write_all("line", &v)?;
        self.line = Some(line.to_vec());
        Ok(())
    }

    /// Writes explicit labels.
    pub fn write_labels(&mut self, labels: &[f32]) -> Result<()> {
        self.inner.write_all("labels", labels)
    }

    /// Writes the synthetic teacher tensors.
    pub fn write_teacher(&mut self, t: &TeacherInfo) -> Result<()> {
        self.inner.write_all("teacher_q", &t.q)?;
        self.inner.write_all("true_correct", &t.true_correct)?;
        self.inner.write_all("w_star", &t.w_star)?;
        self.inner.write_all("b_star", &[t.b_star])
    }

    /// Records the corpus fingerprint, checks completeness and renames the file into place.
    pub fn finish(mut self) -> Result<()> {
        if self.offsets.len() != self.layout.n_rollouts + 1
            || self.source.len() != self.layout.n_rollouts
        {
            return Err(Error::Other(
                "bundle writer: offsets and source must be written before finish".into(),
            ));
        }
        let fp = fingerprint_of(
            &self.sources,
            &self.offsets,
            &self.source,
            self.line.as_deref(),
        );
        self.inner
            .patch_metadata(&self.fingerprint_placeholder, &fp.to_string())?;
        self.inner.finish()
    }
}

fn parse_meta(path: &Path, mut raw: BTreeMap<String, String>) -> Result<BundleMeta> {
    if let Some(tag) = raw.remove("format")
        && tag != FORMAT_TAG
    {
        return Err(Error::bundle(
            path,
            "__metadata__",
            format!("format `{tag}` is not {FORMAT_TAG}"),
        ));
    }
    let sources = match raw.remove("sources") {
        Some(text) => serde_json::from_str::<Vec<String>>(&text).map_err(|e| {
            Error::bundle(
                path,
                "__metadata__",
                format!("`sources` is not a JSON list of strings: {e}"),
            )
        })?,
        None => Vec::new(),
    };
    let seed = match raw.remove("seed") {
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            Error::bundle(
                path,
                "__metadata__",
                format!("`seed` = `{text}` is not an integer"),
            )
        })?),
        None => None,
    };
    let generator = match raw.remove("generator") {
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            Error::bundle(
                path,
                "__metadata__",
                format!("`generator` is not JSON: {e}"),
            )
        })?,
        None => serde_json::Value::Null,
    };
    Ok(BundleMeta {
        sources,
        seed,
        generator,
        extra: raw,
    })
}

fn int_tensor(file: &MappedSafetensors, name: &str, required: bool) -> Result<Option<Vec<i64>>> {
    let Some(t) = file.get(name) else {
        return if required {
            Err(Error::bundle(file.path(), name, "missing"))
        } else {
            Ok(None)
        };
    };
    if t.shape.len() != 1 {
        return Err(Error::bundle(
            file.path(),
            name,
            format!("shape {:?}; expected 1-D", t.shape),
        ));
    }
    t.to_i64().map(Some).ok_or_else(|| {
        Error::bundle(
            file.path(),
            name,
            format!("dtype {:?}; expected an integer type", t.dtype),
        )
    })
}

fn float_tensor(file: &MappedSafetensors, name: &str, required: bool) -> Result<Option<Vec<f32>>> {
    let Some(t) = file.get(name) else {
        return if required {
            Err(Error::bundle(file.path(), name, "missing"))
        } else {
            Ok(None)
        };
    };
    if t.shape.len() > 1 {
        return Err(Error::bundle(
            file.path(),
            name,
            format!("shape {:?}; expected 1-D", t.shape),
        ));
    }
    let v = t.to_f32().ok_or_else(|| {
        Error::bundle(
            file.path(),
            name,
            format!("dtype {:?}; expected a float type", t.dtype),
        )
    })?;
    if let Some(i) = v.iter().position(|x| x.is_nan()) {
        return Err(Error::bundle(
            file.path(),
            name,
            format!("entry {i} is NaN"),
        ));
    }
    Ok(Some(v))
}

/// Every tensor a features bundle may hold; required ones first.
pub const TENSOR_NAMES: [&str; 10] = [
    "features",
    "offsets",
    "mc_scores",
    "source",
    "line",
    "labels",
    "teacher_q",
    "true_correct",
    "w_star",
    "b_star",
];

/// Refuses tensors the format does not define: a renamed optional tensor (`lines` for `line`)
/// would otherwise be dropped without a word.
fn check_tensor_names(path: &Path, names: &[String]) -> Result<()> {
    let Some(unknown) = names.iter().find(|n| !TENSOR_NAMES.contains(&n.as_str())) else {
        return Ok(());
    };
    let hint = TENSOR_NAMES
        .iter()
        .filter(|k| {
            unknown.starts_with(*k)
                || k.starts_with(unknown.as_str())
                || edit_distance(k, unknown) <= 2
        })
        .min_by_key(|k| edit_distance(k, unknown))
        .map_or(String::new(), |k| format!("did you mean `{k}`? "));
    Err(Error::bundle(
        path,
        unknown,
        format!(
            "not a features-bundle tensor; {hint}the known tensors are {}",
            TENSOR_NAMES
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// Levenshtein distance (for the did-you-mean hint on tensor names).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(dtype: FeatureDtype) -> BundleParts {
        let feats: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        BundleParts {
            features: match dtype {
                FeatureDtype::F32 => FeatureData::F32(feats),
                FeatureDtype::Bf16 => {
                    FeatureData::Bf16(feats.iter().map(|&v| bf16::from_f32(v)).collect())
                }
            },
            dim: 2,
            offsets: vec![0, 3, 4, 6],
            mc_scores: vec![1.0, 0.5, 0.0, 0.0625, 1.0, 0.0],
            source: vec![0, 1, 1],
            line: Some(vec![0, 0, 2]),
            labels: None,
            teacher: Some(TeacherInfo {
                q: vec![0.9, 0.8, 0.1, 0.2, 0.7, 0.3],
                true_correct: vec![1, 1, 0, 0, 1, 0],
                w_star: vec![0.5, -1.0],
                b_star: 0.25,
            }),
            meta: BundleMeta {
                sources: vec!["a".into(), "b".into()],
                seed: Some(7),
                generator: serde_json::json!({"k": 1}),
                extra: BTreeMap::new(),
            },
        }
    }

    /// A bundle of `steps` rows of d = 2 with `bad` written at each of `at` (flat indices).
    fn with_features(dtype: FeatureDtype, steps: usize, at: &[(usize, f32)]) -> BundleParts {
        let mut feats = vec![0.25f32; steps * 2];
        for &(i, v) in at {
            feats[i] = v;
        }
        let mut p = tiny(dtype);
        p.features = match dtype {
            FeatureDtype::F32 => FeatureData::F32(feats),
            FeatureDtype::Bf16 => {
                FeatureData::Bf16(feats.iter().map(|&v| bf16::from_f32(v)).collect())
            }
        };
        p.offsets = vec![0, steps - 3, steps - 2, steps];
        p.mc_scores = vec![0.5; steps];
        p.teacher = None;
        p
    }

    #[test]
    fn the_first_non_finite_feature_is_named_in_either_dtype() {
        // 100,000 steps of d = 2: four chunks of the parallel search.
        let steps = 100_000;
        let inf = f32::INFINITY;
        // The largest finite bf16 (f32::MAX itself rounds to infinity in bf16).
        let big = bf16::MAX.to_f32();
        let cases: [(&[(usize, f32)], usize); 6] = [
            (&[(7, f32::NAN)], 3),
            (&[(131_073, inf)], 65_536),
            (&[(199_999, -inf)], 99_999),
            (&[(150_001, f32::NAN), (70_000, inf)], 35_000),
            (&[(65_535, -inf), (65_536, inf)], 32_767),
            // The largest finite values and a subnormal are not errors.
            (
                &[(5, big), (6, -big), (9, 1e-40), (199_998, f32::NAN)],
                99_999,
            ),
        ];
        for dtype in [FeatureDtype::F32, FeatureDtype::Bf16] {
            for (at, step) in cases {
                let msg = FeatureBundle::from_parts(with_features(dtype, steps, at))
                    .err()
                    .unwrap_or_else(|| panic!("{dtype:?} {at:?} was accepted"))
                    .to_string();
                assert!(
                    msg.contains(&format!("step {step} holds a NaN or infinity")),
                    "{dtype:?} {at:?}: {msg}"
                );
            }
            let clean = [(5, big), (6, -big), (9, 1e-40)];
            assert!(
                FeatureBundle::from_parts(with_features(dtype, steps, &clean)).is_ok(),
                "{dtype:?}"
            );
        }
    }

    #[test]
    fn round_trip_both_dtypes() {
        for dtype in [FeatureDtype::F32, FeatureDtype::Bf16] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("b.safetensors");
            let b = FeatureBundle::from_parts(tiny(dtype)).unwrap();
            b.save(&path).unwrap();
            let r = FeatureBundle::open(&path).unwrap();
            assert_eq!(r.dtype(), dtype);
            assert_eq!(r.features().to_f32_vec(), b.features().to_f32_vec());
            assert_eq!(r.offsets, b.offsets);
            assert_eq!(r.mc_scores, b.mc_scores);
            assert_eq!(r.source, b.source);
            assert_eq!(r.line, b.line);
            assert_eq!(r.teacher, b.teacher);
            assert_eq!(r.meta, b.meta);
            assert_eq!(r.source_name(2), "b");
            // The same rows, built twice, are two instances: device caches key on the number.
            assert_ne!(r.instance(), b.instance());
            let again = FeatureBundle::open(&path).unwrap();
            assert_ne!(again.instance(), r.instance());
        }
    }

    #[test]
    fn subset_keeps_rows_together() {
        let b = FeatureBundle::from_parts(tiny(FeatureDtype::F32)).unwrap();
        let s = b.subset(&[2, 0]).unwrap();
        assert_eq!(s.offsets, vec![0, 2, 5]);
        assert_eq!(s.mc_scores, vec![1.0, 0.0, 1.0, 0.5, 0.0]);
        assert_eq!(
            s.step_rows(0..1).to_f32_vec(),
            b.step_rows(4..5).to_f32_vec()
        );
        assert!(b.subset(&[3]).is_err());
    }
}
