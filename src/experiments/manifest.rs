//! The manifest written with every result folder: what ran, with which settings, on what.

use std::path::Path;
use std::process::Command;

/// Provenance of a result folder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Experiment name.
    pub experiment: String,
    /// The full configuration as run.
    pub config: serde_json::Value,
    /// Master seed.
    pub seed: u64,
    /// mprm version.
    pub crate_version: String,
    /// `git describe`-style commit of the working tree, or `unknown`.
    pub git_commit: String,
    /// The device that actually ran the numeric work.
    pub device: String,
}

/// The commit of the repository holding `dir` (with `-dirty` when it has local changes), or
/// `unknown` outside a git checkout.
pub fn git_commit(dir: &Path) -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(head) if !head.is_empty() => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{head}-dirty") } else { head }
        }
        _ => "unknown".into(),
    }
}
