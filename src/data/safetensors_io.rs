//! Reading and writing safetensors files without holding them in memory.
//!
//! The `safetensors` crate serialises from in-memory views. Feature matrices of millions of steps
//! do not fit that model, so the writer here lays out the whole file from the tensor shapes first,
//! then accepts each tensor's bytes in any order and at any element offset (`pwrite`). Readers
//! memory-map the file and borrow the tensor bytes from the map.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, IoContext, Result};
use crate::output::TempPath;

/// Name, element type and shape of one tensor to be written.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    /// Tensor name in the header.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape (row-major).
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Shorthand constructor.
    pub fn new(name: &str, dtype: Dtype, shape: &[usize]) -> Self {
        TensorSpec {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    fn n_bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * elem_bytes(self.dtype)
    }
}

/// Writes a safetensors file whose layout is fixed up front.
///
/// Tensors are placed in descending element size, so every tensor starts at a multiple of its own
/// element size and memory-mapped readers can view it in place.
pub struct SafetensorsWriter {
    path: TempPath,
    file: File,
    data_start: u64,
    layout: BTreeMap<String, (TensorSpec, u64)>,
    written: BTreeMap<String, usize>,
    header: Vec<u8>,
}

impl SafetensorsWriter {
    /// Creates the file (under a temporary name) with its header and full size.
    pub fn create(
        dest: impl AsRef<Path>,
        specs: &[TensorSpec],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut ordered: Vec<&TensorSpec> = specs.iter().collect();
        // Larger elements first keeps every tensor aligned to its element size.
        ordered.sort_by(|a, b| {
            elem_bytes(b.dtype)
                .cmp(&elem_bytes(a.dtype))
                .then(a.name.cmp(&b.name))
        });

        let mut header = serde_json::Map::new();
        if !metadata.is_empty() {
            let meta: serde_json::Map<String, serde_json::Value> = metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            header.insert("__metadata__".into(), serde_json::Value::Object(meta));
        }
        let mut layout = BTreeMap::new();
        let mut offset = 0usize;
        for spec in &ordered {
            if layout.contains_key(&spec.name) {
                return Err(Error::invalid(format!(
                    "tensor `{}` declared twice",
                    spec.name
                )));
            }
            let end = offset + spec.n_bytes();
            header.insert(
                spec.name.clone(),
                serde_json::json!({
                    "dtype": dtype_name(spec.dtype),
                    "shape": spec.shape,
                    "data_offsets": [offset, end],
                }),
            );
            layout.insert(spec.name.clone(), ((*spec).clone(), offset as u64));
            offset = end;
        }
        let mut header_bytes = serde_json::to_vec(&serde_json::Value::Object(header))
            .map_err(|e| Error::Other(format!("cannot build safetensors header: {e}")))?;
        // Pad with spaces so the data section starts 8-byte aligned, as the format recommends.
        while (8 + header_bytes.len()) % 8 != 0 {
            header_bytes.push(b' ');
        }

        let path = TempPath::for_dest(dest)?;
        let file = File::create(path.tmp()).at(path.tmp())?;
        let data_start = 8 + header_bytes.len() as u64;
        file.write_all_at(&(header_bytes.len() as u64).to_le_bytes(), 0)
            .at(path.tmp())?;
        file.write_all_at(&header_bytes, 8).at(path.tmp())?;
        file.set_len(data_start + offset as u64).at(path.tmp())?;
        Ok(SafetensorsWriter {
            path,
            file,
            data_start,
            layout,
            written: BTreeMap::new(),
            header: header_bytes,
        })
    }

    /// Replaces a placeholder metadata value written by [`SafetensorsWriter::create`] with its
    /// final value of the same length (for values known only once the data is written, such as a
    /// corpus fingerprint).
    pub fn patch_metadata(&mut self, placeholder: &str, value: &str) -> Result<()> {
        if placeholder.len() != value.len() {
            return Err(Error::Other(format!(
                "metadata value `{value}` does not fit placeholder `{placeholder}`"
            )));
        }
        let quoted = format!("\"{placeholder}\"");
        let at = memchr::memmem::find(&self.header, quoted.as_bytes()).ok_or_else(|| {
            Error::Other(format!("placeholder `{placeholder}` is not in the header"))
        })?;
        self.header[at + 1..at + 1 + value.len()].copy_from_slice(value.as_bytes());
        self.file
            .write_all_at(
                &self.header[at + 1..at + 1 + value.len()],
                8 + at as u64 + 1,
            )
            .at(self.path.tmp())
    }

    /// Writes `bytes` into tensor `name` starting at element `first_elem`.
    pub fn write(&mut self, name: &str, first_elem: usize, bytes: &[u8]) -> Result<()> {
        let (spec, start) = self
            .layout
            .get(name)
            .ok_or_else(|| Error::invalid(format!("tensor `{name}` was not declared")))?;
        let elem = elem_bytes(spec.dtype);
        let at = first_elem * elem;
        if !bytes.len().is_multiple_of(elem) || at + bytes.len() > spec.n_bytes() {
            return Err(Error::invalid(format!(
                "write of {} bytes at element {first_elem} overflows tensor `{name}` ({} bytes)",
                bytes.len(),
                spec.n_bytes()
            )));
        }
        crate::output::charge_write(bytes.len()).at(self.path.tmp())?;
        self.file
            .write_all_at(bytes, self.data_start + start + at as u64)
            .at(self.path.tmp())?;
        *self.written.entry(name.to_string()).or_default() += bytes.len();
        Ok(())
    }

    /// Writes a whole tensor of plain-old-data values.
    pub fn write_all<T: bytemuck::Pod>(&mut self, name: &str, values: &[T]) -> Result<()> {
        self.write(name, 0, bytemuck::cast_slice(values))
    }

    /// Checks that every tensor received exactly its size in bytes, then renames into place.
    pub fn finish(self) -> Result<()> {
        for (name, (spec, _)) in &self.layout {
            let got = self.written.get(name).copied().unwrap_or(0);
            if got != spec.n_bytes() {
                return Err(Error::Other(format!(
                    "tensor `{name}`: {got} of {} bytes written",
                    spec.n_bytes()
                )));
            }
        }
        drop(self.file);
        self.path.commit()
    }
}

/// Bytes per element (every dtype mprm writes is at least one byte wide).
pub fn elem_bytes(dtype: Dtype) -> usize {
    dtype.bitsize().div_ceil(8)
}

/// The safetensors header spelling of a dtype.
pub fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::BOOL => "BOOL",
        Dtype::U8 => "U8",
        Dtype::I8 => "I8",
        Dtype::I16 => "I16",
        Dtype::U16 => "U16",
        Dtype::F16 => "F16",
        Dtype::BF16 => "BF16",
        Dtype::I32 => "I32",
        Dtype::U32 => "U32",
        Dtype::F32 => "F32",
        Dtype::F64 => "F64",
        Dtype::I64 => "I64",
        Dtype::U64 => "U64",
        _ => "UNSUPPORTED",
    }
}

/// Checks a safetensors file's header entry by entry, so that an error names the tensor whose
/// entry is bad (the `safetensors` crate reports most of these without the name). Problems of the
/// file as a whole are reported against `(header)`.
fn check_header(path: &Path, buf: &[u8]) -> Result<()> {
    let whole = |reason: String| Error::bundle(path, "(header)", reason);
    let Some(len_bytes) = buf.get(..8) else {
        return Err(whole(format!(
            "not a safetensors file: {} bytes, too short for the 8-byte header length",
            buf.len()
        )));
    };
    let n = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    let data_len = (buf.len() - 8) as u64;
    if n > data_len {
        return Err(whole(format!(
            "not a safetensors file: the header length says {n} bytes but only {data_len} \
             follow it"
        )));
    }
    let header = &buf[8..8 + n as usize];
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| {
            whole(format!(
                "not a safetensors file: header is not a JSON object: {e}"
            ))
        })?;
    let data_len = data_len - n;
    let mut spans: Vec<(u64, u64, &str)> = Vec::new();
    for (name, entry) in &map {
        if name == "__metadata__" {
            continue;
        }
        let bad = |reason: String| Error::bundle(path, name, format!("header entry: {reason}"));
        let info: safetensors::tensor::TensorInfo = serde_json::from_value(entry.clone())
            .map_err(|e| bad(format!("{e} (entry is {entry})")))?;
        let (start, end) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
        if end < start {
            return Err(bad(format!(
                "data_offsets [{start}, {end}] end before they start"
            )));
        }
        let bits = info
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .and_then(|numel| numel.checked_mul(info.dtype.bitsize() as u64));
        let expected = bits.filter(|b| b % 8 == 0).map(|b| b / 8);
        if expected != Some(end - start) {
            return Err(bad(format!(
                "shape {:?} of {} needs {} bytes but data_offsets [{start}, {end}] span {}",
                info.shape,
                dtype_name(info.dtype),
                expected.map_or("a whole number of".to_string(), |b| b.to_string()),
                end - start
            )));
        }
        if end > data_len {
            return Err(bad(format!(
                "data_offsets [{start}, {end}] run past the end of the data ({data_len} bytes); \
                 is the file truncated?"
            )));
        }
        spans.push((start, end, name));
    }
    spans.sort();
    let mut at = 0u64;
    let mut previous: Option<&str> = None;
    for &(start, end, name) in &spans {
        if start != at {
            let what = if start > at { "leave a gap" } else { "overlap" };
            let after = previous.map_or("the start of the data".to_string(), |p| {
                format!("tensor `{p}`, which ends at {at}")
            });
            return Err(Error::bundle(
                path,
                name,
                format!("header entry: data_offsets [{start}, {end}] {what} after {after}"),
            ));
        }
        at = end;
        previous = Some(name);
    }
    if at != data_len {
        return Err(whole(format!(
            "{} bytes after the last tensor's data (the tensors end at {at} of {data_len})",
            data_len - at
        )));
    }
    Ok(())
}

/// A memory-mapped safetensors file with its parsed header.
pub struct MappedSafetensors {
    path: PathBuf,
    mmap: Mmap,
}

/// One tensor borrowed from a [`MappedSafetensors`].
pub struct TensorRef<'a> {
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw little-endian bytes.
    pub bytes: &'a [u8],
    /// Byte offset of `bytes` from the start of the file.
    pub file_offset: usize,
}

impl MappedSafetensors {
    /// Maps `path` and validates its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).at(&path)?;
        // SAFETY: the map is read-only; mprm never writes a file it has mapped, and a bundle that
        // another process truncates underneath us is outside what any reader can defend against.
        let mmap = unsafe { Mmap::map(&file) }.at(&path)?;
        check_header(&path, &mmap)?;
        SafeTensors::read_metadata(&mmap).map_err(|e| {
            Error::bundle(&path, "(header)", format!("not a safetensors file: {e}"))
        })?;
        Ok(MappedSafetensors { path, mmap })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The string metadata (`__metadata__`), empty when absent.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let (_, meta) = SafeTensors::read_metadata(&self.mmap).expect("validated at open");
        meta.metadata()
            .clone()
            .map(|m| m.into_iter().collect())
            .unwrap_or_default()
    }

    /// The names of all tensors.
    pub fn names(&self) -> Vec<String> {
        let st = SafeTensors::deserialize(&self.mmap).expect("validated at open");
        let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        names.sort();
        names
    }

    /// Borrows tensor `name`, or `None` when absent.
    pub fn get(&self, name: &str) -> Option<TensorRef<'_>> {
        let st = SafeTensors::deserialize(&self.mmap).expect("validated at open");
        let view = st.tensor(name).ok()?;
        let bytes = view.data();
        let file_offset = bytes.as_ptr() as usize - self.mmap.as_ptr() as usize;
        Some(TensorRef {
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            bytes,
            file_offset,
        })
    }

    /// Borrows tensor `name`, failing with a message naming it when absent.
    pub fn require(&self, name: &str) -> Result<TensorRef<'_>> {
        self.get(name)
            .ok_or_else(|| Error::bundle(&self.path, name, "missing"))
    }

    /// Fails unless the metadata's `format` key is `expected`, naming what it found instead.
    pub fn require_format(&self, expected: &str) -> Result<()> {
        let reason = match self.metadata().get("format") {
            Some(tag) if tag == expected => return Ok(()),
            Some(tag) => format!("format `{tag}` is not {expected}"),
            None => format!("no `format` key; expected {expected}"),
        };
        Err(Error::bundle(&self.path, "__metadata__", reason))
    }

    /// The metadata's `sources` key, a JSON list of strings (empty when absent).
    pub fn sources_metadata(&self) -> Result<Vec<String>> {
        match self.metadata().get("sources") {
            Some(text) => serde_json::from_str::<Vec<String>>(text).map_err(|e| {
                Error::bundle(
                    &self.path,
                    "__metadata__",
                    format!("`sources` is not a JSON list of strings: {e}"),
                )
            }),
            None => Ok(Vec::new()),
        }
    }

    /// The 1-D tensor `name`, which must have exactly `dtype`.
    pub fn vector_1d<T: bytemuck::Pod>(&self, name: &str, dtype: Dtype) -> Result<Vec<T>> {
        let t = self.require(name)?;
        if t.dtype != dtype {
            return Err(Error::bundle(
                &self.path,
                name,
                format!(
                    "dtype {}; expected {}",
                    dtype_name(t.dtype),
                    dtype_name(dtype)
                ),
            ));
        }
        if t.shape.len() != 1 {
            return Err(Error::bundle(
                &self.path,
                name,
                format!("shape {:?}; expected 1-D", t.shape),
            ));
        }
        Ok(pod_vec(t.bytes))
    }

    /// CSR offsets stored as I64 under `name`: from 0, never decreasing.
    pub fn csr_offsets(&self, name: &str) -> Result<Vec<usize>> {
        let offsets: Vec<i64> = self.vector_1d(name, Dtype::I64)?;
        if offsets.first() != Some(&0) {
            return Err(Error::bundle(&self.path, name, "must start at 0"));
        }
        if let Some(w) = offsets.windows(2).position(|w| w[1] < w[0]) {
            return Err(Error::bundle(
                &self.path,
                name,
                format!(
                    "decreases at rollout {w} ({} then {})",
                    offsets[w],
                    offsets[w + 1]
                ),
            ));
        }
        Ok(offsets.into_iter().map(|v| v as usize).collect())
    }

    /// The whole mapped file.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    /// Consumes the reader and hands back the map, so callers can keep views alive.
    pub fn into_mmap(self) -> Mmap {
        self.mmap
    }
}

impl TensorRef<'_> {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Copies the tensor out as f32, converting from any float or integer dtype.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        Some(match self.dtype {
            Dtype::F32 => pod_vec::<f32>(self.bytes),
            Dtype::F64 => pod_vec::<f64>(self.bytes)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            Dtype::BF16 => pod_vec::<half::bf16>(self.bytes)
                .into_iter()
                .map(f32::from)
                .collect(),
            Dtype::F16 => pod_vec::<half::f16>(self.bytes)
                .into_iter()
                .map(f32::from)
                .collect(),
            Dtype::U8 => self.bytes.iter().map(|&v| v as f32).collect(),
            Dtype::I32 => pod_vec::<i32>(self.bytes)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            Dtype::I64 => pod_vec::<i64>(self.bytes)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            _ => return None,
        })
    }

    /// Copies the tensor out as i64, from any integer dtype.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        Some(match self.dtype {
            Dtype::I64 => pod_vec::<i64>(self.bytes),
            Dtype::U64 => pod_vec::<u64>(self.bytes)
                .into_iter()
                .map(|v| v as i64)
                .collect(),
            Dtype::I32 => pod_vec::<i32>(self.bytes)
                .into_iter()
                .map(i64::from)
                .collect(),
            Dtype::U32 => pod_vec::<u32>(self.bytes)
                .into_iter()
                .map(i64::from)
                .collect(),
            Dtype::I16 => pod_vec::<i16>(self.bytes)
                .into_iter()
                .map(i64::from)
                .collect(),
            Dtype::U8 => self.bytes.iter().map(|&v| i64::from(v)).collect(),
            _ => return None,
        })
    }
}

/// Copies little-endian bytes into a vector of `T`, whatever their alignment.
pub fn pod_vec<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    match bytemuck::try_cast_slice::<u8, T>(bytes) {
        Ok(slice) => slice.to_vec(),
        Err(_) => bytes
            .chunks_exact(std::mem::size_of::<T>())
            .map(bytemuck::pod_read_unaligned)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_round_trips_through_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let specs = [
            TensorSpec::new("a", Dtype::F32, &[2, 3]),
            TensorSpec::new("b", Dtype::I64, &[4]),
            TensorSpec::new("c", Dtype::U8, &[3]),
        ];
        let mut meta = BTreeMap::new();
        meta.insert("k".to_string(), "v".to_string());
        let mut w = SafetensorsWriter::create(&path, &specs, &meta).unwrap();
        // Out of order, in pieces.
        w.write("a", 3, bytemuck::cast_slice(&[4.0f32, 5.0, 6.0]))
            .unwrap();
        w.write_all("b", &[0i64, 1, 5, 6]).unwrap();
        w.write("a", 0, bytemuck::cast_slice(&[1.0f32, 2.0, 3.0]))
            .unwrap();
        w.write_all("c", &[1u8, 0, 1]).unwrap();
        w.finish().unwrap();

        let m = MappedSafetensors::open(&path).unwrap();
        assert_eq!(m.metadata().get("k").map(String::as_str), Some("v"));
        let a = m.require("a").unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.to_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(m.require("b").unwrap().to_i64().unwrap(), vec![0, 1, 5, 6]);
        assert_eq!(a.file_offset % 4, 0);
        assert!(m.get("zz").is_none());
    }

    #[test]
    fn unfinished_tensor_is_an_error_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let specs = [TensorSpec::new("a", Dtype::F32, &[2])];
        let mut w = SafetensorsWriter::create(&path, &specs, &BTreeMap::new()).unwrap();
        w.write("a", 0, bytemuck::cast_slice(&[1.0f32])).unwrap();
        assert!(w.finish().is_err());
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
