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

#[cfg(test)]
mod tests {
    use super::*;

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
