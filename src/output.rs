//! Atomic output files.
//!
//! Every file mprm writes goes to a temporary sibling first and is renamed into place only when it
//! is complete, so a failed or interrupted run never leaves a half-written output and never
//! clobbers an existing one.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// A temporary sibling of `dest` that is removed on drop unless it was renamed into place.
pub struct TempPath {
    dest: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl TempPath {
    /// Reserves a temporary name next to `dest`, creating the parent folder if needed.
    pub fn for_dest(dest: impl AsRef<Path>) -> Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).at(parent)?;
        }
        let name = dest
            .file_name()
            .ok_or_else(|| {
                Error::invalid(format!("output path {} has no file name", dest.display()))
            })?
            .to_string_lossy()
            .into_owned();
        let tmp = dest.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        Ok(TempPath {
            dest,
            tmp,
            committed: false,
        })
    }

    /// The temporary path being written.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Renames the temporary file into place.
    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.dest).at(&self.dest)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.committed {
            // Not committed: the run failed, so the partial file must not survive.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A buffered file being written; it appears under its final name only after
/// [`AtomicFile::commit`].
pub struct AtomicFile {
    path: TempPath,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing `dest`, creating its parent folder if needed.
    pub fn create(dest: impl AsRef<Path>) -> Result<Self> {
        let path = TempPath::for_dest(dest)?;
        let file = File::create(path.tmp()).at(path.tmp())?;
        Ok(AtomicFile {
            path,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        self.path.dest()
    }

    /// Flushes and renames the file into place.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("writer present until commit");
        let file = writer
            .into_inner()
            .map_err(|e| Error::io(self.path.tmp(), e.into_error()))?;
        drop(file);
        self.path.commit()
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .flush()
    }
}

/// Writes `bytes` to `dest` atomically.
pub fn write_bytes(dest: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut file = AtomicFile::create(dest)?;
    let tmp = file.path.tmp().to_path_buf();
    file.write_all(bytes).at(&tmp)?;
    file.commit()
}

/// Writes `value` as pretty JSON (with a trailing newline) to `dest` atomically.
pub fn write_json<T: serde::Serialize + ?Sized>(dest: impl AsRef<Path>, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Other(format!("cannot serialise JSON: {e}")))?;
    text.push('\n');
    write_bytes(dest, text.as_bytes())
}

/// Writes `text` to `dest` atomically.
pub fn write_text(dest: impl AsRef<Path>, text: &str) -> Result<()> {
    write_bytes(dest, text.as_bytes())
}

/// Runs `work` on every item in parallel and concatenates what each call wrote, in item order,
/// into `dest` (returned uncommitted, so callers can finish other outputs first).
///
/// Each call writes to its own part file next to `dest`, so memory does not grow with the output
/// and the result never depends on scheduling. Without a destination, writes go nowhere.
pub fn par_map_concat<I, T, F>(
    items: &[I],
    dest: Option<&Path>,
    work: F,
) -> Result<(Vec<T>, Option<AtomicFile>)>
where
    I: Sync,
    T: Send,
    F: Fn(usize, &I, &mut dyn Write) -> Result<T> + Sync,
{
    use rayon::prelude::*;

    let Some(dest) = dest else {
        let results = items
            .par_iter()
            .enumerate()
            .map(|(i, item)| work(i, item, &mut std::io::sink()))
            .collect::<Result<Vec<T>>>()?;
        return Ok((results, None));
    };
    let parts = PartsDir::next_to(dest)?;
    let results: Vec<Result<(T, TempPath)>> = items
        .par_iter()
        .enumerate()
        .map(|(i, item)| {
            let part = TempPath::for_dest(parts.0.join(format!("{i:06}.part")))?;
            let mut w = BufWriter::with_capacity(1 << 18, File::create(part.tmp()).at(part.tmp())?);
            let t = work(i, item, &mut w)?;
            w.into_inner()
                .map_err(|e| Error::io(part.tmp(), e.into_error()))?;
            Ok((t, part))
        })
        .collect();
    let mut out = AtomicFile::create(dest)?;
    let mut values = Vec::with_capacity(items.len());
    for r in results {
        let (t, part) = r?;
        let mut f = File::open(part.tmp()).at(part.tmp())?;
        std::io::copy(&mut f, &mut out).at(part.tmp())?;
        values.push(t);
    }
    Ok((values, Some(out)))
}

/// A private folder of part files next to an output; removed when dropped.
struct PartsDir(PathBuf);

impl PartsDir {
    fn next_to(dest: &Path) -> Result<Self> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = dest.with_file_name(format!(".{name}.{}.parts", std::process::id()));
        std::fs::create_dir_all(&dir).at(&dir)?;
        Ok(PartsDir(dir))
    }
}

impl Drop for PartsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
