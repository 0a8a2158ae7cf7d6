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
    /// Generate a VisualPRM400K-calibrated synthetic corpus with a known teacher: annotation
    /// files, features bundle, a VisualProcessBench-like benchmark and a manifest.
    Synth(SynthArgs),
    /// Print the bundle's shape and metadata (a quick check of a features bundle).
    BundleInfo(BundleInfoArgs),
}

/// `mprm bundle-info`.
#[derive(Debug, Args)]
pub struct BundleInfoArgs {
    /// The features bundle (.safetensors).
    pub bundle: PathBuf,
}

/// `mprm synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output directory (created if needed; existing files of the same names are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Calibration preset.
    #[arg(long, default_value = "visualprm400k")]
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
    /// Probability that a rollout's annotation stops after its first zero score.
    #[arg(long, default_value_t = 0.15)]
    pub early_stop: f64,
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
    /// Benchmark questions over its five sources (0 = no benchmark).
    #[arg(long, default_value_t = 360)]
    pub bench_questions: usize,
    /// Candidate solutions per benchmark question.
    #[arg(long, default_value_t = 8)]
    pub bench_candidates: usize,
    /// Share of benchmark questions in the dev split.
    #[arg(long, default_value_t = 0.3)]
    pub bench_dev_fraction: f64,
}
