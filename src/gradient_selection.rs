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
//! | (score) `tracin_keys` | Σ_c lr_c ⟨∇L_dev(w_c), g_x(w_c)⟩ over checkpoints (TracIn-CP) | labelled dev data, a run's checkpoints |
//! | (score) `influence_keys` | ∇L_devᵀ (H + λI)⁻¹ g_x at a trained linear head (exact-Hessian influence) | labelled dev data, a trained head |
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

/// Labelled dev steps: a bundle of them (as from [`labelled_dev`]) and their 0/1 targets.
#[derive(Clone, Copy)]
pub struct DevSteps<'a> {
    /// The steps' features.
    pub bundle: &'a FeatureBundle,
    /// Their targets.
    pub targets: &'a [f32],
}

/// The gradient at `head` of the mean BCE over the dev steps (the direction of the dev loss that
/// TracIn and the influence scores look along).
pub fn dev_gradient(dev: DevSteps<'_>, head: &HeadParams, device: Device) -> Result<Vec<f64>> {
    if dev.targets.is_empty() {
        return Err(Error::invalid(
            "the dev loss needs at least one labelled step",
        ));
    }
    let sum =
        gradnorm::total_gradient(device, dev.bundle, dev.targets, head, Reduction::Sum, None)?;
    let m = dev.targets.len() as f64;
    Ok(sum.into_iter().map(|v| v / m).collect())
}

/// ⟨v, g_x⟩ for every rollout x of `bundle` at `head` (g_x under `reduction`).
///
/// The engine projects in f32, so `v` goes in as a unit vector and the dot products are scaled
/// back by ‖v‖ in f64: the relative precision then does not depend on how small v is.
pub fn gradient_dots(
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    v: &[f64],
    reduction: Reduction,
    device: Device,
) -> Result<Vec<f64>> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if !(norm.is_finite()) {
        return Err(Error::Other(format!(
            "a gradient projection direction has norm {norm}"
        )));
    }
    if norm == 0.0 {
        return Ok(vec![0.0; bundle.n_rollouts()]);
    }
    let unit: Vec<f32> = v.iter().map(|x| (x / norm) as f32).collect();
    let stats = gradnorm::rollout_grad_stats(
        device,
        bundle,
        targets,
        head,
        &GradNormOptions {
            reduction,
            projection: Some(Projection::Directions(vec![unit])),
        },
    )?;
    let (_, dots) = stats
        .projected
        .as_ref()
        .expect("a projection was asked for");
    Ok(dots.iter().map(|&d| f64::from(d) * norm).collect())
}

/// A head along a training run, with the learning rate the schedule applied at that point.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The head's parameters.
    pub head: HeadParams,
    /// The learning rate in force at the checkpoint.
    pub lr: f64,
}

/// TracIn-CP (Pruthi et al., 2020): Σ over checkpoints c of lr_c · ⟨∇L_dev(w_c), g_x(w_c)⟩, the
/// first-order decrease of the dev loss that the training steps on x caused along the run.
/// Higher means more helpful. Works for either head.
///
/// Deviations from the paper: the dev loss is the mean BCE over the bench's labelled dev steps
/// (one dev gradient, not one per test example), and the gradients are plain SGD directions
/// although the trainer runs AdamW (as in the original TracIn-CP).
pub fn tracin_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    checkpoints: &[Checkpoint],
    dev: DevSteps<'_>,
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    if checkpoints.is_empty() {
        return Err(Error::invalid("tracin needs at least one checkpoint"));
    }
    let mut keys = vec![0.0; bundle.n_rollouts()];
    for c in checkpoints {
        let dev_grad = dev_gradient(dev, &c.head, s.device)?;
        let dots = gradient_dots(bundle, targets, &c.head, &dev_grad, s.reduction, s.device)?;
        keys.iter_mut().zip(dots).for_each(|(k, d)| *k += c.lr * d);
    }
    Ok(keys)
}

/// Steps per parallel chunk of the Hessian sum: fixed, so the summation order (and every bit of
/// the result) does not depend on the number of threads.
const HESSIAN_CHUNK: usize = 4096;

/// The Hessian of the mean per-step BCE of the linear `head` over the steps of `bundle`, in the
/// augmented coordinates [w; b]: (1/S) Σ_j σ(z_j)(1 − σ(z_j)) [ϕ_j; 1][ϕ_j; 1]ᵀ, row-major
/// (d + 1) × (d + 1). The trainer's loss is a mean over the steps of a batch, so this is the
/// Hessian of the objective it minimises (weight decay aside, which the damping stands in for).
pub fn linear_hessian(bundle: &FeatureBundle, head: &HeadParams) -> Result<Vec<f64>> {
    use rayon::prelude::*;
    let HeadParams::Linear(h) = head else {
        return Err(Error::invalid(
            "the exact Hessian is implemented for the linear head only",
        ));
    };
    let d = bundle.dim();
    let p = d + 1;
    let n_steps = bundle.n_steps();
    if n_steps == 0 {
        return Err(Error::invalid("the Hessian needs at least one step"));
    }
    let rows = bundle.features();
    let starts: Vec<usize> = (0..n_steps).step_by(HESSIAN_CHUNK).collect();
    let partial: Vec<Vec<f64>> = starts
        .par_iter()
        .map(|&start| {
            let mut acc = vec![0.0; p * p];
            let mut x = vec![0.0; p];
            for j in start..(start + HESSIAN_CHUNK).min(n_steps) {
                for (k, xk) in x[..d].iter_mut().enumerate() {
                    *xk = f64::from(rows.get(j * d + k));
                }
                x[d] = 1.0;
                let z: f64 =
                    h.w.iter()
                        .zip(&x[..d])
                        .map(|(&w, &v)| f64::from(w) * v)
                        .sum::<f64>()
                        + f64::from(h.b);
                let q = crate::logistic::sigmoid(z);
                let c = q * (1.0 - q);
                // Upper triangle only; mirrored below.
                for r in 0..p {
                    let cr = c * x[r];
                    for k in r..p {
                        acc[r * p + k] += cr * x[k];
                    }
                }
            }
            acc
        })
        .collect();
    let mut hess = vec![0.0; p * p];
    for part in &partial {
        hess.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    for r in 0..p {
        for k in r..p {
            let v = hess[r * p + k] / n_steps as f64;
            hess[r * p + k] = v;
            hess[k * p + r] = v;
        }
    }
    Ok(hess)
}

/// Influence scores for the linear head (Koh & Liang, 2017, with the exact Hessian): the
/// predicted decrease of the dev loss when rollout x is up-weighted in the training objective,
/// ∇L_devᵀ (H + λI)⁻¹ g_x, i.e. minus Koh & Liang's I_up,loss. Higher means more helpful.
///
/// H is [`linear_hessian`] at the trained `head`; λ = `damping` · tr(H)/(d + 1), a damping
/// relative to the Hessian's mean eigenvalue, which keeps the solve well posed where the features
/// barely vary and stands in for the trainer's weight decay. The MLP head would need a
/// Gauss–Newton or EK-FAC approximation, which is not implemented (an error says so).
pub fn influence_keys(
    bundle: &FeatureBundle,
    targets: &[f32],
    head: &HeadParams,
    dev: DevSteps<'_>,
    damping: f64,
    s: &GradientSettings,
) -> Result<Vec<f64>> {
    if !(damping > 0.0 && damping.is_finite()) {
        return Err(Error::invalid(format!(
            "influence damping {damping} must be a positive number"
        )));
    }
    let mut hess = linear_hessian(bundle, head)?;
    let p = bundle.dim() + 1;
    let lambda = damping * (0..p).map(|r| hess[r * p + r]).sum::<f64>() / p as f64;
    for r in 0..p {
        hess[r * p + r] += lambda;
    }
    let mut dev_grad = dev_gradient(dev, head, s.device)?;
    let direction = crate::linalg::solve(&mut hess, &mut dev_grad, p);
    gradient_dots(bundle, targets, head, &direction, s.reduction, s.device)
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
