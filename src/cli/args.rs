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
    /// Dataset statistics in the shape of the paper's Tables 1 and 8.
    Stats(StatsArgs),
    /// Convert a whole raw annotation folder to PRM training lines.
    Convert(ConvertArgs),
    /// Select a per-source top fraction of rollouts (BIS and baselines).
    Select(SelectArgs),
    /// Print the bundle's shape and metadata (a quick check of a features bundle).
    BundleInfo(BundleInfoArgs),
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
    /// Selection method: bis, random, mixed, reliable, low-mc, mixture, top-mc.
    pub method: String,
    /// Folder of raw annotation `*.jsonl` files (the reference script's input).
    #[arg(long, default_value = "datasets/VisualPRM400K-v1.1-raw/annotations")]
    pub annotations_dir: PathBuf,
    /// Select from a features bundle instead of annotation files (writes ids only).
    #[arg(long, conflicts_with = "output")]
    pub bundle: Option<PathBuf>,
    /// BIS smoothing α.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Fraction ρ of each source to keep.
    #[arg(long, default_value_t = 0.25)]
    pub top_ratio: f64,
    /// Seed for the random and mixed baselines.
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
