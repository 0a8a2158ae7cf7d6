//! The Balanced-Information Score, evaluated exactly as the reference script evaluates it.
//!
//! BIS(x) = (p_pos(1 − p_pos) + α) · R(x), with hard labels `s > 0`, p_pos = n_pos/n, and R the
//! mean score of the positive steps (1 when there are none). The float operations happen in the
//! reference's order — one division for p, a left-to-right sum for R, then
//! `(p * (1 - p) + α) * R` with no fused multiply-add — so scores, ties and therefore selections
//! agree bit for bit.

use crate::data::label_stats::LabelStats;

/// BIS of a non-empty score vector.
pub fn bis(scores: &[f64], alpha: f64) -> f64 {
    LabelStats::of(scores).bis(alpha)
}

/// Mean MC score of a non-empty score vector (left-to-right sum).
///
/// A NaN score counts as 0, as it counts as a negative step in BIS, so a ranking key is never NaN.
pub fn mean_mc(scores: &[f64]) -> f64 {
    scores
        .iter()
        .map(|&s| if s.is_nan() { 0.0 } else { s })
        .sum::<f64>()
        / scores.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vectors() {
        let cases: &[(&[f64], f64, Option<f64>)] = &[
            (
                &[0.875, 0.875, 0.9375, 0.875, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                0.25828124999999996,
                Some(0.39187500000000003),
            ),
            (
                &[0.5625, 0.6875, 0.6875, 0.0625, 0.0, 0.0, 0.0, 0.0],
                0.15,
                Some(0.225),
            ),
            (
                &[
                    0.0625, 0.0625, 0.0625, 0.0625, 0.0, 0.0625, 0.0625, 0.0, 0.0,
                ],
                0.01701388888888889,
                Some(0.026388888888888892),
            ),
            (&[1.0, 1.0, 1.0], 0.05, Some(0.2)),
            (&[0.0, 0.0], 0.05, Some(0.2)),
            (&[0.5, 0.0], 0.15, Some(0.225)),
            (&[0.0625, 0.0, 0.0, 0.0], 0.01484375, Some(0.02421875)),
            (
                &[1.0, 0.0625],
                0.026562500000000003,
                Some(0.10625000000000001),
            ),
            (
                &[0.9375, 0.0625, 0.0],
                0.13611111111111113,
                Some(0.21111111111111114),
            ),
            (&[0.75, 0.0], 0.22499999999999998, None),
            (&[0.875, 0.875], 0.043750000000000004, None),
        ];
        for &(scores, a05, a20) in cases {
            assert_eq!(bis(scores, 0.05), a05, "{scores:?} α = 0.05");
            if let Some(v) = a20 {
                assert_eq!(bis(scores, 0.2), v, "{scores:?} α = 0.2");
            }
        }
    }
}
