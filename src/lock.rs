//! Advisory locks on the folders mprm writes over time (training run folders, experiment results
//! folders), so two processes never write one folder at once.
//!
//! The lock is an OS file lock ([`std::fs::File::try_lock`]: `flock` on Unix, `LockFileEx` on
//! Windows) on `DIR/.mprm.lock`, which holds the holder's process id for the message a second
//! writer gets. The OS drops the lock when the holder exits, however it exits, so a lock file left
//! behind by a killed process is not stale: the next writer simply takes it. The file itself stays;
//! it is not part of the folder's results, and it is emptied on release, so identical runs leave
//! identical folders.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// File name of the lock inside a locked folder.
pub const LOCK_FILE: &str = ".mprm.lock";

/// An exclusive advisory lock on a folder, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    path: PathBuf,
    // Holding the open, locked file is what holds the lock.
    file: File,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Empty again on release (while still locked), so a finished folder's lock file is the
        // same whoever held it last; a killed holder leaves its pid, which is harmless.
        let _ = self.file.set_len(0);
        // Unlock explicitly rather than by closing the file: a child process forked by another
        // thread shares this open file description until it execs, and closing our descriptor
        // alone would leave the folder locked (and its lock file empty) for that long.
        let _ = self.file.unlock();
    }
}

impl DirLock {
    /// Locks `dir` (created if missing) for writing, or fails with [`Error::Locked`] naming the
    /// process that holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        std::fs::create_dir_all(dir).at(dir)?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The holder may not have written its pid yet; then it is "unknown".
                let _ = file.read_to_string(&mut text);
                let pid = text.trim();
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                    lock: path,
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        file.set_len(0).at(&path)?;
        file.seek(SeekFrom::Start(0)).at(&path)?;
        writeln!(file, "{}", std::process::id()).at(&path)?;
        file.flush().at(&path)?;
        Ok(DirLock {
            dir: dir.to_path_buf(),
            path,
            file,
        })
    }

    /// The locked folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let first = DirLock::acquire(&run).unwrap();
        assert_eq!(first.path(), run.join(LOCK_FILE));
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
        // A second open file description conflicts even within one process.
        let e = DirLock::acquire(&run).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Locked { .. }), "{e:?}");
        assert!(
            msg.contains(&format!("in use by pid {}", std::process::id()))
                && msg.contains(&run.display().to_string())
                && msg.contains(LOCK_FILE),
            "{msg}"
        );
        // Released on drop; the file stays and is taken over.
        drop(first);
        let again = DirLock::acquire(&run).unwrap();
        assert_eq!(again.dir(), run.as_path());
    }

    #[test]
    fn release_does_not_wait_for_a_shared_descriptor_to_close() {
        // A duplicate of the lock's descriptor stands in for a child forked by another thread
        // and not yet exec'd: it shares the open file description, and with it the lock.
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let inherited = first.file.try_clone().unwrap();
        drop(first);
        let again = DirLock::acquire(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(again.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(inherited);
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "999999999\n").unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(lock.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
    }
}
