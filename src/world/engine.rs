//! The policy's forward pass on the CPU written directly over its weights: the sampler and the
//! hidden-state pass of `mprm world` when it runs on the CPU.
//!
//! Why a second forward: Monte Carlo annotation continues the policy from millions of step
//! prefixes one token at a time, in batches of a few hundred rows of width 128. At that size
//! Burn's CPU backend spends its time building and copying small tensors (and growing the
//! key/value cache by concatenation), not multiplying. Here each row owns its cache, so rows of
//! different lengths need no padding or mask, and the 16 continuations of one prefix share a
//! single prefill whose cache they then copy.
//!
//! Arithmetic. Every product runs row by row, each output summed over its inputs in index
//! order, so a row's numbers do not depend on which rows share its batch or on the thread
//! count; sampling is therefore reproducible for a seed. It is the same function as
//! [`Policy::forward`] but not the same bits (Burn centres the layer norm through a product and
//! computes erf in its own way): the test holds the two to 2e-5 in the logits.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use burn::tensor::backend::Backend;

use crate::error::{Error, Result};

use super::annotate::{Continuer, Rollout};
use super::policy::{Policy, PolicySpec};
use super::sample::{SampleSpec, draw};
use super::tokens::{EOS, VOCAB};

/// Layer-norm ε (the policy's).
const LN_EPS: f32 = 1e-5;
/// Rows per parallel task (a multiple of 16, so the continuations of one prefix stay together).
const TASK_ROWS: usize = 256;

/// One transformer block's weights, row-major [in, out].
struct BlockWeights {
    ln1_gain: Vec<f32>,
    ln1_bias: Vec<f32>,
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    proj_w: Vec<f32>,
    proj_b: Vec<f32>,
    ln2_gain: Vec<f32>,
    ln2_bias: Vec<f32>,
    fc1_w: Vec<f32>,
    fc1_b: Vec<f32>,
    fc2_w: Vec<f32>,
    fc2_b: Vec<f32>,
}

/// The policy's weights on the host.
pub struct CpuPolicy {
    spec: PolicySpec,
    tok: Vec<f32>,
    pos: Vec<f32>,
    blocks: Vec<BlockWeights>,
    lnf_gain: Vec<f32>,
    lnf_bias: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
}

/// One sequence's key/value cache: per layer, `len` rows of width W each for keys and values.
#[derive(Clone)]
pub struct RowState {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl RowState {
    fn new(layers: usize) -> Self {
        RowState {
            keys: vec![Vec::new(); layers],
            values: vec![Vec::new(); layers],
            len: 0,
        }
    }

    /// Tokens seen.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// y[r] = b + x[r]·W for each of `rows` rows, W [d_in, d_out] row-major; each output summed over
/// i = 0..d_in in order, by separate multiplies and adds (no fused multiply-add), so the wider
/// AVX2 path gives the same bits as the baseline one.
fn affine_rows(x: &[f32], rows: usize, w: &[f32], b: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { affine_rows_avx2(x, rows, w, b, y) };
        return;
    }
    affine_rows_body(x, rows, w, b, y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn affine_rows_avx2(x: &[f32], rows: usize, w: &[f32], b: &[f32], y: &mut [f32]) {
    affine_rows_body(x, rows, w, b, y);
}

#[inline(always)]
fn affine_rows_body(x: &[f32], rows: usize, w: &[f32], b: &[f32], y: &mut [f32]) {
    let d_out = b.len();
    let d_in = w.len() / d_out;
    debug_assert_eq!(x.len(), rows * d_in);
    for r in 0..rows {
        y[r * d_out..(r + 1) * d_out].copy_from_slice(b);
    }
    // a block of rows shares each weight row while it sits in L1
    const BLOCK: usize = 8;
    for r0 in (0..rows).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(rows);
        for i in 0..d_in {
            let wi = &w[i * d_out..(i + 1) * d_out];
            for r in r0..r1 {
                let xi = x[r * d_in + i];
                let yr = &mut y[r * d_out..(r + 1) * d_out];
                for (o, &wv) in yr.iter_mut().zip(wi) {
                    *o += xi * wv;
                }
            }
        }
    }
}

/// Layer norm of each row of `x` (width W) into `y`.
fn layer_norm_rows(x: &[f32], gain: &[f32], bias: &[f32], y: &mut [f32]) {
    let w = gain.len();
    for (xr, yr) in x.chunks_exact(w).zip(y.chunks_exact_mut(w)) {
        let mean = xr.iter().sum::<f32>() / w as f32;
        let var = xr.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / w as f32;
        let inv = 1.0 / (var + LN_EPS).sqrt();
        for j in 0..w {
            yr[j] = (xr[j] - mean) * inv * gain[j] + bias[j];
        }
    }
}

/// GELU, x·Φ(x), with erf from Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7,
/// under f32's resolution of the outputs that matter; a library erf took an eighth of the
/// sampling time).
fn gelu(x: f32) -> f32 {
    let z = f64::from(x) / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = (1.0 - poly * (-z * z).exp()).copysign(z);
    (0.5 * f64::from(x) * (1.0 + erf)) as f32
}

impl CpuPolicy {
    /// Copies `policy`'s weights to the host.
    pub fn from_policy<B: Backend>(policy: &Policy<B>) -> Self {
        let spec = policy.spec();
        let mut it = policy.parameter_values().into_iter();
        let mut next = || it.next().expect("parameter_values covers every parameter");
        let tok = next();
        let pos = next();
        let blocks = (0..spec.layers)
            .map(|_| BlockWeights {
                ln1_gain: next(),
                ln1_bias: next(),
                qkv_w: next(),
                qkv_b: next(),
                proj_w: next(),
                proj_b: next(),
                ln2_gain: next(),
                ln2_bias: next(),
                fc1_w: next(),
                fc1_b: next(),
                fc2_w: next(),
                fc2_b: next(),
            })
            .collect();
        CpuPolicy {
            spec,
            tok,
            pos,
            blocks,
            lnf_gain: next(),
            lnf_bias: next(),
            out_w: next(),
            out_b: next(),
        }
    }

    /// The policy's shape.
    pub fn spec(&self) -> PolicySpec {
        self.spec
    }

    /// An empty sequence.
    pub fn new_row(&self) -> RowState {
        RowState::new(self.spec.layers)
    }

    /// Appends `tokens[r]` to sequence `rows[r]` for every r; writes each row's logits
    /// ([rows, VOCAB]) and final hidden state ([rows, W]).
    pub fn append(
        &self,
        rows: &mut [&mut RowState],
        tokens: &[u32],
        logits: &mut Vec<f32>,
        hidden: &mut Vec<f32>,
    ) -> Result<()> {
        let n = rows.len();
        let w = self.spec.width;
        let heads = self.spec.heads;
        let dh = w / heads;
        if tokens.len() != n {
            return Err(Error::invalid(format!(
                "{} tokens for {n} rows",
                tokens.len()
            )));
        }
        let mut x = vec![0.0f32; n * w];
        for (r, (row, &t)) in rows.iter().zip(tokens).enumerate() {
            if row.len >= self.spec.max_len {
                return Err(Error::invalid(format!(
                    "position {} is past the policy's max_len {}",
                    row.len, self.spec.max_len
                )));
            }
            if t as usize >= VOCAB {
                return Err(Error::invalid(format!(
                    "token {t} is outside the vocabulary"
                )));
            }
            let (te, pe) = (t as usize * w, row.len * w);
            for j in 0..w {
                x[r * w + j] = self.tok[te + j] + self.pos[pe + j];
            }
        }
        let mut h = vec![0.0f32; n * w];
        let mut qkv = vec![0.0f32; n * 3 * w];
        let mut attn = vec![0.0f32; n * w];
        let mut proj = vec![0.0f32; n * w];
        let mut f1 = vec![0.0f32; n * 4 * w];
        let scale = 1.0 / (dh as f32).sqrt();
        let mut scores = Vec::with_capacity(self.spec.max_len);
        for (l, b) in self.blocks.iter().enumerate() {
            layer_norm_rows(&x, &b.ln1_gain, &b.ln1_bias, &mut h);
            affine_rows(&h, n, &b.qkv_w, &b.qkv_b, &mut qkv);
            for (r, row) in rows.iter_mut().enumerate() {
                let q = &qkv[r * 3 * w..r * 3 * w + w];
                row.keys[l].extend_from_slice(&qkv[r * 3 * w + w..r * 3 * w + 2 * w]);
                row.values[l].extend_from_slice(&qkv[r * 3 * w + 2 * w..(r + 1) * 3 * w]);
                let len = row.len + 1;
                let (keys, values) = (&row.keys[l], &row.values[l]);
                let out = &mut attn[r * w..(r + 1) * w];
                for hd in 0..heads {
                    let cols = hd * dh..(hd + 1) * dh;
                    let qh = &q[cols.clone()];
                    scores.clear();
                    let mut max = f32::NEG_INFINITY;
                    for j in 0..len {
                        let kj = &keys[j * w + cols.start..j * w + cols.end];
                        let s = qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale;
                        max = max.max(s);
                        scores.push(s);
                    }
                    let mut total = 0.0f32;
                    for s in scores.iter_mut() {
                        *s = (*s - max).exp();
                        total += *s;
                    }
                    let oh = &mut out[cols.clone()];
                    oh.fill(0.0);
                    for (j, &p) in scores.iter().enumerate() {
                        let vj = &values[j * w + cols.start..j * w + cols.end];
                        for (o, &v) in oh.iter_mut().zip(vj) {
                            *o += p * v;
                        }
                    }
                    for o in oh.iter_mut() {
                        *o /= total;
                    }
                }
            }
            affine_rows(&attn, n, &b.proj_w, &b.proj_b, &mut proj);
            x.iter_mut().zip(&proj).for_each(|(a, p)| *a += p);
            layer_norm_rows(&x, &b.ln2_gain, &b.ln2_bias, &mut h);
            affine_rows(&h, n, &b.fc1_w, &b.fc1_b, &mut f1);
            f1.iter_mut().for_each(|v| *v = gelu(*v));
            affine_rows(&f1, n, &b.fc2_w, &b.fc2_b, &mut proj);
            x.iter_mut().zip(&proj).for_each(|(a, p)| *a += p);
        }
        hidden.resize(n * w, 0.0);
        layer_norm_rows(&x, &self.lnf_gain, &self.lnf_bias, hidden);
        logits.resize(n * VOCAB, 0.0);
        affine_rows(hidden, n, &self.out_w, &self.out_b, logits);
        for row in rows.iter_mut() {
            row.len += 1;
        }
        Ok(())
    }

    /// Runs each sequence of `seqs` through from an empty cache, all rows advancing together
    /// (a row drops out when its tokens run out); calls `visit(row, position, logits, hidden)`
    /// after every token. Returns the rows' states.
    fn prefill(
        &self,
        seqs: &[&[u32]],
        mut visit: impl FnMut(usize, usize, &[f32], &[f32]),
    ) -> Result<Vec<RowState>> {
        let w = self.spec.width;
        let mut states: Vec<RowState> = seqs.iter().map(|_| self.new_row()).collect();
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let (mut logits, mut hidden) = (Vec::new(), Vec::new());
        for t in 0..longest {
            let members: Vec<usize> = (0..seqs.len()).filter(|&r| t < seqs[r].len()).collect();
            let tokens: Vec<u32> = members.iter().map(|&r| seqs[r][t]).collect();
            let mut refs = pick_mut(&mut states, &members);
            self.append(&mut refs, &tokens, &mut logits, &mut hidden)?;
            for (slot, &r) in members.iter().enumerate() {
                visit(
                    r,
                    t,
                    &logits[slot * VOCAB..(slot + 1) * VOCAB],
                    &hidden[slot * w..(slot + 1) * w],
                );
            }
        }
        Ok(states)
    }

    /// The logits [T, VOCAB] and hidden states [T, W] of one whole sequence (the test's view).
    pub fn forward_one(&self, tokens: &[u32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mut logits, mut hidden) = (Vec::new(), Vec::new());
        self.prefill(&[tokens], |_, _, l, h| {
            logits.extend_from_slice(l);
            hidden.extend_from_slice(h);
        })?;
        Ok((logits, hidden))
    }

    /// Continues every prompt as [`super::sample::sample`] does (row r from the stream
    /// `keys[r]`, one uniform per token, the same stopping rules); consecutive equal prompts
    /// share one prefill.
    pub fn sample(
        &self,
        prompts: &[Vec<u32>],
        keys: &[u64],
        spec: SampleSpec,
    ) -> Result<Vec<Vec<u32>>> {
        if prompts.len() != keys.len() {
            return Err(Error::invalid(format!(
                "{} prompts but {} random keys",
                prompts.len(),
                keys.len()
            )));
        }
        if !(spec.temperature > 0.0 && spec.temperature.is_finite()) {
            return Err(Error::invalid(format!(
                "sampling temperature {} must be a positive number",
                spec.temperature
            )));
        }
        let max_len = self.spec.max_len;
        if let Some(p) = prompts.iter().find(|p| p.is_empty() || p.len() > max_len) {
            return Err(Error::invalid(format!(
                "a prompt of {} tokens (1 to max_len {max_len} allowed)",
                p.len()
            )));
        }
        let parts: Vec<Vec<Vec<u32>>> = prompts
            .par_chunks(TASK_ROWS)
            .zip(keys.par_chunks(TASK_ROWS))
            .map(|(p, k)| self.sample_task(p, k, spec))
            .collect::<Result<_>>()?;
        Ok(parts.into_iter().flatten().collect())
    }

    fn sample_task(
        &self,
        prompts: &[Vec<u32>],
        keys: &[u64],
        spec: SampleSpec,
    ) -> Result<Vec<Vec<u32>>> {
        // runs of equal prompts
        let mut groups: Vec<(usize, usize)> = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            match groups.last_mut() {
                Some((start, n)) if prompts[*start] == *p => *n += 1,
                _ => groups.push((i, 1)),
            }
        }
        let seqs: Vec<&[u32]> = groups.iter().map(|&(s, _)| prompts[s].as_slice()).collect();
        let mut first = vec![Vec::new(); groups.len()];
        let states = self.prefill(&seqs, |g, t, logits, _| {
            if t + 1 == seqs[g].len() {
                first[g] = logits.to_vec();
            }
        })?;
        let mut rows: Vec<RowState> = Vec::with_capacity(prompts.len());
        let mut last: Vec<Vec<f32>> = Vec::with_capacity(prompts.len());
        for (g, &(_, n)) in groups.iter().enumerate() {
            for _ in 0..n {
                rows.push(states[g].clone());
                last.push(first[g].clone());
            }
        }
        drop(states);
        let mut rngs: Vec<ChaCha8Rng> =
            keys.iter().map(|&k| ChaCha8Rng::seed_from_u64(k)).collect();
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
        let mut active: Vec<usize> = (0..prompts.len()).collect();
        let (mut logits, mut hidden) = (Vec::new(), Vec::new());
        loop {
            let mut keep = Vec::with_capacity(active.len());
            let mut next = Vec::with_capacity(active.len());
            for &r in &active {
                let tok = draw(&last[r], spec.temperature, rngs[r].random::<f64>());
                out[r].push(tok);
                if tok != EOS
                    && out[r].len() < spec.max_new
                    && prompts[r].len() + out[r].len() < self.spec.max_len
                {
                    keep.push(r);
                    next.push(tok);
                }
            }
            // a finished row's cache is no longer needed
            let mut going = vec![false; prompts.len()];
            keep.iter().for_each(|&r| going[r] = true);
            for &r in &active {
                if !going[r] {
                    rows[r] = RowState::new(0);
                }
            }
            if keep.is_empty() {
                return Ok(out);
            }
            let mut refs = pick_mut(&mut rows, &keep);
            self.append(&mut refs, &next, &mut logits, &mut hidden)?;
            for (slot, &r) in keep.iter().enumerate() {
                last[r].copy_from_slice(&logits[slot * VOCAB..(slot + 1) * VOCAB]);
            }
            active = keep;
        }
    }

    /// The final hidden state at every step end of every rollout, [steps][W] in rollout order.
    pub fn hidden_at_step_ends(&self, rollouts: &[&Rollout]) -> Result<Vec<f32>> {
        let w = self.spec.width;
        let parts: Vec<Vec<f32>> = rollouts
            .par_chunks(TASK_ROWS)
            .map(|batch| {
                let seqs: Vec<&[u32]> = batch.iter().map(|r| r.tokens.as_slice()).collect();
                let mut per_row: Vec<Vec<f32>> = batch
                    .iter()
                    .map(|r| vec![0.0; r.step_ends.len() * w])
                    .collect();
                self.prefill(&seqs, |r, t, _, h| {
                    if let Ok(j) = batch[r].step_ends.binary_search(&t) {
                        per_row[r][j * w..(j + 1) * w].copy_from_slice(h);
                    }
                })?;
                Ok(per_row.concat())
            })
            .collect::<Result<_>>()?;
        Ok(parts.concat())
    }
}

/// Mutable references to `states[i]` for the increasing indices `at`.
fn pick_mut<'a>(states: &'a mut [RowState], at: &[usize]) -> Vec<&'a mut RowState> {
    let mut out = Vec::with_capacity(at.len());
    let mut rest = states;
    let mut base = 0;
    for &i in at {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(i - base);
        let (first, tail) = tail.split_first_mut().expect("index in range");
        out.push(first);
        rest = tail;
        base = i + 1;
    }
    out
}

/// [`CpuPolicy`] as a [`Continuer`].
pub struct CpuContinuer<'a> {
    /// The weights.
    pub policy: &'a CpuPolicy,
    /// Temperature and length limit.
    pub spec: SampleSpec,
}

impl Continuer for CpuContinuer<'_> {
    fn continue_rows(&self, prompts: &[Vec<u32>], keys: &[u64]) -> Result<Vec<Vec<u32>>> {
        self.policy.sample(prompts, keys, self.spec)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;
    use burn::tensor::{Int, Tensor, TensorData};

    use super::*;

    type Cpu = NdArray<f32>;

    #[test]
    fn the_engine_computes_the_burn_forward() {
        let dev = Default::default();
        // a trained-looking policy: random init scaled up so the layers do real work
        let p = Policy::<Cpu>::init(PolicySpec::tiny(), 5, &dev).unwrap();
        let e = CpuPolicy::from_policy(&p);
        let seq: Vec<u32> = vec![1, 5, 9, 14, 6, 18, 11, 3, 7, 12, 3, 20];
        let ids: Vec<i64> = seq.iter().map(|&x| i64::from(x)).collect();
        let t = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(ids, [1, seq.len()]), &dev);
        let (logits, hidden) = p.forward(t).unwrap();
        let logits: Vec<f32> = logits.into_data().into_vec().unwrap();
        let hidden: Vec<f32> = hidden.into_data().into_vec().unwrap();
        let (el, eh) = e.forward_one(&seq).unwrap();
        let worst = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        assert_eq!(el.len(), logits.len());
        assert!(worst(&el, &logits) < 2e-5, "{}", worst(&el, &logits));
        assert!(worst(&eh, &hidden) < 2e-5, "{}", worst(&eh, &hidden));
        // the same rows batched with others of other lengths: the same bits
        let other: Vec<u32> = vec![1, 7, 7];
        let mut st = Vec::new();
        let states = e
            .prefill(&[&seq, &other, &seq], |r, _, l, _| {
                if r == 2 {
                    st.extend_from_slice(l)
                }
            })
            .unwrap();
        assert_eq!(st, el);
        assert_eq!(states[1].len(), 3);
        assert!(
            e.append(
                &mut [&mut e.new_row()],
                &[VOCAB as u32],
                &mut vec![],
                &mut vec![]
            )
            .is_err()
        );
    }

    #[test]
    fn engine_sampling_is_burn_sampling_and_independent_of_batching() {
        let dev = Default::default();
        let p = Policy::<Cpu>::init(PolicySpec::tiny(), 11, &dev).unwrap();
        let e = CpuPolicy::from_policy(&p);
        let prompts: Vec<Vec<u32>> = vec![
            vec![1, 5, 6],
            vec![1, 5, 6],
            vec![1, 5, 6],
            vec![1, 9, 9, 9, 14, 7],
            vec![1],
            vec![1, 28, 24, 5, 14, 6, 25],
        ];
        let keys = [3, 4, 5, 6, 7, 8];
        let s = SampleSpec {
            temperature: 1.0,
            max_new: 12,
        };
        let ours = e.sample(&prompts, &keys, s).unwrap();
        let burn = super::super::sample::sample(&p, &prompts, &keys, s, &dev).unwrap();
        assert_eq!(ours, burn);
        // alone, or with the shared prefix split up: the same draws
        for i in 0..prompts.len() {
            let alone = e.sample(&prompts[i..=i], &keys[i..=i], s).unwrap();
            assert_eq!(alone[0], ours[i]);
        }
        assert_ne!(ours[0], ours[1]);
        assert!(e.sample(&prompts, &keys[..2], s).is_err());
    }
}
