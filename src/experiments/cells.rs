//! Resumable experiment cells.
//!
//! An experiment is a grid of cells (a budget × a selector × a seed, say). Each finished cell is
//! saved as one JSON file under `RESULTS/cells/`; a rerun loads finished cells instead of
//! recomputing them, so an interrupted sweep resumes where it stopped and a finished one
//! regenerates its tables instantly.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, IoContext, Result};
use crate::output::write_json;

/// A short hash of everything a cell's value depends on, for its key: a changed setting then
/// misses the cache and recomputes instead of reusing a stale value. (A hash that changes between
/// builds only costs a rerun.)
pub fn settings_hash(stamp: &serde_json::Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    stamp.to_string().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// A folder of finished cells.
#[derive(Debug, Clone)]
pub struct CellStore {
    dir: PathBuf,
}

impl CellStore {
    /// Opens (creating) `results/cells`.
    pub fn open(results: &Path) -> Result<Self> {
        let dir = results.join("cells");
        std::fs::create_dir_all(&dir).at(&dir)?;
        Ok(CellStore { dir })
    }

    fn path(&self, key: &str) -> PathBuf {
        let safe: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.=".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// The saved value of `key`, if that cell finished before.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let path = self.path(key);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                Error::Other(format!(
                    "{}: unreadable cell ({e}); delete it to recompute",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Loads the cell or computes and saves it; the flag says whether it was loaded.
    pub fn get_or_compute<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        compute: impl FnOnce() -> Result<T>,
    ) -> Result<(T, bool)> {
        if let Some(v) = self.get(key)? {
            return Ok((v, true));
        }
        let v = compute()?;
        write_json(self.path(key), &v)?;
        Ok((v, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_cells_are_not_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let store = CellStore::open(dir.path()).unwrap();
        let (v, cached) = store
            .get_or_compute("a/b c", || Ok(vec![1.0, 2.0]))
            .unwrap();
        assert_eq!((v, cached), (vec![1.0, 2.0], false));
        let (v, cached) = store
            .get_or_compute::<Vec<f64>>("a/b c", || Err(Error::Other("must not run".into())))
            .unwrap();
        assert_eq!((v, cached), (vec![1.0, 2.0], true));
    }
}
