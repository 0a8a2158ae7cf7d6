//! The `train`, `eval`, `eval-scores` and `tune-lr` subcommands, run as a user would.

use std::path::Path;
use std::process::Command;

use crate::train_support::{Teacher, assert_same_run, train_bundle, write_bench, write_ids_v2};
use mprm::data::features::FeatureBundle;

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

fn train(config: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["train", "--config", p(config), "--out", p(out)];
    args.extend_from_slice(extra);
    mprm(&args)
}

fn manifest(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap()
}

/// A run interrupted and resumed (with no --subset, or the same one) is byte for byte the run
/// that was never interrupted — with and without a subset given on the command line.
#[test]
fn resumed_runs_are_the_uninterrupted_run_with_and_without_a_subset() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let bundle = FeatureBundle::open(dir.path().join("train.safetensors")).unwrap();
    let ids = dir.path().join("half.ids.tsv");
    write_ids_v2(&ids, &bundle, 2);

    // Without a subset: 10 steps, checkpoints at 4 and 8; cut after 5.
    let whole = dir.path().join("whole");
    assert!(train(&config, &whole, &[]).0);
    let cut = dir.path().join("cut");
    assert!(train(&config, &cut, &["--stop-after", "5"]).0);
    let (ok, out, err) = mprm(&["train", "--out", p(&cut), "--resume"]);
    assert!(ok, "{err}");
    assert!(out.contains("10 of 10 optimiser steps"), "{out}");
    assert_same_run(&whole, &cut);

    // With --subset (300 of 600 rollouts: 5 steps, checkpoints at 4 and 5; cut after 4).
    let sub = dir.path().join("sub");
    let (ok, out, err) = train(&config, &sub, &["--subset", p(&ids)]);
    assert!(ok, "{err}");
    assert!(out.contains("5 of 5 optimiser steps"), "{out}");
    let m = manifest(&sub);
    assert_eq!(m["subset"]["from"], p(&ids));
    assert_eq!(m["subset"]["rollouts"], 300);
    assert_eq!(m["subset"]["corpus"], bundle.fingerprint().to_string());
    assert_eq!(m["bundle"]["corpus"], bundle.fingerprint().to_string());
    for resume_args in [&[][..], &["--subset", p(&ids)][..]] {
        let cut = dir.path().join(format!("sub-cut-{}", resume_args.len()));
        let (ok, _, err) = train(&config, &cut, &["--subset", p(&ids), "--stop-after", "4"]);
        assert!(ok, "{err}");
        let (ok, _, err) = train(&config, &cut, &["--subset", p(&ids), "--stop-after", "4"]);
        assert!(!ok && err.contains("already holds a run"), "{err}");
        let mut args = vec!["train", "--out", p(&cut), "--resume"];
        args.extend_from_slice(resume_args);
        let (ok, out, err) = mprm(&args);
        assert!(ok, "{err}");
        assert!(out.contains("5 of 5 optimiser steps"), "{out}");
        assert_same_run(&sub, &cut);
    }
}

#[test]
fn resume_refuses_another_subset_bundle_or_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let bundle = FeatureBundle::open(dir.path().join("train.safetensors")).unwrap();
    let (half, third) = (
        dir.path().join("half.ids.tsv"),
        dir.path().join("third.ids.tsv"),
    );
    write_ids_v2(&half, &bundle, 2);
    write_ids_v2(&third, &bundle, 3);
    let run = dir.path().join("run");
    let (ok, _, err) = train(&config, &run, &["--subset", p(&half), "--stop-after", "4"]);
    assert!(ok, "{err}");
    let before = crate::train_support::run_files(&run);

    let (ok, _, err) = mprm(&["train", "--out", p(&run), "--resume", "--subset", p(&third)]);
    assert!(!ok, "resumed on another subset");
    assert!(
        err.contains("different subset")
            && err.contains("trained on 300 rollouts from")
            && err.contains(p(&half))
            && err.contains("names 200 rollouts"),
        "{err}"
    );

    // The same run folder resumed on another bundle (another corpus).
    let teacher = Teacher::new(8, 3.0, 1);
    train_bundle(500, 8, &teacher, 9)
        .save(dir.path().join("other.safetensors"))
        .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        text.replace("train.safetensors", "other.safetensors"),
    )
    .unwrap();
    let (ok, _, err) = mprm(&["train", "--config", p(&other), "--out", p(&run), "--resume"]);
    assert!(!ok);
    assert!(
        err.contains("cannot resume")
            && err.contains("other.safetensors")
            && err.contains("run.json")
            && err.contains(&bundle.fingerprint().to_string()),
        "{err}"
    );

    // Another config.
    let lr = dir.path().join("lr.toml");
    std::fs::write(&lr, text.replace("lr = 0.05", "lr = 0.01")).unwrap();
    let (ok, _, err) = mprm(&["train", "--config", p(&lr), "--out", p(&run), "--resume"]);
    assert!(!ok);
    assert!(
        err.contains("different config") && err.contains("optim.lr: run 0.05, now 0.01"),
        "{err}"
    );
    // Nothing was touched by the refusals.
    assert_eq!(crate::train_support::run_files(&run), before);
    // A run started on the whole corpus is not resumed on a subset either.
    let all = dir.path().join("all");
    assert!(train(&config, &all, &["--stop-after", "4"]).0);
    let (ok, _, err) = mprm(&["train", "--out", p(&all), "--resume", "--subset", p(&half)]);
    assert!(!ok && err.contains("trained on all 600 rollouts"), "{err}");
}

#[test]
fn subsets_from_another_corpus_or_with_other_step_counts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    // Selected on another corpus (same size, another seed).
    let teacher = Teacher::new(8, 3.0, 1);
    let elsewhere = train_bundle(600, 8, &teacher, 7);
    let ids = dir.path().join("elsewhere.ids.tsv");
    write_ids_v2(&ids, &elsewhere, 4);
    let run = dir.path().join("run");
    let (ok, _, err) = train(&config, &run, &["--subset", p(&ids)]);
    assert!(!ok, "trained on ids chosen on another corpus");
    assert!(
        err.contains(p(&ids))
            && err.contains("train.safetensors")
            && err.contains(&elsewhere.fingerprint().to_string())
            && err.contains("different data"),
        "{err}"
    );
    assert!(!run.join("config.toml").exists());

    // The right corpus, but a row whose step count disagrees with the bundle's.
    let bundle = FeatureBundle::open(dir.path().join("train.safetensors")).unwrap();
    write_ids_v2(&ids, &bundle, 4);
    let text = std::fs::read_to_string(&ids).unwrap();
    let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
    let fields: Vec<&str> = rows[3].split('\t').collect();
    let steps: u64 = fields[3].parse().unwrap();
    let (source, rollout) = (fields[0].to_string(), fields[2].to_string());
    rows[3] = format!(
        "{}\t{}\t{}\t{}\t{}",
        fields[0],
        fields[1],
        fields[2],
        steps + 1,
        fields[4]
    );
    std::fs::write(&ids, rows.join("\n") + "\n").unwrap();
    let (ok, _, err) = train(&config, &run, &["--subset", p(&ids)]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "entry 2 (source `{source}`, rollout {rollout}) has {} steps, but rollout {rollout} of",
            steps + 1
        )) && err.contains(&format!("has {steps};")),
        "{err}"
    );

    // An older ids file (no fingerprint) is still used, with one note on stderr.
    std::fs::write(
        &ids,
        "# mprm-ids/1\nsource\tline\trollout\tscore\nsrc-a\t0\t0\t0.1\nsrc-b\t0\t1\t0.1\n",
    )
    .unwrap();
    let (ok, _, err) = train(&config, &run, &["--subset", p(&ids)]);
    assert!(ok, "{err}");
    assert_eq!(
        err.matches("records no corpus fingerprint").count(),
        1,
        "{err}"
    );
    assert_eq!(manifest(&run)["subset"]["corpus"], serde_json::Value::Null);
    assert_eq!(manifest(&run)["subset"]["rollouts"], 2);
}

/// state.json records how many metrics lines a checkpoint covers, not the lines themselves.
#[test]
fn checkpoint_state_does_not_grow_with_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("checkpoint_every = 4", "checkpoint_every = 1"),
    )
    .unwrap();
    let run = dir.path().join("run");
    assert!(train(&config, &run, &[]).0);
    let size = |step: usize| {
        std::fs::metadata(run.join(format!("checkpoints/step-{step:06}/state.json")))
            .unwrap()
            .len()
    };
    // Only the digits of the step and line counts differ (1 → 10, 2 → 20).
    assert!(size(10) <= size(1) + 3, "{} vs {}", size(10), size(1));
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("checkpoints/step-000010/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["metrics_lines"], 20, "10 steps and 10 evaluations");
    assert!(state.get("metrics").is_none());

    // Resuming from step 7 cuts the log back and rebuilds it to the same bytes.
    let cut = dir.path().join("cut");
    assert!(train(&config, &cut, &["--stop-after", "7"]).0);
    std::fs::write(cut.join("checkpoints/LATEST"), "step-000006\n").unwrap();
    std::fs::remove_dir_all(cut.join("checkpoints/step-000007")).unwrap();
    assert!(mprm(&["train", "--out", p(&cut), "--resume"]).0);
    assert_same_run(&run, &cut);
    // A log edited after the checkpoint is noticed.
    let cut2 = dir.path().join("cut2");
    assert!(train(&config, &cut2, &["--stop-after", "3"]).0);
    let log = std::fs::read_to_string(cut2.join("metrics.jsonl")).unwrap();
    std::fs::write(
        cut2.join("metrics.jsonl"),
        log.replacen("\"loss\":", "\"loss\": ", 1),
    )
    .unwrap();
    let (ok, _, err) = mprm(&["train", "--out", p(&cut2), "--resume"]);
    assert!(
        !ok && err.contains("metrics.jsonl") && err.contains("changed"),
        "{err}"
    );
}

#[test]
fn run_folders_are_locked_and_stale_temporaries_removed() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let run = dir.path().join("run");
    assert!(train(&config, &run, &["--stop-after", "5"]).0);

    // Another process holds the folder: both a fresh start and a resume are refused.
    let lock = mprm::lock::DirLock::acquire(&run).unwrap();
    let (ok, _, err) = mprm(&["train", "--out", p(&run), "--resume"]);
    assert!(!ok);
    assert!(
        err.contains(&format!("in use by pid {}", std::process::id())) && err.contains(p(&run)),
        "{err}"
    );
    let fresh = dir.path().join("fresh");
    let lock2 = mprm::lock::DirLock::acquire(&fresh).unwrap();
    let (ok, _, err) = train(&config, &fresh, &[]);
    assert!(!ok && err.contains("in use by pid"), "{err}");
    assert!(!fresh.join("config.toml").exists());
    drop((lock, lock2));

    // A checkpoint folder left half-written by a killed run is removed on resume.
    let stale = run.join("checkpoints/.step-000008.4242.tmp");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("model.mpk"), b"half").unwrap();
    let (ok, out, err) = mprm(&["train", "--out", p(&run), "--resume"]);
    assert!(ok, "{err}");
    assert!(out.contains("10 of 10"), "{out}");
    assert!(!stale.exists());
    let names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

/// `mprm gradnorm --at` a trained head: options that disagree with the file are errors (they
/// used to be replaced by the file's silently), and a folder is named as such.
#[test]
fn gradnorm_at_a_trained_head_refuses_conflicting_options() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let mlp = dir.path().join("mlp.toml");
    std::fs::write(
        &mlp,
        text.replace("kind = \"linear\"", "kind = \"mlp\"\nhidden = 16"),
    )
    .unwrap();
    let run = dir.path().join("run");
    assert!(train(&mlp, &run, &[]).0);
    let ckpt = run.join("checkpoints/step-000010");
    let head = ckpt.join("head.safetensors");
    let bundle = dir.path().join("train.safetensors");
    let gradnorm = |at: &Path, extra: &[&str]| {
        let out = dir.path().join("g.csv");
        let mut args = vec!["gradnorm", "--bundle", p(&bundle), "--at", p(at)];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--device", "cpu", "--out", p(&out)]);
        mprm(&args)
    };
    let (ok, _, err) = gradnorm(&head, &["--head", "mlp", "--hidden", "32"]);
    assert!(!ok);
    assert!(
        err.contains(p(&head))
            && err.contains("holds a mlp (hidden 16, gelu) head, but --hidden 32 was given"),
        "{err}"
    );
    let (ok, _, err) = gradnorm(&head, &["--head", "mlp", "--activation", "relu"]);
    assert!(!ok && err.contains("--activation relu was given"), "{err}");
    let (ok, _, err) = gradnorm(&head, &["--head", "mlp", "--hidden", "16"]);
    assert!(ok, "{err}");
    // Without --head the file's head is used.
    let (ok, _, err) = gradnorm(&head, &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = gradnorm(&ckpt, &[]);
    assert!(!ok);
    assert!(
        err.contains("is a folder, not a head")
            && err.contains("did you mean")
            && !err.contains("os error"),
        "{err}"
    );
}

#[test]
fn a_run_with_too_few_optimiser_steps_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    // 600 rollouts at global_batch 64: 10 steps.
    let (ok, _, err) = train(&config, &dir.path().join("few"), &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "600 rollouts × 1 epoch(s) at global_batch = 64 give only 10 optimiser step(s)"
        ) && err.contains("`global_batch = 1`"),
        "{err}"
    );
    // At 8 per step the same data gets 75 steps: no warning.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("global_batch = 64", "global_batch = 8");
    let enough = dir.path().join("enough.toml");
    std::fs::write(&enough, text).unwrap();
    let (ok, _, err) = train(&enough, &dir.path().join("enough"), &[]);
    assert!(ok, "{err}");
    assert!(!err.contains("warning"), "{err}");
}
