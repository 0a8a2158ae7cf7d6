//! Temperature sampling from the policy, batched, with a key/value cache.
//!
//! Every row draws from its own ChaCha8 stream (keyed by the caller), one uniform per token, so
//! what a row samples does not depend on which rows share its batch, in what order, or on how
//! many threads run the products. Finished rows (`<eos>`, or the length limit) leave the batch.
//! [`sample_uncached`] recomputes every prefix from scratch and must agree token for token: the
//! test of the cache.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

use super::policy::{KvCache, Policy};
use super::tokens::{EOS, PAD};

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleSpec {
    /// Softmax temperature (> 0).
    pub temperature: f64,
    /// Most new tokens per row (the policy's `max_len` also bounds the whole sequence).
    pub max_new: usize,
}

impl SampleSpec {
    fn check(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::invalid(format!(
                "sampling temperature {} must be a positive number",
                self.temperature
            )));
        }
        Ok(())
    }
}

/// The token drawn from `logits` at `temperature` by the uniform `u` (inverse CDF in f64).
pub fn draw(logits: &[f32], temperature: f64, u: f64) -> u32 {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let weights: Vec<f64> = logits
        .iter()
        .map(|&z| ((z as f64 - m) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut target = u * total;
    for (i, w) in weights.iter().enumerate() {
        if target < *w {
            return i as u32;
        }
        target -= w;
    }
    // u·total rounded past the last weight: the last token with any weight
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0) as u32
}

/// Checks the sampling settings and inputs for `policy`; returns its `max_len`.
fn check_inputs<B: Backend>(
    policy: &Policy<B>,
    prompts: &[Vec<u32>],
    keys: &[u64],
    spec: SampleSpec,
) -> Result<usize> {
    spec.check()?;
    let max_len = policy.spec().max_len;
    if prompts.len() != keys.len() {
        return Err(Error::invalid(format!(
            "{} prompts but {} random keys",
            prompts.len(),
            keys.len()
        )));
    }
    if let Some(p) = prompts.iter().find(|p| p.is_empty() || p.len() > max_len) {
        return Err(Error::invalid(format!(
            "a prompt of {} tokens (1 to max_len {max_len} allowed)",
            p.len()
        )));
    }
    Ok(max_len)
}

fn int_rows<B: Backend>(rows: &[Vec<u32>], device: &B::Device) -> Tensor<B, 2, Int> {
    let t = rows[0].len();
    let ids: Vec<i64> = rows.iter().flatten().map(|&x| i64::from(x)).collect();
    Tensor::from_data(TensorData::new(ids, [rows.len(), t]), device)
}

/// The last position's logits of every row of `logits` [B, t, V], on the host.
fn last_logits<B: Backend>(logits: Tensor<B, 3>) -> Vec<Vec<f32>> {
    let [b, t, v] = logits.dims();
    let all: Vec<f32> = logits
        .narrow(1, t - 1, 1)
        .reshape([b, v])
        .into_data()
        .convert::<f32>()
        .into_vec()
        .expect("f32 logits");
    all.chunks(v).map(<[f32]>::to_vec).collect()
}

/// Continues every prompt until `<eos>`, `max_new` new tokens or the policy's `max_len`; row r
/// draws from the stream `keys[r]`. Returns the new tokens of each row (`<eos>` included when
/// drawn).
pub fn sample<B: Backend>(
    policy: &Policy<B>,
    prompts: &[Vec<u32>],
    keys: &[u64],
    spec: SampleSpec,
    device: &B::Device,
) -> Result<Vec<Vec<u32>>> {
    let max_len = check_inputs(policy, prompts, keys, spec)?;
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    if prompts.is_empty() {
        return Ok(out);
    }
    let mut rngs: Vec<ChaCha8Rng> = keys.iter().map(|&k| ChaCha8Rng::seed_from_u64(k)).collect();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut pad: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
    let padded: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| [vec![PAD; longest - p.len()], p.clone()].concat())
        .collect();
    let mut cache = KvCache::new();
    let (logits, _) = policy.extend(int_rows::<B>(&padded, device), &pad, &mut cache)?;
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    let mut last = last_logits(logits);
    loop {
        let mut next = Vec::with_capacity(active.len());
        let mut keep = Vec::with_capacity(active.len());
        for (slot, &row) in active.iter().enumerate() {
            let tok = draw(&last[slot], spec.temperature, rngs[row].random::<f64>());
            out[row].push(tok);
            let full = prompts[row].len() + out[row].len();
            if tok != EOS && out[row].len() < spec.max_new && full < max_len {
                keep.push(slot);
                next.push(vec![tok]);
            }
        }
        if keep.is_empty() {
            return Ok(out);
        }
        if keep.len() < active.len() {
            cache = cache.select(&keep);
            pad = keep.iter().map(|&s| pad[s]).collect();
            active = keep.iter().map(|&s| active[s]).collect();
        }
        let (logits, _) = policy.extend(int_rows::<B>(&next, device), &pad, &mut cache)?;
        last = last_logits(logits);
    }
}

/// [`sample`] without the cache: every token recomputes its row's whole sequence. Slow; the
/// reference the cached sampler is tested against.
pub fn sample_uncached<B: Backend>(
    policy: &Policy<B>,
    prompts: &[Vec<u32>],
    keys: &[u64],
    spec: SampleSpec,
    device: &B::Device,
) -> Result<Vec<Vec<u32>>> {
    let max_len = check_inputs(policy, prompts, keys, spec)?;
    let mut out = Vec::with_capacity(prompts.len());
    for (prompt, &key) in prompts.iter().zip(keys) {
        let mut rng = ChaCha8Rng::seed_from_u64(key);
        let mut seq = prompt.clone();
        let mut new = Vec::new();
        loop {
            let mut cache = KvCache::new();
            let (logits, _) = policy.extend(
                int_rows::<B>(std::slice::from_ref(&seq), device),
                &[0],
                &mut cache,
            )?;
            let tok = draw(
                &last_logits(logits)[0],
                spec.temperature,
                rng.random::<f64>(),
            );
            new.push(tok);
            seq.push(tok);
            if tok == EOS || new.len() >= spec.max_new || seq.len() >= max_len {
                break;
            }
        }
        out.push(new);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;

    use super::super::policy::PolicySpec;
    use super::*;

    type Cpu = NdArray<f32>;

    #[test]
    fn draw_inverts_the_tempered_softmax() {
        let z = [0.0f32, (3.0f64).ln() as f32];
        // p = (1/4, 3/4)
        assert_eq!(draw(&z, 1.0, 0.2), 0);
        assert_eq!(draw(&z, 1.0, 0.3), 1);
        // temperature 2: p ∝ (1, √3), boundary at 1/(1 + √3) ≈ 0.366
        assert_eq!(draw(&z, 2.0, 0.35), 0);
        assert_eq!(draw(&z, 2.0, 0.38), 1);
        assert_eq!(draw(&z, 1.0, 0.999_999_999_999), 1);
    }

    #[test]
    fn the_cached_batched_sampler_draws_what_uncached_sampling_draws() {
        let dev = Default::default();
        let spec = PolicySpec {
            width: 16,
            layers: 2,
            heads: 2,
            max_len: 20,
        };
        let policy = Policy::<Cpu>::init(spec, 11, &dev).unwrap();
        let prompts: Vec<Vec<u32>> = vec![
            vec![1, 5, 6],
            vec![1, 9, 9, 9, 14, 7],
            vec![1],
            vec![1, 28, 24, 5, 14, 6, 25],
            vec![1, 5, 6],
        ];
        let keys = [3, 4, 5, 6, 7];
        let s = SampleSpec {
            temperature: 1.0,
            max_new: 12,
        };
        let cached = sample(&policy, &prompts, &keys, s, &dev).unwrap();
        let plain = sample_uncached(&policy, &prompts, &keys, s, &dev).unwrap();
        assert_eq!(cached, plain);
        // limits: max_new and max_len
        assert!(cached.iter().all(|r| !r.is_empty() && r.len() <= 12));
        assert!(cached[3].len() <= 13);
        // rows 0 and 4 share a prompt but not a stream
        assert_ne!(cached[0], cached[4]);
        // a row's draw does not depend on its batch
        let alone = sample(&policy, &prompts[1..2], &keys[1..2], s, &dev).unwrap();
        assert_eq!(alone[0], cached[1]);
        assert!(sample(&policy, &prompts, &keys[..2], s, &dev).is_err());
        let cold = SampleSpec {
            temperature: 0.0,
            ..s
        };
        assert!(sample(&policy, &prompts, &keys, cold, &dev).is_err());
    }
}
