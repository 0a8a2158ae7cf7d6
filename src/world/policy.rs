//! The policy: a small decoder-only transformer over the character vocabulary of
//! [`super::tokens`], generic over the Burn backend.
//!
//! ```text
//! x₀ = E_tok[t] + E_pos[p]                                  [B, T, W]
//! per layer:  x ← x + W_o · attn(LN₁(x))                    causal, H heads, key/value cache
//!             x ← x + W₂ · gelu(W₁ · LN₂(x))                 hidden 4W
//! h = LN_f(x)      logits = W_out · h                        h: the PRM's step features
//! ```
//!
//! Reproducible training: Burn's autodiff adds the gradient contributions of a tensor used by
//! three or more ops in an order that changes from process to process (see
//! [`crate::train::loss::weighted_bce`]), so every tensor of the training graph feeds at most two
//! ops, or several slices with disjoint supports (whose sum is exact in any order):
//! * the layer norm centres x with one matrix product that yields two copies of x − mean(x)
//!   (see [`layer_norm`]; Burn's `square()` is x·x, a second use of its input);
//! * queries, keys and values are three slices of one product;
//! * the softmax and the cross-entropy take their maximum on detached values.
//!
//! Parameters carry fixed ids and are drawn from ChaCha8, so a seed gives the same bytes.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::activation::gelu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::Dtype;

use crate::data::safetensors_io::{MappedSafetensors, SafetensorsWriter, TensorSpec};
use crate::error::{Error, Result};

use super::tokens::{PAD, VOCAB};

/// The `format` metadata of a saved policy.
pub const POLICY_FORMAT: &str = "mprm-policy/1";

/// The policy's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Model width W (the PRM features' dimension).
    pub width: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads (W must be a multiple).
    pub heads: usize,
    /// Longest sequence, in tokens (positions are learned).
    pub max_len: usize,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            width: 128,
            layers: 2,
            heads: 4,
            max_len: 160,
        }
    }
}

impl PolicySpec {
    /// A policy small enough for unit tests to run in milliseconds (shared by the tests of the
    /// policy, the sampling engine and the CPU trainer).
    #[cfg(test)]
    pub(crate) fn tiny() -> Self {
        PolicySpec {
            width: 16,
            layers: 2,
            heads: 2,
            max_len: 24,
        }
    }

    /// Checks the shape.
    pub fn check(&self) -> Result<()> {
        if self.width == 0 || self.layers == 0 || self.heads == 0 || self.max_len < 2 {
            return Err(Error::invalid(format!(
                "a policy needs a positive width, layers and heads and max_len >= 2: {self:?}"
            )));
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(Error::invalid(format!(
                "the policy's width {} is not a multiple of its {} heads",
                self.width, self.heads
            )));
        }
        Ok(())
    }
}

/// Layer-norm ε.
const LN_EPS: f64 = 1e-5;
/// Additive mask of a key a query may not see (large and finite, so a fully masked row of a
/// padding query stays finite).
const MASKED: f32 = -1e9;

/// One transformer layer.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    ln1_gain: Param<Tensor<B, 1>>,
    ln1_bias: Param<Tensor<B, 1>>,
    /// [W, 3W]: queries, keys, values side by side.
    qkv_w: Param<Tensor<B, 2>>,
    qkv_b: Param<Tensor<B, 1>>,
    proj_w: Param<Tensor<B, 2>>,
    proj_b: Param<Tensor<B, 1>>,
    ln2_gain: Param<Tensor<B, 1>>,
    ln2_bias: Param<Tensor<B, 1>>,
    fc1_w: Param<Tensor<B, 2>>,
    fc1_b: Param<Tensor<B, 1>>,
    fc2_w: Param<Tensor<B, 2>>,
    fc2_b: Param<Tensor<B, 1>>,
}

/// The policy (see the module docs).
#[derive(Module, Debug)]
pub struct Policy<B: Backend> {
    tok: Param<Tensor<B, 2>>,
    pos: Param<Tensor<B, 2>>,
    blocks: Vec<Block<B>>,
    lnf_gain: Param<Tensor<B, 1>>,
    lnf_bias: Param<Tensor<B, 1>>,
    out_w: Param<Tensor<B, 2>>,
    out_b: Param<Tensor<B, 1>>,
    #[module(skip)]
    spec: PolicySpec,
}

/// Keys and values of every layer for the tokens seen so far, [B, H, len, W/H] each.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    keys: Vec<Tensor<B, 4>>,
    values: Vec<Tensor<B, 4>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache.
    pub fn new() -> Self {
        KvCache {
            keys: Vec::new(),
            values: Vec::new(),
            len: 0,
        }
    }

    /// Tokens cached per row.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cache of rows `rows` (in that order, repeats allowed): branching a prefix into
    /// continuations, or dropping finished rows.
    pub fn select(&self, rows: &[usize]) -> Self {
        let Some(first) = self.keys.first() else {
            return KvCache::new();
        };
        let idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let idx =
            Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [rows.len()]), &first.device());
        KvCache {
            keys: self
                .keys
                .iter()
                .map(|k| k.clone().select(0, idx.clone()))
                .collect(),
            values: self
                .values
                .iter()
                .map(|v| v.clone().select(0, idx.clone()))
                .collect(),
            len: self.len,
        }
    }
}

impl<B: Backend> Default for KvCache<B> {
    fn default() -> Self {
        Self::new()
    }
}

fn normal(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    let d = Normal::new(0.0, std).expect("positive std");
    (0..n).map(|_| d.sample(rng) as f32).collect()
}

/// The values of parameter `name` with `shape`.
type ValueSource<'a> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>> + 'a;

/// The names and shapes of every parameter, in construction order (a parameter's fixed id is
/// its position here, from 1).
pub fn parameter_shapes(spec: &PolicySpec) -> Vec<(String, Vec<usize>)> {
    let (w, v) = (spec.width, VOCAB);
    let mut out = vec![
        ("tok".to_string(), vec![v, w]),
        ("pos".to_string(), vec![spec.max_len, w]),
    ];
    for l in 0..spec.layers {
        for (name, shape) in [
            ("ln1_gain", vec![w]),
            ("ln1_bias", vec![w]),
            ("qkv_w", vec![w, 3 * w]),
            ("qkv_b", vec![3 * w]),
            ("proj_w", vec![w, w]),
            ("proj_b", vec![w]),
            ("ln2_gain", vec![w]),
            ("ln2_bias", vec![w]),
            ("fc1_w", vec![w, 4 * w]),
            ("fc1_b", vec![4 * w]),
            ("fc2_w", vec![4 * w, w]),
            ("fc2_b", vec![w]),
        ] {
            out.push((format!("blocks.{l}.{name}"), shape));
        }
    }
    out.extend([
        ("lnf_gain".to_string(), vec![w]),
        ("lnf_bias".to_string(), vec![w]),
        ("out_w".to_string(), vec![w, v]),
        ("out_b".to_string(), vec![v]),
    ]);
    out
}

/// A fresh policy's parameters in [`parameter_shapes`] order: weights N(0, 0.02²) (the residual
/// projections `proj_w` and `fc2_w` scaled by 1/√(2·layers)), biases 0, layer-norm gains 1, drawn
/// in that order from ChaCha8 seeded with `seed`.
pub fn initial_parameters(spec: &PolicySpec, seed: u64) -> Result<Vec<Vec<f32>>> {
    spec.check()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let residual_std = 0.02 / ((2 * spec.layers) as f64).sqrt();
    Ok(parameter_shapes(spec)
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            if name.ends_with("_gain") {
                vec![1.0; n]
            } else if name.ends_with("_bias") || name.ends_with("_b") {
                vec![0.0; n]
            } else if name.ends_with("proj_w") || name.ends_with("fc2_w") {
                normal(&mut rng, n, residual_std)
            } else {
                normal(&mut rng, n, 0.02)
            }
        })
        .collect())
}

/// Hands out the parameters in [`parameter_shapes`] order, each with its fixed id.
struct Builder<'a, 'b, B: Backend> {
    shapes: Vec<(String, Vec<usize>)>,
    at: usize,
    values: &'a mut ValueSource<'b>,
    device: &'a B::Device,
}

impl<B: Backend> Builder<'_, '_, B> {
    fn next<const D: usize>(&mut self) -> Result<Param<Tensor<B, D>>> {
        let (name, shape) = &self.shapes[self.at];
        self.at += 1;
        let v = (self.values)(name, shape)?;
        let n: usize = shape.iter().product();
        if v.len() != n {
            return Err(Error::invalid(format!(
                "policy parameter {name}: {} values for shape {shape:?}",
                v.len()
            )));
        }
        let dims: [usize; D] = shape
            .as_slice()
            .try_into()
            .expect("parameter_shapes gives each parameter the rank its field has");
        let t = Tensor::from_data(TensorData::new(v, dims), self.device);
        Ok(Param::initialized(
            ParamId::from(self.at as u64),
            t.require_grad(),
        ))
    }
}

impl<B: Backend> Policy<B> {
    /// A freshly initialised policy ([`initial_parameters`]).
    pub fn init(spec: PolicySpec, seed: u64, device: &B::Device) -> Result<Self> {
        Self::from_values(spec, initial_parameters(&spec, seed)?, device)
    }

    /// The policy with the parameters `values`, in [`parameter_shapes`] order.
    pub fn from_values(
        spec: PolicySpec,
        values: Vec<Vec<f32>>,
        device: &B::Device,
    ) -> Result<Self> {
        let mut it = values.into_iter();
        Self::build(spec, device, &mut |name, _| {
            it.next()
                .ok_or_else(|| Error::invalid(format!("no values for policy parameter {name}")))
        })
    }

    /// The policy with every parameter taken from `values` (struct fields are written in
    /// [`parameter_shapes`] order, and Rust evaluates them in the order written).
    fn build(spec: PolicySpec, device: &B::Device, values: &mut ValueSource<'_>) -> Result<Self> {
        spec.check()?;
        let mut b = Builder::<B> {
            shapes: parameter_shapes(&spec),
            at: 0,
            values,
            device,
        };
        let tok = b.next()?;
        let pos = b.next()?;
        let mut blocks = Vec::with_capacity(spec.layers);
        for _ in 0..spec.layers {
            blocks.push(Block {
                ln1_gain: b.next()?,
                ln1_bias: b.next()?,
                qkv_w: b.next()?,
                qkv_b: b.next()?,
                proj_w: b.next()?,
                proj_b: b.next()?,
                ln2_gain: b.next()?,
                ln2_bias: b.next()?,
                fc1_w: b.next()?,
                fc1_b: b.next()?,
                fc2_w: b.next()?,
                fc2_b: b.next()?,
            });
        }
        Ok(Policy {
            tok,
            pos,
            blocks,
            lnf_gain: b.next()?,
            lnf_bias: b.next()?,
            out_w: b.next()?,
            out_b: b.next()?,
            spec,
        })
    }

    /// Every parameter's values, in [`parameter_shapes`] order.
    pub fn parameter_values(&self) -> Vec<Vec<f32>> {
        fn host<B: Backend, const D: usize>(p: &Param<Tensor<B, D>>) -> Vec<f32> {
            p.val()
                .into_data()
                .convert::<f32>()
                .into_vec()
                .expect("f32 parameters")
        }
        let mut out = vec![host(&self.tok), host(&self.pos)];
        for b in &self.blocks {
            out.extend([
                host(&b.ln1_gain),
                host(&b.ln1_bias),
                host(&b.qkv_w),
                host(&b.qkv_b),
                host(&b.proj_w),
                host(&b.proj_b),
                host(&b.ln2_gain),
                host(&b.ln2_bias),
                host(&b.fc1_w),
                host(&b.fc1_b),
                host(&b.fc2_w),
                host(&b.fc2_b),
            ]);
        }
        out.extend([
            host(&self.lnf_gain),
            host(&self.lnf_bias),
            host(&self.out_w),
            host(&self.out_b),
        ]);
        out
    }

    /// Writes the policy to `path` (safetensors, f32, names of [`parameter_shapes`], its shape
    /// and `extra` in the metadata), through a temporary file.
    pub fn save(&self, path: &Path, extra: &BTreeMap<String, String>) -> Result<()> {
        let shapes = parameter_shapes(&self.spec);
        let specs: Vec<TensorSpec> = shapes
            .iter()
            .map(|(n, s)| TensorSpec::new(n, Dtype::F32, s))
            .collect();
        let mut meta = extra.clone();
        meta.insert("format".into(), POLICY_FORMAT.into());
        meta.insert(
            "spec".into(),
            serde_json::to_string(&self.spec).expect("spec serialises"),
        );
        let mut w = SafetensorsWriter::create(path, &specs, &meta)?;
        for ((name, _), values) in shapes.iter().zip(self.parameter_values()) {
            w.write_all(name, &values)?;
        }
        w.finish()
    }

    /// Reads a policy [`Policy::save`] wrote.
    pub fn load(path: &Path, device: &B::Device) -> Result<Self> {
        let file = MappedSafetensors::open(path)?;
        let meta = file.metadata();
        if meta.get("format").map(String::as_str) != Some(POLICY_FORMAT) {
            return Err(Error::invalid(format!(
                "{}: not a policy file (metadata format is not {POLICY_FORMAT})",
                path.display()
            )));
        }
        let spec: PolicySpec = serde_json::from_str(meta.get("spec").map_or("", String::as_str))
            .map_err(|e| Error::invalid(format!("{}: policy spec: {e}", path.display())))?;
        Self::build(spec, device, &mut |name, shape| {
            let t = file.require(name)?;
            if t.shape != shape || t.dtype != Dtype::F32 {
                return Err(Error::invalid(format!(
                    "{}: {name} is {:?} {:?}, expected F32 {shape:?}",
                    path.display(),
                    t.dtype,
                    t.shape
                )));
            }
            Ok(t.to_f32().expect("f32 converts"))
        })
    }
    /// The policy's shape.
    pub fn spec(&self) -> PolicySpec {
        self.spec
    }

    /// Logits [B, T, V] and final hidden states [B, T, W] of right-padded sequences `tokens`
    /// [B, T] from position 0, causal (the training forward; padding only follows real tokens,
    /// so it is never attended to by them).
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Result<(Tensor<B, 3>, Tensor<B, 3>)> {
        let [b, t] = tokens.dims();
        let positions: Vec<i64> = (0..b).flat_map(|_| 0..t as i64).collect();
        let mask = causal_mask(&vec![0; b], 0, t);
        self.run(tokens, &positions, mask, None)
    }

    /// Appends `tokens` [B, t] to the sequences in `cache` (empty for a prompt) and returns their
    /// logits [B, t, V] and hidden states [B, t, W]. `pad[r]` counts row r's left padding in the
    /// whole sequence (prompt included): padded keys are never attended to and positions count
    /// from the first real token, so a left-padded row computes what it would alone.
    pub fn extend(
        &self,
        tokens: Tensor<B, 2, Int>,
        pad: &[usize],
        cache: &mut KvCache<B>,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 3>)> {
        let [b, t] = tokens.dims();
        if pad.len() != b {
            return Err(Error::invalid(format!(
                "{} padding counts for {b} rows",
                pad.len()
            )));
        }
        let past = cache.len;
        let positions: Vec<i64> = pad
            .iter()
            .flat_map(|&p| (past..past + t).map(move |c| c.saturating_sub(p) as i64))
            .collect();
        let mask = causal_mask(pad, past, t);
        let out = self.run(tokens, &positions, mask, Some(cache))?;
        cache.len += t;
        Ok(out)
    }

    fn run(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: &[i64],
        mask: (Vec<f32>, [usize; 4]),
        mut cache: Option<&mut KvCache<B>>,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 3>)> {
        let [b, t] = tokens.dims();
        let w = self.spec.width;
        let device = tokens.device();
        if let Some(&p) = positions.iter().max()
            && p as usize >= self.spec.max_len
        {
            return Err(Error::invalid(format!(
                "position {p} is past the policy's max_len {}",
                self.spec.max_len
            )));
        }
        let pos_idx =
            Tensor::<B, 1, Int>::from_data(TensorData::new(positions.to_vec(), [b * t]), &device);
        let tok = self.tok.val().select(0, tokens.reshape([b * t]));
        let pos = self.pos.val().select(0, pos_idx);
        let mut x = (tok + pos).reshape([b, t, w]);
        let mask = Tensor::<B, 4>::from_data(TensorData::new(mask.0, mask.1), &device);
        let center = centering::<B>(w, &device);
        for (l, block) in self.blocks.iter().enumerate() {
            let h = layer_norm(x.clone(), &block.ln1_gain, &block.ln1_bias, center.clone());
            let a = self.attention(block, h, mask.clone(), cache.as_deref_mut(), l);
            x = x + a;
            let h = layer_norm(x.clone(), &block.ln2_gain, &block.ln2_bias, center.clone());
            let m = affine(
                gelu(affine(h, &block.fc1_w, &block.fc1_b)),
                &block.fc2_w,
                &block.fc2_b,
            );
            x = x + m;
        }
        let hidden = layer_norm(x, &self.lnf_gain, &self.lnf_bias, center);
        let logits = affine(hidden.clone(), &self.out_w, &self.out_b);
        Ok((logits, hidden))
    }

    fn attention(
        &self,
        block: &Block<B>,
        h: Tensor<B, 3>,
        mask: Tensor<B, 4>,
        cache: Option<&mut KvCache<B>>,
        layer: usize,
    ) -> Tensor<B, 3> {
        let [b, t, w] = h.dims();
        let heads = self.spec.heads;
        let dh = w / heads;
        let split = |x: Tensor<B, 3>| x.reshape([b, t, heads, dh]).swap_dims(1, 2);
        let qkv = affine(h, &block.qkv_w, &block.qkv_b);
        let q = split(qkv.clone().narrow(2, 0, w));
        let mut k = split(qkv.clone().narrow(2, w, w));
        let mut v = split(qkv.narrow(2, 2 * w, w));
        if let Some(c) = cache {
            if c.keys.len() > layer {
                k = Tensor::cat(vec![c.keys[layer].clone(), k], 2);
                v = Tensor::cat(vec![c.values[layer].clone(), v], 2);
                c.keys[layer] = k.clone();
                c.values[layer] = v.clone();
            } else {
                c.keys.push(k.clone());
                c.values.push(v.clone());
            }
        }
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((dh as f64).sqrt()) + mask;
        let attn = softmax_keys(scores).matmul(v);
        let attn = attn.swap_dims(1, 2).reshape([b, t, w]);
        affine(attn, &block.proj_w, &block.proj_b)
    }

    /// Mean next-token cross-entropy of `tokens` (each row `<bos>` … `<eos>`, right-padded here
    /// with [`PAD`]), over every position whose target is not padding: its value, and a tensor
    /// whose gradient is the loss's.
    ///
    /// The value and the gradient in the logits, G = w·(softmax(z) − onehot(y)), are computed
    /// on the host in f64 from the logits' values and attached as (z ⊙ G).sum(), so the logits
    /// feed a single graph node. Written with Burn's ops, the loss let the gradients vary from
    /// run to run in their last bits (its detached maximum stays a graph leaf that requires a
    /// gradient, and the logits feed several ops).
    pub fn next_token_loss(&self, tokens: &[Vec<u32>]) -> Result<(Tensor<B, 1>, f64)> {
        let device = self.tok.val().device();
        let (ids, b, t) = pad_rows(tokens, self.spec.max_len)?;
        if t < 2 {
            return Err(Error::invalid(
                "next-token loss needs sequences of 2+ tokens",
            ));
        }
        let input: Vec<i64> = (0..b)
            .flat_map(|r| ids[r * t..(r + 1) * t - 1].iter().map(|&x| x as i64))
            .collect();
        let n = b * (t - 1);
        let targets: Vec<u32> = (0..b)
            .flat_map(|r| ids[r * t + 1..(r + 1) * t].iter().copied())
            .collect();
        let count = targets.iter().filter(|&&y| y != PAD).count();
        if count == 0 {
            return Err(Error::invalid("next-token loss over no targets"));
        }
        let input = Tensor::<B, 2, Int>::from_data(TensorData::new(input, [b, t - 1]), &device);
        let (logits, _) = self.forward(input)?;
        let z = logits.reshape([n, VOCAB]);
        let host: Vec<f32> = z
            .clone()
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("f32 logits");
        let weight = 1.0 / count as f64;
        let mut value = 0.0f64;
        let mut grad = vec![0f32; n * VOCAB];
        for (i, &y) in targets.iter().enumerate() {
            if y == PAD {
                continue;
            }
            let row = &host[i * VOCAB..(i + 1) * VOCAB];
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
            let total: f64 = e.iter().sum();
            value += weight * (m + total.ln() - row[y as usize] as f64);
            for (k, ek) in e.iter().enumerate() {
                let onehot = if k == y as usize { 1.0 } else { 0.0 };
                grad[i * VOCAB + k] = (weight * (ek / total - onehot)) as f32;
            }
        }
        let grad = Tensor::<B, 2>::from_data(TensorData::new(grad, [n, VOCAB]), &device);
        Ok(((z * grad).sum(), value))
    }
}

impl<B: AutodiffBackend> Policy<B> {
    /// Every parameter's gradient in `grads`, in [`parameter_shapes`] order (zeros for a
    /// parameter the loss did not reach). Burn visits a module's parameters in field order, which
    /// is that order.
    pub fn parameter_gradients(&self, grads: &B::Gradients) -> Vec<Vec<f32>> {
        struct Collect<'a, B: AutodiffBackend> {
            grads: &'a B::Gradients,
            out: Vec<Vec<f32>>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                let values = match param.grad(self.grads) {
                    Some(g) => g
                        .into_data()
                        .convert::<f32>()
                        .into_vec()
                        .expect("f32 gradients"),
                    None => vec![0.0; param.val().shape().num_elements()],
                };
                self.out.push(values);
            }
        }
        let mut c = Collect {
            grads,
            out: Vec::new(),
        };
        self.visit(&mut c);
        c.out
    }
}

/// The error for a sequence of `longest` tokens that the policy's positions cannot hold.
pub(crate) fn check_length(longest: usize, max_len: usize) -> Result<()> {
    if longest > max_len {
        return Err(Error::invalid(format!(
            "a sequence of {longest} tokens is longer than the policy's max_len {max_len}"
        )));
    }
    Ok(())
}

/// Rows right-padded with [`PAD`] to the longest: (ids row-major, rows, length).
pub fn pad_rows(rows: &[Vec<u32>], max_len: usize) -> Result<(Vec<u32>, usize, usize)> {
    let t = rows.iter().map(Vec::len).max().unwrap_or(0);
    if rows.is_empty() || t == 0 {
        return Err(Error::invalid("no tokens"));
    }
    check_length(t, max_len)?;
    let mut ids = vec![PAD; rows.len() * t];
    for (r, row) in rows.iter().enumerate() {
        ids[r * t..r * t + row.len()].copy_from_slice(row);
    }
    Ok((ids, rows.len(), t))
}

/// x·W + b over the last axis of x [B, T, in].
fn affine<B: Backend>(
    x: Tensor<B, 3>,
    w: &Param<Tensor<B, 2>>,
    bias: &Param<Tensor<B, 1>>,
) -> Tensor<B, 3> {
    let [b, t, d_in] = x.dims();
    let d_out = w.dims()[1];
    (x.reshape([b * t, d_in]).matmul(w.val()) + bias.val().reshape([1, d_out]))
        .reshape([b, t, d_out])
}

/// [C | C] with C = I − 11ᵀ/W, [W, 2W]: x·[C | C] is two copies of x minus its mean, made by one
/// graph node (see [`layer_norm`]).
fn centering<B: Backend>(w: usize, device: &B::Device) -> Tensor<B, 2> {
    let off = -1.0 / w as f32;
    let c: Vec<f32> = (0..w * 2 * w)
        .map(|i| {
            let (r, k) = (i / (2 * w), i % (2 * w) % w);
            if r == k { 1.0 + off } else { off }
        })
        .collect();
    Tensor::from_data(TensorData::new(c, [w, 2 * w]), device)
}

/// Layer norm over the last axis. x − mean(x) comes out of one product as two copies, a and b
/// (slices of one tensor, so their gradients have disjoint supports): the variance is mean(a·b)
/// and the output a/√(var + ε), so a feeds two ops and b one. The obvious form would let x feed
/// a mean, a subtraction and the residual sum, and `square()`, which Burn computes as x·x,
/// would give x − mean(x) three gradient contributions.
fn layer_norm<B: Backend>(
    x: Tensor<B, 3>,
    gain: &Param<Tensor<B, 1>>,
    bias: &Param<Tensor<B, 1>>,
    center: Tensor<B, 2>,
) -> Tensor<B, 3> {
    let [b, t, w] = x.dims();
    let both = x.reshape([b * t, w]).matmul(center).reshape([b, t, 2 * w]);
    let xa = both.clone().narrow(2, 0, w);
    let xb = both.narrow(2, w, w);
    let var = (xa.clone() * xb).mean_dim(2);
    let y = xa / var.add_scalar(LN_EPS).sqrt();
    y * gain.val().reshape([1, 1, w]) + bias.val().reshape([1, 1, w])
}

/// Softmax over the keys (last axis), its maximum taken on detached scores.
fn softmax_keys<B: Backend>(scores: Tensor<B, 4>) -> Tensor<B, 4> {
    let max = scores.clone().detach().set_require_grad(false).max_dim(3);
    let e = (scores - max).exp();
    let sum = e.clone().sum_dim(3);
    e / sum
}

/// The additive mask [B, 1, t, past + t] of `t` new queries after `past` cached tokens: query i
/// of row r sees key j when pad[r] ≤ j ≤ past + i.
fn causal_mask(pad: &[usize], past: usize, t: usize) -> (Vec<f32>, [usize; 4]) {
    let keys = past + t;
    let mut m = Vec::with_capacity(pad.len() * t * keys);
    for &p in pad {
        for i in 0..t {
            for j in 0..keys {
                m.push(if j >= p && j <= past + i { 0.0 } else { MASKED });
            }
        }
    }
    (m, [pad.len(), 1, t, keys])
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};

    use super::*;

    type Cpu = NdArray<f32>;

    fn ints(rows: &[Vec<u32>]) -> Tensor<Cpu, 2, Int> {
        let (ids, b, t) = pad_rows(rows, 64).unwrap();
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        Tensor::from_data(TensorData::new(ids, [b, t]), &Default::default())
    }

    fn values<const D: usize>(x: Tensor<Cpu, D>) -> Vec<f32> {
        x.into_data().into_vec().unwrap()
    }

    #[test]
    fn cached_extension_matches_the_full_forward_even_left_padded() {
        let p = Policy::<Cpu>::init(PolicySpec::tiny(), 3, &Default::default()).unwrap();
        let seq: Vec<u32> = vec![1, 5, 9, 14, 6, 18, 11, 3, 7];
        let (full, hidden) = p.forward(ints(std::slice::from_ref(&seq))).unwrap();
        let (full, hidden) = (values(full), values(hidden));
        // prompt of 4, then one token at a time
        let mut cache = KvCache::new();
        let (first, _) = p
            .extend(ints(&[seq[..4].to_vec()]), &[0], &mut cache)
            .unwrap();
        let mut got = values(first);
        let mut got_h = Vec::new();
        for &tok in &seq[4..] {
            let (l, h) = p.extend(ints(&[vec![tok]]), &[0], &mut cache).unwrap();
            got.extend(values(l));
            got_h = values(h);
        }
        assert_eq!(cache.len(), seq.len());
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        assert_eq!(got.len(), full.len());
        assert!(close(&got, &full));
        assert!(close(&got_h, &hidden[hidden.len() - 16..]));
        // the same sequence left-padded by 3 in a batch with an unpadded longer row
        let other: Vec<u32> = vec![1, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4];
        let padded: Vec<u32> = [vec![PAD; 3], seq.clone()].concat();
        let mut cache = KvCache::new();
        let (l, _) = p
            .extend(ints(&[padded, other]), &[3, 0], &mut cache)
            .unwrap();
        let l = values(l);
        let row0 = &l[3 * VOCAB..12 * VOCAB];
        assert!(close(row0, &full));
        // branching: row 0 repeated twice, each copy extended by a different token, continues
        // like the original sequence extended by that token
        let mut branched = cache.select(&[0, 0]);
        assert_eq!(branched.len(), 12);
        let (l, _) = p
            .extend(ints(&[vec![20], vec![21]]), &[3, 3], &mut branched)
            .unwrap();
        let l = values(l);
        for (r, tok) in [20u32, 21].into_iter().enumerate() {
            let longer = [seq.clone(), vec![tok]].concat();
            let (want, _) = p.forward(ints(&[longer])).unwrap();
            let want = values(want);
            assert!(close(
                &l[r * VOCAB..(r + 1) * VOCAB],
                &want[want.len() - VOCAB..]
            ));
        }
    }

    #[test]
    fn a_saved_policy_loads_back_bit_for_bit_and_bad_files_are_errors() {
        let dev = Default::default();
        let p = Policy::<Cpu>::init(PolicySpec::tiny(), 5, &dev).unwrap();
        let dir = std::env::temp_dir().join(format!("mprm-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.safetensors");
        p.save(&path, &BTreeMap::new()).unwrap();
        let q = Policy::<Cpu>::load(&path, &dev).unwrap();
        assert_eq!(q.spec(), p.spec());
        assert_eq!(q.parameter_values(), p.parameter_values());
        let other = Policy::<Cpu>::init(PolicySpec::tiny(), 6, &dev).unwrap();
        assert_ne!(other.parameter_values(), p.parameter_values());
        // a head file is not a policy
        crate::head::HeadParams::init(crate::head::HeadKind::Linear, 4, 1)
            .save(&path, &BTreeMap::new())
            .unwrap();
        let e = Policy::<Cpu>::load(&path, &dev).unwrap_err().to_string();
        assert!(e.contains("not a policy file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loss_is_the_mean_cross_entropy_and_reproducible() {
        let dev = Default::default();
        let rows = vec![vec![1, 5, 9, 14, 2], vec![1, 6, 2]];
        let p = Policy::<Autodiff<Cpu>>::init(PolicySpec::tiny(), 7, &dev).unwrap();
        let (loss, got) = p.next_token_loss(&rows).unwrap();
        // by hand from the forward's logits: targets 5, 9, 14, 2 and 6, 2
        let (logits, _) = p
            .forward(Tensor::from_data(
                TensorData::new(vec![1i64, 5, 9, 14, 1, 6, 0, 0], [2, 4]),
                &dev,
            ))
            .unwrap();
        let z: Vec<f32> = logits.into_data().into_vec().unwrap();
        let mut want = 0.0f64;
        for (r, targets) in [vec![5u32, 9, 14, 2], vec![6, 2]].iter().enumerate() {
            for (c, &y) in targets.iter().enumerate() {
                let row = &z[(r * 4 + c) * VOCAB..(r * 4 + c + 1) * VOCAB];
                let m = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
                let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
                want += lse - row[y as usize] as f64;
            }
        }
        want /= 6.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // near ln(V) at initialisation
        assert!((want - (VOCAB as f64).ln()).abs() < 0.1, "{want}");
        let grads = loss.backward();
        let g = p.tok.grad(&grads).unwrap();
        assert!(values::<2>(g).iter().any(|&v| v != 0.0));
        // ∂loss/∂out_b[k] = Σ_i w·(softmax(z_i)_k − [y_i = k]), by hand from the logits
        let gb = values::<1>(p.out_b.grad(&grads).unwrap());
        let mut want_b = vec![0.0f64; VOCAB];
        for (r, targets) in [vec![5u32, 9, 14, 2], vec![6, 2]].iter().enumerate() {
            for (c, &y) in targets.iter().enumerate() {
                let row = &z[(r * 4 + c) * VOCAB..(r * 4 + c + 1) * VOCAB];
                let total: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
                for k in 0..VOCAB {
                    let onehot = if k == y as usize { 1.0 } else { 0.0 };
                    want_b[k] += ((row[k] as f64).exp() / total - onehot) / 6.0;
                }
            }
        }
        for k in 0..VOCAB {
            assert!(
                (gb[k] as f64 - want_b[k]).abs() < 1e-6,
                "out_b[{k}]: {} vs {}",
                gb[k],
                want_b[k]
            );
        }
        assert!(
            Policy::<Cpu>::init(
                PolicySpec {
                    heads: 3,
                    ..PolicySpec::tiny()
                },
                1,
                &dev
            )
            .is_err()
        );
        assert!(p.next_token_loss(&[vec![1; 30]]).is_err());
    }
}
