//! The fused nodes inside the heads: the previous compositions' bits, exact derivatives, and
//! the composed defaults (CUDA's kernels) through the same nodes. Here rather than in
//! `fused_ops`, which sits below the models.

use burn::backend::{Autodiff, NdArray};
use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::{HostBatch, ModelSpec, PrmModel};
use crate::fused_ops::tests::inputs;
use crate::fused_ops::{
    FRAC_1_SQRT_2PI, FusedKernels, dense, forward_only_fused_ops, weighted_bce,
};
use crate::head::{Activation, HeadKind, HeadParams};

type B = NdArray<f32>;
type A = Autodiff<B>;

/// Per-step loss weights: two patterns of positive values (the nodes treat them as data).
fn weights(n: usize, pattern: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 1.0 / ((1 + (i + pattern) % 3) as f32 * n as f32))
        .collect()
}

/// The trainer's previous compositions, kept as the reference the fused nodes must reproduce.
mod previous {
    use super::*;

    pub fn gelu_exact<Bk: Backend, const D: usize>(x: Tensor<Bk, D>) -> Tensor<Bk, D> {
        let xd = x.clone().detach();
        let cdf = xd
            .clone()
            .div_scalar(std::f64::consts::SQRT_2)
            .erf()
            .add_scalar(1.0)
            .mul_scalar(0.5);
        let x_pdf = (xd.clone() * xd.clone())
            .mul_scalar(-0.5)
            .exp()
            .mul_scalar(FRAC_1_SQRT_2PI)
            * xd.clone();
        x.clone() * cdf + (x - xd) * x_pdf
    }

    fn bce_with_logits<Bk: Backend>(
        logits: Tensor<Bk, 1>,
        targets: Tensor<Bk, 1>,
    ) -> Tensor<Bk, 1> {
        let softplus_tail = logits.clone().abs().neg().exp().log1p();
        relu(logits.clone()) - logits * targets + softplus_tail
    }

    pub fn weighted_bce<Bk: Backend>(
        logits: Tensor<Bk, 1>,
        targets: Tensor<Bk, 1>,
        weights: Tensor<Bk, 1>,
    ) -> Tensor<Bk, 1> {
        let fixed = logits.clone().detach();
        let value = bce_with_logits(fixed.clone(), targets.clone());
        let slope = sigmoid(fixed.clone()) - targets;
        ((value + (logits - fixed) * slope) * weights).sum()
    }

    pub fn logits(model: &PrmModel<A>, x: Tensor<A, 2>) -> Tensor<A, 1> {
        match model {
            PrmModel::Linear(m) => m.linear.forward(x).squeeze_dim(1),
            PrmModel::Mlp(m) => {
                let u = m.hidden.forward(x);
                let a = match m.activation {
                    Activation::Gelu => gelu_exact(u),
                    Activation::Relu => relu(u),
                };
                m.out.forward(a).squeeze_dim(1)
            }
            PrmModel::Context(_) => unreachable!("heads only"),
        }
    }
}

fn vector(values: Vec<f32>) -> Tensor<A, 1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), &Default::default())
}

/// The bits of a parameter's gradient.
fn grad_bits<const D: usize>(
    p: &Param<Tensor<A, D>>,
    grads: &<A as burn::tensor::backend::AutodiffBackend>::Gradients,
) -> Vec<u32> {
    p.val()
        .grad(grads)
        .unwrap()
        .into_data()
        .into_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Loss bits and every parameter gradient's bits for one batch.
fn loss_and_grads(
    model: &PrmModel<A>,
    rows: &[f32],
    dim: usize,
    targets: &[f32],
    weights: &[f32],
    fused: bool,
) -> (u32, Vec<Vec<u32>>) {
    let x = Tensor::<A, 2>::from_data(
        TensorData::new(rows.to_vec(), [rows.len() / dim, dim]),
        &Default::default(),
    );
    let (y, w) = (vector(targets.to_vec()), vector(weights.to_vec()));
    let loss = if fused {
        weighted_bce(model.logits(crate::prm_model::BatchInput::Flat(x)), y, w)
    } else {
        previous::weighted_bce(previous::logits(model, x), y, w)
    };
    let value: f32 = loss.clone().into_scalar();
    let grads = loss.backward();
    let layer = |l: &Linear<A>| {
        vec![
            grad_bits(&l.weight, &grads),
            grad_bits(l.bias.as_ref().unwrap(), &grads),
        ]
    };
    let all = match model {
        PrmModel::Linear(m) => layer(&m.linear),
        PrmModel::Mlp(m) => [layer(&m.hidden), layer(&m.out)].concat(),
        PrmModel::Context(_) => unreachable!(),
    };
    (value.to_bits(), all)
}

#[test]
fn the_fused_nodes_give_the_previous_loss_and_gradients_bit_for_bit() {
    let dim = 48;
    let lengths = [3usize, 1, 7, 2, 5, 4, 6, 1, 2, 9];
    let n_steps: usize = lengths.iter().sum();
    let rows = inputs(n_steps * dim, 11);
    let targets: Vec<f32> = (0..n_steps).map(|i| ((i * 5) % 17) as f32 / 16.0).collect();
    for pattern in [0, 1] {
        let weights = weights(n_steps, pattern);
        for kind in [
            HeadKind::Linear,
            HeadKind::Mlp {
                hidden: 32,
                activation: Activation::Gelu,
            },
            HeadKind::Mlp {
                hidden: 16,
                activation: Activation::Relu,
            },
        ] {
            for seed in [1, 2] {
                let model = PrmModel::<A>::from_head(
                    &HeadParams::init(kind, dim, seed),
                    &Default::default(),
                );
                let new = loss_and_grads(&model, &rows, dim, &targets, &weights, true);
                let old = loss_and_grads(&model, &rows, dim, &targets, &weights, false);
                assert_eq!(new, old, "{kind:?}, seed {seed}, weights {pattern}");
            }
        }
    }
}

#[test]
fn fused_gradients_are_the_exact_derivatives() {
    // z = xW + b, loss = Σ w_m BCE(z_m, y_m): dL/dz = w(σ(z) − y), dW = xᵀ dL/dz, db = Σ dL/dz,
    // and the input gradient dL/dz Wᵀ when x is tracked.
    let (s, d) = (4, 3);
    let x: Vec<f32> = vec![
        0.5, -1.0, 2.0, 0.0, 1.5, -0.5, -2.0, 0.25, 1.0, 3.0, -1.0, 0.5,
    ];
    let w = [0.3f32, -0.7, 0.2];
    let b = 0.1f32;
    let y = [1.0f32, 0.0, 0.5, 1.0];
    let c = [0.5f32, 0.25, 0.125, 1.0];
    let dev = Default::default();
    let layer = Linear::<A> {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(w.to_vec(), [d, 1]), &dev)),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![b], [1]),
            &dev,
        ))),
    };
    let xt = Tensor::<A, 2>::from_data(TensorData::new(x.clone(), [s, d]), &dev).require_grad();
    let z = dense(xt.clone(), &layer).squeeze_dim::<1>(1);
    let loss = weighted_bce(z, vector(y.to_vec()), vector(c.to_vec()));
    let grads = loss.backward();
    let get = |v: Option<Tensor<B, 2>>| -> Vec<f32> { v.unwrap().into_data().into_vec().unwrap() };
    let dz: Vec<f64> = (0..s)
        .map(|m| {
            let zm: f64 = (0..d)
                .map(|k| x[m * d + k] as f64 * w[k] as f64)
                .sum::<f64>()
                + b as f64;
            c[m] as f64 * (1.0 / (1.0 + (-zm).exp()) - y[m] as f64)
        })
        .collect();
    let dw = get(layer.weight.val().grad(&grads));
    for k in 0..d {
        let want: f64 = (0..s).map(|m| x[m * d + k] as f64 * dz[m]).sum();
        assert!(
            (dw[k] as f64 - want).abs() < 1e-6,
            "dW[{k}] {} vs {want}",
            dw[k]
        );
    }
    let db: Vec<f32> = layer
        .bias
        .as_ref()
        .unwrap()
        .val()
        .grad(&grads)
        .unwrap()
        .into_data()
        .into_vec()
        .unwrap();
    assert!((db[0] as f64 - dz.iter().sum::<f64>()).abs() < 1e-6);
    let dx = get(xt.grad(&grads));
    for m in 0..s {
        for k in 0..d {
            let want = dz[m] * w[k] as f64;
            assert!((dx[m * d + k] as f64 - want).abs() < 1e-6, "dx[{m}, {k}]");
        }
    }
}

#[test]
fn untracked_and_inner_backends_compute_the_same_forward() {
    let spec = ModelSpec::Head(HeadKind::Mlp {
        hidden: 8,
        activation: Activation::Gelu,
    });
    let head = HeadParams::init(spec.head_kind().unwrap(), 6, 4);
    let rows = inputs(5 * 6, 9);
    let batch = HostBatch {
        rows: rows.clone(),
        lengths: vec![2, 3],
        dim: 6,
    };
    let tracked: Vec<f32> = PrmModel::<A>::from_head(&head, &Default::default())
        .logits(batch.clone().into_input(&spec, &Default::default()))
        .into_data()
        .into_vec()
        .unwrap();
    let inner: Vec<f32> = PrmModel::<B>::from_head(&head, &Default::default())
        .logits(batch.into_input(&spec, &Default::default()))
        .into_data()
        .into_vec()
        .unwrap();
    assert_eq!(tracked, inner);
    for (s, z) in inner.iter().enumerate() {
        let phi: Vec<f64> = rows[s * 6..s * 6 + 6].iter().map(|&v| v as f64).collect();
        assert!((*z as f64 - head.logit(&phi)).abs() < 1e-5, "step {s}");
    }
}

/// The composed defaults, which CUDA takes, through the same autodiff nodes: a backend with no
/// override of its own (f64 `burn-ndarray`, for this test only) must give the previous
/// compositions' loss and gradients exactly.
///
/// burn 0.21 fixes one default float dtype per device per process (set by the first tensor
/// made), and `NdArray<f32>` and `NdArray<f64>` share a device type, so the f64 test runs in a
/// fresh process of this test binary; in-process it would force f64 on every other test.
mod composed_defaults {
    use super::*;

    #[test]
    fn composed_defaults_in_their_own_process() {
        let inner = "prm_model::fused_tests::composed_defaults::the_composed_defaults_through_the_nodes_give_the_previous_gradients";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", inner, "--ignored", "--test-threads=1"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    type B64 = NdArray<f64>;
    impl FusedKernels for B64 {}
    forward_only_fused_ops!(B64);
    type A64 = Autodiff<B64>;

    fn f64s<const D: usize>(t: Tensor<A64, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().into_vec::<f64>().unwrap()
    }

    #[test]
    #[ignore = "run in its own process by composed_defaults_in_their_own_process (burn's per-process dtype)"]
    fn the_composed_defaults_through_the_nodes_give_the_previous_gradients() {
        let dev = Default::default();
        let dim = 12;
        let lengths = [3usize, 1, 4, 2];
        let n: usize = lengths.iter().sum();
        let rows: Vec<f64> = inputs(n * dim, 21).iter().map(|&v| v as f64).collect();
        let targets: Vec<f64> = (0..n).map(|i| (i % 17) as f64 / 16.0).collect();
        let weights: Vec<f64> = weights(n, 0).iter().map(|&w| w as f64).collect();
        let t1 =
            |v: &[f64]| Tensor::<A64, 1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &dev);
        let head = HeadParams::init(
            HeadKind::Mlp {
                hidden: 7,
                activation: Activation::Gelu,
            },
            dim,
            3,
        );
        let model = PrmModel::<A64>::from_head(&head, &dev);
        let PrmModel::Mlp(m) = &model else {
            unreachable!()
        };
        let run = |fused: bool| {
            let x = Tensor::<A64, 2>::from_data(TensorData::new(rows.clone(), [n, dim]), &dev);
            let (y, w) = (t1(&targets), t1(&weights));
            let loss = if fused {
                weighted_bce(model.logits(crate::prm_model::BatchInput::Flat(x)), y, w)
            } else {
                previous::weighted_bce(
                    m.out
                        .forward(previous::gelu_exact(m.hidden.forward(x)))
                        .squeeze_dim(1),
                    y,
                    w,
                )
            };
            let value = f64s(loss.clone());
            let grads = loss.backward();
            let mut all = vec![value];
            for l in [&m.hidden, &m.out] {
                all.push(f64s(Tensor::<A64, 2>::from_inner(
                    l.weight.val().grad(&grads).unwrap(),
                )));
                all.push(f64s(Tensor::<A64, 1>::from_inner(
                    l.bias.as_ref().unwrap().val().grad(&grads).unwrap(),
                )));
            }
            all
        };
        let (new, old) = (run(true), run(false));
        assert_eq!(new.len(), 5);
        for (a, b) in new.iter().zip(&old) {
            let (a, b): (Vec<u64>, Vec<u64>) = (
                a.iter().map(|v| v.to_bits()).collect(),
                b.iter().map(|v| v.to_bits()).collect(),
            );
            assert_eq!(a, b);
        }
        assert!(new[0][0] > 0.0 && new[0][0].is_finite());
    }
}
