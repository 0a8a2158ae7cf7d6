//! Adam-preconditioned, randomly sketched per-rollout gradients (LESS's gradient features), and
//! their cosines with given directions in sketch space.
//!
//! For rollout x with gradient g (flattened order) and an optimiser state (m, v):
//! Γ(g) = m′ / √(v′ + ε) with m′ = β₁m + (1 − β₁)g and v′ = β₂v + (1 − β₂)g², elementwise (the
//! step Adam would take on g from that state, without bias correction). Γ is not linear in g, so
//! it cannot go through a projection of g; the engines materialise g, precondition it and sketch
//! it in one pass. The sketch is a CountSketch: parameter p lands in output `bucket[p]` with sign
//! `sign[p]`, an O(P) random projection that preserves inner products in expectation.
//!
//! Summation order, shared by the CPU twin and the `precondition_sketch` kernel: each output is
//! the sum over its bucket's parameters in ascending parameter order.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Adam's β₁, β₂ and ε as LESS applies them to one gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamShape {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε (inside the square root).
    pub eps: f64,
}

/// Γ(g) = m' / √(v' + ε) with m' = β₁m + (1 − β₁)g and v' = β₂v + (1 − β₂)g², elementwise.
pub fn adam_precondition(g: &[f64], m: &[f64], v: &[f64], a: AdamShape, out: &mut Vec<f64>) {
    out.clear();
    out.extend(g.iter().zip(m).zip(v).map(|((&g, &m), &v)| {
        let m1 = a.beta1 * m + (1.0 - a.beta1) * g;
        let v1 = a.beta2 * v + (1.0 - a.beta2) * g * g;
        m1 / (v1 + a.eps).sqrt()
    }));
}

/// A CountSketch from P parameters to k dimensions: parameter p goes to output `bucket[p]` with
/// sign `sign[p]`, both drawn from ChaCha8 seeded with `seed` (so the sketch is a function of the
/// seed, P and k only).
#[derive(Debug, Clone, PartialEq)]
pub struct CountSketch {
    /// Output dimension of each parameter.
    pub bucket: Vec<u32>,
    /// ±1 per parameter.
    pub sign: Vec<f64>,
    /// Output dimensions k.
    pub dims: usize,
}

impl CountSketch {
    /// The sketch for `params` inputs and `dims` outputs.
    pub fn new(params: usize, dims: usize, seed: u64) -> Result<Self> {
        if dims == 0 {
            return Err(Error::invalid("a sketch needs at least one dimension"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut bucket = Vec::with_capacity(params);
        let mut sign = Vec::with_capacity(params);
        for _ in 0..params {
            bucket.push(rng.random_range(0..dims as u32));
            sign.push(if rng.random::<bool>() { 1.0 } else { -1.0 });
        }
        Ok(CountSketch { bucket, sign, dims })
    }

    /// The sketch of `u` (length P) into `out` (length k), each output summed in parameter order.
    pub fn project(&self, u: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.resize(self.dims, 0.0);
        for ((&b, &s), &x) in self.bucket.iter().zip(&self.sign).zip(u) {
            out[b as usize] += s * x;
        }
    }

    /// The sketch grouped by output, as the kernel reads it: output b owns
    /// `members[start[b]..start[b + 1]]` (parameters in ascending order), with `signs` aligned to
    /// `members`.
    pub fn by_bucket(&self) -> SketchBuckets {
        let mut start = vec![0i64; self.dims + 1];
        for &b in &self.bucket {
            start[b as usize + 1] += 1;
        }
        for b in 0..self.dims {
            start[b + 1] += start[b];
        }
        let mut next: Vec<i64> = start[..self.dims].to_vec();
        let mut members = vec![0i64; self.bucket.len()];
        let mut signs = vec![0f32; self.bucket.len()];
        for (p, (&b, &s)) in self.bucket.iter().zip(&self.sign).enumerate() {
            let at = next[b as usize] as usize;
            members[at] = p as i64;
            signs[at] = s as f32;
            next[b as usize] += 1;
        }
        SketchBuckets {
            start,
            members,
            signs,
        }
    }
}

/// A [`CountSketch`] in bucket-major form (see [`CountSketch::by_bucket`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SketchBuckets {
    /// k + 1 offsets into `members`.
    pub start: Vec<i64>,
    /// Parameters grouped by output, ascending within a group.
    pub members: Vec<i64>,
    /// The sign of each entry of `members`.
    pub signs: Vec<f32>,
}

/// Everything that maps a rollout's gradient to its LESS feature: the optimiser state, Adam's
/// constants and the sketch.
#[derive(Debug, Clone, PartialEq)]
pub struct PreconditionedSketch {
    /// Adam's first moment per parameter (flattened order).
    pub m: Vec<f64>,
    /// Adam's second moment per parameter.
    pub v: Vec<f64>,
    /// β₁, β₂, ε.
    pub adam: AdamShape,
    /// The random projection.
    pub sketch: CountSketch,
}

impl PreconditionedSketch {
    /// Checks that the state and the sketch cover `n_params` parameters.
    pub fn check(&self, n_params: usize) -> Result<()> {
        if self.m.len() != n_params || self.v.len() != n_params {
            return Err(Error::invalid(format!(
                "the optimiser state has {} / {} entries for a head with {n_params} parameters",
                self.m.len(),
                self.v.len()
            )));
        }
        if self.sketch.bucket.len() != n_params {
            return Err(Error::invalid(format!(
                "the sketch takes {} inputs for a head with {n_params} parameters",
                self.sketch.bucket.len()
            )));
        }
        Ok(())
    }

    /// sketch(Γ(g)), the CPU twin of the `precondition_sketch_f32` kernel (in f64).
    pub fn feature(&self, g: &[f64], pre: &mut Vec<f64>, out: &mut Vec<f64>) {
        adam_precondition(g, &self.m, &self.v, self.adam, pre);
        self.sketch.project(pre, out);
    }
}

/// cos(a, b), 0 when either is zero.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa > 0.0 && bb > 0.0 {
        ab / (aa.sqrt() * bb.sqrt())
    } else {
        0.0
    }
}

/// Checks that every direction has the sketch's k entries.
pub(crate) fn check_directions(directions: &[Vec<f64>], dims: usize) -> Result<()> {
    if directions.is_empty() {
        return Err(Error::invalid("sketch cosines need at least one direction"));
    }
    if let Some(d) = directions.iter().find(|d| d.len() != dims) {
        return Err(Error::invalid(format!(
            "a direction of length {} in a sketch space of {dims} dimensions",
            d.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_list_every_parameter_once_in_ascending_order_with_its_sign() {
        let s = CountSketch::new(50, 7, 3).unwrap();
        let b = s.by_bucket();
        assert_eq!(b.start.len(), 8);
        assert_eq!(*b.start.last().unwrap(), 50);
        let mut seen = [false; 50];
        for k in 0..7 {
            let group = &b.members[b.start[k] as usize..b.start[k + 1] as usize];
            assert!(group.windows(2).all(|w| w[0] < w[1]), "{group:?}");
            for (t, &p) in group.iter().enumerate() {
                let p = p as usize;
                assert_eq!(s.bucket[p] as usize, k);
                assert_eq!(f64::from(b.signs[b.start[k] as usize + t]), s.sign[p]);
                seen[p] = true;
            }
        }
        assert!(seen.iter().all(|&x| x));
    }

    #[test]
    fn the_sketch_of_a_unit_vector_is_its_signed_bucket() {
        let s = CountSketch::new(9, 4, 11).unwrap();
        let mut out = Vec::new();
        let mut u = vec![0.0; 9];
        u[5] = 2.0;
        s.project(&u, &mut out);
        let mut want = vec![0.0; 4];
        want[s.bucket[5] as usize] = 2.0 * s.sign[5];
        assert_eq!(out, want);
        assert!(CountSketch::new(9, 0, 1).is_err());
    }
}
