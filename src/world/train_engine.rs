//! Training the policy on the CPU, written directly over its weights: the `mprm world` trainer
//! when it runs on the CPU (on CUDA, Burn's autodiff trains [`Policy`]).
//!
//! Why a second trainer: at the policy's size (width 128, batches of 64 traces of about 30
//! tokens) Burn's CPU backend spends its time creating and copying small tensors, and a batch is a
//! padded rectangle as long as its longest trace, so about half of every product is padding. Here
//! a batch is its traces' tokens packed end to end: each matrix product covers exactly the
//! predicted positions, attention runs trace by trace over each trace's own length, and the
//! backward pass is written out by hand.
//!
//! The same loss as Burn's ([`Policy::next_token_loss`]) and the same optimiser (Burn's AdamW with
//! its defaults β = (0.9, 0.999), ε = 1e-5 and decoupled decay of every parameter), with one
//! deliberate difference: the gradient of GELU is exact here, Φ(x) + x·φ(x), whereas Burn 0.21
//! differentiates its exact (erf) GELU with the derivative of the tanh approximation, up to ~1e-3
//! off. Tests: the layer norm's and the attention's backward passes and the exact GELU derivative
//! agree with f64 central differences (1e-5 of the largest entry); given Burn's GELU derivative,
//! the loss agrees with Burn's to 1e-5 and every gradient to 1e-3 of its largest entry (2.2e-4
//! measured; f32 rounding in two different orders), and the weights after four AdamW steps to
//! 1e-4.
//!
//! Reproducible for a seed, and independent of the thread count: every output element is computed
//! by one thread and summed in a fixed order. The matrix products go through `matrixmultiply`
//! (via ndarray), whose threads split the output matrix, never a sum; element-wise passes split
//! rows; attention splits traces; column sums and the embedding scatter run in token order.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::fused_ops::erf::erf_f32_slice;

use super::learn::{PolicyTraining, drive};
use super::policy::{PolicySpec, initial_parameters, parameter_shapes};
use super::tokens::{PAD, VOCAB};

#[cfg(doc)]
use super::policy::Policy;

/// Layer-norm ε (the policy's).
const LN_EPS: f32 = 1e-5;
/// Burn's AdamW defaults, which the Burn trainer uses.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-5;
/// Rows per task of the element-wise passes.
const ROWS_PER_TASK: usize = 64;

/// Where each parameter sits in [`parameter_shapes`] order: the two embeddings, then twelve per
/// layer, then the final layer norm and the output layer.
mod at {
    pub const TOK: usize = 0;
    pub const POS: usize = 1;
    pub const PER_BLOCK: usize = 12;
    pub const LN1_GAIN: usize = 0;
    pub const LN1_BIAS: usize = 1;
    pub const QKV_W: usize = 2;
    pub const QKV_B: usize = 3;
    pub const PROJ_W: usize = 4;
    pub const PROJ_B: usize = 5;
    pub const LN2_GAIN: usize = 6;
    pub const LN2_BIAS: usize = 7;
    pub const FC1_W: usize = 8;
    pub const FC1_B: usize = 9;
    pub const FC2_W: usize = 10;
    pub const FC2_B: usize = 11;

    /// Parameter `k` of layer `l`.
    pub fn block(l: usize, k: usize) -> usize {
        2 + PER_BLOCK * l + k
    }

    /// The final layer norm's gain; its bias, the output weight and bias follow.
    pub fn head(layers: usize) -> usize {
        2 + PER_BLOCK * layers
    }
}

/// A batch of traces packed end to end: trace r predicts `targets[s..s + n]` from
/// `inputs[s..s + n]` at positions 0..n, (s, n) = `spans[r]`.
struct Packed {
    inputs: Vec<u32>,
    positions: Vec<usize>,
    targets: Vec<u32>,
    spans: Vec<(usize, usize)>,
    /// Targets that are not padding (the loss's denominator).
    counted: usize,
}

impl Packed {
    fn new(rows: &[Vec<u32>], max_len: usize) -> Result<Self> {
        let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
        if longest < 2 {
            return Err(Error::invalid(
                "next-token loss needs sequences of 2+ tokens",
            ));
        }
        super::policy::check_length(longest, max_len)?;
        let mut p = Packed {
            inputs: Vec::new(),
            positions: Vec::new(),
            targets: Vec::new(),
            spans: Vec::with_capacity(rows.len()),
            counted: 0,
        };
        for row in rows {
            if let Some(t) = row.iter().find(|&&t| t as usize >= VOCAB) {
                return Err(Error::invalid(format!(
                    "token {t} is outside the vocabulary"
                )));
            }
            let n = row.len().saturating_sub(1);
            p.spans.push((p.inputs.len(), n));
            p.inputs.extend_from_slice(&row[..n]);
            p.positions.extend(0..n);
            p.targets
                .extend_from_slice(row.get(1..).unwrap_or_default());
        }
        p.counted = p.targets.iter().filter(|&&y| y != PAD).count();
        if p.counted == 0 {
            return Err(Error::invalid("next-token loss over no targets"));
        }
        Ok(p)
    }

    fn tokens(&self) -> usize {
        self.inputs.len()
    }
}

fn view(a: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), a).expect("buffer sized rows × cols")
}

fn view_mut(a: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), a).expect("buffer sized rows × cols")
}

/// y = x·W + b for x [n, d_in], W [d_in, d_out] row-major.
fn dense(x: &[f32], n: usize, w: &[f32], b: &[f32], y: &mut [f32]) {
    let d_out = b.len();
    let d_in = w.len() / d_out;
    for row in y.chunks_exact_mut(d_out) {
        row.copy_from_slice(b);
    }
    general_mat_mul(
        1.0,
        &view(x, n, d_in),
        &view(w, d_in, d_out),
        1.0,
        &mut view_mut(y, n, d_out),
    );
}

/// dx = dy·Wᵀ, or dx += dy·Wᵀ when `accumulate`.
fn dense_input_grad(
    dy: &[f32],
    n: usize,
    w: &[f32],
    d_in: usize,
    dx: &mut [f32],
    accumulate: bool,
) {
    let d_out = w.len() / d_in;
    general_mat_mul(
        1.0,
        &view(dy, n, d_out),
        &view(w, d_in, d_out).t(),
        if accumulate { 1.0 } else { 0.0 },
        &mut view_mut(dx, n, d_in),
    );
}

/// dW = xᵀ·dy and db = Σ_rows dy (summed in row order).
fn dense_param_grads(x: &[f32], n: usize, dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    let d_out = db.len();
    let d_in = dw.len() / d_out;
    general_mat_mul(
        1.0,
        &view(x, n, d_in).t(),
        &view(dy, n, d_out),
        0.0,
        &mut view_mut(dw, d_in, d_out),
    );
    column_sums(dy, db);
}

/// out[j] = Σ_i m[i][j], rows in order.
fn column_sums(m: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for row in m.chunks_exact(out.len()) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// out[j] = Σ_i a[i][j]·b[i][j], rows in order.
fn column_dot(a: &[f32], b: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    let w = out.len();
    for (ra, rb) in a.chunks_exact(w).zip(b.chunks_exact(w)) {
        for ((o, &x), &y) in out.iter_mut().zip(ra).zip(rb) {
            *o += x * y;
        }
    }
}

/// What a layer norm keeps for its backward pass.
struct NormCache {
    /// (x − mean)/σ, [n, W].
    xhat: Vec<f32>,
    /// 1/σ per row.
    inv: Vec<f32>,
}

/// y = (x − mean)/σ·gain + bias per row of width W.
fn norm_forward(x: &[f32], gain: &[f32], bias: &[f32], y: &mut [f32]) -> NormCache {
    let w = gain.len();
    let n = x.len() / w;
    let mut xhat = vec![0.0f32; x.len()];
    let mut inv = vec![0.0f32; n];
    x.par_chunks(w * ROWS_PER_TASK)
        .zip(y.par_chunks_mut(w * ROWS_PER_TASK))
        .zip(xhat.par_chunks_mut(w * ROWS_PER_TASK))
        .zip(inv.par_chunks_mut(ROWS_PER_TASK))
        .for_each(|(((x, y), xhat), inv)| {
            for (((xr, yr), hr), iv) in x
                .chunks_exact(w)
                .zip(y.chunks_exact_mut(w))
                .zip(xhat.chunks_exact_mut(w))
                .zip(inv.iter_mut())
            {
                let mean = xr.iter().sum::<f32>() / w as f32;
                let var = xr.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / w as f32;
                *iv = 1.0 / (var + LN_EPS).sqrt();
                for j in 0..w {
                    hr[j] = (xr[j] - mean) * *iv;
                    yr[j] = hr[j] * gain[j] + bias[j];
                }
            }
        });
    NormCache { xhat, inv }
}

/// The layer norm's backward pass: dx += ∂/∂x of ⟨dy, y⟩, and the gain's and bias's gradients.
fn norm_backward(
    dy: &[f32],
    cache: &NormCache,
    gain: &[f32],
    dx: &mut [f32],
    dgain: &mut [f32],
    dbias: &mut [f32],
) {
    let w = gain.len();
    column_dot(dy, &cache.xhat, dgain);
    column_sums(dy, dbias);
    dy.par_chunks(w * ROWS_PER_TASK)
        .zip(cache.xhat.par_chunks(w * ROWS_PER_TASK))
        .zip(cache.inv.par_chunks(ROWS_PER_TASK))
        .zip(dx.par_chunks_mut(w * ROWS_PER_TASK))
        .for_each(|(((dy, xhat), inv), dx)| {
            let mut g = vec![0.0f32; w];
            for (((dr, hr), &iv), xr) in dy
                .chunks_exact(w)
                .zip(xhat.chunks_exact(w))
                .zip(inv)
                .zip(dx.chunks_exact_mut(w))
            {
                for j in 0..w {
                    g[j] = dr[j] * gain[j];
                }
                let mean_g = g.iter().sum::<f32>() / w as f32;
                let mean_gh = g.iter().zip(hr).map(|(a, b)| a * b).sum::<f32>() / w as f32;
                for j in 0..w {
                    xr[j] += iv * (g[j] - mean_g - hr[j] * mean_gh);
                }
            }
        });
}

/// 1/√(2π).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// GELU x·Φ(x) of `f` into `g`, keeping Φ(x) in `cdf` for the backward pass.
fn gelu_forward(f: &[f32], g: &mut [f32], cdf: &mut [f32]) {
    const CHUNK: usize = 4096;
    f.par_chunks(CHUNK)
        .zip(g.par_chunks_mut(CHUNK))
        .zip(cdf.par_chunks_mut(CHUNK))
        .for_each(|((f, g), cdf)| {
            for (c, &x) in cdf.iter_mut().zip(f) {
                *c = x / std::f32::consts::SQRT_2;
            }
            let scaled = cdf.to_vec();
            erf_f32_slice(&scaled, cdf);
            for ((c, gv), &x) in cdf.iter_mut().zip(g.iter_mut()).zip(f) {
                *c = (*c + 1.0) * 0.5;
                *gv = x * *c;
            }
        });
}

/// Which derivative of GELU the backward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GeluDerivative {
    /// Φ(x) + x·φ(x), the derivative of the function the forward computes.
    Exact,
    /// What Burn 0.21's autodiff uses for its exact (erf) GELU: the derivative of the tanh
    /// approximation (burn-backend `ActivationOps::gelu_backward`), off by up to ~1e-3. Only the
    /// tests use it, to hold the rest of the backward pass to Burn's.
    #[cfg(test)]
    BurnTanh,
}

/// dg ← dg·GELU′(x) in place.
fn gelu_backward(f: &[f32], cdf: &[f32], dg: &mut [f32], derivative: GeluDerivative) {
    const CHUNK: usize = 4096;
    dg.par_chunks_mut(CHUNK)
        .zip(f.par_chunks(CHUNK))
        .zip(cdf.par_chunks(CHUNK))
        .for_each(|((dg, f), cdf)| match derivative {
            GeluDerivative::Exact => {
                for ((d, &x), &c) in dg.iter_mut().zip(f).zip(cdf) {
                    *d *= c + x * (-0.5 * x * x).exp() * FRAC_1_SQRT_2PI;
                }
            }
            #[cfg(test)]
            GeluDerivative::BurnTanh => {
                for (d, &x) in dg.iter_mut().zip(f) {
                    let x3 = x * x * x;
                    let t = (0.035_677_4 * x3 + 0.797_885 * x).tanh();
                    *d *= 0.5 * t + (0.053_516_1 * x3 + 0.398_942 * x) * (1.0 - t * t) + 0.5;
                }
            }
        });
}

/// Splits `buf` into consecutive pieces of `sizes` elements.
fn split_sizes(mut buf: &mut [f32], sizes: impl Iterator<Item = usize>) -> Vec<&mut [f32]> {
    let mut out = Vec::new();
    for n in sizes {
        let (head, tail) = std::mem::take(&mut buf).split_at_mut(n);
        out.push(head);
        buf = tail;
    }
    out
}

/// Shape of the attention of one trace: positions, width, heads.
#[derive(Clone, Copy)]
struct Heads {
    width: usize,
    heads: usize,
}

impl Heads {
    fn dh(&self) -> usize {
        self.width / self.heads
    }

    fn scale(&self) -> f32 {
        1.0 / (self.dh() as f32).sqrt()
    }
}

/// Causal attention of one trace of `t` positions: qkv [t, 3W] in, the softmax weights
/// [H, t, t] (row i nonzero up to column i) and the output [t, W] out.
fn attention_forward(hd: Heads, t: usize, qkv: &[f32], probs: &mut [f32], out: &mut [f32]) {
    let (w, dh, scale) = (hd.width, hd.dh(), hd.scale());
    out.fill(0.0);
    for h in 0..hd.heads {
        let c0 = h * dh;
        for i in 0..t {
            let q = &qkv[i * 3 * w + c0..i * 3 * w + c0 + dh];
            let p = &mut probs[(h * t + i) * t..(h * t + i + 1) * t];
            let mut max = f32::NEG_INFINITY;
            for (j, pj) in p.iter_mut().enumerate().take(i + 1) {
                let k = &qkv[j * 3 * w + w + c0..j * 3 * w + w + c0 + dh];
                *pj = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
                max = max.max(*pj);
            }
            let mut total = 0.0f32;
            for pj in &mut p[..=i] {
                *pj = (*pj - max).exp();
                total += *pj;
            }
            let o = &mut out[i * w + c0..i * w + c0 + dh];
            for (j, pj) in p[..=i].iter_mut().enumerate() {
                *pj /= total;
                let v = &qkv[j * 3 * w + 2 * w + c0..j * 3 * w + 2 * w + c0 + dh];
                for (a, &b) in o.iter_mut().zip(v) {
                    *a += *pj * b;
                }
            }
        }
    }
}

/// The backward pass of [`attention_forward`]: dqkv [t, 3W] from d_out [t, W].
fn attention_backward(
    hd: Heads,
    t: usize,
    qkv: &[f32],
    probs: &[f32],
    d_out: &[f32],
    dqkv: &mut [f32],
) {
    let (w, dh, scale) = (hd.width, hd.dh(), hd.scale());
    dqkv.fill(0.0);
    let mut ds = vec![0.0f32; t];
    for h in 0..hd.heads {
        let c0 = h * dh;
        for i in 0..t {
            let p = &probs[(h * t + i) * t..(h * t + i) * t + i + 1];
            let g = &d_out[i * w + c0..i * w + c0 + dh];
            // dP_ij = g·v_j, then dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik)
            let mut weighted = 0.0f32;
            for (j, &pj) in p.iter().enumerate() {
                let v = &qkv[j * 3 * w + 2 * w + c0..j * 3 * w + 2 * w + c0 + dh];
                ds[j] = g.iter().zip(v).map(|(a, b)| a * b).sum::<f32>();
                weighted += pj * ds[j];
            }
            for (j, &pj) in p.iter().enumerate() {
                let s = pj * (ds[j] - weighted) * scale;
                let (q_at, k_at, v_at) =
                    (i * 3 * w + c0, j * 3 * w + w + c0, j * 3 * w + 2 * w + c0);
                for c in 0..dh {
                    dqkv[q_at + c] += s * qkv[k_at + c];
                    dqkv[k_at + c] += s * qkv[q_at + c];
                    dqkv[v_at + c] += pj * g[c];
                }
            }
        }
    }
}

/// Parameters (or gradients) `i` and `i + 1`, both writable: a weight and its bias, or a gain
/// and its bias.
fn pair(v: &mut [Vec<f32>], i: usize) -> (&mut [f32], &mut [f32]) {
    let (a, b) = v[i..].split_at_mut(1);
    (&mut a[0], &mut b[0])
}

/// What one layer keeps for its backward pass.
struct LayerCache {
    norm1: NormCache,
    h1: Vec<f32>,
    qkv: Vec<f32>,
    probs: Vec<f32>,
    att: Vec<f32>,
    norm2: NormCache,
    h2: Vec<f32>,
    f: Vec<f32>,
    cdf: Vec<f32>,
    g: Vec<f32>,
}

/// The policy's parameters and AdamW state, in [`parameter_shapes`] order.
pub struct PolicyTrainer {
    spec: PolicySpec,
    params: Vec<Vec<f32>>,
    moment_1: Vec<Vec<f32>>,
    moment_2: Vec<Vec<f32>>,
    /// Optimiser steps taken.
    time: i32,
    weight_decay: f32,
    gelu_derivative: GeluDerivative,
}

impl PolicyTrainer {
    /// A trainer starting from `params` (in [`parameter_shapes`] order) with AdamW's decoupled
    /// `weight_decay`.
    pub fn new(spec: PolicySpec, params: Vec<Vec<f32>>, weight_decay: f32) -> Result<Self> {
        spec.check()?;
        let shapes = parameter_shapes(&spec);
        if params.len() != shapes.len()
            || params
                .iter()
                .zip(&shapes)
                .any(|(p, (_, s))| p.len() != s.iter().product::<usize>())
        {
            return Err(Error::invalid(
                "policy parameters do not match the policy's shape",
            ));
        }
        let zeros: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
        Ok(PolicyTrainer {
            spec,
            moment_1: zeros.clone(),
            moment_2: zeros,
            params,
            time: 0,
            weight_decay,
            gelu_derivative: GeluDerivative::Exact,
        })
    }

    /// The parameters, in [`parameter_shapes`] order.
    pub fn parameters(&self) -> &[Vec<f32>] {
        &self.params
    }

    /// The parameters, giving up the optimiser state.
    pub fn into_parameters(self) -> Vec<Vec<f32>> {
        self.params
    }

    fn heads(&self) -> Heads {
        Heads {
            width: self.spec.width,
            heads: self.spec.heads,
        }
    }

    /// The mean next-token cross-entropy of `rows` over every target that is not padding, and
    /// its gradient in every parameter ([`parameter_shapes`] order).
    pub fn loss_and_gradients(&self, rows: &[Vec<u32>]) -> Result<(f64, Vec<Vec<f32>>)> {
        let b = Packed::new(rows, self.spec.max_len)?;
        let (n, w, layers) = (b.tokens(), self.spec.width, self.spec.layers);
        let hd = self.heads();
        let p = &self.params;
        let prob_sizes = || b.spans.iter().map(|&(_, t)| hd.heads * t * t);

        // forward
        let mut x = vec![0.0f32; n * w];
        for (i, xr) in x.chunks_exact_mut(w).enumerate() {
            let (te, pe) = (b.inputs[i] as usize * w, b.positions[i] * w);
            for j in 0..w {
                xr[j] = p[at::TOK][te + j] + p[at::POS][pe + j];
            }
        }
        let mut caches = Vec::with_capacity(layers);
        let mut tmp = vec![0.0f32; n * w];
        for l in 0..layers {
            let q = |k| &p[at::block(l, k)];
            let mut h1 = vec![0.0f32; n * w];
            let norm1 = norm_forward(&x, q(at::LN1_GAIN), q(at::LN1_BIAS), &mut h1);
            let mut qkv = vec![0.0f32; n * 3 * w];
            dense(&h1, n, q(at::QKV_W), q(at::QKV_B), &mut qkv);
            let mut probs = vec![0.0f32; prob_sizes().sum()];
            let mut att = vec![0.0f32; n * w];
            split_sizes(&mut probs, prob_sizes())
                .into_par_iter()
                .zip(split_sizes(&mut att, b.spans.iter().map(|&(_, t)| t * w)))
                .zip(&b.spans)
                .for_each(|((pr, out), &(s, t))| {
                    attention_forward(hd, t, &qkv[s * 3 * w..(s + t) * 3 * w], pr, out)
                });
            dense(&att, n, q(at::PROJ_W), q(at::PROJ_B), &mut tmp);
            x.iter_mut().zip(&tmp).for_each(|(a, d)| *a += d);
            let mut h2 = vec![0.0f32; n * w];
            let norm2 = norm_forward(&x, q(at::LN2_GAIN), q(at::LN2_BIAS), &mut h2);
            let mut f = vec![0.0f32; n * 4 * w];
            dense(&h2, n, q(at::FC1_W), q(at::FC1_B), &mut f);
            let (mut g, mut cdf) = (vec![0.0f32; n * 4 * w], vec![0.0f32; n * 4 * w]);
            gelu_forward(&f, &mut g, &mut cdf);
            dense(&g, n, q(at::FC2_W), q(at::FC2_B), &mut tmp);
            x.iter_mut().zip(&tmp).for_each(|(a, d)| *a += d);
            caches.push(LayerCache {
                norm1,
                h1,
                qkv,
                probs,
                att,
                norm2,
                h2,
                f,
                cdf,
                g,
            });
        }
        let hd_at = at::head(layers);
        let mut hidden = vec![0.0f32; n * w];
        let normf = norm_forward(&x, &p[hd_at], &p[hd_at + 1], &mut hidden);
        let mut logits = vec![0.0f32; n * VOCAB];
        dense(&hidden, n, &p[hd_at + 2], &p[hd_at + 3], &mut logits);

        // the loss and its gradient in the logits, in f64 as the Burn trainer computes them
        let weight = 1.0 / b.counted as f64;
        let mut value = 0.0f64;
        let mut dz = vec![0.0f32; n * VOCAB];
        for ((z, d), &y) in logits
            .chunks_exact(VOCAB)
            .zip(dz.chunks_exact_mut(VOCAB))
            .zip(&b.targets)
        {
            if y == PAD {
                continue;
            }
            let m = z.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
            let mut e = [0.0f64; VOCAB];
            for (ek, &zk) in e.iter_mut().zip(z) {
                *ek = (zk as f64 - m).exp();
            }
            let total: f64 = e.iter().sum();
            value += weight * (m + total.ln() - z[y as usize] as f64);
            for (k, (dk, ek)) in d.iter_mut().zip(e).enumerate() {
                let onehot = if k == y as usize { 1.0 } else { 0.0 };
                *dk = (weight * (ek / total - onehot)) as f32;
            }
        }

        // backward
        let mut grads: Vec<Vec<f32>> = p.iter().map(|v| vec![0.0f32; v.len()]).collect();
        {
            let (dw, db) = pair(&mut grads, hd_at + 2);
            dense_param_grads(&hidden, n, &dz, dw, db);
            dense_input_grad(&dz, n, &p[hd_at + 2], w, &mut tmp, false);
            let (gain, bias) = pair(&mut grads, hd_at);
            x.fill(0.0);
            norm_backward(&tmp, &normf, &p[hd_at], &mut x, gain, bias);
        }
        // x now holds the gradient in the residual stream
        let mut dh = vec![0.0f32; n * w];
        for l in (0..layers).rev() {
            let c = &caches[l];
            let q = |k| &p[at::block(l, k)];
            let gl = &mut grads[at::block(l, 0)..at::block(l + 1, 0)];
            // x += fc2(gelu(fc1(ln2(x))))
            {
                let (dw, db) = pair(gl, at::FC2_W);
                dense_param_grads(&c.g, n, &x, dw, db);
                let mut dg = vec![0.0f32; n * 4 * w];
                dense_input_grad(&x, n, q(at::FC2_W), 4 * w, &mut dg, false);
                gelu_backward(&c.f, &c.cdf, &mut dg, self.gelu_derivative);
                let (dw, db) = pair(gl, at::FC1_W);
                dense_param_grads(&c.h2, n, &dg, dw, db);
                dense_input_grad(&dg, n, q(at::FC1_W), w, &mut dh, false);
                let (gain, bias) = pair(gl, at::LN2_GAIN);
                norm_backward(&dh, &c.norm2, q(at::LN2_GAIN), &mut x, gain, bias);
            }
            // x += proj(attention(ln1(x)))
            {
                let (dw, db) = pair(gl, at::PROJ_W);
                dense_param_grads(&c.att, n, &x, dw, db);
                dense_input_grad(&x, n, q(at::PROJ_W), w, &mut tmp, false);
                let mut dqkv = vec![0.0f32; n * 3 * w];
                split_sizes(&mut dqkv, b.spans.iter().map(|&(_, t)| t * 3 * w))
                    .into_par_iter()
                    .zip(&b.spans)
                    .zip(
                        b.spans
                            .iter()
                            .scan(0usize, |o, &(_, t)| {
                                let here = *o;
                                *o += hd.heads * t * t;
                                Some(here)
                            })
                            .collect::<Vec<_>>(),
                    )
                    .for_each(|((d, &(s, t)), po)| {
                        attention_backward(
                            hd,
                            t,
                            &c.qkv[s * 3 * w..(s + t) * 3 * w],
                            &c.probs[po..po + hd.heads * t * t],
                            &tmp[s * w..(s + t) * w],
                            d,
                        )
                    });
                let (dw, db) = pair(gl, at::QKV_W);
                dense_param_grads(&c.h1, n, &dqkv, dw, db);
                dense_input_grad(&dqkv, n, q(at::QKV_W), w, &mut dh, false);
                let (gain, bias) = pair(gl, at::LN1_GAIN);
                norm_backward(&dh, &c.norm1, q(at::LN1_GAIN), &mut x, gain, bias);
            }
        }
        // the embeddings, in token order
        for (i, dr) in x.chunks_exact(w).enumerate() {
            let te = b.inputs[i] as usize * w;
            for (g, &d) in grads[at::TOK][te..te + w].iter_mut().zip(dr) {
                *g += d;
            }
            let pe = b.positions[i] * w;
            for (g, &d) in grads[at::POS][pe..pe + w].iter_mut().zip(dr) {
                *g += d;
            }
        }
        Ok((value, grads))
    }

    /// One AdamW step at learning rate `lr`, as Burn's `AdamW` takes it (same formulas, in f32).
    pub fn adamw_step(&mut self, lr: f64, grads: &[Vec<f32>]) {
        self.time += 1;
        let correction_1 = 1.0 - BETA_1.powi(self.time);
        let correction_2 = 1.0 - BETA_2.powi(self.time);
        let decay = (1.0 - lr * self.weight_decay as f64) as f32;
        let lr = lr as f32;
        self.params
            .par_iter_mut()
            .zip(self.moment_1.par_iter_mut())
            .zip(self.moment_2.par_iter_mut())
            .zip(grads.par_iter())
            .for_each(|(((p, m), v), g)| {
                for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                    *m = *m * BETA_1 + g * (1.0 - BETA_1);
                    *v = *v * BETA_2 + g * g * (1.0 - BETA_2);
                    let delta = (*m / correction_1) / ((*v / correction_2).sqrt() + ADAM_EPS);
                    *p = *p * decay - delta * lr;
                }
            });
    }
}

/// The trained parameters ([`parameter_shapes`] order) and each step's loss before its update.
pub struct TrainedParameters {
    /// The parameters.
    pub params: Vec<Vec<f32>>,
    /// Mean next-token cross-entropy of each step's batch.
    pub losses: Vec<f64>,
}

/// Trains a policy of shape `spec` under `t` on the CPU: the same initialisation, batches,
/// schedule and optimiser as [`super::learn::train_policy`].
pub fn train_policy_on_cpu(spec: PolicySpec, t: &PolicyTraining) -> Result<TrainedParameters> {
    t.check()?;
    let mut trainer = PolicyTrainer::new(
        spec,
        initial_parameters(&spec, t.seed)?,
        t.weight_decay as f32,
    )?;
    let losses = drive(t, |rows, lr| {
        let (value, grads) = trainer.loss_and_gradients(rows)?;
        trainer.adamw_step(lr, &grads);
        Ok(value)
    })?;
    Ok(TrainedParameters {
        params: trainer.into_parameters(),
        losses,
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::policy::Policy;
    use super::super::tokens::{BOS, EOS};
    use super::*;

    type Ad = Autodiff<NdArray<f32>>;

    /// Initial parameters with every gain, bias and weight moved off its initial value by up to
    /// ±0.2, so no term of the backward pass hides behind a 1 or a 0. (Scaled up eightfold, the
    /// softmaxes saturate and the two trainers' f32 gradients drift apart by up to 3e-3 of the
    /// largest entry: conditioning, not a formula, as the central-difference test shows.)
    fn jittered(spec: &PolicySpec, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        initial_parameters(spec, seed)
            .unwrap()
            .into_iter()
            .map(|p| {
                p.into_iter()
                    .map(|v| v + (rng.random::<f32>() - 0.5) * 0.4)
                    .collect()
            })
            .collect()
    }

    /// Traces of different lengths (one too short to predict anything), with padding targets
    /// inside one of them, which the loss must skip as Burn's does.
    fn rows(seed: u64) -> Vec<Vec<u32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out: Vec<Vec<u32>> = [13usize, 5, 24, 9, 2]
            .iter()
            .map(|&n| {
                let mut r = vec![BOS];
                r.extend((1..n - 1).map(|_| rng.random_range(3..VOCAB as u32)));
                r.push(EOS);
                r
            })
            .collect();
        out.push(vec![BOS]);
        out[3][4] = PAD;
        out
    }

    fn worst_relative(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / scale)
            .fold(0.0f32, f32::max)
    }

    #[test]
    fn loss_and_every_gradient_match_burn_autodiff() {
        let spec = PolicySpec::tiny();
        let dev = Default::default();
        for seed in [1u64, 2] {
            let params = jittered(&spec, seed);
            let rows = rows(seed);
            let mut ours = PolicyTrainer::new(spec, params.clone(), 0.0).unwrap();
            ours.gelu_derivative = GeluDerivative::BurnTanh;
            let (value, grads) = ours.loss_and_gradients(&rows).unwrap();
            let burn = Policy::<Ad>::from_values(spec, params, &dev).unwrap();
            let (loss, want) = burn.next_token_loss(&rows).unwrap();
            let want_grads = burn.parameter_gradients(&loss.backward());
            assert!((value - want).abs() < 1e-5 * want, "{value} vs {want}");
            assert!(value > 0.5, "{value}");
            let shapes = parameter_shapes(&spec);
            assert_eq!(grads.len(), shapes.len());
            for ((name, _), (g, w)) in shapes.iter().zip(grads.iter().zip(&want_grads)) {
                assert_eq!(g.len(), w.len(), "{name}");
                assert!(
                    w.iter().any(|&v| v != 0.0),
                    "{name}: Burn's gradient is zero"
                );
                // measured: up to 2.2e-4 below the output layer, 1e-6 above it; a wiring error
                // (a wrong weight, a missing residual) is off by O(1)
                let err = worst_relative(g, w);
                assert!(err < 1e-3, "{name}: worst error {err} of the largest entry");
            }
        }
    }

    #[test]
    fn training_follows_burn_and_is_reproducible_across_thread_counts() {
        let spec = PolicySpec::tiny();
        let dev = Default::default();
        let params = jittered(&spec, 4);
        let (lr, wd) = (3e-3, 0.01);
        let mut ours = PolicyTrainer::new(spec, params.clone(), wd as f32).unwrap();
        ours.gelu_derivative = GeluDerivative::BurnTanh;
        let mut burn = Policy::<Ad>::from_values(spec, params.clone(), &dev).unwrap();
        let mut optim = AdamWConfig::new()
            .with_weight_decay(wd as f32)
            .init::<Ad, Policy<Ad>>();
        for step in 0..4u64 {
            let rows = rows(10 + step);
            let (_, grads) = ours.loss_and_gradients(&rows).unwrap();
            ours.adamw_step(lr, &grads);
            let (loss, _) = burn.next_token_loss(&rows).unwrap();
            let g = GradientsParams::from_grads(loss.backward(), &burn);
            burn = optim.step(lr, burn, g);
        }
        let want = burn.parameter_values();
        let shapes = parameter_shapes(&spec);
        for ((name, _), ((got, want), start)) in shapes
            .iter()
            .zip(ours.parameters().iter().zip(&want).zip(&params))
        {
            // each weight moved by up to 4·lr; the two trainers agree far inside that
            let moved = got
                .iter()
                .zip(start)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(moved > 5e-3, "{name} moved only {moved}");
            let gap = got
                .iter()
                .zip(want)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            // Adam moves a weight whose gradient is near zero by up to lr per step in the
            // direction of that gradient's sign, so rounding can show up at that scale there
            assert!(gap < 1e-3, "{name}: {gap}");
        }

        // the whole loop: same bytes on pools of 1 and 3 threads, and the loss falls
        let t = PolicyTraining {
            steps: 30,
            batch: 16,
            lr: 1e-2,
            seed: 9,
            ..PolicyTraining::default()
        };
        let spec = PolicySpec {
            width: 32,
            layers: 1,
            heads: 2,
            max_len: 160,
        };
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| train_policy_on_cpu(spec, &t).unwrap())
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.losses, b.losses);
        assert_eq!(a.params, b.params);
        let early: f64 = a.losses[..5].iter().sum::<f64>() / 5.0;
        let late: f64 = a.losses[25..].iter().sum::<f64>() / 5.0;
        assert!(late < 0.75 * early, "{early} → {late}");
    }

    /// ∂/∂x_i of Σ dy·f(x) by central differences in f64.
    fn numeric_gradient(x: &[f64], dy: &[f64], f: impl Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
        let h = 1e-6;
        (0..x.len())
            .map(|i| {
                let mut a = x.to_vec();
                let mut b = x.to_vec();
                a[i] += h;
                b[i] -= h;
                let (fa, fb) = (f(&a), f(&b));
                dy.iter()
                    .zip(fa.iter().zip(&fb))
                    .map(|(d, (p, q))| d * (p - q))
                    .sum::<f64>()
                    / (2.0 * h)
            })
            .collect()
    }

    fn random_f64(n: usize, rng: &mut ChaCha8Rng, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|_| (rng.random::<f64>() - 0.5) * 2.0 * scale)
            .collect()
    }

    fn to_f32(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&x| x as f32).collect()
    }

    #[test]
    fn layer_norm_and_attention_backward_match_central_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        // layer norm over rows of width 16, an offset row mean to test the centring
        let (w, n) = (16usize, 3usize);
        let x: Vec<f64> = random_f64(n * w, &mut rng, 1.0)
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i / w == 1 { 5.0 } else { 0.0 })
            .collect();
        let gain = random_f64(w, &mut rng, 2.0);
        let bias = random_f64(w, &mut rng, 1.0);
        let dy = random_f64(n * w, &mut rng, 1.0);
        let ln64 = |x: &[f64]| -> Vec<f64> {
            let mut y = vec![0.0; x.len()];
            for (xr, yr) in x.chunks(w).zip(y.chunks_mut(w)) {
                let mean = xr.iter().sum::<f64>() / w as f64;
                let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / w as f64;
                let inv = 1.0 / (var + LN_EPS as f64).sqrt();
                for j in 0..w {
                    yr[j] = (xr[j] - mean) * inv * gain[j] + bias[j];
                }
            }
            y
        };
        let want = numeric_gradient(&x, &dy, ln64);
        let (g32, b32) = (to_f32(&gain), to_f32(&bias));
        let mut y = vec![0.0f32; n * w];
        let cache = norm_forward(&to_f32(&x), &g32, &b32, &mut y);
        let mut dx = vec![0.0f32; n * w];
        let (mut dg, mut db) = (vec![0.0f32; w], vec![0.0f32; w]);
        norm_backward(&to_f32(&dy), &cache, &g32, &mut dx, &mut dg, &mut db);
        let want32 = to_f32(&want);
        assert!(
            worst_relative(&dx, &want32) < 1e-5,
            "{}",
            worst_relative(&dx, &want32)
        );

        // attention of one trace of 5 positions, width 8, 2 heads
        let hd = Heads { width: 8, heads: 2 };
        let t = 5usize;
        let qkv = random_f64(t * 3 * hd.width, &mut rng, 1.5);
        let d_out = random_f64(t * hd.width, &mut rng, 1.0);
        let att64 = |qkv: &[f64]| -> Vec<f64> {
            let (w, dh) = (hd.width, hd.dh());
            let mut out = vec![0.0; t * w];
            for h in 0..hd.heads {
                for i in 0..t {
                    let s: Vec<f64> = (0..=i)
                        .map(|j| {
                            (0..dh)
                                .map(|c| {
                                    qkv[i * 3 * w + h * dh + c] * qkv[j * 3 * w + w + h * dh + c]
                                })
                                .sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (j, ej) in e.iter().enumerate() {
                        for c in 0..dh {
                            out[i * w + h * dh + c] += ej / z * qkv[j * 3 * w + 2 * w + h * dh + c];
                        }
                    }
                }
            }
            out
        };
        let want = to_f32(&numeric_gradient(&qkv, &d_out, att64));
        let q32 = to_f32(&qkv);
        let mut probs = vec![0.0f32; hd.heads * t * t];
        let mut out = vec![0.0f32; t * hd.width];
        attention_forward(hd, t, &q32, &mut probs, &mut out);
        assert!(worst_relative(&out, &to_f32(&att64(&qkv))) < 1e-6);
        let mut dqkv = vec![0.0f32; t * 3 * hd.width];
        attention_backward(hd, t, &q32, &probs, &to_f32(&d_out), &mut dqkv);
        assert!(
            worst_relative(&dqkv, &want) < 1e-5,
            "{}",
            worst_relative(&dqkv, &want)
        );
    }

    #[test]
    fn the_gelu_derivative_is_exact_and_burns_is_the_tanh_forms() {
        let xs: Vec<f32> = (-400..=400).map(|i| i as f32 / 50.0).collect();
        let (mut g, mut cdf) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        gelu_forward(&xs, &mut g, &mut cdf);
        let mut exact = vec![1.0f32; xs.len()];
        gelu_backward(&xs, &cdf, &mut exact, GeluDerivative::Exact);
        let mut burn = vec![1.0f32; xs.len()];
        gelu_backward(&xs, &cdf, &mut burn, GeluDerivative::BurnTanh);
        // central differences of x·Φ(x) in f64, Φ by libm's erf
        let gelu64 = |x: f64| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
        let mut burn_gap = 0.0f64;
        for (i, &x) in xs.iter().enumerate() {
            let x = x as f64;
            assert!((g[i] as f64 - gelu64(x)).abs() < 1e-6, "gelu({x})");
            let h = 1e-4;
            let numeric = (gelu64(x + h) - gelu64(x - h)) / (2.0 * h);
            assert!((exact[i] as f64 - numeric).abs() < 1e-6, "gelu'({x})");
            burn_gap = burn_gap.max((burn[i] as f64 - numeric).abs());
        }
        // Burn's is visibly another function (which is why the comparison with Burn uses it)
        assert!(burn_gap > 1e-4 && burn_gap < 3e-2, "{burn_gap}");
    }

    #[test]
    fn bad_batches_are_errors() {
        let spec = PolicySpec::tiny();
        let tr = PolicyTrainer::new(spec, initial_parameters(&spec, 1).unwrap(), 0.0).unwrap();
        assert!(tr.loss_and_gradients(&[vec![BOS]]).is_err());
        assert!(tr.loss_and_gradients(&[vec![BOS; 25]]).is_err());
        assert!(tr.loss_and_gradients(&[vec![BOS, VOCAB as u32]]).is_err());
        assert!(tr.loss_and_gradients(&[vec![BOS, PAD, PAD]]).is_err());
        // an empty trace predicts nothing and spoils nothing
        let (with_empty, _) = tr.loss_and_gradients(&[vec![], vec![BOS, 5, EOS]]).unwrap();
        let (alone, _) = tr.loss_and_gradients(&[vec![BOS, 5, EOS]]).unwrap();
        assert_eq!(with_empty, alone);
        assert!(PolicyTrainer::new(spec, vec![vec![0.0; 3]], 0.0).is_err());
    }
}
