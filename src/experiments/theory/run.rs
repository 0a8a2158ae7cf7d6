//! Running the theory checks: the config, the shared setup (teacher view, random streams, cell
//! keys) and the order in which the checks run.

use super::informativeness::{Finding6, Informativeness};
use super::mixture::MixtureCheck;
use super::noise::NoiseCheck;
use super::reliability::ReliabilityCheck;
use super::truth::{StepTruth, TruthKind};
use crate::error::{Error, Result};
use crate::experiments::config::TrainSettings;
use crate::experiments::context::ExperimentContext;
use crate::experiments::report::Rendered;
use crate::logistic::sigmoid;
use crate::sim;
use serde::Serialize;

/// Settings of the theory checks (`[theory]` in an experiment file). Every field has a default.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TheoryConfig {
    /// Eqs. 5–6: independent label draws per step (the CIs are over draws).
    pub label_draws: usize,
    /// Eqs. 5–6: equal-count bins of q*.
    pub q_bins: usize,
    /// Eq. 6: symmetric flip rates η, each in (0, 1/2).
    pub flip_etas: Vec<f64>,
    /// Lemma 2: Monte Carlo label draws per rollout.
    pub mixture_draws: usize,
    /// Lemma 2: a rollout's measured bias counts as inside [0, θ/n] when within this many
    /// Monte Carlo standard errors of it.
    pub allowance_z: f64,
    /// Lemma 3: reliability thresholds τ, each in (0, 1).
    pub taus: Vec<f64>,
    /// Lemma 3: simulated (r, K) pairs for the posterior check.
    pub posterior_draws: usize,
    /// Informativeness: mid-training points, as fractions of the full-data run's optimiser steps.
    pub checkpoints: Vec<f64>,
    /// Informativeness: step size η of the one SGD step w − η·g_x whose clean dev-loss change is
    /// measured.
    pub sgd_lr: f64,
    /// Informativeness: most bench dev steps in the clean dev loss (a seeded sample; 0 = all).
    pub dev_steps: usize,
    /// BIS smoothing α.
    pub alpha: f64,
    /// GraNd: random initialisations averaged.
    pub grand_inits: usize,
    /// EL2N: fraction of every source the proxy is trained on (at the tuned learning rate, the
    /// experiment's batch).
    pub el2n_fraction: f64,
    /// EL2N: passes of the proxy over its subset.
    pub el2n_epochs: usize,
    /// Top fractions of rollouts whose mean a(x) is reported per score.
    pub top_fractions: Vec<f64>,
    /// Bootstrap resamples of every Spearman interval.
    pub bootstrap: usize,
    /// τ of η_eff(K) = P(r < τ | K) in the paper's S(x) (the empirical Finding 6 check).
    pub signal_tau: f64,
    /// Decision rules of the empirical checks, stated before the run.
    pub rules: super::empirical::EmpiricalRules,
}

impl Default for TheoryConfig {
    fn default() -> Self {
        TheoryConfig {
            label_draws: 32,
            q_bins: 10,
            flip_etas: vec![0.05, 0.1, 0.2],
            mixture_draws: 400,
            allowance_z: 3.0,
            taus: vec![0.1, 0.2],
            posterior_draws: 1_000_000,
            checkpoints: vec![0.25, 0.5],
            sgd_lr: 0.1,
            dev_steps: 4096,
            alpha: 0.05,
            grand_inits: 4,
            el2n_fraction: 0.1,
            el2n_epochs: 1,
            top_fractions: vec![0.1, 0.25],
            bootstrap: 200,
            signal_tau: 0.1,
            rules: super::empirical::EmpiricalRules::default(),
        }
    }
}

impl TheoryConfig {
    /// Checks every setting; the message names the offending key.
    pub fn validate(&self) -> Result<()> {
        let rule = |ok: bool, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::invalid(format!("[theory] {msg}")))
            }
        };
        rule(self.label_draws >= 2, "label_draws must be at least 2")?;
        rule(self.q_bins >= 1, "q_bins must be at least 1")?;
        rule(
            self.flip_etas.iter().all(|e| *e > 0.0 && *e < 0.5),
            "flip_etas must lie in (0, 0.5)",
        )?;
        rule(self.mixture_draws >= 2, "mixture_draws must be at least 2")?;
        rule(
            self.allowance_z.is_finite() && self.allowance_z >= 0.0,
            "allowance_z must be a non-negative number",
        )?;
        rule(
            !self.taus.is_empty() && self.taus.iter().all(|t| *t > 0.0 && *t < 1.0),
            "taus must be a non-empty list of numbers in (0, 1)",
        )?;
        rule(
            self.posterior_draws >= 1,
            "posterior_draws must be positive",
        )?;
        rule(
            self.checkpoints.iter().all(|f| *f > 0.0 && *f <= 1.0),
            "checkpoints must lie in (0, 1]",
        )?;
        rule(
            self.sgd_lr.is_finite() && self.sgd_lr > 0.0,
            "sgd_lr must be positive",
        )?;
        rule(
            self.alpha.is_finite() && self.alpha >= 0.0,
            "alpha must be non-negative",
        )?;
        rule(self.grand_inits >= 1, "grand_inits must be at least 1")?;
        rule(
            self.el2n_fraction > 0.0 && self.el2n_fraction <= 1.0,
            "el2n_fraction must lie in (0, 1]",
        )?;
        rule(self.el2n_epochs >= 1, "el2n_epochs must be at least 1")?;
        rule(
            !self.top_fractions.is_empty()
                && self.top_fractions.iter().all(|f| *f > 0.0 && *f <= 1.0),
            "top_fractions must be a non-empty list in (0, 1]",
        )?;
        rule(
            self.signal_tau > 0.0 && self.signal_tau < 1.0,
            "signal_tau must lie in (0, 1)",
        )?;
        self.rules.validate()?;
        rule(self.bootstrap >= 10, "bootstrap must be at least 10")
    }
}

/// What the checks ran on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Setup {
    /// Rollouts in the corpus.
    pub rollouts: usize,
    /// Steps in the corpus.
    pub steps: usize,
    /// Feature dimension d.
    pub dim: usize,
    /// Master seed.
    pub seed: u64,
    /// The device that ran gradients and training.
    pub device: String,
    /// The settings used.
    pub config: TheoryConfig,
    /// Whose truth the checks measured against (left out for the simulator).
    #[serde(default, skip_serializing_if = "TruthKind::is_simulator")]
    pub truth: TruthKind,
}

/// Everything the theory checks measured: the only input of [`render`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TheoryResults {
    /// What ran.
    pub setup: Setup,
    /// Eq. 5 (no flips).
    pub eq5: NoiseCheck,
    /// Eq. 6, one per flip rate.
    pub eq6: Vec<NoiseCheck>,
    /// Lemma 2.
    pub lemma2: MixtureCheck,
    /// Lemma 3.
    pub lemma3: ReliabilityCheck,
    /// Informativeness of each rollout's update against ground truth.
    pub informativeness: Informativeness,
    /// Finding 6.
    pub finding6: Finding6,
    /// The claims confronted with the corpus's own MC labels (absent in results written before
    /// they existed).
    #[serde(default)]
    pub empirical: Option<super::empirical::EmpiricalChecks>,
    /// Every verdict: implementation identities and empirical checks.
    #[serde(default)]
    pub checks: Vec<crate::experiments::checks::Check>,
    /// True when `checks` was added after the run by `mprm report` (the run predates decision
    /// rules stated in its config), so its verdicts are post hoc.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checks_post_hoc: bool,
}

/// Runs every check.
pub fn run(cfg: &TheoryConfig, ctx: &ExperimentContext<'_>) -> Result<TheoryResults> {
    cfg.validate()?;
    let truth = StepTruth::open(&ctx.corpus.dir, &ctx.corpus.bundle)?;
    let teacher = TeacherView::of(ctx)?;
    // The theory is about the linear head; the rest of the protocol is the experiment's.
    let train = TrainSettings {
        head: crate::head::HeadName::Linear,
        ..ctx.train.clone()
    };
    let ctx = ExperimentContext {
        corpus: ctx.corpus,
        cells: ctx.cells,
        device: ctx.device,
        seed: ctx.seed,
        train: &train,
    };
    let stages = crate::progress::bar(5, "theory");
    stages.set_message("Eqs. 5–6");
    let (eq5, eq6) = super::noise::run(cfg, &ctx, &teacher)?;
    stages.inc(1);
    stages.set_message("Lemma 2");
    let lemma2 = super::mixture::run(cfg, &ctx, &teacher)?;
    stages.inc(1);
    stages.set_message("Lemma 3");
    let lemma3 = super::reliability::run(cfg, &ctx, &truth)?;
    stages.inc(1);
    stages.set_message("informativeness");
    let (informativeness, finding6) = super::informativeness::run(cfg, &ctx, &teacher, &truth)?;
    stages.inc(1);
    stages.set_message("empirical checks");
    let empirical = super::empirical::run(cfg, &ctx, &teacher, &truth, &lemma3.prior)?;
    stages.inc(1);
    stages.finish_and_clear();
    let mut checks = super::summary::identity_checks(&eq5, &eq6, &lemma2, &lemma3);
    checks.extend(empirical.checks(&cfg.rules));
    Ok(TheoryResults {
        setup: Setup {
            rollouts: ctx.corpus.bundle.n_rollouts(),
            steps: ctx.corpus.bundle.n_steps(),
            dim: ctx.corpus.bundle.dim(),
            seed: ctx.seed,
            device: ctx.device.to_string(),
            config: cfg.clone(),
            truth: truth.kind,
        },
        eq5,
        eq6,
        lemma2,
        lemma3,
        informativeness,
        finding6,
        empirical: Some(empirical),
        checks,
        checks_post_hoc: false,
    })
}

/// Tables, figures and the summary of the results (a pure function of them, so `mprm report`
/// redraws identical files).
pub fn render(r: &TheoryResults) -> Rendered {
    super::render::render(r)
}

/// The teacher's view of every step, in f64: q*_j = σ(⟨w*, ϕ_j⟩ + b*) recomputed from the stored
/// features (so it is exactly what the gradient engine sees at w*), and ‖ϕ_j‖².
pub struct TeacherView {
    /// q* per step.
    pub q: Vec<f64>,
    /// ‖ϕ‖² per step.
    pub phi_sq: Vec<f64>,
}

impl TeacherView {
    /// Largest tolerated gap between the recomputed q* and the bundle's stored `teacher_q`
    /// (which went through f32 rounding of the features and of q* itself).
    const STORED_Q_TOLERANCE: f64 = 1e-4;

    /// Recomputes the teacher's view from the context's bundle, checking it against the stored q*.
    pub fn of(ctx: &ExperimentContext<'_>) -> Result<Self> {
        let bundle = &ctx.corpus.bundle;
        let teacher = bundle.teacher().ok_or_else(|| {
            Error::invalid("the theory checks need a synthetic bundle (with the teacher)")
        })?;
        let d = bundle.dim();
        let feats = bundle.features();
        let (mut q, mut phi_sq) = (Vec::with_capacity(bundle.n_steps()), Vec::new());
        for j in 0..bundle.n_steps() {
            let (mut z, mut norm) = (teacher.b_star as f64, 0.0);
            for (k, &w) in teacher.w_star.iter().enumerate() {
                let x = feats.get(j * d + k) as f64;
                z += w as f64 * x;
                norm += x * x;
            }
            let qj = sigmoid(z);
            if (qj - teacher.q[j] as f64).abs() > Self::STORED_Q_TOLERANCE {
                return Err(Error::bundle(
                    bundle.path().unwrap_or(std::path::Path::new("(in memory)")),
                    "teacher_q",
                    format!(
                        "step {j}: stored q* {} but σ(⟨w*, ϕ⟩ + b*) = {qj}: the teacher does not \
                         match the features",
                        teacher.q[j]
                    ),
                ));
            }
            q.push(qj);
            phi_sq.push(norm);
        }
        Ok(TeacherView { q, phi_sq })
    }
}

/// Families of random streams, one per check (kept clear of the simulator's own kinds).
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(super) enum StreamKind {
    Labels = 1001,
    Mixture = 1002,
    Posterior = 1003,
    DevSample = 1004,
    Bootstrap = 1005,
    Derived = 1006,
}

pub(super) fn stream(seed: u64, kind: StreamKind, a: u64, b: u64) -> rand_chacha::ChaCha8Rng {
    sim::rng::keyed(seed, kind as u64, a, b)
}

/// A seed for a library call that takes one (bootstrap, initialisation), derived from the
/// master seed and two indices.
pub(super) fn derived_seed(seed: u64, kind: StreamKind, a: u64, b: u64) -> u64 {
    use rand::Rng;
    stream(seed, kind, a, b).next_u64()
}

/// The key of a cell: its name plus a hash of everything its value depends on (the corpus, the
/// protocol, the seed, the device and the cell's own settings), so a changed setting recomputes
/// instead of reusing a stale value. A hash that changes between builds only costs a rerun.
pub(super) fn cell_key(
    ctx: &ExperimentContext<'_>,
    name: &str,
    settings: &impl Serialize,
) -> String {
    let stamp = serde_json::json!({
        "corpus": ctx.corpus.manifest.get("settings"),
        "train": ctx.train,
        "seed": ctx.seed,
        "device": ctx.device.to_string(),
        "settings": settings,
    });
    format!(
        "theory-{name}-{}",
        crate::experiments::cells::settings_hash(&stamp)
    )
}
