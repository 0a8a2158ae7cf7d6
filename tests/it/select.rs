//! Selection: the reference script's behaviour, byte for byte, and its edge cases.

use crate::common::{code, mprm, python, record, repo, stderr, write};
use mprm::data::features::{BundleMeta, BundleParts, FeatureBundle, FeatureData};
use mprm::data::ids::read_ids;
use mprm::data::raw::{Strictness, read_corpus};
use mprm::select::baselines::{BASELINE_NAMES, Baseline};
use mprm::select::pipeline::{SelectOutputs, select_annotations, select_bundle};

/// The 12-line file of the reference notes (§4.4): scores per line, `None` for a non-record line.
fn mini_file() -> (String, Vec<String>) {
    let rec = |i: usize, steps: &[(&str, &str)]| {
        record(Some(&format!("img{i}.png")), &format!("q{i}"), steps)
    };
    let lines = vec![
        rec(0, &[("a0", "1.0"), ("b0", "1.0"), ("c0", "1.0")]),
        rec(1, &[("a1", "0.5"), ("b1", "0.0")]),
        String::new(),
        "{\"image\": \"img3.png\", \"steps_with_score\": [".to_string(),
        rec(4, &[("a4", "0.0"), ("b4", "0.0")]),
        rec(5, &[("a5", "0.9375"), ("b5", "0.0625"), ("c5", "0.0")]),
        rec(
            6,
            &[("a6", "0.0625"), ("b6", "0"), ("c6", "0"), ("d6", "0")],
        ),
        rec(7, &[("a7", "1.0"), ("b7", "0.0625")]),
        rec(8, &[("a8", "0.75"), ("", "0.0")]),
        rec(9, &[("a9", "0.875"), ("b9", "0.875")]),
        rec(10, &[("a10", "0.0"), ("b10", "0.0"), ("c10", "0.0")]),
        rec(11, &[("a11", "0.5"), ("b11", "null"), ("c11", "0.0")]),
    ];
    // The expected output line of each writable record, built independently of the library.
    let labels = |scores: &[f64]| {
        scores
            .iter()
            .map(|&s| if s > 0.0 { "1.0" } else { "0.0" })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let expect = |i: usize, texts: &[&str], scores: &[f64]| {
        let process: Vec<String> = texts.iter().map(|t| format!("{t}<prm>")).collect();
        format!(
            "{{\"image\": \"img{i}.png\", \"conversations\": [{{\"from\": \"human\", \"value\": \"Question: q{i}\\nProcess: {}\"}}, {{\"from\": \"gpt\", \"value\": [{}]}}]}}",
            process.join("\\n\\n"),
            labels(scores)
        )
    };
    let expected = vec![
        expect(0, &["a0", "b0", "c0"], &[1.0, 1.0, 1.0]),
        expect(1, &["a1", "b1"], &[0.5, 0.0]),
        expect(5, &["a5", "b5", "c5"], &[0.9375, 0.0625, 0.0]),
    ];
    (lines.join("\n") + "\n", expected)
}

#[test]
fn reference_mini_file_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = mini_file();
    write(dir.path(), "ann/mini.jsonl", &text);
    let ann = dir.path().join("ann");
    // ratio → (chosen lines in file order, indices into `expected` that are written)
    for (ratio, chosen, written) in [
        ("0.1", vec![8u64], vec![]),
        ("0.25", vec![1, 8], vec![1]),
        ("0.5", vec![0, 1, 5, 8, 11], vec![0, 1, 2]),
    ] {
        let out = dir.path().join(format!("out-{ratio}.jsonl"));
        let ids = dir.path().join(format!("ids-{ratio}.tsv"));
        let rep = dir.path().join(format!("rep-{ratio}.json"));
        let o = mprm(&[
            "select",
            "bis",
            "--annotations-dir",
            ann.to_str().unwrap(),
            "--top-ratio",
            ratio,
            "--output",
            out.to_str().unwrap(),
            "--report",
            rep.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let got = std::fs::read_to_string(&out).unwrap();
        let want: String = written
            .iter()
            .map(|&i: &usize| format!("{}\n", expected[i]))
            .collect();
        assert_eq!(got, want, "ratio {ratio}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
        assert_eq!(report["sources"][0]["ranked"], 10);
        assert_eq!(report["sources"][0]["chosen"], chosen.len());
        assert_eq!(report["sources"][0]["written"], written.len());
        let dropped: u64 = report["totals"]["dropped"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(dropped as usize, chosen.len() - written.len());

        // The ids list names the written rollouts only (a dropped slot is never back-filled).
        let o = mprm(&[
            "select",
            "bis",
            "--annotations-dir",
            ann.to_str().unwrap(),
            "--top-ratio",
            ratio,
            "--ids",
            ids.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0);
        let lines: Vec<u64> = read_ids(&ids)
            .unwrap()
            .iter()
            .map(|i| i.line.unwrap())
            .collect();
        let want_lines: Vec<u64> = chosen
            .iter()
            .copied()
            .filter(|l| ![8, 11].contains(l))
            .collect();
        assert_eq!(lines, want_lines);
    }
}

#[test]
fn stable_ties_keep_file_order() {
    // 10 rollouts all scoring α (all-negative or perfect), one mixed in the middle: the top 3 are
    // the mixed one and then the two earliest lines.
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for i in 0..10 {
        let s = match i {
            6 => &[("m", "0.5"), ("n", "0.0")][..],
            _ if i % 2 == 0 => &[("a", "0.0"), ("b", "0.0")][..],
            _ => &[("a", "1.0"), ("b", "1.0")][..],
        };
        lines.push(record(Some("i.png"), &format!("q{i}"), s));
    }
    write(dir.path(), "ann/t.jsonl", lines.join("\n"));
    let report = select_annotations(
        &dir.path().join("ann"),
        &Baseline::Bis { alpha: 0.05 },
        0.3,
        Strictness::Lenient,
        &SelectOutputs {
            ids: Some(dir.path().join("ids.tsv")),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.totals.chosen, 3);
    let lines: Vec<u64> = read_ids(dir.path().join("ids.tsv"))
        .unwrap()
        .iter()
        .map(|i| i.line.unwrap())
        .collect();
    assert_eq!(lines, vec![0, 1, 6]);
}

#[test]
fn quota_uses_f64_truncation_end_to_end() {
    // m = 180, ρ = 0.35: 180 × 0.35 = 62.99999999999999 in f64, so 62 rollouts, not 63.
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..180)
        .map(|i| {
            record(
                Some("i.png"),
                &format!("q{i}"),
                &[("s", "0.5"), ("t", "0.0")],
            )
        })
        .collect();
    write(dir.path(), "ann/q.jsonl", lines.join("\n"));
    let r = select_annotations(
        &dir.path().join("ann"),
        &Baseline::Random { seed: 1 },
        0.35,
        Strictness::Lenient,
        &SelectOutputs {
            report: Some(dir.path().join("r.json")),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.totals.chosen, 62);
}

#[test]
fn example_corpus_is_byte_identical_to_the_python_reference() {
    let Some(py) = python() else { return };
    let ann = repo().join("experiments/example-corpus/annotations");
    let dir = tempfile::tempdir().unwrap();
    for (alpha, ratio) in [
        ("0.05", "0.25"),
        ("0.2", "0.1"),
        ("0.05", "0.5"),
        ("0.08", "0.35"),
        ("0.05", "1.0"),
    ] {
        let ours = dir.path().join("ours.jsonl");
        let theirs = dir.path().join("theirs.jsonl");
        let o = std::process::Command::new(&py)
            .args([
                repo().join("benches/bis_reference.py").to_str().unwrap(),
                "--annotations-dir",
                ann.to_str().unwrap(),
            ])
            .args([
                "--alpha",
                alpha,
                "--top-ratio",
                ratio,
                "--output",
                theirs.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = mprm(&[
            "select",
            "bis",
            "--annotations-dir",
            ann.to_str().unwrap(),
            "--alpha",
            alpha,
            "--top-ratio",
            ratio,
            "--output",
            ours.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let (a, b) = (
            std::fs::read(&ours).unwrap(),
            std::fs::read(&theirs).unwrap(),
        );
        assert!(!a.is_empty());
        assert!(a == b, "α = {alpha}, ρ = {ratio}: outputs differ");
    }
}

#[test]
fn every_method_runs_and_is_deterministic() {
    let ann = repo().join("experiments/example-corpus/annotations");
    let dir = tempfile::tempdir().unwrap();
    for method in BASELINE_NAMES {
        let run = |name: &str| {
            let out = dir.path().join(name);
            let o = mprm(&[
                "select",
                method,
                "--annotations-dir",
                ann.to_str().unwrap(),
                "--seed",
                "7",
                "--ids",
                out.to_str().unwrap(),
            ]);
            assert_eq!(code(&o), 0, "{method}: {}", stderr(&o));
            std::fs::read(out).unwrap()
        };
        assert_eq!(run("a.tsv"), run("b.tsv"), "{method}");
    }
}

#[test]
fn bundle_and_raw_reader_select_identically() {
    use rand::{RngExt, SeedableRng};
    // A clean corpus (k/16 scores, many ties) written as raw files and as a bundle.
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for name in ["b_src", "a_src", "c_src"] {
        let lines: Vec<String> = (0..120)
            .map(|i| {
                let n = rng.random_range(1..=6);
                let scores: Vec<String> = (0..n)
                    .map(|_| {
                        format!(
                            "{}",
                            [0, 0, 1, 8, 15, 16][rng.random_range(0..6)] as f64 / 16.0
                        )
                    })
                    .collect();
                let steps: Vec<(&str, &str)> =
                    scores.iter().map(|s| ("step text", s.as_str())).collect();
                record(Some("i.png"), &format!("q{i}"), &steps)
            })
            .collect();
        write(dir.path(), &format!("ann/{name}.jsonl"), lines.join("\n"));
    }
    let ann = dir.path().join("ann");
    let (corpus, _) = read_corpus(&ann, Strictness::Strict).unwrap();
    let mut offsets = vec![0];
    let (mut scores, mut source, mut line) = (Vec::new(), Vec::new(), Vec::new());
    for (s, src) in corpus.sources.iter().enumerate() {
        for r in &src.rollouts {
            scores.extend(r.steps.iter().map(|st| st.score as f32));
            offsets.push(scores.len());
            source.push(s as u32);
            line.push(r.line);
        }
    }
    let n = scores.len();
    let bundle = FeatureBundle::from_parts(BundleParts {
        features: FeatureData::F32(vec![0.0; n]),
        dim: 1,
        offsets,
        mc_scores: scores,
        source,
        line: Some(line),
        labels: None,
        teacher: None,
        meta: BundleMeta {
            sources: corpus.sources.iter().map(|s| s.name.clone()).collect(),
            ..Default::default()
        },
    })
    .unwrap();
    for method in BASELINE_NAMES {
        let sel = Baseline::from_name(method, 0.05, 3).unwrap();
        let raw_ids = dir.path().join("raw.tsv");
        let bun_ids = dir.path().join("bundle.tsv");
        select_annotations(
            &ann,
            &sel,
            0.25,
            Strictness::Strict,
            &SelectOutputs {
                ids: Some(raw_ids.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        select_bundle(
            &bundle,
            &sel,
            0.25,
            &SelectOutputs {
                ids: Some(bun_ids.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        let raw = read_ids(&raw_ids).unwrap();
        assert_eq!(raw.len(), 90, "{method}");
        assert_eq!(raw, read_ids(&bun_ids).unwrap(), "{method}");
    }
}

mod bad_input {
    use super::*;

    fn select_strict_and_lenient(
        dir: &std::path::Path,
    ) -> (std::process::Output, std::process::Output) {
        let ann = dir.join("ann");
        let out = dir.join("o.jsonl");
        let lenient = mprm(&[
            "select",
            "bis",
            "--annotations-dir",
            ann.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        let strict = mprm(&[
            "select",
            "bis",
            "--strict",
            "--annotations-dir",
            ann.to_str().unwrap(),
            "--output",
            dir.join("s.jsonl").to_str().unwrap(),
        ]);
        (lenient, strict)
    }

    /// Each bad line: lenient select counts it and succeeds; strict select and strict stats fail
    /// naming `file:2`; nothing panics; a failed run leaves no output behind.
    #[test]
    fn each_bad_line_is_counted_or_reported_with_its_location() {
        let good = record(Some("i.png"), "q", &[("s", "0.5"), ("t", "0.0")]);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("invalid json", b"{\"image\": ".to_vec(), "invalid JSON"),
            ("non-object", b"[1, 2, 3]".to_vec(), "not an object"),
            (
                "steps not a list",
                b"{\"image\": \"i\", \"steps_with_score\": \"abc\"}".to_vec(),
                "not a list",
            ),
            (
                "step not an object",
                b"{\"image\": \"i\", \"steps_with_score\": [3]}".to_vec(),
                "not an object",
            ),
            (
                "string score",
                record(Some("i"), "q", &[("s", "\"0.5\"")]).into_bytes(),
                "score is a string",
            ),
            (
                "NaN score",
                record(Some("i"), "q", &[("s", "NaN")]).into_bytes(),
                "not a number in [0, 1]",
            ),
            (
                "out of range",
                record(Some("i"), "q", &[("s", "1.5")]).into_bytes(),
                "score 1.5 is out of range [0, 1]",
            ),
            (
                "non-utf8",
                b"{\"image\": \"\xff\xfe\", \"steps_with_score\": []}".to_vec(),
                "invalid UTF-8",
            ),
        ];
        for (name, bad, why) in cases {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = good.clone().into_bytes();
            bytes.push(b'\n');
            bytes.extend_from_slice(&bad);
            bytes.push(b'\n');
            bytes.extend_from_slice(good.as_bytes());
            let file = write(dir.path(), "ann/src.jsonl", &bytes);
            let (lenient, strict) = select_strict_and_lenient(dir.path());
            assert_eq!(code(&lenient), 0, "{name}: {}", stderr(&lenient));
            assert_eq!(code(&strict), 2, "{name}: {}", stderr(&strict));
            let loc = format!("{}:2:", file.display());
            assert!(
                stderr(&strict).contains(&loc),
                "{name}: {}",
                stderr(&strict)
            );
            assert!(stderr(&strict).contains(why), "{name}: {}", stderr(&strict));
            assert!(
                !dir.path().join("s.jsonl").exists(),
                "{name}: a failed run left an output"
            );
            let stats = mprm(&["stats", file.to_str().unwrap()]);
            assert_eq!(code(&stats), 2, "{name}");
            assert!(stderr(&stats).contains(&loc), "{name}: {}", stderr(&stats));
            let stats = mprm(&["stats", "--lenient", file.to_str().unwrap()]);
            assert_eq!(code(&stats), 0, "{name}: {}", stderr(&stats));
        }
    }

    #[test]
    fn lenient_counts_skips_by_reason() {
        let dir = tempfile::tempdir().unwrap();
        let good = record(Some("i.png"), "q", &[("s", "0.5"), ("t", "0.0")]);
        let text = format!("{good}\n[1]\n{{bad\n{good}\n{{\"steps_with_score\": 5}}\n");
        write(dir.path(), "ann/a.jsonl", text);
        let r = select_annotations(
            &dir.path().join("ann"),
            &Baseline::Bis { alpha: 0.05 },
            0.5,
            Strictness::Lenient,
            &SelectOutputs {
                report: Some(dir.path().join("r.json")),
                ..Default::default()
            },
        )
        .unwrap();
        let lines = r.totals.lines.unwrap();
        assert_eq!(lines.records, 2);
        assert_eq!(lines.n_skipped(), 3);
        let s = r.sources[0].lines.as_ref().unwrap();
        assert_eq!(s.skipped.len(), 3);
    }

    #[test]
    fn empty_file_empty_dir_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        // An empty file: nothing to rank, an empty output, no error.
        write(dir.path(), "ann/empty.jsonl", "");
        let o = mprm(&[
            "select",
            "bis",
            "--annotations-dir",
            dir.path().join("ann").to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(std::fs::read(&out).unwrap(), b"");
        // An empty folder and a missing folder: errors, and an existing output stays untouched.
        std::fs::write(&out, "keep me").unwrap();
        std::fs::create_dir_all(dir.path().join("none")).unwrap();
        for d in ["none", "missing"] {
            let o = mprm(&[
                "select",
                "bis",
                "--annotations-dir",
                dir.path().join(d).to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ]);
            assert_eq!(code(&o), 2, "{d}");
            assert!(stderr(&o).contains(d), "{d}: {}", stderr(&o));
            assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
            let o = mprm(&["stats", dir.path().join(d).to_str().unwrap()]);
            assert_eq!(code(&o), 2, "{d}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            3,
            "temporary files left behind: {leftovers:?}"
        );
    }
}

mod properties {
    use mprm::data::label_stats::LabelStats;
    use mprm::select::bis::bis;
    use mprm::select::{choose_top, quota};
    use proptest::prelude::*;

    fn scores() -> impl Strategy<Value = Vec<f64>> {
        proptest::collection::vec((0u32..=16).prop_map(|k| k as f64 / 16.0), 1..=12)
    }

    proptest! {
        #[test]
        fn bis_is_bounded(s in scores(), alpha in 0.0f64..0.5) {
            let st = LabelStats::of(&s);
            let b = bis(&s, alpha);
            prop_assert!(b >= alpha * st.reliability - 1e-15);
            prop_assert!(b <= 0.25 + alpha + 1e-15);
            prop_assert!(b >= alpha / 16.0 - 1e-15);
            if !st.is_mixed() {
                prop_assert!(b <= alpha + 1e-15);
            }
        }

        #[test]
        fn selection_quota_order_and_determinism(keys in proptest::collection::vec(0u8..5, 1..200), ratio in 0.01f64..=1.0) {
            let keys: Vec<f64> = keys.into_iter().map(f64::from).collect();
            let k = quota(keys.len(), ratio);
            let chosen = choose_top(&keys, k).unwrap();
            prop_assert_eq!(chosen.len(), k.min(keys.len()));
            prop_assert_eq!(k, ((keys.len() as f64 * ratio) as usize).max(1));
            prop_assert!(chosen.windows(2).all(|w| w[0] < w[1]));
            let min_in = chosen.iter().map(|&i| keys[i]).fold(f64::INFINITY, f64::min);
            for i in 0..keys.len() {
                if !chosen.contains(&i) {
                    prop_assert!(keys[i] <= min_in);
                    // A tie at the boundary is resolved for the earlier line.
                    if keys[i] == min_in {
                        prop_assert!(chosen.iter().filter(|&&c| keys[c] == min_in).all(|&c| c < i));
                    }
                }
            }
            prop_assert_eq!(choose_top(&keys, k).unwrap(), chosen);
        }
    }
}
