//! The logistic link shared by the simulator's teacher, the heads' scores and the gradient
//! engines: σ and the binary cross-entropy on logits, both stable for large |z|.

/// 1/k! for k = 0..=13: the Taylor coefficients of e^r that the project's own exponentials
/// evaluate (the gradient engine's f64 one and the trainer's f32 one), each to its own degree.
pub const INV_FACTORIAL: [f64; 14] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5_040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];

/// Numerically stable BCE with logits: `softplus(z) − y·z`.
pub fn bce_with_logits(z: f64, y: f64) -> f64 {
    z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()
}

/// σ(z), stable for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// (σ(z), BCE(z, y)) from one exponential, exp(−|z|), which both share: the same bits as
/// [`sigmoid`] and [`bce_with_logits`] called apart (for a NaN z, a NaN of either sign).
pub fn sigmoid_and_bce(z: f64, y: f64) -> (f64, f64) {
    let (p, linear, e) = sigmoid_and_bce_parts(z, y);
    (p, linear + e.ln_1p())
}

/// σ(z) and BCE(z, y) before its logarithm: (σ(z), max(z, 0) − z y, e) with e = exp(−|z|), so
/// that BCE = max(z, 0) − z y + ln(1 + e). Both parts of the BCE are ≥ 0, which lets a caller sum
/// the logarithms of many steps as one logarithm of a product without cancellation.
#[inline(always)]
pub fn sigmoid_and_bce_parts(z: f64, y: f64) -> (f64, f64, f64) {
    let e = (-z.abs()).exp();
    let (p, linear) = sigmoid_and_linear_part(z, y, e);
    (p, linear, e)
}

/// (σ(z), max(z, 0) − z y) given e = exp(−|z|), for callers that compute e their own way.
#[inline(always)]
pub fn sigmoid_and_linear_part(z: f64, y: f64, e: f64) -> (f64, f64) {
    let p = if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    (p, z.max(0.0) - z * y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_exponential_changes_no_bit() {
        for &z in &[0.0, -0.0, 1e-300, -3.7, 2.5, 40.0, -745.5, 800.0] {
            for &y in &[0.0, 0.25, 1.0] {
                let (p, l) = sigmoid_and_bce(z, y);
                assert_eq!(p.to_bits(), sigmoid(z).to_bits(), "σ({z})");
                assert_eq!(
                    l.to_bits(),
                    bce_with_logits(z, y).to_bits(),
                    "bce({z}, {y})"
                );
            }
        }
        // A NaN logit stays NaN (its sign bit may differ, which no caller can observe).
        let (p, l) = sigmoid_and_bce(f64::NAN, 1.0);
        assert!(p.is_nan() && l.is_nan());
    }

    #[test]
    fn bce_matches_naive_form() {
        for &(z, y) in &[(0.3, 1.0), (-2.0, 0.0), (5.0, 0.25)] {
            let s = sigmoid(z);
            let naive = -(y * s.ln() + (1.0 - y) * (1.0 - s).ln());
            assert!((bce_with_logits(z, y) - naive).abs() < 1e-12);
        }
        assert!(bce_with_logits(800.0, 1.0).abs() < 1e-12);
        assert!((bce_with_logits(-800.0, 1.0) - 800.0).abs() < 1e-9);
    }
}
