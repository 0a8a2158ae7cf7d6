//! Where in parameter space the gradient is taken: `--at init|teacher|PARAMS.safetensors`.
//!
//! Gradient norms are only meaningful with the parameter point recorded next to them, so the
//! point is a value with a name, parsed once and described in every manifest.

use std::path::PathBuf;

use crate::data::features::FeatureBundle;
use crate::error::{Error, Result};
use crate::head::{HeadKind, HeadParams, LinearHead};

/// A parameter point for a head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamPoint {
    /// `HeadParams::init(kind, d, seed)`: the trainer's step 0 for the same seed.
    Init,
    /// The synthetic teacher w*, b* stored in the bundle (linear heads only).
    Teacher,
    /// A head checkpoint written by `HeadParams::save` (or PyTorch with the same names).
    File(PathBuf),
}

impl std::str::FromStr for ParamPoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "init" => Ok(ParamPoint::Init),
            "teacher" => Ok(ParamPoint::Teacher),
            "" => Err(Error::invalid(
                "--at needs init, teacher or a .safetensors file",
            )),
            path => Ok(ParamPoint::File(PathBuf::from(path))),
        }
    }
}

impl ParamPoint {
    /// The head of `kind` at this point for `bundle`'s feature dimension.
    pub fn resolve(&self, kind: HeadKind, bundle: &FeatureBundle, seed: u64) -> Result<HeadParams> {
        let d = bundle.dim();
        let head = match self {
            ParamPoint::Init => HeadParams::init(kind, d, seed),
            ParamPoint::Teacher => {
                if kind != HeadKind::Linear {
                    return Err(Error::invalid(
                        "--at teacher gives a linear head (w*, b*); use --head linear",
                    ));
                }
                let t = bundle.teacher.as_ref().ok_or_else(|| {
                    Error::invalid("--at teacher needs a synthetic bundle with w_star and b_star")
                })?;
                HeadParams::Linear(LinearHead {
                    w: t.w_star.clone(),
                    b: t.b_star,
                })
            }
            ParamPoint::File(path) => {
                let head = HeadParams::load(path)?;
                let same_kind = matches!(
                    (head.kind(), kind),
                    (HeadKind::Linear, HeadKind::Linear)
                        | (HeadKind::Mlp { .. }, HeadKind::Mlp { .. })
                );
                if !same_kind {
                    return Err(Error::invalid(format!(
                        "{} holds a {:?} head but {kind:?} was requested",
                        path.display(),
                        head.kind()
                    )));
                }
                head
            }
        };
        if head.dim() != d {
            return Err(Error::invalid(format!(
                "the head at {} takes d = {} inputs; the bundle has d = {d}",
                self.describe(),
                head.dim()
            )));
        }
        Ok(head)
    }

    /// A short description for manifests.
    pub fn describe(&self) -> String {
        match self {
            ParamPoint::Init => "init".into(),
            ParamPoint::Teacher => "teacher".into(),
            ParamPoint::File(p) => p.display().to_string(),
        }
    }
}
