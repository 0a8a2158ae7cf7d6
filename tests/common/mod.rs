//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `mprm` binary with `args`; progress bars off.
pub fn mprm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mprm"))
        .args(args)
        .env("MPRM_NO_PROGRESS", "1")
        .output()
        .expect("the mprm binary runs")
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exit status; a panic shows up as 101 and fails every bad-input test.
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Writes `bytes` to `dir/name`, creating folders.
pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Python 3 interpreter, if one is installed. Under CI (`CI=true`) one must be.
pub fn python() -> Option<String> {
    let candidates = [
        std::env::var("MPRM_PYTHON").unwrap_or_default(),
        "python3".to_string(),
    ];
    for c in candidates.iter().filter(|c| !c.is_empty()) {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c.clone());
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must provide python3"
    );
    eprintln!("note: python3 not found; skipping the comparison with the Python reference");
    None
}

/// A raw annotation record with the given step texts and scores (JSON text of scores as given).
pub fn record(image: Option<&str>, question: &str, steps: &[(&str, &str)]) -> String {
    let steps: Vec<String> = steps
        .iter()
        .map(|(t, s)| {
            format!(
                "{{\"step\": {}, \"score\": {s}}}",
                serde_json::to_string(t).unwrap()
            )
        })
        .collect();
    let image = image
        .map(|i| format!("\"image\": \"{i}\", "))
        .unwrap_or_default();
    format!(
        "{{{image}\"question_orig\": {}, \"steps_with_score\": [{}]}}",
        serde_json::to_string(question).unwrap(),
        steps.join(", ")
    )
}
