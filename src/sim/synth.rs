//! Synthesizing a corpus folder: the settings, the all-or-nothing writer, and the manifest that
//! records what was generated and how it compares with the paper's targets.

use std::path::Path;

use super::bench::BenchStats;
use super::calibrate::{self, BenchCalibration, Calibration, calibrate, calibrate_bench};
use super::model::{ModelParams, ModelPreset};
use super::stats::{CorpusStats, EffectiveNoise};
use super::{bench, corpus, generate, preset, rng};
use crate::data::features::{BundleMeta, FeatureDtype};
use crate::error::{Error, Result};
use serde::Serialize;

/// Folder of the annotation files inside the output directory.
pub const ANNOTATIONS_DIR: &str = "annotations";
/// The training features bundle.
pub const FEATURES_FILE: &str = "features.safetensors";
/// The benchmark records.
pub const BENCH_FILE: &str = "bench.jsonl";
/// The benchmark features bundle.
pub const BENCH_BUNDLE_FILE: &str = "bench.safetensors";
/// The run manifest.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Which clean label the optional flip noise is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlipBase {
    /// The hard MC label 1\[s > 0\].
    Mc,
    /// The true step correctness.
    True,
}

impl std::str::FromStr for FlipBase {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mc" => Ok(FlipBase::Mc),
            "true" => Ok(FlipBase::True),
            _ => Err(Error::invalid(format!(
                "unknown flip base `{s}`: expected mc or true"
            ))),
        }
    }
}

/// How each step's Monte Carlo annotation relates to the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum McLabels {
    /// Continuations are sampled from the step's own prefix (the model as documented).
    #[default]
    Faithful,
    /// NEGATIVE CONTROL: every step carries the annotation (K, N and the success rate r behind
    /// them) of a random step of the same source, shuffled within each generation chunk of
    /// consecutive rollouts. The labels keep their marginal distribution but say nothing about
    /// the step, its correctness or the teacher's q*: a check of the theory that still "agrees"
    /// on such a corpus cannot fail.
    Shuffled,
}

impl McLabels {
    /// True for the faithful annotation (the default, left out of manifests).
    pub fn is_faithful(&self) -> bool {
        *self == McLabels::Faithful
    }
}

impl std::str::FromStr for McLabels {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "faithful" => Ok(McLabels::Faithful),
            "shuffled" => Ok(McLabels::Shuffled),
            _ => Err(Error::invalid(format!(
                "unknown MC labels `{s}`: expected faithful or shuffled"
            ))),
        }
    }
}

/// Everything `mprm synth` can be told.
#[derive(Debug, Clone, Serialize)]
pub struct SynthConfig {
    /// Which hand-set knobs `model` started from (recorded in the manifest).
    pub preset: ModelPreset,
    /// Fraction of the full corpus's rollouts to generate (1 = 565,096).
    pub scale: f64,
    /// No source gets fewer rollouts than this.
    pub min_rollouts: usize,
    /// Feature dimension d.
    pub dim: usize,
    /// Feature element type.
    pub dtype: FeatureDtype,
    /// Seed of every random stream.
    pub seed: u64,
    /// Fix the post-error success rate E\[ρ\] instead of fitting it to the global targets.
    pub post_error_success: Option<f64>,
    /// η: probability of flipping each training label (0 = no `labels` tensor).
    pub flip_noise: f64,
    /// What the flip noise is applied to.
    pub flip_of: FlipBase,
    /// Faithful MC annotation, or the shuffled negative control (left out of the manifest when
    /// faithful, so existing corpora keep their manifests).
    #[serde(skip_serializing_if = "McLabels::is_faithful")]
    pub mc_labels: McLabels,
    /// Benchmark questions over all five sources (0 = no benchmark).
    pub bench_questions: usize,
    /// Candidate solutions per benchmark question.
    pub bench_candidates: usize,
    /// Share of benchmark questions in the dev split.
    pub bench_dev_fraction: f64,
    /// Most steps per benchmark solution.
    pub bench_max_steps: usize,
    /// The generative model's fixed hyper-parameters.
    pub model: ModelParams,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            preset: ModelPreset::Paper,
            scale: 0.02,
            min_rollouts: 40,
            dim: 64,
            dtype: FeatureDtype::F32,
            seed: 42,
            post_error_success: None,
            flip_noise: 0.0,
            flip_of: FlipBase::Mc,
            mc_labels: McLabels::Faithful,
            bench_questions: 360,
            bench_candidates: 8,
            bench_dev_fraction: 0.3,
            bench_max_steps: 20,
            model: ModelParams::for_preset(ModelPreset::Paper),
        }
    }
}

impl SynthConfig {
    /// The defaults with `preset`'s model knobs.
    pub fn for_preset(preset: ModelPreset) -> Self {
        SynthConfig {
            preset,
            model: ModelParams::for_preset(preset),
            ..SynthConfig::default()
        }
    }

    /// Checks every setting; the message names the offending option.
    pub fn validate(&self) -> Result<()> {
        if !(self.scale > 0.0 && self.scale <= 1.0) {
            return Err(Error::invalid(format!(
                "--scale {} must lie in (0, 1] (1 is the whole corpus, 565,096 rollouts)",
                self.scale
            )));
        }
        if self.min_rollouts == 0 {
            return Err(Error::invalid(
                "--min-rollouts must be at least 1 (every source needs a rollout)",
            ));
        }
        if self.dim == 0 || self.dim > 65_536 {
            return Err(Error::invalid(format!(
                "--dim {} must lie in 1..=65536",
                self.dim
            )));
        }
        if let Some(m) = self.post_error_success
            && !(m > 0.0 && m < 1.0)
        {
            return Err(Error::invalid(format!(
                "--post-error-success {m} must lie in (0, 1)"
            )));
        }
        if !(0.0..0.5).contains(&self.flip_noise) {
            return Err(Error::invalid(format!(
                "--flip-noise {} must lie in [0, 0.5)",
                self.flip_noise
            )));
        }
        if self.bench_questions > 0 && self.bench_candidates == 0 {
            return Err(Error::invalid("--bench-candidates must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.bench_dev_fraction) {
            return Err(Error::invalid(format!(
                "--bench-dev-fraction {} must lie in [0, 1]",
                self.bench_dev_fraction
            )));
        }
        if !(2..=64).contains(&self.bench_max_steps) {
            return Err(Error::invalid("bench_max_steps must lie in 2..=64"));
        }
        if let Some(name) = self.model.early_stop_by_source.keys().find(|name| {
            !preset::VISUALPRM400K_SOURCES
                .iter()
                .any(|s| s.name == *name)
        }) {
            return Err(Error::invalid(format!(
                "early stop given for `{name}`, which is not a source of the preset"
            )));
        }
        if self.model.max_steps > u8::MAX as usize {
            return Err(Error::invalid("max_steps must fit in a byte"));
        }
        self.model.validate()
    }
}

/// A target, the model's expectation and what the generated data achieved.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Compared {
    /// The paper's value (absent when the paper has none).
    pub target: Option<f64>,
    /// The model's expectation at the fitted parameters.
    pub expected: f64,
    /// Counted on the generated data.
    pub achieved: f64,
}

/// Corpus-wide statistics against Table 1.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusReport {
    /// Rollouts generated (target: Table 1 × scale).
    pub rollouts: u64,
    /// Steps generated.
    pub steps: u64,
    /// Steps per rollout.
    pub steps_per_rollout: Compared,
    /// Mean MC per step.
    pub mean_mc: Compared,
    /// Fraction of zero-score steps.
    pub zero_mc_fraction: Compared,
    /// Fraction of mixed rollouts.
    pub mixed_fraction: Compared,
    /// Words per step (target 27.8; no model expectation beyond the text generator's setting).
    pub words_per_step: Compared,
    /// All-positive rollouts.
    pub all_positive_fraction: f64,
    /// All-zero rollouts.
    pub all_zero_fraction: f64,
    /// Rollouts whose every step is truly correct.
    pub all_correct_fraction: f64,
    /// Steps that are truly wrong.
    pub incorrect_step_fraction: f64,
    /// Rollouts whose annotation was cut by early stop.
    pub early_stopped_fraction: f64,
    /// Raw counters.
    pub counts: CorpusStats,
}

/// One source against Table 8.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    /// Paper name.
    pub name: String,
    /// Annotation file (relative to the output directory).
    pub file: String,
    /// Index in the bundle's `sources`.
    pub index: usize,
    /// Rollouts generated.
    pub rollouts: u64,
    /// Steps generated.
    pub steps: u64,
    /// Early-stop probability.
    pub early_stop: f64,
    /// Fitted mean ability μ_s.
    pub ability: f64,
    /// E\[ρ\] of the source.
    pub recovery_mean: f64,
    /// Steps per rollout.
    pub steps_per_rollout: Compared,
    /// Mean MC per step.
    pub mean_mc: Compared,
    /// Zero-score steps (no per-source target in the paper).
    pub zero_mc_fraction: Compared,
    /// Mixed rollouts (no per-source target in the paper).
    pub mixed_fraction: Compared,
    /// Share of positive steps that are pseudo-positives.
    pub pseudo_positive_share: f64,
}

/// Theory quantities measured on the generated corpus.
#[derive(Debug, Clone, Serialize)]
pub struct TheoryReport {
    /// Empirical η_eff(k): P(step wrong | K = k) and P(prefix wrong | K = k).
    pub effective_noise: Vec<EffectiveNoise>,
    /// P(hard MC label 1 | step wrong).
    pub positive_given_incorrect: f64,
    /// P(hard MC label 0 | step correct).
    pub zero_given_correct: f64,
    /// Share of positive steps whose prefix is wrong.
    pub pseudo_positive_share: f64,
    /// η of the optional flip noise.
    pub flip_noise: f64,
    /// Labels actually flipped.
    pub flipped_labels: u64,
}

/// The benchmark against VisualProcessBench.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// VisualProcessBench's share of correct steps among non-neutral ones.
    pub target_correct_share: f64,
    /// Achieved share.
    pub correct_share: f64,
    /// VisualProcessBench's neutral share.
    pub target_neutral_share: f64,
    /// Achieved neutral share.
    pub neutral_share: f64,
    /// VisualProcessBench's steps per solution (9.4).
    pub target_steps_per_solution: f64,
    /// Achieved steps per solution.
    pub steps_per_solution: f64,
    /// Share of candidates whose final answer is right.
    pub final_correct_share: f64,
    /// The fit.
    pub calibration: BenchCalibration,
    /// Per-source counts.
    pub sources: Vec<BenchStats>,
    /// Totals.
    pub total: BenchStats,
}

/// Relative paths of everything written.
#[derive(Debug, Clone, Serialize)]
pub struct FileList {
    /// Annotation files, in corpus order.
    pub annotations: Vec<String>,
    /// Features bundle.
    pub features: String,
    /// Ground truth.
    pub truth: String,
    /// Benchmark records and bundle (absent without a benchmark).
    pub bench: Option<[String; 2]>,
}

/// `manifest.json`: everything needed to reproduce and judge a synthetic corpus.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// Always `mprm synth`.
    pub tool: String,
    /// Crate version.
    pub version: String,
    /// Seed.
    pub seed: u64,
    /// Every setting.
    pub settings: SynthConfig,
    /// Fingerprint of the corpus (the same as the features bundle's and any ids file's chosen
    /// from it).
    pub corpus_fingerprint: Option<crate::data::fingerprint::CorpusFingerprint>,
    /// Files written.
    pub files: FileList,
    /// The fit.
    pub calibration: Calibration,
    /// Table 1 targets.
    pub targets: preset::CorpusTargets,
    /// Corpus statistics.
    pub corpus: CorpusReport,
    /// Per-source statistics, in corpus order.
    pub sources: Vec<SourceReport>,
    /// Theory quantities.
    pub theory: TheoryReport,
    /// The benchmark (absent when `bench_questions` is 0).
    pub bench: Option<BenchReport>,
    /// Held-out paper statistics (see [`super::scorecard`]): never used to choose a knob.
    pub held_out: Vec<super::scorecard::HeldOutRow>,
}

impl Manifest {
    /// The corpus statistics next to the paper's Table 1, as a plain-text table.
    pub fn table1(&self) -> String {
        let c = &self.corpus;
        let t = &self.targets;
        let scale = self.settings.scale;
        let mut rows = vec![
            format!(
                "{:<26} {:>14} {:>14} {:>14}",
                "metric", "paper Table 1", "synthetic", "model E[·]"
            ),
            format!(
                "{:<26} {:>14} {:>14} {:>14}",
                format!("# rollouts (× {scale})"),
                format!("{:.0}", t.rollouts as f64 * scale),
                c.rollouts,
                "",
            ),
            format!(
                "{:<26} {:>14} {:>14} {:>14}",
                format!("# steps (× {scale})"),
                format!("{:.0}", t.steps as f64 * scale),
                c.steps,
                "",
            ),
        ];
        let pct = |v: f64| format!("{:.2}%", 100.0 * v);
        let num = |v: f64| format!("{v:.4}");
        for (name, cmp, fmt) in [
            (
                "avg. steps / rollout",
                c.steps_per_rollout,
                &num as &dyn Fn(f64) -> String,
            ),
            ("avg. words / step", c.words_per_step, &num),
            ("error-step ratio (s = 0)", c.zero_mc_fraction, &pct),
            ("avg. MC / step", c.mean_mc, &num),
            ("mixed rollouts", c.mixed_fraction, &pct),
        ] {
            rows.push(format!(
                "{:<26} {:>14} {:>14} {:>14}",
                name,
                cmp.target.map(fmt).unwrap_or_default(),
                fmt(cmp.achieved),
                fmt(cmp.expected)
            ));
        }
        rows.join("\n")
    }
}

/// Whether `dir` holds an earlier `mprm synth` output (its manifest says so).
pub fn is_corpus_dir(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(MANIFEST_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|m| m["tool"] == "mprm synth")
}

/// Generates a synthetic corpus, its features bundle, the benchmark and the manifest under
/// `dir`; returns the manifest (also written to `dir/manifest.json`).
///
/// All or nothing: the corpus is built in a hidden temporary folder next to `dir` (marked
/// incomplete, so no reader accepts it) and swapped in for `dir` only once every file and the
/// manifest are complete. A failure leaves an earlier corpus at `dir` untouched. An existing `dir`
/// that is neither empty nor an earlier corpus is refused before any work.
pub fn synthesize(cfg: &SynthConfig, dir: &Path) -> Result<Manifest> {
    cfg.validate()?;
    let out = crate::output::AtomicDir::create(dir, "mprm synth", is_corpus_dir)?;
    let manifest = synthesize_into(cfg, out.path())?;
    out.commit()?;
    Ok(manifest)
}

fn synthesize_into(cfg: &SynthConfig, dir: &Path) -> Result<Manifest> {
    let specs = &preset::VISUALPRM400K_SOURCES;
    let targets = preset::VISUALPRM400K_TARGETS;
    let bench_specs = &preset::VISUALPROCESSBENCH_SOURCES;

    let cal = calibrate(specs, &targets, &cfg.model, cfg.post_error_success);
    if !cal.converged {
        eprintln!(
            "note: with these model settings the global targets cannot be met exactly \
             (expected zero-score steps {:.2}% vs 3.57%, mixed {:.2}% vs 7.67%); see manifest.json",
            100.0 * cal.expected.zero_mc_fraction,
            100.0 * cal.expected.mixed_fraction
        );
    }
    let bench_cal = calibrate_bench(
        bench_specs,
        cfg.bench_max_steps,
        bench::correct_share(),
        &cfg.model.for_bench(),
    );
    let space = generate::FeatureSpace::new(
        cfg.dim,
        cfg.dtype,
        &cfg.model,
        &mut rng::stream(cfg.seed, rng::Stream::Teacher, 0, 0),
    );
    let sizes = corpus::source_sizes(specs, targets.rollouts, cfg.scale, cfg.min_rollouts);
    let plans = corpus::plan_sources(cfg, specs, &cal, &sizes, &space);
    let mut generator = serde_json::json!({
            "tool": "mprm synth",
            "version": env!("CARGO_PKG_VERSION"),
            "preset": cfg.preset,
            "scale": cfg.scale,
            "min_rollouts": cfg.min_rollouts,
            "dim": cfg.dim,
            "dtype": cfg.dtype,
            "flip_noise": cfg.flip_noise,
            "flip_of": cfg.flip_of,
            "recovery": cal.recovery,
            "model": cfg.model,
    });
    if cfg.mc_labels != McLabels::Faithful {
        generator["mc_labels"] = serde_json::json!(cfg.mc_labels);
    }
    let meta = BundleMeta {
        sources: plans.iter().map(|p| p.slug.clone()).collect(),
        seed: Some(cfg.seed),
        generator,
        extra: Default::default(),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let result = corpus::write_corpus(cfg, &cal, &plans, &space, &meta, dir)?;
    let bench = if cfg.bench_questions > 0 {
        Some(bench::write_bench(
            cfg,
            &cal,
            &bench_cal,
            bench_specs,
            &space,
            dir,
        )?)
    } else {
        None
    };
    let mut manifest = build_manifest(cfg, cal.clone(), bench_cal, &plans, &result, bench, targets);
    manifest.corpus_fingerprint = Some(crate::data::fingerprint::CorpusFingerprint::of(
        plans.iter().flat_map(|p| {
            p.step_counts
                .iter()
                .enumerate()
                .map(|(i, &n)| (p.slug.as_str(), i as u64, n as u64))
        }),
    ));
    manifest.held_out = super::scorecard::corpus_rows(&dir.join(ANNOTATIONS_DIR))?;
    crate::output::write_json(dir.join(MANIFEST_FILE), &manifest)?;
    Ok(manifest)
}

fn build_manifest(
    cfg: &SynthConfig,
    cal: Calibration,
    bench_cal: BenchCalibration,
    plans: &[corpus::SourcePlan<'_>],
    result: &corpus::CorpusResult,
    bench: Option<(Vec<BenchStats>, BenchStats)>,
    targets: preset::CorpusTargets,
) -> Manifest {
    let total = &result.total;
    let rollouts = total.rollouts as f64;
    // The model's expectation for the corpus actually generated (its own source mix).
    let expected = calibrate::aggregate(
        &plans.iter().map(|p| p.fit.clone()).collect::<Vec<_>>(),
        plans.iter().map(|p| p.rollouts as f64),
    );
    let corpus_report = CorpusReport {
        rollouts: total.rollouts,
        steps: total.steps,
        steps_per_rollout: Compared {
            target: Some(targets.steps_per_rollout),
            expected: expected.steps_per_rollout,
            achieved: total.steps_per_rollout(),
        },
        mean_mc: Compared {
            target: Some(targets.mean_mc),
            expected: expected.mean_mc,
            achieved: total.mean_mc(),
        },
        zero_mc_fraction: Compared {
            target: Some(targets.zero_mc_fraction),
            expected: expected.zero_mc_fraction,
            achieved: total.zero_fraction(),
        },
        mixed_fraction: Compared {
            target: Some(targets.mixed_fraction),
            expected: expected.mixed_fraction,
            achieved: total.mixed_fraction(),
        },
        words_per_step: Compared {
            target: Some(targets.words_per_step),
            expected: cfg.model.words_per_step,
            achieved: total.words_per_step(),
        },
        all_positive_fraction: total.all_positive_rollouts as f64 / rollouts,
        all_zero_fraction: total.all_zero_rollouts as f64 / rollouts,
        all_correct_fraction: total.all_correct_rollouts as f64 / rollouts,
        incorrect_step_fraction: total.incorrect_steps as f64 / total.steps as f64,
        early_stopped_fraction: total.early_stopped_rollouts as f64 / rollouts,
        counts: total.clone(),
    };
    let sources = plans
        .iter()
        .zip(&result.per_source)
        .enumerate()
        .map(|(index, (p, s))| {
            let e = &p.fit.expected;
            SourceReport {
                name: p.spec.name.to_string(),
                file: format!("{ANNOTATIONS_DIR}/{}", p.file_name()),
                index,
                rollouts: s.rollouts,
                steps: s.steps,
                early_stop: p.fit.early_stop,
                ability: p.fit.ability,
                recovery_mean: p.fit.recovery_mean,
                steps_per_rollout: Compared {
                    target: Some(p.spec.steps_per_rollout()),
                    expected: e.steps,
                    achieved: s.steps_per_rollout(),
                },
                mean_mc: Compared {
                    target: Some(p.spec.mean_mc),
                    expected: e.mean_mc(),
                    achieved: s.mean_mc(),
                },
                zero_mc_fraction: Compared {
                    target: None,
                    expected: e.zero_fraction(),
                    achieved: s.zero_fraction(),
                },
                mixed_fraction: Compared {
                    target: None,
                    expected: e.mixed,
                    achieved: s.mixed_fraction(),
                },
                pseudo_positive_share: s.pseudo_positive_share(),
            }
        })
        .collect();
    let zero_correct: u64 = total.steps_by_k[0] - total.incorrect_by_k[0];
    let positive_incorrect: u64 = total.incorrect_by_k[1..].iter().sum();
    let theory = TheoryReport {
        effective_noise: total.effective_noise(),
        positive_given_incorrect: positive_incorrect as f64 / total.incorrect_steps.max(1) as f64,
        zero_given_correct: zero_correct as f64
            / (total.steps - total.incorrect_steps).max(1) as f64,
        pseudo_positive_share: total.pseudo_positive_share(),
        flip_noise: cfg.flip_noise,
        flipped_labels: total.flipped_labels,
    };
    let bench = bench.map(|(per_source, t)| {
        let labelled = (t.correct + t.incorrect).max(1) as f64;
        BenchReport {
            target_correct_share: bench::correct_share(),
            correct_share: t.correct as f64 / labelled,
            target_neutral_share: bench::neutral_rate(),
            neutral_share: t.neutral as f64 / t.steps.max(1) as f64,
            target_steps_per_solution: 26_950.0 / 2_866.0,
            steps_per_solution: t.steps_per_solution(),
            final_correct_share: t.final_correct as f64 / t.records.max(1) as f64,
            calibration: bench_cal,
            sources: per_source,
            total: t,
        }
    });
    Manifest {
        tool: "mprm synth".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        seed: cfg.seed,
        settings: cfg.clone(),
        corpus_fingerprint: None,
        files: FileList {
            annotations: plans
                .iter()
                .map(|p| format!("{ANNOTATIONS_DIR}/{}", p.file_name()))
                .collect(),
            features: FEATURES_FILE.into(),
            truth: corpus::TRUTH_FILE.into(),
            bench: bench
                .as_ref()
                .map(|_| [BENCH_FILE.to_string(), BENCH_BUNDLE_FILE.to_string()]),
        },
        calibration: cal,
        targets,
        corpus: corpus_report,
        sources,
        theory,
        bench,
        held_out: Vec::new(),
    }
}
