//! The paper's theoretical quantities (§3 and App. F), written out so experiments can compare
//! them with measurements.

use statrs::function::beta::beta_reg;

/// Eq. 5: E[‖g‖² | ϕ] at the teacher, q(1 − q)‖ϕ‖².
pub fn eq5_expected_sq_norm(q: f64, phi_sq: f64) -> f64 {
    q * (1.0 - q) * phi_sq
}

/// Eq. 6: E[‖g̃‖² | ϕ] under symmetric label flips at rate η, [(1 − 4η)q(1 − q) + η]‖ϕ‖².
pub fn eq6_expected_sq_norm(q: f64, eta: f64, phi_sq: f64) -> f64 {
    ((1.0 - 4.0 * eta) * q * (1.0 - q) + eta) * phi_sq
}

/// Lemma 2 ingredients of a rollout with teacher probabilities `q`: θ = q̄(1 − q̄),
/// A = (1/n)Σ q(1 − q), and E[p̂(1 − p̂)] = θ − A/n.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixtureMoments {
    /// θ_x.
    pub theta: f64,
    /// A(x).
    pub a: f64,
    /// θ − A/n, the expected empirical mixture.
    pub expected_mixture: f64,
    /// n.
    pub n: usize,
}

/// Lemma 2 for one rollout.
pub fn lemma2(q: &[f64]) -> MixtureMoments {
    let n = q.len() as f64;
    let qbar = q.iter().sum::<f64>() / n;
    let theta = qbar * (1.0 - qbar);
    let a = q.iter().map(|v| v * (1.0 - v)).sum::<f64>() / n;
    MixtureMoments {
        theta,
        a,
        expected_mixture: theta - a / n,
        n: q.len(),
    }
}

/// Lemma 3: η_eff(k) = Pr(r < τ | K = k) = I_τ(a + k, b + N − k) under a Beta(a, b) prior on the
/// one-shot success rate r and K ~ Binomial(N, r).
pub fn eta_eff(k: u32, n: u32, a: f64, b: f64, tau: f64) -> f64 {
    beta_reg(a + k as f64, b + (n - k) as f64, tau)
}

/// Finding 6's rollout signal S(x) = (1/n)Σ_j (1 − 4η_j) q_j(1 − q_j)‖ϕ_j‖².
pub fn signal_s(q: &[f64], eta: &[f64], phi_sq: &[f64]) -> f64 {
    let n = q.len() as f64;
    q.iter()
        .zip(eta)
        .zip(phi_sq)
        .map(|((q, e), p)| (1.0 - 4.0 * e) * q * (1.0 - q) * p)
        .sum::<f64>()
        / n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_eff_matches_the_binomial_identity() {
        // Uniform prior: η_eff(k) = P(Binomial(17, τ) ≥ k + 1) (paper-facts §4.6 table).
        let cases = [
            (1, 0.1, 0.5182),
            (2, 0.1, 0.2382),
            (3, 0.1, 0.0826),
            (4, 0.1, 0.0221),
            (1, 0.2, 0.8818),
            (4, 0.2, 0.2418),
            (8, 0.2, 0.0026),
        ];
        for (k, tau, want) in cases {
            let got = eta_eff(k, 16, 1.0, 1.0, tau);
            assert!((got - want).abs() < 5e-5, "k = {k}, τ = {tau}: {got}");
        }
    }

    #[test]
    fn lemma2_sandwich() {
        let q = [0.9, 0.2, 0.5, 0.7];
        let m = lemma2(&q);
        assert!(m.a <= m.theta);
        assert!(m.expected_mixture <= m.theta && m.expected_mixture >= m.theta * (1.0 - 1.0 / 4.0));
        assert!(
            (eq6_expected_sq_norm(0.3, 0.0, 2.0) - eq5_expected_sq_norm(0.3, 2.0)).abs() < 1e-15
        );
    }
}
