//! PRM heads: the map from a step representation ϕ to the step logit z.
//!
//! One definition serves the gradient-norm engine, the trainer and evaluation, so a checkpoint
//! written by `mprm train` is exactly the head `mprm gradnorm --at` differentiates.
//!
//! * `linear`: z = ⟨w, ϕ⟩ + b — the theory's student (and, with b = 0, the reference MPRM's
//!   Yes/No logit difference).
//! * `mlp`: z = ⟨w₂, φ(W₁ϕ + b₁)⟩ + b₂ with φ = GELU (erf form, as burn's) or ReLU.
//!
//! On disk a head is a safetensors file with tensors `head.w` [d] and `head.b` [1] (linear) or
//! `head.w1` [h, d], `head.b1` [h], `head.w2` [h], `head.b2` [1] (mlp), and metadata
//! `kind` = `linear` | `mlp` and, for mlp, `activation` = `gelu` | `relu`.

use std::collections::BTreeMap;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Uniform};
use safetensors::Dtype;

use crate::data::safetensors_io::{MappedSafetensors, SafetensorsWriter, TensorSpec};
use crate::error::{Error, Result};

/// Hidden-layer nonlinearity of the MLP head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// x·Φ(x), with the exact (erf) Gaussian CDF.
    Gelu,
    /// max(x, 0); the derivative at exactly 0 is taken as 0.
    Relu,
}

impl Activation {
    /// φ(u).
    pub fn apply(self, u: f64) -> f64 {
        match self {
            Activation::Relu => u.max(0.0),
            Activation::Gelu => 0.5 * u * (1.0 + erf(u / std::f64::consts::SQRT_2)),
        }
    }

    /// φ'(u).
    pub fn derivative(self, u: f64) -> f64 {
        match self {
            Activation::Relu => {
                if u > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Gelu => {
                let cdf = 0.5 * (1.0 + erf(u / std::f64::consts::SQRT_2));
                let pdf = (-0.5 * u * u).exp() / (2.0 * std::f64::consts::PI).sqrt();
                cdf + u * pdf
            }
        }
    }

    /// The nonlinearity an mlp head gets when none is named.
    pub fn default_for_mlp() -> Self {
        Activation::Gelu
    }

    /// The name used in configs and metadata.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::Relu => "relu",
        }
    }
}

impl std::str::FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gelu" => Ok(Activation::Gelu),
            "relu" => Ok(Activation::Relu),
            _ => Err(Error::invalid(format!(
                "unknown activation `{s}`: expected gelu or relu"
            ))),
        }
    }
}

/// The error function, to double precision (Abramowitz–Stegun 7.1.26 is too coarse for gradient
/// checks, so this uses statrs).
pub fn erf(x: f64) -> f64 {
    statrs::function::erf::erf(x)
}

/// Which head, without parameters.
///
/// The one spelling of a head architecture: configs (`{ kind = "mlp", hidden = 64 }`), the
/// experiments' `[train]` table, the command line ([`HeadKind::from_parts`]), the trainer and the
/// gradient engine all use it. Unknown names are errors, never a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum HeadKind {
    /// z = ⟨w, ϕ⟩ + b.
    Linear,
    /// One hidden layer of width `hidden`.
    Mlp {
        /// Hidden width h.
        hidden: usize,
        /// Nonlinearity (gelu when not given).
        #[serde(default = "Activation::default_for_mlp")]
        activation: Activation,
    },
}

/// A head architecture's name alone, as typed on the command line and in the experiments'
/// `[train] head = ...`; [`HeadKind::from_parts`] adds the widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadName {
    /// `linear`.
    Linear,
    /// `mlp`.
    Mlp,
}

impl std::str::FromStr for HeadName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(HeadName::Linear),
            "mlp" => Ok(HeadName::Mlp),
            _ => Err(Error::invalid(format!(
                "unknown head `{s}`: expected linear or mlp"
            ))),
        }
    }
}

impl std::fmt::Display for HeadName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeadName::Linear => "linear",
            HeadName::Mlp => "mlp",
        })
    }
}

impl HeadKind {
    /// The kind named `name`, with the mlp's width and nonlinearity (gelu when `None`). Settings
    /// that only an mlp has are refused for a linear head rather than ignored.
    pub fn from_parts(
        name: HeadName,
        hidden: Option<usize>,
        activation: Option<Activation>,
    ) -> Result<Self> {
        let kind = match name {
            HeadName::Linear => {
                if let Some(h) = hidden {
                    return Err(Error::invalid(format!(
                        "a hidden width ({h}) only applies to the mlp head, not linear"
                    )));
                }
                if let Some(a) = activation {
                    return Err(Error::invalid(format!(
                        "an activation ({}) only applies to the mlp head, not linear",
                        a.name()
                    )));
                }
                HeadKind::Linear
            }
            HeadName::Mlp => HeadKind::Mlp {
                hidden: hidden
                    .ok_or_else(|| Error::invalid("the mlp head needs a hidden width"))?,
                activation: activation.unwrap_or(Activation::Gelu),
            },
        };
        kind.validate()?;
        Ok(kind)
    }

    /// The architecture's name.
    pub fn name(&self) -> HeadName {
        match self {
            HeadKind::Linear => HeadName::Linear,
            HeadKind::Mlp { .. } => HeadName::Mlp,
        }
    }

    /// Checks the widths.
    pub fn validate(&self) -> Result<()> {
        match self {
            HeadKind::Mlp { hidden: 0, .. } => {
                Err(Error::invalid("head.hidden must be at least 1"))
            }
            _ => Ok(()),
        }
    }
}

/// `linear`, or `mlp (hidden 64, gelu)`: how heads are named in messages and command output
/// (serialised files keep the serde form).
impl std::fmt::Display for HeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadKind::Linear => f.write_str("linear"),
            HeadKind::Mlp { hidden, activation } => {
                write!(f, "mlp (hidden {hidden}, {})", activation.name())
            }
        }
    }
}

/// Linear head parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearHead {
    /// Weights, length d.
    pub w: Vec<f32>,
    /// Bias.
    pub b: f32,
}

/// One-hidden-layer head parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpHead {
    /// W₁, row-major [h, d].
    pub w1: Vec<f32>,
    /// b₁, length h.
    pub b1: Vec<f32>,
    /// w₂, length h.
    pub w2: Vec<f32>,
    /// b₂.
    pub b2: f32,
    /// φ.
    pub activation: Activation,
    /// Input dimension d.
    pub dim: usize,
}

impl MlpHead {
    /// Hidden width h.
    pub fn hidden(&self) -> usize {
        self.b1.len()
    }
}

/// A PRM head with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadParams {
    /// See [`LinearHead`].
    Linear(LinearHead),
    /// See [`MlpHead`].
    Mlp(MlpHead),
}

impl HeadParams {
    /// Input dimension d.
    pub fn dim(&self) -> usize {
        match self {
            HeadParams::Linear(h) => h.w.len(),
            HeadParams::Mlp(h) => h.dim,
        }
    }

    /// The head's kind.
    pub fn kind(&self) -> HeadKind {
        match self {
            HeadParams::Linear(_) => HeadKind::Linear,
            HeadParams::Mlp(h) => HeadKind::Mlp {
                hidden: h.hidden(),
                activation: h.activation,
            },
        }
    }

    /// Number of scalar parameters.
    pub fn n_params(&self) -> usize {
        match self {
            HeadParams::Linear(h) => h.w.len() + 1,
            HeadParams::Mlp(h) => h.w1.len() + h.b1.len() + h.w2.len() + 1,
        }
    }

    /// Random initialisation with the same law as burn's default `Linear` init (Kaiming uniform:
    /// U(−1/√fan_in, 1/√fan_in) for weights and biases), so `--at init` and the trainer's step 0
    /// are the same head for the same seed.
    pub fn init(kind: HeadKind, dim: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut uniform = |fan_in: usize, n: usize| -> Vec<f32> {
            let bound = 1.0 / (fan_in as f32).sqrt();
            let dist = Uniform::new_inclusive(-bound, bound).expect("finite bound");
            (0..n).map(|_| dist.sample(&mut rng)).collect()
        };
        match kind {
            HeadKind::Linear => {
                let w = uniform(dim, dim);
                let b = uniform(dim, 1)[0];
                HeadParams::Linear(LinearHead { w, b })
            }
            HeadKind::Mlp { hidden, activation } => {
                let w1 = uniform(dim, hidden * dim);
                let b1 = uniform(dim, hidden);
                let w2 = uniform(hidden, hidden);
                let b2 = uniform(hidden, 1)[0];
                HeadParams::Mlp(MlpHead {
                    w1,
                    b1,
                    w2,
                    b2,
                    activation,
                    dim,
                })
            }
        }
    }

    /// The step logit z for one feature row, in f64.
    pub fn logit(&self, phi: &[f64]) -> f64 {
        match self {
            HeadParams::Linear(h) => {
                h.w.iter()
                    .zip(phi)
                    .map(|(&w, &x)| w as f64 * x)
                    .sum::<f64>()
                    + h.b as f64
            }
            HeadParams::Mlp(h) => {
                let d = h.dim;
                let mut z = h.b2 as f64;
                for k in 0..h.hidden() {
                    let row = &h.w1[k * d..(k + 1) * d];
                    let u = row
                        .iter()
                        .zip(phi)
                        .map(|(&w, &x)| w as f64 * x)
                        .sum::<f64>()
                        + h.b1[k] as f64;
                    z += h.w2[k] as f64 * h.activation.apply(u);
                }
                z
            }
        }
    }

    /// Writes the head to a safetensors file (atomically).
    pub fn save(&self, path: impl AsRef<Path>, extra: &BTreeMap<String, String>) -> Result<()> {
        let mut meta = extra.clone();
        match self {
            HeadParams::Linear(h) => {
                meta.insert("kind".into(), "linear".into());
                let specs = [
                    TensorSpec::new("head.w", Dtype::F32, &[h.w.len()]),
                    TensorSpec::new("head.b", Dtype::F32, &[1]),
                ];
                let mut w = SafetensorsWriter::create(path, &specs, &meta)?;
                w.write_all("head.w", &h.w)?;
                w.write_all("head.b", &[h.b])?;
                w.finish()
            }
            HeadParams::Mlp(h) => {
                meta.insert("kind".into(), "mlp".into());
                meta.insert("activation".into(), h.activation.name().into());
                let specs = [
                    TensorSpec::new("head.w1", Dtype::F32, &[h.hidden(), h.dim]),
                    TensorSpec::new("head.b1", Dtype::F32, &[h.hidden()]),
                    TensorSpec::new("head.w2", Dtype::F32, &[h.hidden()]),
                    TensorSpec::new("head.b2", Dtype::F32, &[1]),
                ];
                let mut w = SafetensorsWriter::create(path, &specs, &meta)?;
                w.write_all("head.w1", &h.w1)?;
                w.write_all("head.b1", &h.b1)?;
                w.write_all("head.w2", &h.w2)?;
                w.write_all("head.b2", &[h.b2])?;
                w.finish()
            }
        }
    }

    /// Reads a head written by [`HeadParams::save`] (or by PyTorch with the same names).
    ///
    /// The kind comes from the `kind` metadata when present, otherwise from which tensors exist.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let hint = if path.join("head.safetensors").is_file() {
                format!(
                    " (did you mean {}?)",
                    path.join("head.safetensors").display()
                )
            } else {
                String::new()
            };
            return Err(Error::invalid(format!(
                "{} is a folder, not a head: give a head .safetensors file, such as \
                 RUN/checkpoints/step-000050/head.safetensors{hint}",
                path.display()
            )));
        }
        let file = MappedSafetensors::open(path)?;
        let meta = file.metadata();
        let get = |name: &str| -> Result<Vec<f32>> {
            let t = file.require(name)?;
            let v = t.to_f32().ok_or_else(|| {
                Error::bundle(path, name, format!("dtype {:?} is not a float", t.dtype))
            })?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::bundle(path, name, "holds a NaN or infinity"));
            }
            Ok(v)
        };
        let scalar = |name: &str| -> Result<f32> {
            let v = get(name)?;
            if v.len() != 1 {
                return Err(Error::bundle(
                    path,
                    name,
                    format!("{} elements; expected 1", v.len()),
                ));
            }
            Ok(v[0])
        };
        let kind = match meta.get("kind").map(String::as_str) {
            Some(k) => k.to_string(),
            None if file.get("head.w1").is_some() => "mlp".into(),
            None => "linear".into(),
        };
        match kind.as_str() {
            "linear" => Ok(HeadParams::Linear(LinearHead {
                w: get("head.w")?,
                b: scalar("head.b")?,
            })),
            "mlp" => {
                let activation = meta
                    .get("activation")
                    .map(|a| a.parse())
                    .transpose()?
                    .unwrap_or(Activation::Gelu);
                let w1_shape = file.require("head.w1")?.shape;
                if w1_shape.len() != 2 {
                    return Err(Error::bundle(
                        path,
                        "head.w1",
                        format!("shape {w1_shape:?}; expected [h, d]"),
                    ));
                }
                let (h, d) = (w1_shape[0], w1_shape[1]);
                let head = MlpHead {
                    w1: get("head.w1")?,
                    b1: get("head.b1")?,
                    w2: get("head.w2")?,
                    b2: scalar("head.b2")?,
                    activation,
                    dim: d,
                };
                if head.b1.len() != h {
                    return Err(Error::bundle(
                        path,
                        "head.b1",
                        format!("{} elements; expected h = {h}", head.b1.len()),
                    ));
                }
                if head.w2.len() != h {
                    return Err(Error::bundle(
                        path,
                        "head.w2",
                        format!("{} elements; expected h = {h}", head.w2.len()),
                    ));
                }
                Ok(HeadParams::Mlp(head))
            }
            other => Err(Error::bundle(
                path,
                "__metadata__",
                format!("unknown head kind `{other}`"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [
            HeadKind::Linear,
            HeadKind::Mlp {
                hidden: 3,
                activation: Activation::Relu,
            },
        ] {
            let head = HeadParams::init(kind, 4, 11);
            let p = dir.path().join("h.safetensors");
            head.save(&p, &BTreeMap::new()).unwrap();
            assert_eq!(HeadParams::load(&p).unwrap(), head);
            assert_eq!(head.kind(), kind);
        }
    }

    #[test]
    fn head_kinds_display_plainly_and_serialise_as_before() {
        let mlp = HeadKind::Mlp {
            hidden: 64,
            activation: Activation::Gelu,
        };
        assert_eq!(mlp.to_string(), "mlp (hidden 64, gelu)");
        assert_eq!(HeadKind::Linear.to_string(), "linear");
        assert_eq!(
            serde_json::to_string(&mlp).unwrap(),
            r#"{"kind":"mlp","hidden":64,"activation":"gelu"}"#
        );
    }

    #[test]
    fn loading_a_folder_says_a_head_file_is_needed() {
        let dir = tempfile::tempdir().unwrap();
        let e = HeadParams::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&dir.path().display().to_string())
                && e.contains("is a folder, not a head")
                && e.contains(".safetensors file")
                && !e.contains("os error"),
            "{e}"
        );
    }

    #[test]
    fn init_is_seeded() {
        let a = HeadParams::init(HeadKind::Linear, 8, 1);
        assert_eq!(a, HeadParams::init(HeadKind::Linear, 8, 1));
        assert_ne!(a, HeadParams::init(HeadKind::Linear, 8, 2));
    }

    #[test]
    fn gelu_derivative_matches_finite_difference() {
        for &u in &[-2.0, -0.3, 0.0, 0.7, 3.0] {
            let eps = 1e-6;
            let fd =
                (Activation::Gelu.apply(u + eps) - Activation::Gelu.apply(u - eps)) / (2.0 * eps);
            assert!(
                (fd - Activation::Gelu.derivative(u)).abs() < 1e-8,
                "u = {u}"
            );
        }
    }
}
