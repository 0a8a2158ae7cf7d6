//! Drawing one rollout: its latents, its steps' true correctness and MC annotation, and its step
//! features.
//!
//! The training corpus and the benchmark both go through [`simulate_rollout`], so the two share
//! one teacher and one notion of correctness; they differ only in their abilities and in what
//! they keep (MC scores for the corpus, true labels for the benchmark).

use half::bf16;
use rand_chacha::ChaCha8Rng;

use super::model::{
    MC_SAMPLES, ModelParams, Quadrature, Recovery, continuation_step_prob, intact_success_rate,
    step_correct_prob,
};
use super::numeric::normal_quantile;
use super::rng::{
    Stream, bench_stream, binomial_inverse, discrete_inverse, fill_normal, normal, permutation,
    stream, uniform,
};
use crate::data::features::FeatureDtype;
use crate::logistic::sigmoid;

/// The geometry of the step representations: the teacher direction and how nuisance is added.
///
/// ϕ = t·ŵ + clip(g), where t = (ℓ − b*)/‖w*‖ carries the teacher logit ℓ exactly and g (source
/// embedding + question embedding + step noise) is orthogonal to ŵ, with its norm clipped to the
/// nuisance bound. So ⟨w*, ϕ⟩ + b* = ℓ, and ‖ϕ‖ is bounded (assumption A1).
///
/// The nuisance scales are per coordinate, so the nuisance norm grows like √d while the signal
/// lives on one direction: as in a real hidden state, correctness is a small part of the
/// variance, and a student must average over many steps to find ŵ. (With the nuisance shrunk
/// to a vanishing share of ‖ϕ‖, a handful of steps reveal ŵ and every training subset scores
/// the same.)
#[derive(Debug, Clone)]
pub struct FeatureSpace {
    /// d.
    pub dim: usize,
    /// Element type the features are stored in (rounding is applied before q* is computed).
    pub dtype: FeatureDtype,
    /// Unit teacher direction ŵ.
    pub w_hat: Vec<f32>,
    /// w* = ‖w*‖ ŵ.
    pub w_star: Vec<f32>,
    /// b*.
    pub b_star: f32,
    /// Unit direction û ⊥ ŵ that carries how hard the rest of the solution is (present only
    /// when the model's `progress_scale` is positive).
    pub progress_dir: Option<Vec<f32>>,
    teacher_norm: f64,
    step_scale: f32,
    bound: f32,
}

impl FeatureSpace {
    /// Draws the teacher direction from `rng`.
    pub fn new(
        dim: usize,
        dtype: FeatureDtype,
        params: &ModelParams,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let mut w = vec![0.0f32; dim];
        loop {
            fill_normal(rng, &mut w, 1.0);
            let norm = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            if norm > 0.0 {
                w.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
                break;
            }
        }
        let w_star = w
            .iter()
            .map(|v| (*v as f64 * params.teacher_norm) as f32)
            .collect();
        // Drawn after ŵ and only when used, so a model without it consumes the teacher stream
        // exactly as before (the v1 preset stays byte-identical).
        let progress_dir = (params.progress_scale > 0.0 && dim > 1).then(|| {
            loop {
                let mut u = vec![0.0f32; dim];
                fill_normal(rng, &mut u, 1.0);
                let along: f32 = u.iter().zip(&w).map(|(a, b)| a * b).sum();
                u.iter_mut().zip(&w).for_each(|(x, w)| *x -= along * w);
                let norm = u.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
                if norm > 1e-6 {
                    u.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
                    break u;
                }
            }
        });
        FeatureSpace {
            progress_dir,
            dim,
            dtype,
            w_hat: w,
            w_star,
            b_star: params.teacher_bias as f32,
            teacher_norm: params.teacher_norm,
            step_scale: params.step_scale as f32,
            bound: (params.nuisance_bound * (dim as f64).sqrt()) as f32,
        }
    }

    /// An isotropic N(0, scale²) vector (per coordinate) with its component along ŵ removed.
    pub fn embedding(&self, scale: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dim];
        fill_normal(rng, &mut v, scale as f32);
        self.remove_teacher_component(&mut v);
        v
    }

    fn remove_teacher_component(&self, v: &mut [f32]) {
        let along: f32 = v.iter().zip(&self.w_hat).map(|(a, b)| a * b).sum();
        v.iter_mut()
            .zip(&self.w_hat)
            .for_each(|(x, w)| *x -= along * w);
    }

    /// Writes the features of one step with teacher logit `logit` into `out` (length d), on top
    /// of the rollout's nuisance `base` (orthogonal to ŵ), plus `progress`·û when the space has
    /// a progress direction, rounded to the storage dtype.
    /// Returns ⟨w*, ϕ⟩ + b* of the stored vector.
    pub fn step(
        &self,
        logit: f64,
        progress: f64,
        base: &[f32],
        rng: &mut ChaCha8Rng,
        out: &mut [f32],
    ) -> f64 {
        fill_normal(rng, out, self.step_scale);
        self.remove_teacher_component(out);
        let mut norm2 = 0.0f32;
        for (x, b) in out.iter_mut().zip(base) {
            *x += b;
            norm2 += *x * *x;
        }
        let norm = norm2.sqrt();
        let shrink = if norm > self.bound {
            self.bound / norm
        } else {
            1.0
        };
        if let Some(u) = &self.progress_dir {
            let c = progress as f32 / shrink;
            out.iter_mut().zip(u).for_each(|(x, u)| *x += c * u);
        }
        let t = ((logit - self.b_star as f64) / self.teacher_norm) as f32;
        let mut dot = 0.0f64;
        for ((x, w), ws) in out.iter_mut().zip(&self.w_hat).zip(&self.w_star) {
            let mut v = t * w + shrink * *x;
            if self.dtype == FeatureDtype::Bf16 {
                v = bf16::from_f32(v).to_f32();
            }
            *x = v;
            dot += *ws as f64 * v as f64;
        }
        dot + self.b_star as f64
    }
}

/// Latin-hypercube strata of one source: each rollout-level latent of rollout i is drawn from
/// its own 1/N-wide slice of the unit interval, so that even a few dozen rollouts reproduce the
/// source's step-count and ability distributions closely.
#[derive(Debug, Clone)]
pub struct Strata {
    steps: Vec<u32>,
    capability: Vec<u32>,
    recovery: Vec<u32>,
    early_stop: Vec<u32>,
    question: Vec<u32>,
}

impl Strata {
    /// Strata for `rollouts` rollouts in `questions` questions, drawn from `rng`.
    pub fn new(rollouts: usize, questions: usize, rng: &mut ChaCha8Rng) -> Self {
        Strata {
            steps: permutation(rng, rollouts),
            capability: permutation(rng, rollouts),
            recovery: permutation(rng, rollouts),
            early_stop: permutation(rng, rollouts),
            question: permutation(rng, questions),
        }
    }

    fn pick(perm: &[u32], i: usize, jitter: f64) -> f64 {
        (perm[i] as f64 + jitter) / perm.len() as f64
    }

    /// The stratified uniform for question `q`'s difficulty.
    pub fn question_uniform(&self, q: usize, jitter: f64) -> f64 {
        Self::pick(&self.question, q, jitter)
    }
}

/// What fixes one source's rollouts apart from per-rollout randomness.
#[derive(Debug, Clone, Copy)]
pub struct SourceModel<'a> {
    /// Mean ability μ_s.
    pub ability: f64,
    /// E\[ρ\] of the source (enters the intact-prefix success rate).
    pub recovery_mean: f64,
    /// Answer-kind bonus of ρ's logit.
    pub recovery_bonus: f64,
    /// P(n = k).
    pub steps_pmf: &'a [f64],
}

/// A rollout's own latents, drawn from its stream with the source's strata.
#[derive(Debug, Clone, Copy)]
pub struct RolloutLatents {
    /// Steps.
    pub n: usize,
    /// Standard-normal capability draw.
    pub capability: f64,
    /// ρ: success rate of a continuation after the first error.
    pub recovery: f64,
    /// Whether the annotation stops after the first zero score.
    pub early_stop: bool,
}

/// Draws rollout `i`'s latents; consumes the first four uniforms of its stream, so a caller that
/// only needs `n` (to lay out the output) gets the same value as the full simulation.
pub fn draw_latents(
    source: &SourceModel<'_>,
    strata: &Strata,
    i: usize,
    recovery: Recovery,
    early_stop: f64,
    rng: &mut ChaCha8Rng,
) -> RolloutLatents {
    let u_n = Strata::pick(&strata.steps, i, uniform(rng));
    let u_cap = Strata::pick(&strata.capability, i, uniform(rng));
    let u_rec = Strata::pick(&strata.recovery, i, uniform(rng));
    let u_es = Strata::pick(&strata.early_stop, i, uniform(rng));
    RolloutLatents {
        n: discrete_inverse(source.steps_pmf, u_n).max(1),
        capability: normal_quantile(u_cap.clamp(1e-12, 1.0 - 1e-12)),
        recovery: recovery.rate(
            source.recovery_bonus,
            normal_quantile(u_rec.clamp(1e-12, 1.0 - 1e-12)),
        ),
        early_stop: u_es < early_stop,
    }
}

/// One simulated step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepDraw {
    /// Teacher probability q* = σ(⟨w*, ϕ⟩ + b*) of the stored features.
    pub teacher_q: f32,
    /// True correctness of this step.
    pub correct: bool,
    /// Whether every step up to and including this one is correct.
    pub prefix_correct: bool,
    /// One-shot success rate r of a continuation from this prefix.
    pub success_rate: f32,
    /// Successful continuations K (0 when not sampled).
    pub mc_correct: u32,
    /// Continuations sampled (16, or 0 after an early stop).
    pub mc_total: u32,
}

impl StepDraw {
    /// The MC score K/16.
    pub fn score(&self) -> f64 {
        self.mc_correct as f64 / MC_SAMPLES as f64
    }
}

/// A simulated rollout.
#[derive(Debug, Clone)]
pub struct RolloutDraw {
    /// Its steps.
    pub steps: Vec<StepDraw>,
    /// A continuation from the complete (possibly wrong) solution still reaches the right
    /// answer: used for the benchmark's `final_correct`.
    pub recovered: bool,
}

impl RolloutDraw {
    /// True when every step is correct.
    pub fn all_correct(&self) -> bool {
        self.steps.last().is_some_and(|s| s.prefix_correct)
    }
}

/// Where a step's features go: the space, the rollout's nuisance, the feature stream and a
/// row-major `n × d` output block.
pub struct FeatureSink<'a> {
    /// Teacher geometry.
    pub space: &'a FeatureSpace,
    /// Source + question embedding (orthogonal to ŵ).
    pub base: &'a [f32],
    /// The rollout's feature stream.
    pub rng: ChaCha8Rng,
    /// Output rows.
    pub out: &'a mut [f32],
}

/// Simulates one rollout with ability `ability` (source mean + question + capability).
///
/// Per step j: the teacher logit is ℓ = clip(ability − δ·[an earlier step was wrong] + σ·ζ);
/// the features carry ℓ; the step is correct with probability σ(ℓ) (drawn against the
/// pre-rounding logit, so annotations do not depend on the feature dtype); the MC success rate is
/// the intact-prefix value while every step so far is correct and the rollout's ρ afterwards;
/// K ~ Binomial(16, r), forced to 0 (unsampled) after a zero when the rollout early-stops.
pub fn simulate_rollout(
    latents: &RolloutLatents,
    ability: f64,
    source: &SourceModel<'_>,
    params: &ModelParams,
    quad: &Quadrature,
    rng: &mut ChaCha8Rng,
    mut sink: Option<FeatureSink<'_>>,
) -> RolloutDraw {
    let n = latents.n;
    let p_correct = step_correct_prob(ability, params, quad);
    // Drawn only when some rollouts are hard to continue, so v1 streams are untouched.
    let penalty =
        if params.hard_continuation_share > 0.0 && uniform(rng) < params.hard_continuation_share {
            params.continuation_penalty
        } else {
            0.0
        };
    let p_continue = continuation_step_prob(ability, p_correct, penalty, params, quad);
    let recovered = uniform(rng) < latents.recovery;
    let mut steps = Vec::with_capacity(n);
    let mut intact = true;
    let mut stopped = false;
    for j in 0..n {
        let zeta = normal(rng);
        let u_correct = uniform(rng);
        let u_mc = uniform(rng);
        let center = if intact {
            ability
        } else {
            ability - params.error_penalty
        };
        let logit = params.clip_logit(center + params.sigma_step * zeta);
        let stored_logit = match sink.as_mut() {
            Some(s) => {
                let d = s.space.dim;
                let progress = params.progress_scale
                    * progress_logit(intact_success_rate(
                        p_continue,
                        n - 1 - j,
                        source.recovery_mean,
                    ));
                s.space.step(
                    logit,
                    progress,
                    s.base,
                    &mut s.rng,
                    &mut s.out[j * d..(j + 1) * d],
                )
            }
            None => logit,
        };
        let correct = u_correct < sigmoid(logit);
        intact &= correct;
        let rate = if intact {
            intact_success_rate(p_continue, n - 1 - j, source.recovery_mean)
        } else {
            latents.recovery
        };
        let (mc_correct, mc_total) = if stopped {
            (0, 0)
        } else {
            (binomial_inverse(MC_SAMPLES, rate, u_mc), MC_SAMPLES)
        };
        if latents.early_stop && mc_correct == 0 {
            stopped = true;
        }
        steps.push(StepDraw {
            teacher_q: sigmoid(stored_logit) as f32,
            correct,
            prefix_correct: intact,
            success_rate: rate as f32,
            mc_correct,
            mc_total,
        });
    }
    RolloutDraw { steps, recovered }
}

/// The progress coordinate of a step before scaling: the logit of the one-shot success rate a
/// continuation would have from this point if the prefix were intact, clipped to ±6 (the last
/// step's rate is 1). It depends on the rollout's ability and the steps left, never on whether
/// the prefix is actually intact, so it tells a student how hard the rest is, not whether the
/// step is right.
pub fn progress_logit(rate: f64) -> f64 {
    let r = rate.clamp(2.5e-3, 1.0 - 2.5e-3);
    (r / (1.0 - r)).ln()
}

/// Draws the questions and rollouts of one source: the one place that turns stream keys,
/// strata and the source model into simulated rollouts, for the corpus, the benchmark and
/// write-free statistics alike.
pub struct SourceSampler<'a> {
    /// Seed of every stream.
    pub seed: u64,
    /// Source key of the streams (its row in the preset table).
    pub key: u64,
    /// Benchmark sources draw from the benchmark streams.
    pub bench: bool,
    /// The source's fitted parameters.
    pub model: SourceModel<'a>,
    /// Its strata.
    pub strata: &'a Strata,
    /// Model hyper-parameters.
    pub params: &'a ModelParams,
    /// Quadrature for the intact-prefix success rate.
    pub quad: &'a Quadrature,
    /// The post-error success-rate distribution.
    pub recovery: Recovery,
    /// Early-stop probability.
    pub early_stop: f64,
}

impl SourceSampler<'_> {
    /// The stream `kind` of item `index` of this source.
    pub fn rng(&self, kind: Stream, index: usize) -> ChaCha8Rng {
        if self.bench {
            bench_stream(self.seed, kind, self.key, index as u64)
        } else {
            stream(self.seed, kind, self.key, index as u64)
        }
    }

    /// Question `q`'s stream, already advanced past its difficulty draw; returns the standard
    /// normal difficulty too. Its text is drawn from the same stream afterwards.
    pub fn question(&self, q: usize) -> (f64, ChaCha8Rng) {
        let mut rng = self.rng(Stream::Question, q);
        let u = self.strata.question_uniform(q, uniform(&mut rng));
        (normal_quantile(u.clamp(1e-12, 1.0 - 1e-12)), rng)
    }

    /// Simulates rollout `i` of a question with standard-normal difficulty `difficulty`;
    /// returns its latents, its ability and the draw.
    pub fn rollout(
        &self,
        i: usize,
        difficulty: f64,
        sink: Option<FeatureSink<'_>>,
    ) -> (RolloutLatents, f64, RolloutDraw) {
        let mut rng = self.rng(Stream::Rollout, i);
        let latents = self.latents(i, &mut rng);
        let ability = self.model.ability
            + self.params.sigma_question * difficulty
            + self.params.sigma_capability * latents.capability;
        let draw = simulate_rollout(
            &latents,
            ability,
            &self.model,
            self.params,
            self.quad,
            &mut rng,
            sink,
        );
        (latents, ability, draw)
    }

    /// Rollout `i`'s step count (the first draw of its stream), without simulating it.
    pub fn steps(&self, i: usize) -> usize {
        self.latents(i, &mut self.rng(Stream::Rollout, i)).n
    }

    fn latents(&self, i: usize, rng: &mut ChaCha8Rng) -> RolloutLatents {
        draw_latents(
            &self.model,
            self.strata,
            i,
            self.recovery,
            self.early_stop,
            rng,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::rng::{Stream, stream};

    fn space(dim: usize, dtype: FeatureDtype) -> FeatureSpace {
        FeatureSpace::new(
            dim,
            dtype,
            &ModelParams::default(),
            &mut stream(1, Stream::Teacher, 0, 0),
        )
    }

    #[test]
    fn features_carry_the_teacher_logit_and_stay_bounded() {
        let params = ModelParams::default();
        for (dim, dtype, tol) in [
            (64, FeatureDtype::F32, 1e-4),
            (8, FeatureDtype::F32, 1e-4),
            (64, FeatureDtype::Bf16, 0.15),
        ] {
            let s = space(dim, dtype);
            let norm: f64 = s.w_star.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
            assert!((norm.sqrt() - params.teacher_norm).abs() < 1e-5);
            let mut rng = stream(1, Stream::Features, 0, 0);
            let base = s.embedding(0.8, &mut rng);
            let along: f32 = base.iter().zip(&s.w_hat).map(|(a, b)| a * b).sum();
            assert!(along.abs() < 1e-5);
            let mut out = vec![0.0f32; dim];
            for logit in [-8.0, -1.3, 0.0, 2.5, 8.0] {
                let stored = s.step(logit, 0.0, &base, &mut rng, &mut out);
                let direct: f64 = out
                    .iter()
                    .zip(&s.w_star)
                    .map(|(x, w)| *x as f64 * *w as f64)
                    .sum::<f64>()
                    + s.b_star as f64;
                assert!((stored - direct).abs() < 1e-9);
                assert!(
                    (stored - logit).abs() < tol,
                    "{dim} {dtype:?}: {stored} vs {logit}"
                );
                let phi_norm = out.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
                let bound = ((params.logit_clip + params.teacher_bias.abs()) / params.teacher_norm)
                    .hypot(params.nuisance_bound * (s.dim as f64).sqrt());
                assert!(phi_norm <= bound * 1.01, "{phi_norm} > {bound}");
                if dtype == FeatureDtype::Bf16 {
                    assert!(out.iter().all(|v| bf16::from_f32(*v).to_f32() == *v));
                }
            }
        }
    }

    #[test]
    fn rollout_follows_the_prefix_rules() {
        let params = ModelParams::default();
        let quad = Quadrature::default();
        let pmf = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let source = SourceModel {
            ability: 0.5,
            recovery_mean: 0.1,
            recovery_bonus: 0.0,
            steps_pmf: &pmf,
        };
        let mut saw_nonmonotone = false;
        let mut saw_stop = false;
        for i in 0..400u64 {
            let mut rng = stream(9, Stream::Rollout, 0, i);
            let latents = RolloutLatents {
                n: 8,
                capability: 0.0,
                recovery: 0.1,
                early_stop: i % 2 == 0,
            };
            let r = simulate_rollout(&latents, 0.5, &source, &params, &quad, &mut rng, None);
            assert_eq!(r.steps.len(), 8);
            let mut intact = true;
            let mut stopped = false;
            for s in &r.steps {
                intact &= s.correct;
                assert_eq!(s.prefix_correct, intact);
                if !intact {
                    assert_eq!(s.success_rate, 0.1);
                }
                if stopped {
                    assert_eq!((s.mc_correct, s.mc_total), (0, 0));
                    saw_stop = true;
                }
                if latents.early_stop && s.mc_correct == 0 {
                    stopped = true;
                }
            }
            // The last intact step has nothing left to get wrong.
            if r.all_correct() {
                assert_eq!(r.steps[7].mc_correct, 16);
            }
            let scores: Vec<u32> = r.steps.iter().map(|s| s.mc_correct).collect();
            if scores.windows(2).any(|w| w[0] == 0 && w[1] > 0) {
                assert!(!latents.early_stop);
                saw_nonmonotone = true;
            }
        }
        assert!(saw_nonmonotone && saw_stop);
    }
}
