//! One function per subcommand: turn arguments into library calls and report.

use mprm::Result;
use mprm::data::features::FeatureBundle;

use super::args::{BundleInfoArgs, Cli, Command, SynthArgs};

/// Runs the parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::BundleInfo(args) => bundle_info(args),
        Command::Synth(args) => synth(args),
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

fn synth(args: SynthArgs) -> Result<u8> {
    let defaults = mprm::sim::SynthConfig::default();
    let cfg = mprm::sim::SynthConfig {
        preset: args.preset,
        scale: args.scale,
        min_rollouts: args.min_rollouts,
        dim: args.dim,
        dtype: args.dtype.parse()?,
        seed: args.seed,
        post_error_success: args.post_error_success,
        flip_noise: args.flip_noise,
        flip_of: args.flip_of.parse()?,
        bench_questions: args.bench_questions,
        bench_candidates: args.bench_candidates,
        bench_dev_fraction: args.bench_dev_fraction,
        model: mprm::sim::ModelParams {
            early_stop: args.early_stop,
            early_stop_by_source: mprm::sim::preset::parse_source_values(&args.early_stop_for)?,
            ..defaults.model
        },
        ..defaults
    };
    let manifest = mprm::sim::synthesize(&cfg, &args.out)?;
    println!(
        "{}: {} rollouts in {} sources, {} steps, d = {} ({:?}), seed {}",
        args.out.display(),
        manifest.corpus.rollouts,
        manifest.sources.len(),
        manifest.corpus.steps,
        cfg.dim,
        cfg.dtype,
        cfg.seed
    );
    println!("{}", manifest.table1());
    if let Some(b) = &manifest.bench {
        println!(
            "bench: {} solutions ({} dev), {:.1} steps each, {:.1}% correct / {:.1}% neutral steps, {:.1}% right final answers",
            b.total.records,
            b.total.dev_records,
            b.steps_per_solution,
            100.0 * b.correct_share,
            100.0 * b.neutral_share,
            100.0 * b.final_correct_share
        );
    }
    Ok(0)
}
