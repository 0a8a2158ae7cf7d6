//! Gradient-based selectors: the baselines the paper never ran.
//!
//! This layer sits above [`crate::train`] (EL2N and LESS train a short proxy) and
//! [`crate::gradnorm`]; it plugs into [`crate::select`]'s [`Selector`] trait, so selection itself
//! stays below both.
//!
//! Each method turns the per-rollout gradient of the MPRM loss (from [`crate::gradnorm`], on the
//! CPU or the GPU) into a ranking key over a features bundle; the per-source quota, tie and output
//! machinery is the same as for BIS.
//!
//! | method | key (higher kept first) | needs |
//! |---|---|---|
//! | `grand` | mean over K random initialisations of ‖∇ℓ_x‖ (Paul et al.'s GraNd at init) | bundle |
//! | `el2n` | ‖σ(z) − y‖ over the rollout's steps after a short proxy training (EL2N) | bundle |
//! | `gradnorm-teacher` | ‖∇ℓ_x‖ at the teacher (w*, b*) | a synthetic bundle |
//! | `gradnorm-ckpt` | ‖∇ℓ_x‖ at a given head checkpoint | a `head.safetensors` |
//! | `less` | cos(∇ℓ_x, mean dev gradient) at a short warm-up proxy (LESS, head-only variant: cosine to the *mean* dev gradient, no Adam preconditioning) | **labelled dev data** (the bench's dev split), which BIS does not use |
//!
//! Gradients use the MC hard labels (`s > 0`) and the mean-over-steps reduction unless told
//! otherwise. Keys are computed for every rollout of the bundle; a raw annotation folder is
//! matched to them by (source, line), so the bundle must carry the `line` tensor for that.

use std::collections::HashMap;

use crate::data::bench::{BenchSet, Split};
use crate::data::features::{BundleParts, FeatureBundle, FeatureData};
use crate::data::labels::LabelScheme;
use crate::device::Device;
use crate::error::{Error, Result, TrainError};
use crate::gradnorm::{self, GradNormOptions, Projection, Reduction};
use crate::head::{HeadKind, HeadParams, LinearHead};
use crate::select::baselines::Baseline;
use crate::select::pipeline::choose_from_bundle;
use crate::select::{Selector, SourceView};
use crate::train::{self, TrainConfig};

pub use crate::select::baselines::GRADIENT_NAMES;

/// Settings shared by the gradient-based methods.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GradientSettings {
    /// Head whose gradient is taken (and the proxy's architecture).
    pub head: HeadKind,
    /// Step targets of the training data.
    pub labels: LabelScheme,
    /// Reduction over a rollout's steps.
    pub reduction: Reduction,
    /// Seed of the random initialisations, the proxy's subset and its training.
    pub seed: u64,
    /// GraNd: initialisations averaged.
    pub inits: usize,
    /// EL2N / LESS: the proxy's training.
    pub proxy: ProxySpec,
    /// Where the gradients are computed.
    pub device: Device,
}

/// A short proxy training on a random part of the corpus (EL2N and LESS warm-up).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProxySpec {
    /// Fraction of every source used to train the proxy.
    pub fraction: f64,
    /// Peak learning rate.
    pub lr: f64,
    /// Rollouts per optimiser step.
    pub global_batch: usize,
    /// Passes over the proxy subset.
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

/// GraNd at initialisation: the mean gradient norm over `settings.inits` random heads.
pub fn grand_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    if s.inits == 0 {
        return Err(Error::invalid("grand needs at least one initialisation"));
    }
    let mut sum = vec![0.0; bundle.n_rollouts()];
    for k in 0..s.inits {
        let head = HeadParams::init(s.head, bundle.dim(), s.seed.wrapping_add(k as u64));
        let norms = gradient_norms(bundle, targets, &head, s)?;
        sum.iter_mut().zip(norms).for_each(|(a, n)| *a += n);
    }
    Ok(sum.into_iter().map(|v| v / s.inits as f64).collect())
}

/// ‖∇ℓ_x‖ at a fixed head (the teacher, or a checkpoint).
pub fn gradient_norms(
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    let stats = gradnorm::rollout_grad_stats(
        s.device,
        bundle,
        targets,
        head,
        &GradNormOptions {
            reduction: s.reduction,
            projection: None,
        },
    )?;
    Ok(stats.grad_sq.iter().map(|v| v.sqrt()).collect())
}

/// EL2N: ‖σ(z) − y‖₂ over each rollout's steps, at `head`.
pub fn el2n_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    device: Device,
) -> Result<Vec<f64>> {
    // With the sum reduction the residuals are σ(z) − y themselves.
    let stats = gradnorm::rollout_grad_stats(
        device,
        bundle,
        targets,
        head,
        &GradNormOptions {
            reduction: Reduction::Sum,
            projection: None,
        },
    )?;
    Ok(stats.resid_sq.iter().map(|v| v.sqrt()).collect())
}

/// The teacher head of a synthetic bundle.
pub fn teacher_head(bundle: &FeatureBundle) -> Result<HeadParams> {
    let t = bundle.teacher().ok_or_else(|| {
        Error::invalid("gradnorm-teacher needs a synthetic bundle (with w_star, b_star)")
    })?;
    Ok(HeadParams::Linear(LinearHead {
        w: t.w_star.clone(),
        b: t.b_star,
    }))
}

/// Trains the proxy of EL2N and LESS: a seeded random `fraction` of every source, a short run.
pub fn train_proxy(bundle: &FeatureBundle, s: &GradientSettings) -> Result<HeadParams> {
    let p = s.proxy;
    if !(p.fraction > 0.0 && p.fraction <= 1.0) {
        return Err(Error::invalid(format!(
            "proxy fraction {} must be in (0, 1]",
            p.fraction
        )));
    }
    let subset = random_fraction(bundle, p.fraction, s.seed)?;
    let mut cfg = TrainConfig::new(s.head.into());
    cfg.seed = s.seed;
    cfg.labels = s.labels;
    cfg.global_batch = p.global_batch;
    cfg.epochs = p.epochs;
    cfg.optim.lr = p.lr;
    let out = train::run(&cfg, bundle, Some(&subset), None, s.device, None)?;
    out.final_head
        .ok_or_else(|| TrainError::MissingOutput("the proxy run produced no head".into()).into())
}

/// A seeded random `fraction` of every source (the `random` baseline), in corpus order.
pub fn random_fraction(bundle: &FeatureBundle, fraction: f64, seed: u64) -> Result<Vec<usize>> {
    let (_, ids) = choose_from_bundle(bundle, &Baseline::Random { seed }, fraction)?;
    Ok(ids.into_iter().map(|id| id.rollout).collect())
}

/// The non-neutral steps of the bench's dev split as a bundle, with their true labels
/// (1 correct, 0 incorrect): the labelled dev data LESS matches gradients against.
pub fn labelled_dev(bench: &BenchSet) -> Result<(FeatureBundle, Vec<f32>)> {
    let feats = bench.features.as_ref().ok_or_else(|| {
        Error::invalid(format!(
            "{}: LESS needs the bench's features bundle",
            bench.path.display()
        ))
    })?;
    let d = feats.dim();
    let rows = feats.features();
    let mut data = Vec::new();
    let mut offsets = vec![0];
    let mut targets = Vec::new();
    for i in bench.indices(Split::Dev) {
        let steps = feats.rollout_steps(i);
        for (j, &label) in bench.records[i].labels.iter().enumerate() {
            if label == 0 {
                continue;
            }
            let s = steps.start + j;
            data.extend((s * d..(s + 1) * d).map(|e| rows.get(e)));
            targets.push(if label > 0 { 1.0 } else { 0.0 });
        }
        if targets.len() > *offsets.last().expect("non-empty") {
            offsets.push(targets.len());
        }
    }
    if targets.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no labelled dev steps",
            bench.path.display()
        )));
    }
    let n = offsets.len() - 1;
    let bundle = FeatureBundle::from_parts(BundleParts {
        features: FeatureData::F32(data),
        dim: d,
        offsets,
        mc_scores: targets.clone(),
        source: vec![0; n],
        line: None,
        labels: None,
        teacher: None,
        meta: crate::data::features::BundleMeta {
            sources: vec!["dev".into()],
            ..Default::default()
        },
    })?;
    Ok((bundle, targets))
}

/// LESS (head-only): cosine between each rollout's gradient and the mean gradient of the
/// labelled dev steps, both at `head`.
pub fn less_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    bench: &BenchSet,
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    let (dev, dev_targets) = labelled_dev(bench)?;
    let dev_grad = gradnorm::total_gradient(s.device, &dev, &dev_targets, head, s.reduction, None)?;
    let norm = dev_grad.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm == 0.0 {
        return Err(Error::Other("LESS: the dev gradient is zero".into()));
    }
    let direction: Vec<f32> = dev_grad.iter().map(|v| (v / norm) as f32).collect();
    let stats = gradnorm::rollout_grad_stats(
        s.device,
        bundle,
        targets,
        head,
        &GradNormOptions {
            reduction: s.reduction,
            projection: Some(Projection::Directions(vec![direction])),
        },
    )?;
    let (_, dots) = stats
        .projected
        .as_ref()
        .expect("a projection was asked for");
    Ok(dots
        .iter()
        .zip(&stats.grad_sq)
        .map(|(&dot, &g2)| {
            if g2 > 0.0 {
                dot as f64 / g2.sqrt()
            } else {
                0.0
            }
        })
        .collect())
}

/// Everything a gradient-based method may need besides its settings.
pub struct GradientInputs<'a> {
    /// The training corpus's features.
    pub bundle: &'a FeatureBundle,
    /// The bench (for `less`).
    pub bench: Option<&'a BenchSet>,
    /// A head checkpoint (for `gradnorm-ckpt`).
    pub checkpoint: Option<&'a HeadParams>,
}

/// Builds the selector `method` (one of [`GRADIENT_NAMES`]).
pub fn gradient_selector(
    method: &str,
    inputs: &GradientInputs<'_>,
    s: &GradientSettings,
) -> Result<PrecomputedSelector> {
    let bundle = inputs.bundle;
    let targets = s.labels.targets(bundle)?;
    let keys = match method {
        "grand" => grand_keys(bundle, &targets, s)?,
        "el2n" => el2n_keys(bundle, &targets, &train_proxy(bundle, s)?, s.device)?,
        "gradnorm-teacher" => gradient_norms(bundle, &targets, &teacher_head(bundle)?, s)?,
        "gradnorm-ckpt" => {
            let head = inputs.checkpoint.ok_or_else(|| {
                Error::invalid("gradnorm-ckpt needs --checkpoint HEAD.safetensors")
            })?;
            gradient_norms(bundle, &targets, head, s)?
        }
        "less" => {
            let bench = inputs.bench.ok_or_else(|| {
                Error::invalid("less needs a bench with a dev split (--bench, --bench-features)")
            })?;
            less_keys(bundle, &targets, &train_proxy(bundle, s)?, bench, s)?
        }
        _ => {
            return Err(Error::invalid(format!(
                "unknown gradient method `{method}`; expected one of {}",
                GRADIENT_NAMES.join(", ")
            )));
        }
    };
    let mut settings = serde_json::to_value(s).expect("settings serialise");
    settings["method"] = serde_json::Value::String(method.to_string());
    if method == "less" {
        settings["uses_labelled_dev_data"] = serde_json::Value::Bool(true);
    }
    PrecomputedSelector::new(method, settings, bundle, keys)
}
