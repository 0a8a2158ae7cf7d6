//! Where in parameter space the gradient is taken: `--at init|teacher|PARAMS.safetensors`.
//!
//! Gradient norms are only meaningful with the parameter point recorded next to them, so the
//! point is a value with a name, parsed once and described in every manifest.

use std::path::{Path, PathBuf};

use crate::data::features::FeatureBundle;
use crate::error::{Error, Result};
use crate::head::{Activation, HeadKind, HeadName, HeadParams, LinearHead};

/// Hidden width of an mlp head when `--hidden` is not given.
pub const DEFAULT_HIDDEN: usize = 256;
/// Nonlinearity of an mlp head when `--activation` is not given.
pub const DEFAULT_ACTIVATION: Activation = Activation::Gelu;

/// A head as asked for on the command line: what was not given is `None`, taken from the head
/// file when there is one and from the defaults otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeadRequest {
    /// `--head`.
    pub name: Option<HeadName>,
    /// `--hidden`.
    pub hidden: Option<usize>,
    /// `--activation`.
    pub activation: Option<Activation>,
}

impl HeadRequest {
    /// The head asked for, defaults filled in (linear when `--head` is not given); mlp settings
    /// given for a linear head are an error, not ignored.
    pub fn kind(&self) -> Result<HeadKind> {
        match self.name.unwrap_or(HeadName::Linear) {
            HeadName::Linear => {
                HeadKind::from_parts(HeadName::Linear, self.hidden, self.activation)
            }
            HeadName::Mlp => HeadKind::from_parts(
                HeadName::Mlp,
                Some(self.hidden.unwrap_or(DEFAULT_HIDDEN)),
                Some(self.activation.unwrap_or(DEFAULT_ACTIVATION)),
            ),
        }
    }

    /// Checks the head found in `path` (given with `flag`) against every setting given
    /// explicitly: an error naming the file, its head and the conflicting option otherwise.
    pub fn check_file(&self, path: &Path, flag: &str, found: HeadKind) -> Result<()> {
        let conflict = |given: String| {
            Err(Error::invalid(format!(
                "{} ({flag}) holds a {found} head, but {given} was given; leave the option out \
                 to use the file's head, or give another file",
                path.display()
            )))
        };
        if let Some(name) = self.name
            && name != found.name()
        {
            return conflict(format!("--head {name}"));
        }
        match found {
            HeadKind::Mlp { hidden, activation } => {
                if let Some(h) = self.hidden.filter(|&h| h != hidden) {
                    return conflict(format!("--hidden {h}"));
                }
                if let Some(a) = self.activation.filter(|&a| a != activation) {
                    return conflict(format!("--activation {}", a.name()));
                }
            }
            HeadKind::Linear => {
                if let Some(h) = self.hidden {
                    return conflict(format!("--hidden {h}"));
                }
                if let Some(a) = self.activation {
                    return conflict(format!("--activation {}", a.name()));
                }
            }
        }
        Ok(())
    }
}

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
                let t = bundle.teacher().ok_or_else(|| {
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
                        "{} holds a {} head but {kind} was requested",
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

    /// The head at this point for `bundle`, as `request` asks: at a head file, every setting given
    /// must agree with the file's head (nothing is silently replaced) and the rest come from the
    /// file.
    pub fn resolve_request(
        &self,
        request: &HeadRequest,
        bundle: &FeatureBundle,
        seed: u64,
    ) -> Result<HeadParams> {
        match self {
            ParamPoint::File(path) => {
                let found = HeadParams::load(path)?.kind();
                request.check_file(path, "--at", found)?;
                self.resolve(found, bundle, seed)
            }
            _ => self.resolve(request.kind()?, bundle, seed),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_given_must_agree_with_the_head_file() {
        let file = Path::new("ckpt/head.safetensors");
        let found = HeadKind::Mlp {
            hidden: 64,
            activation: Activation::Gelu,
        };
        let given = |name, hidden, activation| HeadRequest {
            name,
            hidden,
            activation,
        };
        // Nothing given, or only what agrees: the file's head.
        for ok in [
            given(None, None, None),
            given(Some(HeadName::Mlp), Some(64), Some(Activation::Gelu)),
        ] {
            ok.check_file(file, "--at", found).unwrap();
        }
        for (req, flag) in [
            (given(Some(HeadName::Mlp), Some(32), None), "--hidden 32"),
            (
                given(None, None, Some(Activation::Relu)),
                "--activation relu",
            ),
            (given(Some(HeadName::Linear), None, None), "--head linear"),
        ] {
            let e = req.check_file(file, "--at", found).unwrap_err().to_string();
            assert!(
                e.contains("ckpt/head.safetensors (--at) holds a mlp (hidden 64, gelu) head, but")
                    && e.contains(&format!("{flag} was given")),
                "{e}"
            );
        }
        let e = given(None, Some(8), None)
            .check_file(file, "--checkpoint", HeadKind::Linear)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(--checkpoint) holds a linear head, but --hidden 8"),
            "{e}"
        );
        assert_eq!(
            given(Some(HeadName::Mlp), None, None).kind().unwrap(),
            HeadKind::Mlp {
                hidden: DEFAULT_HIDDEN,
                activation: DEFAULT_ACTIVATION
            }
        );
        // Without a file, mlp settings for a linear head are refused, not dropped.
        let e = given(None, Some(8), None).kind().unwrap_err().to_string();
        assert!(e.contains("only applies to the mlp head"), "{e}");
    }
}
