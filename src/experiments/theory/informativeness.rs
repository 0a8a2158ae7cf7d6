//! Do mixture and reliability drive informative updates? Measured against the simulator's
//! ground truth, and Finding 6's signal S(x).
//!
//! **Parameter points.** The initialisation and heads part-way through one full-data run with
//! the hard MC labels, at the learning rate tuned on the bench's dev split (the experiment's
//! protocol, linear head), plus the teacher w* for the gradient-norm statistics.
//!
//! **Useful part of an update.** The clean population gradient ∇L_clean(w) is the gradient of
//! the loss against the teacher's own probabilities q* (soft targets), averaged over steps within
//! each rollout and then over the R rollouts, i.e. `total_gradient(q*, mean) / R`. For each
//! rollout x, g_x is its gradient under its MC labels (mean over its steps, the reference
//! trainer's reduction), and a(x) = ⟨g_x, ∇L_clean⟩/‖∇L_clean‖: positive when an SGD step on x
//! alone moves w downhill on the clean loss.
//!
//! **One-step dev-loss change.** ΔL_dev(x) = L_dev(w − η g_x) − L_dev(w), with L_dev the mean BCE
//! against q* over a seeded sample of the bench's dev steps (held-out questions, never trained
//! on). For the linear head the new logits are z_m − η⟨g_x, [ϕ_m; 1]⟩, so projecting every g_x
//! onto the augmented dev rows (one direction per dev step, through the gradient engine) gives
//! the change exactly, without forming any head. The tables report the gain −ΔL_dev.
//!
//! **Calibration-free targets.** a(x) and the dev loss both reward a step that only fixes the
//! head's calibration. Two targets do not: the change of cos(w, w*) (the head's weight direction
//! against the teacher's, bias excluded) from one step of the real per-rollout size on x alone,
//! and the change of the ROC-AUC on the bench's dev steps (ranking only, with the bench's own
//! correct/incorrect step labels, neutral steps left out) from one step of size `sgd_lr`. Both
//! come from the same projections: g_x is also projected onto [w; 0] and [w*; 0], and the new dev
//! logits are z_m − ε⟨g_x, [ϕ_m; 1]⟩ as for the dev loss.
//!
//! **Scores.** BIS(α), p̂(1 − p̂), R and mean MC from the stored scores; GraNd (mean norm over K
//! random inits) and EL2N (after a short proxy run) from [`crate::gradient_selection`]; and the raw
//! and centred gradient norms ‖g_x‖, ‖g_x^c‖ at the same point. Each score's Spearman correlation
//! with a(x) and with −ΔL_dev (bootstrap 95% CIs) and the mean a(x) of its top rollouts are
//! reported.
//!
//! **Finding 6.** S(x) = (1/n)Σ_j (1 − 4η_j) q*_j(1 − q*_j)‖ϕ_j‖² with the simulator's own flip
//! probability of each hard MC label: a truly correct step is labelled 0 when all 16
//! continuations fail, η_j = (1 − r_j)^16; a wrong one is labelled 1 when any succeeds,
//! η_j = 1 − (1 − r_j)^16 (an early-stopped step is labelled 0 for sure: η_j = 1 if correct,
//! 0 if not). That η is a property of the step before it is annotated; the paper instead plugs
//! in η ≈ η_eff(K), the unreliability of a label *given* its observed count K. S(x) is therefore
//! also reported with η_j = the corpus's share of wrong labels among steps with the same K (the
//! exact posterior of the simulator, no Beta prior). Both are oracle quantities (they need the
//! truth) and are also scored against a(x) next to the stored scores.

use rayon::prelude::*;

use crate::data::bench::Split;
use crate::data::features::FeatureBundle;
use crate::data::label_stats::LabelStats;
use crate::data::labels::LabelScheme;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::experiments::context::ExperimentContext;
use crate::experiments::formulas::signal_s;
use crate::experiments::stats::{
    Clusters, Estimate, MeanCi, cluster_bootstrap, spearman_bootstrap, within_group_spearman,
};
use crate::experiments::training::{LrTrial, heads_along_training, tune_lr};
use crate::gradient_selection::{
    GradientSettings, ProxySpec, el2n_keys, grand_keys, teacher_head, train_proxy,
};
use crate::gradnorm::{
    self, GradNormOptions, Projection, Reduction, flatten_params, head_from_flat,
};
use crate::head::{HeadKind, HeadParams};
use crate::logistic::{bce_with_logits, sigmoid};
use crate::select::bis::mean_mc;
use crate::sim::model::MC_SAMPLES;
use crate::sim::rng::uniform;
use crate::train::schedule::total_steps;

use super::truth::StepTruth;
use super::{StreamKind, TeacherView, TheoryConfig, cell_key, derived_seed, stream};

/// Name of S(x) with η the flip probability given the truth.
pub const SIGNAL_STEP: &str = "S(x), η given truth";
/// Name of S(x) with η the probability of a wrong label given the observed K.
pub const SIGNAL_POSTERIOR: &str = "S(x), η given K";
/// Projected gradients are computed this many bytes of output at a time.
const CHUNK_BYTES: usize = 32 << 20;
/// Heatmap cells with fewer rollouts stay blank.
pub const HEATMAP_MIN_ROLLOUTS: usize = 10;
/// 97.5% normal quantile.
const Z95: f64 = 1.959_963_984_540_054;

/// The mean a(x) of a score's top rollouts.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopMean {
    /// Fraction of rollouts kept.
    pub fraction: f64,
    /// Mean a(x) over them (a tie group straddling the cut counts proportionally) with a 95%
    /// interval conditional on the selection.
    pub mean: MeanCi,
}

/// How one score predicts informativeness at one point.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoreCorrelation {
    /// Score name.
    pub score: String,
    /// Spearman(score, a(x)), bootstrap 95% CI.
    pub vs_a: Estimate,
    /// Spearman(score, −ΔL_dev(x)).
    pub vs_dev: Estimate,
    /// Mean a(x) of the score's top rollouts, one per configured fraction.
    pub top: Vec<TopMean>,
}

/// Informativeness at one parameter point.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PointCheck {
    /// Name of the point (`init`, `step 283 (25%)`).
    pub point: String,
    /// Optimiser steps taken to reach it.
    pub step: usize,
    /// ‖∇L_clean(w)‖.
    pub clean_grad_norm: f64,
    /// Clean dev loss L_dev(w).
    pub dev_loss: f64,
    /// Mean a(x) over all rollouts: the baseline of every top-fraction mean.
    pub mean_a: MeanCi,
    /// Share of rollouts with a(x) > 0.
    pub positive_a: f64,
    /// Mean −ΔL_dev(x) over all rollouts.
    pub mean_dev_gain: MeanCi,
    /// Spearman(a(x), −ΔL_dev(x)): how far the two targets agree.
    pub a_vs_dev: Estimate,
    /// Mean a(x) of the top rollouts by a(x) itself: the ceiling of any score.
    pub oracle_top: Vec<TopMean>,
    /// One row per score.
    pub scores: Vec<ScoreCorrelation>,
    /// The same question without the confounds (absent in results written before it existed).
    #[serde(default)]
    pub deconfounded: Option<Deconfounded>,
}

/// Informativeness with its confounds taken apart: a(x) without its bias coordinate, the
/// trainer's reduction, the real per-rollout step, within-source ranks, and partial correlations
/// given rollout length and the number of zero-score steps. Every interval resamples questions
/// within sources.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Deconfounded {
    /// The step a rollout really gets: the tuned peak learning rate over the global batch.
    pub real_step: f64,
    /// Mean first-order dev gain ε⟨∇L_dev, g_x⟩ at that step.
    pub mean_gain_first: MeanCi,
    /// Mean exact dev gain at that step.
    pub mean_gain_real: MeanCi,
    /// Σ|exact − first order| / Σ|first order| at that step: the second-order remainder.
    #[serde(with = "crate::experiments::nan")]
    pub second_order_share: f64,
    /// The same at the configured `sgd_lr` (the older target).
    #[serde(with = "crate::experiments::nan")]
    pub second_order_share_sgd: f64,
    /// Σ|bias part of a(x)| / Σ|a(x)|: how much of a(x) is calibration.
    #[serde(with = "crate::experiments::nan")]
    pub bias_share: f64,
    /// Share of rollouts whose a(x) without the bias part is positive.
    pub positive_weight_a: f64,
    /// Mean cosine between g_x and the clean gradient (a(x)/‖g_x‖).
    #[serde(with = "crate::experiments::nan")]
    pub mean_cos: f64,
    /// One row per score.
    pub scores: Vec<DeconfoundedScore>,
    /// cos(w, w*) at this point (weights only; absent when ‖w‖ = 0, or in results written before
    /// the calibration-free targets existed, as is every field below).
    #[serde(default)]
    pub cos_w_star: Option<f64>,
    /// Mean exact Δcos(w, w*) from one step of the real size on a rollout alone.
    #[serde(default)]
    pub mean_cos_gain: Option<MeanCi>,
    /// Share of rollouts whose step raises cos(w, w*).
    #[serde(default)]
    pub positive_cos_gain: Option<f64>,
    /// Σ|exact − first order| / Σ|first order| of Δcos at the real step.
    #[serde(default)]
    pub cos_second_order_share: Option<f64>,
    /// ROC-AUC of the head on the labelled dev steps at this point.
    #[serde(default)]
    pub dev_auc: Option<f64>,
    /// Mean ΔAUC from one step of size `sgd_lr` on a rollout alone.
    #[serde(default)]
    pub mean_auc_gain: Option<MeanCi>,
    /// Share of rollouts whose `sgd_lr` step raises the dev AUC.
    #[serde(default)]
    pub positive_auc_gain: Option<f64>,
    /// Share of rollouts whose step of the real size leaves the dev AUC exactly unchanged (no
    /// pair of dev steps changes order): why ΔAUC is ranked at `sgd_lr` instead.
    #[serde(default)]
    pub zero_auc_gain_real: Option<f64>,
}

/// One score against the deconfounded targets (within-source Spearman, cluster bootstrap).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeconfoundedScore {
    /// Score name.
    pub score: String,
    /// With a(x).
    pub a: Estimate,
    /// With a(x) minus its bias part (the direction of w only).
    pub a_weight: Estimate,
    /// With a(x), partial given rollout length and zero-score steps.
    pub a_partial: Estimate,
    /// With n_x·a(x): the trainer's reduction (a micro-batch mean over steps weights a rollout
    /// by its step count).
    pub a_trainer: Estimate,
    /// With the first-order dev gain at the real step.
    pub gain_real: Estimate,
    /// With the exact Δcos(w, w*) at the real step (absent when cos is undefined at the point,
    /// or in results written before).
    #[serde(default)]
    pub cos_gain: Option<Estimate>,
    /// With ΔAUC on the labelled dev steps at `sgd_lr`.
    #[serde(default)]
    pub auc_gain: Option<Estimate>,
}

/// The informativeness check.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Informativeness {
    /// Learning rate of the full-data run (tuned on dev).
    pub lr: f64,
    /// Every rate tried (the grid and any extensions past its ends).
    pub lr_trials: Vec<LrTrial>,
    /// Rates tried beyond the configured grid (0 in results written before the grid was
    /// extended).
    #[serde(default)]
    pub lr_extensions: usize,
    /// Rollouts per optimiser step.
    pub global_batch: usize,
    /// Optimiser steps of the full run.
    pub total_steps: usize,
    /// Bench dev steps in the clean dev loss.
    pub dev_steps: usize,
    /// Bench dev steps available.
    pub dev_steps_available: usize,
    /// The SGD step size η of ΔL_dev.
    pub sgd_lr: f64,
    /// One entry per point (init, then the checkpoints).
    pub points: Vec<PointCheck>,
}

/// One target of Finding 6 against the four stored-score predictors.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SignalCorrelation {
    /// Target name (`S(x)`, `‖g_x‖ at w*`, …).
    pub target: String,
    /// Spearman(predictor, target) with bootstrap 95% CI, in [`Finding6::predictors`] order.
    pub vs: Vec<Estimate>,
}

/// Mean of a per-rollout quantity over (p̂(1 − p̂) bin × R bin).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Heatmap {
    /// File stem.
    pub name: String,
    /// What is averaged.
    pub quantity: String,
    /// Row labels: p̂(1 − p̂) bins, pure rollouts first.
    pub mixture_bins: Vec<String>,
    /// Column labels: R bins.
    pub reliability_bins: Vec<String>,
    /// `mean[row][col]`; blank below [`HEATMAP_MIN_ROLLOUTS`] rollouts.
    pub mean: Vec<Vec<Option<f64>>>,
    /// Rollouts per cell.
    pub counts: Vec<Vec<usize>>,
}

/// Finding 6.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding6 {
    /// The predictors: BIS, p̂(1 − p̂), R, mean MC.
    pub predictors: Vec<String>,
    /// S(x) and the measured gradient norms at every point.
    pub targets: Vec<SignalCorrelation>,
    /// Heatmaps over (p̂(1 − p̂) × R).
    pub heatmaps: Vec<Heatmap>,
}

/// Per-rollout measurements at one head.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Measured {
    /// a(x) (empty without a clean direction).
    a: Vec<f64>,
    /// −ΔL_dev(x) (empty without a dev set).
    dev_gain: Vec<f64>,
    /// ‖g_x‖.
    grad: Vec<f64>,
    /// ‖g_x^c‖.
    centred: Vec<f64>,
    /// The bias coordinate's part of a(x): g_x[b]·u[b].
    #[serde(default)]
    a_bias: Vec<f64>,
    /// First-order dev gain ε⟨∇L_dev, g_x⟩ at the step a rollout really gets in training.
    #[serde(default)]
    dev_gain_first: Vec<f64>,
    /// Exact dev gain at that step.
    #[serde(default)]
    dev_gain_real: Vec<f64>,
    /// Exact Δcos(w, w*) at the real step (empty when cos is undefined at the head, without a
    /// dev set, or in a cell saved before this target existed).
    #[serde(default)]
    cos_gain: Vec<f64>,
    /// Its first-order value −ε⟨g_w, ∇_w cos⟩.
    #[serde(default)]
    cos_gain_first: Vec<f64>,
    /// ΔAUC on the labelled dev steps from a step of size `sgd_lr` (empty as above, or when the
    /// dev sample lacks a correct or an incorrect step).
    #[serde(default)]
    auc_gain: Vec<f64>,
    /// ΔAUC from a step of the real size.
    #[serde(default)]
    auc_gain_real: Vec<f64>,
    #[serde(with = "crate::experiments::nan")]
    clean_norm: f64,
    #[serde(with = "crate::experiments::nan")]
    dev_loss: f64,
    /// cos(w, w*) at the head.
    #[serde(default = "nan", with = "crate::experiments::nan")]
    cos_w_star: f64,
    /// Dev AUC at the head.
    #[serde(default = "nan", with = "crate::experiments::nan")]
    dev_auc: f64,
}

fn nan() -> f64 {
    f64::NAN
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct LrTuning {
    lr: f64,
    trials: Vec<LrTrial>,
    /// Absent from cells saved before the grid was extended, which had none.
    #[serde(default)]
    extensions: usize,
}

/// Held-out steps with their clean targets: augmented rows [ϕ_m; 1] and q*_m, and the bench's
/// own step labels (1 correct, −1 incorrect, 0 neutral) for the dev AUC.
struct DevSet {
    rows: Vec<Vec<f32>>,
    phi: Vec<Vec<f64>>,
    q: Vec<f64>,
    labels: Vec<i8>,
    available: usize,
}

/// The parameter points: the initialisation and the checkpoints of one full-data run with the
/// hard MC labels, at the dev-tuned learning rate.
struct TrainedPoints {
    tuning: LrTuning,
    global_batch: usize,
    total_steps: usize,
    steps: Vec<usize>,
    heads: Vec<HeadParams>,
}

impl TrainedPoints {
    fn train(cfg: &TheoryConfig, ctx: &ExperimentContext<'_>, labels: LabelScheme) -> Result<Self> {
        let n_rollouts = ctx.corpus.bundle.n_rollouts();
        let (tuning, _) = ctx
            .cells
            .get_or_compute(&cell_key(ctx, "lr", &"hard-mc"), || {
                let tuned = tune_lr(ctx, None, labels, ctx.seed)?;
                Ok(LrTuning {
                    lr: tuned.lr,
                    trials: tuned.trials,
                    extensions: tuned.extensions,
                })
            })?;
        let global_batch = ctx.train.global_batch_for(n_rollouts);
        let total = total_steps(n_rollouts, global_batch, ctx.train.epochs);
        let steps: Vec<usize> = std::iter::once(0)
            .chain(
                cfg.checkpoints
                    .iter()
                    .map(|f| ((f * total as f64).round() as usize).clamp(1, total)),
            )
            .collect();
        let (flat, _) =
            ctx.cells
                .get_or_compute(&cell_key(ctx, "heads", &(tuning.lr, &steps)), || {
                    let heads =
                        heads_along_training(ctx, None, labels, tuning.lr, ctx.seed, &steps)?;
                    Ok(heads.iter().map(flatten_params).collect::<Vec<Vec<f32>>>())
                })?;
        let heads = flat
            .iter()
            .map(|f| head_from_flat(HeadKind::Linear, ctx.corpus.bundle.dim(), f))
            .collect::<Result<Vec<_>>>()?;
        Ok(TrainedPoints {
            tuning,
            global_batch,
            total_steps: total,
            steps,
            heads,
        })
    }

    fn names(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|&s| {
                if s == 0 {
                    "init".to_string()
                } else {
                    format!(
                        "step {s} ({:.0}%)",
                        100.0 * s as f64 / self.total_steps.max(1) as f64
                    )
                }
            })
            .collect()
    }
}

/// The rollout scores computed from the stored MC scores alone.
struct StoredScores {
    bis: Vec<f64>,
    mixture: Vec<f64>,
    reliability: Vec<f64>,
    mean_mc: Vec<f64>,
}

impl StoredScores {
    fn of(bundle: &FeatureBundle, alpha: f64) -> Self {
        let scores: Vec<Vec<f64>> = (0..bundle.n_rollouts())
            .map(|x| {
                bundle.mc_scores()[bundle.rollout_steps(x)]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect()
            })
            .collect();
        let stats: Vec<LabelStats> = scores.iter().map(|s| LabelStats::of(s)).collect();
        StoredScores {
            bis: stats.iter().map(|s| s.bis(alpha)).collect(),
            mixture: stats.iter().map(LabelStats::mixture).collect(),
            reliability: stats.iter().map(|s| s.reliability).collect(),
            mean_mc: scores.iter().map(|s| mean_mc(s)).collect(),
        }
    }
}

/// Runs the informativeness check and Finding 6.
pub fn run(
    cfg: &TheoryConfig,
    ctx: &ExperimentContext<'_>,
    teacher: &TeacherView,
    truth: &StepTruth,
) -> Result<(Informativeness, Finding6)> {
    let bundle = &ctx.corpus.bundle;
    let labels = LabelScheme::Hard { threshold: 0.0 };
    let targets = labels.targets(bundle)?;
    let q_targets: Vec<f32> = teacher.q.iter().map(|&q| q as f32).collect();
    let points = TrainedPoints::train(cfg, ctx, labels)?;
    let names = points.names();
    let dev = dev_set(ctx, cfg.dev_steps)?;
    let stored = StoredScores::of(bundle, cfg.alpha);

    // Gradient-based scores, exactly as the selectors compute them.
    let settings = GradientSettings {
        head: HeadKind::Linear,
        labels,
        reduction: Reduction::Mean,
        seed: derived_seed(ctx.seed, StreamKind::Derived, 0, 0),
        inits: cfg.grand_inits,
        proxy: ProxySpec {
            fraction: cfg.el2n_fraction,
            lr: points.tuning.lr,
            global_batch: points.global_batch,
            epochs: cfg.el2n_epochs,
        },
        el2n: Default::default(),
        less: Default::default(),
        reference: Default::default(),
        device: ctx.device,
    };
    let (grand, _) = ctx.cells.get_or_compute(
        &cell_key(ctx, "grand", &(settings.seed, settings.inits)),
        || grand_keys(bundle, &targets, &settings),
    )?;
    let (el2n, _) = ctx.cells.get_or_compute(
        &cell_key(ctx, "el2n", &(settings.seed, settings.proxy)),
        || {
            el2n_keys(
                bundle,
                &targets,
                &train_proxy(bundle, &settings)?,
                Reduction::Sum,
                ctx.device,
            )
        },
    )?;

    // The step one rollout really gets: the trainer averages a global batch of rollouts.
    let real_step = points.tuning.lr / points.global_batch as f64;
    let real_lr = real_step;
    // Measurements at every point, and the gradient norms at the teacher.
    let mut measured = Vec::with_capacity(points.heads.len());
    for (head, &step) in points.heads.iter().zip(&points.steps) {
        // The tag names what a point's cell holds: cells saved before Δcos and ΔAUC existed
        // would load with those targets missing, so they are recomputed instead of reused.
        let key = cell_key(
            ctx,
            "point",
            &(
                "deconfounded, Δcos, ΔAUC",
                step,
                flatten_params(head),
                cfg.sgd_lr,
                cfg.dev_steps,
            ),
        );
        let (m, _) = ctx.cells.get_or_compute(&key, || {
            measure(
                ctx,
                head,
                &targets,
                &q_targets,
                Some(&dev),
                cfg.sgd_lr,
                real_lr,
            )
        })?;
        measured.push(m);
    }
    let wstar = teacher_head(bundle)?;
    let (at_teacher, _) = ctx
        .cells
        .get_or_compute(&cell_key(ctx, "teacher-norms", &"mean"), || {
            measure(ctx, &wstar, &targets, &q_targets, None, cfg.sgd_lr, real_lr)
        })?;

    // The theory's rollout signal, with the flip probability of each label given the truth (the
    // simulator's generative view, which needs its success rates r: not on the world) or given
    // the observed count K (the paper's η_eff(K) view).
    let step_truth = &bundle
        .teacher()
        .ok_or_else(|| Error::invalid("Finding 6 needs the teacher"))?
        .true_correct;
    let signal =
        eta_given_truth(truth, step_truth).map(|eta| signal_per_rollout(bundle, teacher, &eta));
    let signal_posterior = signal_per_rollout(bundle, teacher, &eta_given_count(truth, step_truth));

    let predictors: Vec<(String, &[f64])> = vec![
        (format!("BIS (α={})", cfg.alpha), &stored.bis[..]),
        ("p̂(1−p̂)".into(), &stored.mixture[..]),
        ("R".into(), &stored.reliability[..]),
        ("mean MC".into(), &stored.mean_mc[..]),
    ];
    let signals: Vec<(String, &[f64])> = signal
        .as_deref()
        .map(|s| (SIGNAL_STEP.to_string(), s))
        .into_iter()
        .chain([(SIGNAL_POSTERIOR.to_string(), &signal_posterior[..])])
        .collect();
    let fixed_scores: Vec<(String, &[f64])> = predictors
        .iter()
        .cloned()
        .chain([
            (format!("GraNd (K={})", cfg.grand_inits), &grand[..]),
            ("EL2N".into(), &el2n[..]),
        ])
        .chain(signals.iter().cloned())
        .collect();
    let design = Design {
        clusters: Clusters::new(bundle.source(), &truth.question),
        source: bundle.source(),
        length: (0..bundle.n_rollouts())
            .map(|x| bundle.rollout_len(x) as f64)
            .collect(),
        zeros: (0..bundle.n_rollouts())
            .map(|x| {
                bundle.mc_scores()[bundle.rollout_steps(x)]
                    .iter()
                    .filter(|v| **v <= 0.0)
                    .count() as f64
            })
            .collect(),
        real_step,
    };
    let checks = measured
        .iter()
        .enumerate()
        .map(|(p, m)| {
            point_check(
                cfg,
                ctx.seed,
                p,
                &names[p],
                points.steps[p],
                m,
                &fixed_scores,
                &design,
            )
        })
        .collect();

    // Finding 6: the signal and every gradient norm against the four stored scores.
    let mut f6_targets = signals;
    let all_points = names.iter().map(String::as_str).zip(&measured);
    for (name, m) in all_points.chain([("w*", &at_teacher)]) {
        f6_targets.push((format!("‖g_x‖ at {name}"), &m.grad[..]));
        f6_targets.push((format!("‖g_x^c‖ at {name}"), &m.centred[..]));
    }
    let jobs: Vec<(&[f64], &[f64])> = f6_targets
        .iter()
        .flat_map(|(_, t)| predictors.iter().map(move |(_, p)| (*p, *t)))
        .collect();
    let est = bootstrap_all(&jobs, cfg.bootstrap, ctx.seed, 4);
    let width = predictors.len();
    let bin = |name: &str, quantity: &str, value: &[f64]| {
        heatmap(name, quantity, &stored.mixture, &stored.reliability, value)
    };
    let last = measured.last().expect("the init point is always measured");
    let finding6 = Finding6 {
        predictors: predictors.iter().map(|(n, _)| n.clone()).collect(),
        targets: f6_targets
            .iter()
            .enumerate()
            .map(|(t, (name, _))| SignalCorrelation {
                target: name.clone(),
                vs: est[t * width..(t + 1) * width].to_vec(),
            })
            .collect(),
        heatmaps: [
            Some(bin(
                "finding6_heatmap_grad_teacher",
                "mean ‖g_x‖ at w* (MC labels)",
                &at_teacher.grad,
            )),
            signal.as_deref().map(|s| {
                bin(
                    "finding6_heatmap_signal",
                    "mean S(x) (η given the truth)",
                    s,
                )
            }),
            Some(bin(
                "finding6_heatmap_signal_posterior",
                "mean S(x) (η given K)",
                &signal_posterior,
            )),
            Some(bin(
                "finding6_heatmap_useful",
                &format!("mean a(x) at {}", names.last().expect("init")),
                &last.a,
            )),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    Ok((
        Informativeness {
            lr: points.tuning.lr,
            lr_trials: points.tuning.trials,
            lr_extensions: points.tuning.extensions,
            global_batch: points.global_batch,
            total_steps: points.total_steps,
            dev_steps: dev.q.len(),
            dev_steps_available: dev.available,
            sgd_lr: cfg.sgd_lr,
            points: checks,
        },
        finding6,
    ))
}

/// Every score (the fixed ones plus the gradient norms at this point) against a(x) and the dev
/// gain at point `p`.
#[allow(clippy::too_many_arguments)]
fn point_check(
    cfg: &TheoryConfig,
    seed: u64,
    p: usize,
    name: &str,
    step: usize,
    m: &Measured,
    fixed_scores: &[(String, &[f64])],
    design: &Design<'_>,
) -> PointCheck {
    let mut scores: Vec<(String, &[f64])> = fixed_scores.to_vec();
    scores.push(("‖g_x‖".into(), &m.grad[..]));
    scores.push(("‖g_x^c‖".into(), &m.centred[..]));
    let mut jobs: Vec<(&[f64], &[f64])> = Vec::new();
    for (_, s) in &scores {
        jobs.push((s, &m.a[..]));
        jobs.push((s, &m.dev_gain[..]));
    }
    jobs.push((&m.a[..], &m.dev_gain[..]));
    let est = bootstrap_all(&jobs, cfg.bootstrap, seed, 5 + p as u64);
    let top = |score: &[f64]| {
        cfg.top_fractions
            .iter()
            .map(|&f| TopMean {
                fraction: f,
                mean: top_mean(score, &m.a, f),
            })
            .collect::<Vec<_>>()
    };
    PointCheck {
        point: name.to_string(),
        step,
        clean_grad_norm: m.clean_norm,
        dev_loss: m.dev_loss,
        mean_a: plain_mean(&m.a),
        positive_a: m.a.iter().filter(|&&a| a > 0.0).count() as f64 / m.a.len() as f64,
        mean_dev_gain: plain_mean(&m.dev_gain),
        a_vs_dev: *est.last().expect("one job per point at least"),
        oracle_top: top(&m.a),
        scores: scores
            .iter()
            .enumerate()
            .map(|(i, (name, s))| ScoreCorrelation {
                score: name.clone(),
                vs_a: est[2 * i],
                vs_dev: est[2 * i + 1],
                top: top(s),
            })
            .collect(),
        deconfounded: deconfound(cfg, seed, p, m, &scores, design),
    }
}

/// What the deconfounded correlations need besides the measurements.
struct Design<'a> {
    clusters: Clusters,
    source: &'a [u32],
    length: Vec<f64>,
    zeros: Vec<f64>,
    real_step: f64,
}

/// Scores whose deconfounded correlations are reported (the rest stay in the main table).
const DECONFOUNDED_SCORES: usize = 6;

fn deconfound(
    cfg: &TheoryConfig,
    seed: u64,
    p: usize,
    m: &Measured,
    scores: &[(String, &[f64])],
    d: &Design<'_>,
) -> Option<Deconfounded> {
    if m.a_bias.len() != m.a.len() || m.a.is_empty() {
        return None;
    }
    let a_weight: Vec<f64> = m.a.iter().zip(&m.a_bias).map(|(a, b)| a - b).collect();
    let a_trainer: Vec<f64> = m.a.iter().zip(&d.length).map(|(a, n)| a * n).collect();
    let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { f64::NAN };
    let abs_sum = |v: &mut dyn Iterator<Item = f64>| v.map(f64::abs).sum::<f64>();
    // The second-order remainder at the configured step: exact − first order scaled to it.
    let scale = cfg.sgd_lr / d.real_step;
    let second_sgd = ratio(
        abs_sum(
            &mut m
                .dev_gain
                .iter()
                .zip(&m.dev_gain_first)
                .map(|(e, f)| e - f * scale),
        ),
        abs_sum(&mut m.dev_gain_first.iter().map(|f| f * scale)),
    );
    let chosen: Vec<&(String, &[f64])> = scores
        .iter()
        .take(DECONFOUNDED_SCORES)
        .chain(scores.iter().filter(|(n, _)| n == "‖g_x‖"))
        .collect();
    let controls: [&[f64]; 2] = [&d.length, &d.zeros];
    // A calibration-free target is used only where it was measured (not in cells saved before it
    // existed) and defined at every rollout (a step landing on w = 0 would leave cos undefined).
    let present = |v: &[f64]| v.len() == m.a.len() && v.iter().all(|x| x.is_finite());
    let cos_ok = present(&m.cos_gain) && present(&m.cos_gain_first);
    let auc_ok = present(&m.auc_gain) && present(&m.auc_gain_real);
    let rows: Vec<DeconfoundedScore> = chosen
        .par_iter()
        .enumerate()
        .map(|(i, (name, x))| {
            let boot = |target: &[f64], partial: bool, j: u64| {
                let ctrl: &[&[f64]] = if partial { &controls } else { &[] };
                cluster_bootstrap(
                    &d.clusters,
                    cfg.bootstrap,
                    derived_seed(
                        seed,
                        StreamKind::Bootstrap,
                        100 + p as u64,
                        8 * i as u64 + j,
                    ),
                    |idx| within_group_spearman(idx, d.source, x, target, ctrl),
                )
            };
            DeconfoundedScore {
                score: name.clone(),
                a: boot(&m.a, false, 0),
                a_weight: boot(&a_weight, false, 1),
                a_partial: boot(&m.a, true, 2),
                a_trainer: boot(&a_trainer, false, 3),
                gain_real: boot(&m.dev_gain_first, false, 4),
                // Δcos is ranked exact: it is no noisier than its first order (see
                // `CosGeometry::change`). ΔAUC is ranked at `sgd_lr`: at the real step most
                // rollouts change no pair's order, and ties at 0 would carry the ranking.
                cos_gain: cos_ok.then(|| boot(&m.cos_gain, false, 5)),
                auc_gain: auc_ok.then(|| boot(&m.auc_gain, false, 6)),
            }
        })
        .collect();
    Some(Deconfounded {
        real_step: d.real_step,
        mean_gain_first: plain_mean(&m.dev_gain_first),
        mean_gain_real: plain_mean(&m.dev_gain_real),
        second_order_share: ratio(
            abs_sum(
                &mut m
                    .dev_gain_real
                    .iter()
                    .zip(&m.dev_gain_first)
                    .map(|(e, f)| e - f),
            ),
            abs_sum(&mut m.dev_gain_first.iter().copied()),
        ),
        second_order_share_sgd: second_sgd,
        bias_share: ratio(
            abs_sum(&mut m.a_bias.iter().copied()),
            abs_sum(&mut m.a.iter().copied()),
        ),
        positive_weight_a: a_weight.iter().filter(|v| **v > 0.0).count() as f64
            / a_weight.len() as f64,
        mean_cos: m
            .a
            .iter()
            .zip(&m.grad)
            .map(|(a, g)| if *g > 0.0 { a / g } else { 0.0 })
            .sum::<f64>()
            / m.a.len() as f64,
        scores: rows,
        cos_w_star: finite(m.cos_w_star),
        mean_cos_gain: cos_ok.then(|| plain_mean(&m.cos_gain)),
        positive_cos_gain: cos_ok.then(|| share(&m.cos_gain, |v| v > 0.0)),
        cos_second_order_share: if cos_ok {
            finite(ratio(
                abs_sum(&mut m.cos_gain.iter().zip(&m.cos_gain_first).map(|(e, f)| e - f)),
                abs_sum(&mut m.cos_gain_first.iter().copied()),
            ))
        } else {
            None
        },
        dev_auc: finite(m.dev_auc),
        mean_auc_gain: auc_ok.then(|| plain_mean(&m.auc_gain)),
        positive_auc_gain: auc_ok.then(|| share(&m.auc_gain, |v| v > 0.0)),
        zero_auc_gain_real: auc_ok.then(|| share(&m.auc_gain_real, |v| v == 0.0)),
    })
}

/// `Some` for a finite value: an optional field holds no NaN, which JSON would write as `null`
/// and read back as `None`.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Share of `v` that satisfies `keep`.
fn share(v: &[f64], keep: impl Fn(f64) -> bool) -> f64 {
    v.iter().filter(|&&x| keep(x)).count() as f64 / v.len() as f64
}

/// Spearman with bootstrap intervals for every (x, y) pair, in parallel; job i of group `group`
/// always resamples with the same seed.
fn bootstrap_all(
    jobs: &[(&[f64], &[f64])],
    resamples: usize,
    seed: u64,
    group: u64,
) -> Vec<Estimate> {
    jobs.par_iter()
        .enumerate()
        .map(|(i, (x, y))| {
            spearman_bootstrap(
                x,
                y,
                resamples,
                derived_seed(seed, StreamKind::Bootstrap, group, i as u64),
            )
        })
        .collect()
}

/// Per-rollout gradient statistics at `head`; with a dev set also a(x), the dev gain and the
/// calibration-free targets.
fn measure(
    ctx: &ExperimentContext<'_>,
    head: &HeadParams,
    targets: &[f32],
    q_targets: &[f32],
    dev: Option<&DevSet>,
    sgd_lr: f64,
    real_lr: f64,
) -> Result<Measured> {
    let bundle = &ctx.corpus.bundle;
    let n_rollouts = bundle.n_rollouts();
    let Some(dev) = dev else {
        let stats = gradnorm::rollout_grad_stats(
            ctx.device,
            bundle,
            targets,
            head,
            &GradNormOptions {
                reduction: Reduction::Mean,
                projection: None,
                ..Default::default()
            },
        )?;
        let mut out = Measured::empty(0, f64::NAN);
        out.grad = stats.grad_sq.iter().map(|v| v.sqrt()).collect();
        out.centred = stats.centered_grad_sq.iter().map(|v| v.sqrt()).collect();
        return Ok(out);
    };
    let clean: Vec<f64> =
        gradnorm::total_gradient(ctx.device, bundle, q_targets, head, Reduction::Mean, None)?
            .into_iter()
            .map(|v| v / n_rollouts as f64)
            .collect();
    let clean_norm = clean.iter().map(|v| v * v).sum::<f64>().sqrt();
    if !(clean_norm > 0.0 && clean_norm.is_finite()) {
        return Err(Error::Other(format!(
            "the clean population gradient has norm {clean_norm}: a(x) is undefined at this head"
        )));
    }
    let direction: Vec<f32> = clean.iter().map(|v| (v / clean_norm) as f32).collect();
    let w_star = &bundle
        .teacher()
        .ok_or_else(|| Error::invalid("the informativeness check needs the teacher"))?
        .w_star;
    let mut out = project_updates(
        ctx.device, bundle, targets, head, direction, w_star, dev, sgd_lr, real_lr,
    )?;
    out.clean_norm = clean_norm;
    Ok(out)
}

impl Measured {
    /// No rollouts measured yet, room for `n`.
    fn empty(n: usize, dev_loss: f64) -> Self {
        let v = || Vec::with_capacity(n);
        Measured {
            a: v(),
            dev_gain: v(),
            grad: v(),
            centred: v(),
            a_bias: v(),
            dev_gain_first: v(),
            dev_gain_real: v(),
            cos_gain: v(),
            cos_gain_first: v(),
            auc_gain: v(),
            auc_gain_real: v(),
            clean_norm: f64::NAN,
            dev_loss,
            cos_w_star: f64::NAN,
            dev_auc: f64::NAN,
        }
    }
}

/// Columns of a projected gradient: a(x), the bias coordinate, ⟨g_w, w⟩, ⟨g_w, w*⟩, then one per
/// dev row.
const COL_A: usize = 0;
const COL_BIAS: usize = 1;
const COL_W: usize = 2;
const COL_W_STAR: usize = 3;
const COL_DEV: usize = 4;

/// What cos(w, w*) needs of the head and the teacher, in f64: ‖w‖², ⟨w, w*⟩ and ‖w*‖.
#[derive(Debug, Clone, Copy)]
struct CosGeometry {
    w_sq: f64,
    w_dot_star: f64,
    star_norm: f64,
}

impl CosGeometry {
    /// `None` when either vector is zero (or not finite): cos is then undefined.
    fn of(w: &[f32], w_star: &[f32]) -> Option<Self> {
        let dot = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum::<f64>()
        };
        let g = CosGeometry {
            w_sq: dot(w, w),
            w_dot_star: dot(w, w_star),
            star_norm: dot(w_star, w_star).sqrt(),
        };
        (g.w_sq > 0.0 && g.w_sq.is_finite() && g.star_norm > 0.0 && g.star_norm.is_finite())
            .then_some(g)
    }

    fn cos(&self) -> f64 {
        self.w_dot_star / (self.w_sq.sqrt() * self.star_norm)
    }

    /// cos(w − εg, w*) − cos(w, w*), exact and to first order, from ⟨g, w⟩, ⟨g, w*⟩ and ‖g‖².
    ///
    /// The exact change is written so that the two cosines are never subtracted: with B = ‖w‖²,
    /// B' = ‖w − εg‖² = B − 2ε⟨g, w⟩ + ε²‖g‖² and A = ⟨w, w*⟩,
    /// Δcos = [A(√B − √B') − ε⟨g, w*⟩√B] / (‖w*‖√B√B'), with √B − √B' = (B − B')/(√B + √B').
    /// The engine's projections are f32, but they only enter through the ε terms, so the exact
    /// value carries the same relative error as the first-order one (about 1e-7) rather than
    /// that error divided by the tiny change. NaN if the step lands on w = 0.
    fn change(&self, eps: f64, g_dot_w: f64, g_dot_star: f64, g_sq: f64) -> (f64, f64) {
        let b = self.w_sq;
        let b_new = b - 2.0 * eps * g_dot_w + eps * eps * g_sq;
        let (root, root_new) = (b.sqrt(), b_new.sqrt());
        let exact = if b_new > 0.0 {
            let shrink = (2.0 * eps * g_dot_w - eps * eps * g_sq) / (root + root_new);
            (self.w_dot_star * shrink - eps * g_dot_star * root)
                / (self.star_norm * root * root_new)
        } else {
            f64::NAN
        };
        // −ε⟨g, ∇cos⟩ with ∇cos = w*/(‖w‖‖w*‖) − cos·w/‖w‖².
        let first = eps * (self.w_dot_star * g_dot_w / b - g_dot_star) / (self.star_norm * root);
        (exact, first)
    }
}

/// The dev steps the AUC ranks (labelled correct or incorrect; neutral ones are left out, as in
/// the benchmark's metric) with their logits at the head.
struct AucRows {
    /// (dev row, logit, correct).
    rows: Vec<(usize, f64, bool)>,
    /// Positives × negatives.
    pairs: u64,
    /// 2U at the head.
    base: u64,
}

impl AucRows {
    /// `None` when the dev sample lacks a correct or an incorrect step.
    fn of(labels: &[i8], logits: &[f64]) -> Option<Self> {
        let rows: Vec<(usize, f64, bool)> = labels
            .iter()
            .zip(logits)
            .enumerate()
            .filter(|(_, (l, _))| **l != 0)
            .map(|(m, (&l, &z))| (m, z, l > 0))
            .collect();
        let pos = rows.iter().filter(|r| r.2).count() as u64;
        let neg = rows.len() as u64 - pos;
        if pos == 0 || neg == 0 {
            return None;
        }
        let mut scored: Vec<(f64, bool)> = rows.iter().map(|&(_, z, c)| (z, c)).collect();
        let base = twice_u(&mut scored);
        Some(AucRows {
            rows,
            pairs: pos * neg,
            base,
        })
    }

    fn auc(&self) -> f64 {
        self.base as f64 / (2 * self.pairs) as f64
    }

    /// ΔAUC when every logit moves to z_m − ε·p_m, p_m the projection of g_x on dev row m. The
    /// difference is taken in whole pair counts, so "no pair changed order" is exactly 0.
    fn change(&self, projected_dev: &[f32], eps: f64) -> f64 {
        let mut scored: Vec<(f64, bool)> = self
            .rows
            .iter()
            .map(|&(m, z, c)| (z - eps * f64::from(projected_dev[m]), c))
            .collect();
        let moved = twice_u(&mut scored) as i64 - self.base as i64;
        moved as f64 / (2 * self.pairs) as f64
    }
}

/// Twice the Mann–Whitney U of (score, correct) pairs: 2 for every correct step scored above an
/// incorrect one, 1 for every tie between the two; AUC = 2U / (2·positives·negatives), ties
/// counting one half as in [`crate::eval::metrics::auc`]. One sort, O(M log M); the count does
/// not depend on how the sort orders equal scores, so it is deterministic.
fn twice_u(scored: &mut [(f64, bool)]) -> u64 {
    scored.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let (mut neg_below, mut total, mut i) = (0u64, 0u64, 0usize);
    while i < scored.len() {
        let (mut pos, mut neg, mut j) = (0u64, 0u64, i);
        while j < scored.len() && scored[j].0 == scored[i].0 {
            if scored[j].1 {
                pos += 1;
            } else {
                neg += 1;
            }
            j += 1;
        }
        total += 2 * pos * neg_below + pos * neg;
        neg_below += neg;
        i = j;
    }
    total
}

/// One rollout's targets computed from its projected gradient.
struct RolloutTargets {
    dev_sgd: f64,
    dev_real: f64,
    dev_first: f64,
    cos: (f64, f64),
    auc_sgd: f64,
    auc_real: f64,
}

/// For every rollout of `bundle` at the linear `head`: a(x) = ⟨g_x, u⟩ for the unit `direction`
/// u, the dev gain −ΔL_dev(x) of one SGD step of size `sgd_lr` on x alone, and ‖g_x‖, ‖g_x^c‖
/// (g_x under `targets`, mean over the rollout's steps); also a(x)'s bias part, the dev gain at
/// the trainer's real per-rollout step `real_lr`, exact and to first order, Δcos(w, w*) at that
/// step (`w_star` the teacher's weights), exact and to first order, and the dev AUC change at
/// `sgd_lr` and at `real_lr`. The gradient engine projects each g_x onto [u; e_bias; [w; 0];
/// [w*; 0]; the augmented dev rows] (k = 4 + M directions), a chunk of rollouts at a time;
/// ‖g_w‖² is the engine's `w` group.
#[allow(clippy::too_many_arguments)]
fn project_updates(
    device: Device,
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    direction: Vec<f32>,
    w_star: &[f32],
    dev: &DevSet,
    sgd_lr: f64,
    real_lr: f64,
) -> Result<Measured> {
    let HeadParams::Linear(linear) = head else {
        return Err(Error::invalid(
            "the informativeness check projects updates of the linear head only",
        ));
    };
    if w_star.len() != linear.w.len() {
        return Err(Error::invalid(format!(
            "teacher has {} weights, the head {}",
            w_star.len(),
            linear.w.len()
        )));
    }
    let n_rollouts = bundle.n_rollouts();
    let bias_weight = f64::from(*direction.last().expect("a non-empty direction"));
    let mut bias_axis = vec![0.0f32; direction.len()];
    *bias_axis.last_mut().expect("non-empty") = 1.0;
    let weights_only = |w: &[f32]| w.iter().copied().chain([0.0]).collect::<Vec<f32>>();
    let mut directions = Vec::with_capacity(dev.rows.len() + COL_DEV);
    directions.push(direction);
    directions.push(bias_axis);
    directions.push(weights_only(&linear.w));
    directions.push(weights_only(w_star));
    directions.extend(dev.rows.iter().cloned());
    let k = directions.len();
    let opts = GradNormOptions {
        reduction: Reduction::Mean,
        projection: Some(Projection::Directions(directions)),
        ..Default::default()
    };
    let logits: Vec<f64> = dev.phi.iter().map(|phi| head.logit(phi)).collect();
    let base: Vec<f64> = logits
        .iter()
        .zip(&dev.q)
        .map(|(&z, &q)| bce_with_logits(z, q))
        .collect();
    let m = dev.q.len() as f64;
    // Either target is skipped (its vectors stay empty) where it is undefined: cos at w = 0
    // (not the case for the seeded uniform init, but a head could be zeroed), the AUC without
    // both classes among the dev steps.
    let geometry = CosGeometry::of(&linear.w, w_star);
    let auc_rows = AucRows::of(&dev.labels, &logits);

    let chunk = (CHUNK_BYTES / (4 * k)).max(1);
    let all: Vec<usize> = (0..n_rollouts).collect();
    let mut out = Measured::empty(n_rollouts, base.iter().sum::<f64>() / m);
    out.cos_w_star = geometry.map_or(f64::NAN, |g| g.cos());
    out.dev_auc = auc_rows.as_ref().map_or(f64::NAN, AucRows::auc);
    // ∇L_dev's coefficients on the augmented dev rows: (σ(z_m) − q_m)/M.
    let residual: Vec<f64> = logits
        .iter()
        .zip(&dev.q)
        .map(|(&z, &q)| (sigmoid(z) - q) / m)
        .collect();
    for part in all.chunks(chunk) {
        let stats =
            gradnorm::rollout_grad_stats_subset(device, bundle, targets, head, &opts, part)?;
        let (_, projected) = stats
            .projected
            .as_ref()
            .expect("a projection was asked for");
        let weight_sq = &stats
            .group_grad_sq
            .iter()
            .find(|(name, _)| name == "w")
            .ok_or_else(|| Error::Other("the linear head has no `w` gradient group".into()))?
            .1;
        let exact_gain = |dev_part: &[f32], step: f64| -> f64 {
            let change: f64 = dev_part
                .iter()
                .zip(logits.iter().zip(&dev.q).zip(&base))
                .map(|(&p, ((&z, &q), &b))| bce_with_logits(z - step * f64::from(p), q) - b)
                .sum();
            -change / m
        };
        let per_rollout: Vec<RolloutTargets> = projected
            .par_chunks(k)
            .zip(weight_sq.par_iter())
            .map(|(row, &g_sq)| {
                let dev_part = &row[COL_DEV..];
                let dev_first: f64 = real_lr
                    * dev_part
                        .iter()
                        .zip(&residual)
                        .map(|(&p, &r)| f64::from(p) * r)
                        .sum::<f64>();
                RolloutTargets {
                    dev_sgd: exact_gain(dev_part, sgd_lr),
                    dev_real: exact_gain(dev_part, real_lr),
                    dev_first,
                    cos: geometry.map_or((f64::NAN, f64::NAN), |geo| {
                        geo.change(
                            real_lr,
                            f64::from(row[COL_W]),
                            f64::from(row[COL_W_STAR]),
                            g_sq,
                        )
                    }),
                    auc_sgd: auc_rows
                        .as_ref()
                        .map_or(f64::NAN, |a| a.change(dev_part, sgd_lr)),
                    auc_real: auc_rows
                        .as_ref()
                        .map_or(f64::NAN, |a| a.change(dev_part, real_lr)),
                }
            })
            .collect();
        out.a
            .extend(projected.chunks(k).map(|row| f64::from(row[COL_A])));
        out.a_bias.extend(
            projected
                .chunks(k)
                .map(|row| f64::from(row[COL_BIAS]) * bias_weight),
        );
        out.dev_gain.extend(per_rollout.iter().map(|t| t.dev_sgd));
        out.dev_gain_real
            .extend(per_rollout.iter().map(|t| t.dev_real));
        out.dev_gain_first
            .extend(per_rollout.iter().map(|t| t.dev_first));
        if geometry.is_some() {
            out.cos_gain.extend(per_rollout.iter().map(|t| t.cos.0));
            out.cos_gain_first
                .extend(per_rollout.iter().map(|t| t.cos.1));
        }
        if auc_rows.is_some() {
            out.auc_gain.extend(per_rollout.iter().map(|t| t.auc_sgd));
            out.auc_gain_real
                .extend(per_rollout.iter().map(|t| t.auc_real));
        }
        out.grad.extend(stats.grad_sq.iter().map(|v| v.sqrt()));
        out.centred
            .extend(stats.centered_grad_sq.iter().map(|v| v.sqrt()));
    }
    Ok(out)
}

/// The bench's dev steps (all steps of dev records, neutral ones included: the clean target is
/// q*, not the human label), sampled down to `limit` with a seeded draw. Each keeps its bench
/// label for the dev AUC, which ranks correct against incorrect steps as the benchmark does.
fn dev_set(ctx: &ExperimentContext<'_>, limit: usize) -> Result<DevSet> {
    let bench = &ctx.corpus.bench;
    let feats = bench.features.as_ref().ok_or_else(|| {
        Error::invalid(format!(
            "{}: the informativeness check needs the bench's features",
            bench.path.display()
        ))
    })?;
    let teacher = ctx
        .corpus
        .bundle
        .teacher()
        .ok_or_else(|| Error::invalid("the informativeness check needs the teacher"))?;
    // (step, its bench label); the bench checked on load that labels and steps align.
    let mut steps: Vec<(usize, i8)> = bench
        .indices(Split::Dev)
        .into_iter()
        .flat_map(|i| {
            feats
                .rollout_steps(i)
                .zip(bench.records[i].labels.iter().copied())
        })
        .collect();
    if steps.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no dev steps for the clean dev loss",
            bench.path.display()
        )));
    }
    let available = steps.len();
    if limit > 0 && available > limit {
        let mut rng = stream(ctx.seed, StreamKind::DevSample, 0, 0);
        let keys: Vec<f64> = steps.iter().map(|_| uniform(&mut rng)).collect();
        let mut order: Vec<usize> = (0..available).collect();
        order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
        // Step indices are unique, so sorting the pairs orders them by step as before.
        let mut kept: Vec<(usize, i8)> = order[..limit].iter().map(|&i| steps[i]).collect();
        kept.sort_unstable();
        steps = kept;
    }
    let d = feats.dim();
    let rows = feats.features();
    let mut out = DevSet {
        rows: Vec::with_capacity(steps.len()),
        phi: Vec::with_capacity(steps.len()),
        q: Vec::with_capacity(steps.len()),
        labels: Vec::with_capacity(steps.len()),
        available,
    };
    for (s, label) in steps {
        out.labels.push(label);
        let phi: Vec<f64> = (s * d..(s + 1) * d)
            .map(|e| f64::from(rows.get(e)))
            .collect();
        let z = teacher
            .w_star
            .iter()
            .zip(&phi)
            .map(|(&w, &x)| f64::from(w) * x)
            .sum::<f64>()
            + f64::from(teacher.b_star);
        out.q.push(sigmoid(z));
        out.rows.push(
            (s * d..(s + 1) * d)
                .map(|e| rows.get(e))
                .chain([1.0])
                .collect(),
        );
        out.phi.push(phi);
    }
    Ok(out)
}

/// The clean dev loss of a head: mean BCE against q* over the bench's dev steps (the same steps,
/// sampled the same way, as the informativeness check's dev set).
pub struct CleanDevLoss(DevSet);

impl CleanDevLoss {
    /// The dev steps of the context's bench, at most `limit` of them (0: all).
    pub fn of(ctx: &ExperimentContext<'_>, limit: usize) -> Result<Self> {
        dev_set(ctx, limit).map(CleanDevLoss)
    }

    /// L_dev(head).
    pub fn loss(&self, head: &HeadParams) -> f64 {
        let dev = &self.0;
        dev.phi
            .iter()
            .zip(&dev.q)
            .map(|(phi, &q)| bce_with_logits(head.logit(phi), q))
            .sum::<f64>()
            / dev.q.len() as f64
    }
}

/// The flip probability of each step's hard MC label given its truth (`correct`, 0/1) and its
/// success rate r: (1 − r)^16 for a correct step, 1 − (1 − r)^16 for an incorrect one; an
/// early-stopped step is labelled 0 for sure. `None` without the success rates (the world).
fn eta_given_truth(truth: &StepTruth, correct: &[u8]) -> Option<Vec<f64>> {
    let rates = truth.success_rate.as_ref()?;
    Some(
        (0..correct.len())
            .map(|j| {
                let is_correct = correct[j] == 1;
                if truth.counts[j].is_none() {
                    return if is_correct { 1.0 } else { 0.0 };
                }
                let all_fail = (1.0 - f64::from(rates[j])).powi(MC_SAMPLES as i32);
                if is_correct { all_fail } else { 1.0 - all_fail }
            })
            .collect(),
    )
}

/// The probability that a step's hard MC label is wrong given what annotation observed, its
/// success count K (the paper's η ≈ η_eff(K)), read off the corpus itself: the share of steps with
/// that K (or unsampled, after an early stop) whose label disagrees with `correct`.
fn eta_given_count(truth: &StepTruth, correct: &[u8]) -> Vec<f64> {
    let class: Vec<usize> = truth
        .counts
        .iter()
        .copied()
        .map(|k| k.map_or(MC_SAMPLES as usize + 1, |k| k as usize))
        .collect();
    let classes = MC_SAMPLES as usize + 2;
    let (mut steps, mut wrong) = (vec![0u64; classes], vec![0u64; classes]);
    for (j, &c) in class.iter().enumerate() {
        let label = c != 0 && c <= MC_SAMPLES as usize;
        steps[c] += 1;
        wrong[c] += u64::from(label != (correct[j] == 1));
    }
    class
        .iter()
        .map(|&c| wrong[c] as f64 / steps[c] as f64)
        .collect()
}

/// S(x) = (1/n)Σ_j (1 − 4η_j) q*_j(1 − q*_j)‖ϕ_j‖² of every rollout.
fn signal_per_rollout(bundle: &FeatureBundle, teacher: &TeacherView, eta: &[f64]) -> Vec<f64> {
    (0..bundle.n_rollouts())
        .map(|x| {
            let s = bundle.rollout_steps(x);
            signal_s(&teacher.q[s.clone()], &eta[s.clone()], &teacher.phi_sq[s])
        })
        .collect()
}

/// Mean with a 95% normal interval (large samples).
fn plain_mean(v: &[f64]) -> MeanCi {
    weighted_mean(v.iter().map(|&x| (x, 1.0)))
}

fn weighted_mean(items: impl Iterator<Item = (f64, f64)> + Clone) -> MeanCi {
    let (mut sw, mut sw2, mut swx, mut n) = (0.0, 0.0, 0.0, 0usize);
    for (x, w) in items.clone() {
        sw += w;
        sw2 += w * w;
        swx += w * x;
        n += 1;
    }
    let mean = swx / sw;
    let var = items.map(|(x, w)| w * (x - mean).powi(2)).sum::<f64>() / sw;
    let n_eff = sw * sw / sw2;
    MeanCi {
        mean,
        half_width: if n_eff > 1.0 {
            Z95 * (var / (n_eff - 1.0)).sqrt()
        } else {
            f64::NAN
        },
        n,
    }
}

/// Mean of `target` over the top `fraction` of items by `score`. A group of tied scores that
/// straddles the cut contributes with the weight that keeps the count right: the expectation
/// over random tie-breaking (p̂(1 − p̂) is 0 for over 90% of rollouts, so the cut nearly always
/// falls in a tie). The interval treats the selection as fixed.
pub fn top_mean(score: &[f64], target: &[f64], fraction: f64) -> MeanCi {
    let n = score.len();
    let want = ((n as f64 * fraction).round() as usize).clamp(1, n) as f64;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let mut weighted = Vec::new();
    let (mut taken, mut i) = (0.0, 0);
    while i < n && taken < want {
        let mut j = i;
        while j + 1 < n && score[order[j + 1]] == score[order[i]] {
            j += 1;
        }
        let size = (j - i + 1) as f64;
        let w = ((want - taken) / size).min(1.0);
        weighted.extend(order[i..=j].iter().map(|&x| (target[x], w)));
        taken += w * size;
        i = j + 1;
    }
    weighted_mean(weighted.into_iter())
}

/// p̂(1 − p̂) bins: pure rollouts, then four bands up to the maximum 1/4.
const MIXTURE_EDGES: [f64; 4] = [0.15, 0.2, 0.24, 0.25];
/// R bins (R = 1 also for all-negative rollouts, by BIS's convention).
const RELIABILITY_EDGES: [f64; 5] = [0.3, 0.6, 0.8, 0.95, 1.0];

fn mixture_bin(v: f64) -> usize {
    if v <= 0.0 {
        0
    } else {
        1 + MIXTURE_EDGES
            .iter()
            .position(|&e| v <= e + 1e-12)
            .unwrap_or(MIXTURE_EDGES.len() - 1)
    }
}

fn reliability_bin(v: f64) -> usize {
    RELIABILITY_EDGES
        .iter()
        .position(|&e| v < e)
        .unwrap_or(RELIABILITY_EDGES.len() - 1)
}

fn heatmap(
    name: &str,
    quantity: &str,
    mixture: &[f64],
    reliability: &[f64],
    value: &[f64],
) -> Heatmap {
    let rows = MIXTURE_EDGES.len() + 1;
    let cols = RELIABILITY_EDGES.len();
    let mut sum = vec![vec![0.0; cols]; rows];
    let mut counts = vec![vec![0usize; cols]; rows];
    for x in 0..value.len() {
        let (r, c) = (mixture_bin(mixture[x]), reliability_bin(reliability[x]));
        sum[r][c] += value[x];
        counts[r][c] += 1;
    }
    let mut mixture_bins = vec!["0 (pure)".to_string()];
    let mut lo = 0.0;
    for e in MIXTURE_EDGES {
        mixture_bins.push(format!("({lo}, {e}]"));
        lo = e;
    }
    let mut reliability_bins = Vec::new();
    let mut lo = 0.0;
    for (i, e) in RELIABILITY_EDGES.iter().enumerate() {
        let close = if i + 1 == RELIABILITY_EDGES.len() {
            "]"
        } else {
            ")"
        };
        reliability_bins.push(format!("[{lo}, {e}{close}"));
        lo = *e;
    }
    Heatmap {
        name: name.into(),
        quantity: quantity.into(),
        mixture_bins,
        reliability_bins,
        mean: sum
            .iter()
            .zip(&counts)
            .map(|(s, c)| {
                s.iter()
                    .zip(c)
                    .map(|(&s, &c)| (c >= HEATMAP_MIN_ROLLOUTS).then(|| s / c as f64))
                    .collect()
            })
            .collect(),
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_mean_splits_tied_groups_evenly() {
        // Top 50% of 4 by score: 0.9 surely, then one of the two tied 0.5s: weight 1/2 each.
        let m = top_mean(&[0.9, 0.5, 0.1, 0.5], &[10.0, 2.0, 100.0, 4.0], 0.5);
        assert!((m.mean - (10.0 + 0.5 * 2.0 + 0.5 * 4.0) / 2.0).abs() < 1e-12);
        assert_eq!(m.n, 3);
        // No ties: the plain top mean.
        let m = top_mean(&[0.1, 0.9, 0.5, 0.7], &[1.0, 2.0, 3.0, 4.0], 0.5);
        assert!((m.mean - 3.0).abs() < 1e-12);
    }

    #[test]
    fn one_step_dev_gain_is_exact() {
        use crate::data::features::{BundleParts, FeatureData};
        use crate::head::LinearHead;
        // Two rollouts (2 steps, 1 step) in d = 2, a linear head, three dev steps.
        let feats = [1.0f32, 0.5, -0.5, 2.0, 0.25, -1.0];
        let bundle = FeatureBundle::from_parts(BundleParts::one_source(
            FeatureData::F32(feats.to_vec()),
            2,
            vec![0, 2, 3],
            vec![1.0, 0.0, 0.5],
            "s",
        ))
        .unwrap();
        let targets = [1.0f32, 0.0, 1.0];
        let (w, b) = ([0.3f32, -0.2], 0.1f32);
        let head = HeadParams::Linear(LinearHead { w: w.to_vec(), b });
        let dev_phi = [[0.5, 0.5], [-1.0, 0.25], [2.0, -0.5]];
        let dev = DevSet {
            rows: dev_phi
                .iter()
                .map(|p| vec![p[0] as f32, p[1] as f32, 1.0])
                .collect(),
            phi: dev_phi.iter().map(|p| p.to_vec()).collect(),
            q: vec![0.9, 0.2, 0.6],
            labels: vec![1, -1, 1],
            available: 3,
        };
        let u = [0.6f32, 0.0, 0.8];
        let (eta, real) = (0.5, 0.01);
        let got = project_updates(
            Device::Cpu,
            &bundle,
            &targets,
            &head,
            u.to_vec(),
            &[1.0, 0.5],
            &dev,
            eta,
            real,
        )
        .unwrap();
        // Direct computation: g = (1/n)Σ_j (σ(z_j) − y_j)[ϕ_j; 1], then the dev loss at w − ηg.
        let loss = |w: [f64; 3]| {
            dev_phi
                .iter()
                .zip(&dev.q)
                .map(|(p, &q)| bce_with_logits(w[0] * p[0] + w[1] * p[1] + w[2], q))
                .sum::<f64>()
                / 3.0
        };
        let w0 = [w[0] as f64, w[1] as f64, b as f64];
        for (x, steps) in [(0usize, 0..2usize), (1, 2..3)] {
            let n = steps.len() as f64;
            let mut g = [0.0f64; 3];
            for j in steps {
                let phi = [feats[2 * j] as f64, feats[2 * j + 1] as f64];
                let r = (sigmoid(w0[0] * phi[0] + w0[1] * phi[1] + w0[2]) - targets[j] as f64) / n;
                g[0] += r * phi[0];
                g[1] += r * phi[1];
                g[2] += r;
            }
            let a: f64 = g.iter().zip(&u).map(|(g, &u)| g * u as f64).sum();
            let stepped = [w0[0] - eta * g[0], w0[1] - eta * g[1], w0[2] - eta * g[2]];
            let gain = loss(w0) - loss(stepped);
            assert!((got.a[x] - a).abs() < 1e-6, "a({x}): {} vs {a}", got.a[x]);
            assert!(
                (got.dev_gain[x] - gain).abs() < 1e-6,
                "gain({x}): {} vs {gain}",
                got.dev_gain[x]
            );
            let norm = (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).sqrt();
            assert!((got.grad[x] - norm).abs() < 1e-9);
            // The bias part of a(x), and the dev gain at the real step: exact and first order.
            assert!((got.a_bias[x] - g[2] * f64::from(u[2])).abs() < 1e-6);
            let small = [
                w0[0] - real * g[0],
                w0[1] - real * g[1],
                w0[2] - real * g[2],
            ];
            let exact = loss(w0) - loss(small);
            assert!((got.dev_gain_real[x] - exact).abs() < 1e-9);
            let mut dev_grad = [0.0f64; 3];
            for (p, &q) in dev_phi.iter().zip(&dev.q) {
                let r = (sigmoid(w0[0] * p[0] + w0[1] * p[1] + w0[2]) - q) / 3.0;
                dev_grad[0] += r * p[0];
                dev_grad[1] += r * p[1];
                dev_grad[2] += r;
            }
            let first = real * dev_grad.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>();
            assert!((got.dev_gain_first[x] - first).abs() < 1e-7);
            // At a small step the first order is close to the exact gain.
            assert!(
                (exact - first).abs() < 0.05 * first.abs() + 1e-9,
                "{exact} vs {first}"
            );
        }
        assert!((got.dev_loss - loss(w0)).abs() < 1e-12);
    }

    /// A small problem for the calibration-free targets: four rollouts (2, 1, 3, 2 steps) in
    /// d = 3 with hard labels, a linear head, the teacher's weights, and ten dev steps of which
    /// eight carry a correct/incorrect label (two neutral).
    struct Tiny {
        bundle: FeatureBundle,
        feats: Vec<f32>,
        targets: Vec<f32>,
        offsets: Vec<usize>,
        w_star: Vec<f32>,
        dev: DevSet,
    }

    fn tiny() -> Tiny {
        use crate::data::features::{BundleParts, FeatureData};
        // Multiples of 1/4: exact in f32.
        let feats: Vec<f32> = (0..24)
            .map(|i| ((i * 7 + 3) % 11) as f32 / 4.0 - 1.25)
            .collect();
        let offsets = vec![0, 2, 3, 6, 8];
        let targets = vec![1.0f32, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0];
        let bundle = FeatureBundle::from_parts(BundleParts::one_source(
            FeatureData::F32(feats.clone()),
            3,
            offsets.clone(),
            targets.clone(),
            "s",
        ))
        .unwrap();
        let dev_phi: Vec<Vec<f32>> = (0..10)
            .map(|m| {
                (0..3)
                    .map(|c| ((m * 5 + c * 3 + 1) % 13) as f32 / 5.0 - 1.2)
                    .collect()
            })
            .collect();
        let dev = DevSet {
            rows: dev_phi
                .iter()
                .map(|p| p.iter().copied().chain([1.0]).collect())
                .collect(),
            phi: dev_phi
                .iter()
                .map(|p| p.iter().map(|&v| f64::from(v)).collect())
                .collect(),
            q: vec![0.5; 10],
            labels: vec![1, -1, 0, 1, -1, 1, -1, -1, 1, 0],
            available: 10,
        };
        Tiny {
            bundle,
            feats,
            targets,
            offsets,
            w_star: vec![1.0, 0.5, -0.5],
            dev,
        }
    }

    /// AUC by brute force over every (correct, incorrect) pair, ties one half.
    fn brute_auc(scores: &[f64], labels: &[i8]) -> f64 {
        let (mut hits, mut pairs) = (0.0, 0.0);
        for (sp, lp) in scores.iter().zip(labels) {
            for (sn, ln) in scores.iter().zip(labels) {
                if *lp == 1 && *ln == -1 {
                    pairs += 1.0;
                    hits += if sp > sn {
                        1.0
                    } else if sp == sn {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        hits / pairs
    }

    #[test]
    fn one_step_cos_and_auc_changes_are_exact() {
        use crate::head::LinearHead;
        let t = tiny();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let (w, b) = ([0.4f32, -0.3, 0.2], 0.05f32);
        let head = HeadParams::Linear(LinearHead { w: w.to_vec(), b });
        // A large `sgd_lr` so that some dev pairs change order; a real step large enough that the
        // second order of Δcos is visible next to the tolerance.
        let (sgd, real) = (1.0, 0.05);
        let got = project_updates(
            Device::Cpu,
            &t.bundle,
            &t.targets,
            &head,
            vec![0.0, 0.6, 0.0, 0.8],
            &t.w_star,
            &t.dev,
            sgd,
            real,
        )
        .unwrap();
        assert_eq!(got.cos_gain.len(), 4);
        assert_eq!(got.auc_gain.len(), 4);
        let w0: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
        let star: Vec<f64> = t.w_star.iter().map(|&v| f64::from(v)).collect();
        let cos = |v: &[f64]| dot(v, &star) / (dot(v, v).sqrt() * dot(&star, &star).sqrt());
        assert!((got.cos_w_star - cos(&w0)).abs() < 1e-12);
        let logits =
            |w: &[f64], b: f64| -> Vec<f64> { t.dev.phi.iter().map(|p| dot(w, p) + b).collect() };
        let base_auc = brute_auc(&logits(&w0, f64::from(b)), &t.dev.labels);
        assert!((got.dev_auc - base_auc).abs() < 1e-12);
        let (mut second_order_seen, mut auc_moved) = (false, 0);
        for x in 0..4 {
            // g_x = (1/n)Σ_j (σ(z_j) − y_j)[ϕ_j; 1], directly in f64.
            let steps = t.offsets[x]..t.offsets[x + 1];
            let n = steps.len() as f64;
            let (mut gw, mut gb) = (vec![0.0f64; 3], 0.0f64);
            for j in steps {
                let phi: Vec<f64> = t.feats[3 * j..3 * j + 3]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                let r = (sigmoid(dot(&w0, &phi) + f64::from(b)) - f64::from(t.targets[j])) / n;
                for (g, p) in gw.iter_mut().zip(&phi) {
                    *g += r * p;
                }
                gb += r;
            }
            // Δcos: apply the step to w explicitly and recompute both cosines.
            let stepped: Vec<f64> = w0.iter().zip(&gw).map(|(w, g)| w - real * g).collect();
            let exact = cos(&stepped) - cos(&w0);
            let (w_norm, star_norm) = (dot(&w0, &w0).sqrt(), dot(&star, &star).sqrt());
            let grad_cos: Vec<f64> = star
                .iter()
                .zip(&w0)
                .map(|(s, w)| s / (w_norm * star_norm) - cos(&w0) * w / (w_norm * w_norm))
                .collect();
            let first = -real * dot(&gw, &grad_cos);
            // The projections ⟨g_w, w⟩ and ⟨g_w, w*⟩ come back rounded to f32 (relative 2^-24);
            // they enter Δcos with weight at most ε‖g_w‖/‖w‖ each, so the error is below
            // 2·2^-24·ε‖g_w‖/‖w‖ ≈ 1.2e-7 of that scale: 1e-6 of it leaves a margin of 8.
            let tol = 1e-6 * real * dot(&gw, &gw).sqrt() / w_norm;
            assert!(
                (got.cos_gain[x] - exact).abs() < tol,
                "Δcos({x}): {} vs {exact}",
                got.cos_gain[x]
            );
            assert!(
                (got.cos_gain_first[x] - first).abs() < tol,
                "first-order Δcos({x}): {} vs {first}",
                got.cos_gain_first[x]
            );
            second_order_seen |= (exact - first).abs() > 10.0 * tol;
            // ΔAUC: the stepped head's dev logits, ranked by brute force, at both step sizes.
            for (eps, measured) in [(sgd, got.auc_gain[x]), (real, got.auc_gain_real[x])] {
                let w1: Vec<f64> = w0.iter().zip(&gw).map(|(w, g)| w - eps * g).collect();
                let z = logits(&w1, f64::from(b) - eps * gb);
                // The measured logits differ from these by the f32 rounding of the projections
                // (≈ 1e-7 here); no (correct, incorrect) pair is that close, so both must count
                // the same ordered pairs and agree to rounding of the final division.
                for (zp, lp) in z.iter().zip(&t.dev.labels) {
                    for (zn, ln) in z.iter().zip(&t.dev.labels) {
                        if *lp == 1 && *ln == -1 {
                            assert!((zp - zn).abs() > 1e-5, "near tie at ε = {eps}");
                        }
                    }
                }
                let want = brute_auc(&z, &t.dev.labels) - base_auc;
                assert!(
                    (measured - want).abs() < 1e-12,
                    "ΔAUC({x}) at ε = {eps}: {measured} vs {want}"
                );
                auc_moved += usize::from(eps == sgd && want != 0.0);
            }
        }
        // The check can tell the exact Δcos from its first order, and some step reorders pairs.
        assert!(second_order_seen);
        assert!(auc_moved > 0);
    }

    #[test]
    fn twice_u_counts_ties_as_half() {
        let scores = [1.0, 1.0, 2.0, 0.5, 2.0, 3.0, 0.5, -0.0, 0.0];
        let labels = [1i8, -1, 1, -1, -1, 1, 1, 1, -1];
        let mut scored: Vec<(f64, bool)> = scores
            .iter()
            .zip(&labels)
            .map(|(&s, &l)| (s, l > 0))
            .collect();
        let (pos, neg) = (5.0, 4.0);
        let auc = twice_u(&mut scored) as f64 / (2.0 * pos * neg);
        assert!((auc - brute_auc(&scores, &labels)).abs() < 1e-15);
    }

    #[test]
    fn cos_target_is_absent_at_zero_weights() {
        use crate::head::LinearHead;
        let t = tiny();
        let head = HeadParams::Linear(LinearHead {
            w: vec![0.0; 3],
            b: 0.1,
        });
        let got = project_updates(
            Device::Cpu,
            &t.bundle,
            &t.targets,
            &head,
            vec![0.0, 0.6, 0.0, 0.8],
            &t.w_star,
            &t.dev,
            1.0,
            0.05,
        )
        .unwrap();
        assert!(got.cos_gain.is_empty() && got.cos_gain_first.is_empty());
        assert!(got.cos_w_star.is_nan());
        // The other targets are still measured.
        assert_eq!(got.auc_gain.len(), 4);
        assert_eq!(got.dev_gain.len(), 4);
    }

    #[test]
    fn old_cells_and_results_load_without_the_new_targets() {
        use crate::head::LinearHead;
        let t = tiny();
        let head = HeadParams::Linear(LinearHead {
            w: vec![0.4, -0.3, 0.2],
            b: 0.05,
        });
        let fresh = project_updates(
            Device::Cpu,
            &t.bundle,
            &t.targets,
            &head,
            vec![0.0, 0.6, 0.0, 0.8],
            &t.w_star,
            &t.dev,
            1.0,
            0.05,
        )
        .unwrap();
        // A cell as saved before the targets existed: their keys are missing.
        let mut json = serde_json::to_value(&fresh).unwrap();
        for key in [
            "cos_gain",
            "cos_gain_first",
            "auc_gain",
            "auc_gain_real",
            "cos_w_star",
            "dev_auc",
        ] {
            json.as_object_mut().unwrap().remove(key).unwrap();
        }
        let old: Measured = serde_json::from_value(json).unwrap();
        assert!(old.cos_gain.is_empty() && old.auc_gain.is_empty());
        assert!(old.cos_w_star.is_nan() && old.dev_auc.is_nan());
        let cfg = TheoryConfig {
            bootstrap: 20,
            ..TheoryConfig::default()
        };
        let source = [0u32; 4];
        let design = Design {
            clusters: Clusters::new(&source, &[0, 1, 2, 3]),
            source: &source,
            length: vec![2.0, 1.0, 3.0, 2.0],
            zeros: vec![1.0, 0.0, 2.0, 1.0],
            real_step: 0.05,
        };
        let score = [0.1, 0.4, 0.2, 0.3];
        let scores = vec![("s".to_string(), &score[..])];
        let d = deconfound(&cfg, 0, 0, &old, &scores, &design).unwrap();
        assert!(d.mean_cos_gain.is_none() && d.mean_auc_gain.is_none());
        assert!(d.scores[0].cos_gain.is_none() && d.scores[0].auc_gain.is_none());
        let d = deconfound(&cfg, 0, 0, &fresh, &scores, &design).unwrap();
        assert!(d.mean_cos_gain.is_some() && d.zero_auc_gain_real.is_some());
        assert!(d.scores[0].cos_gain.is_some() && d.scores[0].auc_gain.is_some());
        // Results written before parse, with the new fields absent.
        let mut json = serde_json::to_value(&d).unwrap();
        let obj = json.as_object_mut().unwrap();
        for key in [
            "cos_w_star",
            "mean_cos_gain",
            "positive_cos_gain",
            "cos_second_order_share",
            "dev_auc",
            "mean_auc_gain",
            "positive_auc_gain",
            "zero_auc_gain_real",
        ] {
            obj.remove(key).unwrap();
        }
        for s in obj["scores"].as_array_mut().unwrap() {
            let s = s.as_object_mut().unwrap();
            s.remove("cos_gain").unwrap();
            s.remove("auc_gain").unwrap();
        }
        let parsed: Deconfounded = serde_json::from_value(json).unwrap();
        assert!(parsed.mean_cos_gain.is_none() && parsed.scores[0].auc_gain.is_none());
        // (Compared as JSON: a NaN interval end, written as null, is then equal to itself.)
        assert_eq!(
            serde_json::to_string(&parsed.scores[0].gain_real).unwrap(),
            serde_json::to_string(&d.scores[0].gain_real).unwrap()
        );
    }

    #[test]
    fn bins_cover_every_value() {
        assert_eq!(mixture_bin(0.0), 0);
        assert_eq!(mixture_bin(1.0 / 12.0 * 11.0 / 12.0), 1);
        assert_eq!(mixture_bin(0.1875), 2);
        assert_eq!(mixture_bin(2.0 / 9.0), 3);
        assert_eq!(mixture_bin(0.25), 4);
        assert_eq!(reliability_bin(0.0625), 0);
        assert_eq!(reliability_bin(0.95), 4);
        assert_eq!(reliability_bin(1.0), 4);
    }
}
