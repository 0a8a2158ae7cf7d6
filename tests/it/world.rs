//! The learned-policy world end to end at a tiny size: `mprm world` trains a policy, samples
//! and annotates its rollouts and writes a corpus folder that `stats`, `select`, the reference
//! selection script and `train` read unchanged; the same seed gives the same bytes on any
//! number of threads.

use std::path::Path;
use std::process::Command;

use crate::common::{code, mprm, python, repo, stderr, stdout};
use mprm::data::features::FeatureBundle;

fn world(dir: &Path, threads: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mprm"));
    cmd.args([
        "world",
        "--out",
        dir.to_str().unwrap(),
        "--problems",
        "12",
        "--rollouts-per-problem",
        "2",
        "--policy-steps",
        "30",
        "--width",
        "32",
        "--layers",
        "1",
        "--bench-problems",
        "12",
        "--bench-candidates",
        "2",
        "--seed",
        "5",
        "--device",
        "cpu",
    ])
    .env("MPRM_NO_PROGRESS", "1");
    if let Some(n) = threads {
        cmd.env("RAYON_NUM_THREADS", n);
    }
    cmd.output().expect("the mprm binary runs")
}

/// The tiny world of [`world`] from a saved policy instead of a trained one, plus `extra`.
fn world_from_policy(dir: &Path, policy: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "world",
        "--out",
        dir.to_str().unwrap(),
        "--problems",
        "12",
        "--rollouts-per-problem",
        "2",
        "--bench-problems",
        "12",
        "--bench-candidates",
        "2",
        "--seed",
        "5",
        "--device",
        "cpu",
        "--policy",
        policy.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    mprm(&args)
}

const FILES: [&str; 10] = [
    "annotations/chain.jsonl",
    "annotations/modular.jsonl",
    "annotations/equation.jsonl",
    "annotations/list.jsonl",
    "features.safetensors",
    "truth.safetensors",
    "policy.safetensors",
    "bench.jsonl",
    "bench.safetensors",
    "manifest.json",
];

#[test]
fn a_tiny_world_runs_end_to_end_and_reproduces_on_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    let o = world(&dir, None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("P(wrong | K = 16)"), "{}", stdout(&o));
    for f in FILES {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["tool"], "mprm world");
    assert_eq!(manifest["seed"], 5);
    let counts = &manifest["counts"];
    let rollouts = manifest["portrait"]["world"]["rollouts"].as_u64().unwrap();
    let steps = manifest["portrait"]["world"]["steps"].as_u64().unwrap();
    assert_eq!(
        rollouts + counts["skipped_rollouts"].as_u64().unwrap(),
        24,
        "every sampled rollout is written or counted as skipped"
    );
    assert!(rollouts > 0);
    // the simulator's column and Table 1's sit beside the world's
    assert_eq!(manifest["portrait"]["paper"]["mixed_fraction"], 0.0767);
    assert!(
        manifest["portrait"]["simulator"]["rollouts"]
            .as_u64()
            .unwrap()
            > 10_000
    );

    // one feature row per step, d = the policy's width
    let bundle = FeatureBundle::open(dir.join("features.safetensors")).unwrap();
    assert_eq!(bundle.n_rollouts() as u64, rollouts);
    assert_eq!(bundle.n_steps() as u64, steps);
    assert_eq!(bundle.dim(), 32);

    // `mprm stats` reads the annotations and counts what the manifest counts
    let ann = dir.join("annotations");
    let o = mprm(&["stats", "--json", ann.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(stats["total"]["rollouts"].as_u64(), Some(rollouts));
    assert_eq!(stats["total"]["steps"].as_u64(), Some(steps));
    let mean_mc = stats["total"]["score_sum"].as_f64().unwrap() / steps as f64;
    let manifest_mc = manifest["portrait"]["world"]["mean_mc"].as_f64().unwrap();
    assert!(
        (mean_mc - manifest_mc).abs() < 1e-12,
        "{mean_mc} {manifest_mc}"
    );

    // BIS on the raw annotations: the reference script and mprm agree byte for byte
    let ours = tmp.path().join("ours.jsonl");
    let o = mprm(&[
        "select",
        "bis",
        "--annotations-dir",
        ann.to_str().unwrap(),
        "--top-ratio",
        "0.5",
        "--output",
        ours.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    if let Some(py) = python() {
        let theirs = tmp.path().join("theirs.jsonl");
        let o = Command::new(py)
            .arg(repo().join("benches/bis_reference.py"))
            .args(["--annotations-dir", ann.to_str().unwrap()])
            .args(["--top-ratio", "0.5", "--output", theirs.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (a, b) = (
            std::fs::read(&ours).unwrap(),
            std::fs::read(&theirs).unwrap(),
        );
        assert!(!a.is_empty());
        assert_eq!(a, b);
    }

    // select on the bundle, then train a head on the subset and evaluate it on the world's bench
    let ids = tmp.path().join("bis.tsv");
    let o = mprm(&[
        "select",
        "bis",
        "--bundle",
        dir.join("features.safetensors").to_str().unwrap(),
        "--top-ratio",
        "0.5",
        "--ids",
        ids.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let config = tmp.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "seed = 1\nglobal_batch = 8\ndevice = \"cpu\"\n\
             [data]\nbundle = \"{}\"\n\
             [head]\nkind = \"linear\"\n\
             [labels]\nscheme = \"hard\"\nthreshold = 0.0\n\
             [optim]\nlr = 0.05\n\
             [bench]\njsonl = \"{}\"\nfeatures = \"{}\"\n",
            dir.join("features.safetensors").display(),
            dir.join("bench.jsonl").display(),
            dir.join("bench.safetensors").display()
        ),
    )
    .unwrap();
    let run = tmp.path().join("run");
    let o = mprm(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--subset",
        ids.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("dev-tuned threshold"), "{}", stdout(&o));

    // the saved policy, reused instead of trained: the same corpus
    let reused = tmp.path().join("reused");
    let policy = dir.join("policy.safetensors");
    let o = world_from_policy(&reused, &policy, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for f in FILES
        .iter()
        .filter(|f| !["policy.safetensors", "manifest.json"].contains(f))
    {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(reused.join(f)).unwrap(),
            "{f} from the reused policy"
        );
    }

    // the same seed, on one thread and on the default pool: the same bytes
    let again = tmp.path().join("again");
    let one = tmp.path().join("one");
    for (d, threads) in [(&again, None), (&one, Some("1"))] {
        let o = world(d, threads);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        for f in FILES {
            assert_eq!(
                std::fs::read(dir.join(f)).unwrap(),
                std::fs::read(d.join(f)).unwrap(),
                "{f} with {threads:?} threads"
            );
        }
    }
}

#[test]
fn a_shuffled_world_permutes_the_counts_within_sources_and_the_theory_reads_both() {
    use mprm::experiments::theory::truth::{StepTruth, TruthKind};
    use mprm::world::truth::WorldTruth;

    let tmp = tempfile::tempdir().unwrap();
    let faithful = tmp.path().join("faithful");
    let o = world(&faithful, None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // the same policy and seed, counts shuffled after annotation
    let shuffled = tmp.path().join("shuffled");
    let policy = faithful.join("policy.safetensors");
    let o = world_from_policy(&shuffled, &policy, &["--mc-labels", "shuffled"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shuffled.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["settings"]["mc_labels"], "shuffled", "{manifest}");

    let (a, b) = (
        WorldTruth::open(faithful.join("truth.safetensors")).unwrap(),
        WorldTruth::open(shuffled.join("truth.safetensors")).unwrap(),
    );
    // the rollouts, their steps and the verifier's view are untouched...
    assert_eq!(a.offsets, b.offsets);
    assert_eq!(a.step_correct, b.step_correct);
    assert_eq!(a.problem, b.problem);
    // ...while each source's (K, N) pairs are the same multiset in another order
    let bundle = FeatureBundle::open(shuffled.join("features.safetensors")).unwrap();
    let mut moved = 0;
    for src in 0..bundle.meta().sources.len() as u32 {
        let pairs = |t: &WorldTruth| {
            let mut v: Vec<(u8, u8)> = (0..bundle.n_rollouts())
                .filter(|&x| bundle.source()[x] == src)
                .flat_map(|x| bundle.rollout_steps(x))
                .map(|j| (t.mc_correct[j], t.mc_total[j]))
                .collect();
            let order = v.clone();
            v.sort_unstable();
            (order, v)
        };
        let ((order_a, sorted_a), (order_b, sorted_b)) = (pairs(&a), pairs(&b));
        assert_eq!(sorted_a, sorted_b, "source {src}: the same counts");
        moved += usize::from(order_a != order_b);
    }
    assert!(moved > 0, "no source's counts moved");
    // the bundle's scores follow the shuffled counts, and the theory reads both worlds
    for dir in [&faithful, &shuffled] {
        let bundle = FeatureBundle::open(dir.join("features.safetensors")).unwrap();
        let truth = StepTruth::open(dir, &bundle).unwrap();
        assert_eq!(truth.kind, TruthKind::World);
        assert!(truth.success_rate.is_none());
        assert_eq!(truth.question.len(), bundle.n_rollouts());
    }
    // a bundle whose scores are not the truth's counts is refused, naming the truth file (a
    // copy of the faithful bundle with every step scored 1: the tiny world's own counts are
    // mostly 0 and would not tell the two annotations apart)
    let faithful_bundle = FeatureBundle::open(faithful.join("features.safetensors")).unwrap();
    let (s, d) = (faithful_bundle.n_steps(), faithful_bundle.dim());
    let rescored = FeatureBundle::from_parts(mprm::data::features::BundleParts {
        features: mprm::data::features::FeatureData::F32(vec![0.0; s * d]),
        dim: d,
        offsets: faithful_bundle.offsets().to_vec(),
        mc_scores: vec![1.0; s],
        source: faithful_bundle.source().to_vec(),
        line: None,
        labels: None,
        teacher: None,
        meta: faithful_bundle.meta().clone(),
    })
    .unwrap();
    let e = StepTruth::open(&faithful, &rescored)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("truth.safetensors") && e.contains("not the same annotation"),
        "{e}"
    );
}

#[test]
fn world_refuses_bad_settings_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    for (args, message) in [
        (vec!["--problems", "2"], "--problems must be at least 4"),
        (vec!["--temperature", "0"], "--temperature 0"),
        (vec!["--max-difficulty", "1.5"], "difficulty range"),
        (
            vec!["--policy", "/nonexistent/p.safetensors"],
            "no such file",
        ),
    ] {
        let mut all = vec!["world", "--out", dir.to_str().unwrap(), "--device", "cpu"];
        all.extend(args);
        let o = mprm(&all);
        assert_eq!(code(&o), 2, "{all:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{all:?}: {}", stderr(&o));
    }
    assert!(!dir.exists(), "nothing is written for refused settings");
    // a folder that holds something else is refused
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let o = mprm(&[
        "world",
        "--out",
        other.to_str().unwrap(),
        "--problems",
        "4",
        "--policy-steps",
        "1",
        "--width",
        "32",
        "--bench-problems",
        "0",
    ]);
    assert_ne!(code(&o), 0);
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        "mine"
    );
}
