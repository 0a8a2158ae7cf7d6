//! Data-loss guarantees: no command overwrites its input, multi-file outputs appear whole (even on
//! a full disk), incomplete folders are refused, and files from different corpora are not joined.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{code, mprm, stderr};
use proptest::prelude::*;

/// Every regular file under `dir` (hidden ones included) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                walk(root, &p, out);
            } else if meta.is_file() {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn synth(out: &Path, seed: u64) -> Output {
    mprm(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--scale",
        "0.005",
        "--dim",
        "16",
        "--seed",
        &seed.to_string(),
        "--bench-questions",
        "40",
    ])
}

fn ok(o: &Output) {
    assert_eq!(code(o), 0, "stderr: {}", stderr(o));
}

/// A small folder of two annotation files copied from a synthetic corpus.
fn two_file_corpus(dir: &Path) -> PathBuf {
    let sim = dir.join("sim");
    ok(&synth(&sim, 3));
    let ann = dir.join("d");
    std::fs::create_dir_all(&ann).unwrap();
    for f in ["mapqa-suv.jsonl", "vqav2.jsonl"] {
        std::fs::copy(sim.join("annotations").join(f), ann.join(f)).unwrap();
    }
    ann
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_survives() {
    let dir = tempfile::tempdir().unwrap();
    let ann = two_file_corpus(dir.path());
    let input = ann.join("vqav2.jsonl");
    std::os::unix::fs::symlink(&input, dir.path().join("link.jsonl")).unwrap();
    std::fs::hard_link(&input, dir.path().join("hard.jsonl")).unwrap();
    let before = std::fs::read(&input).unwrap();
    let sneaky = [
        input.clone(),
        dir.path().join("link.jsonl"),
        dir.path().join("hard.jsonl"),
        ann.join("../d/vqav2.jsonl"),
    ];
    for target in &sneaky {
        for flag in ["--output", "--ids", "--report"] {
            let o = mprm(&[
                "select",
                "bis",
                "--annotations-dir",
                s(&ann),
                flag,
                s(target),
            ]);
            assert_eq!(code(&o), 2, "{flag} {}: {}", target.display(), stderr(&o));
            let e = stderr(&o);
            assert!(
                e.contains("is also an input") && e.contains("--annotations-dir"),
                "{e}"
            );
        }
        let o = mprm(&[
            "convert",
            "--annotations-dir",
            s(&ann),
            "--output",
            s(target),
        ]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert_eq!(std::fs::read(&input).unwrap(), before);
    }
    // The bundle is an input too.
    let bundle = dir.path().join("sim/features.safetensors");
    let b_before = std::fs::read(&bundle).unwrap();
    let o = mprm(&["select", "bis", "--bundle", s(&bundle), "--ids", s(&bundle)]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(std::fs::read(&bundle).unwrap(), b_before);
}

#[test]
fn one_path_for_two_outputs_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let ann = two_file_corpus(dir.path());
    let x = dir.path().join("x");
    // An existing file at X must come through untouched, and a new X must not appear.
    for existing in [false, true] {
        if existing {
            std::fs::write(&x, b"keep me").unwrap();
        }
        for (a, b) in [
            ("--output", "--ids"),
            ("--report", "--ids"),
            ("--output", "--report"),
        ] {
            let o = mprm(&[
                "select",
                "bis",
                "--annotations-dir",
                s(&ann),
                a,
                s(&x),
                b,
                s(&x),
            ]);
            assert_eq!(code(&o), 2, "{a} {b}: {}", stderr(&o));
            assert!(stderr(&o).contains("are the same file"), "{}", stderr(&o));
            if existing {
                assert_eq!(std::fs::read(&x).unwrap(), b"keep me");
            } else {
                assert!(!x.exists());
            }
        }
    }
    // Spelled two ways, not existing yet.
    let o = mprm(&[
        "select",
        "bis",
        "--annotations-dir",
        s(&ann),
        "--output",
        s(&dir.path().join("y.jsonl")),
        "--report",
        s(&dir.path().join("d/../y.jsonl")),
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(!dir.path().join("y.jsonl").exists());
}

#[test]
fn synth_refuses_to_replace_a_folder_that_is_not_a_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), b"precious").unwrap();
    let o = synth(&mine, 1);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("not an earlier `mprm synth` output"));
    assert_eq!(snapshot(&mine).len(), 1);
    // An earlier corpus is replaced whole; nothing of the old one lingers.
    let sim = dir.path().join("sim");
    ok(&synth(&sim, 1));
    std::fs::write(sim.join("stray.txt"), b"x").unwrap();
    ok(&synth(&sim, 2));
    assert!(!sim.join("stray.txt").exists());
}

/// Runs `args` with writes failing ("No space left on device") after `limit` bytes.
fn mprm_with_full_disk(args: &[&str], limit: u64) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mprm"))
        .args(args)
        .env("MPRM_NO_PROGRESS", "1")
        .env("MPRM_FAULT_ENOSPC_AFTER", limit.to_string())
        .output()
        .unwrap()
}

fn no_temporaries(dir: &Path) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".old") || n.ends_with(".parts"))
        .collect();
    assert!(
        left.is_empty(),
        "temporaries left in {}: {left:?}",
        dir.display()
    );
}

#[test]
fn synth_on_a_full_disk_leaves_the_previous_corpus_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    ok(&synth(&sim, 1));
    let before = snapshot(&sim);
    // Fail early (annotations), in the middle (features) and late (bench, manifest).
    for limit in [1_000u64, 300_000, 3_000_000, 9_000_000] {
        let o = mprm_with_full_disk(
            &[
                "synth",
                "--out",
                s(&sim),
                "--scale",
                "0.005",
                "--dim",
                "16",
                "--seed",
                "2",
                "--bench-questions",
                "40",
            ],
            limit,
        );
        assert_eq!(code(&o), 2, "limit {limit}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("No space left on device"),
            "{}",
            stderr(&o)
        );
        assert!(
            snapshot(&sim) == before,
            "limit {limit}: the old corpus changed"
        );
        no_temporaries(dir.path());
    }
    // Without the fault the same command goes through and changes the corpus.
    ok(&synth(&sim, 2));
    assert!(snapshot(&sim) != before);
}

/// `select bis` of a corpus at `ratio`, writing `sel.jsonl`, `sel.ids.tsv` and `sel.json` in `out`.
fn select_all_outputs(sim: &Path, out: &Path, ratio: &str) -> Vec<String> {
    [
        "select",
        "bis",
        "--annotations-dir",
        s(&sim.join("annotations")),
        "--top-ratio",
        ratio,
        "--output",
        s(&out.join("sel.jsonl")),
        "--ids",
        s(&out.join("sel.ids.tsv")),
        "--report",
        s(&out.join("sel.json")),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn select_on_a_full_disk_leaves_all_previous_outputs_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    ok(&synth(&sim, 1));
    let out = dir.path().join("out");
    let args = |ratio: &str| select_all_outputs(&sim, &out, ratio);
    let a = args("0.25");
    ok(&mprm(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    let before = snapshot(&out);
    assert_eq!(before.len(), 3);
    let b = args("0.5");
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    for limit in [10_000u64, 400_000, 1_200_000] {
        let o = mprm_with_full_disk(&b, limit);
        assert_eq!(code(&o), 2, "limit {limit}: {}", stderr(&o));
        let e = stderr(&o);
        // The output is blamed, never the input being read when the disk filled up.
        assert!(
            e.contains("No space left on device") && e.contains(s(&out)),
            "{e}"
        );
        assert!(
            snapshot(&out) == before,
            "limit {limit}: an old output changed"
        );
        no_temporaries(&out);
    }
    ok(&mprm(&b));
    let after = snapshot(&out);
    assert!(
        before.iter().all(|(k, v)| after[k] != *v),
        "every output is new"
    );
}

/// A size-limited tmpfs for a real full disk; `None` where mounting is not allowed.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", s(at)])
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

#[test]
fn synth_and_select_on_a_real_full_filesystem_keep_the_old_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("small"), "12m") else {
        eprintln!("note: cannot mount a tmpfs here; the injected-fault tests cover this case");
        return;
    };
    let sim = fs.0.join("sim");
    ok(&synth(&sim, 1)); // about 10 MB: fits once, not twice
    let before = snapshot(&sim);
    let o = synth(&sim, 2);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("No space left on device"),
        "{}",
        stderr(&o)
    );
    assert!(snapshot(&sim) == before);
    no_temporaries(&fs.0);
}

#[test]
fn readers_refuse_a_folder_left_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    ok(&synth(&sim, 1));
    // What a killed `synth` leaves: its marked temporary folder.
    let left = dir.path().join(".sim.4194000.tmp");
    std::fs::create_dir(&left).unwrap();
    for (k, v) in snapshot(&sim) {
        crate::common::write(&left, k.to_str().unwrap(), v);
    }
    crate::common::write(
        &left,
        ".mprm-incomplete",
        "being written by `mprm synth` (pid 4194000) for sim",
    );
    for args in [
        vec!["select", "bis", "--annotations-dir", "ANN", "--ids", "OUT"],
        vec!["stats", "ANN"],
        vec!["bundle-info", "BUNDLE"],
        vec!["select", "random", "--bundle", "BUNDLE", "--ids", "OUT"],
    ] {
        let args: Vec<String> = args
            .iter()
            .map(|a| match *a {
                "ANN" => s(&left.join("annotations")).to_string(),
                "BUNDLE" => s(&left.join("features.safetensors")).to_string(),
                "OUT" => s(&dir.path().join("o.tsv")).to_string(),
                a => a.to_string(),
            })
            .collect();
        let o = mprm(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("incomplete") && stderr(&o).contains("pid 4194000"),
            "{}",
            stderr(&o)
        );
    }
    // The next synth of the same destination removes the dead writer's leftovers.
    ok(&synth(&sim, 2));
    assert!(!left.exists());
}

/// Rewrites a safetensors file's metadata with `edit` (keeps the tensors).
fn edit_metadata(path: &Path, edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header["__metadata__"].as_object_mut().unwrap());
    let mut h = serde_json::to_vec(&header).unwrap();
    while !(8 + h.len()).is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn files_from_different_corpora_are_not_joined() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&synth(&a, 1));
    ok(&synth(&b, 2));
    let ids = dir.path().join("g.ids.tsv");
    let join = |bundle: &Path, ann: &Path| {
        mprm(&[
            "select",
            "el2n",
            "--bundle",
            s(bundle),
            "--annotations-dir",
            s(ann),
            "--ids",
            s(&ids),
            "--device",
            "cpu",
        ])
    };
    // Same corpus: fine, and the ids record it.
    ok(&join(
        &a.join("features.safetensors"),
        &a.join("annotations"),
    ));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    let fp = manifest["corpus_fingerprint"].as_str().unwrap().to_string();
    assert!(fp.starts_with("fp1-"), "{fp}");
    let ids_text = std::fs::read_to_string(&ids).unwrap();
    assert!(ids_text.starts_with(&format!("# mprm-ids/2 corpus={fp} ")));
    let o = mprm(&["bundle-info", s(&a.join("features.safetensors"))]);
    assert!(crate::common::stdout(&o).contains(&fp));

    // A bundle of one corpus with the annotations of another: refused, both named, nothing written.
    std::fs::remove_file(&ids).unwrap();
    let o = join(&a.join("features.safetensors"), &b.join("annotations"));
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("different data")
            && e.contains("a/features.safetensors")
            && e.contains("b/annotations"),
        "{e}"
    );
    assert!(!ids.exists());

    // A bundle written before fingerprints existed: a clear way to add one.
    let old = dir.path().join("old.safetensors");
    std::fs::copy(a.join("features.safetensors"), &old).unwrap();
    edit_metadata(&old, |m| {
        m.remove("corpus_fingerprint");
    });
    let o = join(&old, &a.join("annotations"));
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--add-fingerprint"), "{}", stderr(&o));
    let new = dir.path().join("new.safetensors");
    ok(&mprm(&[
        "bundle-info",
        s(&old),
        "--add-fingerprint",
        s(&new),
    ]));
    ok(&join(&new, &a.join("annotations")));

    // A fingerprint that does not match the tensors (an edited file) is refused on open.
    let tampered = dir.path().join("tampered.safetensors");
    std::fs::copy(a.join("features.safetensors"), &tampered).unwrap();
    let other = std::fs::read_to_string(b.join("manifest.json")).unwrap();
    let other: serde_json::Value = serde_json::from_str(&other).unwrap();
    let other_fp = other["corpus_fingerprint"].as_str().unwrap().to_string();
    edit_metadata(&tampered, |m| {
        m.insert("corpus_fingerprint".into(), other_fp.clone().into());
    });
    let o = mprm(&["bundle-info", s(&tampered)]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("changed after the file was written"),
        "{}",
        stderr(&o)
    );
}

/// The fixed cast of paths the property test draws from.
const CANDIDATES: [&str; 9] = [
    "ann/a.jsonl",
    "ann/b.jsonl",
    "link-a.jsonl",
    "hard-b.jsonl",
    "ann/../ann/a.jsonl",
    "ann",
    "new1.jsonl",
    "new2.tsv",
    "linkdir/b.jsonl",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever paths the outputs are given, no input's bytes ever change, and a run that goes
    /// through wrote distinct files.
    #[test]
    fn no_input_ever_changes(
        picks in proptest::collection::vec(proptest::option::of(0usize..CANDIDATES.len()), 3),
        via_convert in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let rec = |q: &str| crate::common::record(Some("i.png"), q, &[("s1", "1.0"), ("s2", "0.0")]);
        crate::common::write(d, "ann/a.jsonl", format!("{}\n{}\n", rec("qa"), rec("qb")));
        crate::common::write(d, "ann/b.jsonl", format!("{}\n", rec("qc")));
        std::os::unix::fs::symlink(d.join("ann/a.jsonl"), d.join("link-a.jsonl")).unwrap();
        std::fs::hard_link(d.join("ann/b.jsonl"), d.join("hard-b.jsonl")).unwrap();
        std::os::unix::fs::symlink(d.join("ann"), d.join("linkdir")).unwrap();
        let inputs = snapshot(&d.join("ann"));

        let path = |i: usize| s(&d.join(CANDIDATES[i])).to_string();
        let mut args: Vec<String> = if via_convert {
            vec!["convert".into(), "--annotations-dir".into(), s(&d.join("ann")).into()]
        } else {
            vec!["select".into(), "bis".into(), "--annotations-dir".into(), s(&d.join("ann")).into()]
        };
        let flags: &[&str] = if via_convert { &["--output", "--report"] } else { &["--output", "--ids", "--report"] };
        let mut chosen = Vec::new();
        for (flag, pick) in flags.iter().zip(&picks) {
            if let Some(i) = pick {
                args.push(flag.to_string());
                args.push(path(*i));
                chosen.push(*i);
            }
        }
        if via_convert && !args.iter().any(|a| a == "--output") {
            args.push("--output".into());
            args.push(path(6));
            chosen.push(6);
        }
        let o = mprm(&args.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert!(code(&o) == 0 || code(&o) == 2, "{args:?}: {}", stderr(&o));
        prop_assert!(snapshot(&d.join("ann")) == inputs, "{args:?} changed an input");
        if code(&o) == 0 {
            // Only fresh paths can have been written, each once.
            prop_assert!(chosen.iter().all(|i| (6..=7).contains(i)), "{args:?} was accepted");
            let mut uniq = chosen.clone();
            uniq.sort();
            uniq.dedup();
            prop_assert_eq!(uniq.len(), chosen.len());
        }
    }
}

#[test]
fn concurrent_selects_into_the_same_outputs_leave_one_runs_set() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    ok(&synth(&sim, 1));
    let out = dir.path().join("out");
    let spawn = |ratio: &str| {
        Command::new(env!("CARGO_BIN_EXE_mprm"))
            .args(select_all_outputs(&sim, &out, ratio))
            .env("MPRM_NO_PROGRESS", "1")
            .spawn()
            .unwrap()
    };
    for _ in 0..6 {
        let (mut a, mut b) = (spawn("0.1"), spawn("0.5"));
        assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
        // Whichever run committed last, its three files belong together.
        let lines = std::fs::read_to_string(out.join("sel.jsonl"))
            .unwrap()
            .lines()
            .count();
        let ids = std::fs::read_to_string(out.join("sel.ids.tsv")).unwrap();
        let ids = ids.lines().filter(|l| !l.starts_with('#')).count() - 1;
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("sel.json")).unwrap()).unwrap();
        let written = report["totals"]["written"].as_u64().unwrap() as usize;
        assert_eq!((lines, ids), (written, written));
        no_temporaries(&out);
    }
}

/// The mechanism config with one line replaced: bad values of the newer settings must be clear
/// errors naming the file and the setting, before any output exists.
#[test]
fn bad_rules_and_intervention_settings_are_refused_by_name_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/mechanism.toml"),
    )
    .unwrap();
    let cases = [
        (
            "finding6 = { threshold = 0.1, max_width = 0.3 }",
            "finding6 = { threshold = 0.1, max_width = -0.3 }",
            "finding6",
        ),
        (
            "datamodel_tilt = 1.0",
            "datamodel_tilt = -1.0",
            "datamodel_tilt",
        ),
        (
            "factorial_seeds = 20",
            "factorial_seeds = 1",
            "factorial_seeds",
        ),
        (
            "bootstrap = 200",
            "bootstrap = 200\ninfluence_damping = 0.0",
            "influence_damping",
        ),
        (
            "bootstrap = 200",
            "bootstrap = 200\nno_such_knob = 1",
            "no_such_knob",
        ),
        (
            "mixture_dev_loss = { threshold = 0.0, max_width = 2.0 }",
            "mixture_dev_loss = { threshold = 0.0, max_width = 0.0 }",
            "mixture_dev_loss",
        ),
    ];
    for (k, (from, to, named)) in cases.iter().enumerate() {
        assert!(base.contains(from), "the mechanism config has `{from}`");
        let cfg = dir.path().join(format!("bad-{k}.toml"));
        std::fs::write(&cfg, base.replacen(from, to, 1)).unwrap();
        let out = dir.path().join(format!("out-{k}"));
        let o = mprm(&["experiment", s(&cfg), "--out", s(&out)]);
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "{to}: {err}");
        assert!(
            err.contains(&format!("bad-{k}.toml")),
            "{to}: names the file: {err}"
        );
        assert!(err.contains(named), "{to}: names `{named}`: {err}");
        assert!(!out.exists(), "{to}: nothing written");
    }
}

#[test]
fn synth_refuses_an_unknown_mc_label_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let o = mprm(&["synth", "--out", s(&out), "--mc-labels", "sorted"]);
    let err = stderr(&o);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains("sorted") && err.contains("shuffled"), "{err}");
    assert!(!out.exists());
}
