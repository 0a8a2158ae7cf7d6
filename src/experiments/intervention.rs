//! Interventions: does label mixture cause useful training updates, does label reliability, and
//! do they interact? Correlations between a rollout score and a gradient quantity cannot answer
//! that; training on subsets chosen on purpose can.
//!
//! **Factorial (2 × 2).** Within every source, rollouts fall into four pools: mixture high (mixed
//! labels, 0 < p̂ < 1) or low (every step positive, p̂ = 1), crossed with reliability high or low
//! (R above or below the median R of the rollout's source and mixture level). All-zero rollouts
//! are left out (their R is a convention, not a measurement). Within each (source, length band)
//! stratum the four cells take the same number of rollouts, so the cells have the same size, the
//! same source mix and the same length distribution by construction; the number of zero-score
//! steps cannot be matched against mixture (a mixed rollout has at least one, an all-positive one
//! none), so its imbalance is reported with the others as standardised mean differences. Each
//! replicate draws fresh rollouts for every cell and trains one linear head per cell; effects are
//! main effects (mean over the other factor of high − low) and the interaction (difference of
//! differences) on bench-test Overall and AUC, and on two outcomes that need no threshold: the
//! clean dev loss (BCE against q*, which still rewards calibration) and cos(w, w*) (which does
//! not).
//!
//! **Datamodel.** Many random subsets (a fixed fraction of every source), each trained once:
//! uniform draws (TRAK's protocol), or with `datamodel_tilt` > 0 draws tilted at random towards
//! or away from mixture and R, so the subsets differ in them on purpose. Overall is regressed on
//! the standardised subset statistics (mixture, R, share of zero-score steps, share of
//! pseudo-positive steps from the simulator's truth, mean length, source entropy), with bootstrap
//! intervals over subsets. On the same runs every per-rollout score (the label statistics,
//! GraNd, EL2N from one proxy, TracIn and influence from one run on a subset of the datamodel's
//! size, the simulator-only S(x) and a(x), and the keys of the selection experiment's gradient
//! selectors exactly as they select: EL2N's ensemble, LESS, TracIn, influence, the oracle and the
//! hybrid, from a whole-pool reference run at the datamodel's learning rate) gets its linear
//! datamodeling score (LDS): the Spearman correlation over subsets between the subset's summed
//! score and its trained Overall.
//!
//! Everything is replicated over corpus draws (each a fresh `mprm synth` corpus with the
//! experiment's settings and another seed); intervals are t-intervals over the draws' means
//! (between-draw variance), and the between-seed spread within a draw is reported next to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cells::CellStore;
use super::checks::{Check, CheckKind, Rule, checks_table};
use super::config::{CorpusConfig, TrainSettings};
use super::context::{Corpus, ExperimentContext};
use super::report::Rendered;
use super::stats::{MeanCi, mean_ci95, percentile_ci95, sample_sd, solve, spearman};
use super::table::{Cell, Table};
use super::theory::TeacherView;
use super::theory::empirical::{paper_eta, paper_signal};
use super::theory::informativeness::CleanDevLoss;
use super::theory::reliability::corpus_prior;
use super::theory::truth::StepTruth;
use super::training::{TunedLr, heads_along_training, train_config, train_eval, tune_lr};
use crate::data::label_stats::LabelStats;
use crate::data::labels::LabelScheme;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gradient_selection::{
    Checkpoint, DevSteps, GradientInputs, GradientSettings, ProxySpec, ReferenceSpec, el2n_keys,
    gradient_dots, gradient_selector, grand_keys, influence_keys, labelled_dev, random_fraction,
    reference_run, teacher_head, tracin_keys, train_proxy,
};
use crate::gradnorm::{self, Reduction};
use crate::head::{HeadKind, HeadParams};
use crate::train::plan::derive_seed;
use crate::train::schedule::{Schedule, total_steps};

/// `[intervention]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterventionConfig {
    /// Corpus draws (seeds of `mprm synth` with the experiment's corpus settings).
    pub corpus_seeds: Vec<u64>,
    /// Replicates of the factorial per draw (fresh rollouts and training seed each).
    pub factorial_seeds: usize,
    /// Largest share of the corpus one factorial cell may take (the pools usually bind first).
    pub factorial_fraction: f64,
    /// Random subsets of the datamodel per draw.
    pub datamodel_subsets: usize,
    /// Fraction of every source in a datamodel subset.
    pub datamodel_fraction: f64,
    /// Spread of the datamodel's tilts: 0 draws every subset uniformly (TRAK's random subsets);
    /// t > 0 draws each subset with weights exp(β_m·z(p̂(1−p̂)) + β_r·z(R)), β ~ N(0, t²) fresh
    /// per subset, so subsets differ in mixture and R on purpose (a randomised dose) rather than
    /// by sampling noise alone.
    pub datamodel_tilt: f64,
    /// BIS smoothing α of the BIS score in the LDS table.
    pub alpha: f64,
    /// GraNd initialisations for its LDS.
    pub grand_inits: usize,
    /// Bootstrap resamples of the datamodel coefficients and the LDS.
    pub bootstrap: usize,
    /// Checkpoints of TracIn's run (the midpoints of as many equal stretches of it).
    pub tracin_checkpoints: usize,
    /// Damping of the influence scores' Hessian, relative to its mean eigenvalue.
    pub influence_damping: f64,
    /// τ of η_eff(K) in the paper's S(x).
    pub signal_tau: f64,
    /// Bench dev steps in the clean dev loss of the factorial heads (0: all).
    pub dev_steps: usize,
    /// Decision rules, stated before the run.
    pub rules: InterventionRules,
}

impl Default for InterventionConfig {
    fn default() -> Self {
        InterventionConfig {
            corpus_seeds: vec![42, 43, 44],
            factorial_seeds: 10,
            factorial_fraction: 0.1,
            datamodel_subsets: 200,
            datamodel_fraction: 0.25,
            datamodel_tilt: 0.0,
            alpha: 0.05,
            grand_inits: 4,
            bootstrap: 200,
            tracin_checkpoints: 4,
            influence_damping: 0.01,
            signal_tau: 0.1,
            dev_steps: 4096,
            rules: InterventionRules::default(),
        }
    }
}

/// The decision rules of the intervention checks (Overall in points ×100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterventionRules {
    /// Main effect of label mixture on bench-test Overall.
    pub mixture: Rule,
    /// Main effect of label reliability on bench-test Overall.
    pub reliability: Rule,
    /// Mixture × reliability interaction on bench-test Overall.
    pub interaction: Rule,
    /// Main effect of mixture on the decrease of the clean dev loss (×100).
    pub mixture_dev_loss: Rule,
    /// Main effect of reliability on the decrease of the clean dev loss (×100).
    pub reliability_dev_loss: Rule,
    /// Standardised datamodel coefficient of subset mixture on Overall.
    pub datamodel_mixture: Rule,
    /// Standardised datamodel coefficient of subset R on Overall.
    pub datamodel_reliability: Rule,
}

impl Default for InterventionRules {
    fn default() -> Self {
        InterventionRules {
            // A positive effect at all counts; an interval over 10 points wide decides nothing.
            mixture: Rule::new(0.0, 10.0),
            reliability: Rule::new(0.0, 10.0),
            interaction: Rule::new(0.0, 10.0),
            // Hundredths of a nat of clean dev loss; an interval over 2 wide decides nothing.
            mixture_dev_loss: Rule::new(0.0, 2.0),
            reliability_dev_loss: Rule::new(0.0, 2.0),
            // Points of Overall per standard deviation of the subset statistic.
            datamodel_mixture: Rule::new(0.0, 2.0),
            datamodel_reliability: Rule::new(0.0, 2.0),
        }
    }
}

impl InterventionConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        let rule = |ok: bool, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::invalid(format!("[intervention] {msg}")))
            }
        };
        rule(
            self.corpus_seeds.len() >= 2,
            "corpus_seeds needs at least two draws (replication over corpora)",
        )?;
        rule(
            self.factorial_seeds >= 2,
            "factorial_seeds must be at least 2",
        )?;
        rule(
            self.factorial_fraction > 0.0 && self.factorial_fraction <= 0.25,
            "factorial_fraction must lie in (0, 0.25]",
        )?;
        rule(
            self.datamodel_subsets >= 20,
            "datamodel_subsets must be at least 20",
        )?;
        rule(
            self.datamodel_fraction > 0.0 && self.datamodel_fraction < 1.0,
            "datamodel_fraction must lie in (0, 1)",
        )?;
        rule(
            self.datamodel_tilt >= 0.0 && self.datamodel_tilt.is_finite(),
            "datamodel_tilt must be a non-negative number",
        )?;
        rule(self.alpha >= 0.0, "alpha must be non-negative")?;
        rule(self.grand_inits >= 1, "grand_inits must be at least 1")?;
        rule(self.bootstrap >= 10, "bootstrap must be at least 10")?;
        rule(
            self.tracin_checkpoints >= 1,
            "tracin_checkpoints must be at least 1",
        )?;
        rule(
            self.influence_damping > 0.0 && self.influence_damping.is_finite(),
            "influence_damping must be a positive number",
        )?;
        rule(
            self.signal_tau > 0.0 && self.signal_tau < 1.0,
            "signal_tau must lie in (0, 1)",
        )?;
        let r = &self.rules;
        r.mixture.validate("[intervention.rules] mixture")?;
        r.reliability.validate("[intervention.rules] reliability")?;
        r.interaction.validate("[intervention.rules] interaction")?;
        r.mixture_dev_loss
            .validate("[intervention.rules] mixture_dev_loss")?;
        r.reliability_dev_loss
            .validate("[intervention.rules] reliability_dev_loss")?;
        r.datamodel_mixture
            .validate("[intervention.rules] datamodel_mixture")?;
        r.datamodel_reliability
            .validate("[intervention.rules] datamodel_reliability")
    }
}

/// The four factorial cells, in a fixed order: (mixture, reliability) high/low.
pub const CELLS: [&str; 4] = ["mix+ rel+", "mix+ rel−", "mix− rel+", "mix− rel−"];

/// The covariates whose balance across the factorial cells is reported.
pub const BALANCE: [&str; 4] = ["steps", "zero-score steps", "mean MC", "p̂(1−p̂)"];

/// The subset statistics of the datamodel regression.
pub const FEATURES: [&str; 6] = [
    "mixture p̂(1−p̂)",
    "R",
    "zero-score share",
    "pseudo-positive share",
    "mean length",
    "source entropy",
];

/// One factorial replicate: the four cells' test Overall and AUC (×100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replicate {
    /// Seed of the draw of rollouts and of training.
    pub seed: u64,
    /// Overall per cell, in [`CELLS`] order.
    pub overall: [f64; 4],
    /// AUC per cell.
    pub auc: [f64; 4],
    /// Clean dev loss (mean BCE against q* on the bench's dev steps) ×100 per cell; empty in
    /// results written before it was measured.
    #[serde(default, with = "super::nan::vec")]
    pub clean_dev_loss: Vec<f64>,
    /// cos(w, w*) of each cell's head: how far it points along the teacher, whatever its bias
    /// and scale (calibration-free); empty in results written before it was measured.
    #[serde(default, with = "super::nan::vec")]
    pub teacher_cos: Vec<f64>,
}

/// One corpus draw's factorial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactorialDraw {
    /// Rollouts per cell.
    pub cell_size: usize,
    /// Learning rate (tuned on dev for a random subset of the cell size).
    pub lr: f64,
    /// Rates tried beyond the configured grid because the best sat at an end of it.
    pub lr_extensions: usize,
    /// The choice still sits at an end of the rates tried (extension cap hit).
    pub lr_at_edge: bool,
    /// Replicates.
    pub replicates: Vec<Replicate>,
    /// Standardised mean difference (high − low level) of each [`BALANCE`] covariate, for the
    /// mixture factor and the reliability factor, in the first replicate's subsets.
    pub balance: Vec<[f64; 2]>,
}

/// One datamodel subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatamodelRun {
    /// The subset's statistics, in [`FEATURES`] order.
    pub features: Vec<f64>,
    /// Summed per-rollout scores, in the order of [`DatamodelDraw::scores`].
    pub score_sums: Vec<f64>,
    /// Bench-test Overall ×100.
    pub overall: f64,
    /// The subset's tilt (β_m, β_r); empty for a uniform draw.
    #[serde(default)]
    pub tilt: Vec<f64>,
}

/// One corpus draw's datamodel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatamodelDraw {
    /// Learning rate.
    pub lr: f64,
    /// Rates tried beyond the configured grid.
    pub lr_extensions: usize,
    /// The choice still sits at an end of the rates tried.
    pub lr_at_edge: bool,
    /// Names of the per-rollout scores summed over each subset.
    pub scores: Vec<String>,
    /// The runs.
    pub runs: Vec<DatamodelRun>,
}

/// One corpus draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterventionDraw {
    /// Its corpus seed.
    pub corpus_seed: u64,
    /// Rollouts in the corpus.
    pub rollouts: usize,
    /// The factorial.
    pub factorial: FactorialDraw,
    /// The datamodel.
    pub datamodel: DatamodelDraw,
}

/// An effect: its mean over draws with the t-interval over draw means, and the spreads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// Mean over draws, 95% t-interval over the draws' means.
    pub over_draws: MeanCi,
    /// Each draw's mean over its replicates.
    pub draw_means: Vec<f64>,
    /// Standard deviation of the draw means (between corpora).
    #[serde(with = "super::nan")]
    pub between_draw_sd: f64,
    /// Mean over draws of the standard deviation over replicates (between training seeds).
    #[serde(with = "super::nan")]
    pub within_draw_sd: f64,
}

/// A regression coefficient or an LDS: the mean over draws with its interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pooled {
    /// Name.
    pub name: String,
    /// Mean over draws of the per-draw estimate, 95% t-interval over draws.
    pub over_draws: MeanCi,
    /// Per-draw estimates.
    #[serde(with = "super::nan::vec")]
    pub per_draw: Vec<f64>,
    /// Lower ends of the per-draw 95% bootstrap intervals over subsets.
    #[serde(with = "super::nan::vec")]
    pub per_draw_lo: Vec<f64>,
    /// Upper ends.
    #[serde(with = "super::nan::vec")]
    pub per_draw_hi: Vec<f64>,
}

/// Everything the interventions measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterventionResults {
    /// Settings.
    pub config: InterventionConfig,
    /// The corpus settings every draw used (with its own seed).
    pub corpus: CorpusConfig,
    /// Per draw.
    pub draws: Vec<InterventionDraw>,
    /// Factorial effects on Overall: mixture, reliability, interaction.
    pub overall_effects: Vec<Effect>,
    /// The same on AUC.
    pub auc_effects: Vec<Effect>,
    /// The same on the decrease of the clean dev loss ×100 (low level − high level: positive
    /// means the high level trains a head with a lower clean dev loss).
    #[serde(default)]
    pub dev_loss_effects: Vec<Effect>,
    /// The same on cos(w, w*) ×100.
    #[serde(default)]
    pub cos_effects: Vec<Effect>,
    /// Datamodel coefficients (Overall points per SD of the statistic).
    pub coefficients: Vec<Pooled>,
    /// LDS of every per-rollout score.
    pub lds: Vec<Pooled>,
    /// The verdicts.
    pub checks: Vec<Check>,
}

/// Runs the interventions over every corpus draw.
pub fn run(
    cfg: &InterventionConfig,
    base: &CorpusConfig,
    train: &TrainSettings,
    device: Device,
    seed: u64,
    dir: &std::path::Path,
    cells: &CellStore,
) -> Result<InterventionResults> {
    cfg.validate()?;
    // The head of the theory: linear.
    let train = TrainSettings {
        head: crate::head::HeadName::Linear,
        ..train.clone()
    };
    let bar = crate::progress::bar(cfg.corpus_seeds.len() as u64, "intervention draws");
    let mut draws = Vec::new();
    for &corpus_seed in &cfg.corpus_seeds {
        let key = cell_key(cfg, base, &train, seed, corpus_seed);
        let (draw, _) = cells.get_or_compute(&key, || {
            let here = dir
                .join("cells")
                .join("intervention")
                .join(format!("c{corpus_seed}"));
            let corpus_cfg = CorpusConfig {
                seed: corpus_seed,
                ..base.clone()
            };
            let corpus = Corpus::prepare(&corpus_cfg, &here)?;
            let draw_cells = CellStore::open(&here)?;
            let ctx = ExperimentContext {
                corpus: &corpus,
                cells: &draw_cells,
                device,
                seed,
                train: &train,
            };
            let d = run_draw(cfg, &ctx, corpus_seed);
            drop(corpus);
            // The corpus can be regenerated from its settings; only the results are kept.
            std::fs::remove_dir_all(here.join("corpus"))
                .map_err(|e| Error::io(here.join("corpus"), e))?;
            d
        })?;
        draws.push(draw);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(summarise(cfg, base, draws))
}

fn cell_key(
    cfg: &InterventionConfig,
    base: &CorpusConfig,
    train: &TrainSettings,
    seed: u64,
    corpus_seed: u64,
) -> String {
    use std::hash::{Hash, Hasher};
    let stamp = serde_json::json!({
        "config": cfg, "corpus": base, "train": train, "seed": seed,
    });
    let mut h = std::collections::hash_map::DefaultHasher::new();
    stamp.to_string().hash(&mut h);
    format!("intervention/c{corpus_seed}-{:016x}", h.finish())
}

/// Per-rollout facts the designs need.
struct RolloutFacts {
    stats: Vec<LabelStats>,
    mean_mc: Vec<f64>,
    zeros: Vec<f64>,
    pseudo_pos: Vec<f64>,
    source: Vec<u32>,
}

impl RolloutFacts {
    fn of(ctx: &ExperimentContext<'_>) -> Result<Self> {
        let b = &ctx.corpus.bundle;
        let correct = &b
            .teacher()
            .ok_or_else(|| Error::invalid("the intervention needs a synthetic bundle"))?
            .true_correct;
        let mut f = RolloutFacts {
            stats: Vec::new(),
            mean_mc: Vec::new(),
            zeros: Vec::new(),
            pseudo_pos: Vec::new(),
            source: b.source().to_vec(),
        };
        for x in 0..b.n_rollouts() {
            let r = b.rollout_steps(x);
            let s: Vec<f64> = b.mc_scores()[r.clone()].iter().map(|&v| v as f64).collect();
            f.stats.push(LabelStats::of(&s));
            f.mean_mc.push(s.iter().sum::<f64>() / s.len() as f64);
            f.zeros.push(s.iter().filter(|v| **v <= 0.0).count() as f64);
            f.pseudo_pos.push(
                r.zip(&s)
                    .filter(|(j, v)| **v > 0.0 && correct[*j] == 0)
                    .count() as f64,
            );
        }
        Ok(f)
    }

    fn n(&self, x: usize) -> usize {
        self.stats[x].n
    }
}

fn run_draw(
    cfg: &InterventionConfig,
    ctx: &ExperimentContext<'_>,
    corpus_seed: u64,
) -> Result<InterventionDraw> {
    let facts = RolloutFacts::of(ctx)?;
    let labels = LabelScheme::Hard { threshold: 0.0 };
    let pools = factorial_pools(&facts);
    let cell_size_cap =
        (cfg.factorial_fraction * ctx.corpus.bundle.n_rollouts() as f64).round() as usize;
    let quota = stratum_quota(&pools, cell_size_cap);
    let cell_size: usize = quota.values().sum();
    if cell_size < 20 {
        return Err(Error::invalid(format!(
            "[intervention] corpus draw {corpus_seed}: the factorial cells would hold only \
             {cell_size} rollouts (too few mixed or all-positive rollouts per stratum)"
        )));
    }
    // One learning rate per design, tuned on dev for a random subset of the design's size.
    // The grid is extended automatically when the best rate sits at an end of it.
    let tune = |fraction: f64, tag: u64| -> Result<TunedLr> {
        let sub = random_fraction(&ctx.corpus.bundle, fraction, derive_seed(ctx.seed, tag, 0))?;
        tune_lr(ctx, Some(&sub), labels, derive_seed(ctx.seed, tag, 1))
    };
    let factorial_tuning = tune(
        cell_size as f64 / ctx.corpus.bundle.n_rollouts() as f64,
        0xFAC,
    )?;
    let factorial_lr = factorial_tuning.lr;
    let clean_dev = CleanDevLoss::of(ctx, cfg.dev_steps)?;
    let teacher = teacher_head(&ctx.corpus.bundle)?;
    let mut replicates = Vec::new();
    let mut balance = Vec::new();
    let bar = crate::progress::bar(
        (cfg.factorial_seeds + cfg.datamodel_subsets) as u64,
        "intervention runs",
    );
    for r in 0..cfg.factorial_seeds {
        let seed = derive_seed(ctx.seed, 0xFAC1, r as u64);
        let subsets = draw_cells(&pools, &quota, seed);
        if r == 0 {
            balance = balance_of(&facts, &subsets);
        }
        let (mut overall, mut auc) = ([0.0; 4], [0.0; 4]);
        let (mut clean_dev_loss, mut teacher_cos) = (vec![0.0; 4], vec![0.0; 4]);
        for (c, sub) in subsets.iter().enumerate() {
            let (res, head) = train_eval(ctx, Some(sub), labels, factorial_lr, seed)?;
            let head = head.ok_or_else(|| {
                Error::Other("a factorial run ended without a trained head".into())
            })?;
            overall[c] = 100.0 * res.test_overall;
            auc[c] = 100.0 * res.test_auc;
            clean_dev_loss[c] = 100.0 * clean_dev.loss(&head);
            teacher_cos[c] = 100.0 * weight_cosine(&head, &teacher);
        }
        replicates.push(Replicate {
            seed,
            overall,
            auc,
            clean_dev_loss,
            teacher_cos,
        });
        bar.inc(1);
    }

    // The datamodel, and the per-rollout scores whose LDS it measures.
    let datamodel_tuning = tune(cfg.datamodel_fraction, 0xDA7)?;
    let datamodel_lr = datamodel_tuning.lr;
    let (names, scores) = rollout_scores(cfg, ctx, &facts, datamodel_lr)?;
    let mut runs = Vec::new();
    for k in 0..cfg.datamodel_subsets {
        let seed = derive_seed(ctx.seed, 0xDA71, k as u64);
        let (sub, tilt) = if cfg.datamodel_tilt > 0.0 {
            tilted_subset(&facts, cfg.datamodel_fraction, cfg.datamodel_tilt, seed)
        } else {
            (
                random_fraction(&ctx.corpus.bundle, cfg.datamodel_fraction, seed)?,
                Vec::new(),
            )
        };
        let (res, _) = train_eval(ctx, Some(&sub), labels, datamodel_lr, seed)?;
        runs.push(DatamodelRun {
            tilt,
            features: subset_features(&facts, &sub),
            score_sums: scores
                .iter()
                .map(|s| sub.iter().map(|&x| s[x]).sum())
                .collect(),
            overall: 100.0 * res.test_overall,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(InterventionDraw {
        corpus_seed,
        rollouts: ctx.corpus.bundle.n_rollouts(),
        factorial: FactorialDraw {
            cell_size,
            lr: factorial_lr,
            lr_extensions: factorial_tuning.extensions,
            lr_at_edge: factorial_tuning.at_edge,
            replicates,
            balance,
        },
        datamodel: DatamodelDraw {
            lr: datamodel_lr,
            lr_extensions: datamodel_tuning.extensions,
            lr_at_edge: datamodel_tuning.at_edge,
            scores: names,
            runs,
        },
    })
}

/// cos between the weight vectors of two linear heads (the bias left out); NaN for an MLP head
/// or a zero weight vector.
fn weight_cosine(a: &HeadParams, b: &HeadParams) -> f64 {
    let (HeadParams::Linear(a), HeadParams::Linear(b)) = (a, b) else {
        return f64::NAN;
    };
    let dot = |x: &[f32], y: &[f32]| -> f64 {
        x.iter()
            .zip(y)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum()
    };
    let norms = (dot(&a.w, &a.w) * dot(&b.w, &b.w)).sqrt();
    if norms > 0.0 {
        dot(&a.w, &b.w) / norms
    } else {
        f64::NAN
    }
}

/// A datamodel subset drawn with a random tilt: `fraction` of every source (rounded, at least
/// one), sampled without replacement with weights w_x = exp(β_m·z_m(x) + β_r·z_r(x)), where z
/// standardises p̂(1−p̂) and R over the corpus and β ~ N(0, tilt²). Weighted sampling without
/// replacement is Efraimidis–Spirakis: keep the largest ln(u_x)/w_x. Returns the rollouts in
/// corpus order and (β_m, β_r).
fn tilted_subset(f: &RolloutFacts, fraction: f64, tilt: f64, seed: u64) -> (Vec<usize>, Vec<f64>) {
    use crate::sim::rng::{keyed, normal, uniform};
    let mixture: Vec<f64> = f.stats.iter().map(LabelStats::mixture).collect();
    let reliability: Vec<f64> = f.stats.iter().map(|s| s.reliability).collect();
    let (zm, zr) = (standardise(&mixture), standardise(&reliability));
    let mut rng = keyed(seed, 0x7117, 0, 0);
    let beta = [tilt * normal(&mut rng), tilt * normal(&mut rng)];
    let keys: Vec<f64> = (0..f.stats.len())
        .map(|x| {
            let w = (beta[0] * zm[x] + beta[1] * zr[x]).exp();
            // ln(u) ≤ 0, so a heavier weight pulls the key towards 0 (kept first).
            uniform(&mut rng).max(f64::MIN_POSITIVE).ln() / w
        })
        .collect();
    let mut by_source: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (x, &s) in f.source.iter().enumerate() {
        by_source.entry(s).or_default().push(x);
    }
    let mut chosen = Vec::new();
    for members in by_source.values_mut() {
        let quota = ((fraction * members.len() as f64).round() as usize).clamp(1, members.len());
        members.sort_by(|&a, &b| keys[b].total_cmp(&keys[a]).then(a.cmp(&b)));
        chosen.extend_from_slice(&members[..quota]);
    }
    chosen.sort_unstable();
    (chosen, beta.to_vec())
}

/// Length bands of the matching (coarsened exact matching on the step count).
fn length_band(n: usize) -> u32 {
    match n {
        0..=3 => 0,
        4..=6 => 1,
        7..=10 => 2,
        _ => 3,
    }
}

/// Pools per (source, length band) stratum: the rollouts of each factorial cell.
type Pools = BTreeMap<(u32, u32), [Vec<usize>; 4]>;

fn factorial_pools(f: &RolloutFacts) -> Pools {
    // Median R per (source, mixture level), over the rollouts of that level.
    let level = |x: usize| -> Option<usize> {
        let s = &f.stats[x];
        if s.is_mixed() {
            Some(0)
        } else if s.n_pos == s.n {
            Some(1)
        } else {
            None
        }
    };
    let mut by_level: BTreeMap<(u32, usize), Vec<f64>> = BTreeMap::new();
    for x in 0..f.stats.len() {
        if let Some(l) = level(x) {
            by_level
                .entry((f.source[x], l))
                .or_default()
                .push(f.stats[x].reliability);
        }
    }
    let medians: BTreeMap<(u32, usize), f64> = by_level
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            (k, v[v.len() / 2])
        })
        .collect();
    let mut pools: Pools = BTreeMap::new();
    for x in 0..f.stats.len() {
        let Some(l) = level(x) else { continue };
        let median = medians[&(f.source[x], l)];
        let r = f.stats[x].reliability;
        // Ties at the median go to neither side, so "high" and "low" really differ.
        let rel = if r > median {
            0
        } else if r < median {
            1
        } else {
            continue;
        };
        pools.entry((f.source[x], length_band(f.n(x)))).or_default()[l * 2 + rel].push(x);
    }
    pools
}

/// Rollouts every cell takes from each stratum: the smallest of the four pools, scaled down
/// together when the cells would exceed `cap` rollouts.
fn stratum_quota(pools: &Pools, cap: usize) -> BTreeMap<(u32, u32), usize> {
    let raw: BTreeMap<(u32, u32), usize> = pools
        .iter()
        .map(|(k, p)| (*k, p.iter().map(Vec::len).min().unwrap_or(0)))
        .collect();
    let total: usize = raw.values().sum();
    if total <= cap || total == 0 {
        return raw;
    }
    let scale = cap as f64 / total as f64;
    raw.into_iter()
        .map(|(k, n)| (k, (n as f64 * scale).floor() as usize))
        .collect()
}

/// One replicate's four subsets: each stratum's quota drawn at random from each pool.
fn draw_cells(pools: &Pools, quota: &BTreeMap<(u32, u32), usize>, seed: u64) -> [Vec<usize>; 4] {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out: [Vec<usize>; 4] = Default::default();
    for (key, p) in pools {
        let q = quota[key];
        for (c, pool) in p.iter().enumerate() {
            let perm = crate::sim::rng::permutation(&mut rng, pool.len());
            out[c].extend(perm.iter().take(q).map(|&i| pool[i as usize]));
        }
    }
    for cell in &mut out {
        cell.sort_unstable();
    }
    out
}

/// Standardised mean differences of the [`BALANCE`] covariates, high − low, for each factor.
fn balance_of(f: &RolloutFacts, cells: &[Vec<usize>; 4]) -> Vec<[f64; 2]> {
    let covariate = |k: usize, x: usize| match k {
        0 => f.n(x) as f64,
        1 => f.zeros[x],
        2 => f.mean_mc[x],
        _ => f.stats[x].mixture(),
    };
    (0..BALANCE.len())
        .map(|k| {
            let values = |cs: &[usize]| -> Vec<f64> {
                cs.iter()
                    .flat_map(|&c| cells[c].iter().map(move |&x| covariate(k, x)))
                    .collect()
            };
            let smd = |hi: Vec<f64>, lo: Vec<f64>| {
                let m = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
                let pooled = ((sample_sd(&hi).powi(2) + sample_sd(&lo).powi(2)) / 2.0).sqrt();
                if pooled > 0.0 {
                    (m(&hi) - m(&lo)) / pooled
                } else {
                    0.0
                }
            };
            [
                smd(values(&[0, 1]), values(&[2, 3])),
                smd(values(&[0, 2]), values(&[1, 3])),
            ]
        })
        .collect()
}

/// The [`FEATURES`] of a subset.
fn subset_features(f: &RolloutFacts, sub: &[usize]) -> Vec<f64> {
    let n = sub.len() as f64;
    let steps: f64 = sub.iter().map(|&x| f.n(x) as f64).sum();
    let mut by_source: BTreeMap<u32, f64> = BTreeMap::new();
    for &x in sub {
        *by_source.entry(f.source[x]).or_default() += 1.0;
    }
    let entropy: f64 = by_source
        .values()
        .map(|c| {
            let p = c / n;
            -p * p.ln()
        })
        .sum();
    vec![
        sub.iter().map(|&x| f.stats[x].mixture()).sum::<f64>() / n,
        sub.iter().map(|&x| f.stats[x].reliability).sum::<f64>() / n,
        sub.iter().map(|&x| f.zeros[x]).sum::<f64>() / steps,
        sub.iter().map(|&x| f.pseudo_pos[x]).sum::<f64>() / steps,
        steps / n,
        entropy,
    ]
}

/// The selection experiment's gradient-based selectors whose keys get an LDS row of their own.
const SELECTOR_SCORES: [&str; 6] = [
    "el2n",
    "less",
    "tracin",
    "influence",
    "oracle",
    "bis-tracin",
];

/// Per-rollout scores whose LDS is measured: the label statistics, the simulator's oracle
/// quantities (S(x), a(x)) and the gradient scores (GraNd, EL2N, TracIn, influence).
fn rollout_scores(
    cfg: &InterventionConfig,
    ctx: &ExperimentContext<'_>,
    f: &RolloutFacts,
    lr: f64,
) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let bundle = &ctx.corpus.bundle;
    let labels = LabelScheme::Hard { threshold: 0.0 };
    let targets = labels.targets(bundle)?;
    let settings = GradientSettings {
        head: HeadKind::Linear,
        labels,
        reduction: Reduction::Mean,
        seed: derive_seed(ctx.seed, 0x6AD, 0),
        inits: cfg.grand_inits,
        proxy: ProxySpec {
            fraction: 0.1,
            lr,
            global_batch: ctx.train.global_batch_for(bundle.n_rollouts()),
            epochs: 1,
        },
        el2n: Default::default(),
        less: Default::default(),
        reference: Default::default(),
        device: ctx.device,
    };
    let grand = grand_keys(bundle, &targets, &settings)?;
    let proxy = train_proxy(bundle, &settings)?;
    let el2n = el2n_keys(bundle, &targets, &proxy, Reduction::Sum, ctx.device)?;
    let along = along_a_run(cfg, ctx, &targets, lr)?;
    let signal = oracle_signal(cfg, ctx)?;
    let n = f.stats.len();
    let mut names = vec![
        format!("BIS (α={})", cfg.alpha),
        "p̂(1−p̂)".to_string(),
        "R".to_string(),
        "mean MC".to_string(),
        "zero-score steps".to_string(),
        "steps".to_string(),
        format!("GraNd (K={})", cfg.grand_inits),
        "EL2N (one proxy, 10% subset)".to_string(),
        format!("TracIn (C={})", cfg.tracin_checkpoints),
        format!("influence (λ={})", cfg.influence_damping),
        "ORACLE S(x)".to_string(),
        "ORACLE a(x) mid-run".to_string(),
    ];
    let mut scores = vec![
        f.stats.iter().map(|s| s.bis(cfg.alpha)).collect(),
        f.stats.iter().map(LabelStats::mixture).collect(),
        f.stats.iter().map(|s| s.reliability).collect(),
        f.mean_mc.clone(),
        f.zeros.clone(),
        (0..n).map(|x| f.n(x) as f64).collect(),
        grand,
        el2n,
        along.tracin,
        along.influence,
        signal,
        along.a_mid,
    ];
    // The selectors of the selection experiment, computed as they select (mean reduction, their
    // own runs: EL2N's ensemble on the whole pool, LESS's warm-up, and the whole-pool reference
    // run of TracIn, influence, the oracle and the hybrid, here at the datamodel's learning rate).
    let sel = GradientSettings {
        head: HeadKind::Linear,
        labels,
        reduction: Reduction::Mean,
        seed: derive_seed(ctx.seed, 0x5E1E, 0),
        inits: cfg.grand_inits,
        proxy: ProxySpec {
            fraction: 0.05,
            lr,
            global_batch: ctx.train.global_batch_for(bundle.n_rollouts()),
            epochs: ctx.train.epochs,
        },
        el2n: Default::default(),
        less: Default::default(),
        reference: ReferenceSpec {
            checkpoints: cfg.tracin_checkpoints,
            damping: cfg.influence_damping,
        },
        device: ctx.device,
    };
    let reference = reference_run(bundle, &sel)?;
    let inputs = GradientInputs {
        bundle,
        bench: Some(&ctx.corpus.bench),
        checkpoint: None,
        reference: Some(&reference),
    };
    for method in SELECTOR_SCORES {
        names.push(format!("selector {method}"));
        scores.push(
            gradient_selector(method, &inputs, &sel)?
                .all_keys()
                .to_vec(),
        );
    }
    Ok((names, scores))
}

/// The scores that need one training run: TracIn over its checkpoints, influence at its end, and
/// the clean-gradient alignment a(x) at its middle.
struct AlongARun {
    tracin: Vec<f64>,
    influence: Vec<f64>,
    a_mid: Vec<f64>,
}

/// Trains one head on a random subset of the datamodel's size at the datamodel's learning rate
/// and reads the run-based scores off it. g_x is a sum over the rollout's steps (the trainer's
/// loss is a mean over the steps of a batch, so every step weighs the same). TracIn's checkpoints
/// sit at the midpoints of `tracin_checkpoints` equal stretches of the run, each weighted by the
/// learning rate there: a midpoint rule for TracIn's sum over every step.
fn along_a_run(
    cfg: &InterventionConfig,
    ctx: &ExperimentContext<'_>,
    targets: &[f32],
    lr: f64,
) -> Result<AlongARun> {
    let bundle = &ctx.corpus.bundle;
    let labels = LabelScheme::Hard { threshold: 0.0 };
    let seed = derive_seed(ctx.seed, 0x7AC, 0);
    let sub = random_fraction(bundle, cfg.datamodel_fraction, seed)?;
    let run_cfg = train_config(ctx, labels, lr, seed);
    let total = total_steps(sub.len(), run_cfg.global_batch, run_cfg.epochs);
    let schedule = Schedule::new(lr, total, run_cfg.optim.warmup_fraction);
    let k = cfg.tracin_checkpoints;
    let mut steps: Vec<usize> = (0..k)
        .map(|c| ((2 * c + 1) * total / (2 * k)).clamp(1, total))
        .collect();
    steps.push(total);
    let heads = heads_along_training(ctx, Some(&sub), labels, lr, seed, &steps)?;
    let (dev_bundle, dev_targets) = labelled_dev(&ctx.corpus.bench)?;
    let dev = DevSteps {
        bundle: &dev_bundle,
        targets: &dev_targets,
    };
    let settings = GradientSettings {
        head: HeadKind::Linear,
        labels,
        reduction: Reduction::Sum,
        seed,
        inits: 1,
        proxy: ProxySpec::default(),
        el2n: Default::default(),
        less: Default::default(),
        reference: Default::default(),
        device: ctx.device,
    };
    let checkpoints: Vec<Checkpoint> = heads[..k]
        .iter()
        .zip(&steps)
        .map(|(h, &s)| Checkpoint {
            head: h.clone(),
            lr: schedule.lr(s),
        })
        .collect();
    let tracin = tracin_keys(bundle, targets, &checkpoints, dev, &settings)?;
    let influence = influence_keys(
        bundle,
        targets,
        &heads[k],
        dev,
        cfg.influence_damping,
        &settings,
    )?;
    // a(x) = ⟨g_x, ∇L_clean⟩ at the middle checkpoint, with the clean loss's targets q*.
    let view = TeacherView::of(ctx)?;
    let q: Vec<f32> = view.q.iter().map(|&v| v as f32).collect();
    let mid = &heads[k / 2];
    let clean = gradnorm::total_gradient(ctx.device, bundle, &q, mid, Reduction::Sum, None)?;
    let a_mid = gradient_dots(bundle, targets, mid, &clean, Reduction::Sum, ctx.device)?;
    Ok(AlongARun {
        tracin,
        influence,
        a_mid,
    })
}

/// The paper's S(x) under the corpus's own fitted prior (η_eff(K) on positive steps, 0 on
/// zero-score steps): an oracle quantity, it needs the simulator's truth and teacher.
fn oracle_signal(cfg: &InterventionConfig, ctx: &ExperimentContext<'_>) -> Result<Vec<f64>> {
    let bundle = &ctx.corpus.bundle;
    let truth = StepTruth::open(&ctx.corpus.dir, bundle)?;
    let prior = corpus_prior(&truth)?;
    let view = TeacherView::of(ctx)?;
    Ok(paper_signal(
        bundle,
        &view,
        &paper_eta(&truth.counts, &prior, cfg.signal_tau),
    ))
}

/// A per-cell outcome as four values (NaN where it was not measured).
fn four(v: &[f64]) -> [f64; 4] {
    match v {
        [a, b, c, d] => [*a, *b, *c, *d],
        _ => [f64::NAN; 4],
    }
}

/// Per-replicate effects: mixture main, reliability main, interaction.
fn effects(v: &[f64; 4]) -> [f64; 3] {
    let [hh, hl, lh, ll] = *v;
    [
        (hh + hl - lh - ll) / 2.0,
        (hh + lh - hl - ll) / 2.0,
        (hh - hl) - (lh - ll),
    ]
}

fn effect_over_draws(per_draw: &[Vec<f64>]) -> Effect {
    let means: Vec<f64> = per_draw
        .iter()
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
        .collect();
    let within: Vec<f64> = per_draw.iter().map(|v| sample_sd(v)).collect();
    Effect {
        over_draws: mean_ci95(&means),
        between_draw_sd: sample_sd(&means),
        within_draw_sd: within.iter().sum::<f64>() / within.len().max(1) as f64,
        draw_means: means,
    }
}

/// Standardised OLS coefficients of Overall on the features (intercept dropped).
fn coefficients(runs: &[&DatamodelRun]) -> Vec<f64> {
    let k = FEATURES.len();
    let cols: Vec<Vec<f64>> = (0..k)
        .map(|c| standardise(&runs.iter().map(|r| r.features[c]).collect::<Vec<_>>()))
        .collect();
    let y: Vec<f64> = runs.iter().map(|r| r.overall).collect();
    // Normal equations with an intercept (columns are centred, so it separates).
    let mut a = vec![0.0; k * k];
    let mut b = vec![0.0; k];
    let ym = y.iter().sum::<f64>() / y.len() as f64;
    for (i, yi) in y.iter().enumerate() {
        for r in 0..k {
            b[r] += cols[r][i] * (yi - ym);
            for c in 0..k {
                a[r * k + c] += cols[r][i] * cols[c][i];
            }
        }
    }
    let trace: f64 = (0..k).map(|r| a[r * k + r]).sum();
    for r in 0..k {
        a[r * k + r] += 1e-9 * trace.max(1.0);
    }
    solve(&mut a, &mut b, k)
}

fn standardise(v: &[f64]) -> Vec<f64> {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let sd = sample_sd(v);
    v.iter()
        .map(|x| if sd > 0.0 { (x - m) / sd } else { 0.0 })
        .collect()
}

fn bootstrap_ci(
    n: usize,
    resamples: usize,
    seed: u64,
    stat: impl Fn(&[usize]) -> Vec<f64>,
) -> Vec<[f64; 2]> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut draws: Vec<Vec<f64>> = Vec::new();
    for _ in 0..resamples {
        let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
        draws.push(stat(&idx));
    }
    let k = draws.first().map_or(0, Vec::len);
    (0..k)
        .map(|j| {
            percentile_ci95(
                draws
                    .iter()
                    .map(|d| d[j])
                    .filter(|x| x.is_finite())
                    .collect(),
            )
        })
        .collect()
}

fn pooled(name: &str, per_draw: Vec<f64>, per_draw_ci: Vec<[f64; 2]>) -> Pooled {
    Pooled {
        name: name.to_string(),
        over_draws: mean_ci95(&per_draw),
        per_draw,
        per_draw_lo: per_draw_ci.iter().map(|c| c[0]).collect(),
        per_draw_hi: per_draw_ci.iter().map(|c| c[1]).collect(),
    }
}

fn summarise(
    cfg: &InterventionConfig,
    base: &CorpusConfig,
    draws: Vec<InterventionDraw>,
) -> InterventionResults {
    let factor = |pick: &dyn Fn(&Replicate) -> [f64; 4]| -> Vec<Effect> {
        // An outcome some replicate lacks (results written before it was measured) has none.
        let complete = draws
            .iter()
            .flat_map(|d| &d.factorial.replicates)
            .all(|r| pick(r).iter().all(|v| v.is_finite()));
        if !complete {
            return Vec::new();
        }
        (0..3)
            .map(|e| {
                let per_draw: Vec<Vec<f64>> = draws
                    .iter()
                    .map(|d| {
                        d.factorial
                            .replicates
                            .iter()
                            .map(|r| effects(&pick(r))[e])
                            .collect()
                    })
                    .collect();
                effect_over_draws(&per_draw)
            })
            .collect()
    };
    let overall_effects = factor(&|r| r.overall);
    let auc_effects = factor(&|r| r.auc);
    // A decrease of the loss is the improvement, so the cells enter negated.
    let dev_loss_effects = factor(&|r| four(&r.clean_dev_loss).map(|v| -v));
    let cos_effects = factor(&|r| four(&r.teacher_cos));

    let mut coef_per_draw: Vec<Vec<f64>> = vec![Vec::new(); FEATURES.len()];
    let mut coef_ci: Vec<Vec<[f64; 2]>> = vec![Vec::new(); FEATURES.len()];
    let n_scores = draws.first().map_or(0, |d| d.datamodel.scores.len());
    let mut lds_per_draw: Vec<Vec<f64>> = vec![Vec::new(); n_scores];
    let mut lds_ci: Vec<Vec<[f64; 2]>> = vec![Vec::new(); n_scores];
    for (i, d) in draws.iter().enumerate() {
        let runs: Vec<&DatamodelRun> = d.datamodel.runs.iter().collect();
        let seed = derive_seed(i as u64, 0xB007, d.corpus_seed);
        for (c, v) in coefficients(&runs).into_iter().enumerate() {
            coef_per_draw[c].push(v);
        }
        let ci = bootstrap_ci(runs.len(), cfg.bootstrap, seed, |idx| {
            coefficients(&idx.iter().map(|&k| runs[k]).collect::<Vec<_>>())
        });
        for (c, v) in ci.into_iter().enumerate() {
            coef_ci[c].push(v);
        }
        let lds = |idx: &[usize]| -> Vec<f64> {
            let y: Vec<f64> = idx.iter().map(|&k| runs[k].overall).collect();
            (0..n_scores)
                .map(|s| {
                    let x: Vec<f64> = idx.iter().map(|&k| runs[k].score_sums[s]).collect();
                    spearman(&x, &y)
                })
                .collect()
        };
        let all: Vec<usize> = (0..runs.len()).collect();
        for (s, v) in lds(&all).into_iter().enumerate() {
            lds_per_draw[s].push(v);
        }
        for (s, v) in bootstrap_ci(runs.len(), cfg.bootstrap, seed ^ 1, lds)
            .into_iter()
            .enumerate()
        {
            lds_ci[s].push(v);
        }
    }
    let coefficients: Vec<Pooled> = FEATURES
        .iter()
        .enumerate()
        .map(|(c, name)| pooled(name, coef_per_draw[c].clone(), coef_ci[c].clone()))
        .collect();
    let lds: Vec<Pooled> = (0..n_scores)
        .map(|s| {
            pooled(
                &draws[0].datamodel.scores[s],
                lds_per_draw[s].clone(),
                lds_ci[s].clone(),
            )
        })
        .collect();

    let r = &cfg.rules;
    let decided = |id: &str, claim: &str, m: &MeanCi, rule: Rule| {
        Check::decided(
            id,
            CheckKind::Intervention,
            claim,
            m.mean,
            [m.lo(), m.hi()],
            rule,
        )
    };
    let mut checks = vec![
        decided(
            "factorial-mixture",
            "Training on rollouts with mixed labels (matched on source and length) gives a \
             better head than on all-positive ones: main effect on bench-test Overall ×100",
            &overall_effects[0].over_draws,
            r.mixture,
        ),
        decided(
            "factorial-reliability",
            "Training on rollouts with reliable positives (high R) gives a better head than on \
             low-R ones: main effect on bench-test Overall ×100",
            &overall_effects[1].over_draws,
            r.reliability,
        ),
        decided(
            "factorial-interaction",
            "Mixture and reliability reinforce each other (BIS's product form): interaction \
             (difference of differences) on bench-test Overall ×100",
            &overall_effects[2].over_draws,
            r.interaction,
        ),
        decided(
            "datamodel-mixture",
            "Across random subsets, more label mixture predicts a better head given the other \
             subset statistics (standardised coefficient, Overall points per SD)",
            &coefficients[0].over_draws,
            r.datamodel_mixture,
        ),
        decided(
            "datamodel-reliability",
            "Across random subsets, higher R predicts a better head given the other subset \
             statistics (standardised coefficient, Overall points per SD)",
            &coefficients[1].over_draws,
            r.datamodel_reliability,
        ),
    ];
    if let [mixture, reliability, ..] = &dev_loss_effects[..] {
        checks.push(decided(
            "factorial-mixture-dev-loss",
            "Mixed-label rollouts train a head with a lower clean dev loss (against q*, no \
             threshold) than all-positive ones: main effect on the decrease ×100",
            &mixture.over_draws,
            r.mixture_dev_loss,
        ));
        checks.push(decided(
            "factorial-reliability-dev-loss",
            "High-R rollouts train a head with a lower clean dev loss than low-R ones: main \
             effect on the decrease ×100",
            &reliability.over_draws,
            r.reliability_dev_loss,
        ));
    }
    InterventionResults {
        config: cfg.clone(),
        corpus: base.clone(),
        draws,
        overall_effects,
        auc_effects,
        dev_loss_effects,
        cos_effects,
        coefficients,
        lds,
        checks,
    }
}

fn mean_ci_text(m: &MeanCi) -> String {
    format!("{:.2} [{:.2}, {:.2}]", m.mean, m.lo(), m.hi())
}

/// Tables and the summary (a pure function of the results).
pub fn render(r: &InterventionResults) -> Rendered {
    let names = ["mixture", "reliability", "mixture × reliability"];
    let mut effects = Table::new(
        "Factorial effects (×100), mean over corpus draws with the 95% t-interval over draws",
        &[
            "effect",
            "Overall",
            "between-draw SD",
            "within-draw SD (seeds)",
            "AUC",
            "clean dev loss decrease",
            "cos(w, w*)",
            "per-draw Overall means",
        ],
    );
    let optional = |v: &[Effect], k: usize| {
        v.get(k).map_or_else(
            || Cell::text("—"),
            |e| Cell::text(mean_ci_text(&e.over_draws)),
        )
    };
    for (k, name) in names.iter().enumerate() {
        let (o, a) = (&r.overall_effects[k], &r.auc_effects[k]);
        effects.push(vec![
            Cell::text(*name),
            Cell::text(mean_ci_text(&o.over_draws)),
            Cell::num(o.between_draw_sd, 2),
            Cell::num(o.within_draw_sd, 2),
            Cell::text(mean_ci_text(&a.over_draws)),
            optional(&r.dev_loss_effects, k),
            optional(&r.cos_effects, k),
            Cell::text(
                o.draw_means
                    .iter()
                    .map(|v| format!("{v:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ]);
    }
    let mut cells = Table::new(
        "Factorial cells: bench-test Overall ×100 (mean ± 95% CI over replicates), per draw",
        &[
            "draw",
            "rollouts per cell",
            "lr",
            CELLS[0],
            CELLS[1],
            CELLS[2],
            CELLS[3],
        ],
    );
    for d in &r.draws {
        let mut row = vec![
            Cell::text(format!("corpus {}", d.corpus_seed)),
            Cell::num(d.factorial.cell_size as f64, 0),
            Cell::num(d.factorial.lr, 4),
        ];
        for c in 0..4 {
            let v: Vec<f64> = d
                .factorial
                .replicates
                .iter()
                .map(|x| x.overall[c])
                .collect();
            let m = mean_ci95(&v);
            row.push(Cell::text(format!("{:.2} ± {:.2}", m.mean, m.half_width)));
        }
        cells.push(row);
    }
    let mut balance = Table::new(
        "Factorial balance: standardised mean difference (high − low level) in the first \
         replicate, per draw",
        &["draw", "covariate", "mixture factor", "reliability factor"],
    );
    for d in &r.draws {
        for (k, b) in d.factorial.balance.iter().enumerate() {
            balance.push(vec![
                Cell::text(format!("corpus {}", d.corpus_seed)),
                Cell::text(BALANCE[k]),
                Cell::num(b[0], 3),
                Cell::num(b[1], 3),
            ]);
        }
    }
    let pooled_table = |title: &str, rows: &[Pooled]| {
        let mut t = Table::new(
            title,
            &[
                "name",
                "mean over draws [95% CI]",
                "per draw [bootstrap 95% CI over subsets]",
            ],
        );
        for p in rows {
            t.push(vec![
                Cell::text(&p.name),
                Cell::text(mean_ci_text(&p.over_draws)),
                Cell::text(
                    p.per_draw
                        .iter()
                        .zip(p.per_draw_lo.iter().zip(&p.per_draw_hi))
                        .map(|(v, (lo, hi))| format!("{v:.3} [{lo:.3}, {hi:.3}]"))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            ]);
        }
        t
    };
    let coef = pooled_table(
        "Datamodel: Overall (×100) regressed on standardised subset statistics (points per SD)",
        &r.coefficients,
    );
    let lds = pooled_table(
        "Linear datamodeling score: Spearman over subsets of the summed score with trained \
         Overall",
        &r.lds,
    );
    let checks = checks_table(
        &r.checks,
        "Intervention checks (decision rules fixed in the config)",
    );

    let runs: usize = r.draws.iter().map(|d| d.datamodel.runs.len()).sum();
    let reps: usize = r.draws.iter().map(|d| d.factorial.replicates.len()).sum();
    let best_lds = r
        .lds
        .iter()
        .max_by(|a, b| a.over_draws.mean.total_cmp(&b.over_draws.mean));
    let mut summary = format!(
        "## Interventions\n\n{} corpus draws; {} factorial replicates (4 heads each) and {} \
         datamodel subsets ({}) in all. **Factorial**: mixture {} ({}), reliability {} ({}), \
         interaction {} ({}) points of bench-test Overall (mean over draws, 95% t-interval over \
         draws). **Datamodel**: per SD of the subset statistic, mixture {} ({}), R {} ({}).",
        r.draws.len(),
        reps,
        runs,
        if r.config.datamodel_tilt > 0.0 {
            format!(
                "each drawn with a random tilt towards or away from mixture and R, t = {}",
                r.config.datamodel_tilt
            )
        } else {
            "uniformly random".to_string()
        },
        mean_ci_text(&r.overall_effects[0].over_draws),
        r.checks[0].verdict.as_str(),
        mean_ci_text(&r.overall_effects[1].over_draws),
        r.checks[1].verdict.as_str(),
        mean_ci_text(&r.overall_effects[2].over_draws),
        r.checks[2].verdict.as_str(),
        mean_ci_text(&r.coefficients[0].over_draws),
        r.checks[3].verdict.as_str(),
        mean_ci_text(&r.coefficients[1].over_draws),
        r.checks[4].verdict.as_str(),
    );
    if let [m, rel, ..] = &r.dev_loss_effects[..] {
        let verdict = |id: &str| {
            r.checks
                .iter()
                .find(|c| c.id == id)
                .map_or("not decided", |c| c.verdict.as_str())
        };
        summary.push_str(&format!(
            " On the clean dev loss (decrease ×100, no threshold involved): mixture {} ({}), \
             reliability {} ({}).",
            mean_ci_text(&m.over_draws),
            verdict("factorial-mixture-dev-loss"),
            mean_ci_text(&rel.over_draws),
            verdict("factorial-reliability-dev-loss"),
        ));
    }
    let edges = r
        .draws
        .iter()
        .map(|d| usize::from(d.factorial.lr_at_edge) + usize::from(d.datamodel.lr_at_edge))
        .sum::<usize>();
    let extended = r
        .draws
        .iter()
        .map(|d| {
            usize::from(d.factorial.lr_extensions > 0) + usize::from(d.datamodel.lr_extensions > 0)
        })
        .sum::<usize>();
    summary.push_str(&format!(
        " Learning rates: {} choices, {} needed the grid extended, {} still at an edge.",
        2 * r.draws.len(),
        extended,
        edges
    ));
    if let Some(b) = best_lds {
        summary.push_str(&format!(
            " The highest linear datamodeling score is {}'s, {}.",
            b.name,
            mean_ci_text(&b.over_draws)
        ));
    }
    summary.push_str("\n\n");
    for t in [&checks, &effects, &cells] {
        summary.push_str(&t.to_markdown());
        summary.push('\n');
    }
    let key = checks.to_markdown();
    Rendered {
        tables: vec![
            ("checks".into(), checks),
            ("factorial_effects".into(), effects),
            ("factorial_cells".into(), cells),
            ("factorial_balance".into(), balance),
            ("datamodel_coefficients".into(), coef),
            ("lds".into(), lds),
        ],
        plots: Vec::new(),
        summary,
        key_table: key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_are_main_effects_and_a_difference_of_differences() {
        // Cells: mix+rel+, mix+rel−, mix−rel+, mix−rel−.
        // Mixture: ((10 + 6) − (4 + 2))/2; reliability: ((10 + 4) − (6 + 2))/2; interaction:
        // (10 − 6) − (4 − 2).
        let e = effects(&[10.0, 6.0, 4.0, 2.0]);
        assert_eq!(e, [5.0, 3.0, 2.0]);
    }

    #[test]
    fn the_regression_recovers_known_standardised_coefficients() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let runs: Vec<DatamodelRun> = (0..400)
            .map(|_| {
                let f: Vec<f64> = (0..FEATURES.len())
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                DatamodelRun {
                    overall: 50.0 + 3.0 * f[0] - 2.0 * f[1],
                    features: f,
                    score_sums: vec![],
                    tilt: vec![],
                }
            })
            .collect();
        let refs: Vec<&DatamodelRun> = runs.iter().collect();
        let c = coefficients(&refs);
        let sd0 = sample_sd(&runs.iter().map(|r| r.features[0]).collect::<Vec<_>>());
        let sd1 = sample_sd(&runs.iter().map(|r| r.features[1]).collect::<Vec<_>>());
        assert!((c[0] - 3.0 * sd0).abs() < 1e-6, "{c:?}");
        assert!((c[1] + 2.0 * sd1).abs() < 1e-6, "{c:?}");
        assert!(c[2..].iter().all(|v| v.abs() < 1e-6), "{c:?}");
    }

    #[test]
    fn quotas_equalise_cells_and_respect_the_cap() {
        let mut pools: Pools = BTreeMap::new();
        pools.insert(
            (0, 0),
            [vec![1, 2, 3], vec![4, 5], vec![6, 7, 8, 9], vec![10, 11]],
        );
        pools.insert(
            (1, 0),
            [vec![12; 10], vec![13; 10], vec![14; 10], vec![15; 10]],
        );
        let q = stratum_quota(&pools, 100);
        assert_eq!(q[&(0, 0)], 2);
        assert_eq!(q[&(1, 0)], 10);
        let q = stratum_quota(&pools, 6);
        assert!(q.values().sum::<usize>() <= 6);
        let cells = draw_cells(&pools, &stratum_quota(&pools, 100), 3);
        assert!(cells.iter().all(|c| c.len() == 12));
    }

    #[test]
    fn tilted_subsets_keep_source_quotas_and_move_the_tilted_statistic() {
        // Two sources; half the rollouts mixed (p̂ = 1/2), half all-positive (p̂ = 1), every R the
        // same, so only β_m matters.
        let mut f = RolloutFacts {
            stats: Vec::new(),
            mean_mc: Vec::new(),
            zeros: Vec::new(),
            pseudo_pos: Vec::new(),
            source: Vec::new(),
        };
        for x in 0..400 {
            let scores: &[f64] = if x % 2 == 0 { &[0.5, 0.0] } else { &[0.5, 0.5] };
            f.stats.push(LabelStats::of(scores));
            f.mean_mc.push(0.0);
            f.zeros.push(0.0);
            f.pseudo_pos.push(0.0);
            f.source.push(u32::from(x >= 300));
        }
        let mixed_share =
            |sub: &[usize]| sub.iter().filter(|&&x| x % 2 == 0).count() as f64 / sub.len() as f64;
        let (mut shares, mut betas) = (Vec::new(), Vec::new());
        for seed in 0..40 {
            let (sub, beta) = tilted_subset(&f, 0.25, 2.0, seed);
            assert_eq!(sub.len(), 75 + 25, "25% of each source");
            assert_eq!(sub.iter().filter(|&&x| x >= 300).count(), 25);
            assert!(
                sub.windows(2).all(|w| w[0] < w[1]),
                "corpus order, no repeats"
            );
            assert_eq!(
                (sub.clone(), beta.clone()),
                tilted_subset(&f, 0.25, 2.0, seed)
            );
            shares.push(mixed_share(&sub));
            betas.push(beta[0]);
        }
        // The mixed share follows the sign of β_m: the subsets differ in mixture on purpose.
        let (pos, neg): (Vec<usize>, Vec<usize>) = (0..40).partition(|&i| betas[i] > 0.0);
        let mean = |ids: &[usize]| ids.iter().map(|&i| shares[i]).sum::<f64>() / ids.len() as f64;
        assert!(!pos.is_empty() && !neg.is_empty());
        assert!(
            mean(&pos) > 0.6 && mean(&neg) < 0.4,
            "{} {}",
            mean(&pos),
            mean(&neg)
        );
    }
}
