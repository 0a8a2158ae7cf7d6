//! Atomic outputs: files, sets of files and whole folders.
//!
//! Every file mprm writes goes to a temporary sibling first and is renamed into place only when it
//! is complete, so a failed or interrupted run never leaves a half-written output and never
//! clobbers an existing one. A command with several outputs stages them all ([`Staged`]) and
//! renames them only once every one is complete. A command that writes a folder (`synth`) builds
//! it under a hidden temporary name marked incomplete ([`AtomicDir`]) and swaps it in at the end;
//! readers refuse a marked folder ([`refuse_incomplete`]).
//!
//! For tests, `MPRM_FAULT_ENOSPC_AFTER=N` makes every write through this module fail with "No
//! space left on device" once N bytes have been written by the process (a full disk on demand).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, IoContext, Result};

/// A temporary sibling of `dest` that is removed on drop unless it was renamed into place.
///
/// The name is `tempfile`'s (`.NAME.XXXXXX.tmp`, unique even between threads of one process);
/// `tempfile` also removes it on drop and renames it on [`TempPath::commit`].
pub struct TempPath {
    dest: PathBuf,
    tmp: tempfile::TempPath,
}

impl TempPath {
    /// Reserves a temporary name next to `dest`, creating the parent folder if needed.
    pub fn for_dest(dest: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::create(dest)?.1)
    }

    /// Creates the temporary file next to `dest` and returns it open for writing.
    fn create(dest: impl AsRef<Path>) -> Result<(File, Self)> {
        let dest = dest.as_ref().to_path_buf();
        let parent = match dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => {
                std::fs::create_dir_all(parent).at(parent)?;
                parent.to_path_buf()
            }
            None => PathBuf::from("."),
        };
        let name = dest
            .file_name()
            .ok_or_else(|| {
                Error::invalid(format!("output path {} has no file name", dest.display()))
            })?
            .to_string_lossy()
            .into_owned();
        let (file, tmp) = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&parent)
            .at(&parent)?
            .into_parts();
        Ok((file, TempPath { dest, tmp }))
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
    pub fn commit(self) -> Result<()> {
        self.tmp
            .persist(&self.dest)
            .map_err(|e| Error::io(&self.dest, e.error))
    }
}

/// A buffered file being written; it appears under its final name only after
/// [`AtomicFile::commit`].
pub struct AtomicFile {
    path: TempPath,
    writer: BufWriter<File>,
}

impl AtomicFile {
    /// Starts writing `dest`, creating its parent folder if needed.
    pub fn create(dest: impl AsRef<Path>) -> Result<Self> {
        let (file, path) = TempPath::create(dest)?;
        Ok(AtomicFile {
            path,
            writer: BufWriter::with_capacity(1 << 20, file),
        })
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        self.path.dest()
    }

    /// Flushes and renames the file into place.
    pub fn commit(self) -> Result<()> {
        self.finish()?.commit()
    }

    /// Flushes and closes the file, leaving it under its temporary name (see [`Staged`]).
    pub fn finish(self) -> Result<TempPath> {
        let AtomicFile { path, writer } = self;
        let file = writer
            .into_inner()
            .map_err(|e| Error::io(path.tmp(), e.into_error()))?;
        drop(file);
        Ok(path)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        charge_write(buf.len())?;
        self.writer.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        charge_write(buf.len())?;
        self.writer.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// Writes `bytes` to `dest` atomically.
pub fn write_bytes(dest: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    stage_bytes(dest, bytes)?.commit()
}

/// Writes `bytes` to a temporary sibling of `dest`, to be renamed later (see [`Staged`]).
pub fn stage_bytes(dest: impl AsRef<Path>, bytes: &[u8]) -> Result<AtomicFile> {
    let mut file = AtomicFile::create(dest)?;
    let tmp = file.path.tmp().to_path_buf();
    file.write_all(bytes).at(&tmp)?;
    Ok(file)
}

/// Pretty JSON (with a trailing newline), staged like [`stage_bytes`].
pub fn stage_json<T: serde::Serialize + ?Sized>(
    dest: impl AsRef<Path>,
    value: &T,
) -> Result<AtomicFile> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Other(format!("cannot serialise JSON: {e}")))?;
    text.push('\n');
    stage_bytes(dest, text.as_bytes())
}

/// Outputs of one command that become visible together: every file is written and flushed under
/// its temporary name before the first is renamed, so a failure while writing any of them leaves
/// all the old outputs as they were.
#[derive(Default)]
pub struct Staged(Vec<AtomicFile>);

impl Staged {
    /// Nothing staged yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a complete (but uncommitted) file.
    pub fn push(&mut self, file: AtomicFile) {
        self.0.push(file);
    }

    /// Flushes every file, then renames them all into place.
    ///
    /// The renames happen while holding an exclusive lock on each destination folder, so two
    /// processes committing to the same outputs at once leave one complete set, never a mix.
    pub fn commit(self) -> Result<()> {
        let finished = self
            .0
            .into_iter()
            .map(AtomicFile::finish)
            .collect::<Result<Vec<TempPath>>>()?;
        let mut folders: Vec<PathBuf> = finished
            .iter()
            .map(|f| {
                let parent = f.dest().parent().filter(|p| !p.as_os_str().is_empty());
                let parent = parent.unwrap_or(Path::new("."));
                parent
                    .canonicalize()
                    .unwrap_or_else(|_| parent.to_path_buf())
            })
            .collect();
        // One order for every process, so two committers never wait on each other in a cycle.
        folders.sort();
        folders.dedup();
        let mut locks = Vec::with_capacity(folders.len());
        for folder in &folders {
            let handle = File::open(folder).at(folder)?;
            handle.lock().at(folder)?;
            locks.push(handle);
        }
        for f in finished {
            f.commit()?;
        }
        drop(locks);
        Ok(())
    }
}

/// Counts bytes against `MPRM_FAULT_ENOSPC_AFTER` (see the module docs).
pub(crate) fn charge_write(n: usize) -> std::io::Result<()> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static WRITTEN: AtomicU64 = AtomicU64::new(0);
    let limit = LIMIT.get_or_init(|| {
        std::env::var("MPRM_FAULT_ENOSPC_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(limit) = *limit {
        let before = WRITTEN.fetch_add(n as u64, Ordering::Relaxed);
        if before + n as u64 > limit {
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
    }
    Ok(())
}

/// Name of the marker file inside a folder that is still being written.
pub const INCOMPLETE_MARKER: &str = ".mprm-incomplete";

/// Refuses `path` (a file or folder) when it or one of its two parent folders carries the
/// incomplete marker, quoting how it came to be incomplete.
pub fn refuse_incomplete(path: &Path) -> Result<()> {
    let mut dir = if path.is_dir() {
        Some(path)
    } else {
        path.parent()
    };
    for _ in 0..3 {
        let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) else {
            break;
        };
        let marker = d.join(INCOMPLETE_MARKER);
        if let Ok(note) = std::fs::read_to_string(&marker) {
            return Err(Error::Incomplete {
                path: d.to_path_buf(),
                reason: format!(
                    "this folder is incomplete: {}; its writer was interrupted or failed before \
                     it finished (the finished folder is swapped in under its final name only \
                     when complete), so delete it and run the writer again",
                    note.trim()
                ),
            });
        }
        dir = d.parent();
    }
    Ok(())
}

/// A folder built under a hidden temporary name next to its destination and swapped in whole.
///
/// The temporary folder holds [`INCOMPLETE_MARKER`] until [`AtomicDir::commit`], so a reader
/// pointed at it (or at what an interrupted swap left) refuses it. On drop without commit the
/// temporary folder is removed.
pub struct AtomicDir {
    dest: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl AtomicDir {
    /// Starts building `dest`. An existing `dest` is replaced at commit only when it is empty or
    /// `replaceable` says it is an earlier output of the same writer; anything else is refused
    /// now, so a folder of other files is never swapped away. Temporary folders left by killed
    /// writers of the same destination are removed.
    pub fn create(dest: &Path, writer: &str, replaceable: impl Fn(&Path) -> bool) -> Result<Self> {
        if dest.exists() {
            let meta = std::fs::metadata(dest).at(dest)?;
            if !meta.is_dir() {
                return Err(Error::PathConflict(format!(
                    "{} exists and is not a folder",
                    dest.display()
                )));
            }
            let empty = std::fs::read_dir(dest).at(dest)?.next().is_none();
            if !empty && !replaceable(dest) {
                return Err(Error::PathConflict(format!(
                    "{} exists and is not an earlier `{writer}` output; it would be replaced \
                     whole, so choose a new or empty folder",
                    dest.display()
                )));
            }
        }
        let name = dest
            .file_name()
            .ok_or_else(|| Error::invalid(format!("output folder {} has no name", dest.display())))?
            .to_string_lossy()
            .into_owned();
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).at(parent)?;
        remove_stale_siblings(parent, &name);
        let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).at(&tmp)?;
        }
        std::fs::create_dir(&tmp).at(&tmp)?;
        let dir = AtomicDir {
            dest: dest.to_path_buf(),
            tmp,
            committed: false,
        };
        let note = format!(
            "being written by `{writer}` (pid {}) for {}",
            std::process::id(),
            dest.display()
        );
        std::fs::write(dir.tmp.join(INCOMPLETE_MARKER), note).at(&dir.tmp)?;
        Ok(dir)
    }

    /// The folder to write into.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The final folder.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Unmarks the folder and swaps it in for `dest`.
    pub fn commit(mut self) -> Result<()> {
        let marker = self.tmp.join(INCOMPLETE_MARKER);
        std::fs::remove_file(&marker).at(&marker)?;
        let old = self.tmp.with_extension("old");
        if self.dest.exists() {
            std::fs::rename(&self.dest, &old).at(&self.dest)?;
        }
        if let Err(e) = std::fs::rename(&self.tmp, &self.dest) {
            // Put the old folder back so the destination is never left missing.
            let _ = std::fs::rename(&old, &self.dest);
            return Err(Error::io(&self.dest, e));
        }
        self.committed = true;
        if old.exists() {
            std::fs::remove_dir_all(&old).at(&old)?;
        }
        Ok(())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Removes `.{name}.{pid}.tmp` / `.old` folders next to a destination whose writer is gone.
fn remove_stale_siblings(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let prefix = format!(".{name}.");
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let Some((pid, ext)) = rest.split_once('.') else {
            continue;
        };
        if !matches!(ext, "tmp" | "old") || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if !process_alive(pid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Whether process `pid` is running (Linux: it has a /proc entry).
pub fn process_alive(pid: &str) -> bool {
    pid == std::process::id().to_string() || Path::new("/proc").join(pid).exists()
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
            let mut w = PartWriter {
                inner: BufWriter::with_capacity(1 << 18, File::create(part.tmp()).at(dest)?),
                error: None,
            };
            let t = work(i, item, &mut w);
            // A failed write is the output's fault (a full disk, say), whatever file the work
            // was reading when it surfaced: name the output.
            if let Some(e) = w.error.take() {
                return Err(Error::io(dest, e));
            }
            let t = t?;
            w.inner
                .into_inner()
                .map_err(|e| Error::io(dest, e.into_error()))?;
            Ok((t, part))
        })
        .collect();
    let mut out = AtomicFile::create(dest)?;
    let mut values = Vec::with_capacity(items.len());
    for r in results {
        let (t, part) = r?;
        let mut f = File::open(part.tmp()).at(part.tmp())?;
        std::io::copy(&mut f, &mut out).at(dest)?;
        values.push(t);
    }
    Ok((values, Some(out)))
}

/// A part file's writer that remembers its first error (see [`par_map_concat`]).
struct PartWriter {
    inner: BufWriter<File>,
    error: Option<std::io::Error>,
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = charge_write(buf.len()).and_then(|()| self.inner.write(buf));
        self.remember(r)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.remember(r)
    }
}

impl PartWriter {
    fn remember<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r
            && self.error.is_none()
        {
            self.error = Some(std::io::Error::new(e.kind(), e.to_string()));
        }
        r
    }
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

/// Appends `field` to `out` as one CSV field (RFC 4180): quoted, with quotes doubled, when it holds
/// a comma, a quote or a line break. The one CSV quoting rule of every table mprm writes.
pub fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}
