//! Label counts of one rollout as BIS counts them: how mixed its labels are and how reliable its
//! positive steps are.
//!
//! These are facts about the data, used by selection (BIS and its baselines), by the gradient
//! tables (which group gradient norms by them) and by the theory checks, so they live here, below
//! all three.

/// Label counts of one rollout under the BIS convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelStats {
    /// Steps n.
    pub n: usize,
    /// Steps with score > 0.
    pub n_pos: usize,
    /// n_pos / n.
    pub p_pos: f64,
    /// Mean score of the positive steps; 1 when there are none.
    pub reliability: f64,
}

impl LabelStats {
    /// Computes the statistics of a non-empty score vector.
    pub fn of(scores: &[f64]) -> Self {
        let n = scores.len();
        let mut n_pos = 0usize;
        let mut acc = 0.0f64;
        for &s in scores {
            if s > 0.0 {
                n_pos += 1;
                acc += s;
            }
        }
        let p_pos = n_pos as f64 / n as f64;
        let reliability = if n_pos > 0 { acc / n_pos as f64 } else { 1.0 };
        LabelStats {
            n,
            n_pos,
            p_pos,
            reliability,
        }
    }

    /// p_pos(1 − p_pos), the label-mixture term.
    pub fn mixture(&self) -> f64 {
        self.p_pos * (1.0 - self.p_pos)
    }

    /// True when the rollout has both a positive and a negative step.
    pub fn is_mixed(&self) -> bool {
        self.n_pos > 0 && self.n_pos < self.n
    }

    /// BIS with smoothing `alpha`.
    pub fn bis(&self, alpha: f64) -> f64 {
        (self.p_pos * (1.0 - self.p_pos) + alpha) * self.reliability
    }
}
