//! Gradient-based selectors: the baselines the paper never ran, each as its authors define it
//! (deviations stated in the submodule that implements it).
//!
//! This layer sits above [`crate::train`] (EL2N, LESS and the reference run train heads) and
//! [`crate::gradnorm`]; it plugs into [`crate::select`]'s [`Selector`] trait, so selection itself
//! stays below both.
//!
//! Each method turns per-rollout gradients of the MPRM loss (from [`crate::gradnorm`], on the CPU
//! or the GPU) into a ranking key over a features bundle; the per-source quota, tie and output
//! machinery is the same as for BIS.
//!
//! | method | key (higher kept first) | follows | needs |
//! |---|---|---|---|
//! | `grand` | mean over K ≥ 10 random initialisations of ‖∇ℓ_x‖ | Paul et al. 2021 (GraNd at init) | bundle |
//! | `el2n` | mean over ≥ 4 proxies, each trained on the whole pool for a fraction of the run, of the step-error norm under the trainer's reduction | Paul et al. 2021 | bundle |
//! | `less` | max over bench sources of Σ_c η_c cos(Adam-preconditioned, projected g_x, source's dev gradient), 5% warm-up, a checkpoint per epoch | Xia et al. 2024 ([`less`]) | **labelled dev data** |
//! | `tracin` | Σ_c η_c ⟨∇L_dev(w_c), g_x(w_c)⟩ over the reference run's checkpoints | Pruthi et al. 2020 (TracIn-CP) | labelled dev data |
//! | `influence` | ∇L_devᵀ (H + λI)⁻¹ g_x at the reference run's end; exact H (linear), output-layer Gauss–Newton (MLP) | Koh & Liang 2017 | labelled dev data |
//! | `oracle` | TracIn-CP against the clean loss (targets q*) instead of the dev loss: Σ_c η_c a_c(x) | ORACLE, simulator only | the teacher |
//! | `bis-tracin` | BIS within the top half of each source by TracIn (then BIS over the rest) | a hybrid | labelled dev data |
//! | `gradnorm-teacher` | ‖∇ℓ_x‖ at the teacher (w*, b*): picks labels most at odds with w* | a diagnostic, not a selector to compare | a synthetic bundle |
//! | `gradnorm-ckpt` | ‖∇ℓ_x‖ at a given head checkpoint | | a `head.safetensors` |
//!
//! The **reference run** is the run selection would replace: the whole pool at the run spec's
//! learning rate and length, with `reference.checkpoints` evenly spaced checkpoints, each weighted
//! by the mean scheduled learning rate of the stretch it closes. TracIn, influence, the oracle and
//! the hybrid read it; build it once with [`reference_run`] and pass it in [`GradientInputs`] to
//! share it between them. Whether a selector that needs the full run is worth its cost is what the
//! cost table of the selection experiment reports.
//!
//! **Devices.** Per-rollout norms and projections (GraNd, EL2N, TracIn, the oracle, the influence
//! scores' final dot products) and the influence Hessian's Gram product run on the settings'
//! device through [`crate::gradnorm`] (the `weighted_gram` kernel on a GPU, its CPU twin
//! otherwise). LESS's preconditioned per-rollout gradients, the MLP's hidden activations and the
//! (d + 1)² influence solve run on the CPU: the solve is O(d³) once, the rest one pass each.
//!
//! Gradients use the MC hard labels (`s > 0`) and the mean-over-steps reduction unless told
//! otherwise. Keys are computed for every rollout of the bundle; a raw annotation folder is
//! matched to them by (source, line), so the bundle must carry the `line` tensor for that.

use std::collections::HashMap;

use crate::data::bench::BenchSet;
use crate::data::features::FeatureBundle;
use crate::data::label_stats::LabelStats;
use crate::data::labels::LabelScheme;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gradnorm::Reduction;
use crate::head::{HeadKind, HeadParams};
use crate::select::{Selector, SourceView};
use crate::train::schedule::total_steps;

pub mod dev;
pub mod influence;
pub mod less;
pub mod norms;
pub mod runs;

pub use crate::select::baselines::GRADIENT_NAMES;
pub use dev::{
    DevSteps, SourceDev, dev_gradient, gradient_dots, labelled_dev, labelled_dev_by_source,
};
pub use influence::{
    hidden_bundle, influence_keys, linear_hessian, linear_hessian_on, oracle_keys, tracin_keys,
};
pub use less::{AdamShape, CountSketch, LessSpec, adam_precondition, less_keys, less_keys_at};
pub use norms::{
    El2nSpec, el2n_ensemble_keys, el2n_keys, gradient_norms, grand_keys, teacher_head,
};
pub use runs::{
    AdamCheckpoint, Checkpoint, random_fraction, run_config, train_proxy, train_with_checkpoints,
};

/// Settings shared by the gradient-based methods.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GradientSettings {
    /// Head whose gradient is taken (and the proxies' architecture).
    pub head: HeadKind,
    /// Step targets of the training data.
    pub labels: LabelScheme,
    /// Reduction over a rollout's steps.
    pub reduction: Reduction,
    /// Seed of the random initialisations, the proxies' subsets and their training.
    pub seed: u64,
    /// GraNd: initialisations averaged.
    pub inits: usize,
    /// The training runs: learning rate, batch and length of the full run (the reference run and
    /// EL2N's proxies use them as they are); `fraction` is LESS's warm-up share (and the single
    /// proxy's of the theory experiments).
    pub proxy: ProxySpec,
    /// EL2N's ensemble.
    pub el2n: El2nSpec,
    /// LESS's warm-up epochs and projection.
    pub less: LessSpec,
    /// The reference run's checkpoints and the influence damping.
    pub reference: ReferenceSpec,
    /// Where the gradients are computed.
    pub device: Device,
}

/// A training run's learning rate, batch and length, and the share of the pool a warm-up uses.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProxySpec {
    /// Fraction of every source a warm-up trains on (LESS; the theory experiments' EL2N proxy).
    pub fraction: f64,
    /// Peak learning rate.
    pub lr: f64,
    /// Rollouts per optimiser step.
    pub global_batch: usize,
    /// Passes over the data of the full run.
    pub epochs: usize,
}

impl Default for ProxySpec {
    fn default() -> Self {
        ProxySpec {
            fraction: 0.05,
            lr: 1e-2,
            global_batch: 512,
            epochs: 1,
        }
    }
}

/// The reference run's checkpoints and the influence damping.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceSpec {
    /// Evenly spaced checkpoints (the last at the end of the run).
    pub checkpoints: usize,
    /// Damping of the influence Hessian, relative to its mean eigenvalue.
    pub damping: f64,
}

impl Default for ReferenceSpec {
    fn default() -> Self {
        ReferenceSpec {
            checkpoints: 4,
            damping: 0.01,
        }
    }
}

/// The methods that read the reference run.
pub const REFERENCE_METHODS: [&str; 4] = ["tracin", "influence", "oracle", "bis-tracin"];

/// The reference run's checkpoints (TracIn, the oracle) and its final head (influence).
#[derive(Debug, Clone)]
pub struct ReferenceRun {
    /// Checkpoints with the learning rate of the stretch each closes.
    pub checkpoints: Vec<Checkpoint>,
    /// The head at the end of the run.
    pub final_head: HeadParams,
}

/// Trains the reference run: the whole pool under the settings' run spec.
pub fn reference_run(bundle: &FeatureBundle, s: &GradientSettings) -> Result<ReferenceRun> {
    let c = s.reference.checkpoints;
    if c == 0 {
        return Err(Error::invalid(
            "the reference run needs at least one checkpoint",
        ));
    }
    let cfg = run_config(s, s.seed, s.proxy.epochs);
    let total = total_steps(bundle.n_rollouts(), cfg.global_batch, cfg.epochs);
    let every = total.div_ceil(c).max(1);
    let recorded = train_with_checkpoints(&cfg, bundle, None, every, s)?;
    let final_head = recorded
        .last()
        .expect("a recorded run ends with a checkpoint")
        .point
        .head
        .clone();
    Ok(ReferenceRun {
        checkpoints: recorded.into_iter().map(|c| c.point).collect(),
        final_head,
    })
}

/// The hybrid: within each source, the top ⌈n/2⌉ rollouts by `gate` (TracIn) rank first, by
/// BIS (α = `alpha`); the rest follow, by BIS. Keys are BIS + 1 for the gated half: BIS ≤ 0.25 + α
/// stays below 1 for any α < 0.75, so the gate always decides first.
pub fn gated_bis_keys(bundle: &FeatureBundle, gate: &[f64], alpha: f64) -> Result<Vec<f64>> {
    if !(0.0..0.75).contains(&alpha) {
        return Err(Error::invalid(format!(
            "the hybrid's BIS α = {alpha} must be in [0, 0.75)"
        )));
    }
    let n = bundle.n_rollouts();
    if gate.len() != n {
        return Err(Error::invalid(format!(
            "the hybrid's gate has {} values for {n} rollouts",
            gate.len()
        )));
    }
    // The top ⌈n_s/2⌉ of each source by the gate (ties broken by corpus order).
    let mut by_source: HashMap<u32, Vec<usize>> = HashMap::new();
    for i in 0..n {
        by_source.entry(bundle.source()[i]).or_default().push(i);
    }
    let mut gated = vec![false; n];
    for members in by_source.values_mut() {
        members.sort_by(|&a, &b| gate[b].total_cmp(&gate[a]).then(a.cmp(&b)));
        for &i in &members[..members.len().div_ceil(2)] {
            gated[i] = true;
        }
    }
    Ok((0..n)
        .map(|i| {
            let scores: Vec<f64> = bundle.mc_scores()[bundle.rollout_steps(i)]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            LabelStats::of(&scores).bis(alpha) + if gated[i] { 1.0 } else { 0.0 }
        })
        .collect())
}

/// Per-rollout keys computed ahead of selection, looked up by corpus index or (source, line).
pub struct PrecomputedSelector {
    name: String,
    settings: serde_json::Value,
    keys: Vec<f64>,
    by_line: HashMap<(String, u64), usize>,
}

impl PrecomputedSelector {
    /// Wraps keys for every rollout of `bundle` (in bundle order).
    pub fn new(
        name: &str,
        settings: serde_json::Value,
        bundle: &FeatureBundle,
        keys: Vec<f64>,
    ) -> Result<Self> {
        if keys.len() != bundle.n_rollouts() {
            return Err(Error::Other(format!(
                "{name}: {} keys for {} rollouts",
                keys.len(),
                bundle.n_rollouts()
            )));
        }
        if let Some(i) = keys.iter().position(|k| k.is_nan()) {
            return Err(Error::Other(format!(
                "{name}: the key of rollout {i} is NaN"
            )));
        }
        let by_line = match bundle.line() {
            Some(lines) => (0..bundle.n_rollouts())
                .map(|i| ((bundle.source_name(i).to_string(), lines[i]), i))
                .collect(),
            None => HashMap::new(),
        };
        Ok(PrecomputedSelector {
            name: name.to_string(),
            settings,
            keys,
            by_line,
        })
    }

    /// The key of every bundle rollout.
    pub fn all_keys(&self) -> &[f64] {
        &self.keys
    }
}

impl Selector for PrecomputedSelector {
    fn name(&self) -> &str {
        &self.name
    }

    fn settings(&self) -> serde_json::Value {
        self.settings.clone()
    }

    fn keys(&self, source: &SourceView<'_>) -> Result<Vec<f64>> {
        if let Some(index) = source.corpus_index {
            return Ok(index.iter().map(|&i| self.keys[i]).collect());
        }
        source
            .lines
            .iter()
            .map(|&line| {
                self.by_line
                    .get(&(source.name.to_string(), line))
                    .map(|&i| self.keys[i])
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "{}: rollout at line {line} of `{}` is not in the features bundle \
                             (it needs a `line` tensor matching the annotation files)",
                            self.name, source.name
                        ))
                    })
            })
            .collect()
    }
}

/// Everything a gradient-based method may need besides its settings.
pub struct GradientInputs<'a> {
    /// The training corpus's features.
    pub bundle: &'a FeatureBundle,
    /// The bench (labelled dev data for `less`, `tracin`, `influence`, `bis-tracin`).
    pub bench: Option<&'a BenchSet>,
    /// A head checkpoint (for `gradnorm-ckpt`).
    pub checkpoint: Option<&'a HeadParams>,
    /// A reference run already trained under the same settings, to share between methods
    /// (trained on demand when `None`).
    pub reference: Option<&'a ReferenceRun>,
}

/// BIS's smoothing in the hybrid (the reference's default α).
pub const HYBRID_ALPHA: f64 = 0.05;

/// Builds the selector `method` (one of [`GRADIENT_NAMES`]).
pub fn gradient_selector(
    method: &str,
    inputs: &GradientInputs<'_>,
    s: &GradientSettings,
) -> Result<PrecomputedSelector> {
    let bundle = inputs.bundle;
    let targets = s.labels.targets(bundle)?;
    let bench = || {
        inputs.bench.ok_or_else(|| {
            Error::invalid(format!(
                "{method} needs a bench with a dev split (--bench, --bench-features)"
            ))
        })
    };
    let trained: std::cell::OnceCell<Result<ReferenceRun>> = std::cell::OnceCell::new();
    let reference = || -> Result<&ReferenceRun> {
        Ok(match inputs.reference {
            Some(r) => r,
            None => trained
                .get_or_init(|| reference_run(bundle, s))
                .as_ref()
                .map_err(|e| Error::Other(format!("{method}: the reference run failed: {e}")))?,
        })
    };
    let tracin = |bench: &BenchSet, run: &ReferenceRun| -> Result<Vec<f64>> {
        let (dev_bundle, dev_targets) = labelled_dev(bench)?;
        let dev = DevSteps {
            bundle: &dev_bundle,
            targets: &dev_targets,
        };
        tracin_keys(bundle, &targets, &run.checkpoints, dev, s)
    };
    let keys = match method {
        "grand" => grand_keys(bundle, &targets, s)?,
        "el2n" => el2n_ensemble_keys(bundle, &targets, s)?,
        "gradnorm-teacher" => gradient_norms(bundle, &targets, &teacher_head(bundle)?, s)?,
        "gradnorm-ckpt" => {
            let head = inputs.checkpoint.ok_or_else(|| {
                Error::invalid("gradnorm-ckpt needs --checkpoint HEAD.safetensors")
            })?;
            gradient_norms(bundle, &targets, head, s)?
        }
        "less" => less_keys(bundle, &targets, bench()?, s)?,
        "tracin" => tracin(bench()?, reference()?)?,
        "influence" => {
            let (dev_bundle, dev_targets) = labelled_dev(bench()?)?;
            let dev = DevSteps {
                bundle: &dev_bundle,
                targets: &dev_targets,
            };
            influence_keys(
                bundle,
                &targets,
                &reference()?.final_head,
                dev,
                s.reference.damping,
                s,
            )?
        }
        "oracle" => oracle_keys(bundle, &targets, &reference()?.checkpoints, s)?,
        "bis-tracin" => gated_bis_keys(bundle, &tracin(bench()?, reference()?)?, HYBRID_ALPHA)?,
        _ => {
            return Err(Error::invalid(format!(
                "unknown gradient method `{method}`; expected one of {}",
                GRADIENT_NAMES.join(", ")
            )));
        }
    };
    let mut settings = serde_json::to_value(s).expect("settings serialise");
    settings["method"] = serde_json::Value::String(method.to_string());
    if matches!(method, "less" | "tracin" | "influence" | "bis-tracin") {
        settings["uses_labelled_dev_data"] = serde_json::Value::Bool(true);
    }
    if method == "oracle" {
        settings["uses_the_teacher"] = serde_json::Value::Bool(true);
    }
    PrecomputedSelector::new(method, settings, bundle, keys)
}
