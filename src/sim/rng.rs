//! Random streams keyed by what they generate, never by who generates it.
//!
//! Every random quantity of the simulator is drawn from a ChaCha8 stream whose key is
//! (seed, stream kind, index, index): one stream per rollout for its latents, another for its
//! features, another for its text, and so on. No stream is shared between work items, so the
//! output is byte-identical however the work is split across threads, and changing one part of
//! the output (say the feature dimension) leaves the others (the annotations) untouched.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// What a stream generates; the discriminant goes into the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// The teacher direction w*.
    Teacher = 1,
    /// A source's embedding (index: source).
    SourceEmbedding = 2,
    /// Stratification permutations (indices: source, latent dimension).
    Strata = 3,
    /// A question's latents and text (indices: source, question).
    Question = 4,
    /// A question's embedding (indices: source, question).
    QuestionEmbedding = 5,
    /// A rollout's latents and MC annotation (indices: source, rollout).
    Rollout = 6,
    /// A rollout's per-step feature noise (indices: source, rollout).
    Features = 7,
    /// A rollout's step text (indices: source, rollout).
    Text = 8,
    /// A rollout's label flips (indices: source, rollout).
    Flip = 9,
    /// The negative control's shuffle of MC annotations (indices: source, first rollout of the
    /// generation chunk).
    Shuffle = 10,
    /// Benchmark streams are the training ones offset by this amount.
    Bench = 100,
}

/// The stream for (`seed`, `kind`, `a`, `b`).
pub fn stream(seed: u64, kind: Stream, a: u64, b: u64) -> ChaCha8Rng {
    keyed(seed, kind as u64, a, b)
}

/// The benchmark's counterpart of `kind`: disjoint from every training stream.
pub fn bench_stream(seed: u64, kind: Stream, a: u64, b: u64) -> ChaCha8Rng {
    keyed(seed, Stream::Bench as u64 + kind as u64, a, b)
}

/// The stream for a raw `kind` key: for users outside the simulator (experiments) that need
/// their own families of independent streams, with kinds clear of [`Stream`]'s.
pub fn keyed(seed: u64, kind: u64, a: u64, b: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&kind.to_le_bytes());
    key[16..24].copy_from_slice(&a.to_le_bytes());
    key[24..32].copy_from_slice(&b.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// A uniform draw in [0, 1).
#[inline]
pub fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    rng.random::<f64>()
}

/// A standard normal draw.
#[inline]
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// Fills `out` with independent N(0, scale²) draws.
pub fn fill_normal(rng: &mut ChaCha8Rng, out: &mut [f32], scale: f32) {
    for v in out {
        let x: f64 = StandardNormal.sample(rng);
        *v = x as f32 * scale;
    }
}

/// A uniformly random permutation of `0..n` (Fisher–Yates).
pub fn permutation(rng: &mut ChaCha8Rng, n: usize) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        p.swap(i, j);
    }
    p
}

/// K ~ Binomial(`trials`, `r`) by inversion of the uniform `u` (one draw per step keeps the
/// stream layout independent of the outcome).
pub fn binomial_inverse(trials: u32, r: f64, u: f64) -> u32 {
    if r <= 0.0 {
        return 0;
    }
    if r >= 1.0 {
        return trials;
    }
    // Count failures instead when successes are likely, so the first term does not underflow.
    if r > 0.5 {
        return trials - binomial_inverse(trials, 1.0 - r, 1.0 - u);
    }
    let q = 1.0 - r;
    let ratio = r / q;
    let mut pk = q.powi(trials as i32);
    let mut cdf = pk;
    let mut k = 0;
    while u >= cdf && k < trials {
        pk *= (trials - k) as f64 / (k + 1) as f64 * ratio;
        k += 1;
        cdf += pk;
    }
    k
}

/// The smallest k with P(X ≤ k) > u for a probability mass vector `pmf`.
pub fn discrete_inverse(pmf: &[f64], u: f64) -> usize {
    let mut cdf = 0.0;
    for (k, p) in pmf.iter().enumerate() {
        cdf += p;
        if u < cdf {
            return k;
        }
    }
    // Rounding left the total a hair under 1: the last supported value.
    pmf.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_keyed_by_every_component() {
        let draw = |s: u64, k: Stream, a: u64, b: u64| uniform(&mut stream(s, k, a, b));
        let base = draw(1, Stream::Rollout, 2, 3);
        assert_eq!(base, draw(1, Stream::Rollout, 2, 3));
        assert_ne!(base, draw(2, Stream::Rollout, 2, 3));
        assert_ne!(base, draw(1, Stream::Text, 2, 3));
        assert_ne!(base, draw(1, Stream::Rollout, 3, 2));
        assert_ne!(base, uniform(&mut bench_stream(1, Stream::Rollout, 2, 3)));
    }

    #[test]
    fn binomial_inversion_has_the_binomial_distribution() {
        // Exact: push a fine uniform grid through the inversion and compare with the pmf.
        let grid = 200_000;
        for r in [0.03, 0.3, 0.5, 0.8, 0.999] {
            let mut counts = [0u32; 17];
            for i in 0..grid {
                let u = (i as f64 + 0.5) / grid as f64;
                counts[binomial_inverse(16, r, u) as usize] += 1;
            }
            for (k, &c) in counts.iter().enumerate() {
                let pmf = statrs::function::factorial::binomial(16, k as u64)
                    * r.powi(k as i32)
                    * (1.0 - r).powi(16 - k as i32);
                assert!(
                    (c as f64 / grid as f64 - pmf).abs() < 2e-5,
                    "r {r} k {k}: {} vs {pmf}",
                    c as f64 / grid as f64
                );
            }
        }
        assert_eq!(binomial_inverse(16, 0.0, 0.9), 0);
        assert_eq!(binomial_inverse(16, 1.0, 0.1), 16);
    }

    #[test]
    fn discrete_inverse_follows_the_cdf() {
        let pmf = [0.0, 0.25, 0.5, 0.25];
        assert_eq!(discrete_inverse(&pmf, 0.0), 1);
        assert_eq!(discrete_inverse(&pmf, 0.2499), 1);
        assert_eq!(discrete_inverse(&pmf, 0.25), 2);
        assert_eq!(discrete_inverse(&pmf, 0.9999), 3);
        assert_eq!(discrete_inverse(&pmf, 1.0), 3);
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = permutation(&mut stream(0, Stream::Strata, 0, 0), 1000);
        p.sort();
        assert!(p.iter().enumerate().all(|(i, &v)| v as usize == i));
    }
}
