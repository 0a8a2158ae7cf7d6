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
