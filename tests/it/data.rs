//! Data formats: conversion, statistics, PRM lines, and the Python-exact serialiser.

use crate::common::{code, mprm, python, record, repo, stderr, stdout, write};
use mprm::data::prm_line::read_prm_line;
use mprm::data::pyjson::write::{f64_repr, write_str};
use mprm::data::raw::{Strictness, read_corpus};
use mprm::data::stats::corpus_stats;

#[test]
fn convert_hard_soft_and_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        record(
            Some("a.png"),
            " q0 ",
            &[
                ("s0", "0.0625"),
                ("  ", "1.0"),
                ("s2", "0.125"),
                ("s3", "0"),
            ],
        ),
        record(None, "q1", &[("s", "1.0")]),
        record(Some("c.png"), "q2", &[("s", "null")]),
    ];
    write(dir.path(), "ann/x.jsonl", lines.join("\n"));
    let ann = dir.path().join("ann");
    let run = |extra: &[&str]| {
        let out = dir.path().join("out.jsonl");
        let mut args = vec![
            "convert",
            "--lenient",
            "--annotations-dir",
            ann.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = mprm(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        std::fs::read_to_string(out).unwrap()
    };
    let head = r#"{"image": "a.png", "conversations": [{"from": "human", "value": "Question: q0\nProcess: s0<prm>\n\ns2<prm>\n\ns3<prm>"}, {"from": "gpt", "value": "#;
    assert_eq!(run(&[]), format!("{head}[1.0, 1.0, 0.0]}}]}}\n"));
    assert_eq!(
        run(&["--labels", "soft"]),
        format!("{head}[0.0625, 0.125, 0.0]}}]}}\n")
    );
    // τ = 1/16: a step needs at least two successful continuations.
    assert_eq!(
        run(&["--threshold", "0.0625"]),
        format!("{head}[0.0, 1.0, 0.0]}}]}}\n")
    );
}

#[test]
fn convert_strict_stops_lenient_counts() {
    let dir = tempfile::tempdir().unwrap();
    let good = record(Some("a.png"), "q", &[("s", "0.5")]);
    let bad = record(Some("a.png"), "q", &[("s", "\"n/a\"")]);
    let file = write(
        dir.path(),
        "ann/x.jsonl",
        format!("{good}\n{bad}\n{good}\n"),
    );
    let out = dir.path().join("out.jsonl");
    let base = [
        "convert",
        "--annotations-dir",
        dir.path().join("ann").to_str().unwrap().to_owned().leak(),
        "--output",
        out.to_str().unwrap().to_owned().leak(),
    ];
    let o = mprm(&base);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains(&format!("{}:2:", file.display())),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    let mut lenient = base.to_vec();
    lenient.push("--lenient");
    let o = mprm(&lenient);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
}

#[test]
fn stats_of_a_hand_made_file() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        record(
            Some("i"),
            "q",
            &[("one two three", "1.0"), ("four five", "0.5")],
        ),
        record(Some("i"), "q", &[("six", "0.0"), ("seven eight", "0.0")]),
        record(
            Some("i"),
            "q",
            &[("a b c d", "0.25"), ("e", "0.0"), ("f g", "0.0625")],
        ),
    ];
    let file = write(dir.path(), "ann/s.jsonl", lines.join("\n"));
    let r = corpus_stats(&file, Strictness::Strict).unwrap();
    let t = &r.total;
    assert_eq!((t.rollouts, t.steps, t.error_steps), (3, 7, 3));
    assert_eq!((t.mixed, t.all_positive, t.all_negative), (1, 1, 1));
    assert_eq!(t.words_per_step(), Some(15.0 / 7.0));
    assert!((t.mean_mc() - 1.8125 / 7.0).abs() < 1e-15);
    let o = mprm(&["stats", "--json", dir.path().join("ann").to_str().unwrap()]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["total"]["mixed"], 1);
    assert_eq!(v["sources"][0]["source"], "s");
    let o = mprm(&["stats", dir.path().join("ann").to_str().unwrap()]);
    assert!(
        stdout(&o).contains("| Error-step ratio | 42.86% |"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn example_corpus_reads_and_its_selection_reads_back() {
    let ann = repo().join("experiments/example-corpus/annotations");
    let (corpus, counts) = read_corpus(&ann, Strictness::Lenient).unwrap();
    assert_eq!(corpus.sources.len(), 4);
    assert_eq!(corpus.sources[0].name, "chartqa");
    assert_eq!(corpus.n_rollouts(), 341);
    assert_eq!(counts.iter().map(|c| c.n_skipped()).sum::<u64>(), 10);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sel.jsonl");
    let o = mprm(&[
        "select",
        "bis",
        "--annotations-dir",
        ann.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0);
    let text = std::fs::read_to_string(&out).unwrap();
    for (i, line) in text.lines().enumerate() {
        let rec = read_prm_line(line, &format!("line {i}")).unwrap();
        assert!(rec.labels.iter().all(|&l| l == 0.0 || l == 1.0));
        assert!(!rec.steps.is_empty());
    }
}

#[test]
fn serialiser_matches_python_json_dumps() {
    let Some(py) = python() else { return };
    let strings = [
        "plain",
        "quote \" backslash \\ slash /",
        "tab\tnewline\ncr\rbs\u{8}ff\u{c}",
        "\u{0}\u{1}\u{1f}\u{7f}",
        "é ∠ 如图 😀",
        "\u{2028}\u{2029}\u{85}\u{a0}",
        "\u{feff}bom",
        "",
    ];
    let floats = [
        0.0,
        1.0,
        0.0625,
        0.1,
        1e-5,
        1.5e-7,
        1e16,
        1e15,
        123456789.123,
        5e-324,
        1.7976931348623157e308,
        -2.5,
    ];
    let script = "import json,sys\nfor s in json.loads(sys.argv[1]): print(json.dumps(s, ensure_ascii=False))\nfor f in json.loads(sys.argv[2]): print(json.dumps(f))";
    let o = std::process::Command::new(py)
        .args([
            "-c",
            script,
            &serde_json::to_string(&strings).unwrap(),
            &serde_json::to_string(&floats).unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let python_lines: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .split('\n')
        .map(str::to_string)
        .collect();
    let mut ours = Vec::new();
    for s in strings {
        let mut out = String::new();
        write_str(&mut out, s);
        ours.push(out);
    }
    ours.extend(floats.iter().map(|&f| f64_repr(f)));
    // Python's print splits on "\n" only; U+2028 inside a line is kept raw by both.
    assert_eq!(ours, python_lines[..ours.len()].to_vec());
}

/// A bench of three records with 4, 3 and 4 steps.
fn small_bench(dir: &std::path::Path) -> std::path::PathBuf {
    let rec = |source: &str, labels: &str, n: usize| {
        let steps: Vec<String> = (0..n).map(|i| format!("\"s{i}\"")).collect();
        format!(
            "{{\"image\": [\"x.png\"], \"question\": \"q\", \"answer\": \"a\", \"response\": {{\"steps\": [{}], \"process_correctness\": {labels}}}, \"policy_model\": \"m\", \"data_source\": \"{source}\"}}\n",
            steps.join(", ")
        )
    };
    write(
        dir,
        "test.jsonl",
        rec("DynaMath", "[1, 1, -1, 0]", 4)
            + &rec("DynaMath", "[1, -1, -1]", 3)
            + &rec("WeMath", "[1, 0, -1, 1]", 4),
    )
}

#[test]
fn eval_scores_refuses_step_counts_that_differ_unless_lenient() {
    let dir = tempfile::tempdir().unwrap();
    let bench = small_bench(dir.path());
    let b = bench.to_str().unwrap();
    // Line 3 (record index 1, after a blank line) has 2 scores for 3 steps.
    let scores = write(
        dir.path(),
        "scores.jsonl",
        "[0.9, 0.6, 0.3, 0.1]\n\n[0.5, 0.25]\n[0.8, 0.7, 0.65, 0.4]\n",
    );
    let eval_scores = |scores: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "eval-scores",
            "--bench",
            b,
            "--scores",
            scores.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        mprm(&args)
    };
    let o = eval_scores(&scores, &["--dev-fraction", "0"]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert_eq!(stdout(&o), "", "no table before the error");
    assert!(
        err.contains(&format!(
            "{}: line 3 (record index 1): expected 3 step scores",
            scores.display()
        )) && err.contains("found 2")
            && err.contains(&format!("{b}:2"))
            && err.contains("1 of 3 records"),
        "{err}"
    );

    // Empty score lists everywhere: the first record is named.
    let empty = write(dir.path(), "empty.jsonl", "[]\n[]\n[]\n");
    let o = eval_scores(&empty, &[]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("line 1 (record index 0): expected 4 step scores")
            && err.contains("found 0")
            && err.contains("3 of 3 records"),
        "{err}"
    );
    assert_eq!(stdout(&o), "");

    // The reference's whole-output JSON names the element.
    let whole = write(
        dir.path(),
        "whole.json",
        "[{\"prm_scores\": [[0.9, 0.6, 0.3, 0.1]]}, {\"prm_scores\": [[0.5, 0.2, 0.1]]}, {\"prm_scores\": [[0.1]]}]",
    );
    let o = eval_scores(&whole, &[]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("element 2 (record index 2): expected 4 step scores")
            && err.contains("found 1"),
        "{err}"
    );

    // --lenient evaluates, with the note before the tables.
    let o = eval_scores(&scores, &["--dev-fraction", "0", "--lenient"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        out.starts_with(
            "note: 1 records have a different number of scores than labels (paired up to the shorter)\n"
        ),
        "{out}"
    );
    assert!(out.contains("test ORACLE"), "{out}");

    // A different number of entries is an error even with --lenient, naming both files.
    let short = write(dir.path(), "short.jsonl", "[0.9]\n");
    let o = eval_scores(&short, &["--lenient"]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}: 1 score entries for 3 bench records in {b}",
            short.display()
        )),
        "{err}"
    );
    assert_eq!(stdout(&o), "");
}

#[test]
fn bad_inputs_get_clear_messages_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ann = d.join("ann");
    write(
        d,
        "ann/a.jsonl",
        record(Some("a.png"), "q", &[("s", "0.5"), ("t", "0.0")]) + "\n",
    );
    let ann_s = ann.to_str().unwrap();
    let ids = d.join("ids.tsv");
    let ids_s = ids.to_str().unwrap();

    // A missing file's reason is printed once.
    let missing = d.join("missing");
    let o = mprm(&["stats", missing.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.contains("caused by"), "{err}");

    // --alpha -1 reaches the range check instead of clap's `-- -1` hint.
    let o = mprm(&[
        "select",
        "bis",
        "--annotations-dir",
        ann_s,
        "--ids",
        ids_s,
        "--alpha",
        "-1",
    ]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("--alpha -1: BIS's smoothing α must be a finite number ≥ 0")
            && !err.contains("tip:"),
        "{err}"
    );
    assert!(!ids.exists());

    // An unknown selector lists both groups.
    let o = mprm(&["select", "nope", "--annotations-dir", ann_s, "--ids", ids_s]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("score-based one (bis, random, mixed, reliable, low-mc, mixture, top-mc)")
            && err.contains(
                "gradient-based one (grand, el2n, less, tracin, influence, oracle, bis-tracin, \
                 gradnorm-teacher, gradnorm-ckpt; these need --bundle)"
            ),
        "{err}"
    );

    // The built-in default annotations folder, when missing, is named as the default.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mprm"))
        .args(["select", "bis", "--ids", ids_s])
        .current_dir(d)
        .env("MPRM_NO_PROGRESS", "1")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("no --annotations-dir given, and the default annotations folder datasets/VisualPRM400K-v1.1-raw/annotations does not exist")
            && err.contains("--annotations-dir DIR")
            && err.contains("mprm synth --out DIR"),
        "{err}"
    );

    // A directory named like an annotation file is an error, not a silently missing source.
    std::fs::create_dir(ann.join("x.jsonl")).unwrap();
    let o = mprm(&["select", "bis", "--annotations-dir", ann_s, "--ids", ids_s]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains(&format!(
            "{} is a directory, not an annotation file",
            ann.join("x.jsonl").display()
        )),
        "{err}"
    );
    assert!(!ids.exists());
    std::fs::remove_dir(ann.join("x.jsonl")).unwrap();

    // gradnorm refuses an unknown table format before opening the bundle.
    let o = mprm(&[
        "gradnorm",
        "--bundle",
        d.join("no-such.safetensors").to_str().unwrap(),
        "--out",
        d.join("scores.txt").to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(
        err.contains("scores.txt: use a .csv, .parquet or .safetensors file")
            && !err.contains("no-such"),
        "{err}"
    );
}

#[test]
fn score_messages_say_what_the_value_is() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let huge = format!("1{}", "0".repeat(400));
    let cases = [
        (
            huge.as_str(),
            "score 10000000000000000000…00000000 (401 characters) is out of range: an integer too large for a 64-bit float",
        ),
        (
            "123456789012345678901234567890",
            "score 123456789012345678901234567890 is out of range [0, 1]",
        ),
        ("1e400", "score +inf is out of range: infinite"),
    ];
    for (i, (score, want)) in cases.iter().enumerate() {
        let ann = d.join(format!("ann{i}"));
        write(
            &ann,
            "a.jsonl",
            record(Some("a.png"), "q", &[("s", score)]) + "\n",
        );
        let o = mprm(&[
            "select",
            "bis",
            "--annotations-dir",
            ann.to_str().unwrap(),
            "--ids",
            d.join(format!("ids{i}.tsv")).to_str().unwrap(),
            "--strict",
        ]);
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "{err}");
        assert!(
            err.contains("a.jsonl:1: step 0: ") && err.contains(want),
            "{err}"
        );
        assert!(!err.contains("NaN"), "{err}");
    }

    // +inf counts positive, NaN and -inf negative: the summary says which is which.
    let ann = d.join("inf");
    write(
        &ann,
        "a.jsonl",
        record(Some("a.png"), "q", &[("s", "Infinity"), ("t", "0.5")])
            + "\n"
            + &record(
                Some("b.png"),
                "q",
                &[("s", "-Infinity"), ("t", "NaN"), ("u", "1e400")],
            )
            + "\n",
    );
    let o = mprm(&[
        "select",
        "bis",
        "--annotations-dir",
        ann.to_str().unwrap(),
        "--ids",
        d.join("inf.tsv").to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(
        err.contains("\n  NaN or -inf scores (counted negative): 2\n"),
        "{err}"
    );
    assert!(
        err.contains("\n  +inf scores (counted positive): 2"),
        "{err}"
    );
    assert!(!err.contains("NaN or infinite"), "{err}");
}
