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
}

/// `mprm bundle-info`.
#[derive(Debug, Args)]
pub struct BundleInfoArgs {
    /// The features bundle (.safetensors).
    pub bundle: PathBuf,
}
