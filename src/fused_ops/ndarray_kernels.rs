//! [`FusedKernels`] on `burn-ndarray` (f32): one pass over the data per kernel, split over rayon
//! threads in fixed chunks of independent elements (so the result does not depend on the thread
//! count), and the dense layer's three products computed on views of the tensors, with none of
//! the copies `burn-ndarray`'s matmul makes around them (see [`product`]).
//!
//! Each loop evaluates, element by element, exactly the f32 operations of the composed form in
//! [`super::composed`] as `burn-ndarray` runs them: `f32::exp` and `f32::ln` (its `exp_elem` and
//! `log_elem`), `libm::log1pf`, and `libm::erf` in f64 rounded to f32. The GELU's erf and exp go
//! through [`super::erf`] and [`super::expf`], which return the same bits faster. So the outputs
//! are the same bits, which `tests::ndarray_kernels_reproduce_the_composed_bits` and
//! `tests::the_dense_products_through_views_match_burns_matmul` check. Tensors of another float
//! type take the composed form.

use std::borrow::Cow;

use burn::backend::NdArray;
use burn::backend::ndarray::NdArrayTensor;
use burn::tensor::ops::{FloatTensor, ModuleOps};
use ndarray::{ArcArray, Array2, ArrayView2, Ix2, IxDyn};
use rayon::prelude::*;

use super::erf::erf_f32_slice;
use super::expf::exp_f32_slice;
use super::{FRAC_1_SQRT_2PI, FusedKernels, composed};
use super::{direct, narrow};

type B = NdArray<f32>;

/// Elements per rayon task: large enough that scheduling costs nothing next to an erf.
const CHUNK: usize = 16 * 1024;

/// The values of an f32 tensor in row-major order (borrowed when already contiguous) and its
/// shape; `None` for other element types.
fn f32_values(t: &NdArrayTensor) -> Option<(Cow<'_, [f32]>, Vec<usize>)> {
    let NdArrayTensor::F32(storage) = t else {
        return None;
    };
    let view = storage.view();
    let shape = view.shape().to_vec();
    let values = match view.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(view.iter().copied().collect()),
    };
    Some((values, shape))
}

fn from_values(values: Vec<f32>, shape: &[usize]) -> NdArrayTensor {
    let array = ArcArray::from_shape_vec(IxDyn(shape), values)
        .expect("the output has its input's number of elements");
    NdArrayTensor::from(array)
}

fn as_matrix(t: &NdArrayTensor) -> Option<ArrayView2<'_, f32>> {
    match t {
        NdArrayTensor::F32(storage) => storage.view().into_dimensionality::<Ix2>().ok(),
        _ => None,
    }
}

/// a·b as a new row-major matrix, with the bits of the `matrixmultiply::sgemm` call that
/// `burn-ndarray`'s matmul makes (through `ndarray::linalg::general_mat_mul`, α = 1, β = 0) on
/// copies of the operands: [`direct::product`] where it answers, else [`sgemm_product`].
pub(super) fn product(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    if let Some(out) = direct::product(a, b) {
        return out;
    }
    sgemm_product(a, b)
}

/// a·b through `matrixmultiply::sgemm` itself. Its packing step reads any strides, so a view (a
/// transposed one included) gives the bits of a copy. With β = 0 the routine never reads the
/// output, so it needs no zero-fill.
pub(super) fn sgemm_product(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert_eq!(
        k, k2,
        "product: inner dimensions {k} and {k2} disagree (a bug)"
    );
    let mut out = Vec::<f32>::with_capacity(m * n);
    // SAFETY: `a` and `b` are views, valid at every index their shapes and strides reach; `out`
    // has room for the m·n values written with row stride n and column stride 1; with β = 0,
    // sgemm writes every one of them without reading any (matrixmultiply's documented contract,
    // which also covers k = 0).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            a.strides()[0],
            a.strides()[1],
            b.as_ptr(),
            b.strides()[0],
            b.strides()[1],
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
        out.set_len(m * n);
    }
    Array2::from_shape_vec((m, n), out).expect("m·n values")
}

/// `out[i] = finish(x, f(arg(x)))` for x = `xs[i]`, where `f` maps a slice (erf or exp here):
/// the arguments go through a stack buffer a thousand at a time.
fn through_slice_function(
    xs: &[f32],
    out: &mut [f32],
    arg: impl Fn(f32) -> f32,
    f: fn(&[f32], &mut [f32]),
    finish: impl Fn(f32, f32) -> f32,
) {
    let mut args = [0f32; 1024];
    for (xs, out) in xs.chunks(args.len()).zip(out.chunks_mut(args.len())) {
        let args = &mut args[..xs.len()];
        for (a, &x) in args.iter_mut().zip(xs) {
            *a = arg(x);
        }
        f(args, out);
        for (o, &x) in out.iter_mut().zip(xs) {
            *o = finish(x, *o);
        }
    }
}

/// Φ(x) = ½(1 + erf(x/√2)) for a run of x, as `burn-ndarray` evaluates the composed form
/// ([`erf_f32_slice`] is its erf, bit for bit).
fn normal_cdf(xs: &[f32], cdf: &mut [f32]) {
    through_slice_function(
        xs,
        cdf,
        |x| x / std::f64::consts::SQRT_2 as f32,
        erf_f32_slice,
        |_, e| (e + 1.0) * 0.5,
    );
}

/// x·φ(x) = e^{−x²/2}·(1/√(2π))·x for a run of x, likewise ([`exp_f32_slice`] is `f32::exp`,
/// bit for bit).
fn x_normal_pdf(xs: &[f32], x_pdf: &mut [f32]) {
    through_slice_function(
        xs,
        x_pdf,
        |x| (x * x) * -0.5,
        exp_f32_slice,
        |x, e| e * FRAC_1_SQRT_2PI as f32 * x,
    );
}

/// Columns per task of the bias gradient (each task reads a 512-byte run of every row).
const BIAS_COLUMNS: usize = 128;

/// Elements per piece of a task: the pieces are computed into buffers that stay in L1.
const PIECE: usize = 1024;

/// Where a task writes its part of an output; the tasks' ranges never overlap.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: each task writes a range of its own (`map_pieces` hands out disjoint ranges).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// `K` new vectors of `n` values, computed piece by piece in parallel: `fill(range, outs)` writes
/// the values `range` of every output (`outs[k].len() == range.len()`). The outputs are written once, from
/// L1 buffers, without the zero-fill a `vec![0.0; n]` would write first (a pass over memory per
/// output, and several MiB per training step). Each value depends only on its own position, so
/// the result does not depend on the thread count.
fn map_pieces<const K: usize>(
    n: usize,
    fill: impl Fn(std::ops::Range<usize>, &mut [&mut [f32]; K]) + Sync,
) -> [Vec<f32>; K] {
    let mut outs: [Vec<f32>; K] = std::array::from_fn(|_| Vec::with_capacity(n));
    let ptrs: [OutPtr; K] = std::array::from_fn(|k| OutPtr(outs[k].as_mut_ptr()));
    (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|task| {
        let mut bufs = [[0f32; PIECE]; K];
        let end = ((task + 1) * CHUNK).min(n);
        for start in (task * CHUNK..end).step_by(PIECE) {
            let len = PIECE.min(end - start);
            let mut views = bufs.each_mut().map(|b| &mut b[..len]);
            fill(start..start + len, &mut views);
            for (buf, ptr) in bufs.iter().zip(&ptrs) {
                // SAFETY: `start + len ≤ n` lies inside the allocation of capacity n, and no other
                // task writes this range.
                unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), ptr.0.add(start), len) };
            }
        }
    });
    for out in &mut outs {
        // SAFETY: the tasks above wrote every one of the first n values.
        unsafe { out.set_len(n) };
    }
    outs
}

impl FusedKernels for B {
    fn gelu_exact_parts(x: FloatTensor<B>) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
        let Some((xs, shape)) = f32_values(&x) else {
            return composed::gelu_exact_parts::<B>(x);
        };
        let [y, cdf, x_pdf] = map_pieces(xs.len(), |range, [y, cdf, x_pdf]| {
            let xs = &xs[range];
            normal_cdf(xs, cdf);
            x_normal_pdf(xs, x_pdf);
            for i in 0..xs.len() {
                y[i] = xs[i] * cdf[i];
            }
        });
        (
            from_values(y, &shape),
            from_values(cdf, &shape),
            from_values(x_pdf, &shape),
        )
    }

    fn gelu_exact(x: FloatTensor<B>) -> FloatTensor<B> {
        let Some((xs, shape)) = f32_values(&x) else {
            return composed::gelu_exact_parts::<B>(x).0;
        };
        let [y] = map_pieces(xs.len(), |range, [y]| {
            let xs = &xs[range];
            normal_cdf(xs, y);
            for (y, &x) in y.iter_mut().zip(xs) {
                *y *= x;
            }
        });
        from_values(y, &shape)
    }

    fn gelu_exact_backward(
        cdf: FloatTensor<B>,
        x_pdf: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let (Some((c, shape)), Some((p, _)), Some((g, g_shape))) =
            (f32_values(&cdf), f32_values(&x_pdf), f32_values(&grad))
        else {
            return composed::gelu_exact_backward::<B>(cdf, x_pdf, grad);
        };
        if shape != g_shape {
            return composed::gelu_exact_backward::<B>(cdf, x_pdf, grad);
        }
        let [out] = map_pieces(g.len(), |range, [out]| {
            let (g, c, p) = (&g[range.clone()], &c[range.clone()], &p[range]);
            for i in 0..out.len() {
                out[i] = g[i] * c[i] + g[i] * p[i];
            }
        });
        from_values(out, &shape)
    }

    fn dense_forward(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        bias: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let (Some(xv), Some(wv), Some((b, b_shape))) =
            (as_matrix(&x), as_matrix(&weight), f32_values(&bias))
        else {
            return <B as ModuleOps<B>>::linear(x, weight, Some(bias));
        };
        if xv.ncols() != wv.nrows() || b_shape != [wv.ncols()] {
            return <B as ModuleOps<B>>::linear(x, weight, Some(bias));
        }
        // Burn's `linear` is the product followed by a broadcast addition of b: the same two
        // roundings per value.
        let mut out = narrow::matrix_vector(xv, wv).unwrap_or_else(|| product(xv, wv));
        let cols = b.len();
        if cols > 0 {
            let slice = out.as_slice_mut().expect("a new product is row-major");
            slice
                .par_chunks_mut(cols * CHUNK.div_ceil(cols))
                .for_each(|rows| {
                    for row in rows.chunks_exact_mut(cols) {
                        for (v, &b) in row.iter_mut().zip(b.iter()) {
                            *v += b;
                        }
                    }
                });
        }
        NdArrayTensor::from(out.into_dyn().into_shared())
    }

    fn dense_input_grad(weight: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        let (Some(wv), Some(gv)) = (as_matrix(&weight), as_matrix(&grad)) else {
            return <B as ModuleOps<B>>::linear_x_backward(weight, grad);
        };
        if gv.ncols() != wv.ncols() {
            return <B as ModuleOps<B>>::linear_x_backward(weight, grad);
        }
        let out = narrow::outer(gv, wv).unwrap_or_else(|| product(gv, wv.t()));
        NdArrayTensor::from(out.into_dyn().into_shared())
    }

    fn dense_bias_grad(grad: FloatTensor<B>) -> FloatTensor<B> {
        let Some(gv) = as_matrix(&grad) else {
            return <B as ModuleOps<B>>::linear_bias_backward(grad);
        };
        // Burn sums over the rows with ndarray's `sum_axis`, which adds whole rows in order onto
        // zeros unless the rows are the matrix's shortest stride (then it sums each column with
        // its own unrolled order); that case, and any non-contiguous g, takes Burn's path.
        let (rows, cols) = gv.dim();
        let Some(g) = gv.to_slice() else {
            return <B as ModuleOps<B>>::linear_bias_backward(grad);
        };
        let strides = gv.strides();
        if strides[0].unsigned_abs() < strides[1].unsigned_abs() {
            return <B as ModuleOps<B>>::linear_bias_backward(grad);
        }
        // Column blocks in parallel; within a column the rows are added in order, from 0.0 (so
        // a column of −0.0 sums to +0.0, as there).
        let mut sums = vec![0.0f32; cols];
        sums.par_chunks_mut(BIAS_COLUMNS)
            .enumerate()
            .for_each(|(block, acc)| {
                let first = block * BIAS_COLUMNS;
                for row in 0..rows {
                    let values = &g[row * cols + first..row * cols + first + acc.len()];
                    for (a, &v) in acc.iter_mut().zip(values) {
                        *a += v;
                    }
                }
            });
        from_values(sums, &[cols])
    }

    fn dense_weight_grad(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        let (Some(xv), Some(gv)) = (as_matrix(&x), as_matrix(&grad)) else {
            return <B as ModuleOps<B>>::linear_weight_backward(x, grad);
        };
        if xv.nrows() != gv.nrows() {
            return <B as ModuleOps<B>>::linear_weight_backward(x, grad);
        }
        let out = narrow::transpose_vector(xv, gv).unwrap_or_else(|| product(xv.t(), gv));
        NdArrayTensor::from(out.into_dyn().into_shared())
    }

    fn weighted_bce_parts(
        z: FloatTensor<B>,
        y: FloatTensor<B>,
        w: FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let (Some((zs, shape)), Some((ys, y_shape)), Some((ws, w_shape))) =
            (f32_values(&z), f32_values(&y), f32_values(&w))
        else {
            return composed::weighted_bce_parts::<B>(z, y, w);
        };
        if shape != y_shape || shape != w_shape {
            return composed::weighted_bce_parts::<B>(z, y, w);
        }
        let [values, slopes] = map_pieces(zs.len(), |range, [values, slopes]| {
            let (zs, ys, ws) = (&zs[range.clone()], &ys[range.clone()], &ws[range]);
            for i in 0..zs.len() {
                let (z, y, w) = (zs[i], ys[i], ws[i]);
                let tail = libm::log1pf((-z.abs()).exp());
                let relu = if z < 0.0 { 0.0 } else { z };
                let loss = (relu - z * y) + tail;
                // Burn's sigmoid: exp(−ln(1 + e^{−z})).
                let sigmoid = (-((-z).exp() + 1.0).ln()).exp();
                values[i] = loss * w;
                slopes[i] = w * (sigmoid - y);
            }
        });
        (from_values(values, &shape), from_values(slopes, &shape))
    }
}
