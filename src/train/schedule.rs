//! The learning-rate schedule: linear warm-up, then cosine decay to 0, scaled to the run length.
//!
//! This is Hugging Face's `get_cosine_schedule_with_warmup`, which the reference trainer uses:
//! with T optimiser steps and W = ⌈T · warmup_fraction⌉ warm-up steps, update s (0-based) uses
//!
//! ```text
//! lr(s) = peak · s / W                                   for s < W
//! lr(s) = peak · ½ (1 + cos(π (s − W) / (T − W)))        otherwise
//! ```
//!
//! so the very first update has learning rate 0 whenever there is a warm-up, and the last one is
//! small but not 0. T = ⌈N / global_batch⌉ × epochs, so a 10% subset gets a 10× shorter schedule,
//! as in the paper.

/// Warm-up + cosine schedule over a fixed number of steps.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    /// Peak learning rate.
    pub peak: f64,
    /// T, the number of optimiser steps.
    pub total_steps: usize,
    /// W, the number of warm-up steps.
    pub warmup_steps: usize,
}

impl Schedule {
    /// The schedule for `total_steps` updates with `warmup_fraction` of them warming up.
    pub fn new(peak: f64, total_steps: usize, warmup_fraction: f64) -> Self {
        Schedule {
            peak,
            total_steps,
            warmup_steps: (total_steps as f64 * warmup_fraction).ceil() as usize,
        }
    }

    /// Learning rate of update `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        let (s, w, t) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if step < self.warmup_steps {
            return self.peak * s / w.max(1.0);
        }
        let progress = (s - w) / (t - w).max(1.0);
        self.peak * (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
    }
}

/// Number of optimiser steps for `n` rollouts: ⌈n / global_batch⌉ per epoch.
pub fn total_steps(n: usize, global_batch: usize, epochs: usize) -> usize {
    n.div_ceil(global_batch) * epochs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_and_cosine_boundaries() {
        // T = 10, 10% warm-up → W = 1.
        let s = Schedule::new(2.0, 10, 0.1);
        assert_eq!(s.warmup_steps, 1);
        assert_eq!(s.lr(0), 0.0);
        assert_eq!(s.lr(1), 2.0);
        // progress 1/3 → ½(1 + ½) = 0.75; progress 2/3 → 0.25.
        assert!((s.lr(4) - 1.5).abs() < 1e-12);
        assert!((s.lr(7) - 0.5).abs() < 1e-12);
        // last update: progress 8/9.
        let last = 0.5 * (1.0 + (std::f64::consts::PI * 8.0 / 9.0).cos());
        assert!((s.lr(9) - 2.0 * last).abs() < 1e-12);
        // The step after the end would be exactly 0.
        assert!(s.lr(10).abs() < 1e-12);
    }

    #[test]
    fn warmup_is_linear_and_rounds_up() {
        // T = 56 (BIS-5% of the paper), 5% → ⌈2.8⌉ = 3.
        let s = Schedule::new(1.0, 56, 0.05);
        assert_eq!(s.warmup_steps, 3);
        assert_eq!(s.lr(1), 1.0 / 3.0);
        assert_eq!(s.lr(2), 2.0 / 3.0);
        assert_eq!(s.lr(3), 1.0);
        // No warm-up: the first update already uses the peak.
        let flat = Schedule::new(1.0, 4, 0.0);
        assert_eq!(flat.lr(0), 1.0);
    }

    #[test]
    fn steps_scale_with_the_subset() {
        assert_eq!(total_steps(565_096, 512, 1), 1104);
        assert_eq!(total_steps(141_274, 512, 1), 276);
        assert_eq!(total_steps(512, 512, 3), 3);
        assert_eq!(total_steps(513, 512, 1), 2);
    }
}
