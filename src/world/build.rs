//! `mprm world`: train the policy, sample its rollouts, annotate them by Monte Carlo, and write
//! a corpus folder in the layout `mprm synth` writes, so every downstream command reads it
//! unchanged.
//!
//! | file | what |
//! |---|---|
//! | `annotations/<source>.jsonl` | VisualPRM400K's raw layout, one rollout per line |
//! | `features.safetensors` | `mprm-features/1`: the policy's last hidden state at each step end (d = width) |
//! | `truth.safetensors` | [`WORLD_TRUTH_FORMAT`]: the verifier's view of every training step |
//!
//! The features bundle carries teacher tensors like the simulator's: `true_correct` is the
//! verifier's step label and q*, w*, b* the linear teacher fitted to it ([`super::teacher`]), so
//! the experiments run on the world unchanged.
//! | `bench.jsonl`, `bench.safetensors` | held-out problems, verifier labels (1 / −1), dev/test split |
//! | `policy.safetensors` | the trained policy (`mprm-policy/1`) |
//! | `manifest.json` | every setting, the counts and the world's portrait |
//!
//! **Streams.** Training problems, corpus problems and bench problems come from three keyed
//! seeds, rollout r of problem g from the stream (seed, g·K + r), a bench candidate's likewise,
//! and an MC continuation's from (rollout, step, index) ([`super::annotate`]). Every stream is
//! keyed, never shared, so the bytes do not depend on the batching or the thread count.
//!
//! **Annotation semantics** are VisualPRM400K's (see [`super::annotate`]): a step's score is
//! k/16, and with early stop (the default) every step after the first zero score gets score 0 and
//! `num_mc_total` 0 without being sampled.
//!
//! **What is skipped.** A rollout with no step separator carries no step label; it is left out
//! and counted (`skipped_rollouts`), as is a bench candidate without a step.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::bench::{BenchLine, write_record};
use crate::data::features::{BundleMeta, BundleParts, FeatureBundle, FeatureData, TeacherInfo};
use crate::data::raw::write_raw_line;
use crate::data::rollout::{Rollout as RawRollout, Step};
use crate::data::safetensors_io::{SafetensorsWriter, TensorSpec};
use crate::device::Device;
use crate::device::burn::BurnJob;
use crate::error::{Error, Result};
use crate::fused_ops::TrainBackend;
use crate::output::{AtomicDir, write_json, write_text};
use crate::sim::McLabels;
use crate::sim::stats::{CorpusStats, StepFacts};
use crate::train::plan::derive_seed;

use super::annotate::{
    Continuer, McCounts, McSpec, PolicyContinuer, Rollout, mc_annotate, parse_rollout, prompt,
};
use super::engine::{CpuContinuer, CpuPolicy};
use super::learn::{PolicyTraining, Trainer, train_policy};
use super::policy::{Policy, PolicySpec};
use super::portrait::Portrait;
use super::problems::{self, DifficultyRange, Problem, Source};
use super::sample::SampleSpec;
use super::teacher::{LinearTeacher, fit_linear_teacher};
use super::tokens::{PAD, decode};
use super::train_engine::train_policy_on_cpu;

/// The annotation folder, features, truth, bench and manifest names (those of `mprm synth`).
pub use crate::sim::{
    ANNOTATIONS_DIR, BENCH_BUNDLE_FILE, BENCH_FILE, FEATURES_FILE, MANIFEST_FILE,
};
/// The ground-truth file.
pub const TRUTH_FILE: &str = "truth.safetensors";
/// Its `format` metadata.
pub const WORLD_TRUTH_FORMAT: &str = "mprm-world-truth/1";
/// The trained policy.
pub const POLICY_FILE: &str = "policy.safetensors";
/// The `tool` of the manifest.
pub const WORLD_TOOL: &str = "mprm world";
/// Continuations per step prefix: VisualPRM400K's 16, which the scores (k/16) and every
/// statistic assume.
pub const MC_CONTINUATIONS: u32 = 16;

/// Key kinds of the world's streams (clear of the policy training's and the annotation's).
const CORPUS_PROBLEMS: u64 = 0x574F_0030;
const BENCH_PROBLEMS: u64 = 0x574F_0031;
const ROLLOUT_KEYS: u64 = 0x574F_0032;
const BENCH_KEYS: u64 = 0x574F_0033;
const BENCH_SPLIT: u64 = 0x574F_0034;
const MC_SEED: u64 = 0x574F_0035;
const MC_SHUFFLE: u64 = 0x574F_0036;

/// The default world's problems: one-digit operands, two to three steps. On the full range
/// (up to six steps, two-digit operands) a policy trained for ten minutes on two cores gets 4% of
/// final answers right; on this one, 15% after 600 steps.
pub const DEFAULT_DIFFICULTY: DifficultyRange = DifficultyRange { lo: 0.0, hi: 0.3 };

/// λ of the linear teacher's ridge penalty (on the summed loss; the hidden states have unit
/// scale, so over tens of thousands of steps it only keeps the fit finite where a direction
/// separates the labels).
const TEACHER_RIDGE: f64 = 1.0;

/// Rollouts per batch of the hidden-state pass.
const FEATURE_BATCH: usize = 64;

/// Everything `mprm world` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldConfig {
    /// Training problems, spread evenly over the four sources.
    pub problems: usize,
    /// Rollouts sampled per training problem (VisualPRM400K: 4 per question).
    pub rollouts_per_problem: usize,
    /// Held-out bench problems (0 = no bench).
    pub bench_problems: usize,
    /// Candidate solutions per bench problem.
    pub bench_candidates: usize,
    /// Share of bench problems in the dev split.
    pub bench_dev_fraction: f64,
    /// Seed of every stream; also the policy's training seed.
    pub seed: u64,
    /// The policy's shape.
    pub policy: PolicySpec,
    /// How the policy is trained (its `seed` is replaced by [`WorldConfig::seed`]).
    pub training: PolicyTraining,
    /// Sampling temperature of rollouts, continuations and bench candidates.
    pub temperature: f64,
    /// Stop annotating a rollout after its first zero score (VisualPRM400K's generator does).
    pub early_stop: bool,
    /// Difficulty range of the corpus and bench problems.
    pub difficulty: DifficultyRange,
    /// Sequences per sampling batch.
    pub sample_rows: usize,
    /// Use this trained policy (`mprm-policy/1`, e.g. an earlier world's `policy.safetensors`)
    /// instead of training one; `policy` and `training` are then ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<std::path::PathBuf>,
    /// `shuffled` makes the world a NEGATIVE CONTROL: after annotation, every step carries the
    /// Monte Carlo counts (K, N) of a random step of its own source, so the labels keep their
    /// marginal distribution but say nothing about the step. Left out of manifests when faithful.
    #[serde(skip_serializing_if = "McLabels::is_faithful")]
    pub mc_labels: McLabels,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            problems: 5_000,
            rollouts_per_problem: 4,
            bench_problems: 400,
            bench_candidates: 8,
            bench_dev_fraction: 0.3,
            seed: 42,
            policy: PolicySpec::default(),
            training: PolicyTraining {
                steps: 1000,
                difficulty: DEFAULT_DIFFICULTY,
                ..PolicyTraining::default()
            },
            temperature: 1.0,
            early_stop: true,
            difficulty: DEFAULT_DIFFICULTY,
            sample_rows: 256,
            policy_file: None,
            mc_labels: McLabels::Faithful,
        }
    }
}

impl WorldConfig {
    /// Checks every setting; the message names the option.
    pub fn validate(&self) -> Result<()> {
        if let Some(p) = &self.policy_file
            && !p.is_file()
        {
            return Err(Error::invalid(format!(
                "--policy {}: no such file",
                p.display()
            )));
        }
        self.policy.check()?;
        self.training.check()?;
        self.difficulty.check()?;
        if self.problems < Source::ALL.len() || self.rollouts_per_problem == 0 {
            return Err(Error::invalid(format!(
                "--problems must be at least {} (one per source) and --rollouts-per-problem at \
                 least 1",
                Source::ALL.len()
            )));
        }
        if self.bench_problems > 0 && self.bench_candidates == 0 {
            return Err(Error::invalid("--bench-candidates must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.bench_dev_fraction) {
            return Err(Error::invalid(format!(
                "--bench-dev-fraction {} must lie in [0, 1]",
                self.bench_dev_fraction
            )));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::invalid(format!(
                "--temperature {} must be a positive number",
                self.temperature
            )));
        }
        if self.sample_rows == 0 {
            return Err(Error::invalid("sample_rows must be at least 1"));
        }
        Ok(())
    }

    fn training(&self) -> PolicyTraining {
        PolicyTraining {
            seed: self.seed,
            ..self.training
        }
    }

    fn sampling(&self) -> SampleSpec {
        SampleSpec {
            temperature: self.temperature,
            max_new: self.policy.max_len,
        }
    }

    /// Training problem g: source g mod 4, index g / 4.
    fn corpus_problem(&self, g: usize) -> Result<Problem> {
        let n = Source::ALL.len();
        problems::generate(
            Source::ALL[g % n],
            derive_seed(self.seed, CORPUS_PROBLEMS, 0),
            (g / n) as u64,
            self.difficulty,
        )
    }

    /// Bench problem b, from its own stream (held out from the corpus's).
    fn bench_problem(&self, b: usize) -> Result<Problem> {
        let n = Source::ALL.len();
        problems::generate(
            Source::ALL[b % n],
            derive_seed(self.seed, BENCH_PROBLEMS, 0),
            (b / n) as u64,
            self.difficulty,
        )
    }
}

/// Counts of the corpus and the bench as written.
#[derive(Debug, Clone, Serialize)]
pub struct WorldCounts {
    /// Rollouts sampled.
    pub sampled_rollouts: u64,
    /// Rollouts left out because they have no step.
    pub skipped_rollouts: u64,
    /// Rollouts per source, in corpus order.
    pub rollouts_by_source: Vec<u64>,
    /// Continuations sampled for the MC scores.
    pub continuations: u64,
    /// Bench candidates written.
    pub bench_records: u64,
    /// Bench candidates left out because they have no step.
    pub bench_skipped: u64,
    /// Bench candidates in the dev split.
    pub bench_dev_records: u64,
    /// Bench steps labelled correct / incorrect.
    pub bench_correct_steps: u64,
    /// Bench steps labelled incorrect.
    pub bench_incorrect_steps: u64,
    /// Bench candidates whose final answer is right.
    pub bench_final_correct: u64,
}

/// What became of the policy's training.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// Mean loss of the first 1% of steps (at least one); absent for a loaded policy.
    pub loss_first: Option<f64>,
    /// Mean loss of the last 1% of steps.
    pub loss_last: Option<f64>,
    /// Share of corpus rollouts whose final answer is right at the sampling temperature.
    pub rollout_accuracy: f64,
    /// Share of bench candidates whose final answer is right.
    pub bench_accuracy: Option<f64>,
}

/// `manifest.json` of a world folder.
#[derive(Debug, Clone, Serialize)]
pub struct WorldManifest {
    /// Always `mprm world`.
    pub tool: String,
    /// Crate version.
    pub version: String,
    /// The seed.
    pub seed: u64,
    /// Every setting.
    pub settings: WorldConfig,
    /// Where it ran (`cpu` or `cuda:N`) and through which backend.
    pub device: String,
    /// The bundle's corpus fingerprint.
    pub corpus_fingerprint: crate::data::fingerprint::CorpusFingerprint,
    /// Files written, relative to the folder.
    pub files: Vec<String>,
    /// Source names, in corpus order.
    pub sources: Vec<String>,
    /// Counts.
    pub counts: WorldCounts,
    /// The policy's training.
    pub policy: PolicyReport,
    /// The world's measured portrait beside the paper's Table 1 and the simulator.
    pub portrait: Portrait,
    /// The linear teacher fitted to the verifier's labels (see [`super::teacher`]).
    pub teacher: LinearTeacher,
}

/// Whether `dir` holds an earlier `mprm world` output.
pub fn is_world_dir(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(MANIFEST_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|m| m["tool"] == WORLD_TOOL)
}

/// Builds the world folder at `dir` on `device`, all or nothing (as `mprm synth`).
pub fn build_world(cfg: &WorldConfig, dir: &Path, device: Device) -> Result<WorldManifest> {
    cfg.validate()?;
    let out = AtomicDir::create(dir, WORLD_TOOL, is_world_dir)?;
    let manifest = crate::device::burn::run(
        device,
        WorldJob {
            cfg,
            dir: out.path(),
        },
    )?;
    out.commit()?;
    Ok(manifest)
}

struct WorldJob<'a> {
    cfg: &'a WorldConfig,
    dir: &'a Path,
}

impl BurnJob for WorldJob<'_> {
    type Output = WorldManifest;

    fn run<B: TrainBackend>(
        self,
        device: &B::Device,
        at: Device,
        backend: &'static str,
    ) -> Result<WorldManifest> {
        let (cfg, dir) = (self.cfg, self.dir);
        let (policy, losses) = match &cfg.policy_file {
            Some(path) => (Policy::<B::InnerBackend>::load(path, device)?, Vec::new()),
            None => match (at, cfg.training.trainer) {
                (Device::Cpu, Trainer::Auto) => {
                    let trained = train_policy_on_cpu(cfg.policy, &cfg.training())?;
                    let policy = Policy::from_values(cfg.policy, trained.params, device)?;
                    (policy, trained.losses)
                }
                _ => {
                    let trained = train_policy::<B>(cfg.policy, &cfg.training(), device)?;
                    (trained.policy, trained.losses)
                }
            },
        };
        let mut extra = BTreeMap::new();
        extra.insert("seed".into(), cfg.seed.to_string());
        if cfg.policy_file.is_none() {
            extra.insert(
                "training".into(),
                serde_json::to_string(&cfg.training()).expect("settings serialise"),
            );
        }
        policy.save(&dir.join(POLICY_FILE), &extra)?;
        // a loaded policy brings its own shape
        let cfg = &WorldConfig {
            policy: policy.spec(),
            ..cfg.clone()
        };
        let tail = (losses.len() / 100).max(1);
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);

        let engine = CpuPolicy::from_policy(&policy);
        let runner: Box<dyn Runner + '_> = match at {
            Device::Cpu => Box::new(CpuContinuer {
                policy: &engine,
                spec: cfg.sampling(),
            }),
            Device::Cuda(_) => Box::new(BurnRunner {
                policy: &policy,
                spec: cfg.sampling(),
                rows: cfg.sample_rows,
                device: device.clone(),
            }),
        };
        let corpus = write_corpus(cfg, runner.as_ref(), dir)?;
        let bench = if cfg.bench_problems > 0 {
            Some(write_bench(cfg, runner.as_ref(), &corpus.teacher, dir)?)
        } else {
            None
        };
        let mut files = Vec::new();
        files.extend(
            corpus
                .sources
                .iter()
                .map(|s| format!("{ANNOTATIONS_DIR}/{s}.jsonl")),
        );
        files.extend([FEATURES_FILE, TRUTH_FILE, POLICY_FILE].map(String::from));
        if bench.is_some() {
            files.extend([BENCH_FILE, BENCH_BUNDLE_FILE].map(String::from));
        }
        let b = bench.unwrap_or_default();
        let counts = WorldCounts {
            sampled_rollouts: corpus.sampled,
            skipped_rollouts: corpus.sampled - corpus.stats.rollouts,
            rollouts_by_source: corpus.by_source.clone(),
            continuations: corpus.continuations,
            bench_records: b.records,
            bench_skipped: b.skipped,
            bench_dev_records: b.dev,
            bench_correct_steps: b.correct,
            bench_incorrect_steps: b.incorrect,
            bench_final_correct: b.final_correct,
        };
        let manifest = WorldManifest {
            tool: WORLD_TOOL.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            seed: cfg.seed,
            settings: cfg.clone(),
            device: match at {
                Device::Cpu => match (&cfg.policy_file, cfg.training.trainer) {
                    (None, Trainer::Auto) => {
                        format!("{at} (training and sampling: mprm's CPU engines)")
                    }
                    (None, Trainer::Burn) => {
                        format!("{at} (training: {backend}; sampling: mprm's CPU engine)")
                    }
                    (Some(_), _) => format!("{at} (sampling: mprm's CPU engine)"),
                },
                Device::Cuda(_) => format!("{at} ({backend})"),
            },
            corpus_fingerprint: corpus.fingerprint,
            files,
            sources: corpus.sources.clone(),
            policy: PolicyReport {
                loss_first: mean(&losses[..tail.min(losses.len())]),
                loss_last: mean(&losses[losses.len().saturating_sub(tail)..]),
                rollout_accuracy: corpus.answer_correct as f64
                    / corpus.stats.rollouts.max(1) as f64,
                bench_accuracy: (b.records > 0).then(|| b.final_correct as f64 / b.records as f64),
            },
            portrait: Portrait::new(&corpus.stats, Some(&Portrait::simulator_counts()?)),
            teacher: corpus.teacher.clone(),
            counts,
        };
        write_json(dir.join(MANIFEST_FILE), &manifest)?;
        Ok(manifest)
    }
}

/// How the world runs its policy: Burn's forward on the job's backend, or, on the CPU, the
/// direct engine ([`super::engine`]), many times faster at this size.
trait Runner: Continuer + Sync {
    /// The policy's final hidden state at every step end of every rollout, [steps][W].
    fn hidden_at_step_ends(&self, rollouts: &[&Rollout]) -> Result<Vec<f32>>;
}

impl Runner for CpuContinuer<'_> {
    fn hidden_at_step_ends(&self, rollouts: &[&Rollout]) -> Result<Vec<f32>> {
        self.policy.hidden_at_step_ends(rollouts)
    }
}

impl<B: Backend> Runner for BurnRunner<'_, B> {
    fn hidden_at_step_ends(&self, rollouts: &[&Rollout]) -> Result<Vec<f32>> {
        hidden_at_step_ends(self.policy, rollouts, &self.device)
    }
}

/// The policy's Burn sampler over batches of `rows`, batches in parallel (each row has its own
/// stream, so the split cannot change what is drawn).
struct BurnRunner<'a, B: Backend> {
    policy: &'a Policy<B>,
    spec: SampleSpec,
    rows: usize,
    device: B::Device,
}

impl<B: Backend> Continuer for BurnRunner<'_, B> {
    fn continue_rows(&self, prompts: &[Vec<u32>], keys: &[u64]) -> Result<Vec<Vec<u32>>> {
        let parts: Vec<Vec<Vec<u32>>> = prompts
            .par_chunks(self.rows)
            .zip(keys.par_chunks(self.rows))
            .map(|(p, k)| {
                PolicyContinuer {
                    policy: self.policy,
                    spec: self.spec,
                    rows: self.rows,
                    device: self.device.clone(),
                }
                .continue_rows(p, k)
            })
            .collect::<Result<_>>()?;
        Ok(parts.into_iter().flatten().collect())
    }
}

/// One sampled rollout of problem `problem` with its global key.
struct Sampled {
    problem: usize,
    id: u64,
    rollout: Rollout,
}

/// Samples `count` rollouts of each problem with keys `tag`, in parallel batches; returns those
/// with a step, in (problem, index) order, and the number sampled.
fn sample_rollouts(
    cfg: &WorldConfig,
    problems: &[Problem],
    count: usize,
    tag: u64,
    continuer: &dyn Continuer,
    what: &str,
) -> Result<(Vec<Sampled>, u64)> {
    let mut prompts = Vec::with_capacity(problems.len() * count);
    let mut keys = Vec::with_capacity(problems.len() * count);
    for (g, p) in problems.iter().enumerate() {
        let text = prompt(p)?;
        for r in 0..count {
            prompts.push(text.clone());
            keys.push(derive_seed(cfg.seed, tag, (g * count + r) as u64));
        }
    }
    let bar = crate::progress::bar(prompts.len() as u64, what);
    let mut out = Vec::with_capacity(prompts.len());
    let step = cfg.sample_rows * rayon::current_num_threads().max(1);
    for (chunk, (p, k)) in prompts.chunks(step).zip(keys.chunks(step)).enumerate() {
        let continued = continuer.continue_rows(p, k)?;
        for (i, (prefix, new)) in p.iter().zip(continued).enumerate() {
            let id = chunk * step + i;
            let g = id / count;
            let mut tokens = prefix.clone();
            tokens.extend(new);
            if let Some(rollout) = parse_rollout(&problems[g], tokens)? {
                out.push(Sampled {
                    problem: g,
                    id: id as u64,
                    rollout,
                });
            }
        }
        bar.inc(p.len() as u64);
    }
    bar.finish_and_clear();
    Ok((out, prompts.len() as u64))
}

/// Counts the continuations a bar should expect and reports progress round by round.
struct CountingContinuer<'a> {
    inner: &'a dyn Continuer,
    bar: crate::progress::Progress,
}

impl Continuer for CountingContinuer<'_> {
    fn continue_rows(&self, prompts: &[Vec<u32>], keys: &[u64]) -> Result<Vec<Vec<u32>>> {
        let step = 4096;
        let mut out = Vec::with_capacity(prompts.len());
        for (p, k) in prompts.chunks(step).zip(keys.chunks(step)) {
            out.extend(self.inner.continue_rows(p, k)?);
            self.bar.inc(p.len() as u64);
        }
        Ok(out)
    }
}

/// The policy's last hidden state at every step end of every rollout, [steps][width] in
/// rollout order; right-padded batches (causal attention: padding after a row's tokens never
/// reaches them).
fn hidden_at_step_ends<B: Backend>(
    policy: &Policy<B>,
    rollouts: &[&Rollout],
    device: &B::Device,
) -> Result<Vec<f32>> {
    let w = policy.spec().width;
    let parts: Vec<Vec<f32>> = rollouts
        .par_chunks(FEATURE_BATCH)
        .map(|batch| {
            let t = batch.iter().map(|r| r.tokens.len()).max().unwrap_or(1);
            let ids: Vec<i64> = batch
                .iter()
                .flat_map(|r| {
                    r.tokens
                        .iter()
                        .map(|&x| i64::from(x))
                        .chain(std::iter::repeat_n(i64::from(PAD), t - r.tokens.len()))
                })
                .collect();
            let tokens =
                Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch.len(), t]), device);
            let (_, hidden) = policy.forward(tokens)?;
            let h: Vec<f32> = hidden
                .into_data()
                .convert::<f32>()
                .into_vec()
                .map_err(|e| Error::Other(format!("hidden states: {e:?}")))?;
            let mut rows = Vec::new();
            for (b, r) in batch.iter().enumerate() {
                for &e in &r.step_ends {
                    let at = (b * t + e) * w;
                    rows.extend_from_slice(&h[at..at + w]);
                }
            }
            Ok(rows)
        })
        .collect::<Result<_>>()?;
    Ok(parts.concat())
}

/// What the corpus writer hands back.
struct CorpusOut {
    teacher: LinearTeacher,
    sources: Vec<String>,
    by_source: Vec<u64>,
    sampled: u64,
    continuations: u64,
    answer_correct: u64,
    stats: CorpusStats,
    fingerprint: crate::data::fingerprint::CorpusFingerprint,
}

fn write_corpus(cfg: &WorldConfig, runner: &dyn Runner, dir: &Path) -> Result<CorpusOut> {
    let problems: Vec<Problem> = (0..cfg.problems)
        .map(|g| cfg.corpus_problem(g))
        .collect::<Result<_>>()?;
    let (sampled, n_sampled) = sample_rollouts(
        cfg,
        &problems,
        cfg.rollouts_per_problem,
        ROLLOUT_KEYS,
        runner,
        "world rollouts",
    )?;
    // corpus order: by source, then problem, then rollout index
    let n_sources = Source::ALL.len();
    let mut order: Vec<&Sampled> = sampled.iter().collect();
    order.sort_by_key(|s| (s.problem % n_sources, s.problem, s.id));

    let upper: u64 = order
        .iter()
        .map(|s| s.rollout.steps.len() as u64 * u64::from(MC_CONTINUATIONS))
        .sum();
    let counting = CountingContinuer {
        inner: runner,
        bar: crate::progress::bar(upper, "MC continuations (at most)"),
    };
    let jobs: Vec<(&Problem, &Rollout, u64)> = order
        .iter()
        .map(|s| (&problems[s.problem], &s.rollout, s.id))
        .collect();
    let mc = McSpec {
        continuations: MC_CONTINUATIONS,
        early_stop: cfg.early_stop,
    };
    let mut counts = mc_annotate(&jobs, &counting, mc, derive_seed(cfg.seed, MC_SEED, 0))?;
    counting.bar.finish_and_clear();
    if cfg.mc_labels == McLabels::Shuffled {
        let source_of: Vec<usize> = order.iter().map(|s| s.problem % n_sources).collect();
        shuffle_within_sources(&mut counts, &source_of, n_sources, cfg.seed);
    }

    let rollouts: Vec<&Rollout> = order.iter().map(|s| &s.rollout).collect();
    let features = runner.hidden_at_step_ends(&rollouts)?;

    let sources: Vec<String> = Source::ALL.iter().map(|s| s.name().to_string()).collect();
    let mut text = vec![String::new(); n_sources];
    let mut lines_in = vec![0u64; n_sources];
    let mut offsets = vec![0usize];
    let (mut source_ids, mut lines, mut scores) = (Vec::new(), Vec::new(), Vec::new());
    let mut truth = TruthColumns::default();
    let mut stats = CorpusStats::new();
    let mut continuations = 0u64;
    let mut answer_correct = 0u64;
    for (s, c) in order.iter().zip(&counts) {
        let problem = &problems[s.problem];
        let src = s.problem % n_sources;
        let raw = raw_rollout(problem, &s.rollout, c, &sources[src], lines_in[src])?;
        write_raw_line(&mut text[src], &raw);
        text[src].push('\n');
        source_ids.push(src as u32);
        lines.push(lines_in[src]);
        lines_in[src] += 1;
        offsets.push(offsets.last().expect("non-empty") + s.rollout.steps.len());
        scores.extend(raw.steps.iter().map(|st| st.score as f32));
        continuations += c.total.iter().map(|&t| u64::from(t)).sum::<u64>();
        answer_correct += u64::from(s.rollout.check.answer_correct);
        let facts = step_facts(&s.rollout, c);
        let words = s.rollout.steps.len() as u64;
        stats.add_steps(&facts, words);
        truth.push(s, problem, c, &facts);
    }
    for (name, t) in sources.iter().zip(&text) {
        write_text(dir.join(ANNOTATIONS_DIR).join(format!("{name}.jsonl")), t)?;
    }
    let meta = BundleMeta {
        sources: sources.clone(),
        seed: Some(cfg.seed),
        generator: serde_json::json!({
            "tool": WORLD_TOOL,
            "version": env!("CARGO_PKG_VERSION"),
            "features": "the policy's last hidden state at each step's separator token",
            "policy": cfg.policy,
        }),
        extra: Default::default(),
    };
    let teacher = fit_linear_teacher(
        &features,
        cfg.policy.width,
        &truth.step_correct,
        TEACHER_RIDGE,
    )?;
    let bundle = FeatureBundle::from_parts(BundleParts {
        teacher: Some(teacher_info(&teacher, &features, &truth.step_correct)),
        features: FeatureData::F32(features),
        dim: cfg.policy.width,
        offsets: offsets.clone(),
        mc_scores: scores,
        source: source_ids,
        line: Some(lines),
        labels: None,
        meta,
    })?;
    bundle.save(dir.join(FEATURES_FILE))?;
    truth.write(&dir.join(TRUTH_FILE), &offsets, &sources)?;
    Ok(CorpusOut {
        teacher,
        fingerprint: bundle.fingerprint(),
        sources,
        by_source: lines_in,
        sampled: n_sampled,
        continuations,
        answer_correct,
        stats,
    })
}

/// The negative control's annotation: the step-level pairs (K, N) of each source permuted among
/// that source's steps (a seeded Fisher–Yates per source), rollout lengths unchanged.
fn shuffle_within_sources(counts: &mut [McCounts], source_of: &[usize], sources: usize, seed: u64) {
    for src in 0..sources {
        let rollouts: Vec<usize> = (0..counts.len()).filter(|&i| source_of[i] == src).collect();
        let pool: Vec<(u32, u32)> = rollouts
            .iter()
            .flat_map(|&i| {
                let c = &counts[i];
                c.correct.iter().copied().zip(c.total.iter().copied())
            })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, MC_SHUFFLE, src as u64));
        let order = crate::sim::rng::permutation(&mut rng, pool.len());
        let mut next = order.iter().map(|&k| pool[k as usize]);
        for &i in &rollouts {
            let c = &mut counts[i];
            for (k, n) in c.correct.iter_mut().zip(c.total.iter_mut()) {
                (*k, *n) = next.next().expect("one pair per step");
            }
        }
    }
}

/// The bundle's teacher tensors: q* of every row under `t`, the verifier's labels, w* and b*.
fn teacher_info(t: &LinearTeacher, features: &[f32], correct: &[u8]) -> TeacherInfo {
    let d = t.w.len();
    TeacherInfo {
        q: features.chunks_exact(d).map(|x| t.q(x) as f32).collect(),
        true_correct: correct.to_vec(),
        w_star: t.w.iter().map(|&v| v as f32).collect(),
        b_star: t.b as f32,
    }
}

/// The verifier's view of each step in the form the corpus statistics count.
fn step_facts(r: &Rollout, c: &McCounts) -> Vec<StepFacts> {
    r.check
        .steps
        .iter()
        .zip(c.correct.iter().zip(&c.total))
        .map(|(v, (&k, &n))| StepFacts {
            mc_correct: k,
            mc_total: n,
            correct: v.correct,
            prefix_correct: v.on_track,
        })
        .collect()
}

/// The text after the prompt, as the policy wrote it.
fn response_text(r: &Rollout, prompt_len: usize) -> Result<String> {
    decode(&r.tokens[prompt_len..])
}

/// A rollout in VisualPRM400K's raw layout. No image exists: the path is a placeholder, because
/// the reference selection script drops a record whose `image` is empty.
fn raw_rollout(
    problem: &Problem,
    r: &Rollout,
    c: &McCounts,
    source: &str,
    line: u64,
) -> Result<RawRollout> {
    let prompt_len = problem.question.chars().count() + 2; // <bos>, question, '?'
    Ok(RawRollout {
        source: source.to_string(),
        line,
        image: Some(format!("world/{source}/{line:06}.png")),
        question: Some(format!("{}?", problem.question)),
        question_orig: Some(problem.question.clone()),
        answer: Some(problem.answer().to_string()),
        response: Some(response_text(r, prompt_len)?),
        steps: r
            .steps
            .iter()
            .zip(c.correct.iter().zip(&c.total))
            .map(|(text, (&k, &n))| Step {
                text: text.clone(),
                score: f64::from(k) / f64::from(MC_CONTINUATIONS),
                num_mc_correct: k,
                num_mc_total: n,
            })
            .collect(),
        num_mc_sequences: MC_CONTINUATIONS,
    })
}

/// The columns of `truth.safetensors`.
#[derive(Default)]
struct TruthColumns {
    step_correct: Vec<u8>,
    prefix_correct: Vec<u8>,
    arithmetic: Vec<u8>,
    mc_correct: Vec<u8>,
    mc_total: Vec<u8>,
    problem: Vec<i64>,
    difficulty: Vec<f32>,
    answer_correct: Vec<u8>,
}

impl TruthColumns {
    fn push(&mut self, s: &Sampled, problem: &Problem, c: &McCounts, facts: &[StepFacts]) {
        for (f, v) in facts.iter().zip(&s.rollout.check.steps) {
            self.step_correct.push(u8::from(f.correct));
            self.prefix_correct.push(u8::from(f.prefix_correct));
            self.arithmetic.push(u8::from(v.arithmetic));
        }
        self.mc_correct.extend(c.correct.iter().map(|&k| k as u8));
        self.mc_total.extend(c.total.iter().map(|&n| n as u8));
        self.problem.push(s.problem as i64);
        self.difficulty.push(problem.difficulty as f32);
        self.answer_correct
            .push(u8::from(s.rollout.check.answer_correct));
    }

    fn write(&self, path: &Path, offsets: &[usize], sources: &[String]) -> Result<()> {
        let (s, r) = (self.step_correct.len(), self.problem.len());
        let specs = [
            TensorSpec::new("offsets", safetensors::Dtype::I64, &[r + 1]),
            TensorSpec::new("step_correct", safetensors::Dtype::U8, &[s]),
            TensorSpec::new("prefix_correct", safetensors::Dtype::U8, &[s]),
            TensorSpec::new("arithmetic", safetensors::Dtype::U8, &[s]),
            TensorSpec::new("mc_correct", safetensors::Dtype::U8, &[s]),
            TensorSpec::new("mc_total", safetensors::Dtype::U8, &[s]),
            TensorSpec::new("problem", safetensors::Dtype::I64, &[r]),
            TensorSpec::new("difficulty", safetensors::Dtype::F32, &[r]),
            TensorSpec::new("answer_correct", safetensors::Dtype::U8, &[r]),
        ];
        let mut header = BTreeMap::new();
        header.insert("format".to_string(), WORLD_TRUTH_FORMAT.to_string());
        header.insert(
            "sources".to_string(),
            serde_json::to_string(sources).expect("strings serialise"),
        );
        let mut w = SafetensorsWriter::create(path, &specs, &header)?;
        let offsets: Vec<i64> = offsets.iter().map(|&o| o as i64).collect();
        w.write_all("offsets", &offsets)?;
        w.write_all("step_correct", &self.step_correct)?;
        w.write_all("prefix_correct", &self.prefix_correct)?;
        w.write_all("arithmetic", &self.arithmetic)?;
        w.write_all("mc_correct", &self.mc_correct)?;
        w.write_all("mc_total", &self.mc_total)?;
        w.write_all("problem", &self.problem)?;
        w.write_all("difficulty", &self.difficulty)?;
        w.write_all("answer_correct", &self.answer_correct)?;
        w.finish()
    }
}

/// Bench counts.
#[derive(Debug, Default)]
struct BenchOut {
    records: u64,
    skipped: u64,
    dev: u64,
    correct: u64,
    incorrect: u64,
    final_correct: u64,
}

fn write_bench(
    cfg: &WorldConfig,
    runner: &dyn Runner,
    teacher: &LinearTeacher,
    dir: &Path,
) -> Result<BenchOut> {
    let problems: Vec<Problem> = (0..cfg.bench_problems)
        .map(|b| cfg.bench_problem(b))
        .collect::<Result<_>>()?;
    let (sampled, n_sampled) = sample_rollouts(
        cfg,
        &problems,
        cfg.bench_candidates,
        BENCH_KEYS,
        runner,
        "bench candidates",
    )?;
    // dev/test by question, from the split stream
    let split_of = |b: usize| {
        let u = (derive_seed(cfg.seed, BENCH_SPLIT, b as u64) >> 11) as f64 / (1u64 << 53) as f64;
        if u < cfg.bench_dev_fraction {
            "dev"
        } else {
            "test"
        }
    };
    let n_sources = Source::ALL.len();
    let mut order: Vec<&Sampled> = sampled.iter().collect();
    order.sort_by_key(|s| (s.problem % n_sources, s.problem, s.id));
    let mut out = BenchOut {
        skipped: n_sampled - order.len() as u64,
        ..BenchOut::default()
    };
    let mut jsonl = String::new();
    let mut offsets = vec![0usize];
    let (mut truth, mut source) = (Vec::new(), Vec::new());
    for s in &order {
        let p = &problems[s.problem];
        let src = Source::ALL[s.problem % n_sources];
        let labels: Vec<i32> = s
            .rollout
            .check
            .steps
            .iter()
            .map(|v| if v.correct { 1 } else { -1 })
            .collect();
        let split = split_of(s.problem);
        write_record(
            &mut jsonl,
            &BenchLine {
                source: src.name(),
                image: &format!("world/bench/{}/{:05}.png", src.name(), s.problem),
                question: &p.question,
                answer: &p.answer().to_string(),
                steps: &s.rollout.steps,
                labels: &labels,
                policy: "mprm-world-policy",
                split,
                question_id: &format!("{}-{}", src.name(), s.problem),
                final_correct: s.rollout.check.answer_correct,
            },
        );
        out.records += 1;
        out.dev += u64::from(split == "dev");
        out.final_correct += u64::from(s.rollout.check.answer_correct);
        for &l in &labels {
            if l == 1 {
                out.correct += 1;
            } else {
                out.incorrect += 1;
            }
            truth.push(if l == 1 { 1.0f32 } else { 0.0 });
        }
        offsets.push(offsets.last().expect("non-empty") + labels.len());
        source.push((s.problem % n_sources) as u32);
    }
    let rollouts: Vec<&Rollout> = order.iter().map(|s| &s.rollout).collect();
    let features = runner.hidden_at_step_ends(&rollouts)?;
    let n = source.len();
    let correct: Vec<u8> = truth.iter().map(|&v| u8::from(v == 1.0)).collect();
    let bundle = FeatureBundle::from_parts(BundleParts {
        teacher: Some(teacher_info(teacher, &features, &correct)),
        features: FeatureData::F32(features),
        dim: cfg.policy.width,
        offsets,
        mc_scores: truth,
        source,
        line: Some((0..n as u64).collect()),
        labels: None,
        meta: BundleMeta {
            sources: Source::ALL.iter().map(|s| s.name().to_string()).collect(),
            seed: Some(cfg.seed),
            generator: serde_json::json!({
                "tool": WORLD_TOOL,
                "version": env!("CARGO_PKG_VERSION"),
                "part": "bench",
                "mc_scores": "the verifier's step correctness (0/1)",
            }),
            extra: Default::default(),
        },
    })?;
    bundle.save(dir.join(BENCH_BUNDLE_FILE))?;
    write_text(dir.join(BENCH_FILE), &jsonl)?;
    Ok(out)
}
