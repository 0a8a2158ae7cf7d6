//! The generative model's parameters and its exact expected statistics.
//!
//! Everything the calibration matches (mean MC per step, zero-score steps, mixed rollouts) is an
//! expectation over the model's latents. Given a rollout's ability `a`, the steps' true
//! correctness is a sequence of independent Bernoulli draws, the position of the first error is
//! geometric, and the MC outcome of every step depends only on whether its prefix is intact and
//! on the rollout's post-error success rate ρ. That makes each statistic a short closed-form sum
//! over the first-error position once a handful of moments of ρ are known; only `a` and ρ are
//! integrated numerically, by Gauss–Hermite quadrature. See the module docs of [`crate::sim`]
//! for the model itself.

use std::collections::BTreeMap;

use serde::Serialize;

use super::numeric::gauss_hermite;
use super::preset::AnswerKind;
use crate::logistic::sigmoid;

/// Continuations sampled per step (VisualPRM400K uses 16).
pub const MC_SAMPLES: u32 = 16;

/// Hyper-parameters of the generative model that the calibration does not fit.
#[derive(Debug, Clone, Serialize)]
pub struct ModelParams {
    /// Standard deviation of a question's difficulty (logits; shared by its rollouts).
    pub sigma_question: f64,
    /// Standard deviation of a rollout's policy capability (logits).
    pub sigma_capability: f64,
    /// Standard deviation of the step-level teacher-logit noise.
    pub sigma_step: f64,
    /// Teacher logits are clipped to [−L, L] (bounded features, assumption A1).
    pub logit_clip: f64,
    /// δ: how much lower the teacher logit of a step is once an earlier step was wrong
    /// (errors propagate).
    pub error_penalty: f64,
    /// Probability that a rollout was annotated with early stop (after a zero score, later steps
    /// get score 0 with `num_mc_total` 0, unsampled).
    pub early_stop: f64,
    /// Per-source early-stop probabilities (by paper name) that replace `early_stop`.
    pub early_stop_by_source: BTreeMap<String, f64>,
    /// Concentration of the beta-binomial step-count distribution (smaller = wider).
    pub steps_concentration: f64,
    /// Most steps per rollout (the generator groups longer responses into 12 steps).
    pub max_steps: usize,
    /// Post-error success-rate logit bonus for choice answers (lucky guesses among 4 options).
    pub guess_bonus_choice: f64,
    /// Post-error success-rate logit bonus for yes/no answers.
    pub guess_bonus_yes_no: f64,
    /// Post-error success-rate logit bonus for free-text answers (usually negative).
    pub guess_bonus_phrase: f64,
    /// ‖w*‖: the teacher's weight norm.
    pub teacher_norm: f64,
    /// b*: the teacher's bias.
    pub teacher_bias: f64,
    /// Per-coordinate standard deviation of the source embedding in ϕ (nuisance directions).
    pub source_scale: f64,
    /// Per-coordinate standard deviation of the question embedding in ϕ.
    pub question_scale: f64,
    /// Per-coordinate standard deviation of the per-step noise in ϕ.
    pub step_scale: f64,
    /// The nuisance part of ϕ (orthogonal to w*) is clipped to the norm `bound·√d`, so
    /// ‖ϕ‖ ≤ sqrt(((L + |b*|)/‖w*‖)² + bound²·d).
    pub nuisance_bound: f64,
    /// Responses sampled per question (VisualPRM400K samples 4).
    pub rollouts_per_question: usize,
    /// Target mean words per step of the synthetic text (Table 1: 27.8).
    pub words_per_step: f64,
    /// γ: the features carry γ·logit(r) along a direction û ⊥ ŵ, where r is the success rate a
    /// continuation would have from the step if its prefix were intact (how hard the rest of the
    /// solution is). 0 leaves û out (the v1 model).
    pub progress_scale: f64,
    /// h: in a rollout whose continuations are hard, how much harder (logits) a continuation
    /// sampled from an intact prefix finds each remaining step than the rollout itself did. It
    /// lowers the MC scores of correct steps without touching their correctness, so low scores
    /// mix hard-but-correct steps with pseudo-positives, as the paper reads its low-MC region.
    pub continuation_penalty: f64,
    /// π_h: the share of rollouts whose continuations are hard (the others get h = 0). 0 in v1.
    pub hard_continuation_share: f64,
    /// Multiplier of σ_q and σ_κ on the benchmark. Its solutions come from a few strong policies
    /// on curated questions, so their abilities vary less than the training rollouts' and their
    /// steps are harder to tell apart; this knob sets the benchmark's absolute scale. 1 in v1.
    pub bench_ability_scale: f64,
}

/// The v1 knobs; [`ModelParams::for_preset`] gives either preset's.
impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            sigma_question: 1.0,
            sigma_capability: 0.6,
            sigma_step: 1.0,
            logit_clip: 8.0,
            error_penalty: 4.0,
            early_stop: 0.15,
            early_stop_by_source: BTreeMap::new(),
            steps_concentration: 8.0,
            max_steps: 12,
            guess_bonus_choice: 0.5,
            guess_bonus_yes_no: 1.0,
            guess_bonus_phrase: -0.5,
            teacher_norm: 4.0,
            teacher_bias: 0.0,
            source_scale: 0.3,
            question_scale: 0.3,
            step_scale: 0.8,
            nuisance_bound: 3.0,
            rollouts_per_question: 4,
            words_per_step: 27.8,
            progress_scale: 0.0,
            continuation_penalty: 0.0,
            hard_continuation_share: 0.0,
            bench_ability_scale: 1.0,
        }
    }
}

/// Which version of the generative model's hand-set knobs a corpus is drawn with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelPreset {
    /// The current model (v2): the features also carry how hard the rest of a solution is, so
    /// MC labels (which depend on it) and step correctness (which does not) disagree about what
    /// a student should learn. See [`crate::sim`].
    #[default]
    Paper,
    /// The first model: every label is a function of the teacher logit alone. Kept so that
    /// corpora and results made with it regenerate byte for byte.
    #[serde(alias = "visualprm400k")]
    V1,
}

impl ModelPreset {
    /// Every preset name, for messages.
    pub const NAMES: &'static str = "paper, v1";

    /// The preset's name as the command line and the manifest spell it.
    pub fn name(self) -> &'static str {
        match self {
            ModelPreset::Paper => "paper",
            ModelPreset::V1 => "v1",
        }
    }
}

impl std::fmt::Display for ModelPreset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ModelPreset {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "paper" => Ok(ModelPreset::Paper),
            // The name v1 manifests record.
            "v1" | "visualprm400k" => Ok(ModelPreset::V1),
            _ => Err(crate::Error::invalid(format!(
                "unknown preset `{s}`: expected one of {}",
                ModelPreset::NAMES
            ))),
        }
    }
}

impl ModelParams {
    /// The hand-set knobs of `preset`.
    pub fn for_preset(preset: ModelPreset) -> Self {
        match preset {
            ModelPreset::V1 => ModelParams::default(),
            // Chosen so that, with Table 1 and Table 8 still matched, full-data training on
            // the benchmark reproduces the paper's labelling order and absolute scale (these
            // two are therefore fit targets, not held-out ones; see `sim::scorecard`).
            ModelPreset::Paper => ModelParams {
                sigma_capability: 2.0,
                error_penalty: 1.0,
                early_stop: 0.0,
                progress_scale: 1.0,
                continuation_penalty: 5.0,
                hard_continuation_share: 0.3,
                bench_ability_scale: 0.5,
                ..ModelParams::default()
            },
        }
    }

    /// The knobs the benchmark is drawn with: the ability spreads scaled by
    /// `bench_ability_scale` (a plain copy at 1).
    pub fn for_bench(&self) -> Self {
        ModelParams {
            sigma_question: self.sigma_question * self.bench_ability_scale,
            sigma_capability: self.sigma_capability * self.bench_ability_scale,
            ..self.clone()
        }
    }

    /// Standard deviation of a rollout's ability around its source mean.
    pub fn sigma_ability(&self) -> f64 {
        self.sigma_question.hypot(self.sigma_capability)
    }

    /// The post-error success-rate logit bonus of an answer kind.
    pub fn guess_bonus(&self, kind: AnswerKind) -> f64 {
        match kind {
            AnswerKind::Choice => self.guess_bonus_choice,
            AnswerKind::YesNo => self.guess_bonus_yes_no,
            AnswerKind::Numeric => 0.0,
            AnswerKind::Phrase => self.guess_bonus_phrase,
        }
    }

    /// The early-stop probability of source `name`.
    pub fn early_stop_for(&self, name: &str) -> f64 {
        self.early_stop_by_source
            .get(name)
            .copied()
            .unwrap_or(self.early_stop)
    }

    /// A teacher logit after clipping to [−L, L].
    #[inline]
    pub fn clip_logit(&self, logit: f64) -> f64 {
        logit.clamp(-self.logit_clip, self.logit_clip)
    }

    /// Checks that every setting is in its domain.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str| Err(crate::Error::invalid(format!("model parameter {what}")));
        let non_negative = [
            ("sigma_question", self.sigma_question),
            ("sigma_capability", self.sigma_capability),
            ("sigma_step", self.sigma_step),
            ("error_penalty", self.error_penalty),
            ("source_scale", self.source_scale),
            ("question_scale", self.question_scale),
            ("step_scale", self.step_scale),
            ("progress_scale", self.progress_scale),
            ("continuation_penalty", self.continuation_penalty),
            ("bench_ability_scale", self.bench_ability_scale),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return bad(&format!("{name} = {v} must be a finite number ≥ 0"));
            }
        }
        if !(0.0..=1.0).contains(&self.early_stop) {
            return bad(&format!(
                "early_stop = {} must lie in [0, 1]",
                self.early_stop
            ));
        }
        if let Some((name, p)) = self
            .early_stop_by_source
            .iter()
            .find(|(_, p)| !(0.0..=1.0).contains(*p))
        {
            return bad(&format!("early stop of {name} = {p} must lie in [0, 1]"));
        }
        if !(0.0..=1.0).contains(&self.hard_continuation_share) {
            return bad("hard_continuation_share must lie in [0, 1]");
        }
        if !(self.logit_clip > 0.0 && self.logit_clip.is_finite()) {
            return bad("logit_clip must be positive");
        }
        if !(self.teacher_norm > 0.0 && self.teacher_norm.is_finite()) {
            return bad("teacher_norm must be positive");
        }
        if !(self.nuisance_bound > 0.0 && self.nuisance_bound.is_finite()) {
            return bad("nuisance_bound must be positive");
        }
        if !(self.steps_concentration > 0.0 && self.steps_concentration.is_finite()) {
            return bad("steps_concentration must be positive");
        }
        if !(2..=64).contains(&self.max_steps) {
            return bad("max_steps must lie in 2..=64");
        }
        if self.rollouts_per_question == 0 {
            return bad("rollouts_per_question must be at least 1");
        }
        if !(self.words_per_step >= 4.0 && self.words_per_step <= 500.0) {
            return bad("words_per_step must lie in [4, 500]");
        }
        Ok(())
    }
}

/// Probability mass of the step count `n = 1 + BetaBinomial(max − 1, p, c)` with `p` chosen so
/// that E\[n\] = `mean`; entry `k` is P(n = k) (entry 0 is 0).
pub fn step_count_pmf(mean: f64, max_steps: usize, concentration: f64) -> Vec<f64> {
    let trials = (max_steps - 1) as f64;
    let p = ((mean - 1.0) / trials).clamp(1e-9, 1.0 - 1e-9);
    let (alpha, beta) = (p * concentration, (1.0 - p) * concentration);
    let ln_b = statrs::function::beta::ln_beta;
    let ln_choose = |n: f64, k: f64| {
        statrs::function::gamma::ln_gamma(n + 1.0)
            - statrs::function::gamma::ln_gamma(k + 1.0)
            - statrs::function::gamma::ln_gamma(n - k + 1.0)
    };
    let mut pmf = vec![0.0; max_steps + 1];
    for k in 0..max_steps {
        let kf = k as f64;
        pmf[k + 1] = (ln_choose(trials, kf) + ln_b(kf + alpha, trials - kf + beta)
            - ln_b(alpha, beta))
        .exp();
    }
    let total: f64 = pmf.iter().sum();
    pmf.iter_mut().for_each(|v| *v /= total);
    pmf
}

/// Quadrature rules shared by every expectation (built once).
#[derive(Debug, Clone)]
pub struct Quadrature {
    ability: (Vec<f64>, Vec<f64>),
    step: (Vec<f64>, Vec<f64>),
    recovery: (Vec<f64>, Vec<f64>),
}

impl Default for Quadrature {
    fn default() -> Self {
        Quadrature {
            ability: gauss_hermite(40),
            step: gauss_hermite(24),
            recovery: gauss_hermite(64),
        }
    }
}

/// The distribution of a rollout's post-error success rate ρ: logit-normal,
/// `ρ = σ(loc + bonus + scale · X)`, X ~ N(0, 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Recovery {
    /// Location of the logit.
    pub loc: f64,
    /// Spread of the logit.
    pub scale: f64,
}

impl Recovery {
    /// ρ for a standard-normal draw `x` and an answer-kind bonus.
    #[inline]
    pub fn rate(&self, bonus: f64, x: f64) -> f64 {
        sigmoid(self.loc + bonus + self.scale * x)
    }

    /// E\[ρ\] for a given bonus.
    pub fn mean(&self, bonus: f64, quad: &Quadrature) -> f64 {
        let (x, w) = &quad.recovery;
        x.iter().zip(w).map(|(x, w)| w * self.rate(bonus, *x)).sum()
    }
}

/// Moments of ρ that the closed forms need, for rollouts of up to `max_steps` steps.
/// With z(ρ) = (1 − ρ)^16 the chance that a post-error step scores 0:
/// `zero[k] = E[z^k]`, `nonzero[k] = E[(1 − z)^k]`, `rate_nonzero[k] = E[ρ (1 − z)^k]`.
#[derive(Debug, Clone)]
pub struct RecoveryMoments {
    /// E\[ρ\].
    pub mean: f64,
    zero: Vec<f64>,
    nonzero: Vec<f64>,
    rate_nonzero: Vec<f64>,
}

impl RecoveryMoments {
    /// Moments of `recovery` shifted by `bonus`.
    pub fn new(recovery: Recovery, bonus: f64, max_steps: usize, quad: &Quadrature) -> Self {
        let (x, w) = &quad.recovery;
        let mut zero = vec![0.0; max_steps + 1];
        let mut nonzero = vec![0.0; max_steps + 1];
        let mut rate_nonzero = vec![0.0; max_steps + 1];
        let mut mean = 0.0;
        for (x, w) in x.iter().zip(w) {
            let rho = recovery.rate(bonus, *x);
            let z = zero_prob(rho);
            mean += w * rho;
            let (mut zk, mut nk) = (1.0, 1.0);
            for k in 0..=max_steps {
                zero[k] += w * zk;
                nonzero[k] += w * nk;
                rate_nonzero[k] += w * rho * nk;
                zk *= z;
                nk *= 1.0 - z;
            }
        }
        RecoveryMoments {
            mean,
            zero,
            nonzero,
            rate_nonzero,
        }
    }
}

/// P(K = 0) for K ~ Binomial(16, r).
#[inline]
pub fn zero_prob(r: f64) -> f64 {
    (1.0 - r).powi(MC_SAMPLES as i32)
}

/// P(Z = 1) for a step whose pre-noise logit is `center`: E[σ(clip(center + σ_step · X))].
pub fn step_correct_prob(center: f64, params: &ModelParams, quad: &Quadrature) -> f64 {
    let (x, w) = &quad.step;
    x.iter()
        .zip(w)
        .map(|(x, w)| w * sigmoid(params.clip_logit(center + params.sigma_step * x)))
        .sum()
}

/// P(a continuation writes one more step correctly) for a rollout of ability `ability` whose
/// continuations face the penalty `penalty`: `p_correct` itself when there is none (so the v1
/// model is unchanged bit for bit).
pub fn continuation_step_prob(
    ability: f64,
    p_correct: f64,
    penalty: f64,
    params: &ModelParams,
    quad: &Quadrature,
) -> f64 {
    if penalty == 0.0 {
        p_correct
    } else {
        step_correct_prob(ability - penalty, params, quad)
    }
}

/// The two kinds of rollout, as (probability, continuation penalty): easy continuations, and
/// hard ones with probability π_h. A kind with probability 0 is left out.
pub fn continuation_kinds(params: &ModelParams) -> Vec<(f64, f64)> {
    let share = params.hard_continuation_share;
    [(1.0 - share, 0.0), (share, params.continuation_penalty)]
        .into_iter()
        .filter(|(w, _)| *w > 0.0)
        .collect()
}

/// One-shot success rate of a continuation from an intact prefix with `remaining` steps still to
/// write: it succeeds if it makes no error, or recovers from the one it makes.
#[inline]
pub fn intact_success_rate(p_correct: f64, remaining: usize, recovery_mean: f64) -> f64 {
    let clean = p_correct.powi(remaining as i32);
    clean + (1.0 - clean) * recovery_mean
}

/// Expected per-rollout statistics of one source under the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SourceExpectation {
    /// E\[steps\].
    pub steps: f64,
    /// E[Σ scores].
    pub score_sum: f64,
    /// E[number of zero-score steps].
    pub zero_steps: f64,
    /// P(rollout is mixed).
    pub mixed: f64,
    /// E[number of steps with a broken prefix and a positive score] (pseudo-positives).
    pub pseudo_positive_steps: f64,
}

impl SourceExpectation {
    /// Mean MC per step.
    pub fn mean_mc(&self) -> f64 {
        self.score_sum / self.steps
    }

    /// Fraction of zero-score steps.
    pub fn zero_fraction(&self) -> f64 {
        self.zero_steps / self.steps
    }
}

/// Everything that fixes one source's distribution apart from the global parameters.
#[derive(Debug, Clone)]
pub struct SourceShape {
    /// P(n = k).
    pub steps_pmf: Vec<f64>,
    /// ρ moments (already including the answer-kind bonus).
    pub recovery: RecoveryMoments,
    /// Probability that a rollout's annotation stops after its first zero.
    pub early_stop: f64,
}

/// Exact expectations for a source with mean ability `mu` (quadrature over ability and ρ).
pub fn expect_source(
    mu: f64,
    shape: &SourceShape,
    params: &ModelParams,
    quad: &Quadrature,
) -> SourceExpectation {
    let sigma_a = params.sigma_ability();
    let (ax, aw) = &quad.ability;
    let max_n = shape.steps_pmf.len() - 1;
    let rec = &shape.recovery;
    // Prefix sums over the broken tail: Σ_{i=1..M} E[(1−z)^i] and Σ_{i<M} E[ρ(1−z)^i].
    let mut tail_nonzero = vec![0.0; max_n + 1];
    let mut tail_rate = vec![0.0; max_n + 1];
    for m in 1..=max_n {
        tail_nonzero[m] = tail_nonzero[m - 1] + rec.nonzero[m];
        tail_rate[m] = tail_rate[m - 1] + rec.rate_nonzero[m - 1];
    }
    let stop = shape.early_stop;
    let mut out = SourceExpectation::default();
    let mut r = vec![0.0; max_n + 1];
    for (x, wa) in ax.iter().zip(aw) {
        for (wk, penalty) in continuation_kinds(params) {
            let a = mu + sigma_a * x;
            let p = step_correct_prob(a, params, quad);
            let p_cont = continuation_step_prob(a, p, penalty, params, quad);
            for (n, &pn) in shape.steps_pmf.iter().enumerate().skip(1) {
                if pn == 0.0 {
                    continue;
                }
                let w = wa * pn * wk;
                out.steps += w * n as f64;
                for (j, rj) in r.iter_mut().enumerate().take(n + 1).skip(1) {
                    *rj = intact_success_rate(p_cont, n - j, rec.mean);
                }
                // Walk the first-error position: L intact steps, then M = n − L broken ones.
                let (mut u_prod, mut z_prod) = (1.0, 1.0);
                let (mut score0, mut score1, mut zeros0, mut zeros1) = (0.0, 0.0, 0.0, 0.0);
                let first_nonzero_intact = 1.0 - zero_prob(r[1]);
                let mut p_l = 1.0; // p^L
                for l in 0..=n {
                    let m = n - l;
                    let prob = if l < n { p_l * (1.0 - p) } else { p_l };
                    // Without early stop every step is sampled.
                    let s0 = score0 + m as f64 * rec.mean;
                    let z0 = zeros0 + m as f64 * rec.zero[1];
                    let mix0 = 1.0 - u_prod * rec.nonzero[m] - z_prod * rec.zero[m];
                    let pp0 = m as f64 * (1.0 - rec.zero[1]);
                    // With early stop a step counts only if every earlier step scored > 0.
                    let s1 = score1 + u_prod * tail_rate[m];
                    let z1 = zeros1 + m as f64 - u_prod * tail_nonzero[m];
                    let first = if l >= 1 {
                        first_nonzero_intact
                    } else {
                        rec.nonzero[1]
                    };
                    let mix1 = first - u_prod * rec.nonzero[m];
                    let pp1 = u_prod * tail_nonzero[m];
                    let wp = w * prob;
                    out.score_sum += wp * ((1.0 - stop) * s0 + stop * s1);
                    out.zero_steps += wp * ((1.0 - stop) * z0 + stop * z1);
                    out.mixed += wp * ((1.0 - stop) * mix0 + stop * mix1);
                    out.pseudo_positive_steps += wp * ((1.0 - stop) * pp0 + stop * pp1);
                    if l < n {
                        // Extend the intact prefix by step l + 1.
                        let rj = r[l + 1];
                        let z = zero_prob(rj);
                        score0 += rj;
                        score1 += rj * u_prod;
                        zeros0 += z;
                        u_prod *= 1.0 - z;
                        z_prod *= z;
                        zeros1 += 1.0 - u_prod;
                        p_l *= p;
                    }
                }
            }
        }
    }
    out
}

/// Expected fraction of truly correct steps for a benchmark source with mean ability `mu`.
pub fn expect_correct_fraction(
    mu: f64,
    steps_pmf: &[f64],
    params: &ModelParams,
    quad: &Quadrature,
) -> f64 {
    let sigma_a = params.sigma_ability();
    let (ax, aw) = &quad.ability;
    let (mut correct, mut steps) = (0.0, 0.0);
    for (x, wa) in ax.iter().zip(aw) {
        let a = mu + sigma_a * x;
        let p = step_correct_prob(a, params, quad);
        let p_after = step_correct_prob(a - params.error_penalty, params, quad);
        for (n, &pn) in steps_pmf.iter().enumerate().skip(1) {
            // Step j is correct: intact before j (p^(j−1)) and correct (p), or broken and correct.
            let mut intact_before = 1.0;
            let mut sum = 0.0;
            for _ in 0..n {
                sum += intact_before * p + (1.0 - intact_before) * p_after;
                intact_before *= p;
            }
            correct += wa * pn * sum;
            steps += wa * pn * n as f64;
        }
    }
    correct / steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_count_pmf_has_the_requested_mean() {
        for mean in [1.5, 3.0, 5.62, 10.1] {
            let pmf = step_count_pmf(mean, 12, 8.0);
            let m: f64 = pmf.iter().enumerate().map(|(k, p)| k as f64 * p).sum();
            assert!((pmf.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!((m - mean).abs() < 1e-9, "{m} vs {mean}");
            assert_eq!(pmf[0], 0.0);
        }
    }

    /// Brute force over every outcome of a tiny model: ability fixed (σ = 0), ρ fixed (scale 0),
    /// n fixed; enumerate correctness patterns and K outcomes (zero / non-zero) exactly.
    #[test]
    fn closed_forms_match_enumeration() {
        let quad = Quadrature::default();
        let n = 4usize;
        for early_stop in [0.0, 1.0, 0.4] {
            let params = ModelParams {
                sigma_question: 0.0,
                sigma_capability: 0.0,
                sigma_step: 0.0,
                ..ModelParams::default()
            };
            let recovery = Recovery {
                loc: -1.3,
                scale: 0.0,
            };
            let mut pmf = vec![0.0; 13];
            pmf[n] = 1.0;
            let shape = SourceShape {
                steps_pmf: pmf,
                recovery: RecoveryMoments::new(recovery, 0.0, 12, &quad),
                early_stop,
            };
            let mu = 1.1;
            let got = expect_source(mu, &shape, &params, &quad);

            let p = sigmoid(mu);
            let rho = sigmoid(-1.3);
            let mut want = SourceExpectation::default();
            // Enumerate first-error position l (n = no error) and zero patterns.
            for l in 0..=n {
                let prob_l = if l < n {
                    p.powi(l as i32) * (1.0 - p)
                } else {
                    p.powi(n as i32)
                };
                let rates: Vec<f64> = (1..=n)
                    .map(|j| {
                        if j <= l {
                            intact_success_rate(p, n - j, rho)
                        } else {
                            rho
                        }
                    })
                    .collect();
                for mask in 0..(1u32 << n) {
                    // bit j set = step j's K is zero
                    let mut prob = prob_l;
                    for (j, r) in rates.iter().enumerate() {
                        let z = zero_prob(*r);
                        prob *= if mask >> j & 1 == 1 { z } else { 1.0 - z };
                    }
                    for (stop, weight) in [(false, 1.0 - early_stop), (true, early_stop)] {
                        let (mut score, mut zeros, mut pos, mut pseudo) = (0.0, 0.0, 0, 0.0);
                        let mut stopped = false;
                        for (j, r) in rates.iter().enumerate() {
                            let is_zero = stopped || mask >> j & 1 == 1;
                            if is_zero {
                                zeros += 1.0;
                                if stop {
                                    stopped = true;
                                }
                            } else {
                                // E[K/16 | K > 0] · P(K > 0) is accounted below via r.
                                score += r / (1.0 - zero_prob(*r));
                                pos += 1;
                                if j >= l {
                                    pseudo += 1.0;
                                }
                            }
                        }
                        let w = prob * weight;
                        want.score_sum += w * score;
                        want.zero_steps += w * zeros;
                        want.pseudo_positive_steps += w * pseudo;
                        if pos > 0 && pos < n {
                            want.mixed += w;
                        }
                    }
                }
            }
            want.steps = n as f64;
            for (g, w, what) in [
                (got.score_sum, want.score_sum, "score"),
                (got.zero_steps, want.zero_steps, "zeros"),
                (got.mixed, want.mixed, "mixed"),
                (
                    got.pseudo_positive_steps,
                    want.pseudo_positive_steps,
                    "pseudo",
                ),
                (got.steps, want.steps, "steps"),
            ] {
                assert!(
                    (g - w).abs() < 1e-10,
                    "{what} (stop {early_stop}): {g} vs {w}"
                );
            }
        }
    }
}
