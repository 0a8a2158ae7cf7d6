//! What a gradient-statistics run computes: the loss reduction over a rollout's steps and an
//! optional projection of each per-rollout gradient.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// How the per-step losses of a rollout are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// c = 1/n: the mean over the rollout's steps (the reference loss; default).
    #[default]
    Mean,
    /// c = 1: the sum over steps (the theory's convention).
    Sum,
}

impl Reduction {
    /// The factor c for a rollout of `n` steps.
    pub fn weight(self, n: usize) -> f64 {
        match self {
            Reduction::Mean => 1.0 / n as f64,
            Reduction::Sum => 1.0,
        }
    }

    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        }
    }
}

impl std::str::FromStr for Reduction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            _ => Err(Error::invalid(format!(
                "unknown reduction `{s}`: expected mean or sum"
            ))),
        }
    }
}

/// How the CPU engine sums the products of a feature with a weight or a residual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accumulation {
    /// f64 sums of products that are exact in f64 (f32 × f32): the same bits on every CPU and
    /// thread count, and the form every committed result was computed with (default).
    #[default]
    F64,
    /// f32 fused multiply-adds over the features, f64 for the per-step and per-rollout terms:
    /// twice the elements per instruction and no widening, so about twice as fast where
    /// arithmetic is the limit. Also the same bits everywhere, but not the f64 bits: each dot
    /// product carries a relative error up to about 35·2⁻²⁴ of Σ|x w| (linear head only).
    F32,
}

impl Accumulation {
    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Accumulation::F64 => "f64",
            Accumulation::F32 => "f32",
        }
    }

    /// True for the default, which manifests leave out so that their bytes stay as they were.
    pub fn is_default(&self) -> bool {
        *self == Accumulation::F64
    }
}

impl std::str::FromStr for Accumulation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f64" => Ok(Accumulation::F64),
            "f32" => Ok(Accumulation::F32),
            _ => Err(Error::invalid(format!(
                "unknown accumulation `{s}`: expected f64 or f32"
            ))),
        }
    }
}

/// Directions onto which each per-rollout gradient is projected (LESS-style sketches).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Projection {
    /// k Rademacher directions with entries ±1/√k. Direction `i` comes from ChaCha8 seeded with
    /// `seed` on stream `i`, one `next_u64` per 64 parameters (bit `p % 64`, 1 = +), so a
    /// direction never depends on k, on the device or on thread scheduling.
    Random {
        /// Number of directions.
        k: usize,
        /// Seed of the directions.
        seed: u64,
    },
    /// Explicit directions, each of length `n_params` in the flattened parameter order.
    Directions(Vec<Vec<f32>>),
}

impl Projection {
    /// Number of directions.
    pub fn k(&self) -> usize {
        match self {
            Projection::Random { k, .. } => *k,
            Projection::Directions(d) => d.len(),
        }
    }

    /// Materialises the k × P direction matrix (row-major).
    pub fn matrix(&self, n_params: usize) -> Result<ProjectionMatrix> {
        let k = self.k();
        if k == 0 {
            return Err(Error::invalid("a projection needs at least one direction"));
        }
        const LIMIT_BYTES: usize = 2 << 30;
        if k.saturating_mul(n_params).saturating_mul(4) > LIMIT_BYTES {
            return Err(Error::invalid(format!(
                "projection matrix of {k} × {n_params} parameters exceeds 2 GiB; use fewer directions"
            )));
        }
        let data = match self {
            Projection::Random { k, seed } => {
                let scale = 1.0 / (*k as f32).sqrt();
                let mut data = Vec::with_capacity(k * n_params);
                for dir in 0..*k {
                    let mut rng = ChaCha8Rng::seed_from_u64(*seed);
                    rng.set_stream(dir as u64);
                    let mut bits = 0u64;
                    for p in 0..n_params {
                        if p % 64 == 0 {
                            bits = rng.next_u64();
                        }
                        let positive = (bits >> (p % 64)) & 1 == 1;
                        data.push(if positive { scale } else { -scale });
                    }
                }
                data
            }
            Projection::Directions(dirs) => {
                let mut data = Vec::with_capacity(k * n_params);
                for (i, dir) in dirs.iter().enumerate() {
                    if dir.len() != n_params {
                        return Err(Error::invalid(format!(
                            "projection direction {i} has {} entries; the head has {n_params} parameters",
                            dir.len()
                        )));
                    }
                    if let Some(p) = dir.iter().position(|v| !v.is_finite()) {
                        return Err(Error::invalid(format!(
                            "projection direction {i} entry {p} is not finite"
                        )));
                    }
                    data.extend_from_slice(dir);
                }
                data
            }
        };
        Ok(ProjectionMatrix { k, n_params, data })
    }
}

/// A resolved projection: k directions over P parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionMatrix {
    /// Number of directions.
    pub k: usize,
    /// P, the head's parameter count.
    pub n_params: usize,
    /// Row-major [k, P].
    pub data: Vec<f32>,
}

impl ProjectionMatrix {
    /// Direction `i`, length P.
    pub fn direction(&self, i: usize) -> &[f32] {
        &self.data[i * self.n_params..(i + 1) * self.n_params]
    }
}

/// Settings of a gradient-statistics run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GradNormOptions {
    /// Mean (default) or sum over steps.
    pub reduction: Reduction,
    /// Optional projection of each per-rollout gradient.
    pub projection: Option<Projection>,
    /// The CPU engine's sums; f32 is for the linear head only. The CUDA engine always sums in
    /// f32 and ignores this.
    #[serde(default, skip_serializing_if = "Accumulation::is_default")]
    pub accumulation: Accumulation,
}

impl GradNormOptions {
    /// The direction matrix of the projection, if any, for a head with `n_params` parameters.
    pub fn projection_matrix(&self, n_params: usize) -> Result<Option<ProjectionMatrix>> {
        self.projection
            .as_ref()
            .map(|p| p.matrix(n_params))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_directions_are_seeded_signs() {
        let a = Projection::Random { k: 3, seed: 9 }.matrix(70).unwrap();
        let b = Projection::Random { k: 3, seed: 9 }.matrix(70).unwrap();
        assert_eq!(a, b);
        let scale = 1.0 / 3f32.sqrt();
        assert!(a.data.iter().all(|&v| v == scale || v == -scale));
        // A direction depends on its index, not on k.
        let wider = Projection::Random { k: 5, seed: 9 }.matrix(70).unwrap();
        let s5 = 1.0 / 5f32.sqrt();
        let signs = |m: &ProjectionMatrix, i: usize| -> Vec<bool> {
            m.direction(i).iter().map(|&v| v > 0.0).collect()
        };
        assert_eq!(signs(&a, 2), signs(&wider, 2));
        assert!(wider.direction(4).iter().all(|&v| v.abs() == s5));
        assert_ne!(signs(&a, 0), signs(&a, 1));
    }
}
