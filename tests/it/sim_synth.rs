//! End-to-end checks of the simulator: calibration against the paper, agreement between every
//! file `mprm synth` writes, determinism across thread counts, and the pseudo-positive and
//! flip-noise knobs.

use std::collections::BTreeMap;
use std::path::Path;

use mprm::data::features::{FeatureBundle, FeatureDtype};
use mprm::sim::corpus::sample_statistics;
use mprm::sim::preset::{VISUALPRM400K_SOURCES, VISUALPRM400K_TARGETS};
use mprm::sim::{CorpusStats, FlipBase, SynthConfig, synthesize};
use serde_json::Value;

fn small(seed: u64) -> SynthConfig {
    SynthConfig {
        scale: 0.002,
        min_rollouts: 24,
        dim: 16,
        seed,
        bench_questions: 20,
        bench_candidates: 4,
        ..SynthConfig::default()
    }
}

/// Every file under `dir`, relative path → bytes.
fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn calibration_matches_the_paper_at_moderate_scale() {
    // v1's fit meets Table 1 exactly; the paper preset's lands inside the same tolerances.
    check_calibration(mprm::sim::ModelPreset::V1, true);
    check_calibration(mprm::sim::ModelPreset::Paper, false);
}

fn check_calibration(preset: mprm::sim::ModelPreset, exact: bool) {
    // Every source oversampled to 20,000 rollouts: per-source statistics are compared with
    // Table 8 directly, corpus-wide ones after re-weighting the sources to Table 8's mix.
    let cfg = SynthConfig {
        scale: 0.001,
        min_rollouts: 20_000,
        ..SynthConfig::for_preset(preset)
    };
    let (cal, stats) = sample_statistics(&cfg).unwrap();
    assert_eq!(cal.converged, exact, "{preset}");
    let mut weighted = [0.0f64; 5]; // rollouts, steps, zero steps, mixed, score
    for ((spec, s), fit) in VISUALPRM400K_SOURCES.iter().zip(&stats).zip(&cal.sources) {
        assert_eq!(s.rollouts, 20_000, "{}", spec.name);
        assert!(
            (s.mean_mc() - spec.mean_mc).abs() <= 0.01,
            "{}: mean MC {} vs Table 8 {}",
            spec.name,
            s.mean_mc(),
            spec.mean_mc
        );
        assert!(
            (s.steps_per_rollout() - spec.steps_per_rollout()).abs() <= 0.1,
            "{}: steps/rollout {} vs Table 8 {}",
            spec.name,
            s.steps_per_rollout(),
            spec.steps_per_rollout()
        );
        // Sampled and exact expectations agree too (guards the closed forms).
        assert!(
            (s.mixed_fraction() - fit.expected.mixed).abs() < 0.015,
            "{}",
            spec.name
        );
        let w = spec.rollouts as f64 / s.rollouts as f64;
        weighted[0] += w * s.rollouts as f64;
        weighted[1] += w * s.steps as f64;
        weighted[2] += w * s.zero_steps as f64;
        weighted[3] += w * s.mixed_rollouts as f64;
        weighted[4] += w * s.mc_correct_sum as f64 / 16.0;
    }
    let t = VISUALPRM400K_TARGETS;
    let steps_per_rollout = weighted[1] / weighted[0];
    let zero = weighted[2] / weighted[1];
    let mixed = weighted[3] / weighted[0];
    let mean_mc = weighted[4] / weighted[1];
    assert!(
        (steps_per_rollout - t.steps_per_rollout).abs() <= 0.1,
        "{steps_per_rollout}"
    );
    assert!(
        (zero - t.zero_mc_fraction).abs() <= 0.005,
        "zero-score steps {zero}"
    );
    assert!((mixed - t.mixed_fraction).abs() <= 0.01, "mixed {mixed}");
    // Table 8's per-source means imply ≈ 0.860, not Table 1's 0.8566 (paper-facts §3.3).
    assert!((mean_mc - 0.860).abs() <= 0.003, "mean MC {mean_mc}");
}

#[test]
fn pseudo_positive_rate_rises_with_post_error_success() {
    let shares: Vec<f64> = [0.03, 0.1, 0.3]
        .iter()
        .map(|&m| {
            let cfg = SynthConfig {
                scale: 0.01,
                post_error_success: Some(m),
                ..SynthConfig::default()
            };
            let (_, stats) = sample_statistics(&cfg).unwrap();
            let mut total = CorpusStats::new();
            stats.iter().for_each(|s| total.merge(s));
            total.pseudo_positive_share()
        })
        .collect();
    assert!(shares[0] > 0.0, "{shares:?}");
    assert!(shares[1] > 1.5 * shares[0], "{shares:?}");
    assert!(shares[2] > 1.5 * shares[1], "{shares:?}");
}

#[test]
fn same_seed_gives_identical_bytes_on_one_and_many_threads() {
    let one = tempfile::tempdir().unwrap();
    let many = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        dtype: FeatureDtype::Bf16,
        flip_noise: 0.1,
        ..small(7)
    };
    in_pool(1, || synthesize(&cfg, one.path()).unwrap());
    in_pool(3, || synthesize(&cfg, many.path()).unwrap());
    let a = read_tree(one.path());
    let b = read_tree(many.path());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs between 1 and 3 threads");
    }
    assert_eq!(a.len(), 38 + 5, "{:?}", a.keys());
    // A different seed changes the data (but not the layout of the output folder).
    in_pool(2, || synthesize(&small(8), other.path()).unwrap());
    let c = read_tree(other.path());
    assert_ne!(a["features.safetensors"], c["features.safetensors"]);
    assert_ne!(a["annotations/ai2d.jsonl"], c["annotations/ai2d.jsonl"]);
}

#[test]
fn annotations_do_not_depend_on_the_feature_settings() {
    let narrow = tempfile::tempdir().unwrap();
    let wide = tempfile::tempdir().unwrap();
    synthesize(&small(3), narrow.path()).unwrap();
    let cfg = SynthConfig {
        dim: 40,
        dtype: FeatureDtype::Bf16,
        ..small(3)
    };
    synthesize(&cfg, wide.path()).unwrap();
    let a = read_tree(narrow.path());
    let b = read_tree(wide.path());
    for (name, bytes) in &a {
        if name.starts_with("annotations/") || name == "bench.jsonl" {
            assert!(
                bytes == &b[name],
                "{name} changed with the feature settings"
            );
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn every_output_agrees_with_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(11);
    let manifest = synthesize(&cfg, dir.path()).unwrap();
    let bundle = FeatureBundle::open(dir.path().join("features.safetensors")).unwrap();
    let d = bundle.dim();
    assert_eq!(d, 16);

    // Annotation files: sorted stems = bundle sources; records in line order = bundle rollouts.
    let mut stems: Vec<String> = std::fs::read_dir(dir.path().join("annotations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    stems.sort();
    let stems: Vec<String> = stems
        .iter()
        .map(|f| f.strip_suffix(".jsonl").unwrap().to_string())
        .collect();
    assert_eq!(bundle.meta().sources, stems);
    assert_eq!(bundle.meta().seed, Some(11));

    let mut rollout = 0;
    let mut score_sum = 0.0;
    for (s, stem) in stems.iter().enumerate() {
        let text =
            std::fs::read_to_string(dir.path().join(format!("annotations/{stem}.jsonl"))).unwrap();
        for (line, raw) in text.lines().enumerate() {
            let rec: Value = serde_json::from_str(raw).unwrap();
            let keys: Vec<&str> = rec
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            for k in [
                "image",
                "question",
                "question_orig",
                "answer",
                "response",
                "steps_with_score",
                "num_mc_sequences",
            ] {
                assert!(keys.contains(&k), "{stem}:{line} lacks {k}");
            }
            assert_eq!(rec["num_mc_sequences"], 16);
            let question = rec["question"].as_str().unwrap();
            assert!(question.starts_with("<image>\n"));
            assert!(question.ends_with(rec["question_orig"].as_str().unwrap()));
            let steps = rec["steps_with_score"].as_array().unwrap();
            let texts: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
            assert_eq!(rec["response"].as_str().unwrap(), texts.join("\n\n"));
            assert!(texts.last().unwrap().contains("Final answer: "));

            assert_eq!(bundle.source()[rollout] as usize, s);
            assert_eq!(bundle.line().unwrap()[rollout], line as u64);
            let range = bundle.rollout_steps(rollout);
            assert_eq!(range.len(), steps.len());
            let mut stopped = false;
            for (st, j) in steps.iter().zip(range) {
                let k = st["num_mc_correct"].as_u64().unwrap();
                let total = st["num_mc_total"].as_u64().unwrap();
                let score = st["score"].as_f64().unwrap();
                assert_eq!(score, k as f64 / 16.0);
                assert_eq!(bundle.mc_scores()[j] as f64, score);
                assert!(total == 16 || (total == 0 && k == 0));
                if stopped {
                    assert_eq!(total, 0, "{stem}:{line}: sampled after an early stop");
                }
                stopped |= total == 0;
                score_sum += score;
            }
            rollout += 1;
        }
    }
    assert_eq!(rollout, bundle.n_rollouts());
    assert_eq!(manifest.corpus.rollouts as usize, bundle.n_rollouts());
    assert_eq!(manifest.corpus.steps as usize, bundle.n_steps());
    assert!((manifest.corpus.mean_mc.achieved - score_sum / bundle.n_steps() as f64).abs() < 1e-12);

    // Teacher: q* = σ(⟨w*, ϕ⟩ + b*) on the stored features, bounded norms, labels drawn from it.
    let teacher = bundle.teacher().unwrap();
    let feats = bundle.features().to_f32_vec();
    let p = &cfg.model;
    let bound = ((p.logit_clip + p.teacher_bias.abs()) / p.teacher_norm)
        .hypot(p.nuisance_bound * (d as f64).sqrt());
    let mut wrong = 0;
    for j in 0..bundle.n_steps() {
        let row = &feats[j * d..(j + 1) * d];
        let logit: f64 = row
            .iter()
            .zip(&teacher.w_star)
            .map(|(x, w)| *x as f64 * *w as f64)
            .sum::<f64>()
            + teacher.b_star as f64;
        assert!((sigmoid(logit) - teacher.q[j] as f64).abs() < 1e-5);
        let norm = row.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        assert!(norm <= bound + 1e-4);
        wrong += (teacher.true_correct[j] == 0) as usize;
    }
    let expected_wrong: f64 = teacher.q.iter().map(|q| 1.0 - *q as f64).sum();
    let sd = expected_wrong.sqrt();
    assert!(
        (wrong as f64 - expected_wrong).abs() < 5.0 * sd + 5.0,
        "{wrong} wrong steps, E = {expected_wrong}"
    );

    // Benchmark: the agreed record layout, and a bundle whose rollout i is record i.
    let bench = FeatureBundle::open(dir.path().join("bench.safetensors")).unwrap();
    assert_eq!(
        bench.meta().sources,
        [
            "DynaMath",
            "MMMU_DEV_VAL",
            "MathVerse_MINI_Vision_Only",
            "MathVision_MINI",
            "WeMath"
        ]
    );
    let text = std::fs::read_to_string(dir.path().join("bench.jsonl")).unwrap();
    let mut per_question: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut n = 0;
    for (i, raw) in text.lines().enumerate() {
        let rec: Value = serde_json::from_str(raw).unwrap();
        // Keys in the agreed order (serde_json's map sorts them, so look at the text).
        let order = [
            "image",
            "question",
            "answer",
            "response",
            "policy_model",
            "data_source",
            "split",
            "question_id",
            "final_correct",
        ];
        assert_eq!(rec.as_object().unwrap().len(), order.len());
        let positions: Vec<usize> = order
            .iter()
            .map(|k| raw.find(&format!("\"{k}\": ")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{raw}");
        assert!(rec["image"].is_array());
        let source = rec["data_source"].as_str().unwrap();
        assert_eq!(bench.source_name(i), source);
        assert_eq!(bench.line().unwrap()[i], i as u64);
        let steps = rec["response"]["steps"].as_array().unwrap();
        let labels = rec["response"]["process_correctness"].as_array().unwrap();
        assert_eq!(steps.len(), labels.len());
        let range = bench.rollout_steps(i);
        assert_eq!(range.len(), steps.len());
        for (l, j) in labels.iter().zip(range) {
            let l = l.as_i64().unwrap();
            let truth = bench.mc_scores()[j];
            assert_eq!(truth as u8, bench.teacher().unwrap().true_correct[j]);
            match l {
                1 => assert_eq!(truth, 1.0),
                -1 => assert_eq!(truth, 0.0),
                0 => {}
                other => panic!("label {other}"),
            }
        }
        let split = rec["split"].as_str().unwrap().to_string();
        assert!(split == "dev" || split == "test");
        let id = rec["question_id"].as_str().unwrap().to_string();
        assert!(id.starts_with(&format!("{source}-")));
        let entry = per_question.entry(id).or_insert((split.clone(), 0));
        assert_eq!(entry.0, split, "candidates of one question share the split");
        entry.1 += 1;
        assert!(rec["final_correct"].is_boolean());
        n += 1;
    }
    assert_eq!(n, bench.n_rollouts());
    assert_eq!(per_question.len(), 20);
    assert!(per_question.values().all(|(_, c)| *c == 4));
    assert!(per_question.values().any(|(s, _)| s == "dev"));
    assert!(per_question.values().any(|(s, _)| s == "test"));

    // The manifest is on disk and says what was returned.
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["seed"], 11);
    assert_eq!(on_disk["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(on_disk["corpus"]["steps"], manifest.corpus.steps);
}

#[test]
fn flip_noise_flips_the_requested_share_of_labels() {
    for base in [FlipBase::Mc, FlipBase::True] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            flip_noise: 0.2,
            flip_of: base,
            bench_questions: 0,
            ..small(5)
        };
        let manifest = synthesize(&cfg, dir.path()).unwrap();
        assert!(manifest.bench.is_none());
        assert!(!dir.path().join("bench.jsonl").exists());
        let bundle = FeatureBundle::open(dir.path().join("features.safetensors")).unwrap();
        let labels = bundle.labels().unwrap();
        let teacher = bundle.teacher().unwrap();
        let flipped = (0..bundle.n_steps())
            .filter(|&j| {
                let clean = match base {
                    FlipBase::Mc => bundle.mc_scores()[j] > 0.0,
                    FlipBase::True => teacher.true_correct[j] == 1,
                };
                (labels[j] == 1.0) != clean
            })
            .count();
        let share = flipped as f64 / bundle.n_steps() as f64;
        assert_eq!(flipped as u64, manifest.theory.flipped_labels);
        assert!((share - 0.2).abs() < 0.03, "{base:?}: {share}");
    }
}

#[test]
fn bad_settings_are_rejected_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for cfg in [
        SynthConfig { dim: 0, ..small(1) },
        SynthConfig {
            scale: 0.0,
            ..small(1)
        },
        SynthConfig {
            flip_noise: 0.5,
            ..small(1)
        },
        SynthConfig {
            model: mprm::sim::ModelParams {
                hard_continuation_share: 1.5,
                ..small(1).model
            },
            ..small(1)
        },
        SynthConfig {
            post_error_success: Some(1.5),
            ..small(1)
        },
    ] {
        let err = synthesize(&cfg, &out).unwrap_err();
        assert!(matches!(err, mprm::Error::InvalidArgument(_)), "{err}");
        assert!(!out.exists());
    }
}

/// Logistic regression with intercept by Newton's method (IRLS) with a small ridge.
/// `x` is row-major n × d; returns (w, b).
fn fit_logistic(x: &[f32], y: &[f64], d: usize) -> (Vec<f64>, f64) {
    let n = y.len();
    let p = d + 1;
    let mut beta = vec![0.0f64; p];
    for _ in 0..25 {
        let mut grad = vec![0.0f64; p];
        let mut hess = vec![0.0f64; p * p];
        for i in 0..n {
            let row = &x[i * d..(i + 1) * d];
            let mut z = beta[d];
            for k in 0..d {
                z += beta[k] * row[k] as f64;
            }
            let mu = sigmoid(z);
            let w = (mu * (1.0 - mu)).max(1e-12);
            let feat = |k: usize| if k == d { 1.0 } else { row[k] as f64 };
            for a in 0..p {
                grad[a] += (mu - y[i]) * feat(a);
                for b in 0..=a {
                    hess[a * p + b] += w * feat(a) * feat(b);
                }
            }
        }
        for a in 0..p {
            grad[a] += 1e-3 * beta[a];
            hess[a * p + a] += 1e-3;
            for b in 0..a {
                hess[b * p + a] = hess[a * p + b];
            }
        }
        // Solve hess · step = grad by Gaussian elimination (p is tiny).
        let mut m = hess.clone();
        let mut rhs = grad.clone();
        for c in 0..p {
            let piv = (c..p)
                .max_by(|&i, &j| m[i * p + c].abs().total_cmp(&m[j * p + c].abs()))
                .unwrap();
            for k in 0..p {
                m.swap(c * p + k, piv * p + k);
            }
            rhs.swap(c, piv);
            for r in c + 1..p {
                let f = m[r * p + c] / m[c * p + c];
                for k in c..p {
                    m[r * p + k] -= f * m[c * p + k];
                }
                rhs[r] -= f * rhs[c];
            }
        }
        let mut step = vec![0.0; p];
        for r in (0..p).rev() {
            let s: f64 = (r + 1..p).map(|k| m[r * p + k] * step[k]).sum();
            step[r] = (rhs[r] - s) / m[r * p + r];
        }
        beta.iter_mut().zip(&step).for_each(|(b, s)| *b -= s);
        if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-8 {
            break;
        }
    }
    let b = beta[d];
    beta.truncate(d);
    (beta, b)
}

/// Area under the ROC curve of `scores` for binary `labels` (ties count half).
fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += idx[i..=j].iter().filter(|&&k| labels[k]).count() as f64 * avg;
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[test]
fn mc_labels_teach_a_linear_head_about_true_correctness() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        scale: 0.01,
        dim: 12,
        bench_questions: 100,
        ..small(21)
    };
    synthesize(&cfg, dir.path()).unwrap();
    let train = FeatureBundle::open(dir.path().join("features.safetensors")).unwrap();
    let bench = FeatureBundle::open(dir.path().join("bench.safetensors")).unwrap();
    let d = train.dim();
    let y: Vec<f64> = train
        .mc_scores()
        .iter()
        .map(|&s| (s > 0.0) as u8 as f64)
        .collect();
    let (w, b) = fit_logistic(&train.features().to_f32_vec(), &y, d);

    let teacher = train.teacher().unwrap();
    let dot: f64 = w
        .iter()
        .zip(&teacher.w_star)
        .map(|(a, t)| a * *t as f64)
        .sum();
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let cos =
        dot / norm(&mut w.iter().copied()) / norm(&mut teacher.w_star.iter().map(|&x| x as f64));

    let bx = bench.features().to_f32_vec();
    let student: Vec<f64> = (0..bench.n_steps())
        .map(|j| b + (0..d).map(|k| w[k] * bx[j * d + k] as f64).sum::<f64>())
        .collect();
    let truth: Vec<bool> = bench.mc_scores().iter().map(|&s| s == 1.0).collect();
    let teacher_q: Vec<f64> = bench
        .teacher()
        .as_ref()
        .unwrap()
        .q
        .iter()
        .map(|&q| q as f64)
        .collect();
    let (student_auc, teacher_auc) = (auc(&student, &truth), auc(&teacher_q, &truth));
    // The student is trained on noisy MC labels from an easier corpus, yet it must find the
    // teacher's direction and rank the benchmark's true labels well above chance, without
    // beating the teacher itself.
    assert!(cos > 0.8, "cos(w, w*) = {cos}");
    assert!(
        student_auc > 0.75,
        "student AUC {student_auc}, teacher {teacher_auc}"
    );
    assert!(
        student_auc <= teacher_auc + 0.01,
        "{student_auc} vs {teacher_auc}"
    );
}

#[test]
fn early_stop_can_be_set_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SynthConfig {
        min_rollouts: 200,
        bench_questions: 0,
        ..small(13)
    };
    cfg.model.early_stop_by_source = BTreeMap::from([
        ("GeoQA+ (Open)".to_string(), 1.0),
        ("UniGeo".to_string(), 0.0),
    ]);
    let manifest = synthesize(&cfg, dir.path()).unwrap();
    let source = |name: &str| manifest.sources.iter().find(|s| s.name == name).unwrap();
    assert_eq!(source("GeoQA+ (Open)").early_stop, 1.0);
    assert_eq!(source("UniGeo").early_stop, 0.0);
    assert_eq!(source("AI2D").early_stop, cfg.model.early_stop);
    // The fit still targets Table 8 whatever the early-stop setting.
    let cal = &manifest.calibration.sources;
    for name in ["GeoQA+ (Open)", "UniGeo"] {
        let fit = cal.iter().find(|f| f.name == name).unwrap();
        assert!((fit.expected.mean_mc() - fit.target_mean_mc).abs() < 1e-7);
    }

    let records = |stem: &str| -> Vec<Vec<(u64, u64)>> {
        std::fs::read_to_string(dir.path().join(format!("annotations/{stem}.jsonl")))
            .unwrap()
            .lines()
            .map(|l| {
                let rec: Value = serde_json::from_str(l).unwrap();
                rec["steps_with_score"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| {
                        (
                            s["num_mc_correct"].as_u64().unwrap(),
                            s["num_mc_total"].as_u64().unwrap(),
                        )
                    })
                    .collect()
            })
            .collect()
    };
    let mut cut = 0;
    for steps in records("geoqa+_open") {
        if let Some(first_zero) = steps.iter().position(|&(k, _)| k == 0) {
            assert!(
                steps[first_zero + 1..].iter().all(|&s| s == (0, 0)),
                "{steps:?}"
            );
            cut += (first_zero + 1 < steps.len()) as usize;
        }
    }
    assert!(
        cut > 5,
        "early stop should cut some GeoQA+ (Open) rollouts, cut {cut}"
    );
    let mut non_monotone = 0;
    for steps in records("unigeo") {
        assert!(steps.iter().all(|&(_, total)| total == 16));
        non_monotone += steps.windows(2).any(|w| w[0].0 == 0 && w[1].0 > 0) as usize;
    }
    assert!(
        non_monotone > 0,
        "without early stop a zero can be followed by a positive"
    );
}

/// FNV-1a over a file's bytes (a safetensors file's tensor payload only, after its header):
/// a fixed fingerprint of the exact output.
fn fnv1a(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let payload = if path.extension().is_some_and(|e| e == "safetensors") {
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        &bytes[8 + header..]
    } else {
        &bytes[..]
    };
    payload.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `--preset v1` is the first simulator byte for byte: these are the files of the corpus behind
/// the committed v1 results (`experiments/results/main`, corpus fp1-11341-23196b5a69e1fb98),
/// which the v1 code wrote before the v2 knobs existed.
#[test]
fn the_v1_preset_reproduces_the_first_model_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v1");
    let cfg = SynthConfig {
        scale: 0.02,
        dim: 256,
        seed: 42,
        ..SynthConfig::for_preset(mprm::sim::ModelPreset::V1)
    };
    let manifest = synthesize(&cfg, &out).unwrap();
    assert_eq!(
        manifest.corpus_fingerprint.unwrap().to_string(),
        "fp1-11341-23196b5a69e1fb98"
    );
    // The safetensors headers record every model knob, the v2 ones (at 0) included, so the
    // tensor payloads are compared; text files whole.
    let got: Vec<(&str, u64)> = [
        "features.safetensors",
        "bench.safetensors",
        "truth.safetensors",
        "bench.jsonl",
        "annotations/ai2d.jsonl",
        "annotations/geoqa+_open.jsonl",
    ]
    .into_iter()
    .map(|file| (file, fnv1a(&out.join(file))))
    .collect();
    let want: Vec<(&str, u64)> = vec![
        ("features.safetensors", 0x3d2f_7302_c4a1_a253),
        ("bench.safetensors", 0xcf6f_24fc_b16a_19e4),
        ("truth.safetensors", 0xe8b0_13f3_47ed_4456),
        ("bench.jsonl", 0x4cf3_99ef_6e48_e4fc),
        ("annotations/ai2d.jsonl", 0x23c5_503f_5968_51d4),
        ("annotations/geoqa+_open.jsonl", 0x64ba_a400_e4cd_53a8),
    ];
    assert_eq!(got, want, "{got:x?}");
}

/// The v2 (`paper`) model's point: its low-MC positives are mostly hard-but-correct steps, where
/// v1's were mostly wrong, while Table 1's fitted statistics stay matched.
#[test]
fn the_paper_preset_fills_the_low_mc_region_with_hard_but_correct_steps() {
    let dir = tempfile::tempdir().unwrap();
    let wrong_given_low_k = |preset| {
        let cfg = SynthConfig {
            scale: 0.02,
            dim: 8,
            seed: 5,
            bench_questions: 0,
            ..SynthConfig::for_preset(preset)
        };
        let m = synthesize(&cfg, &dir.path().join(format!("{preset}"))).unwrap();
        let c = &m.corpus.counts;
        let low: u64 = c.steps_by_k[1..4].iter().sum();
        let wrong: u64 = c.incorrect_by_k[1..4].iter().sum();
        let t = &m.corpus;
        (
            wrong as f64 / low as f64,
            t.counts.zero_steps as f64 / t.counts.steps as f64,
        )
    };
    let (v1, _) = wrong_given_low_k(mprm::sim::ModelPreset::V1);
    let (v2, zero) = wrong_given_low_k(mprm::sim::ModelPreset::Paper);
    assert!(v1 > 0.6, "v1 P(wrong | K = 1..3) = {v1}");
    assert!(v2 < 0.3, "paper P(wrong | K = 1..3) = {v2}");
    assert!((zero - 0.0357).abs() < 0.006, "zero-score steps {zero}");
}

/// The held-out scorecard is in the manifest, judged by its stated rule.
#[test]
fn the_manifest_carries_the_held_out_scorecard() {
    let dir = tempfile::tempdir().unwrap();
    let m = synthesize(&small(3), &dir.path().join("c")).unwrap();
    assert_eq!(m.held_out.len(), 6);
    for r in &m.held_out {
        assert_eq!(
            r.pass,
            (r.simulator - r.paper).abs() <= mprm::sim::scorecard::RELATIVE_TOLERANCE * r.paper
        );
        assert!(r.simulator.is_finite() && r.simulator > 0.0, "{r:?}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("c/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(json["held_out"].as_array().unwrap().len(), 6);
}
