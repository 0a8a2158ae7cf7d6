//! Inputs are never outputs.
//!
//! Every command lists the paths it reads and the paths it writes in a [`PathRoles`] and calls
//! [`PathRoles::check`] before doing any work. Paths are compared by what they are on disk (device
//! and inode, so symbolic and hard links to one file count as that file), and an output that does
//! not exist yet by its resolved location. The check refuses, with both paths named and nothing
//! touched:
//!
//! * an output that is one of the inputs (or a file inside an input folder);
//! * an output folder that holds an input (a folder output is replaced whole);
//! * one file named for two outputs;
//! * an output that is an existing folder where a file is expected.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Folders are walked this deep when their files are collected as inputs (a corpus folder has
/// `annotations/` one level down).
const MAX_INPUT_DEPTH: usize = 3;

#[derive(Debug, Clone)]
struct Role {
    flag: String,
    path: PathBuf,
}

/// The paths one command reads and writes.
#[derive(Debug, Default, Clone)]
pub struct PathRoles {
    inputs: Vec<Role>,
    outputs: Vec<Role>,
    output_dirs: Vec<Role>,
}

/// Where a path lives: its inode when it exists, otherwise its resolved location.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Identity {
    Inode(u64, u64),
    Location(PathBuf),
}

fn identity(path: &Path) -> Identity {
    match std::fs::metadata(path) {
        Ok(m) => Identity::Inode(m.dev(), m.ino()),
        Err(_) => Identity::Location(resolved(path)),
    }
}

/// `path` with its longest existing ancestor canonicalised (links resolved) and the rest appended.
fn resolved(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut tail = Vec::new();
    let mut head = abs.as_path();
    loop {
        if let Ok(c) = head.canonicalize() {
            let mut out = c;
            for part in tail.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                head = parent;
            }
            _ => return abs,
        }
    }
}

impl PathRoles {
    /// No paths yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A file or folder the command reads (a folder's files, a few levels deep, count too).
    pub fn input(mut self, flag: &str, path: impl AsRef<Path>) -> Self {
        self.inputs.push(Role {
            flag: flag.into(),
            path: path.as_ref().to_path_buf(),
        });
        self
    }

    /// Like [`PathRoles::input`], when the path is optional.
    pub fn input_opt(self, flag: &str, path: Option<impl AsRef<Path>>) -> Self {
        match path {
            Some(p) => self.input(flag, p),
            None => self,
        }
    }

    /// A file the command writes (replaced atomically).
    pub fn output(mut self, flag: &str, path: impl AsRef<Path>) -> Self {
        self.outputs.push(Role {
            flag: flag.into(),
            path: path.as_ref().to_path_buf(),
        });
        self
    }

    /// Like [`PathRoles::output`], when the path is optional.
    pub fn output_opt(self, flag: &str, path: Option<impl AsRef<Path>>) -> Self {
        match path {
            Some(p) => self.output(flag, p),
            None => self,
        }
    }

    /// A folder the command writes whole (built elsewhere and swapped in): no input may be in it.
    pub fn output_dir(mut self, flag: &str, path: impl AsRef<Path>) -> Self {
        self.output_dirs.push(Role {
            flag: flag.into(),
            path: path.as_ref().to_path_buf(),
        });
        self
    }

    /// Refuses every conflict described in the module docs; touches nothing.
    pub fn check(&self) -> Result<()> {
        // Every input file, by inode, with the role it came from.
        let mut inputs: HashMap<Identity, (&Role, PathBuf)> = HashMap::new();
        let mut input_locations: Vec<(&Role, PathBuf)> = Vec::new();
        for role in &self.inputs {
            let mut files = Vec::new();
            collect(&role.path, 0, &mut files);
            for f in files {
                input_locations.push((role, resolved(&f)));
                inputs.entry(identity(&f)).or_insert((role, f));
            }
        }
        let describe = |role: &Role, file: &Path| {
            if role.path == file {
                format!("{} {}", role.flag, role.path.display())
            } else {
                format!(
                    "{} (in {} {})",
                    file.display(),
                    role.flag,
                    role.path.display()
                )
            }
        };

        let mut outputs: HashMap<Identity, &Role> = HashMap::new();
        for out in &self.outputs {
            if std::fs::metadata(&out.path).is_ok_and(|m| m.is_dir()) {
                return Err(Error::PathConflict(format!(
                    "{} {} is a folder; it must name a file",
                    out.flag,
                    out.path.display()
                )));
            }
            let id = identity(&out.path);
            if let Some((role, file)) = inputs.get(&id) {
                return Err(Error::PathConflict(format!(
                    "{} {} is also an input ({}); refusing to overwrite an input, nothing was \
                     written",
                    out.flag,
                    out.path.display(),
                    describe(role, file)
                )));
            }
            if let Some(first) = outputs.insert(id, out) {
                return Err(Error::PathConflict(format!(
                    "{} {} and {} {} are the same file; give each output its own path, nothing \
                     was written",
                    first.flag,
                    first.path.display(),
                    out.flag,
                    out.path.display()
                )));
            }
        }
        for dir in &self.output_dirs {
            let root = resolved(&dir.path);
            if let Some((role, file)) = input_locations.iter().find(|(_, f)| f.starts_with(&root)) {
                return Err(Error::PathConflict(format!(
                    "{} {} would replace an input ({}); choose another folder, nothing was written",
                    dir.flag,
                    dir.path.display(),
                    describe(role, file)
                )));
            }
            if let Some(out) = self
                .outputs
                .iter()
                .find(|o| resolved(&o.path).starts_with(&root))
            {
                return Err(Error::PathConflict(format!(
                    "{} {} is inside the output folder {} {}; nothing was written",
                    out.flag,
                    out.path.display(),
                    dir.flag,
                    dir.path.display()
                )));
            }
        }
        Ok(())
    }
}

/// `path` itself and, for a folder, the files below it (links followed, depth-limited).
fn collect(path: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    out.push(path.to_path_buf());
    if depth >= MAX_INPUT_DEPTH || !path.is_dir() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            collect(&e.path(), depth + 1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_inputs_links_and_shared_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("ann")).unwrap();
        std::fs::write(d.join("ann/a.jsonl"), "x").unwrap();
        std::os::unix::fs::symlink(d.join("ann/a.jsonl"), d.join("link.jsonl")).unwrap();
        std::fs::hard_link(d.join("ann/a.jsonl"), d.join("hard.jsonl")).unwrap();
        let base = || PathRoles::new().input("--annotations-dir", d.join("ann"));

        for bad in [
            "ann/a.jsonl",
            "link.jsonl",
            "hard.jsonl",
            "ann/../ann/a.jsonl",
        ] {
            let e = base().output("--output", d.join(bad)).check().unwrap_err();
            assert!(matches!(e, Error::PathConflict(_)), "{bad}: {e}");
            assert!(e.to_string().contains("--annotations-dir"), "{e}");
        }
        base()
            .output("--output", d.join("new.jsonl"))
            .check()
            .unwrap();
        // Two outputs, one file (not yet existing, spelled two ways).
        let e = base()
            .output("--output", d.join("x.jsonl"))
            .output("--ids", d.join("ann/../x.jsonl"))
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("--output") && e.to_string().contains("--ids"));
        // A folder output holding an input.
        assert!(base().output_dir("--out", d).check().is_err());
        base().output_dir("--out", d.join("sim")).check().unwrap();
        // An output that is a folder.
        assert!(base().output("--output", d.join("ann")).check().is_err());
    }
}
