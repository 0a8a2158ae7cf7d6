//! One function per subcommand: turn arguments into library calls and report.

use mprm::Result;
use mprm::data::features::FeatureBundle;

use super::args::{BundleInfoArgs, Cli, Command};

/// Runs the parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::BundleInfo(args) => bundle_info(args),
    }
}

fn bundle_info(args: BundleInfoArgs) -> Result<u8> {
    let b = FeatureBundle::open(&args.bundle)?;
    println!(
        "{}: {} rollouts, {} steps, d = {}, {:?}, {} sources, teacher: {}",
        args.bundle.display(),
        b.n_rollouts(),
        b.n_steps(),
        b.dim(),
        b.dtype(),
        b.meta.sources.len(),
        if b.teacher.is_some() { "yes" } else { "no" }
    );
    Ok(0)
}
