//! What a new user meets first: README's quick start on a fresh clone leaves `git status` clean.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// README's main job, run from a fresh clone at a quarter of its corpus scale, writes only under
/// git-ignored folders.
#[test]
fn the_quick_start_leaves_the_repository_clean() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("mprm");
    let out = Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(repo)
        .arg(&clone)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        git(&clone, &["status", "--porcelain"]),
        "",
        "a fresh clone is clean"
    );

    let run = Command::new(env!("CARGO_BIN_EXE_mprm"))
        .current_dir(&clone)
        .args(["experiment", "experiments/main.toml", "--scale", "0.005"])
        .env("MPRM_NO_PROGRESS", "1")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report = clone.join("experiments/runs/main/README.md");
    assert!(report.is_file(), "the report is at {}", report.display());
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("report: experiments/runs/main/README.md"),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    assert_eq!(
        git(&clone, &["status", "--porcelain", "--ignored=no"]),
        "",
        "the quick start changed the repository"
    );
}
