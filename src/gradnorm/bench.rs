//! Throughput measurements for `mprm bench`: the gradient pass itself, and the memory
//! bandwidth it should be compared with on the same machine.
//!
//! Timing never happens in tests; these functions exist so the numbers reported for the engines
//! come from one documented procedure (median of repeats after a warm-up).

use std::time::Instant;

use rayon::prelude::*;

use crate::device::Device;
use crate::error::Result;

use super::{GradInput, GradNormOptions, engine};

/// One kernel's (or pass's) timing on a resident workload.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KernelTiming {
    /// Kernel symbol, or a description of the timed span.
    pub name: String,
    /// Median over the repeats, milliseconds.
    pub median_ms: f64,
    /// Fastest repeat, milliseconds.
    pub min_ms: f64,
    /// Feature bytes the workload reads once.
    pub feature_bytes: usize,
    /// Rollouts in the workload.
    pub rollouts: usize,
    /// Steps in the workload.
    pub steps: usize,
}

impl KernelTiming {
    /// Summarises the times of whole engine calls over `input` (every scored rollout's
    /// features counted as read once per call).
    pub fn whole_calls(name: String, samples: Vec<f64>, input: &GradInput<'_>) -> Self {
        let steps: usize = input.n_steps().iter().map(|&n| n as usize).sum();
        KernelTiming::from_samples(
            name,
            samples,
            steps * input.bundle.dim() * input.bundle.dtype().size(),
            input.len(),
            steps,
        )
    }

    /// Summarises raw samples (milliseconds).
    pub fn from_samples(
        name: String,
        mut samples_ms: Vec<f64>,
        feature_bytes: usize,
        rollouts: usize,
        steps: usize,
    ) -> Self {
        let min_ms = samples_ms.iter().copied().fold(f64::INFINITY, f64::min);
        KernelTiming {
            name,
            median_ms: median(&mut samples_ms),
            min_ms,
            feature_bytes,
            rollouts,
            steps,
        }
    }

    /// Feature bytes per second at the median time, in GB/s (10⁹ bytes).
    pub fn gb_per_s(&self) -> f64 {
        self.feature_bytes as f64 / (self.median_ms * 1e-3) / 1e9
    }

    /// Rollouts per second at the median time.
    pub fn rollouts_per_s(&self) -> f64 {
        self.rollouts as f64 / (self.median_ms * 1e-3)
    }
}

/// Median of `v` (sorted in place); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Wall-clock timing of whole [`super::GradNormEngine::rollout_stats`] calls (including result
/// assembly) on `device`: `warmup` untimed runs, then `repeats` timed ones.
pub fn time_engine(
    device: Device,
    input: &GradInput<'_>,
    opts: &GradNormOptions,
    warmup: usize,
    repeats: usize,
) -> Result<KernelTiming> {
    let eng = engine(device)?;
    let projection = opts.projection_matrix(input.head.n_params())?;
    let input = &super::engine::with_sums(device, *input, opts.accumulation)?;
    let mut samples = Vec::with_capacity(repeats);
    for run in 0..warmup + repeats.max(1) {
        let t = Instant::now();
        let stats = eng.rollout_stats(input, opts.reduction, projection.as_ref())?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        std::hint::black_box(&stats);
        if run >= warmup {
            samples.push(ms);
        }
    }
    Ok(KernelTiming::whole_calls(
        format!("{} rollout_stats", eng.device()),
        samples,
        input,
    ))
}

/// This machine's memory-read bandwidth in GB/s: a parallel sum over `bytes` bytes of f32 on all
/// rayon threads, median of `repeats` passes after one warm-up pass.
pub fn cpu_read_bandwidth(bytes: usize, repeats: usize) -> f64 {
    let data: Vec<f32> = (0..bytes / 4)
        .into_par_iter()
        .map(|i| (i % 7) as f32)
        .collect();
    let mut samples = Vec::with_capacity(repeats);
    for run in 0..=repeats.max(1) {
        let t = Instant::now();
        // Eight independent lanes per chunk keep the adds off the critical path, so the loop is
        // limited by loads, not by floating-point latency.
        let total: f32 = data
            .par_chunks(1 << 16)
            .map(|c| {
                let mut acc = [0.0f32; 8];
                for w in c.chunks_exact(8) {
                    for k in 0..8 {
                        acc[k] += w[k];
                    }
                }
                acc.iter().sum::<f32>()
            })
            .sum();
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(total);
        if run > 0 {
            samples.push(secs);
        }
    }
    (data.len() * 4) as f64 / median(&mut samples) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn timing_rates_follow_the_median() {
        let t = KernelTiming::from_samples("k".into(), vec![2.0, 1.0, 3.0], 2_000_000, 100, 500);
        assert_eq!(t.median_ms, 2.0);
        assert_eq!(t.min_ms, 1.0);
        assert!((t.gb_per_s() - 1.0).abs() < 1e-12);
        assert!((t.rollouts_per_s() - 50_000.0).abs() < 1e-9);
    }
}
