//! Labelled dev data: the bench's dev steps with their verifier labels, whole or per source, the
//! gradient of their loss, and dot products of per-rollout gradients with a direction.

use crate::data::bench::{BenchSet, Split};
use crate::data::features::{BundleParts, FeatureBundle, FeatureData};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gradnorm::{self, GradNormOptions, Projection, Reduction};
use crate::head::HeadParams;

/// Labelled dev steps: a bundle of them and their 0/1 targets.
#[derive(Clone, Copy)]
pub struct DevSteps<'a> {
    /// The steps' features.
    pub bundle: &'a FeatureBundle,
    /// Their targets.
    pub targets: &'a [f32],
}

/// The labelled dev steps of one bench source.
pub struct SourceDev {
    /// The bench source (`data_source`).
    pub source: String,
    /// Its labelled dev steps as a bundle.
    pub bundle: FeatureBundle,
    /// Their targets (1 correct, 0 incorrect).
    pub targets: Vec<f32>,
}

impl SourceDev {
    /// The steps as [`DevSteps`].
    pub fn steps(&self) -> DevSteps<'_> {
        DevSteps {
            bundle: &self.bundle,
            targets: &self.targets,
        }
    }
}

/// The non-neutral steps of the bench's dev split as a bundle, with their true labels
/// (1 correct, 0 incorrect): the labelled dev data LESS, TracIn and influence look along.
pub fn labelled_dev(bench: &BenchSet) -> Result<(FeatureBundle, Vec<f32>)> {
    dev_bundle(bench, |_| true, "dev")
}

/// [`labelled_dev`] split by bench source (LESS's one dev gradient per target task), in the
/// order the sources first appear in the bench; sources without labelled dev steps are left out.
pub fn labelled_dev_by_source(bench: &BenchSet) -> Result<Vec<SourceDev>> {
    let mut names: Vec<&str> = Vec::new();
    for i in bench.indices(Split::Dev) {
        let s = bench.records[i].source.as_str();
        if !names.contains(&s) {
            names.push(s);
        }
    }
    let mut out = Vec::new();
    for name in names {
        let labelled = bench.indices(Split::Dev).into_iter().any(|i| {
            let r = &bench.records[i];
            r.source == name && r.labels.iter().any(|&l| l != 0)
        });
        if !labelled {
            continue;
        }
        let (bundle, targets) = dev_bundle(bench, |s| s == name, name)?;
        out.push(SourceDev {
            source: name.to_string(),
            bundle,
            targets,
        });
    }
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no labelled dev steps",
            bench.path.display()
        )));
    }
    Ok(out)
}

fn dev_bundle(
    bench: &BenchSet,
    keep: impl Fn(&str) -> bool,
    name: &str,
) -> Result<(FeatureBundle, Vec<f32>)> {
    let feats = bench.features.as_ref().ok_or_else(|| {
        Error::invalid(format!(
            "{}: labelled dev data needs the bench's features bundle",
            bench.path.display()
        ))
    })?;
    let d = feats.dim();
    let rows = feats.features();
    let mut data = Vec::new();
    let mut offsets = vec![0];
    let mut targets = Vec::new();
    for i in bench.indices(Split::Dev) {
        if !keep(&bench.records[i].source) {
            continue;
        }
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
            "{}: no labelled dev steps in `{name}`",
            bench.path.display()
        )));
    }
    let bundle = FeatureBundle::from_parts(BundleParts::one_source(
        FeatureData::F32(data),
        d,
        offsets,
        targets.clone(),
        name,
    ))?;
    Ok((bundle, targets))
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
            ..Default::default()
        },
    )?;
    let (_, dots) = stats
        .projected
        .as_ref()
        .expect("a projection was asked for");
    Ok(dots.iter().map(|&d| f64::from(d) * norm).collect())
}
