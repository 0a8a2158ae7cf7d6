//! The MPRM training loss: binary cross-entropy on step logits, with the reduction made explicit.
//!
//! The reference trains with a 2-way cross-entropy at every `<prm>` position, equal to BCE on
//! the logit difference, **averaged over the positions of a micro-batch**; the optimiser step
//! then averages the micro-batch losses of one global batch (gradient accumulation). The paper
//! writes the loss as a **per-rollout sum**. Both are weighted sums of per-step BCE, so one global
//! batch is computed in a single pass with per-step weights:
//!
//! * `micro-batch-mean`: step m of micro-batch k (of K) gets `1 / (K · M_k)`, M_k its steps;
//! * `rollout-sum`: every step gets `1 / R`, R the rollouts in the global batch (each rollout
//!   contributes the sum over its steps; rollouts are averaged).
//!
//! Micro-batches are consecutive runs of `micro_batch` rollouts in the (shuffled) batch order,
//! so the micro-batch size changes the weighting but not the cost.

use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;

use crate::error::{Error, Result};
use crate::fused_ops::FusedOps;

/// How per-step losses are combined into the loss of one optimiser step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossReduction {
    /// Mean over each micro-batch's steps, then mean over micro-batches (the reference code).
    #[default]
    MicroBatchMean,
    /// Sum over each rollout's steps, then mean over rollouts (the paper's formula).
    RolloutSum,
}

impl std::str::FromStr for LossReduction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "micro-batch-mean" => Ok(LossReduction::MicroBatchMean),
            "rollout-sum" => Ok(LossReduction::RolloutSum),
            _ => Err(Error::invalid(format!(
                "unknown loss reduction `{s}`: expected micro-batch-mean or rollout-sum"
            ))),
        }
    }
}

/// Per-step weights for a global batch whose rollouts have `lengths` steps (in batch order).
pub fn step_weights(reduction: LossReduction, lengths: &[usize], micro_batch: usize) -> Vec<f32> {
    let n_steps: usize = lengths.iter().sum();
    let mut w = Vec::with_capacity(n_steps);
    match reduction {
        LossReduction::RolloutSum => {
            let each = 1.0 / lengths.len() as f64;
            w.resize(n_steps, each as f32);
        }
        LossReduction::MicroBatchMean => {
            let micro_batch = micro_batch.max(1);
            let k = lengths.len().div_ceil(micro_batch) as f64;
            for chunk in lengths.chunks(micro_batch) {
                let m: usize = chunk.iter().sum();
                // An all-empty micro-batch would be 0/0 in the reference; it has no steps to weigh.
                let each = if m > 0 { 1.0 / (k * m as f64) } else { 0.0 };
                w.extend(std::iter::repeat_n(each as f32, m));
            }
        }
    }
    w
}

/// Numerically stable BCE-with-logits per step: `max(z, 0) − z·y + ln(1 + e^{−|z|})`, [S].
pub fn bce_with_logits<B: Backend>(logits: Tensor<B, 1>, targets: Tensor<B, 1>) -> Tensor<B, 1> {
    let softplus_tail = logits.clone().abs().neg().exp().log1p();
    relu(logits.clone()) - logits * targets + softplus_tail
}

/// `Σ_m w_m · BCE(z_m, y_m)`, a one-element tensor, whose gradient in z is `w ⊙ (σ(z) − y)`.
///
/// One autodiff node ([`crate::fused_ops::weighted_bce`]): `z` feeds a single node, which keeps
/// training reproducible (Burn's autodiff adds the gradient contributions of a tensor used by
/// three or more ops in an order that changes from process to process).
pub fn weighted_bce<B: FusedOps>(
    logits: Tensor<B, 1>,
    targets: Tensor<B, 1>,
    weights: Tensor<B, 1>,
) -> Tensor<B, 1> {
    crate::fused_ops::weighted_bce(logits, targets, weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    type B = NdArray<f32>;

    fn t(v: &[f32]) -> Tensor<B, 1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
    }

    fn bce(z: f64, y: f64) -> f64 {
        let p = 1.0 / (1.0 + (-z).exp());
        -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
    }

    #[test]
    fn reductions_match_hand_computation() {
        // Rollouts of 3, 1 and 2 steps; micro-batches of 2 rollouts → {3+1 steps}, {2 steps}.
        let lengths = [3, 1, 2];
        let z = [0.5f32, -1.0, 2.0, 0.0, -0.3, 1.5];
        let y = [1.0f32, 0.0, 1.0, 1.0, 0.0, 0.25];
        let l: Vec<f64> = z
            .iter()
            .zip(&y)
            .map(|(&z, &y)| bce(z as f64, y as f64))
            .collect();

        let mb = step_weights(LossReduction::MicroBatchMean, &lengths, 2);
        let want_mb = ((l[0] + l[1] + l[2] + l[3]) / 4.0 + (l[4] + l[5]) / 2.0) / 2.0;
        let got_mb: f32 = weighted_bce(t(&z), t(&y), t(&mb)).into_scalar();
        assert!(
            (got_mb as f64 - want_mb).abs() < 1e-6,
            "{got_mb} vs {want_mb}"
        );

        let rs = step_weights(LossReduction::RolloutSum, &lengths, 2);
        let want_rs = ((l[0] + l[1] + l[2]) + l[3] + (l[4] + l[5])) / 3.0;
        let got_rs: f32 = weighted_bce(t(&z), t(&y), t(&rs)).into_scalar();
        assert!(
            (got_rs as f64 - want_rs).abs() < 1e-6,
            "{got_rs} vs {want_rs}"
        );

        // One rollout per micro-batch: the mean of per-rollout means.
        let per = step_weights(LossReduction::MicroBatchMean, &lengths, 1);
        let want = ((l[0] + l[1] + l[2]) / 3.0 + l[3] + (l[4] + l[5]) / 2.0) / 3.0;
        let got: f32 = weighted_bce(t(&z), t(&y), t(&per)).into_scalar();
        assert!((got as f64 - want).abs() < 1e-6);
    }

    #[test]
    fn gradient_is_weighted_sigmoid_minus_target() {
        use burn::backend::Autodiff;
        type A = Autodiff<B>;
        let dev = Default::default();
        let z = [0.5f32, -2.0, 8.0, -8.0];
        let y = [1.0f32, 0.25, 0.0, 1.0];
        let w = [0.5f32, 0.25, 0.125, 1.0];
        let v = |x: &[f32]| Tensor::<A, 1>::from_data(TensorData::new(x.to_vec(), [x.len()]), &dev);
        let zt = v(&z).require_grad();
        let loss = weighted_bce(zt.clone(), v(&y), v(&w));
        let value: f32 = loss.clone().into_scalar();
        let want: f64 = (0..4)
            .map(|i| w[i] as f64 * bce(z[i] as f64, y[i] as f64))
            .sum();
        assert!((value as f64 - want).abs() < 1e-5, "{value} vs {want}");
        let g: Vec<f32> = zt
            .grad(&loss.backward())
            .unwrap()
            .into_data()
            .into_vec()
            .unwrap();
        for i in 0..4 {
            let s = 1.0 / (1.0 + (-(z[i] as f64)).exp());
            let want = w[i] as f64 * (s - y[i] as f64);
            assert!(
                (g[i] as f64 - want).abs() < 1e-6,
                "step {i}: {} vs {want}",
                g[i]
            );
        }
    }

    #[test]
    fn bce_is_stable_for_large_logits() {
        let z = [80.0f32, -80.0, 80.0];
        let y = [1.0f32, 0.0, 0.0];
        let v: Vec<f32> = bce_with_logits(t(&z), t(&y))
            .into_data()
            .into_vec()
            .unwrap();
        assert!(v[0] >= 0.0 && v[0] < 1e-30 && v[1] < 1e-30);
        assert_eq!(v[2], 80.0);
    }
}
