//! PRM heads as Burn modules, generic over the backend.
//!
//! `linear` and `mlp` are exactly [`crate::head`]'s heads: they are built from a [`HeadParams`]
//! (so step 0 of training is `HeadParams::init(kind, d, seed)`, the head `gradnorm --at init`
//! differentiates) and export back to one, which is what `head.safetensors` holds.
//!
//! `context` is a small causal sequence model over a rollout's steps, so that a step's score
//! can depend on its prefix, as in an MPRM reading the whole solution:
//!
//! ```text
//! u = W_in ϕ + b_in                      [R, T, h]   per-step projection
//! a = softmax(q kᵀ/√h + causal) v        [R, T, h]   q, k, v = linear maps of u
//! z = w_out · gelu(u + W_o a) + b_out    [R, T]
//! ```
//!
//! It has no [`HeadParams`] form, so `gradnorm --at` cannot read its checkpoints; it is saved as
//! a Burn record only.
//!
//! Parameter ids are fixed small integers (not Burn's random ones) so that records, and
//! therefore checkpoints, are byte-identical between runs.

use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Uniform};

use crate::data::features::FeatureBundle;
use crate::error::{Error, Result};
use crate::fused_ops::{FusedOps, dense, gelu};
use crate::head::{Activation, HeadKind, HeadParams, LinearHead, MlpHead};

/// Which model to train; the `[head]` table of a training config.
///
/// A model is either one of [`crate::head`]'s heads (the ones the gradient engine can
/// differentiate), named by its [`HeadKind`], or the sequence model, which has no head form. On
/// disk and in configs both read as one table tagged by `kind`: `{ kind = "linear" }`,
/// `{ kind = "mlp", hidden = 64, activation = "gelu" }`, `{ kind = "context", hidden = 32 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum ModelSpec {
    /// A head with a [`HeadParams`] form.
    Head(HeadKind),
    /// One causal self-attention layer over the rollout's steps (see the module docs).
    Context(ContextSpec),
}

/// The sequence model's settings, written with `kind = "context"` like a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename = "context")]
pub struct ContextSpec {
    /// Width of the step projection and of the attention.
    pub hidden: usize,
}

/// [`ContextSpec`]'s fields once `kind` is read (serde cannot combine a struct's tag with
/// `deny_unknown_fields`, and an unknown key must stay an error).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextFields {
    hidden: usize,
}

impl ModelSpec {
    /// The linear head.
    pub const LINEAR: ModelSpec = ModelSpec::Head(HeadKind::Linear);

    /// The sequence model of width `hidden`.
    pub fn context(hidden: usize) -> Self {
        ModelSpec::Context(ContextSpec { hidden })
    }

    /// The head kind, for the models that are heads.
    pub fn head_kind(&self) -> Option<HeadKind> {
        match *self {
            ModelSpec::Head(kind) => Some(kind),
            ModelSpec::Context(_) => None,
        }
    }

    /// Whether the model reads whole rollouts (padded) rather than independent steps.
    pub fn is_sequential(&self) -> bool {
        matches!(self, ModelSpec::Context(_))
    }

    /// Checks the widths.
    pub fn validate(&self) -> Result<()> {
        match *self {
            ModelSpec::Head(kind) => kind.validate(),
            ModelSpec::Context(ContextSpec { hidden: 0 }) => {
                Err(Error::invalid("head.hidden must be at least 1"))
            }
            ModelSpec::Context(_) => Ok(()),
        }
    }
}

impl From<HeadKind> for ModelSpec {
    fn from(kind: HeadKind) -> Self {
        ModelSpec::Head(kind)
    }
}

/// `linear`, `mlp (hidden 64, gelu)` or `context (hidden 32)`.
impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSpec::Head(kind) => kind.fmt(f),
            ModelSpec::Context(c) => write!(f, "context (hidden {})", c.hidden),
        }
    }
}

/// Reads the `kind` tag first, so an unknown kind is named in the error instead of serde's
/// "did not match any variant".
impl<'de> serde::Deserialize<'de> for ModelSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut table = toml::Value::deserialize(deserializer)?;
        let kind = table
            .get("kind")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| {
                D::Error::custom("the head table needs `kind` (linear, mlp or context)")
            })?;
        if kind == "context" {
            if let Some(t) = table.as_table_mut() {
                t.remove("kind");
            }
            ContextFields::deserialize(table)
                .map(|f| ModelSpec::context(f.hidden))
                .map_err(D::Error::custom)
        } else {
            // serde lets a unit variant ignore extra keys; a linear head's `hidden` would be
            // dropped silently, so it is refused here.
            if kind == "linear"
                && let Some(extra) = table
                    .as_table()
                    .and_then(|t| t.keys().find(|k| k.as_str() != "kind"))
            {
                return Err(D::Error::custom(format!(
                    "unknown field `{extra}`: a linear head takes no settings"
                )));
            }
            HeadKind::deserialize(table)
                .map(ModelSpec::Head)
                .map_err(|e| D::Error::custom(format!("{e} (context is also a kind)")))
        }
    }
}

/// z = ⟨w, ϕ⟩ + b; `linear.weight` is [d, 1].
#[derive(Module, Debug)]
pub struct LinearModel<B: Backend> {
    /// The single output unit.
    pub linear: Linear<B>,
}

/// z = ⟨w₂, φ(W₁ϕ + b₁)⟩ + b₂; `hidden.weight` is [d, h] (W₁ transposed), `out.weight` [h, 1].
#[derive(Module, Debug)]
pub struct MlpModel<B: Backend> {
    /// W₁, b₁.
    pub hidden: Linear<B>,
    /// w₂, b₂.
    pub out: Linear<B>,
    /// φ.
    #[module(skip)]
    pub activation: Activation,
}

/// The causal sequence head (see the module docs).
#[derive(Module, Debug)]
pub struct ContextModel<B: Backend> {
    /// ϕ → u, [d, h].
    pub input: Linear<B>,
    /// Queries, keys and values side by side, [h, 3h]. One layer rather than three keeps `u`
    /// feeding two graph nodes (see [`crate::train::loss::weighted_bce`] on why that matters).
    pub qkv: Linear<B>,
    /// Attention output projection, [h, h].
    pub output: Linear<B>,
    /// Final logit, [h, 1].
    pub logit: Linear<B>,
}

/// Any trainable PRM model.
// One model exists per run; boxing variants would fight Burn's derive for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum PrmModel<B: Backend> {
    /// See [`LinearModel`].
    Linear(LinearModel<B>),
    /// See [`MlpModel`].
    Mlp(MlpModel<B>),
    /// See [`ContextModel`].
    Context(ContextModel<B>),
}

/// Model input for one batch of rollouts.
#[derive(Debug, Clone)]
pub enum BatchInput<B: Backend> {
    /// Steps as independent rows, [S, d].
    Flat(Tensor<B, 2>),
    /// Rollouts padded to the longest, [R, T, d], and the position `r·T + t` of each real step
    /// in rollout order, [S].
    Padded {
        /// Zero-padded features.
        x: Tensor<B, 3>,
        /// Flat positions of the real steps.
        index: Tensor<B, 1, Int>,
    },
}

/// Feature rows of some rollouts gathered on the host, in f32.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// Rows, [S, d] row-major.
    pub rows: Vec<f32>,
    /// Steps per rollout.
    pub lengths: Vec<usize>,
    /// d.
    pub dim: usize,
}

/// Rollouts per task of [`HostBatch::gather`]: a few hundred KiB of rows each.
const GATHER_ROLLOUTS_PER_TASK: usize = 64;

impl HostBatch {
    /// Gathers the steps of `rollouts` (bundle indices, in this order).
    ///
    /// The rows are copied (and widened from bf16) in parallel, each rollout into its own range
    /// of the output, written once without a zero-fill first: a training step gathers a few MiB.
    pub fn gather(bundle: &FeatureBundle, rollouts: &[usize]) -> Self {
        use crate::data::features::FeatureRows;
        use rayon::prelude::*;
        let d = bundle.dim();
        let lengths: Vec<usize> = rollouts.iter().map(|&r| bundle.rollout_len(r)).collect();
        let total = lengths.iter().sum::<usize>() * d;
        let mut rows = Vec::with_capacity(total);
        let mut slots = Vec::with_capacity(rollouts.len());
        let mut rest = &mut rows.spare_capacity_mut()[..total];
        for &len in &lengths {
            let (slot, tail) = rest.split_at_mut(len * d);
            slots.push(slot);
            rest = tail;
        }
        rollouts
            .par_iter()
            .zip(slots)
            .with_min_len(GATHER_ROLLOUTS_PER_TASK)
            .for_each(|(&r, slot)| {
                let rows = bundle.step_rows(bundle.rollout_steps(r));
                // The set_len below relies on this: every slot is written in full.
                assert_eq!(
                    rows.len(),
                    slot.len(),
                    "rollout {r}: rows and length disagree"
                );
                match rows {
                    FeatureRows::F32(x) => {
                        for (out, &v) in slot.iter_mut().zip(x) {
                            out.write(v);
                        }
                    }
                    FeatureRows::Bf16(x) => {
                        for (out, v) in slot.iter_mut().zip(x) {
                            out.write(v.to_f32());
                        }
                    }
                }
            });
        // SAFETY: the slots tile the first `total` values of the capacity, and each was written
        // in full (asserted above).
        unsafe { rows.set_len(total) };
        HostBatch {
            rows,
            lengths,
            dim: d,
        }
    }

    /// Number of steps S.
    pub fn n_steps(&self) -> usize {
        self.rows.len() / self.dim
    }

    /// Moves the batch to `device` in the layout `spec` reads.
    pub fn into_input<B: Backend>(self, spec: &ModelSpec, device: &B::Device) -> BatchInput<B> {
        let d = self.dim;
        if !spec.is_sequential() {
            let shape = [self.n_steps(), d];
            return BatchInput::Flat(Tensor::from_data(TensorData::new(self.rows, shape), device));
        }
        let r = self.lengths.len();
        let t = self.lengths.iter().copied().max().unwrap_or(0).max(1);
        let mut padded = vec![0f32; r * t * d];
        let mut index = Vec::with_capacity(self.n_steps());
        let mut src = 0;
        for (i, &len) in self.lengths.iter().enumerate() {
            let dst = i * t * d;
            padded[dst..dst + len * d].copy_from_slice(&self.rows[src..src + len * d]);
            src += len * d;
            index.extend((0..len).map(|k| (i * t + k) as i64));
        }
        let n = index.len();
        BatchInput::Padded {
            x: Tensor::from_data(TensorData::new(padded, [r, t, d]), device),
            index: Tensor::from_data(TensorData::new(index, [n]), device),
        }
    }
}

/// A parameter with a fixed id.
fn param<B: Backend, const D: usize>(
    id: u64,
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    let t = Tensor::from_data(TensorData::new(values, shape), device);
    Param::initialized(ParamId::from(id), t.require_grad())
}

/// A `Linear` with weight [d_in, d_out] and bias [d_out]; ids `id` and `id + 1`.
fn linear<B: Backend>(
    id: u64,
    weight: Vec<f32>,
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
    device: &B::Device,
) -> Linear<B> {
    Linear {
        weight: param(id, weight, [d_in, d_out], device),
        bias: Some(param(id + 1, bias, [d_out], device)),
    }
}

fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = m[i * cols + j];
        }
    }
    t
}

fn values<B: Backend, const D: usize>(p: &Param<Tensor<B, D>>) -> Vec<f32> {
    p.val()
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32")
}

fn weight_and_bias<B: Backend>(l: &Linear<B>) -> (Vec<f32>, Vec<f32>) {
    let bias = l.bias.as_ref().map(values).unwrap_or_default();
    (values(&l.weight), bias)
}

impl<B: Backend> PrmModel<B> {
    /// Step-0 weights for `spec` on features of dimension `dim`, fully determined by `seed`.
    pub fn init(spec: &ModelSpec, dim: usize, seed: u64, device: &B::Device) -> Self {
        match *spec {
            ModelSpec::Head(kind) => Self::from_head(&HeadParams::init(kind, dim, seed), device),
            ModelSpec::Context(ContextSpec { hidden: h }) => {
                // Same law as HeadParams::init (Kaiming-uniform, bound 1/√fan_in), own stream.
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut uniform = |fan_in: usize, n: usize| -> Vec<f32> {
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    let dist = Uniform::new_inclusive(-bound, bound).expect("finite bound");
                    (0..n).map(|_| dist.sample(&mut rng)).collect()
                };
                let mut layer = |id: u64, d_in: usize, d_out: usize| {
                    let w = uniform(d_in, d_in * d_out);
                    let b = uniform(d_in, d_out);
                    linear(id, w, b, d_in, d_out, device)
                };
                PrmModel::Context(ContextModel {
                    input: layer(1, dim, h),
                    qkv: layer(3, h, 3 * h),
                    output: layer(5, h, h),
                    logit: layer(7, h, 1),
                })
            }
        }
    }

    /// The Burn form of a [`HeadParams`].
    pub fn from_head(head: &HeadParams, device: &B::Device) -> Self {
        match head {
            HeadParams::Linear(h) => PrmModel::Linear(LinearModel {
                linear: linear(1, h.w.clone(), vec![h.b], h.w.len(), 1, device),
            }),
            HeadParams::Mlp(h) => {
                let hid = h.hidden();
                PrmModel::Mlp(MlpModel {
                    hidden: linear(
                        1,
                        transpose(&h.w1, hid, h.dim),
                        h.b1.clone(),
                        h.dim,
                        hid,
                        device,
                    ),
                    out: linear(3, h.w2.clone(), vec![h.b2], hid, 1, device),
                    activation: h.activation,
                })
            }
        }
    }

    /// The [`HeadParams`] form, for linear and mlp models.
    pub fn to_head(&self) -> Option<HeadParams> {
        match self {
            PrmModel::Linear(m) => {
                let (w, b) = weight_and_bias(&m.linear);
                Some(HeadParams::Linear(LinearHead { w, b: b[0] }))
            }
            PrmModel::Mlp(m) => {
                let (w1t, b1) = weight_and_bias(&m.hidden);
                let (w2, b2) = weight_and_bias(&m.out);
                let dim = w1t.len() / b1.len();
                Some(HeadParams::Mlp(MlpHead {
                    w1: transpose(&w1t, dim, b1.len()),
                    b1,
                    w2,
                    b2: b2[0],
                    activation: m.activation,
                    dim,
                }))
            }
            PrmModel::Context(_) => None,
        }
    }

    /// The spec this model was built from.
    pub fn spec(&self) -> ModelSpec {
        let width = |l: &Linear<B>| l.weight.shape().dims::<2>()[1];
        match self {
            PrmModel::Linear(_) => ModelSpec::LINEAR,
            PrmModel::Mlp(m) => ModelSpec::Head(HeadKind::Mlp {
                hidden: width(&m.hidden),
                activation: m.activation,
            }),
            PrmModel::Context(m) => ModelSpec::context(width(&m.input)),
        }
    }

    /// Input dimension d.
    pub fn dim(&self) -> usize {
        let w = match self {
            PrmModel::Linear(m) => &m.linear.weight,
            PrmModel::Mlp(m) => &m.hidden.weight,
            PrmModel::Context(m) => &m.input.weight,
        };
        w.shape().dims::<2>()[0]
    }
}

impl<B: FusedOps> PrmModel<B> {
    /// Step logits, [S], in rollout-then-step order.
    pub fn logits(&self, input: BatchInput<B>) -> Tensor<B, 1> {
        match (self, input) {
            (PrmModel::Linear(m), BatchInput::Flat(x)) => dense(x, &m.linear).squeeze_dim(1),
            (PrmModel::Mlp(m), BatchInput::Flat(x)) => {
                let u = dense(x, &m.hidden);
                let a = match m.activation {
                    Activation::Gelu => gelu(u),
                    Activation::Relu => relu(u),
                };
                dense(a, &m.out).squeeze_dim(1)
            }
            (PrmModel::Context(m), BatchInput::Padded { x, index }) => m.logits(x, index),
            _ => panic!("batch layout does not match the model (a bug: use HostBatch::into_input)"),
        }
    }
}

impl<B: FusedOps> ContextModel<B> {
    fn logits(&self, x: Tensor<B, 3>, index: Tensor<B, 1, Int>) -> Tensor<B, 1> {
        let [r, t, _] = x.dims();
        let u = self.input.forward(x);
        let h = u.dims()[2];
        // Slices of one tensor get gradients with disjoint supports, so their sum is exact in
        // any order.
        let qkv = self.qkv.forward(u.clone());
        let q = qkv.clone().narrow(2, 0, h);
        let k = qkv.clone().narrow(2, h, h);
        let v = qkv.narrow(2, 2 * h, h);
        let scores = q.matmul(k.swap_dims(1, 2)).div_scalar((h as f64).sqrt());
        // Additive mask: a large negative (not −∞) above the diagonal; every row keeps its
        // diagonal, so no row is fully masked.
        let mask: Vec<f32> = (0..t * t)
            .map(|i| if i % t > i / t { -1e9 } else { 0.0 })
            .collect();
        let mask = Tensor::<B, 3>::from_data(TensorData::new(mask, [1, t, t]), &scores.device());
        let attn = softmax(scores + mask, 2).matmul(v);
        let hidden = gelu(u + self.output.forward(attn));
        let z = self.logit.forward(hidden).reshape([r * t]);
        z.select(0, index)
    }
}

/// Step probabilities σ(z) of every step of `bundle`, in step order, computed a few thousand
/// steps at a time.
pub fn score_bundle<B: FusedOps>(
    model: &PrmModel<B>,
    bundle: &FeatureBundle,
    device: &B::Device,
) -> Result<Vec<f32>> {
    let spec = model.spec();
    if bundle.dim() != model.dim() {
        return Err(Error::invalid(format!(
            "feature dimension mismatch: the model reads d = {}, {} has d = {}",
            model.dim(),
            bundle
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the bundle".into()),
            bundle.dim()
        )));
    }
    const CHUNK_STEPS: usize = 16_384;
    let mut out = Vec::with_capacity(bundle.n_steps());
    let mut start = 0;
    while start < bundle.n_rollouts() {
        let mut end = start;
        let mut steps = 0;
        while end < bundle.n_rollouts() && (steps < CHUNK_STEPS || end == start) {
            steps += bundle.rollout_len(end);
            end += 1;
        }
        let rollouts: Vec<usize> = (start..end).collect();
        let batch = HostBatch::gather(bundle, &rollouts);
        if batch.n_steps() > 0 {
            let p = sigmoid(model.logits(batch.into_input(&spec, device)));
            out.extend(
                p.into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("converted to f32"),
            );
        }
        start = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn gather_copies_each_rollouts_rows_in_batch_order_in_either_dtype() {
        use crate::data::features::{BundleParts, FeatureData};
        // 300 rollouts of 1 to 4 steps, d = 3; every value a multiple of 0.25 below 32 in
        // magnitude, so bf16 holds it exactly.
        let d = 3;
        let mut offsets = vec![0usize];
        for r in 0..300 {
            offsets.push(offsets[r] + 1 + r % 4);
        }
        let steps = offsets[300];
        let feats: Vec<f32> = (0..steps * d)
            .map(|i| (i % 200) as f32 * 0.25 - 25.0)
            .collect();
        // Past one task's worth of rollouts, repeats and out of order.
        let batch: Vec<usize> = (0..150).map(|i| (i * 7) % 300).chain([5, 5, 0]).collect();
        let want: Vec<f32> = batch
            .iter()
            .flat_map(|&r| feats[offsets[r] * d..offsets[r + 1] * d].iter().copied())
            .collect();
        for features in [
            FeatureData::F32(feats.clone()),
            FeatureData::Bf16(feats.iter().map(|&v| half::bf16::from_f32(v)).collect()),
        ] {
            let bundle = FeatureBundle::from_parts(BundleParts::one_source(
                features,
                d,
                offsets.clone(),
                vec![0.5; steps],
                "s",
            ))
            .unwrap();
            let got = HostBatch::gather(&bundle, &batch);
            assert_eq!(got.rows, want);
            assert_eq!(
                got.lengths,
                batch.iter().map(|&r| 1 + r % 4).collect::<Vec<_>>()
            );
            assert_eq!(got.n_steps(), want.len() / d);
        }
    }

    #[test]
    fn head_round_trip_and_logits_match_head_params() {
        let dev = Default::default();
        for spec in [
            ModelSpec::LINEAR,
            ModelSpec::Head(HeadKind::Mlp {
                hidden: 5,
                activation: Activation::Gelu,
            }),
            ModelSpec::Head(HeadKind::Mlp {
                hidden: 3,
                activation: Activation::Relu,
            }),
        ] {
            let head = HeadParams::init(spec.head_kind().unwrap(), 4, 9);
            let model = PrmModel::<B>::init(&spec, 4, 9, &dev);
            assert_eq!(model.to_head().unwrap(), head);
            assert_eq!(model.dim(), 4);
            let rows: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
            let batch = HostBatch {
                rows: rows.clone(),
                lengths: vec![1, 2],
                dim: 4,
            };
            assert_eq!(model.spec(), spec);
            let z: Vec<f32> = model
                .logits(batch.into_input(&spec, &dev))
                .into_data()
                .into_vec()
                .unwrap();
            for (s, &zs) in z.iter().enumerate() {
                let phi: Vec<f64> = rows[s * 4..s * 4 + 4].iter().map(|&v| v as f64).collect();
                assert!(
                    (zs as f64 - head.logit(&phi)).abs() < 1e-5,
                    "{spec:?} step {s}"
                );
            }
        }
    }

    #[test]
    fn gelu_gradient_is_the_exact_derivative() {
        use burn::backend::Autodiff;
        type A = Autodiff<B>;
        let xs: Vec<f32> = vec![-3.0, -1.2, -0.3, 0.0, 0.4, 1.1, 2.5];
        let x =
            Tensor::<A, 1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &Default::default())
                .require_grad();
        let y = gelu(x.clone());
        let values: Vec<f32> = y.clone().into_data().into_vec().unwrap();
        let grads = y.sum().backward();
        let g: Vec<f32> = x.grad(&grads).unwrap().into_data().into_vec().unwrap();
        for (i, &v) in xs.iter().enumerate() {
            let u = v as f64;
            assert!(
                (values[i] as f64 - Activation::Gelu.apply(u)).abs() < 1e-6,
                "value at {u}"
            );
            assert!(
                (g[i] as f64 - Activation::Gelu.derivative(u)).abs() < 1e-6,
                "grad at {u}"
            );
        }
    }

    #[test]
    fn model_specs_read_and_write_one_tagged_table() {
        let cases = [
            ("kind = \"linear\"", ModelSpec::LINEAR),
            (
                "kind = \"mlp\"\nhidden = 8",
                ModelSpec::Head(HeadKind::Mlp {
                    hidden: 8,
                    activation: Activation::Gelu,
                }),
            ),
            ("kind = \"context\"\nhidden = 4", ModelSpec::context(4)),
        ];
        for (text, spec) in cases {
            let read: ModelSpec = toml::from_str(text).unwrap();
            assert_eq!(read, spec, "{text}");
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), spec);
        }
        assert_eq!(
            serde_json::to_string(&ModelSpec::context(4)).unwrap(),
            r#"{"kind":"context","hidden":4}"#
        );
        for (bad, says) in [
            ("kind = \"mpl\"", "unknown variant `mpl`"),
            (
                "kind = \"context\"\nhidden = 4\nwidth = 2",
                "unknown field `width`",
            ),
            ("kind = \"linear\"\nhidden = 4", "unknown field `hidden`"),
            ("hidden = 4", "needs `kind`"),
        ] {
            let e = toml::from_str::<ModelSpec>(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn context_head_is_causal() {
        let dev = Default::default();
        let spec = ModelSpec::context(6);
        let model = PrmModel::<B>::init(&spec, 3, 1, &dev);
        assert_eq!(model.spec(), spec);
        let run = |rows: Vec<f32>, lengths: Vec<usize>| -> Vec<f32> {
            let batch = HostBatch {
                rows,
                lengths,
                dim: 3,
            };
            model
                .logits(batch.into_input(&spec, &dev))
                .into_data()
                .into_vec()
                .unwrap()
        };
        let a: Vec<f32> = (0..9).map(|i| i as f32 * 0.1).collect();
        let full = run(a.clone(), vec![3]);
        // Changing the last step leaves the first two scores alone.
        let mut b = a.clone();
        b[6..9].copy_from_slice(&[5.0, -5.0, 2.0]);
        let changed = run(b, vec![3]);
        assert_eq!(full[..2], changed[..2]);
        assert_ne!(full[2], changed[2]);
        // The prefix alone scores the same as inside the longer rollout, and padding next to a
        // shorter rollout in the same batch changes nothing.
        let prefix = run(a[..6].to_vec(), vec![2]);
        assert!((prefix[0] - full[0]).abs() < 1e-6 && (prefix[1] - full[1]).abs() < 1e-6);
        let mut both = a.clone();
        both.extend_from_slice(&a[..3]);
        let batched = run(both, vec![3, 1]);
        assert_eq!(batched.len(), 4);
        for k in 0..3 {
            assert!((batched[k] - full[k]).abs() < 1e-6);
        }
        assert!((batched[3] - full[0]).abs() < 1e-6);
    }
}

#[cfg(test)]
mod fused_tests;
