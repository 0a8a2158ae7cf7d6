//! The `train`, `eval`, `eval-scores` and `tune-lr` subcommands, run as a user would.

mod train_support;

use std::path::Path;
use std::process::Command;

use train_support::{Teacher, train_bundle, write_bench};

fn mprm(args: &[&str]) -> (bool, String, String) {
    mprm_with(args, &[])
}

fn mprm_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mprm"))
        .args(args)
        .env("MPRM_NO_PROGRESS", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn setup(dir: &Path) -> std::path::PathBuf {
    let teacher = Teacher::new(8, 3.0, 1);
    train_bundle(600, 8, &teacher, 2)
        .save(dir.join("train.safetensors"))
        .unwrap();
    write_bench(dir, 30, 3, &teacher, 3);
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        "seed = 1\nglobal_batch = 64\ncheckpoint_every = 4\ndevice = \"cpu\"\n\
         [data]\nbundle = \"train.safetensors\"\n\
         [head]\nkind = \"linear\"\n\
         [labels]\nscheme = \"true\"\n\
         [optim]\nlr = 0.05\n\
         [bench]\njsonl = \"bench.jsonl\"\nfeatures = \"bench.safetensors\"\n",
    )
    .unwrap();
    config
}

#[test]
fn train_interrupt_resume_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let run = dir.path().join("run");
    let (ok, out, err) = mprm(&[
        "train",
        "--config",
        p(&config),
        "--out",
        p(&run),
        "--stop-after",
        "5",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("5 of 10 optimiser steps"), "{out}");
    let (ok, out, err) = mprm(&["train", "--out", p(&run), "--resume"]);
    assert!(ok, "{err}");
    assert!(out.contains("10 of 10 optimiser steps"), "{out}");
    assert!(out.contains("dev-tuned threshold"), "{out}");
    for f in [
        "config.toml",
        "manifest.json",
        "metrics.jsonl",
        "timing.json",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }

    let (ok, out, err) = mprm(&["eval", "--run", p(&run), "--checkpoint", "4"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("(step 4)") && out.contains("test ORACLE"),
        "{out}"
    );
    assert!(run.join("eval/step-000004.json").exists());
    let (ok, _, err) = mprm(&["eval", "--run", p(&run), "--checkpoint", "3"]);
    assert!(!ok && err.contains("no checkpoint at step 3"), "{err}");

    // Starting over in the same folder is refused.
    let (ok, _, err) = mprm(&["train", "--config", p(&config), "--out", p(&run)]);
    assert!(!ok && err.contains("already holds a run"), "{err}");
    // A subset naming a rollout the bundle lacks.
    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, "1\n2\n600\n").unwrap();
    let (ok, _, err) = mprm(&[
        "train",
        "--config",
        p(&config),
        "--subset",
        p(&ids),
        "--out",
        p(&dir.path().join("other")),
    ]);
    assert!(!ok && err.contains("entry 3 names rollout 600"), "{err}");
}

#[test]
fn eval_scores_reproduces_the_worked_example() {
    let dir = tempfile::tempdir().unwrap();
    let bench = dir.path().join("test.jsonl");
    let rec = |source: &str, labels: &str, n: usize| {
        let steps: Vec<String> = (0..n).map(|i| format!("\"s{i}\"")).collect();
        format!(
            "{{\"image\": [\"x.png\"], \"question\": \"q\", \"answer\": \"a\", \"response\": {{\"steps\": [{}], \"process_correctness\": {labels}}}, \"policy_model\": \"m\", \"data_source\": \"{source}\"}}\n",
            steps.join(", ")
        )
    };
    let text = rec("DynaMath", "[1, 1, -1, 0]", 4)
        + &rec("DynaMath", "[1, -1, -1]", 3)
        + &rec("WeMath", "[1, 0, -1, 1]", 4);
    std::fs::write(&bench, text).unwrap();
    let scores = dir.path().join("scores.jsonl");
    std::fs::write(
        &scores,
        "[0.9, 0.6, 0.3, 0.1]\n{\"prm_scores\": [[0.55, 0.5, 0.2]]}\n{\"scores\": [0.8, 0.7, 0.65, 0.4]}\n",
    )
    .unwrap();
    let out_json = dir.path().join("report.json");
    let (ok, out, err) = mprm(&[
        "eval-scores",
        "--bench",
        p(&bench),
        "--scores",
        p(&scores),
        "--dev-fraction",
        "0",
        "--out",
        p(&out_json),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("no dev records"), "{out}");
    assert!(out.contains("threshold 0.5500, Overall 0.7500"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    assert_eq!(report["report"]["bench"]["reference_auto"]["overall"], 0.75);
    assert_eq!(
        report["report"]["bench"]["test_at_half"]["overall"],
        0.6357142857142857
    );

    std::fs::write(&scores, "[0.9]\n").unwrap();
    let (ok, _, err) = mprm(&["eval-scores", "--bench", p(&bench), "--scores", p(&scores)]);
    assert!(
        !ok && err.contains("1 score entries for 3 bench records"),
        "{err}"
    );
}

#[test]
fn tune_lr_picks_on_dev_and_writes_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let tuned = dir.path().join("tuned.toml");
    let (ok, out, err) = mprm(&[
        "tune-lr",
        "--config",
        p(&config),
        "--lrs",
        "1e-9,0.05",
        "--out",
        p(&tuned),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("chosen lr: 5e-2"), "{out}");
    let text = std::fs::read_to_string(&tuned).unwrap();
    assert!(text.starts_with("# lr chosen by `mprm tune-lr`"), "{text}");
    assert!(text.contains("lr = 0.05"), "{text}");
}

/// Same seed, same bytes — across processes and thread counts (matmuls split their outputs over
/// threads; the autodiff graph must not let summation order vary either).
#[test]
fn results_do_not_depend_on_the_process_or_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = Teacher::new(64, 3.0, 5);
    train_bundle(1500, 64, &teacher, 6)
        .save(dir.path().join("wide.safetensors"))
        .unwrap();
    for (name, head) in [
        ("mlp", "kind = \"mlp\"\nhidden = 64"),
        ("context", "kind = \"context\"\nhidden = 16"),
    ] {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "global_batch = 256\ndevice = \"cpu\"\n[data]\nbundle = \"wide.safetensors\"\n\
                 [head]\n{head}\n[optim]\nlr = 0.01\n"
            ),
        )
        .unwrap();
        let run = |threads: &str| {
            let out = dir.path().join(format!("{name}-{threads}"));
            let env = [
                ("MATMUL_NUM_THREADS", threads),
                ("RAYON_NUM_THREADS", threads),
            ];
            let (ok, _, err) =
                mprm_with(&["train", "--config", p(&config), "--out", p(&out)], &env);
            assert!(ok, "{err}");
            out
        };
        let (one, two) = (run("1"), run("2"));
        for file in ["metrics.jsonl", "checkpoints/step-000006/model.mpk"] {
            assert_eq!(
                std::fs::read(one.join(file)).unwrap(),
                std::fs::read(two.join(file)).unwrap(),
                "{name}: {file}"
            );
        }
    }
}
