//! The training runs the gradient-based selectors read: AdamW moments come back in the flattened
//! parameter order, and EL2N's ensemble is the mean of its proxies, identical across thread counts.

use mprm::data::features::{BundleMeta, BundleParts, FeatureBundle, FeatureData};
use mprm::data::labels::LabelScheme;
use mprm::device::Device;
use mprm::gradient_selection::runs::train_head_until;
use mprm::gradient_selection::{
    GradientSettings, ProxySpec, el2n_ensemble_keys, el2n_keys, run_config, train_with_checkpoints,
};
use mprm::gradnorm::{Reduction, flatten_params};
use mprm::head::{Activation, HeadKind, HeadParams};
use mprm::train::TrainConfig;
use mprm::train::plan::derive_seed;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIM: usize = 5;

/// 60 rollouts of 1–4 steps in two sources, features uniform in [−1, 1], MC scores in {0, ½, 1}.
fn corpus() -> FeatureBundle {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (mut feats, mut mc, mut offsets, mut source) =
        (Vec::new(), Vec::new(), vec![0], Vec::new());
    for i in 0..60 {
        let n = rng.random_range(1..=4);
        for _ in 0..n {
            feats.extend((0..DIM).map(|_| rng.random::<f32>() * 2.0 - 1.0));
            mc.push([0.0, 0.5, 1.0][rng.random_range(0..3)]);
        }
        offsets.push(mc.len());
        source.push((i % 2) as u32);
    }
    FeatureBundle::from_parts(BundleParts {
        features: FeatureData::F32(feats),
        dim: DIM,
        offsets,
        mc_scores: mc,
        source,
        line: None,
        labels: None,
        teacher: None,
        meta: BundleMeta {
            sources: vec!["a".into(), "b".into()],
            ..Default::default()
        },
    })
    .unwrap()
}

fn settings(head: HeadKind) -> GradientSettings {
    GradientSettings {
        head,
        labels: LabelScheme::Hard { threshold: 0.0 },
        reduction: Reduction::Mean,
        seed: 5,
        inits: 1,
        proxy: ProxySpec {
            fraction: 0.5,
            lr: 0.01,
            global_batch: 8,
            epochs: 1,
        },
        el2n: Default::default(),
        less: Default::default(),
        reference: Default::default(),
        device: Device::Cpu,
    }
}

/// After one AdamW step from a known initialisation, every parameter moved against the sign of
/// its first moment by about the learning rate (Adam's first step is lr·sign(g) after bias
/// correction). That holds only if the moments come back in the same order as the parameters,
/// which for the MLP means W₁'s moments were transposed like W₁.
#[test]
fn adam_moments_come_back_in_the_flattened_parameter_order() {
    let b = corpus();
    for head in [
        HeadKind::Linear,
        HeadKind::Mlp {
            hidden: 3,
            activation: Activation::Gelu,
        },
    ] {
        let s = settings(head);
        let mut cfg: TrainConfig = run_config(&s, 11, 1);
        cfg.optim.warmup_fraction = 0.0;
        cfg.optim.weight_decay = 0.0;
        cfg.optim.grad_clip = 0.0;
        let lr = cfg.optim.lr;
        // Checkpoint after the first step; the run goes on to the end (8 steps).
        let recorded = train_with_checkpoints(&cfg, &b, None, 1, &s).unwrap();
        assert_eq!(recorded.len(), 8, "{head:?}");
        assert_eq!(recorded[0].moments.time, 1);
        assert_eq!(recorded[7].moments.time, 8);
        let before = flatten_params(&HeadParams::init(head, DIM, 11));
        let after = flatten_params(&recorded[0].point.head);
        let m = &recorded[0].moments.m;
        assert_eq!(m.len(), before.len());
        let largest = m.iter().map(|v| v.abs()).fold(0.0, f64::max);
        let mut checked = 0;
        for (p, ((&b0, &b1), &mp)) in before.iter().zip(&after).zip(m).enumerate() {
            if mp.abs() < 1e-3 * largest {
                continue;
            }
            let step = f64::from(b1) - f64::from(b0);
            assert!(
                step * mp < 0.0 && (step.abs() - lr).abs() < 0.05 * lr,
                "{head:?} parameter {p}: moved {step:e} with m = {mp:e}"
            );
            checked += 1;
        }
        assert!(
            checked * 2 > before.len(),
            "{head:?}: {checked} of {}",
            before.len()
        );
        // v is the running mean of g²: (1 − β₂)·g² after one step, so m²/v = (1 − β₁)²/(1 − β₂).
        for (&mp, &vp) in m.iter().zip(&recorded[0].moments.v) {
            if mp.abs() > 1e-3 * largest {
                assert!(
                    (mp * mp / vp - 0.01 / 0.001).abs() < 1e-3 * 10.0,
                    "{mp} {vp}"
                );
            }
        }
    }
}

#[test]
fn el2n_ensemble_is_the_mean_of_its_proxies_and_the_same_on_any_thread_count() {
    let b = corpus();
    let targets = LabelScheme::Hard { threshold: 0.0 }.targets(&b).unwrap();
    let mut s = settings(HeadKind::Linear);
    s.el2n.proxies = 3;
    s.el2n.run_fraction = 0.5;
    let keys = el2n_ensemble_keys(&b, &targets, &s).unwrap();
    // By hand: three proxies on the whole pool, each stopped after half of the 8-step run.
    let mut want = vec![0.0; b.n_rollouts()];
    let mut singles = Vec::new();
    for k in 0..3 {
        let cfg = run_config(&s, derive_seed(s.seed, 0xE12, k), 1);
        let head = train_head_until(&cfg, &b, None, 4, &s).unwrap();
        let one = el2n_keys(&b, &targets, &head, Reduction::Mean, Device::Cpu).unwrap();
        want.iter_mut().zip(&one).for_each(|(w, v)| *w += v);
        singles.push(one);
    }
    let want: Vec<f64> = want.into_iter().map(|v| v / 3.0).collect();
    assert_eq!(keys, want);
    assert_ne!(singles[0], singles[1], "the proxies differ");
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let again = pool.install(|| el2n_ensemble_keys(&b, &targets, &s).unwrap());
        assert_eq!(
            again.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            keys.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{threads} threads"
        );
    }
    s.el2n.proxies = 0;
    assert!(el2n_ensemble_keys(&b, &targets, &s).is_err());
}
