//! Clap argument structs, one per subcommand, in pipeline order. No logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use mprm::device::DeviceRequest;
use mprm::gradnorm::Accumulation;
use mprm::head::{Activation, HeadName};

/// Data selection for multimodal process reward models.
#[derive(Debug, Parser)]
#[command(name = "mprm", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// All subcommands, in pipeline order.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a VisualPRM400K-calibrated synthetic corpus with a known teacher: annotation
    /// files, features bundle, a VisualProcessBench-like benchmark and a manifest.
    Synth(SynthArgs),
    /// Build the learned-policy world: train a small policy on generated problems, sample its
    /// rollouts, annotate them by Monte Carlo continuation, and write a corpus folder in the
    /// layout of `synth` (features = the policy's hidden states at step ends).
    World(WorldArgs),
    /// Dataset statistics in the shape of the paper's Tables 1 and 8.
    Stats(StatsArgs),
    /// Convert a whole raw annotation folder to PRM training lines.
    Convert(ConvertArgs),
    /// Select a per-source top fraction of rollouts (BIS and baselines).
    Select(SelectArgs),
    /// Print the bundle's shape and metadata (a quick check of a features bundle).
    BundleInfo(BundleInfoArgs),
    /// Per-rollout gradient norms of the MPRM loss for a PRM head over a features bundle.
    Gradnorm(GradnormArgs),
    /// Check a gradient engine against the f64 oracle on a bundle or a random fixture.
    Verify(VerifyArgs),
    /// Train a PRM head on step features (Burn, CPU or CUDA) under the paper's protocol.
    Train(TrainArgs),
    /// Choose a head's learning rate on the bench's dev split (test is never used).
    TuneLr(TuneLrArgs),
    /// Evaluate a checkpoint of a training run on its bench.
    Eval(EvalArgs),
    /// VisualProcessBench metrics of any PRM from a scores file.
    EvalScores(EvalScoresArgs),
    /// Run an experiment config (theory checks, selection comparison) into a results folder.
    Experiment(ExperimentArgs),
    /// Regenerate a results folder's tables, figures and README from its saved results.
    Report(ReportArgs),
    /// CUDA kernel utilities (PTX for inspection and CI).
    #[command(subcommand)]
    Kernels(KernelsCommand),
    /// Throughput benchmarks and the bundles they run on.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `mprm world`.
#[derive(Debug, Args)]
pub struct WorldArgs {
    /// Output directory (an earlier world folder there is replaced; anything else is refused).
    #[arg(long)]
    pub out: PathBuf,
    /// Training problems, spread evenly over the four sources.
    #[arg(long, default_value_t = 5_000)]
    pub problems: usize,
    /// Rollouts sampled per problem.
    #[arg(long, default_value_t = 4)]
    pub rollouts_per_problem: usize,
    /// Seed of every stream, the policy's training included.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the policy trains and samples: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// Held-out bench problems (0 = no bench).
    #[arg(long, default_value_t = 400)]
    pub bench_problems: usize,
    /// Candidate solutions per bench problem.
    #[arg(long, default_value_t = 8)]
    pub bench_candidates: usize,
    /// Optimiser steps of the policy's training.
    #[arg(long, default_value_t = 1000)]
    pub policy_steps: usize,
    /// The policy's width (the PRM features' dimension).
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// The policy's transformer layers.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Which implementation trains the policy: auto (mprm's CPU trainer on the CPU, Burn on
    /// CUDA) or burn (Burn's autodiff on either device).
    #[arg(long, default_value = "auto")]
    pub trainer: mprm::world::learn::Trainer,
    /// Share of the policy's training traces with a slip that the next step corrects.
    #[arg(long, default_value_t = 0.15)]
    pub slip_rate: f64,
    /// Sampling temperature of rollouts and continuations.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Annotate every step, instead of stopping after a rollout's first zero score.
    #[arg(long)]
    pub no_early_stop: bool,
    /// Highest difficulty (in [0, 1]) of training, corpus and bench problems; 1 is the full
    /// range (more steps, two-digit operands, larger moduli).
    #[arg(long, default_value_t = 0.3)]
    pub max_difficulty: f64,
    /// Reuse this trained policy (an earlier world's `policy.safetensors`) instead of training
    /// one; the policy options are then ignored.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// `shuffled` builds a negative control: each step carries the Monte Carlo counts of a
    /// random step of its own source (the theory checks must then say `disagrees`).
    #[arg(long, default_value = "faithful")]
    pub mc_labels: mprm::sim::McLabels,
}

/// `mprm stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// An annotation folder, one `.jsonl` file, or a features bundle (`.safetensors`).
    pub input: PathBuf,
    /// Print JSON instead of Markdown tables.
    #[arg(long)]
    pub json: bool,
    /// Skip and count bad lines instead of stopping at the first one.
    #[arg(long)]
    pub lenient: bool,
}

/// `mprm convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Folder of raw annotation `*.jsonl` files.
    #[arg(long, default_value = "datasets/VisualPRM400K-v1.1-raw/annotations")]
    pub annotations_dir: PathBuf,
    /// Output `.jsonl` file of PRM training lines.
    #[arg(long)]
    pub output: PathBuf,
    /// Hard labels `1[s > threshold]` or the MC score as a soft target.
    #[arg(long, value_parser = ["hard", "soft"], default_value = "hard")]
    pub labels: String,
    /// Binarisation threshold τ for hard labels (1/16 means at least 2 of 16 continuations).
    #[arg(long, default_value_t = 0.0)]
    pub threshold: f64,
    /// Skip and count bad lines instead of stopping at the first one.
    #[arg(long)]
    pub lenient: bool,
    /// Also write a JSON report of what was written and dropped per source.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// `mprm select`.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Method: bis, random, mixed, reliable, low-mc, mixture, top-mc (scores only), or grand,
    /// el2n, less, tracin, influence, oracle, bis-tracin, gradnorm-teacher, gradnorm-ckpt
    /// (gradient-based; need --bundle; less, tracin, influence and bis-tracin also need the
    /// bench's labelled dev split, oracle a synthetic bundle).
    pub method: String,
    /// Folder of raw annotation `*.jsonl` files (the reference script's input; default
    /// `datasets/VisualPRM400K-v1.1-raw/annotations` when no --bundle is given).
    #[arg(long)]
    pub annotations_dir: Option<PathBuf>,
    /// Features bundle: selects from it alone (ids only), or, with --annotations-dir, supplies the
    /// gradient-based keys (matched by source and line).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// BIS smoothing α.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub alpha: f64,
    /// Fraction ρ of each source to keep.
    #[arg(long, default_value_t = 0.25)]
    pub top_ratio: f64,
    /// Seed for the random and mixed baselines, GraNd's initialisations and the proxies.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output `.jsonl` of PRM training lines (byte-identical to the reference script for bis).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also write the chosen rollouts' ids and keys (`mprm-ids/1` TSV).
    #[arg(long)]
    pub ids: Option<PathBuf>,
    /// Also write a JSON report: per-source counts of valid, chosen, written and dropped rollouts.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Stop at the first bad line instead of skipping it as the reference does.
    #[arg(long)]
    pub strict: bool,
    /// Gradient-based methods.
    #[command(flatten)]
    pub gradient: GradientSelectArgs,
}

/// Settings of the gradient-based selectors.
#[derive(Debug, Args)]
pub struct GradientSelectArgs {
    /// Architecture and targets.
    #[command(flatten)]
    pub model: HeadModelArgs,
    /// GraNd: random initialisations averaged.
    #[arg(long, default_value_t = 10)]
    pub inits: usize,
    /// LESS: fraction of each source the warm-up trains on.
    #[arg(long, default_value_t = 0.05)]
    pub proxy_fraction: f64,
    /// The full run the proxies, the warm-up and the reference run follow: peak learning rate.
    #[arg(long, default_value_t = 1e-2)]
    pub proxy_lr: f64,
    /// The full run: rollouts per optimiser step.
    #[arg(long, default_value_t = 512)]
    pub proxy_batch: usize,
    /// The full run: passes over the pool.
    #[arg(long, default_value_t = 1)]
    pub proxy_epochs: usize,
    /// EL2N: proxies in the ensemble.
    #[arg(long, default_value_t = 4)]
    pub el2n_proxies: usize,
    /// EL2N: fraction of the full run each proxy trains for, on the whole pool.
    #[arg(long, default_value_t = 0.1)]
    pub el2n_run_fraction: f64,
    /// LESS: warm-up epochs (one checkpoint each, at least 2).
    #[arg(long, default_value_t = 4)]
    pub less_epochs: usize,
    /// LESS: dimensions of the random projection.
    #[arg(long, default_value_t = 256)]
    pub less_dims: usize,
    /// tracin, influence, oracle, bis-tracin: checkpoints of the reference run.
    #[arg(long, default_value_t = 4)]
    pub reference_checkpoints: usize,
    /// influence: damping relative to the mean eigenvalue of the Hessian.
    #[arg(long, default_value_t = 0.01)]
    pub influence_damping: f64,
    /// gradnorm-ckpt: the head (`head.safetensors` of a training checkpoint).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// less, tracin, influence, bis-tracin: bench records (VisualProcessBench layout, with a dev
    /// split).
    #[arg(long)]
    pub bench: Option<PathBuf>,
    /// less: the bench's features bundle.
    #[arg(long)]
    pub bench_features: Option<PathBuf>,
    /// Device for the gradients: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
}

/// `mprm bundle-info`.
#[derive(Debug, Args)]
pub struct BundleInfoArgs {
    /// The features bundle (.safetensors).
    pub bundle: PathBuf,
    /// Write a copy of the bundle that records its corpus fingerprint (for bundles written
    /// before mprm recorded one).
    #[arg(long, value_name = "NEW.safetensors")]
    pub add_fingerprint: Option<PathBuf>,
}

/// `mprm synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output directory (created if needed; existing files of the same names are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// The simulator's knob set: paper (the current model) or v1 (the first model, kept so
    /// that its corpora regenerate byte for byte).
    #[arg(long, default_value = "paper")]
    pub preset: String,
    /// Fraction of the full corpus's 565,096 rollouts to generate.
    #[arg(long, default_value_t = 0.02)]
    pub scale: f64,
    /// Minimum rollouts per source (small sources keep at least this many).
    #[arg(long, default_value_t = 40)]
    pub min_rollouts: usize,
    /// Feature dimension d.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Feature element type: f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Seed of every random stream.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Probability that a rollout's annotation stops after its first zero score (default: the
    /// preset's, 0 for paper and 0.15 for v1).
    #[arg(long)]
    pub early_stop: Option<f64>,
    /// Early-stop probability of one source, as NAME=P (paper name or file stem; repeatable).
    #[arg(long, value_name = "NAME=P")]
    pub early_stop_for: Vec<String>,
    /// Fix the mean post-error success rate E[ρ] (pseudo-positive source) instead of fitting it
    /// to the paper's zero-score and mixed fractions.
    #[arg(long)]
    pub post_error_success: Option<f64>,
    /// Symmetric label-flip probability η; writes a `labels` tensor into the bundle.
    #[arg(long, default_value_t = 0.0)]
    pub flip_noise: f64,
    /// Which label the flip noise applies to: mc (hard MC label) or true (true correctness).
    #[arg(long, default_value = "mc")]
    pub flip_of: String,
    /// faithful, or shuffled: the negative control of the theory checks, where every step
    /// carries the MC annotation of a random step of its source.
    #[arg(long, default_value = "faithful")]
    pub mc_labels: String,
    /// Benchmark questions over its five sources (0 = no benchmark).
    #[arg(long, default_value_t = 360)]
    pub bench_questions: usize,
    /// Candidate solutions per benchmark question.
    #[arg(long, default_value_t = 8)]
    pub bench_candidates: usize,
    /// Share of benchmark questions in the dev split.
    #[arg(long, default_value_t = 0.3)]
    pub bench_dev_fraction: f64,
    /// Multiplier of the nuisance (non-teacher) part of the features: smaller makes the teacher
    /// direction easier to learn from few steps, larger harder.
    #[arg(long, default_value_t = 1.0)]
    pub nuisance_scale: f64,
}

/// Which head, at which parameter point, against which targets.
#[derive(Debug, Args)]
pub struct HeadArgs {
    /// Architecture and targets.
    #[command(flatten)]
    pub model: HeadModelArgs,
    /// Parameter point: init (seeded), teacher (the bundle's w*, b*) or a head .safetensors file.
    #[arg(long, default_value = "init")]
    pub at: String,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// Seed of `--at init` and of random projections.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// A head architecture and the step targets its gradient is taken against.
#[derive(Debug, Args)]
pub struct HeadModelArgs {
    /// Head architecture: linear or mlp [default: linear, or the head file's].
    #[arg(long)]
    pub head: Option<HeadName>,
    /// Hidden width of the mlp head [default: 256, or the head file's].
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Nonlinearity of the mlp head: gelu or relu [default: gelu, or the head file's].
    #[arg(long)]
    pub activation: Option<Activation>,
    /// Step targets: mc (hard, s > threshold), soft, true (synthetic) or explicit.
    #[arg(long, default_value = "mc")]
    pub labels: String,
    /// Threshold of the hard mc labels.
    #[arg(long, default_value_t = 0.0)]
    pub threshold: f64,
    /// Loss reduction over a rollout's steps: mean or sum.
    #[arg(long, default_value = "mean")]
    pub reduction: String,
}

/// `mprm gradnorm`.
#[derive(Debug, Args)]
pub struct GradnormArgs {
    /// The features bundle (.safetensors).
    #[arg(long)]
    pub bundle: PathBuf,
    /// Head, parameter point, labels, reduction and device.
    #[command(flatten)]
    pub head: HeadArgs,
    /// Project each rollout gradient onto K seeded Rademacher directions.
    #[arg(long, value_name = "K")]
    pub project: Option<usize>,
    /// Sums: f64 (the CPU default: exact products, the bits of every committed result) or f32
    /// (fused f32 sums, faster; linear head only on the CPU; the CUDA engine always sums in f32).
    #[arg(long, value_name = "f64|f32")]
    pub accumulate: Option<Accumulation>,
    /// α of the BIS column.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub alpha: f64,
    /// Output table: .csv, .parquet or .safetensors (a manifest JSON is written next to it).
    #[arg(long)]
    pub out: PathBuf,
}

/// `mprm verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A features bundle to check on (default: a random fixture, see --random).
    #[arg(long, conflicts_with = "random")]
    pub bundle: Option<PathBuf>,
    /// Check on seeded random fixtures (both dtypes, awkward d) plus the reference fixture.
    #[arg(long)]
    pub random: bool,
    /// Head, parameter point, labels, reduction and device.
    #[command(flatten)]
    pub head: HeadArgs,
    /// Compare at most this many rollouts of --bundle (evenly spaced; the oracle is slow).
    #[arg(long, default_value_t = 2000)]
    pub max_rollouts: usize,
    /// Relative tolerance (default 1e-5 for f32 and bf16 features alike: both sides read the same
    /// stored values).
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// What to check against: the f64 oracle, or the CPU engine (faster, for large samples; the
    /// error scales still take one parallel pass of the oracle).
    #[arg(long, default_value = "oracle")]
    pub reference: String,
    /// Sums of the engine under check: f64 (the CPU default) or f32 (the CPU engine's fused f32
    /// sums, linear head only; the CUDA engine always sums in f32). A CPU reference sums in f64.
    #[arg(long, value_name = "f64|f32")]
    pub accumulate: Option<Accumulation>,
}

/// `mprm kernels ...`.
#[derive(Debug, Subcommand)]
pub enum KernelsCommand {
    /// Compile every kernel through NVRTC and write one .ptx per kernels/*.cu file.
    Ptx(KernelsPtxArgs),
}

/// `mprm kernels ptx`.
#[derive(Debug, Args)]
pub struct KernelsPtxArgs {
    /// Folder for the .ptx files.
    #[arg(long)]
    pub out: PathBuf,
    /// Virtual architecture, e.g. compute_90 or compute_80.
    #[arg(long, default_value = "compute_90")]
    pub arch: String,
}

/// `mprm bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time the gradient-norm pass (CPU wall clock, or CUDA events per kernel).
    Gradnorm(BenchGradnormArgs),
    /// Measure memory bandwidth: CPU parallel read, or CUDA device-to-device copy.
    Membw(BenchMembwArgs),
    /// Write a seeded random bundle with realistic step counts (1-12, mean 5.62).
    MakeBundle(MakeBundleArgs),
}

/// `mprm bench gradnorm`.
#[derive(Debug, Args)]
pub struct BenchGradnormArgs {
    /// The features bundle.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Head, parameter point, labels, reduction and device.
    #[command(flatten)]
    pub head: HeadArgs,
    /// Untimed runs first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Sums: f64 (the CPU default: exact products, the bits of every committed result) or f32
    /// (fused f32 sums, faster; linear head only on the CPU; the CUDA engine always sums in f32).
    #[arg(long, value_name = "f64|f32")]
    pub accumulate: Option<Accumulation>,
    /// Also write the timings as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `mprm bench membw`.
#[derive(Debug, Args)]
pub struct BenchMembwArgs {
    /// Bytes per pass (MiB).
    #[arg(long, default_value_t = 1024)]
    pub mib: usize,
    /// Timed passes.
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
    /// auto | cpu | cuda | cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
}

/// `mprm bench make-bundle`.
#[derive(Debug, Args)]
pub struct MakeBundleArgs {
    /// Output bundle (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of rollouts.
    #[arg(long, default_value_t = 565_096)]
    pub rollouts: usize,
    /// Feature dimension.
    #[arg(long, default_value_t = 256)]
    pub dim: usize,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Longest rollout.
    #[arg(long, default_value_t = 12)]
    pub max_steps: usize,
    /// Mean steps per rollout.
    #[arg(long, default_value_t = 5.62)]
    pub mean_steps: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `mprm train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training config (TOML); defaults to RUN_DIR/config.toml with --resume.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Subset to train on: `mprm select` output or a list of rollout indices (overrides the
    /// config's).
    #[arg(long)]
    pub subset: Option<PathBuf>,
    /// Run folder (config copy, manifest, metrics.jsonl, checkpoints).
    #[arg(long)]
    pub out: PathBuf,
    /// auto | cpu | cuda | cuda:N (overrides the config's).
    #[arg(long)]
    pub device: Option<DeviceRequest>,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many optimiser steps, as if interrupted (resume later with --resume).
    #[arg(long)]
    pub stop_after: Option<usize>,
}

/// `mprm tune-lr`.
#[derive(Debug, Args)]
pub struct TuneLrArgs {
    /// Training config (TOML) with a [bench] section.
    #[arg(long)]
    pub config: PathBuf,
    /// Learning rates to try, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1e-4,3e-4,1e-3,3e-3,1e-2,3e-2"
    )]
    pub lrs: Vec<f64>,
    /// Subset to train on (overrides the config's).
    #[arg(long)]
    pub subset: Option<PathBuf>,
    /// auto | cpu | cuda | cuda:N (overrides the config's).
    #[arg(long)]
    pub device: Option<DeviceRequest>,
    /// Write the config with the chosen learning rate here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `mprm eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run folder written by `mprm train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Checkpoint step (default: the newest).
    #[arg(long)]
    pub checkpoint: Option<usize>,
    /// auto | cpu | cuda | cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
}

/// `mprm eval-scores`.
#[derive(Debug, Args)]
pub struct EvalScoresArgs {
    /// Bench records (VisualProcessBench `test.jsonl` layout).
    #[arg(long)]
    pub bench: PathBuf,
    /// Step scores: JSONL (a list, or an object with `prm_scores`/`scores`, per record) or the
    /// reference's whole output JSON.
    #[arg(long)]
    pub scores: PathBuf,
    /// Fraction of each source's questions used to tune the threshold (records without `split`).
    #[arg(long, default_value_t = 0.5)]
    pub dev_fraction: f64,
    /// Seed of that split.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Also write the full report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Evaluate even when some records' score counts differ from their step counts (pairing
    /// scores and labels up to the shorter list, with a note); by default that is an error.
    #[arg(long)]
    pub lenient: bool,
}

/// `mprm experiment`.
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// The experiment config (TOML), e.g. `experiments/main.toml`.
    pub config: PathBuf,
    /// Results folder (default `experiments/runs/<name>`, git-ignored); finished cells found
    /// there are reused, so an interrupted run resumes.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// auto | cpu | cuda | cuda:N (overrides the config's).
    #[arg(long)]
    pub device: Option<DeviceRequest>,
    /// Corpus scale in (0, 1] (overrides the config's), e.g. 0.002 for a smoke run.
    #[arg(long)]
    pub scale: Option<f64>,
    /// Corpus seed (overrides the config's): another draw of the same corpus, for replication.
    #[arg(long)]
    pub corpus_seed: Option<u64>,
    /// Leave out the config's `[intervention]` section (it draws its own corpora, so a
    /// replication of the other sections on another `--corpus-seed` need not repeat it).
    #[arg(long)]
    pub skip_intervention: bool,
}

/// `mprm report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A results folder written by `mprm experiment`.
    pub results: PathBuf,
}
