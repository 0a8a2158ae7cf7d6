//! Clap argument structs, one per subcommand, in pipeline order. No logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Print the bundle's shape and metadata (a quick check of a features bundle).
    BundleInfo(BundleInfoArgs),
    /// Per-rollout gradient norms of the MPRM loss for a PRM head over a features bundle.
    Gradnorm(GradnormArgs),
    /// Check a gradient engine against the f64 oracle on a bundle or a random fixture.
    Verify(VerifyArgs),
    /// CUDA kernel utilities (PTX for inspection and CI).
    #[command(subcommand)]
    Kernels(KernelsCommand),
    /// Throughput benchmarks and the bundles they run on.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `mprm bundle-info`.
#[derive(Debug, Args)]
pub struct BundleInfoArgs {
    /// The features bundle (.safetensors).
    pub bundle: PathBuf,
}

/// Which head, at which parameter point, against which targets.
#[derive(Debug, Args)]
pub struct HeadArgs {
    /// Head architecture: linear or mlp.
    #[arg(long, default_value = "linear")]
    pub head: String,
    /// Hidden width of the mlp head.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// Nonlinearity of the mlp head: gelu or relu.
    #[arg(long, default_value = "gelu")]
    pub activation: String,
    /// Parameter point: init (seeded), teacher (the bundle's w*, b*) or a head .safetensors file.
    #[arg(long, default_value = "init")]
    pub at: String,
    /// Step targets: mc (hard, s > threshold), soft, true (synthetic) or explicit.
    #[arg(long, default_value = "mc")]
    pub labels: String,
    /// Threshold of the hard mc labels.
    #[arg(long, default_value_t = 0.0)]
    pub threshold: f64,
    /// Loss reduction over a rollout's steps: mean or sum.
    #[arg(long, default_value = "mean")]
    pub reduction: String,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seed of `--at init` and of random projections.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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
    /// α of the BIS column.
    #[arg(long, default_value_t = 0.05)]
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
    /// Relative tolerance (default: 1e-5 for f32 features, 1e-2 for bf16).
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// What to check against: the f64 oracle, or the CPU engine (fast, for large samples).
    #[arg(long, default_value = "oracle")]
    pub reference: String,
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
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
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
