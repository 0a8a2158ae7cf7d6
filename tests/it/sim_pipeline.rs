//! The simulator's corpus through the foundation: statistics agree with the manifest, and the
//! raw annotation files and the features bundle select identically.

use crate::common::{code, mprm, stderr, stdout};
use mprm::data::ids::read_ids;

fn synth(dir: &std::path::Path) {
    let o = mprm(&[
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--scale",
        "0.01",
        "--min-rollouts",
        "25",
        "--dim",
        "8",
        "--seed",
        "9",
        "--bench-questions",
        "20",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn stats_agree_with_the_manifest_and_raw_equals_bundle_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    synth(&dir);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let counts = &manifest["corpus"]["counts"];

    let ann = dir.join("annotations");
    let o = mprm(&["stats", "--json", ann.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let total = &stats["total"];
    assert_eq!(total["rollouts"], counts["rollouts"]);
    assert_eq!(total["steps"], counts["steps"]);
    assert_eq!(total["error_steps"], counts["zero_steps"]);
    assert_eq!(total["mixed"], counts["mixed_rollouts"]);
    assert_eq!(total["all_positive"], counts["all_positive_rollouts"]);
    assert_eq!(total["words"], counts["words"]);
    let mean_mc = total["score_sum"].as_f64().unwrap() / total["steps"].as_f64().unwrap();
    assert!((mean_mc - manifest["corpus"]["mean_mc"]["achieved"].as_f64().unwrap()).abs() < 1e-12);
    // Per source, in the same (sorted file) order.
    let per_source = stats["sources"].as_array().unwrap();
    let by_file: std::collections::BTreeMap<String, u64> = manifest["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["file"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("annotations/")
                    .trim_end_matches(".jsonl")
                    .to_string(),
                s["rollouts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(per_source.len(), by_file.len());
    for s in per_source {
        assert_eq!(
            s["rollouts"].as_u64(),
            by_file.get(s["source"].as_str().unwrap()).copied(),
            "{}",
            s["source"]
        );
    }
    // The bundle gives the same statistics (minus word counts).
    let o = mprm(&[
        "stats",
        "--json",
        dir.join("features.safetensors").to_str().unwrap(),
    ]);
    let b: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    for k in [
        "rollouts",
        "steps",
        "error_steps",
        "mixed",
        "all_positive",
        "all_negative",
    ] {
        assert_eq!(b["total"][k], total[k], "{k}");
    }

    for method in [
        "bis", "random", "mixed", "reliable", "low-mc", "mixture", "top-mc",
    ] {
        let raw = tmp.path().join(format!("{method}-raw.tsv"));
        let bun = tmp.path().join(format!("{method}-bundle.tsv"));
        let o = mprm(&[
            "select",
            method,
            "--annotations-dir",
            ann.to_str().unwrap(),
            "--seed",
            "4",
            "--top-ratio",
            "0.1",
            "--alpha",
            "0.2",
            "--ids",
            raw.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let o = mprm(&[
            "select",
            method,
            "--bundle",
            dir.join("features.safetensors").to_str().unwrap(),
            "--seed",
            "4",
            "--top-ratio",
            "0.1",
            "--alpha",
            "0.2",
            "--ids",
            bun.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let (r, b) = (read_ids(&raw).unwrap(), read_ids(&bun).unwrap());
        assert!(!r.is_empty());
        assert_eq!(r, b, "{method}");
    }
}
