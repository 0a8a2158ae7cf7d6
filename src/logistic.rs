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
    let e = (-z.abs()).exp();
    let p = if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    (p, z.max(0.0) - z * y + e.ln_1p())
}

/// [`sigmoid_and_bce`] with ln(1 + e) in place of log1p(e): the same σ(z), and a loss within
/// 2⁻⁵⁰ + 2⁻⁵²·BCE of it (1 + e ∈ (1, 2] and its ln are each rounded once, and the final sum
/// may round the other way), at about a third of log1p's cost. For callers whose other errors
/// are far larger (f32 sums).
pub fn sigmoid_and_bce_via_ln(z: f64, y: f64) -> (f64, f64) {
    let e = (-z.abs()).exp();
    let one_e = 1.0 + e;
    let p = if z >= 0.0 { 1.0 / one_e } else { e / one_e };
    (p, z.max(0.0) - z * y + one_e.ln())
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
    fn the_ln_form_keeps_sigma_and_stays_within_its_bound() {
        let mut worst: f64 = 0.0;
        for i in 0..20_001 {
            let z = -60.0 + i as f64 * 0.006;
            for &y in &[0.0, 0.5, 1.0] {
                let (p, l) = sigmoid_and_bce(z, y);
                let (q, m) = sigmoid_and_bce_via_ln(z, y);
                assert_eq!(p.to_bits(), q.to_bits(), "σ({z})");
                worst = worst.max((l - m).abs() / (2f64.powi(-50) + 2f64.powi(-52) * l));
            }
        }
        assert!(worst <= 1.0, "{worst:e} of the bound");
        // The bound has room to fail: log1p and ln(1 + e) do differ.
        assert!(worst > 0.0);
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
