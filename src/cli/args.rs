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
    /// Train a PRM head on step features (Burn, CPU or CUDA) under the paper's protocol.
    Train(TrainArgs),
    /// Choose a head's learning rate on the bench's dev split (test is never used).
    TuneLr(TuneLrArgs),
    /// Evaluate a checkpoint of a training run on its bench.
    Eval(EvalArgs),
    /// VisualProcessBench metrics of any PRM from a scores file.
    EvalScores(EvalScoresArgs),
}

/// `mprm bundle-info`.
#[derive(Debug, Args)]
pub struct BundleInfoArgs {
    /// The features bundle (.safetensors).
    pub bundle: PathBuf,
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
    pub device: Option<String>,
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
    pub device: Option<String>,
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
    #[arg(long, default_value = "cpu")]
    pub device: String,
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
}
