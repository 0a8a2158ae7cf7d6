//! Data formats: conversion, statistics, PRM lines, and the Python-exact serialiser.

mod common;

use common::{code, mprm, python, record, repo, stderr, stdout, write};
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
    assert_eq!(v["sources"][0][0], "s");
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
