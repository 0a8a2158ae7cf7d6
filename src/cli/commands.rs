//! One function per subcommand: turn arguments into library calls and report.

use mprm::data::convert::convert_annotations;
use mprm::data::features::FeatureBundle;
use mprm::data::prm_line::ConvertLabels;
use mprm::data::raw::Strictness;
use mprm::data::stats::{corpus_stats, render_markdown};
use mprm::select::baselines::Baseline;
use mprm::select::pipeline::{SelectOutputs, select_annotations, select_bundle};
use mprm::{Error, Result};

use super::args::{BundleInfoArgs, Cli, Command, ConvertArgs, SelectArgs, StatsArgs, SynthArgs};

/// Runs the parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Synth(args) => synth(args),
        Command::Stats(args) => stats(args),
        Command::Convert(args) => convert(args),
        Command::Select(args) => select(args),
        Command::BundleInfo(args) => bundle_info(args),
    }
}

fn strictness(strict: bool) -> Strictness {
    if strict {
        Strictness::Strict
    } else {
        Strictness::Lenient
    }
}

fn stats(args: StatsArgs) -> Result<u8> {
    let report = corpus_stats(&args.input, strictness(!args.lenient))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))?
        );
    } else {
        print!("{}", render_markdown(&report));
    }
    Ok(0)
}

fn convert(args: ConvertArgs) -> Result<u8> {
    let labels = match args.labels.as_str() {
        "soft" => ConvertLabels::Soft,
        _ => ConvertLabels::Hard {
            threshold: args.threshold,
        },
    };
    let report = convert_annotations(
        &args.annotations_dir,
        labels,
        strictness(!args.lenient),
        &args.output,
    )?;
    eprintln!(
        "wrote {} lines to {}",
        report.written,
        args.output.display()
    );
    for s in &report.sources {
        if !s.dropped.is_empty() || s.lines.n_skipped() > 0 {
            eprintln!(
                "  {}: dropped {:?}, skipped lines {:?}",
                s.source, s.dropped, s.lines.skipped
            );
        }
    }
    if let Some(path) = &args.report {
        mprm::output::write_json(path, &report)?;
    }
    Ok(0)
}

fn select(args: SelectArgs) -> Result<u8> {
    let selector = Baseline::from_name(&args.method, args.alpha, args.seed)?;
    let outputs = SelectOutputs {
        prm_lines: args.output,
        ids: args.ids,
        report: args.report,
    };
    if outputs.prm_lines.is_none() && outputs.ids.is_none() && outputs.report.is_none() {
        return Err(Error::invalid(
            "nothing to write: give --output, --ids or --report",
        ));
    }
    let report = match &args.bundle {
        Some(path) => select_bundle(
            &FeatureBundle::open(path)?,
            &selector,
            args.top_ratio,
            &outputs,
        )?,
        None => select_annotations(
            &args.annotations_dir,
            &selector,
            args.top_ratio,
            strictness(args.strict),
            &outputs,
        )?,
    };
    eprintln!("{}", report.summary());
    Ok(0)
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
