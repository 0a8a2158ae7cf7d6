//! The logistic link shared by the simulator's teacher, the heads' scores and the gradient
//! engines: σ and the binary cross-entropy on logits, both stable for large |z|.

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
    let p = if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    (p, z.max(0.0) - z * y, e)
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
