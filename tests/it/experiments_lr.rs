//! Learning-rate tuning for the experiments on a small simulated corpus: a grid that stops short
//! of the optimum is extended until the choice is bracketed, and a grid that already brackets it
//! is left alone.

use std::path::Path;

use mprm::data::labels::LabelScheme;
use mprm::device::Device;
use mprm::experiments::cells::CellStore;
use mprm::experiments::config::{CorpusConfig, TrainSettings};
use mprm::experiments::context::{Corpus, ExperimentContext};
use mprm::experiments::training::{MAX_LR_EXTENSIONS, TunedLr, lr_edge, tune_lr};

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

fn tune(corpus: &Corpus, cells: &Path, grid: &[f64]) -> TunedLr {
    let cells = CellStore::open(cells).unwrap();
    let train = TrainSettings {
        lr_grid: grid.to_vec(),
        ..TrainSettings::default()
    };
    let ctx = ExperimentContext {
        corpus,
        cells: &cells,
        device: Device::Cpu,
        seed: 11,
        train: &train,
    };
    tune_lr(&ctx, None, LabelScheme::Hard { threshold: 0.0 }, 11).unwrap()
}

// On this corpus dev Overall rises with the rate up to about 0.3 and falls beyond it (1e-5: 0.487,
// 1e-2: 0.646, 1e-1: 0.664, 0.316: 0.667, 1: 0.652, 10: 0.618), with no run diverging.

#[test]
fn a_grid_far_below_the_optimum_is_extended_until_the_choice_is_bracketed() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = corpus(tmp.path());
    // Four decades too low, at a decade step: four extensions reach 1.
    let grid = [1e-5, 1e-4];
    let t = tune(&corpus, &tmp.path().join("c"), &grid);
    assert!(t.lr > 1e-4, "chose {} from {:?}", t.lr, t.trials);
    assert!(t.extensions > 0 && !t.at_edge, "{t:?}");
    assert_eq!(t.trials.len(), grid.len() + t.extensions);
    // Interior to the rates tried, by the same rule the tables use.
    assert_eq!(lr_edge(&t.trials), (Some(t.lr), None), "{t:?}");
    let lo = t.trials.first().unwrap().lr;
    let hi = t.trials.last().unwrap().lr;
    assert!(lo < t.lr && t.lr < hi, "{t:?}");
    // The grid's rates are all kept, and the added ones continue its decade step upwards.
    assert!(
        t.trials.windows(2).all(|w| w[0].lr < w[1].lr),
        "sorted by rate"
    );
    for (k, x) in t.trials.iter().enumerate() {
        let want = 1e-5 * 10f64.powi(k as i32);
        assert!((x.lr / want - 1.0).abs() < 1e-9, "{} vs {want}", x.lr);
    }
    // Same inputs, same seed: the same choice and the same trials.
    assert_eq!(t, tune(&corpus, &tmp.path().join("d"), &grid));
}

#[test]
fn a_grid_beyond_the_extension_cap_is_reported_at_the_edge() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = corpus(tmp.path());
    // Four steps of 3 from 3e-5 stop near 2.4e-3, far short of the optimum.
    let t = tune(&corpus, &tmp.path().join("c"), &[1e-5, 3e-5]);
    assert_eq!(t.extensions, MAX_LR_EXTENSIONS, "{t:?}");
    assert!(t.at_edge, "{t:?}");
    assert_eq!(t.lr, t.trials.last().unwrap().lr, "{t:?}");
    assert!(t.lr > 3e-5, "{t:?}");
}

#[test]
fn a_grid_that_brackets_the_optimum_is_not_extended() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = corpus(tmp.path());
    let grid = [1e-2, 1e-1, 1.0];
    let t = tune(&corpus, &tmp.path().join("c"), &grid);
    assert_eq!(t.extensions, 0, "{t:?}");
    assert!(!t.at_edge, "{t:?}");
    assert_eq!(t.lr, 1e-1, "{t:?}");
    assert_eq!(
        t.trials.iter().map(|x| x.lr).collect::<Vec<_>>(),
        grid.to_vec()
    );
}
