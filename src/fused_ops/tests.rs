use burn::backend::{Autodiff, NdArray};
use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, FloatTensorOps, ModuleOps};
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::*;
use crate::head::{Activation, HeadKind, HeadParams};
use crate::prm_model::{HostBatch, ModelSpec, PrmModel};

type B = NdArray<f32>;
type A = Autodiff<B>;

fn prim(values: Vec<f32>, shape: [usize; 2]) -> FloatTensor<B> {
    float(Tensor::<B, 2>::from_data(
        TensorData::new(values, shape),
        &Default::default(),
    ))
}

fn bits(p: FloatTensor<B>) -> Vec<u32> {
    let t: Tensor<B, 2> = tensor(p);
    t.into_data()
        .into_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Values over every regime of the kernels: zeros of both signs, tiny, moderate, and large
/// enough to saturate erf, exp and the sigmoid; then Gaussian draws of several scales.
fn inputs(n: usize, seed: u64) -> Vec<f32> {
    let special = [
        0.0f32, -0.0, 1e-30, -1e-30, 1e-7, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 6.0, -6.0, 10.0, -10.0,
        17.0, -17.0, 40.0, -40.0, 88.0, -88.0, 90.0, -90.0, 1e3, -1e3,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f32> = special.to_vec();
    while v.len() < n {
        let g: f64 = StandardNormal.sample(&mut rng);
        let scale = [0.3, 1.0, 4.0, 20.0][v.len() % 4];
        v.push((g * scale) as f32);
    }
    v.truncate(n);
    v
}

#[test]
fn ndarray_kernels_reproduce_the_composed_bits() {
    // More elements than one rayon chunk, so several chunks run.
    let (rows, cols) = (9_001, 5);
    let n = rows * cols;
    let x = inputs(n, 1);
    let g = inputs(n, 2);
    let shape = [rows, cols];

    let (y, c, p) = B::gelu_exact_parts(prim(x.clone(), shape));
    let (y0, c0, p0) = composed::gelu_exact_parts::<B>(prim(x.clone(), shape));
    let (cb, pb) = (bits(c.clone()), bits(p.clone()));
    assert_eq!(bits(y), bits(y0), "gelu value");
    assert_eq!(cb, bits(c0.clone()), "Φ");
    assert_eq!(pb, bits(p0.clone()), "xφ");
    assert_eq!(
        bits(B::gelu_exact(prim(x.clone(), shape))),
        bits(composed::gelu_exact_parts::<B>(prim(x.clone(), shape)).0),
        "forward-only gelu"
    );
    assert_eq!(
        bits(B::gelu_exact_backward(c, p, prim(g.clone(), shape))),
        bits(composed::gelu_exact_backward::<B>(
            c0,
            p0,
            prim(g.clone(), shape)
        )),
        "gelu backward"
    );

    // A transposed (non-contiguous) input reads through its strides.
    let xt = B::float_swap_dims(prim(x.clone(), shape), 0, 1);
    assert_eq!(
        bits(B::gelu_exact(xt.clone())),
        bits(composed::gelu_exact_parts::<B>(xt).0),
        "strided gelu"
    );

    // Targets of the MC kind (k/16) and hard labels; positive weights of several sizes.
    let z = inputs(n, 3);
    let targets: Vec<f32> = (0..n).map(|i| (i % 17) as f32 / 16.0).collect();
    let weights: Vec<f32> = inputs(n, 4).iter().map(|v| v.abs() * 1e-3).collect();
    let (v, s) = B::weighted_bce_parts(
        prim(z.clone(), shape),
        prim(targets.clone(), shape),
        prim(weights.clone(), shape),
    );
    let (v0, s0) = composed::weighted_bce_parts::<B>(
        prim(z, shape),
        prim(targets, shape),
        prim(weights, shape),
    );
    assert_eq!(bits(v), bits(v0), "bce values");
    assert_eq!(bits(s), bits(s0), "bce slopes");
}

#[test]
fn the_weight_gradient_through_a_view_matches_the_transposed_copy() {
    for (s, d, out) in [(3_000, 256, 1), (37, 5, 7), (1, 3, 2), (513, 64, 33)] {
        let x = inputs(s * d, s as u64);
        let g = inputs(s * out, d as u64);
        let got = B::dense_weight_grad(prim(x.clone(), [s, d]), prim(g.clone(), [s, out]));
        let want = B::linear_weight_backward(prim(x.clone(), [s, d]), prim(g.clone(), [s, out]));
        assert_eq!(bits(got), bits(want), "S {s}, d {d}, out {out}");
        // x itself a transposed view.
        let xt = B::float_swap_dims(prim(x, [d, s]), 0, 1);
        let got = B::dense_weight_grad(xt.clone(), prim(g.clone(), [s, out]));
        let want = B::linear_weight_backward(xt, prim(g, [s, out]));
        assert_eq!(bits(got), bits(want), "strided x, S {s}, d {d}, out {out}");
    }
}

#[test]
fn kernels_do_not_depend_on_the_thread_count() {
    let (rows, cols) = (40_000, 3);
    let x = inputs(rows * cols, 5);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (y, c, p) = B::gelu_exact_parts(prim(x.clone(), [rows, cols]));
            let (v, s) = B::weighted_bce_parts(
                prim(x.clone(), [rows, cols]),
                prim(vec![0.25; rows * cols], [rows, cols]),
                prim(vec![1e-4; rows * cols], [rows, cols]),
            );
            [bits(y), bits(c), bits(p), bits(v), bits(s)]
        })
    };
    assert_eq!(run(1), run(3));
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
    let grad_bits = |p: &Param<Tensor<A, 2>>| -> Vec<u32> {
        p.val()
            .grad(&grads)
            .unwrap()
            .into_data()
            .into_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    let bias_bits = |p: &Param<Tensor<A, 1>>| -> Vec<u32> {
        p.val()
            .grad(&grads)
            .unwrap()
            .into_data()
            .into_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    let layer = |l: &Linear<A>| vec![grad_bits(&l.weight), bias_bits(l.bias.as_ref().unwrap())];
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
    for reduction in [
        crate::train::loss::LossReduction::MicroBatchMean,
        crate::train::loss::LossReduction::RolloutSum,
    ] {
        let weights = crate::train::loss::step_weights(reduction, &lengths, 2);
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
                assert_eq!(new, old, "{kind:?}, seed {seed}, {reduction:?}");
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
        let inner = "fused_ops::tests::composed_defaults::the_composed_defaults_through_the_nodes_give_the_previous_gradients";
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
        let weights: Vec<f64> = crate::train::loss::step_weights(
            crate::train::loss::LossReduction::MicroBatchMean,
            &lengths,
            2,
        )
        .iter()
        .map(|&w| w as f64)
        .collect();
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
