//! The theory checks end to end on a small simulated corpus: every check lands within a
//! tolerance derived from its own sampling error, the results do not depend on the thread count
//! or on resuming from cells, and `mprm report` regenerates identical files from them.

use std::path::Path;

use mprm::device::Device;
use mprm::experiments::cells::CellStore;
use mprm::experiments::checks::{Check, CheckKind, Verdict};
use mprm::experiments::config::{CorpusConfig, TrainSettings};
use mprm::experiments::context::{Corpus, ExperimentContext};
use mprm::experiments::manifest::Manifest;
use mprm::experiments::runner::regenerate_report;
use mprm::experiments::theory::{self, TheoryConfig, TheoryResults};
use mprm::output::write_json;

use crate::common::files_in;

fn corpus(dir: &Path) -> Corpus {
    Corpus::prepare(
        &CorpusConfig {
            scale: 0.005,
            dim: 16,
            seed: 3,
            min_rollouts: 40,
            bench_questions: 60,
            ..CorpusConfig::default()
        },
        dir,
    )
    .unwrap()
}

fn config() -> TheoryConfig {
    TheoryConfig {
        label_draws: 16,
        mixture_draws: 400,
        posterior_draws: 200_000,
        dev_steps: 512,
        bootstrap: 50,
        grand_inits: 2,
        ..TheoryConfig::default()
    }
}

fn run(corpus: &Corpus, cells: &Path, train: &TrainSettings) -> TheoryResults {
    let cells = CellStore::open(cells).unwrap();
    let ctx = ExperimentContext {
        corpus,
        cells: &cells,
        device: Device::Cpu,
        seed: 11,
        train,
    };
    theory::run(&config(), &ctx).unwrap()
}

#[test]
fn theory_checks_hold_and_reports_regenerate_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = corpus(tmp.path());
    let train = TrainSettings {
        lr_grid: vec![1e-2, 3e-2],
        ..TrainSettings::default()
    };
    let r = run(&corpus, &tmp.path().join("a"), &train);

    // The same numbers on one thread with nothing cached, and again when resumed from cells.
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| run(&corpus, &tmp.path().join("b"), &train));
    // (Compared as JSON: NaN, written as null, is then equal to itself.)
    let json = |r: &TheoryResults| serde_json::to_string(r).unwrap();
    assert_eq!(
        json(&r),
        json(&single),
        "results depend on the thread count"
    );
    let resumed = run(&corpus, &tmp.path().join("a"), &train);
    assert_eq!(
        json(&r),
        json(&resumed),
        "resuming from cells changed the results"
    );

    // Eq. 5 and 6: under the formula, each bin's relative error is a mean of 16 independent
    // per-draw errors, so it lies within two 95% half-widths (≈ 4 standard errors) of 0 unless
    // the formula is wrong; pooled over all steps its standard error is below 1%.
    for c in std::iter::once(&r.eq5).chain(&r.eq6) {
        assert_eq!(c.bins.len(), 10);
        assert_eq!(
            c.bins.iter().map(|b| b.steps).sum::<usize>(),
            corpus.bundle.n_steps()
        );
        for b in &c.bins {
            assert!(
                b.rel_error.mean.abs() <= 2.0 * b.rel_error.half_width,
                "η = {}, q* in [{}, {}]: {:?}",
                c.eta,
                b.q_lo,
                b.q_hi,
                b.rel_error
            );
        }
        assert!(c.pooled.rel_error.mean.abs() < 0.04, "{:?}", c.pooled);
    }
    // The measurement can tell the formulas apart: with η = 0.2, Eq. 5 misses the confident bins
    // by far (the noise floor).
    let noisy = r.eq6.iter().find(|c| c.eta == 0.2).unwrap();
    let top = noisy.bins.last().unwrap();
    assert!(top.measured.mean > 5.0 * top.noiseless, "{top:?}");

    // Lemma 2: the Monte Carlo mean agrees with θ − A/n within 1% overall (its standard error is
    // a few tenths of a percent here), the exact Poisson-binomial mean to rounding, and nearly
    // every rollout's bias lies in [0, θ/n] once Monte Carlo error is allowed for.
    let m = &r.lemma2;
    assert!(m.all.rel_error.value.abs() < 0.01, "{:?}", m.all.rel_error);
    assert!(m.exact_max_abs_diff < 1e-12);
    assert!(m.all.within.value > 0.99, "{:?}", m.all.within);
    assert!(m.mixture_vs_theta.value > 0.0);

    // Lemma 3: strictly decreasing at every τ, and the simulated posterior frequency within four
    // binomial standard errors of the closed form wherever it has 2,000 draws or more.
    for tau in &r.lemma3.taus {
        assert!(tau.strictly_decreasing, "τ = {}", tau.tau);
        for row in tau.rows.iter().filter(|row| row.simulated.trials >= 2000) {
            let n = row.simulated.trials as f64;
            let se = (row.closed * (1.0 - row.closed) / n).sqrt();
            assert!(
                (row.simulated.value - row.closed).abs() <= 4.0 * se + 1e-3,
                "τ = {}, k = {}: {:?} vs {}",
                tau.tau,
                row.k,
                row.simulated,
                row.closed
            );
        }
    }

    // Informativeness: at a random init the MC labels and the clean targets pull the head the
    // same way on average; no score's top rollouts can beat the top by a(x) itself.
    let inf = &r.informativeness;
    assert_eq!(inf.points.len(), 3);
    assert!(inf.points[0].mean_a.mean > 0.0);
    for p in &inf.points {
        assert_eq!(p.scores.len(), 10);
        for s in &p.scores {
            for (t, o) in s.top.iter().zip(&p.oracle_top) {
                assert!(t.mean.mean <= o.mean.mean + 1e-9, "{}: {t:?}", s.score);
            }
            assert!((-1.0..=1.0).contains(&s.vs_a.value));
        }
    }
    // The calibration-free targets are measured at every point (the init is a seeded uniform
    // draw, so ‖w‖ > 0 and cos(w, w*) is defined) and ranked for every deconfounded score.
    for p in &inf.points {
        let d = p.deconfounded.as_ref().expect("measured with a dev set");
        let cos = d.cos_w_star.expect("cos(w, w*) defined");
        assert!((-1.0..=1.0).contains(&cos), "{}: {cos}", p.point);
        assert!(d.mean_cos_gain.unwrap().mean.is_finite());
        assert!((0.0..=1.0).contains(&d.positive_cos_gain.unwrap()));
        assert!(d.cos_second_order_share.unwrap() < 0.5, "{}", p.point);
        assert!((0.0..=1.0).contains(&d.dev_auc.unwrap()));
        assert!(d.mean_auc_gain.unwrap().mean.abs() < 1.0);
        assert!((0.0..=1.0).contains(&d.zero_auc_gain_real.unwrap()));
        for s in &d.scores {
            let (c, a) = (s.cos_gain.unwrap(), s.auc_gain.unwrap());
            assert!((-1.0..=1.0).contains(&c.value), "{}: {c:?}", s.score);
            assert!((-1.0..=1.0).contains(&a.value), "{}: {a:?}", s.score);
        }
    }
    for h in &r.finding6.heatmaps {
        let total: usize = h.counts.iter().flatten().sum();
        assert_eq!(total, corpus.bundle.n_rollouts(), "{}", h.name);
    }
    assert_eq!(r.finding6.targets.len(), 2 + 2 * 4);

    // Verdicts: every identity holds (else it is a bug), and the empirical checks are present,
    // each with its rule, decided on the stored interval.
    let identities: Vec<&Check> = r
        .checks
        .iter()
        .filter(|c| c.kind == CheckKind::Identity)
        .collect();
    assert_eq!(identities.len(), 1 + r.eq6.len() + 2 + r.lemma3.taus.len());
    for c in &identities {
        assert_eq!(c.verdict, Verdict::Holds, "{c:?}");
    }
    let empirical: Vec<&Check> = r
        .checks
        .iter()
        .filter(|c| c.kind == CheckKind::Empirical)
        .collect();
    assert_eq!(empirical.len(), 3);
    for c in &empirical {
        assert!(c.rule.contains("agrees if"), "{c:?}");
        assert!(c.ci[0] <= c.estimate && c.estimate <= c.ci[1], "{c:?}");
    }

    // The report: every table and figure, byte-identical when regenerated.
    let out = tmp.path().join("results");
    write_json(
        out.join("manifest.json"),
        &Manifest {
            experiment: "theory-test".into(),
            config: serde_json::Value::Null,
            seed: 11,
            crate_version: "test".into(),
            git_commit: "unknown".into(),
            device: "cpu".into(),
            corpus_fingerprint: None,
        },
    )
    .unwrap();
    write_json(out.join("theory").join("results.json"), &r).unwrap();
    let first = regenerate_report(&out).unwrap();
    let before = files_in(&out.join("theory"));
    let readme = std::fs::read(out.join("README.md")).unwrap();
    regenerate_report(&out).unwrap();
    assert_eq!(before, files_in(&out.join("theory")));
    assert_eq!(readme, std::fs::read(out.join("README.md")).unwrap());
    for stem in [
        "eq5",
        "eq6",
        "lemma2",
        "lemma3",
        "informativeness",
        "finding6_best",
    ] {
        for ext in ["md", "csv", "json"] {
            assert!(
                before.contains_key(&format!("{stem}.{ext}")),
                "{stem}.{ext}"
            );
        }
    }
    for stem in [
        "eq5_plot",
        "lemma3_eta_eff",
        "finding6_heatmap_grad_teacher",
    ] {
        for ext in ["svg", "png"] {
            assert!(
                before.contains_key(&format!("{stem}.{ext}")),
                "{stem}.{ext}"
            );
        }
    }
    assert!(first.key_tables.contains("finding5-low-mc-positives"));
    assert!(!first.key_tables.contains("eq5-identity"));
    for stem in [
        "checks",
        "identities",
        "wrong_by_count",
        "informativeness_deconfounded",
    ] {
        assert!(before.contains_key(&format!("{stem}.md")), "{stem}.md");
    }
    let readme = String::from_utf8(readme).unwrap();
    assert!(readme.contains("## Theory checks"));
    assert!(readme.contains("Targets free of calibration"));
}

/// The empirical checks on a corpus and on its negative control (MC annotations shuffled within
/// each source): on the faithful corpus the low-MC positives are wrong more often and label
/// mixture tracks the teacher's uncertainty; under the control every empirical check must say
/// `disagrees`, which is what shows it can fail.
#[test]
fn every_empirical_check_disagrees_under_its_negative_control() {
    let tmp = tempfile::tempdir().unwrap();
    let verdicts = |labels: mprm::sim::McLabels, dir: &Path| -> Vec<Check> {
        let corpus = Corpus::prepare(
            &CorpusConfig {
                scale: 0.02,
                dim: 16,
                seed: 5,
                bench_questions: 60,
                mc_labels: labels,
                ..CorpusConfig::default()
            },
            dir,
        )
        .unwrap();
        let cells = CellStore::open(dir).unwrap();
        let train = TrainSettings::default();
        let ctx = ExperimentContext {
            corpus: &corpus,
            cells: &cells,
            device: Device::Cpu,
            seed: 11,
            train: &train,
        };
        let truth = theory::truth::StepTruth::open(&dir.join("corpus"), &corpus.bundle).unwrap();
        let rates: Vec<f64> = (truth.success_rate.as_ref().expect("the simulator's r"))
            .iter()
            .map(|&r| f64::from(r))
            .collect();
        let prior = theory::reliability::fit_beta(&rates).unwrap();
        let teacher = theory::TeacherView::of(&ctx).unwrap();
        let cfg = TheoryConfig {
            bootstrap: 100,
            ..TheoryConfig::default()
        };
        theory::empirical::run(&cfg, &ctx, &teacher, &truth, &prior)
            .unwrap()
            .checks(&cfg.rules)
    };
    let faithful = verdicts(mprm::sim::McLabels::Faithful, &tmp.path().join("f"));
    let control = verdicts(mprm::sim::McLabels::Shuffled, &tmp.path().join("c"));
    assert_eq!(control.len(), 3);
    for c in &control {
        assert_eq!(c.verdict, Verdict::Disagrees, "{c:?}");
    }
    let by_id = |id: &str| faithful.iter().find(|c| c.id == id).unwrap();
    assert_eq!(by_id("finding5-low-mc-positives").verdict, Verdict::Agrees);
    assert_eq!(by_id("lemma2-mc-labels").verdict, Verdict::Agrees);
}

/// The interventions end to end on small corpora: the factorial's cells are matched on length
/// (its standardised mean difference stays small while the unmatchable zero-score count does
/// not), every verdict is present, and a rerun from scratch gives the same numbers.
#[test]
fn interventions_are_matched_replicated_and_deterministic() {
    use mprm::experiments::intervention::{self, InterventionConfig};
    let cfg = InterventionConfig {
        corpus_seeds: vec![5, 6],
        factorial_seeds: 2,
        datamodel_subsets: 20,
        datamodel_tilt: 1.0,
        bootstrap: 20,
        grand_inits: 1,
        tracin_checkpoints: 2,
        ..InterventionConfig::default()
    };
    let base = CorpusConfig {
        scale: 0.01,
        dim: 16,
        bench_questions: 60,
        ..CorpusConfig::default()
    };
    let train = TrainSettings {
        lr_grid: vec![1e-2, 3e-2, 1e-1],
        ..TrainSettings::default()
    };
    let run = |dir: &Path| {
        let cells = CellStore::open(dir).unwrap();
        intervention::run(&cfg, &base, &train, Device::Cpu, 11, dir, &cells).unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let r = run(&tmp.path().join("a"));
    assert_eq!(r.draws.len(), 2);
    // Five on Overall and the datamodel, two on the clean dev loss.
    assert_eq!(r.checks.len(), 7);
    assert_eq!(r.dev_loss_effects.len(), 3);
    assert_eq!(r.cos_effects.len(), 3);
    for name in ["TracIn", "influence", "ORACLE S(x)", "ORACLE a(x)"] {
        let row = r.lds.iter().find(|p| p.name.starts_with(name));
        let row = row.unwrap_or_else(|| panic!("an LDS row for {name}"));
        assert!(
            row.per_draw.iter().all(|v| v.is_finite()),
            "{name}: {row:?}"
        );
    }
    assert!(r.checks.iter().all(|c| c.kind == CheckKind::Intervention));
    for d in &r.draws {
        assert!(d.factorial.cell_size >= 20, "{}", d.factorial.cell_size);
        assert_eq!(d.factorial.replicates.len(), 2);
        assert_eq!(d.datamodel.runs.len(), 20);
        // Steps are matched by construction; zero-score steps cannot be (a mixed rollout has
        // at least one, an all-positive one none), and the table must show it.
        let steps = d.factorial.balance[0];
        let zeros = d.factorial.balance[1];
        assert!(steps[0].abs() < 0.1 && steps[1].abs() < 0.1, "{steps:?}");
        assert!(zeros[0] > 0.5, "{zeros:?}");
        for rep in &d.factorial.replicates {
            assert!(rep.overall.iter().all(|v| (0.0..=100.0).contains(v)));
            // A BCE against q* ∈ (0, 1) is positive (a head trained on all-positive rollouts
            // can sit well above ln 2, so there is no useful upper bound).
            assert!(
                rep.clean_dev_loss.iter().all(|v| v.is_finite() && *v > 0.0),
                "{:?}",
                rep.clean_dev_loss
            );
            assert!(rep.teacher_cos.iter().all(|v| (-100.0..=100.0).contains(v)));
        }
        // Tilted subsets vary in mixture more than uniform ones would, and record their tilt.
        assert!(d.datamodel.runs.iter().all(|run| run.tilt.len() == 2));
    }
    // The interval of an effect is over corpus draws.
    assert_eq!(r.overall_effects[0].over_draws.n, 2);
    assert_eq!(r.overall_effects[0].draw_means.len(), 2);
    let again = run(&tmp.path().join("b"));
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        serde_json::to_string(&again).unwrap()
    );
    let rendered = intervention::render(&r);
    assert!(rendered.summary.contains("2 corpus draws"));
}
