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
    /// Fingerprint of the corpus the experiments ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus_fingerprint: Option<crate::data::fingerprint::CorpusFingerprint>,
}

/// The commit of the repository holding `dir` (with `-dirty` when it has local changes), or
/// `unknown` outside a git checkout. Changes to generated results (`results` and the committed
/// `experiments/results/`) do not count: rerunning experiments over their committed results
/// rewrites them, and that says nothing about the code that produced them.
pub fn git_commit(dir: &Path, results: &Path) -> String {
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
            let results = std::fs::canonicalize(results).unwrap_or_else(|_| results.to_path_buf());
            let exclude = format!(":(exclude){}", results.display());
            let dirty = run(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":(top)",
                ":(top,exclude)experiments/results",
                &exclude,
            ])
            .is_some_and(|s| !s.is_empty());
            if dirty { format!("{head}-dirty") } else { head }
        }
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn rewritten_results_do_not_mark_the_code_dirty() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path();
        if Command::new("git").arg("--version").output().is_err() {
            eprintln!("git is not installed; skipping");
            return;
        }
        let results = root.join("experiments/results/demo");
        let other = root.join("out/mine");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(root.join("code.rs"), "fn main() {}\n").unwrap();
        std::fs::write(results.join("table.md"), "1\n").unwrap();
        std::fs::write(other.join("table.md"), "1\n").unwrap();
        git(root, &["init", "-q"]);
        git(root, &["add", "."]);
        git(root, &["commit", "-qm", "init"]);
        let config_dir = root.join("experiments");
        let clean = git_commit(&config_dir, &other);
        assert!(!clean.is_empty() && !clean.ends_with("-dirty"), "{clean}");

        std::fs::write(results.join("table.md"), "2\n").unwrap();
        std::fs::write(other.join("table.md"), "2\n").unwrap();
        assert_eq!(git_commit(&config_dir, &other), clean);

        std::fs::write(root.join("code.rs"), "fn main() { }\n").unwrap();
        assert_eq!(git_commit(&config_dir, &other), format!("{clean}-dirty"));
    }
}
