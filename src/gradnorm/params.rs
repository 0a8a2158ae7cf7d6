//! A head's parameters as one flat vector, in the order documented in [`super`], and its
//! parameter groups.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::head::{HeadKind, HeadParams, LinearHead, MlpHead};

/// Parameter groups of `head` with their ranges in the flattened parameter vector.
pub fn param_groups(head: &HeadParams) -> Vec<(&'static str, Range<usize>)> {
    match head {
        HeadParams::Linear(h) => {
            let d = h.w.len();
            vec![("w", 0..d), ("b", d..d + 1)]
        }
        HeadParams::Mlp(h) => {
            let (hd, hh) = (h.w1.len(), h.hidden());
            vec![
                ("w1", 0..hd),
                ("b1", hd..hd + hh),
                ("w2", hd + hh..hd + 2 * hh),
                ("b2", hd + 2 * hh..hd + 2 * hh + 1),
            ]
        }
    }
}

/// The head's parameters in the flattened order documented at the top of this module.
pub fn flatten_params(head: &HeadParams) -> Vec<f32> {
    match head {
        HeadParams::Linear(h) => h.w.iter().copied().chain([h.b]).collect(),
        HeadParams::Mlp(h) => {
            h.w1.iter()
                .chain(&h.b1)
                .chain(&h.w2)
                .copied()
                .chain([h.b2])
                .collect()
        }
    }
}

/// Rebuilds a head of `kind` and input dimension `dim` from flattened parameters.
pub fn head_from_flat(kind: HeadKind, dim: usize, flat: &[f32]) -> Result<HeadParams> {
    let expected = match kind {
        HeadKind::Linear => dim + 1,
        HeadKind::Mlp { hidden, .. } => hidden * dim + 2 * hidden + 1,
    };
    if flat.len() != expected {
        return Err(Error::invalid(format!(
            "{} flattened parameters; a {kind:?} head with d = {dim} has {expected}",
            flat.len()
        )));
    }
    Ok(match kind {
        HeadKind::Linear => HeadParams::Linear(LinearHead {
            w: flat[..dim].to_vec(),
            b: flat[dim],
        }),
        HeadKind::Mlp { hidden, activation } => {
            let hd = hidden * dim;
            HeadParams::Mlp(MlpHead {
                w1: flat[..hd].to_vec(),
                b1: flat[hd..hd + hidden].to_vec(),
                w2: flat[hd + hidden..hd + 2 * hidden].to_vec(),
                b2: flat[hd + 2 * hidden],
                activation,
                dim,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::Activation;

    #[test]
    fn flatten_round_trips() {
        for kind in [
            HeadKind::Linear,
            HeadKind::Mlp {
                hidden: 3,
                activation: Activation::Gelu,
            },
        ] {
            let head = HeadParams::init(kind, 5, 3);
            let flat = flatten_params(&head);
            assert_eq!(flat.len(), head.n_params());
            assert_eq!(head_from_flat(kind, 5, &flat).unwrap(), head);
            let groups = param_groups(&head);
            assert_eq!(groups.last().unwrap().1.end, head.n_params());
        }
        assert!(head_from_flat(HeadKind::Linear, 5, &[0.0; 5]).is_err());
    }
}
