use burn::backend::NdArray;
use burn::tensor::ops::{FloatTensor, FloatTensorOps, ModuleOps};
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::*;

type B = NdArray<f32>;

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
pub(crate) fn inputs(n: usize, seed: u64) -> Vec<f32> {
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
fn the_dense_products_through_views_match_burns_matmul() {
    for (s, d, out) in [(3_000, 256, 1), (37, 5, 7), (1, 3, 2), (513, 64, 33)] {
        let x = inputs(s * d, s as u64);
        let w = inputs(d * out, 11 + d as u64);
        let b = inputs(out, 7);
        let g = inputs(s * out, d as u64);
        let bias = || {
            float(Tensor::<B, 1>::from_data(
                TensorData::new(b.clone(), [out]),
                &Default::default(),
            ))
        };
        let got = B::dense_forward(prim(x.clone(), [s, d]), prim(w.clone(), [d, out]), bias());
        let want = B::linear(
            prim(x.clone(), [s, d]),
            prim(w.clone(), [d, out]),
            Some(bias()),
        );
        assert_eq!(bits(got), bits(want), "forward, S {s}, d {d}, out {out}");
        // x a transposed view, and W one.
        let xt = B::float_swap_dims(prim(x.clone(), [d, s]), 0, 1);
        let wt = B::float_swap_dims(prim(w.clone(), [out, d]), 0, 1);
        let got = B::dense_forward(xt.clone(), wt.clone(), bias());
        let want = B::linear(xt, wt.clone(), Some(bias()));
        assert_eq!(
            bits(got),
            bits(want),
            "strided forward, S {s}, d {d}, out {out}"
        );

        let got = B::dense_input_grad(prim(w.clone(), [d, out]), prim(g.clone(), [s, out]));
        let want = B::linear_x_backward(prim(w.clone(), [d, out]), prim(g.clone(), [s, out]));
        assert_eq!(
            bits(got),
            bits(want),
            "input gradient, S {s}, d {d}, out {out}"
        );
        let got = B::dense_input_grad(wt.clone(), prim(g.clone(), [s, out]));
        let want = B::linear_x_backward(wt, prim(g, [s, out]));
        assert_eq!(
            bits(got),
            bits(want),
            "strided input gradient, S {s}, d {d}, out {out}"
        );
    }
    // The bias gradient: wide, narrow (one column: rows are then the shortest stride too),
    // no rows, a transposed view, and columns of −0.0 (which Burn sums to +0.0).
    for (s, out) in [(3_000, 256), (3_000, 1), (37, 7), (0, 5), (1, 300)] {
        let g = inputs(s * out, 3 + s as u64);
        let got = B::dense_bias_grad(prim(g.clone(), [s, out]));
        let want = B::linear_bias_backward(prim(g.clone(), [s, out]));
        let (got, want): (Tensor<B, 1>, Tensor<B, 1>) = (tensor(got), tensor(want));
        let bits1 = |t: Tensor<B, 1>| -> Vec<u32> {
            let v = t.into_data().into_vec::<f32>().unwrap();
            v.iter().map(|v| v.to_bits()).collect()
        };
        assert_eq!(bits1(got), bits1(want), "bias gradient, S {s}, out {out}");
        let gt = B::float_swap_dims(prim(g, [out, s]), 0, 1);
        let (got, want): (Tensor<B, 1>, Tensor<B, 1>) = (
            tensor(B::dense_bias_grad(gt.clone())),
            tensor(B::linear_bias_backward(gt)),
        );
        assert_eq!(
            bits1(got),
            bits1(want),
            "strided bias gradient, S {s}, out {out}"
        );
    }
    let zeros = B::dense_bias_grad(prim(vec![-0.0; 6], [3, 2]));
    let zeros: Tensor<B, 1> = tensor(zeros);
    assert!(
        zeros
            .into_data()
            .into_vec::<f32>()
            .unwrap()
            .iter()
            .all(|v| v.to_bits() == 0)
    );

    // No rows (Burn's own matmul divides by zero there): an empty output of the right shape.
    let bias = float(Tensor::<B, 1>::from_data(
        TensorData::new(vec![0.5f32; 3], [3]),
        &Default::default(),
    ));
    let empty: Tensor<B, 2> = tensor(B::dense_forward(
        prim(vec![], [0, 4]),
        prim(vec![1.0; 12], [4, 3]),
        bias,
    ));
    assert_eq!(empty.dims(), [0, 3]);
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
