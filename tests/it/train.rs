//! The Burn trainer end to end: learning the teacher, determinism, resume, bad inputs.

use std::path::Path;

use crate::train_support::{Teacher, cosine, train_bundle, write_bench};
use mprm::data::bench::{BenchSet, SplitSettings};
use mprm::data::labels::LabelScheme;
use mprm::device::Device;
use mprm::eval::evaluate_head;
use mprm::gradnorm;
use mprm::head::{Activation, HeadKind, HeadParams};
use mprm::prm_model::ModelSpec;
use mprm::train::{self, ClipAt, RunOptions, TrainConfig, TrainInputs, checkpoint};

const DIM: usize = 12;

fn bench(dir: &Path, teacher: &Teacher) -> BenchSet {
    let (jsonl, features) = write_bench(dir, 60, 4, teacher, 77);
    BenchSet::open(jsonl, Some(&features), SplitSettings::default()).unwrap()
}

fn small_config(head: ModelSpec) -> TrainConfig {
    let mut c = TrainConfig::new(head);
    c.global_batch = 64;
    c.micro_batch = 2;
    c.labels = LabelScheme::True;
    c.optim.lr = 0.05;
    c.seed = 5;
    c
}

fn mlp() -> ModelSpec {
    ModelSpec::Head(HeadKind::Mlp {
        hidden: 8,
        activation: Activation::Gelu,
    })
}

#[test]
fn linear_head_recovers_the_teacher_and_beats_the_untrained_head() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = Teacher::new(DIM, 4.0, 1);
    let bundle = train_bundle(3000, DIM, &teacher, 2);
    let bench = bench(dir.path(), &teacher);
    // A single pass, as the protocol: 47 updates of 64 rollouts.
    let config = small_config(ModelSpec::LINEAR);
    let out = train::run(&config, &bundle, None, Some(&bench), Device::Cpu, None).unwrap();
    assert!(out.completed());
    assert_eq!(out.total_steps, 3000usize.div_ceil(64));
    let Some(HeadParams::Linear(head)) = &out.final_head else {
        panic!("a linear head")
    };
    let cos = cosine(&head.w, &teacher.w);
    assert!(cos >= 0.9, "cosine to w* = {cos}");

    let trained = out.last_eval().unwrap().bench.headline();
    let untrained = evaluate_head(
        &HeadParams::init(HeadKind::Linear, DIM, config.seed),
        &bench,
    )
    .unwrap()
    .bench
    .headline();
    assert!(
        trained > untrained + 0.1,
        "trained {trained} vs untrained {untrained}"
    );
    // The trainer's own final evaluation is the evaluation of its exported head.
    let again = evaluate_head(out.final_head.as_ref().unwrap(), &bench).unwrap();
    assert_eq!(&again, out.last_eval().unwrap());
    // Reranking with the trained PRM beats a random pick.
    let bon = again.best_of_n.unwrap();
    assert_eq!(bon.n_questions, 30);
    assert!(bon.picks[0].accuracy > bon.random, "{bon:?}");
    assert!(bon.oracle >= bon.picks[0].accuracy);
    // The loss went down.
    let first = out.history.first().unwrap().loss;
    let last = out.history.last().unwrap().loss;
    assert!(last < first, "loss {first} → {last}");
}

#[test]
fn context_head_trains_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = Teacher::new(DIM, 4.0, 3);
    let bundle = train_bundle(1200, DIM, &teacher, 4);
    let bench = bench(dir.path(), &teacher);
    let mut config = small_config(ModelSpec::context(8));
    config.epochs = 2;
    config.optim.lr = 0.02;
    let out = train::run(&config, &bundle, None, Some(&bench), Device::Cpu, None).unwrap();
    assert!(
        out.final_head.is_none(),
        "context heads have no HeadParams form"
    );
    let report = out.last_eval().unwrap();
    assert!(
        report.bench.headline() > 0.7,
        "context head headline {}",
        report.bench.headline()
    );
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

#[test]
fn identical_runs_write_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = Teacher::new(DIM, 3.0, 9);
    let bundle = train_bundle(400, DIM, &teacher, 10);
    let bench = bench(dir.path(), &teacher);
    let mut config = small_config(mlp());
    config.checkpoint_every = 3;
    let runs: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| {
            let out_dir = dir.path().join(name);
            train::run(
                &config,
                &bundle,
                None,
                Some(&bench),
                Device::Cpu,
                Some(&out_dir),
            )
            .unwrap();
            out_dir
        })
        .collect();
    for file in [
        "metrics.jsonl",
        "manifest.json",
        "config.toml",
        "checkpoints/LATEST",
        "checkpoints/step-000003/model.mpk",
        "checkpoints/step-000003/head.safetensors",
        "checkpoints/step-000003/optimizer.safetensors",
        "checkpoints/step-000003/state.json",
        "checkpoints/step-000007/head.safetensors",
        "checkpoints/step-000007/eval.json",
    ] {
        assert_eq!(read(runs[0].join(file)), read(runs[1].join(file)), "{file}");
    }
    // The exported head is what `gradnorm --at` will read.
    let head = HeadParams::load(runs[0].join("checkpoints/step-000007/head.safetensors")).unwrap();
    assert_eq!(head.kind(), mlp().head_kind().unwrap());
    // 400 rollouts / 64 = 7 steps, checkpoints after 3, 6 and 7; an eval at each.
    let metrics = String::from_utf8(read(runs[0].join("metrics.jsonl"))).unwrap();
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.contains("\"kind\":\"step\""))
            .count(),
        7
    );
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.contains("\"kind\":\"eval\""))
            .count(),
        3
    );
}

#[test]
fn resume_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = Teacher::new(DIM, 3.0, 11);
    let bundle = train_bundle(500, DIM, &teacher, 12);
    let bench = bench(dir.path(), &teacher);
    let mut config = small_config(mlp());
    config.checkpoint_every = 3;
    config.epochs = 2; // the resume crosses an epoch boundary (8 steps per epoch)
    let inputs = TrainInputs {
        config: &config,
        bundle: &bundle,
        subset: None,
        bench: Some(&bench),
    };
    let full = dir.path().join("full");
    let whole = train::execute(
        inputs,
        &RunOptions {
            out_dir: Some(full.clone()),
            ..Default::default()
        },
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(whole.total_steps, 16);

    // Interrupted after step 10 (last checkpoint at 9), then resumed.
    let cut = dir.path().join("cut");
    let opts = |resume, stop_after| RunOptions {
        out_dir: Some(cut.clone()),
        resume,
        stop_after,
        ..Default::default()
    };
    let partial = train::execute(inputs, &opts(false, Some(10)), Device::Cpu).unwrap();
    assert_eq!(partial.steps_done, 10);
    assert!(!partial.completed());
    assert_eq!(
        checkpoint::latest(&cut).unwrap().unwrap(),
        cut.join("checkpoints/step-000009")
    );
    let resumed = train::execute(inputs, &opts(true, None), Device::Cpu).unwrap();
    assert!(resumed.completed());
    assert_eq!(resumed.final_head, whole.final_head);
    assert_eq!(resumed.history, whole.history);
    assert_eq!(resumed.evals, whole.evals);
    for file in [
        "metrics.jsonl",
        "checkpoints/step-000016/head.safetensors",
        "checkpoints/step-000016/optimizer.safetensors",
        "checkpoints/step-000016/model.mpk",
    ] {
        assert_eq!(read(full.join(file)), read(cut.join(file)), "{file}");
    }
    // A run folder is never silently overwritten, and resuming needs a checkpoint.
    let e = train::execute(inputs, &opts(false, None), Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("already holds a run"), "{e}");
    let empty = dir.path().join("empty");
    let e = train::execute(
        inputs,
        &RunOptions {
            out_dir: Some(empty),
            resume: true,
            ..Default::default()
        },
        Device::Cpu,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no checkpoint"), "{e}");
    // Resuming under different settings is refused.
    let mut other = config.clone();
    other.optim.lr = 0.01;
    let e = train::execute(
        TrainInputs {
            config: &other,
            ..inputs
        },
        &opts(true, None),
        Device::Cpu,
    )
    .unwrap_err();
    assert!(e.to_string().contains("different settings"), "{e}");
}

#[test]
fn nan_loss_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = Teacher::new(DIM, 3.0, 13);
    let bundle = train_bundle(300, DIM, &teacher, 14);
    let mut config = small_config(ModelSpec::LINEAR);
    config.checkpoint_every = 1;
    config.optim.warmup_fraction = 0.0;
    config.optim.weight_decay = 0.0;
    config.optim.grad_clip = 0.0;
    config.optim.lr = 1e38; // the first update overflows the logits of the second batch
    for (clip, stopped) in [
        (ClipAt::Host, "before applying it"),
        (ClipAt::Device, "with nothing of that step saved"),
    ] {
        let run_dir = dir.path().join(format!("run-{clip:?}"));
        let opts = RunOptions {
            out_dir: Some(run_dir.clone()),
            clip,
            ..Default::default()
        };
        let inputs = TrainInputs {
            config: &config,
            bundle: &bundle,
            subset: None,
            bench: None,
        };
        let e = train::execute(inputs, &opts, Device::Cpu).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("training: loss"), "{msg}");
        assert!(
            msg.contains("optimiser step 2")
                && msg.contains("step-000001")
                && msg.contains(stopped),
            "{msg}"
        );
        assert_eq!(
            checkpoint::latest(&run_dir).unwrap().unwrap(),
            run_dir.join("checkpoints/step-000001")
        );
        assert!(!run_dir.join("checkpoints/step-000002").exists());
        let manifest = String::from_utf8(read(run_dir.join("manifest.json"))).unwrap();
        assert!(manifest.contains("\"status\": \"failed\""), "{manifest}");
    }
}

/// The clip decided on the device (what a GPU run does, with no host read before its update)
/// trains the run the host-side clip trains: on the CPU, with the clip acting on every step, the
/// losses and norms agree to f32 rounding and the final heads to 1e-5 of their scale. The CPU's
/// default stays the host-side clip (the committed bits). Negative control: without the clip
/// the head ends far away, so the agreement is not for want of clipping.
#[test]
fn device_side_clipping_trains_the_host_side_run() {
    let teacher = Teacher::new(DIM, 3.0, 21);
    let bundle = train_bundle(400, DIM, &teacher, 22);
    let mut config = small_config(mlp());
    config.optim.grad_clip = 0.05;
    config.epochs = 2;
    let run = |config: &TrainConfig, clip| {
        let inputs = TrainInputs {
            config,
            bundle: &bundle,
            subset: None,
            bench: None,
        };
        let opts = RunOptions {
            clip,
            ..Default::default()
        };
        train::execute(inputs, &opts, Device::Cpu).unwrap()
    };
    let flat = |o: &train::TrainOutcome| gradnorm::flatten_params(o.final_head.as_ref().unwrap());
    let host = run(&config, ClipAt::Host);
    assert_eq!(
        flat(&run(&config, ClipAt::Auto)),
        flat(&host),
        "the CPU clips on the host"
    );
    assert!(
        host.history.iter().all(|s| s.grad_norm > 0.05),
        "the clip acts on every step"
    );
    let device = run(&config, ClipAt::Device);
    assert_eq!(device.history.len(), host.history.len());
    for (d, h) in device.history.iter().zip(&host.history) {
        assert!(
            (d.loss - h.loss).abs() <= 1e-5 * h.loss.abs(),
            "{d:?} vs {h:?}"
        );
        assert!(
            (d.grad_norm - h.grad_norm).abs() <= 1e-5 * h.grad_norm,
            "{d:?} vs {h:?}"
        );
    }
    let (a, b) = (flat(&device), flat(&host));
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gap = |x: &[f32]| {
        x.iter()
            .zip(&b)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()))
    };
    assert!(
        gap(&a) <= 1e-5 * scale,
        "device clip: {} of {scale}",
        gap(&a)
    );
    let mut free = config.clone();
    free.optim.grad_clip = 0.0;
    let unclipped = flat(&run(&free, ClipAt::Device));
    assert!(
        gap(&unclipped) > 1e-2 * scale,
        "unclipped: {}",
        gap(&unclipped)
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = Teacher::new(DIM, 3.0, 15);
    let bundle = train_bundle(50, DIM, &teacher, 16);
    let config = small_config(ModelSpec::LINEAR);

    // Subsets naming rollouts outside the bundle, or nothing at all.
    let e = train::run(&config, &bundle, Some(&[3, 50]), None, Device::Cpu, None).unwrap_err();
    assert!(e.to_string().contains("rollout 50"), "{e}");
    let e = train::run(&config, &bundle, Some(&[]), None, Device::Cpu, None).unwrap_err();
    assert!(e.to_string().contains("no rollouts"), "{e}");
    let ids = dir.path().join("ids.tsv");
    std::fs::write(
        &ids,
        "# mprm-ids/1\nsource\tline\trollout\tscore\nsrc-a\t999\t0\t0.1\n",
    )
    .unwrap();
    let e = train::plan::load_subset(&bundle, &ids).unwrap_err();
    assert!(
        e.to_string()
            .contains("(source `src-a`, line 999) is not in the bundle"),
        "{e}"
    );
    std::fs::write(&ids, "# only a comment\n").unwrap();
    let e = train::plan::load_subset(&bundle, &ids).unwrap_err();
    assert!(e.to_string().contains("names no rollouts"), "{e}");

    // Bench features of another dimension.
    let other = Teacher::new(DIM + 1, 3.0, 1);
    let bench = bench(dir.path(), &other);
    let e = train::run(&config, &bundle, None, Some(&bench), Device::Cpu, None).unwrap_err();
    assert!(e.to_string().contains("feature dimension mismatch"), "{e}");

    // A checkpoint read with features of another dimension.
    let run_dir = dir.path().join("run");
    train::run(&config, &bundle, None, None, Device::Cpu, Some(&run_dir)).unwrap();
    let ckpt = checkpoint::latest(&run_dir).unwrap().unwrap();
    let e = checkpoint::load_model::<burn::backend::NdArray<f32>>(
        &ckpt,
        &ModelSpec::LINEAR,
        DIM + 1,
        &Default::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("feature dimension mismatch"), "{e}");
    let wider = train_bundle(50, DIM + 1, &other, 16);
    let e = train::execute(
        TrainInputs {
            config: &config,
            bundle: &wider,
            subset: None,
            bench: None,
        },
        &RunOptions {
            out_dir: Some(run_dir.clone()),
            resume: true,
            ..Default::default()
        },
        Device::Cpu,
    )
    .unwrap_err();
    assert!(e.to_string().contains("feature dimension mismatch"), "{e}");
}

#[test]
fn subsets_and_loss_reductions_change_the_run() {
    let teacher = Teacher::new(DIM, 3.0, 17);
    let bundle = train_bundle(200, DIM, &teacher, 18);
    let config = small_config(ModelSpec::LINEAR);
    let all = train::run(&config, &bundle, None, None, Device::Cpu, None).unwrap();
    let half: Vec<usize> = (0..100).collect();
    let sub = train::run(&config, &bundle, Some(&half), None, Device::Cpu, None).unwrap();
    assert_eq!(all.total_steps, 4);
    assert_eq!(sub.total_steps, 2, "the schedule scales with the subset");
    assert_eq!(sub.history.iter().map(|s| s.rollouts).sum::<usize>(), 100);
    let mut summed = config.clone();
    summed.loss = "rollout-sum".parse().unwrap();
    let rs = train::run(&summed, &bundle, None, None, Device::Cpu, None).unwrap();
    // Same data order and init: the first batch's rollout-sum loss is its micro-batch-mean loss
    // times the mean steps per rollout (all micro-batch weights are about 1/steps).
    let ratio = rs.history[0].loss / all.history[0].loss;
    let mean_len = all.history[0].steps as f64 / all.history[0].rollouts as f64;
    assert!(
        (ratio / mean_len - 1.0).abs() < 0.2,
        "ratio {ratio}, mean length {mean_len}"
    );
    assert_ne!(rs.final_head, all.final_head);
}

/// Runs only where a GPU is lent: `cargo test --features cuda --test it train:: -- --ignored`.
#[test]
#[ignore = "needs a CUDA device"]
fn cuda_smoke_matches_cpu() {
    let teacher = Teacher::new(DIM, 3.0, 19);
    let bundle = train_bundle(300, DIM, &teacher, 20);
    let dir = tempfile::tempdir().unwrap();
    let bench = bench(dir.path(), &teacher);
    let config = small_config(mlp());
    let cpu = train::run(&config, &bundle, None, Some(&bench), Device::Cpu, None).unwrap();
    let gpu = train::run(&config, &bundle, None, Some(&bench), Device::Cuda(0), None).unwrap();
    for (a, b) in cpu.history.iter().zip(&gpu.history) {
        assert!(
            (a.loss - b.loss).abs() < 1e-3 * a.loss.abs().max(1.0),
            "{a:?} vs {b:?}"
        );
    }
    let (c, g) = (
        cpu.last_eval().unwrap().bench.headline(),
        gpu.last_eval().unwrap().bench.headline(),
    );
    assert!((c - g).abs() < 0.02, "cpu {c} vs cuda {g}");
}
