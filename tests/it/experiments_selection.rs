//! Gradient-based selectors on hand-made bundles, and the experiment runner end to end.

use crate::common::{code, differing, files_in, files_under, mprm, stderr};
use mprm::data::features::{BundleMeta, BundleParts, FeatureBundle, FeatureData, TeacherInfo};
use mprm::data::labels::LabelScheme;
use mprm::device::Device;
use mprm::gradient_selection::{
    GradientSettings, PrecomputedSelector, ProxySpec, el2n_keys, gradient_norms, grand_keys,
    teacher_head,
};
use mprm::gradnorm::Reduction;
use mprm::head::{HeadKind, HeadParams, LinearHead};
use mprm::select::pipeline::choose_from_bundle;
use mprm::select::{Selector, SourceView};

/// Four one-dimensional rollouts; the teacher is w* = 2, b* = 0.
fn bundle() -> FeatureBundle {
    // Rollout 0 agrees with the teacher, 1 contradicts it, 2 is mixed, 3 is a single step.
    let feats = vec![1.0, 2.0, 1.0, 2.0, 1.0, -1.0, 0.5];
    let labels_mc = vec![1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
    let q: Vec<f32> = feats
        .iter()
        .map(|x: &f32| 1.0 / (1.0 + (-2.0 * x).exp()))
        .collect();
    FeatureBundle::from_parts(BundleParts {
        features: FeatureData::F32(feats),
        dim: 1,
        offsets: vec![0, 2, 4, 6, 7],
        mc_scores: labels_mc,
        source: vec![0, 0, 1, 1],
        line: Some(vec![0, 1, 0, 1]),
        labels: None,
        teacher: Some(TeacherInfo {
            q,
            true_correct: vec![1, 1, 1, 1, 1, 0, 1],
            w_star: vec![2.0],
            b_star: 0.0,
        }),
        meta: BundleMeta {
            sources: vec!["a".into(), "b".into()],
            ..Default::default()
        },
    })
    .unwrap()
}

fn settings() -> GradientSettings {
    GradientSettings {
        head: HeadKind::Linear,
        labels: LabelScheme::Hard { threshold: 0.0 },
        reduction: Reduction::Mean,
        seed: 3,
        inits: 4,
        proxy: ProxySpec::default(),
        el2n: Default::default(),
        less: Default::default(),
        reference: Default::default(),
        device: Device::Cpu,
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[test]
fn gradnorm_at_the_teacher_ranks_the_contradicting_rollout_first() {
    let b = bundle();
    let targets = LabelScheme::Hard { threshold: 0.0 }.targets(&b).unwrap();
    let keys = gradient_norms(&b, &targets, &teacher_head(&b).unwrap(), &settings()).unwrap();
    // Rollout 1: features (1, 2) labelled 0 while the teacher says σ(2), σ(4); mean reduction.
    let r = [sigmoid(2.0), sigmoid(4.0)];
    let gw = (r[0] * 1.0 + r[1] * 2.0) / 2.0;
    let gb = (r[0] + r[1]) / 2.0;
    assert!(
        (keys[1] - (gw * gw + gb * gb).sqrt()).abs() < 1e-6,
        "{keys:?}"
    );
    let order = {
        let mut o: Vec<usize> = (0..4).collect();
        o.sort_by(|&i, &j| keys[j].total_cmp(&keys[i]));
        o
    };
    assert_eq!(order[0], 1);
    assert!(
        keys[0] < keys[2],
        "agreeing rollout has the smallest-but-one gradient: {keys:?}"
    );
}

#[test]
fn grand_is_the_mean_over_its_initialisations() {
    let b = bundle();
    let targets = LabelScheme::Hard { threshold: 0.0 }.targets(&b).unwrap();
    let s = settings();
    let keys = grand_keys(&b, &targets, &s).unwrap();
    let mut want = vec![0.0; 4];
    for k in 0..s.inits {
        let head = HeadParams::init(HeadKind::Linear, 1, s.seed + k as u64);
        for (w, n) in want
            .iter_mut()
            .zip(gradient_norms(&b, &targets, &head, &s).unwrap())
        {
            *w += n / s.inits as f64;
        }
    }
    for (a, w) in keys.iter().zip(&want) {
        assert!((a - w).abs() < 1e-12);
    }
}

#[test]
fn el2n_is_the_residual_norm() {
    let b = bundle();
    let targets = LabelScheme::Hard { threshold: 0.0 }.targets(&b).unwrap();
    let head = HeadParams::Linear(LinearHead {
        w: vec![1.0],
        b: -0.5,
    });
    let sum = el2n_keys(&b, &targets, &head, Reduction::Sum, Device::Cpu).unwrap();
    let mean = el2n_keys(&b, &targets, &head, Reduction::Mean, Device::Cpu).unwrap();
    // Rollout 2: features (1, −1), labels (1, 0).
    let sq = (sigmoid(0.5) - 1.0).powi(2) + sigmoid(-1.5).powi(2);
    assert!(
        (sum[2] - sq.sqrt()).abs() < 1e-6,
        "{} vs {}",
        sum[2],
        sq.sqrt()
    );
    // The mean reduction weighs each step by 1/n: the root-mean-square step error.
    assert!((mean[2] - (sq / 2.0).sqrt()).abs() < 1e-6, "{}", mean[2]);
    // Rollout 3 has one step: both reductions agree.
    assert!((mean[3] - sum[3]).abs() < 1e-12);
}

#[test]
fn precomputed_keys_are_found_by_index_and_by_line() {
    let b = bundle();
    let sel =
        PrecomputedSelector::new("k", serde_json::json!({}), &b, vec![0.1, 0.9, 0.4, 0.2]).unwrap();
    // Source b by (name, line), without corpus indices.
    let offs = [0usize, 1, 2];
    let scores = [1.0, 0.0];
    let view = SourceView::new(1, "b", &[1, 0], &offs, &scores);
    assert_eq!(sel.keys(&view).unwrap(), vec![0.2, 0.4]);
    let missing = SourceView::new(1, "b", &[7, 0], &offs, &scores);
    assert!(
        sel.keys(&missing)
            .unwrap_err()
            .to_string()
            .contains("line 7")
    );
    // Through the bundle path (corpus indices): the top half of each source.
    let (_, ids) = choose_from_bundle(&b, &sel, 0.5).unwrap();
    assert_eq!(
        ids.iter().map(|i| i.rollout).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(
        PrecomputedSelector::new(
            "k",
            serde_json::json!({}),
            &b,
            vec![0.1, f64::NAN, 0.4, 0.2]
        )
        .is_err()
    );
}

const TINY: &str = r#"
name = "tiny"
seed = 3
device = "cpu"
[corpus]
scale = 0.004
dim = 16
min_rollouts = 12
bench_questions = 40
[train]
lr_grid = [1e-2, 3e-2]
[selection]
budgets = [0.25, 0.5]
seeds = 2
selectors = [{ method = "random" }, { method = "bis" }, { method = "grand" }, { method = "el2n" }, { method = "less" }, { method = "tracin" }, { method = "influence" }, { method = "oracle" }, { method = "bis-tracin" }, { method = "gradnorm-teacher" }]
saturation_budgets = [0.1]
labelling = ["hard-0", "soft"]
alpha_sweep = [0.05, 0.2]
sweep_budget = 0.25
grand_inits = 2
el2n_proxies = 2
less_epochs = 2
less_dims = 8
reference_checkpoints = 2
"#;

#[test]
fn experiment_runs_end_to_end_resumes_and_reports_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let out = tmp.path().join("results");
    let run = || {
        mprm(&[
            "experiment",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let o = run();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // An identical second run (same config, same folder, from scratch) differs in exactly the
    // files the README names: the wall times and the selection-cost table drawn from them.
    let first = files_under(&out);
    std::fs::remove_dir_all(&out).unwrap();
    let o = run();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // (Exactly these may differ; the cost table prints seconds to 4 decimals, so the assertion
    // allows the rare run where they happen to round alike, but never any other file.)
    let may_differ = [
        "README.md",
        "selection/cost.csv",
        "selection/cost.json",
        "selection/cost.md",
        "timing.json",
    ];
    let changed = differing(&first, &files_under(&out));
    assert!(
        changed.iter().all(|f| may_differ.contains(&f.as_str())),
        "files that differ between identical runs: {changed:?}"
    );
    assert!(changed.contains(&"timing.json".to_string()), "{changed:?}");
    assert!(
        first.contains_key("selection/cost.md"),
        "the cost table is written"
    );
    let sel = out.join("selection");
    for stem in [
        "table2_overall",
        "bis_minus_random",
        "delta_vs_bis",
        "table4_ablations",
        "table5_alpha",
        "labelling",
        "saturation",
        "best_of_n",
        "subset_profiles",
        "learning_rates",
    ] {
        for ext in ["md", "csv", "json"] {
            assert!(sel.join(format!("{stem}.{ext}")).exists(), "{stem}.{ext}");
        }
    }
    for stem in ["saturation", "budgets"] {
        assert!(
            sel.join(format!("{stem}.svg")).exists() && sel.join(format!("{stem}.png")).exists()
        );
    }
    // The learning-rate note counts what results.json records: choices still at an end of the
    // rates tried (by the rule tune_lr extends on) and choices that needed rates past the grid.
    let results: mprm::experiments::selection::SelectionResults =
        serde_json::from_str(&std::fs::read_to_string(sel.join("results.json")).unwrap()).unwrap();
    let n = results.lr_choices.len();
    let edge = results
        .lr_choices
        .iter()
        .filter(|c| mprm::experiments::training::lr_edge(&c.trials).1.is_some())
        .count();
    assert!(
        results
            .lr_choices
            .iter()
            .all(|c| c.at_edge == mprm::experiments::training::lr_edge(&c.trials).1.is_some()),
        "the recorded flag follows the rule"
    );
    let extended = results
        .lr_choices
        .iter()
        .filter(|c| c.extensions > 0)
        .count();
    assert!(
        extended > 0,
        "the [1e-2, 3e-2] grid is short on this corpus"
    );
    let note = std::fs::read_to_string(sel.join("learning_rates.md")).unwrap();
    assert!(
        note.contains(&format!(
            ": {edge} of {n} choices; {extended} of {n} needed an extension"
        )),
        "{note}"
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("## Selection comparison") && readme.contains("BIS"));
    let before = files_in(&sel);

    // `mprm report` redraws the same bytes from results.json alone.
    let o = mprm(&["report", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(files_in(&sel), before);

    // A finished cell is loaded, not recomputed: tamper with one and rerun.
    let cell = std::fs::read_dir(out.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("run_bis_0.25_seed0")
        })
        .expect("a cell for bis at 25%, seed 0");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cell).unwrap()).unwrap();
    v["test_overall"] = serde_json::json!(0.123456);
    std::fs::write(&cell, serde_json::to_string(&v).unwrap()).unwrap();
    let corpus_s = |dir: &std::path::Path| {
        let t: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("timing.json")).unwrap())
                .unwrap();
        t["corpus_s"].as_f64().expect("corpus_s recorded")
    };
    let built = corpus_s(&out);
    let o = run();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The corpus was reused, so the time recorded is still its build's.
    assert_eq!(corpus_s(&out), built);
    let results = std::fs::read_to_string(sel.join("results.json")).unwrap();
    assert!(
        results.contains("0.123456"),
        "the tampered cell was recomputed instead of reused"
    );

    // A fresh run in another folder gives the same numbers.
    let other = tmp.path().join("again");
    let o = mprm(&[
        "experiment",
        cfg.to_str().unwrap(),
        "--out",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let fresh = std::fs::read_to_string(other.join("selection/results.json")).unwrap();
    // The checks are derived from the cells, so the tampered one moves its budget's check too:
    // compare everything else exactly, and the checks against a fresh derivation.
    let without_checks = |text: &str| {
        let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
        v.as_object_mut().unwrap().remove("checks");
        v
    };
    assert_eq!(
        without_checks(&fresh),
        without_checks(&results.replace("0.123456", &fresh_value(&fresh)))
    );
    let checks =
        |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap()["checks"].clone();
    assert_ne!(
        checks(&fresh),
        checks(&results),
        "the checks ignore the cells"
    );
    assert_eq!(checks(&fresh).as_array().unwrap().len(), 2);
}

/// The untampered value of the bis 25% seed-0 cell in a fresh results file.
fn fresh_value(results: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(results).unwrap();
    let cell = v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["row"] == "bis" && c["budget"] == 0.25 && c["seed_index"] == 0)
        .unwrap();
    cell["result"]["test_overall"].to_string()
}

/// A bench with dev records from two sources: `DynaMath` steps (1.5 correct, −0.5 incorrect) and
/// (0.8 neutral, 2.0 correct); `MathVerse` steps (−1.0 incorrect, 0.3 correct).
fn two_source_bench() -> mprm::data::bench::BenchSet {
    use mprm::data::bench::{BenchRecord, BenchSet, Split, SplitSettings};
    let record = |source: &str, labels: Vec<i8>| BenchRecord {
        line: 0,
        source: source.into(),
        labels,
        policy_model: None,
        split: Some(Split::Dev),
        question_id: None,
        final_correct: None,
    };
    let bench_bundle = FeatureBundle::from_parts(BundleParts {
        features: FeatureData::F32(vec![1.5, -0.5, 0.8, 2.0, -1.0, 0.3]),
        dim: 1,
        offsets: vec![0, 2, 4, 6],
        mc_scores: vec![1.0, 0.0, 0.0, 1.0, 0.0, 1.0],
        source: vec![0, 0, 1],
        line: None,
        labels: None,
        teacher: None,
        meta: BundleMeta {
            sources: vec!["DynaMath".into(), "MathVerse".into()],
            ..Default::default()
        },
    })
    .unwrap();
    BenchSet::from_parts(
        "dev.jsonl".into(),
        vec![
            record("DynaMath", vec![1, -1]),
            record("DynaMath", vec![0, 1]),
            record("MathVerse", vec![-1, 1]),
        ],
        Some(bench_bundle),
        SplitSettings::default(),
    )
    .unwrap()
}

#[test]
fn less_preconditions_projects_and_takes_the_best_source_as_computed_by_hand() {
    use mprm::gradient_selection::{
        AdamCheckpoint, AdamShape, Checkpoint, CountSketch, labelled_dev_by_source, less_keys_at,
    };
    use mprm::train::checkpoint::AdamMoments;
    let b = bundle();
    let bench = two_source_bench();
    let dev = labelled_dev_by_source(&bench).unwrap();
    assert_eq!(
        dev.iter().map(|d| d.source.as_str()).collect::<Vec<_>>(),
        ["DynaMath", "MathVerse"]
    );
    assert_eq!(
        dev[0].targets,
        [1.0, 0.0, 1.0],
        "the neutral step is left out"
    );
    let targets = LabelScheme::Hard { threshold: 0.0 }.targets(&b).unwrap();
    // Two checkpoints (w, b), their Adam moments and learning-rate weights.
    let points = [
        ((0.5, 0.0), ([0.02, -0.01], [1e-4, 4e-4]), 0.1),
        ((0.9, -0.2), ([-0.03, 0.02], [9e-4, 1e-4]), 0.05),
    ];
    let checkpoints: Vec<AdamCheckpoint> = points
        .iter()
        .map(|&((w, bias), (m, v), lr)| AdamCheckpoint {
            point: Checkpoint {
                head: HeadParams::Linear(LinearHead {
                    w: vec![w],
                    b: bias,
                }),
                lr,
            },
            moments: AdamMoments {
                m: m.to_vec(),
                v: v.to_vec(),
                time: 3,
            },
        })
        .collect();
    // A sketch that keeps w and flips b: the cosines see exactly that.
    let sketch = CountSketch {
        bucket: vec![0, 1],
        sign: vec![1.0, -1.0],
        dims: 2,
    };
    let adam = AdamShape {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let keys = less_keys_at(&b, &targets, &checkpoints, &dev, &sketch, adam, &settings()).unwrap();

    // By hand: mean-reduced gradients, Adam's step direction, the sketch, cosines, Σ lr, max.
    let grad = |w: f64, bias: f32, xs: &[(f64, f64)]| -> [f64; 2] {
        let n = xs.len() as f64;
        let r: Vec<f64> = xs
            .iter()
            .map(|(x, y)| sigmoid(w * f64::from(*x as f32) + f64::from(bias)) - y)
            .collect();
        [
            xs.iter().zip(&r).map(|((x, _), r)| r * x).sum::<f64>() / n,
            r.iter().sum::<f64>() / n,
        ]
    };
    let cos = |a: [f64; 2], b: [f64; 2]| {
        (a[0] * b[0] + a[1] * b[1])
            / ((a[0] * a[0] + a[1] * a[1]).sqrt() * (b[0] * b[0] + b[1] * b[1]).sqrt())
    };
    let rollouts: [&[(f64, f64)]; 4] = [
        &[(1.0, 1.0), (2.0, 1.0)],
        &[(1.0, 0.0), (2.0, 0.0)],
        &[(1.0, 1.0), (-1.0, 0.0)],
        &[(0.5, 1.0)],
    ];
    let dynamath = [(1.5, 1.0), (-0.5, 0.0), (2.0, 1.0)];
    let mathverse = [(-1.0, 0.0), (0.3, 1.0)];
    for (x, steps) in rollouts.iter().enumerate() {
        let mut per_source = [0.0; 2];
        for &((w, bias), (m, v), lr) in &points {
            let w = f64::from(w);
            let g = grad(w, bias, steps);
            let pre: Vec<f64> = (0..2)
                .map(|p| {
                    let m1 = 0.9 * m[p] + 0.1 * g[p];
                    let v1 = 0.999 * v[p] + 0.001 * g[p] * g[p];
                    m1 / (v1 + 1e-8).sqrt()
                })
                .collect();
            let sk = [pre[0], -pre[1]];
            for (t, src) in [&dynamath[..], &mathverse[..]].iter().enumerate() {
                let d = grad(w, bias, src);
                per_source[t] += lr * cos(sk, [d[0], -d[1]]);
            }
        }
        let want = per_source[0].max(per_source[1]);
        assert!(
            (keys[x] - want).abs() < 1e-5,
            "rollout {x}: {} vs {want} ({per_source:?})",
            keys[x]
        );
    }
}

#[test]
fn adam_preconditioning_is_the_step_adam_would_take_from_the_state() {
    use mprm::gradient_selection::{AdamShape, adam_precondition};
    let a = AdamShape {
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-6,
    };
    let mut out = Vec::new();
    adam_precondition(
        &[0.5, -2.0, 0.0],
        &[0.1, 0.0, -0.3],
        &[0.04, 1.0, 0.25],
        a,
        &mut out,
    );
    let want = [
        (0.9 * 0.1 + 0.1 * 0.5) / (0.99f64 * 0.04 + 0.01 * 0.25 + 1e-6).sqrt(),
        (0.1 * -2.0) / (0.99f64 * 1.0 + 0.01 * 4.0 + 1e-6).sqrt(),
        (0.9 * -0.3) / (0.99f64 * 0.25 + 1e-6).sqrt(),
    ];
    for (o, w) in out.iter().zip(want) {
        assert!((o - w).abs() < 1e-12, "{out:?} vs {want:?}");
    }
}

#[test]
fn the_hybrid_keeps_the_top_half_by_its_gate_then_ranks_by_bis() {
    use mprm::gradient_selection::gated_bis_keys;
    let b = bundle();
    // Source a: rollouts 0, 1; source b: rollouts 2, 3. The gate prefers 1 in a and 3 in b.
    let keys = gated_bis_keys(&b, &[0.1, 0.9, -1.0, 2.0], 0.05).unwrap();
    assert!(keys[1] >= 1.0 && keys[0] < 1.0, "{keys:?}");
    assert!(keys[3] >= 1.0 && keys[2] < 1.0, "{keys:?}");
    // Below the gate the key is BIS itself: rollout 2 is mixed (p = 1/2, R = 1).
    assert!((keys[2] - (0.25 + 0.05) * 1.0).abs() < 1e-12, "{keys:?}");
    assert!(gated_bis_keys(&b, &[0.0; 4], 0.8).is_err());
}

/// The regime map end to end on a tiny grid: one cell per (point, budget), every draw cached,
/// a heat map per budget, and a rerun from the cache writes the same results.
#[test]
fn the_regime_map_runs_caches_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("regime.toml");
    std::fs::write(
        &cfg,
        r#"name = "regime"
device = "cpu"
[corpus]
scale = 0.005
min_rollouts = 8
bench_questions = 40
[train]
lr_grid = [1e-2, 1e-1]
[regime]
dims = [8, 16]
post_error_success = [0.0]
difficulty_spread = [1.0]
nuisance_scale = [1.0]
budgets = [0.25]
corpus_seeds = [1, 2]
seeds = 2
"#,
    )
    .unwrap();
    let out = tmp.path().join("results");
    let run = || {
        mprm(&[
            "experiment",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let o = run();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let results = std::fs::read_to_string(out.join("regime/results.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&results).unwrap();
    let draws = v["draws"].as_array().unwrap();
    assert_eq!(draws.len(), 4, "2 points × 2 corpus draws");
    for d in draws {
        let deltas = d["deltas"][0][1].as_array().unwrap();
        assert_eq!(deltas.len(), 2, "one paired difference per training seed");
        assert!(d["full"].as_f64().unwrap() > 40.0);
    }
    let map = std::fs::read_to_string(out.join("regime/regime_map.md")).unwrap();
    assert_eq!(
        map.lines()
            .filter(|l| l.starts_with("| 8 ") || l.starts_with("| 16 "))
            .count(),
        2
    );
    assert!(out.join("regime/regime_map_25pct.svg").is_file());
    // The corpora are gone; the cached draws make a rerun write identical results.
    assert!(
        !files_under(&out)
            .keys()
            .any(|f| f.ends_with("features.safetensors")),
        "regime corpora are deleted once their cells are saved"
    );
    let o = run();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("regime/results.json")).unwrap(),
        results
    );
}

/// `mprm report` on results written before checks existed: the checks are appended (every byte
/// before them unchanged, so no unmeasured default appears as a measurement), marked post hoc in
/// the file and in the README, and a second report changes nothing.
#[test]
fn report_back_fills_post_hoc_checks_without_touching_the_measurements() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/results/regime");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("regime-copy");
    std::fs::create_dir_all(dir.join("regime")).unwrap();
    std::fs::copy(src.join("manifest.json"), dir.join("manifest.json")).unwrap();
    let original = std::fs::read_to_string(src.join("regime/results.json")).unwrap();
    // The committed file may already carry its checks; strip them to play an older run.
    let value: serde_json::Value = serde_json::from_str(&original).unwrap();
    let older = match value.get("checks") {
        Some(_) => {
            let cut = original
                .find(",\n  \"checks\"")
                .expect("checks appended at the end");
            format!("{}\n}}\n", &original[..cut])
        }
        None => original.clone(),
    };
    std::fs::write(dir.join("regime/results.json"), &older).unwrap();
    let dir_s = dir.to_str().unwrap();
    let o = mprm(&["report", dir_s]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let after = std::fs::read_to_string(dir.join("regime/results.json")).unwrap();
    let prefix = older.trim_end().strip_suffix('}').unwrap().trim_end();
    assert!(
        after.starts_with(prefix),
        "the measurements are left byte for byte"
    );
    let v: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(v["checks_post_hoc"], serde_json::Value::Bool(true));
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 108, "one per grid point and budget");
    assert!(checks.iter().all(|c| c["kind"] == "intervention"));
    assert!(
        v["draws"][0].get("lr_extended").is_none(),
        "no default written back"
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(
        readme.contains("Read these verdicts as post hoc"),
        "{readme}"
    );
    // Idempotent.
    let o = mprm(&["report", dir_s]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.join("regime/results.json")).unwrap(),
        after
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("README.md")).unwrap(),
        readme
    );
}
