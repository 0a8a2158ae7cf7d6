//! The crate's error type.
//!
//! One enum for the whole pipeline keeps `?` cheap across stages; each variant names the rule that
//! was broken and the place (file, line, tensor) where it was broken, so the binary can print the
//! error once and the user knows what to fix.

use std::path::{Path, PathBuf};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in mprm.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while touching `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A record that could not be used, with its 1-based line number.
    #[error("{}:{line}: {reason}", path.display())]
    BadRecord {
        /// The file holding the record.
        path: PathBuf,
        /// 1-based physical line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A features bundle that breaks one of the format's rules.
    #[error("{}: tensor `{tensor}`: {reason}", path.display())]
    Bundle {
        /// The bundle file.
        path: PathBuf,
        /// The tensor that breaks the rule.
        tensor: String,
        /// The rule that was broken.
        reason: String,
    },
    /// Two files that must come from one corpus do not (fingerprints or step counts differ).
    #[error("{reason}")]
    CorpusMismatch {
        /// The first file.
        left: PathBuf,
        /// The second file.
        right: PathBuf,
        /// What differs.
        reason: String,
    },
    /// An output path that is also an input, or one file named for two outputs; nothing was
    /// written.
    #[error("{0}")]
    PathConflict(String),
    /// A folder left incomplete by an interrupted or failed writer.
    #[error("{}: {reason}", path.display())]
    Incomplete {
        /// The folder.
        path: PathBuf,
        /// How it came to be incomplete.
        reason: String,
    },
    /// A folder another process is writing.
    #[error("{}: in use by pid {pid} (lock file {}); wait for it to finish or stop it", path.display(), lock.display())]
    Locked {
        /// The folder.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The holder's process id, as it recorded it.
        pid: String,
    },
    /// A user-supplied setting that is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The input holds nothing to work on.
    #[error("empty input: {0}")]
    EmptyInput(String),
    /// CUDA was asked for but cannot be used, or a kernel failed; see [`CudaError`].
    #[error("cuda: {0}")]
    Cuda(#[from] CudaError),
    /// Training diverged or could not continue; see [`TrainError`].
    #[error("training: {0}")]
    Training(#[from] TrainError),
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

/// Why CUDA could not be used. Callers branch on it (`auto` falls back to the CPU on anything but a
/// kernel failure) and users need the detail (the NVRTC log, the kernel that failed).
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// The binary was built without the `cuda` feature. The one wording of this message.
    #[error("support not compiled in; rebuild with `--features cuda`")]
    NotCompiled,
    /// A CUDA library cannot be loaded.
    #[error("{library} cannot be loaded; {hint}")]
    LibraryMissing {
        /// The shared library, e.g. `libnvrtc.so.13`.
        library: &'static str,
        /// What to do about it.
        hint: &'static str,
    },
    /// The requested ordinal is not present.
    #[error("device {ordinal} requested but {count} device(s) present")]
    NoSuchDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// Devices present.
        count: usize,
    },
    /// NVRTC rejected a kernel source; the log is kept whole.
    #[error("NVRTC failed on kernels/{file} for {arch}:\n{log}")]
    Compile {
        /// The `.cu` file (under `kernels/`).
        file: String,
        /// The `compute_XY` target.
        arch: String,
        /// NVRTC's program log.
        log: String,
    },
    /// A driver call failed (context, copy, module load or launch).
    #[error("{operation}: {detail}")]
    Driver {
        /// What was being done, naming the kernel for launches.
        operation: String,
        /// The driver's message.
        detail: String,
    },
    /// An input the kernels cannot take (an index past 32 bits, a missing buffer).
    #[error("{0}")]
    Unsupported(String),
}

/// Why a training run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A non-finite loss or gradient; nothing was applied at `step`. A learning-rate search
    /// records this and tries the next rate.
    #[error("{detail}")]
    Diverged {
        /// 1-based optimiser step.
        step: usize,
        /// Loss, gradient norm, learning rate and the last good checkpoint.
        detail: String,
    },
    /// Every learning rate of a search diverged.
    #[error("every learning rate diverged")]
    EveryRateDiverged,
    /// The run finished without something its caller needs (a head, an evaluation).
    #[error("{0}")]
    MissingOutput(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A bad record at `line` (0-based here, printed 1-based).
    pub fn bad_record(path: impl AsRef<Path>, line0: u64, reason: impl Into<String>) -> Self {
        Error::BadRecord {
            path: path.as_ref().to_path_buf(),
            line: line0 + 1,
            reason: reason.into(),
        }
    }

    /// A bundle rule broken by `tensor`.
    pub fn bundle(path: impl AsRef<Path>, tensor: &str, reason: impl Into<String>) -> Self {
        Error::Bundle {
            path: path.as_ref().to_path_buf(),
            tensor: tensor.to_string(),
            reason: reason.into(),
        }
    }

    /// An invalid user setting.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

/// Attaches a path to `std::io::Result`s.
pub trait IoContext<T> {
    /// Converts the I/O error into [`Error::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
