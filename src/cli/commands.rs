//! One function per subcommand: turn arguments into library calls and report.

use std::path::Path;

use mprm::data::bench::{BenchSet, SplitSettings};
use mprm::data::features::FeatureBundle;
use mprm::device::{self, Device, DeviceRequest};
use mprm::eval::{self, EvalReport};
use mprm::output::{write_json, write_text};
use mprm::train::{self, RunOptions, TrainConfig, TrainInputs, checkpoint};
use mprm::{Error, Result};

use super::args::{BundleInfoArgs, Cli, Command, EvalArgs, EvalScoresArgs, TrainArgs, TuneLrArgs};

/// Runs the parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::BundleInfo(args) => bundle_info(args),
        Command::Train(args) => train_cmd(args),
        Command::TuneLr(args) => tune_lr(args),
        Command::Eval(args) => eval_cmd(args),
        Command::EvalScores(args) => eval_scores(args),
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

/// The device to use: the command line's request, else the config's.
fn pick_device(flag: Option<&str>, config: &TrainConfig) -> Result<Device> {
    let request = match flag {
        Some(text) => text.parse::<DeviceRequest>()?,
        None => config.device,
    };
    device::resolve(request)
}

fn train_cmd(args: TrainArgs) -> Result<u8> {
    let config_path = match (&args.config, args.resume) {
        (Some(p), _) => p.clone(),
        (None, true) => args.out.join("config.toml"),
        (None, false) => return Err(Error::invalid("--config is required unless --resume")),
    };
    let config = TrainConfig::load(&config_path)?;
    let device = pick_device(args.device.as_deref(), &config)?;
    let data = train::load_data(&config, args.subset.as_deref())?;
    let subset_label = args
        .subset
        .as_ref()
        .or(config.data.subset.as_ref())
        .map(|p| p.display().to_string());
    let opts = RunOptions {
        out_dir: Some(args.out.clone()),
        resume: args.resume,
        stop_after: args.stop_after,
        progress: true,
        subset_label,
    };
    let inputs = TrainInputs {
        config: &config,
        bundle: &data.bundle,
        subset: data.subset.as_deref(),
        bench: data.bench.as_ref(),
    };
    let out = train::backend::train(inputs, &opts, device)?;
    let last_loss = out.history.last().map_or(f64::NAN, |s| s.loss);
    println!(
        "{}: {} of {} optimiser steps on {device} ({} rollouts/s), final loss {last_loss:.5}",
        args.out.display(),
        out.steps_done,
        out.total_steps,
        out.rollouts_per_second.round()
    );
    if let Some(report) = out.last_eval() {
        print!("{}", report.to_text());
    }
    Ok(0)
}

fn tune_lr(args: TuneLrArgs) -> Result<u8> {
    let mut config = TrainConfig::load(&args.config)?;
    let device = pick_device(args.device.as_deref(), &config)?;
    let data = train::load_data(&config, args.subset.as_deref())?;
    let bench = data
        .bench
        .as_ref()
        .ok_or_else(|| Error::invalid("tune-lr needs a [bench] section in the config"))?;
    let (trials, best) = train::lr_sweep(
        &config,
        &data.bundle,
        data.subset.as_deref(),
        bench,
        device,
        &args.lrs,
    )?;
    println!("{:>10}  {:>12}  {:>10}", "lr", "dev Overall", "final loss");
    for t in &trials {
        let overall = t
            .dev_overall
            .map_or("diverged".into(), |o| format!("{o:.4}"));
        let loss = t.final_loss.map_or("-".into(), |l| format!("{l:.5}"));
        println!("{:>10.1e}  {overall:>12}  {loss:>10}", t.lr);
    }
    println!("chosen lr: {best:e} (best dev Overall at the dev-tuned threshold)");
    if let Some(out) = &args.out {
        config.optim.lr = best;
        let header = format!(
            "# lr chosen by `mprm tune-lr` on the dev split among {:?}\n",
            args.lrs
        );
        write_text(out, &(header + &config.to_toml()))?;
        println!("wrote {}", out.display());
    }
    Ok(0)
}

fn eval_cmd(args: EvalArgs) -> Result<u8> {
    let config = TrainConfig::load(args.run.join("config.toml"))?;
    let bench_cfg = config.bench.as_ref().ok_or_else(|| {
        Error::invalid(format!(
            "{}/config.toml has no [bench] section",
            args.run.display()
        ))
    })?;
    let bench = BenchSet::open(
        &bench_cfg.jsonl,
        Some(&bench_cfg.features),
        bench_cfg.split(),
    )?;
    let dir = match args.checkpoint {
        Some(step) => checkpoint::at_step(&args.run, step)?,
        None => checkpoint::latest(&args.run)?
            .ok_or_else(|| Error::invalid(format!("{} has no checkpoint", args.run.display())))?,
    };
    let state = checkpoint::read_state(&dir)?;
    let device = device::resolve(args.device.parse()?)?;
    let report =
        train::backend::evaluate_checkpoint(&dir, &state.model, state.dim, &bench, device)?;
    let dest = args
        .run
        .join("eval")
        .join(format!("{}.json", checkpoint::checkpoint_name(state.step)));
    write_report(&dest, &report, &bench, Some(&dir))?;
    println!("checkpoint {} (step {}):", dir.display(), state.step);
    print!("{}", report.to_text());
    println!("wrote {}", dest.display());
    Ok(0)
}

fn eval_scores(args: EvalScoresArgs) -> Result<u8> {
    let settings = SplitSettings {
        dev_fraction: args.dev_fraction,
        seed: args.split_seed,
    };
    let bench = BenchSet::open(&args.bench, None, settings)?;
    let scores = eval::read_scores(&args.scores)?;
    let report = eval::evaluate_scores(&bench, &scores)?;
    print!("{}", report.to_text());
    if let Some(out) = &args.out {
        write_report(out, &report, &bench, None)?;
        println!("wrote {}", out.display());
    }
    Ok(0)
}

fn write_report(
    dest: &Path,
    report: &EvalReport,
    bench: &BenchSet,
    checkpoint: Option<&Path>,
) -> Result<()> {
    write_json(
        dest,
        &serde_json::json!({
            "mprm_version": env!("CARGO_PKG_VERSION"),
            "bench": bench.path.display().to_string(),
            "checkpoint": checkpoint.map(|p| p.display().to_string()),
            "report": report,
        }),
    )
}
