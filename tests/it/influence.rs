//! TracIn and the influence scores against direct computations: TracIn by hand, influence against
//! leave-one-out retraining of a small damped logistic regression.

use mprm::data::features::{BundleParts, FeatureBundle, FeatureData};
use mprm::device::Device;
use mprm::gradient_selection::{
    Checkpoint, DevSteps, GradientSettings, ProxySpec, influence_keys, linear_hessian, tracin_keys,
};
use mprm::gradnorm::Reduction;
use mprm::head::{HeadKind, HeadParams, LinearHead};
use mprm::linalg::solve;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIM: usize = 3;
const W_STAR: [f64; DIM] = [1.5, -1.0, 0.5];
const B_STAR: f64 = 0.2;

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// `rollouts` rollouts of 1–3 steps with Gaussian-ish features and labels drawn from the
/// teacher; the labels double as the MC scores (0 or 1), so the hard labels are the labels.
fn problem(rollouts: usize, seed: u64) -> (FeatureBundle, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut feats, mut targets, mut offsets) = (Vec::new(), Vec::new(), vec![0]);
    for _ in 0..rollouts {
        let n = rng.random_range(1..=3);
        for _ in 0..n {
            let x: Vec<f64> = (0..DIM)
                .map(|_| (0..4).map(|_| rng.random::<f64>() - 0.5).sum::<f64>())
                .collect();
            let z: f64 = x.iter().zip(W_STAR).map(|(a, w)| a * w).sum::<f64>() + B_STAR;
            let y = f32::from(u8::from(rng.random::<f64>() < sigmoid(z)));
            feats.extend(x.iter().map(|&v| v as f32));
            targets.push(y);
        }
        offsets.push(targets.len());
    }
    let bundle = FeatureBundle::from_parts(BundleParts::one_source(
        FeatureData::F32(feats),
        DIM,
        offsets,
        targets.clone(),
        "s",
    ))
    .unwrap();
    (bundle, targets)
}

fn settings(reduction: Reduction) -> GradientSettings {
    GradientSettings {
        head: HeadKind::Linear,
        labels: mprm::data::labels::LabelScheme::Hard { threshold: 0.0 },
        reduction,
        seed: 1,
        inits: 1,
        proxy: ProxySpec::default(),
        el2n: Default::default(),
        less: Default::default(),
        reference: Default::default(),
        device: Device::Cpu,
    }
}

/// Step j's augmented row [ϕ_j; 1] in f64.
fn row(b: &FeatureBundle, j: usize) -> Vec<f64> {
    let f = b.features();
    (0..DIM)
        .map(|k| f64::from(f.get(j * DIM + k)))
        .chain([1.0])
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn head_of(theta: &[f64]) -> HeadParams {
    HeadParams::Linear(LinearHead {
        w: theta[..DIM].iter().map(|&v| v as f32).collect(),
        b: theta[DIM] as f32,
    })
}

/// The head's parameters in f64 (what the engine sees after the f32 rounding).
fn theta_of(h: &HeadParams) -> Vec<f64> {
    let HeadParams::Linear(h) = h else {
        unreachable!()
    };
    h.w.iter()
        .map(|&v| f64::from(v))
        .chain([f64::from(h.b)])
        .collect()
}

/// Σ_j (σ(z_j) − y_j)·[ϕ_j; 1] over the steps of rollout x: its summed gradient.
fn rollout_gradient(b: &FeatureBundle, t: &[f32], theta: &[f64], x: usize) -> Vec<f64> {
    let mut g = vec![0.0; DIM + 1];
    for j in b.rollout_steps(x) {
        let r = row(b, j);
        let e = sigmoid(dot(theta, &r)) - f64::from(t[j]);
        g.iter_mut().zip(&r).for_each(|(a, v)| *a += e * v);
    }
    g
}

/// Mean BCE over every step of `b` and its gradient.
fn mean_loss_and_gradient(b: &FeatureBundle, t: &[f32], theta: &[f64]) -> (f64, Vec<f64>) {
    let (mut loss, mut g) = (0.0, vec![0.0; DIM + 1]);
    for (j, &y) in t.iter().enumerate().take(b.n_steps()) {
        let r = row(b, j);
        let z = dot(theta, &r);
        let y = f64::from(y);
        loss += z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
        let e = sigmoid(z) - y;
        g.iter_mut().zip(&r).for_each(|(a, v)| *a += e * v);
    }
    let m = b.n_steps() as f64;
    (loss / m, g.into_iter().map(|v| v / m).collect())
}

#[test]
fn tracin_matches_a_hand_computation() {
    let (train, t) = problem(12, 5);
    let (dev, dev_t) = problem(8, 6);
    let heads = [vec![0.3, -0.2, 0.1, 0.05], vec![1.0, -0.7, 0.4, 0.15]];
    let lrs = [0.1, 0.04];
    let checkpoints: Vec<Checkpoint> = heads
        .iter()
        .zip(lrs)
        .map(|(h, lr)| Checkpoint {
            head: head_of(h),
            lr,
        })
        .collect();
    let devs = DevSteps {
        bundle: &dev,
        targets: &dev_t,
    };
    for reduction in [Reduction::Sum, Reduction::Mean] {
        let got = tracin_keys(&train, &t, &checkpoints, devs, &settings(reduction)).unwrap();
        for (x, &key) in got.iter().enumerate() {
            let want: f64 = checkpoints
                .iter()
                .map(|c| {
                    let theta = theta_of(&c.head);
                    let (_, dev_grad) = mean_loss_and_gradient(&dev, &dev_t, &theta);
                    let g = rollout_gradient(&train, &t, &theta, x);
                    let scale = reduction.weight(train.rollout_len(x));
                    c.lr * scale * dot(&dev_grad, &g)
                })
                .sum();
            // The engine projects in f32 onto a unit direction: ~1e-6 relative to ‖g‖·‖∇L_dev‖.
            assert!(
                (key - want).abs() <= 1e-5 * want.abs().max(1e-3),
                "{reduction:?} rollout {x}: {key} vs {want}"
            );
        }
    }
}

/// Minimises (1/S)·Σ_{j ∉ x} ℓ_j + (λ/2)‖θ‖² by Newton's method, S the full step count (the
/// up-weighting view of leaving rollout `skip` out: its weight goes from 1/S to 0).
fn fit(b: &FeatureBundle, t: &[f32], lambda: f64, skip: Option<usize>) -> Vec<f64> {
    let p = DIM + 1;
    let s = b.n_steps() as f64;
    let skipped = skip.map_or(0..0, |x| b.rollout_steps(x));
    let mut theta = vec![0.0; p];
    for _ in 0..100 {
        let mut g: Vec<f64> = theta.iter().map(|v| lambda * v).collect();
        let mut h = vec![0.0; p * p];
        for k in 0..p {
            h[k * p + k] = lambda;
        }
        for j in (0..b.n_steps()).filter(|j| !skipped.contains(j)) {
            let r = row(b, j);
            let q = sigmoid(dot(&theta, &r));
            let e = (q - f64::from(t[j])) / s;
            let c = q * (1.0 - q) / s;
            for a in 0..p {
                g[a] += e * r[a];
                for k in 0..p {
                    h[a * p + k] += c * r[a] * r[k];
                }
            }
        }
        let step = solve(&mut h, &mut g, p);
        theta.iter_mut().zip(&step).for_each(|(v, d)| *v -= d);
        if step.iter().map(|d| d.abs()).fold(0.0, f64::max) < 1e-13 {
            break;
        }
    }
    theta
}

#[test]
fn influence_predicts_leave_one_out_retraining_to_first_order() {
    let (train, t) = problem(240, 11);
    let (dev, dev_t) = problem(40, 12);
    let lambda = 0.02;
    let theta = fit(&train, &t, lambda, None);
    let head = head_of(&theta);
    // influence_keys damps by damping·tr(H)/(d + 1); choose the damping that gives λ exactly.
    let hess = linear_hessian(&train, &head).unwrap();
    let p = DIM + 1;
    let mean_eig = (0..p).map(|r| hess[r * p + r]).sum::<f64>() / p as f64;
    let damping = lambda / mean_eig;
    let devs = DevSteps {
        bundle: &dev,
        targets: &dev_t,
    };
    let scores =
        influence_keys(&train, &t, &head, devs, damping, &settings(Reduction::Sum)).unwrap();
    let base = mean_loss_and_gradient(&dev, &dev_t, &theta_of(&head)).0;
    let s = train.n_steps() as f64;
    let (mut predicted, mut actual) = (Vec::new(), Vec::new());
    for (x, &score) in scores.iter().enumerate() {
        let loo = fit(&train, &t, lambda, Some(x));
        actual.push(mean_loss_and_gradient(&dev, &dev_t, &loo).0 - base);
        // Removing x is up-weighting it by ε = −1/S; the score is −dL_dev/dε.
        predicted.push(score / s);
    }
    // First-order agreement: the change of a leave-one-out refit is linear in the removed weight
    // up to a relative O(n_x/S); with S ≈ 480 steps the two agree to a few per cent of the largest
    // change.
    let largest = actual.iter().map(|v| v.abs()).fold(0.0, f64::max);
    assert!(largest > 1e-4, "the problem moves the dev loss: {largest}");
    for (x, (p, a)) in predicted.iter().zip(&actual).enumerate() {
        assert!(
            (p - a).abs() <= 0.1 * largest,
            "rollout {x}: predicted {p:.3e}, retrained {a:.3e} (largest {largest:.3e})"
        );
    }
    let (mp, ma) = (
        predicted.iter().sum::<f64>() / predicted.len() as f64,
        actual.iter().sum::<f64>() / actual.len() as f64,
    );
    let cov: f64 = predicted
        .iter()
        .zip(&actual)
        .map(|(p, a)| (p - mp) * (a - ma))
        .sum();
    let sd = |v: &[f64], m: f64| v.iter().map(|x| (x - m).powi(2)).sum::<f64>().sqrt();
    let r = cov / (sd(&predicted, mp) * sd(&actual, ma));
    let worst = predicted
        .iter()
        .zip(&actual)
        .map(|(p, a)| (p - a).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "influence vs leave-one-out over {} rollouts: Pearson {r:.4}, largest gap {:.1}% of the \
         largest change",
        actual.len(),
        100.0 * worst / largest
    );
    assert!(r > 0.98, "Pearson(predicted, retrained) = {r}");
}

#[test]
fn the_hessian_is_symmetric_and_matches_a_direct_sum() {
    let (train, _) = problem(20, 3);
    let theta = vec![0.4, -0.3, 0.2, 0.1];
    let head = head_of(&theta);
    let h = linear_hessian(&train, &head).unwrap();
    let theta = theta_of(&head);
    let p = DIM + 1;
    let mut want = vec![0.0; p * p];
    for j in 0..train.n_steps() {
        let r = row(&train, j);
        let q = sigmoid(dot(&theta, &r));
        for a in 0..p {
            for k in 0..p {
                want[a * p + k] += q * (1.0 - q) * r[a] * r[k] / train.n_steps() as f64;
            }
        }
    }
    for (g, w) in h.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
}

#[test]
fn influence_refuses_a_bad_damping() {
    let (train, t) = problem(5, 1);
    let (dev, dev_t) = problem(5, 2);
    let devs = DevSteps {
        bundle: &dev,
        targets: &dev_t,
    };
    let linear = head_of(&[0.1, 0.2, 0.3, 0.0]);
    let err = influence_keys(&train, &t, &linear, devs, 0.0, &settings(Reduction::Sum))
        .unwrap_err()
        .to_string();
    assert!(err.contains("damping"), "{err}");
}

/// The MLP head's influence is the Gauss–Newton influence of its output layer: it must predict
/// leave-one-out refits of (w₂, b₂) with the hidden layer frozen, to first order.
#[test]
fn mlp_influence_predicts_leave_one_out_refits_of_the_output_layer() {
    use mprm::gradient_selection::hidden_bundle;
    use mprm::head::MlpHead;
    let (train, t) = problem(200, 21);
    let (dev, dev_t) = problem(40, 22);
    // Hidden width = DIM, so the hidden activations are themselves a DIM-wide problem.
    let HeadParams::Mlp(init) = HeadParams::init(
        HeadKind::Mlp {
            hidden: DIM,
            activation: mprm::head::Activation::Gelu,
        },
        DIM,
        4,
    ) else {
        unreachable!()
    };
    let hidden = hidden_bundle(&train, &HeadParams::Mlp(init.clone())).unwrap();
    let hidden_dev = hidden_bundle(&dev, &HeadParams::Mlp(init.clone())).unwrap();
    let lambda = 0.02;
    let theta = fit(&hidden, &t, lambda, None);
    let out = theta_of(&head_of(&theta));
    let mlp = HeadParams::Mlp(MlpHead {
        w2: out[..DIM].iter().map(|&v| v as f32).collect(),
        b2: out[DIM] as f32,
        ..init
    });
    let hess = linear_hessian(&hidden, &head_of(&theta)).unwrap();
    let p = DIM + 1;
    let damping = lambda / ((0..p).map(|r| hess[r * p + r]).sum::<f64>() / p as f64);
    let devs = DevSteps {
        bundle: &dev,
        targets: &dev_t,
    };
    let scores =
        influence_keys(&train, &t, &mlp, devs, damping, &settings(Reduction::Sum)).unwrap();
    let base = mean_loss_and_gradient(&hidden_dev, &dev_t, &out).0;
    let s = train.n_steps() as f64;
    let mut worst: f64 = 0.0;
    let mut largest: f64 = 0.0;
    for (x, &score) in scores.iter().enumerate() {
        let loo = fit(&hidden, &t, lambda, Some(x));
        let actual = mean_loss_and_gradient(&hidden_dev, &dev_t, &loo).0 - base;
        largest = largest.max(actual.abs());
        worst = worst.max((score / s - actual).abs());
    }
    eprintln!(
        "mlp (output-layer Gauss–Newton) influence vs leave-one-out refits of the output layer: \
         largest gap {:.1}% of the largest change",
        100.0 * worst / largest
    );
    assert!(largest > 1e-5, "the problem moves the dev loss: {largest}");
    assert!(
        worst <= 0.1 * largest,
        "gap {worst:.3e}, largest {largest:.3e}"
    );
}
