//! A VisualPRM400K-calibrated simulator of MC-annotated rollouts with a known linear-logistic
//! teacher.
//!
//! No MLLM runs here, but the paper's theory is stated for a teacher–student logistic model on
//! fixed step representations ϕ. This module draws ϕ, a teacher w*, true step correctness and
//! then annotates every step by Monte Carlo exactly as VisualPRM400K was annotated, so every
//! claim of the paper can be checked against ground truth on a corpus that looks like the real
//! one source by source.
//!
//! # Generative model
//!
//! * **Teacher.** w* = ‖w*‖·ŵ with ŵ a uniformly random unit vector of R^d, bias b*.
//! * **Source s.** A mean ability μ_s (fitted), a step-count distribution
//!   `n = 1 + BetaBinomial(11, p_s, c)` with the source's Table 8 mean (so 1 ≤ n ≤ 12), an answer
//!   kind (choice, yes/no, number, phrase) and an embedding u_s ∈ R^d.
//! * **Question q** (4 rollouts each, as VisualPRM400K samples 4 responses per question): a
//!   difficulty ξ_q ~ N(0, 1) and an embedding v_q.
//! * **Rollout x.** A policy capability κ_x ~ N(0, 1), so its ability is
//!   `a_x = μ_s + σ_q ξ_q + σ_κ κ_x`; a post-error success rate `ρ_x = σ(loc + bonus_kind +
//!   scale·N(0, 1))` (lucky guesses and self-correction; choice and yes/no answers get a bonus);
//!   and whether its annotation early-stops (probability π, settable per source). Rollout-level latents are drawn by
//!   Latin-hypercube stratification within each source, so small corpora match the source's
//!   distribution closely.
//! * **Step j.** Teacher logit `ℓ_j = clip(a_x − δ·[an earlier step was wrong] + σ_ζ ζ_j, ±L)`
//!   (errors propagate: once a step is wrong, later ones are more often wrong too). The features
//!   are `ϕ_j = ((ℓ_j − b*)/‖w*‖)·ŵ + clip(u_s + v_q + ε_j)` with the nuisance part orthogonal to
//!   ŵ, scaled per coordinate (so it grows like √d while the signal stays on one direction) and
//!   clipped in norm, so `q*_j = σ(⟨w*, ϕ_j⟩ + b*) = σ(ℓ_j)` exactly and ‖ϕ‖ is bounded (A1). True correctness `Z_j ~ Bernoulli(q*_j)`.
//! * **MC annotation.** The prefix through step j is intact while every Z so far is 1. From an
//!   intact prefix with m steps left, one continuation succeeds with probability
//!   `r_j = p^m + (1 − p^m)·E\[ρ\]`, where p = P(Z = 1 | a_x) (it must write the rest without error,
//!   or recover); so the final step of a correct solution scores 1. After the first error,
//!   `r_j = ρ_x`: small but not zero, which produces the paper's pseudo-positives. The score is
//!   `K/16` with `K ~ Binomial(16, r_j)`; with early stop, every step after the first zero gets
//!   score 0 and `num_mc_total` 0.
//! * **v2 additions** (`--preset paper`, the default; all off in `--preset v1`, which
//!   reproduces the first model's corpora byte for byte):
//!   - *Hard continuations.* A share π_h of rollouts have continuations that find every
//!     remaining step h logits harder than the rollout itself did: their correct steps get low
//!     MC scores without being any less correct. The low-MC region then mixes hard-but-correct
//!     steps with pseudo-positives, as the paper reads it (P(step wrong | K = 1..3) ≈ 0.15
//!     against v1's ≈ 0.69).
//!   - *Progress in the features.* ϕ also carries γ·logit(r̄_j) along a direction û ⊥ ŵ, where
//!     r̄_j is the success rate a continuation would have from step j if the prefix were intact
//!     (how hard the rest is). It predicts MC scores but not step correctness, so a student
//!     fitted to soft or high-threshold labels leans on it and ranks benchmark steps worse:
//!     the mechanism behind hard-0 > hard-1/16 > hard-2/16 > soft.
//!   - *Errors that do not run away.* δ = 1 (v1: 4): a wrong step makes the next ones only
//!     somewhat more error-prone, so correctness is not a near-deterministic function of the
//!     prefix; σ_κ = 2, early stop 0 (the zero-score and mixed fractions stay fitted).
//!   - *A harder benchmark.* The benchmark's ability spreads are scaled by 0.5, so its steps
//!     are harder to tell apart (full data ≈ 65 Overall, as on VisualProcessBench).
//!
//!   The labelling order and the benchmark's scale were the targets these knobs were chosen
//!   for; [`scorecard`] lists what stayed held out.
//! * **Flip noise** (optional, for Eq. 6): the bundle's `labels` hold the hard MC label (or the
//!   true label) flipped independently with probability η.
//!
//! # Calibration
//!
//! [`calibrate()`] fits μ_s per source to Table 8's mean MC, and the location and spread of ρ to
//! Table 1's zero-score fraction (3.57%) and mixed fraction (7.67%), on exact expectations
//! ([`model`]); steps per rollout hold by construction. Table 8's step-weighted mean MC is 0.860,
//! not Table 1's 0.8566: the per-source values are matched, so the corpus mean lands near 0.860.
//!
//! # Outputs of [`synthesize`]
//!
//! `annotations/<slug>.jsonl` (raw VisualPRM400K layout, one file per source), `features.safetensors`
//! (the features bundle, see [`crate::data::features`]), `truth.safetensors` (per-step success
//! rates and prefix correctness, per-rollout latents), `bench.jsonl` + `bench.safetensors` (the
//! VisualProcessBench-like set, see [`mod@bench`]) and `manifest.json` (every setting, the fit, and the
//! statistics achieved against the paper's).
//! [`truth`] reads the ground truth back (the theory checks need it).

pub mod bench;
pub mod calibrate;
pub mod corpus;
pub mod generate;
pub mod model;
pub mod numeric;
pub mod preset;
pub mod rng;
pub mod scorecard;
pub mod stats;
mod synth;
pub mod text;
pub mod truth;

pub use bench::BenchStats;
pub use calibrate::{BenchCalibration, Calibration, GlobalExpectation, calibrate, calibrate_bench};
pub use model::{ModelParams, ModelPreset};
pub use stats::{CorpusStats, EffectiveNoise};
pub use synth::{
    ANNOTATIONS_DIR, BENCH_BUNDLE_FILE, BENCH_FILE, BenchReport, Compared, CorpusReport,
    FEATURES_FILE, FileList, FlipBase, MANIFEST_FILE, Manifest, McLabels, SourceReport,
    SynthConfig, TheoryReport, is_corpus_dir, synthesize,
};
