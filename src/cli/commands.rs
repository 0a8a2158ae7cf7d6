//! One function per subcommand: turn arguments into library calls and report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mprm::Result;
use mprm::data::bench::{BenchSet, SplitSettings};
use mprm::data::convert::convert_annotations;
use mprm::data::features::{FeatureBundle, FeatureDtype};
use mprm::data::labels::LabelScheme;
use mprm::data::prm_line::ConvertLabels;
use mprm::data::raw::Strictness;
use mprm::data::stats::{corpus_stats, render_markdown};
use mprm::device::{self, Device, DeviceRequest};
use mprm::error::Error;
use mprm::eval::{self, EvalReport};
use mprm::gradient_selection::{
    El2nSpec, GRADIENT_NAMES, GradientInputs, GradientSettings, LessSpec, PrecomputedSelector,
    ProxySpec, ReferenceSpec, gradient_selector,
};
use mprm::gradnorm::{
    self, Accumulation, GradInput, GradNormOptions, Projection, Reduction, bench, fixture, kernels,
    point::{HeadRequest, ParamPoint},
    table, verify,
};
use mprm::head::{HeadKind, HeadParams};
use mprm::output::{self, write_json, write_text};
use mprm::paths::PathRoles;
use mprm::select::Selector;
use mprm::select::baselines::Baseline;
use mprm::select::pipeline::{SelectOutputs, select_annotations, select_bundle};
use mprm::train::{self, RunOptions, TrainConfig, TrainInputs, checkpoint};

use super::EXIT_CHECK_FAILED;
use super::args::{
    BenchCommand, BenchGradnormArgs, BenchMembwArgs, BundleInfoArgs, Cli, Command, ConvertArgs,
    EvalArgs, EvalScoresArgs, ExperimentArgs, GradnormArgs, HeadArgs, HeadModelArgs,
    KernelsCommand, KernelsPtxArgs, MakeBundleArgs, ReportArgs, SelectArgs, StatsArgs, SynthArgs,
    TrainArgs, TuneLrArgs, VerifyArgs, WorldArgs,
};

/// Runs the parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Synth(args) => synth(args),
        Command::World(args) => world(args),
        Command::Stats(args) => stats(args),
        Command::Convert(args) => convert(args),
        Command::Select(args) => select(args),
        Command::BundleInfo(args) => bundle_info(args),
        Command::Gradnorm(args) => gradnorm_cmd(args),
        Command::Verify(args) => verify_cmd(args),
        Command::Train(args) => train_cmd(args),
        Command::TuneLr(args) => tune_lr(args),
        Command::Eval(args) => eval_cmd(args),
        Command::EvalScores(args) => eval_scores(args),
        Command::Experiment(args) => experiment(args),
        Command::Report(args) => report(args),
        Command::Kernels(KernelsCommand::Ptx(args)) => kernels_ptx(args),
        Command::Bench(BenchCommand::Gradnorm(args)) => bench_gradnorm(args),
        Command::Bench(BenchCommand::Membw(args)) => bench_membw(args),
        Command::Bench(BenchCommand::MakeBundle(args)) => make_bundle(args),
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
    output::refuse_incomplete(&args.input)?;
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
    PathRoles::new()
        .input("--annotations-dir", &args.annotations_dir)
        .output("--output", &args.output)
        .output_opt("--report", args.report.as_ref())
        .check()?;
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
    let default_annotations = PathBuf::from("datasets/VisualPRM400K-v1.1-raw/annotations");
    let annotations_dir = match (&args.bundle, &args.annotations_dir) {
        (Some(_), None) => None,
        (_, Some(dir)) => Some(dir.clone()),
        (None, None) => {
            if !default_annotations.exists() {
                return Err(Error::invalid(format!(
                    "no --annotations-dir given, and the default annotations folder {} does not \
                     exist here ({}); pass --annotations-dir DIR, or make a small synthetic \
                     corpus with `mprm synth --out DIR` and pass --annotations-dir DIR/annotations",
                    default_annotations.display(),
                    std::env::current_dir().map_or_else(
                        |_| "current folder unknown".into(),
                        |d| d.display().to_string()
                    )
                )));
            }
            Some(default_annotations)
        }
    };
    PathRoles::new()
        .input_opt("--annotations-dir", annotations_dir.as_ref())
        .input_opt("--bundle", args.bundle.as_ref())
        .input_opt("--checkpoint", args.gradient.checkpoint.as_ref())
        .input_opt("--bench", args.gradient.bench.as_ref())
        .input_opt("--bench-features", args.gradient.bench_features.as_ref())
        .output_opt("--output", args.output.as_ref())
        .output_opt("--ids", args.ids.as_ref())
        .output_opt("--report", args.report.as_ref())
        .check()?;
    let mut outputs = SelectOutputs {
        prm_lines: args.output.clone(),
        ids: args.ids.clone(),
        report: args.report.clone(),
        same_corpus_as: None,
    };
    if outputs.prm_lines.is_none() && outputs.ids.is_none() && outputs.report.is_none() {
        return Err(Error::invalid(
            "nothing to write: give --output, --ids or --report",
        ));
    }
    let bundle = args
        .bundle
        .as_deref()
        .map(FeatureBundle::open)
        .transpose()?;
    let selector: Box<dyn Selector> = if GRADIENT_NAMES.contains(&args.method.as_str()) {
        let bundle = bundle.as_ref().ok_or_else(|| {
            Error::invalid(format!(
                "{} is gradient-based and needs --bundle FEATURES.safetensors",
                args.method
            ))
        })?;
        Box::new(gradient_selector_from_args(&args, bundle)?)
    } else {
        Box::new(Baseline::from_name(&args.method, args.alpha, args.seed)?)
    };
    let report = match (&bundle, &annotations_dir) {
        (Some(b), None) => select_bundle(b, selector.as_ref(), args.top_ratio, &outputs)?,
        (_, dir) => {
            let dir = dir
                .as_deref()
                .expect("an annotations folder unless bundle-only");
            if let (Some(b), Some(path)) = (&bundle, &args.bundle) {
                // Keys from the bundle, lines from the annotations: one corpus or nothing.
                outputs.same_corpus_as = Some((path.clone(), b.recorded_fingerprint()?));
            }
            select_annotations(
                dir,
                selector.as_ref(),
                args.top_ratio,
                strictness(args.strict),
                &outputs,
            )?
        }
    };
    eprintln!("{}", report.summary());
    Ok(0)
}

fn gradient_selector_from_args(
    args: &SelectArgs,
    bundle: &FeatureBundle,
) -> Result<PrecomputedSelector> {
    let g = &args.gradient;
    let settings = GradientSettings {
        head: head_kind(&g.model)?,
        labels: LabelScheme::parse(&g.model.labels, g.model.threshold)?,
        reduction: g.model.reduction.parse()?,
        seed: args.seed,
        inits: g.inits,
        proxy: ProxySpec {
            fraction: g.proxy_fraction,
            lr: g.proxy_lr,
            global_batch: g.proxy_batch,
            epochs: g.proxy_epochs,
        },
        el2n: El2nSpec {
            proxies: g.el2n_proxies,
            run_fraction: g.el2n_run_fraction,
        },
        less: LessSpec {
            epochs: g.less_epochs,
            dims: g.less_dims,
        },
        reference: ReferenceSpec {
            checkpoints: g.reference_checkpoints,
            damping: g.influence_damping,
        },
        device: device::resolve(g.device)?,
    };
    let bench = match (&g.bench, &g.bench_features) {
        (Some(j), Some(f)) => Some(BenchSet::open(j, Some(f), SplitSettings::default())?),
        (None, None) => None,
        _ => return Err(Error::invalid("--bench and --bench-features go together")),
    };
    let checkpoint = match g.checkpoint.as_deref() {
        Some(path) => {
            let head = HeadParams::load(path)?;
            head_request(&g.model).check_file(path, "--checkpoint", head.kind())?;
            Some(head)
        }
        None => None,
    };
    gradient_selector(
        &args.method,
        &GradientInputs {
            bundle,
            bench: bench.as_ref(),
            checkpoint: checkpoint.as_ref(),
            reference: None,
        },
        &settings,
    )
}

fn bundle_info(args: BundleInfoArgs) -> Result<u8> {
    PathRoles::new()
        .input("BUNDLE", &args.bundle)
        .output_opt("--add-fingerprint", args.add_fingerprint.as_ref())
        .check()?;
    let b = FeatureBundle::open(&args.bundle)?;
    let recorded = b.meta().extra.get(mprm::data::features::FINGERPRINT_KEY);
    println!(
        "{}: {} rollouts, {} steps, d = {}, {:?}, {} sources, teacher: {}, corpus {}{}",
        args.bundle.display(),
        b.n_rollouts(),
        b.n_steps(),
        b.dim(),
        b.dtype(),
        b.meta().sources.len(),
        if b.teacher().is_some() { "yes" } else { "no" },
        b.fingerprint(),
        if recorded.is_some() {
            ""
        } else {
            " (not recorded in the file)"
        }
    );
    if let Some(dest) = &args.add_fingerprint {
        // Saving goes through the bundle writer, which records the fingerprint.
        b.save(dest)?;
        println!(
            "{}: written with corpus {}",
            dest.display(),
            b.fingerprint()
        );
    }
    Ok(0)
}

fn synth(args: SynthArgs) -> Result<u8> {
    let defaults = mprm::sim::SynthConfig::for_preset(args.preset.parse()?);
    let cfg = mprm::sim::SynthConfig {
        scale: args.scale,
        min_rollouts: args.min_rollouts,
        dim: args.dim,
        dtype: args.dtype.parse()?,
        seed: args.seed,
        post_error_success: args.post_error_success,
        flip_noise: args.flip_noise,
        flip_of: args.flip_of.parse()?,
        mc_labels: args.mc_labels.parse()?,
        bench_questions: args.bench_questions,
        bench_candidates: args.bench_candidates,
        bench_dev_fraction: args.bench_dev_fraction,
        model: mprm::sim::ModelParams {
            early_stop: args.early_stop.unwrap_or(defaults.model.early_stop),
            early_stop_by_source: mprm::sim::preset::parse_source_values(&args.early_stop_for)?,
            source_scale: args.nuisance_scale * defaults.model.source_scale,
            question_scale: args.nuisance_scale * defaults.model.question_scale,
            step_scale: args.nuisance_scale * defaults.model.step_scale,
            ..defaults.model
        },
        ..defaults
    };
    PathRoles::new().output_dir("--out", &args.out).check()?;
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
    println!("{}", mprm::sim::scorecard::table(&manifest.held_out));
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

fn world(args: WorldArgs) -> Result<u8> {
    let defaults = mprm::world::WorldConfig::default();
    let difficulty = mprm::world::problems::DifficultyRange {
        lo: 0.0,
        hi: args.max_difficulty,
    };
    let cfg = mprm::world::WorldConfig {
        problems: args.problems,
        rollouts_per_problem: args.rollouts_per_problem,
        bench_problems: args.bench_problems,
        bench_candidates: args.bench_candidates,
        seed: args.seed,
        policy: mprm::world::policy::PolicySpec {
            width: args.width,
            layers: args.layers,
            ..defaults.policy
        },
        training: mprm::world::learn::PolicyTraining {
            steps: args.policy_steps,
            slip_rate: args.slip_rate,
            difficulty,
            trainer: args.trainer,
            ..defaults.training
        },
        temperature: args.temperature,
        early_stop: !args.no_early_stop,
        difficulty,
        policy_file: args.policy,
        mc_labels: args.mc_labels,
        ..defaults
    };
    cfg.validate()?;
    PathRoles::new().output_dir("--out", &args.out).check()?;
    let device = device::resolve(args.device)?;
    let started = std::time::Instant::now();
    let m = mprm::world::build_world(&cfg, &args.out, device)?;
    println!(
        "{}: {} rollouts ({} without a step left out) in {} sources, {} steps, d = {}, seed {}, on {}",
        args.out.display(),
        m.portrait.world.rollouts,
        m.counts.skipped_rollouts,
        m.sources.len(),
        m.portrait.world.steps,
        cfg.policy.width,
        cfg.seed,
        m.device
    );
    let loss = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |l| format!("{l:.3}"));
    println!(
        "policy: loss {} -> {}; right final answers {:.1}% of rollouts{}",
        loss(m.policy.loss_first),
        loss(m.policy.loss_last),
        100.0 * m.policy.rollout_accuracy,
        m.policy
            .bench_accuracy
            .map(|a| format!(", {:.1}% of bench candidates", 100.0 * a))
            .unwrap_or_default()
    );
    println!("{}", m.portrait.table());
    eprintln!("wall time {:.1} s", started.elapsed().as_secs_f64());
    Ok(0)
}

/// The library settings a [`HeadArgs`] stands for, resolved against one bundle.
struct HeadSetup {
    head: HeadParams,
    point: ParamPoint,
    labels: LabelScheme,
    targets: Vec<f32>,
    reduction: Reduction,
    device: DeviceRequest,
}

fn head_request(args: &HeadModelArgs) -> HeadRequest {
    HeadRequest {
        name: args.head,
        hidden: args.hidden,
        activation: args.activation,
    }
}

fn head_kind(args: &HeadModelArgs) -> Result<HeadKind> {
    head_request(args).kind()
}

fn head_setup(args: &HeadArgs, bundle: &FeatureBundle) -> Result<HeadSetup> {
    let point: ParamPoint = args.at.parse()?;
    let labels = LabelScheme::parse(&args.model.labels, args.model.threshold)?;
    Ok(HeadSetup {
        head: point.resolve_request(&head_request(&args.model), bundle, args.seed)?,
        targets: labels.targets(bundle)?,
        point,
        labels,
        reduction: args.model.reduction.parse()?,
        device: args.device,
    })
}

/// The checkpoint file an `--at` value names, if it names one.
fn point_file(at: &str) -> Option<PathBuf> {
    match at {
        "init" | "teacher" | "" => None,
        path => Some(PathBuf::from(path)),
    }
}

/// `FILE.ext` → `FILE.ext.manifest.json`.
fn manifest_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".manifest.json");
    out.with_file_name(name)
}

fn bundle_record(path: &Path, bundle: &FeatureBundle) -> serde_json::Value {
    serde_json::json!({
        "path": path.display().to_string(),
        "bytes": std::fs::metadata(path).map(|m| m.len()).ok(),
        "rollouts": bundle.n_rollouts(),
        "steps": bundle.n_steps(),
        "dim": bundle.dim(),
        "dtype": bundle.dtype(),
        "seed": bundle.meta().seed,
    })
}

fn gradnorm_cmd(args: GradnormArgs) -> Result<u8> {
    table::TableFormat::of(&args.out)?;
    if !(args.alpha.is_finite() && args.alpha >= 0.0) {
        return Err(Error::invalid(format!(
            "--alpha {}: BIS's smoothing α must be a finite number ≥ 0 (0 for none; the \
             reference uses 0.05)",
            args.alpha
        )));
    }
    PathRoles::new()
        .input("--bundle", &args.bundle)
        .input_opt("--at", point_file(&args.head.at))
        .output("--out", &args.out)
        .output("--out's manifest", manifest_path(&args.out))
        .check()?;
    let bundle = FeatureBundle::open(&args.bundle)?;
    let setup = head_setup(&args.head, &bundle)?;
    let device = device::resolve(setup.device)?;
    let projection = args.project.map(|k| Projection::Random {
        k,
        seed: args.head.seed,
    });
    let (opts, input, sums) =
        gradnorm_request(device, &bundle, &setup, projection, args.accumulate)?;
    let engine = gradnorm::engine(device)?;
    let projection = opts.projection_matrix(setup.head.n_params())?;
    let kernel_names = engine.kernel_names(&input, projection.is_some());
    eprintln!(
        "gradnorm: {} rollouts on {} ({})",
        input.len(),
        engine.device(),
        kernel_names.join(", ")
    );
    let started = Instant::now();
    let stats = engine.rollout_stats(&input, opts.reduction, projection.as_ref())?;
    let elapsed = started.elapsed().as_secs_f64();
    let table = table::gradnorm_table(&bundle, &stats, args.alpha);
    let manifest = serde_json::json!({
        "command": "gradnorm",
        "mprm_version": env!("CARGO_PKG_VERSION"),
        "output": args.out.display().to_string(),
        "bundle": bundle_record(&args.bundle, &bundle),
        "head": setup.head.kind(),
        "at": setup.point.describe(),
        "labels": setup.labels.describe(),
        "reduction": opts.reduction,
        "projection": opts.projection,
        "accumulation": sums,
        "seed": args.head.seed,
        "alpha": args.alpha,
        "device_requested": setup.device,
        "device": engine.device().to_string(),
        "kernels": kernel_names,
        "columns": table.columns.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "elapsed_s": elapsed,
    });
    // The table first, its manifest last: a manifest never describes a table that is not there.
    let manifest_file = output::stage_json(manifest_path(&args.out), &manifest)?;
    table.write(&args.out)?;
    manifest_file.commit()?;
    println!(
        "{}: {} rollouts in {:.3} s on {} (reduction {})",
        args.out.display(),
        stats.len(),
        elapsed,
        engine.device(),
        opts.reduction.name()
    );
    Ok(0)
}

fn print_report(case: &str, report: &verify::VerifyReport) {
    println!("{case}");
    println!(
        "  {:<22} {:>12} {:>12} {:>14}",
        "statistic", "max abs", "max rel", "worst rollout"
    );
    for e in &report.errors {
        println!(
            "  {:<22} {:>12.3e} {:>12.3e} {:>14}",
            e.name, e.max_abs, e.max_rel, e.worst_rollout
        );
    }
    println!(
        "  {} ({} rollouts, tolerance {:.0e})",
        if report.passed() { "PASS" } else { "FAIL" },
        report.rollouts,
        report.tolerance
    );
}

fn verify_cmd(args: VerifyArgs) -> Result<u8> {
    let request: DeviceRequest = args.head.device;
    let device = device::resolve(request)?;
    let engine = gradnorm::engine(device)?;
    let (accumulation, sums) = accumulation_for(device, args.accumulate)?;
    let reduction: Reduction = args.head.model.reduction.parse()?;
    let cpu = gradnorm::engine(Device::Cpu)?;
    let reference = match args.reference.as_str() {
        "oracle" => verify::Reference::Oracle,
        "cpu" => verify::Reference::Engine(cpu.as_ref()),
        other => {
            return Err(Error::invalid(format!(
                "unknown reference `{other}`: expected oracle or cpu"
            )));
        }
    };
    let mut all_passed = true;
    let mut check = |case: String,
                     bundle: &FeatureBundle,
                     head: &HeadParams,
                     targets: &[f32],
                     rollouts: Option<&[usize]>|
     -> Result<()> {
        let input = gradnorm::engine::with_sums(
            device,
            GradInput::new(bundle, targets, head, rollouts)?,
            accumulation,
        )?;
        let tolerance = args
            .tolerance
            .unwrap_or_else(|| verify::default_tolerance(bundle.dtype()));
        let report = verify::verify(engine.as_ref(), reference, &input, reduction, tolerance)?;
        print_report(
            &format!(
                "{case} on {} ({} sums) against the {}",
                engine.device(),
                sums.name(),
                args.reference
            ),
            &report,
        );
        all_passed &= report.passed();
        Ok(())
    };
    match &args.bundle {
        Some(path) => {
            let bundle = FeatureBundle::open(path)?;
            let setup = head_setup(&args.head, &bundle)?;
            let n = bundle.n_rollouts();
            let take = args.max_rollouts.clamp(1, n.max(1));
            let ids: Vec<usize> = (0..take).map(|k| k * n / take).collect();
            check(
                format!(
                    "{} ({} of {n} rollouts), {:?} at {}",
                    path.display(),
                    ids.len(),
                    setup.head.kind(),
                    setup.point.describe()
                ),
                &bundle,
                &setup.head,
                &setup.targets,
                Some(&ids),
            )?;
        }
        None => {
            let reference = fixture::reference_bundle();
            let targets = LabelScheme::default().targets(&reference)?;
            for head in [
                fixture::reference_linear_head(),
                fixture::reference_mlp_head(),
            ] {
                if accumulation == Accumulation::F32 && !matches!(head, HeadParams::Linear(_)) {
                    println!(
                        "reference fixture, {} head: skipped (the CPU engine's f32 sums are for the linear head only)",
                        head.kind()
                    );
                    continue;
                }
                check(
                    format!("reference fixture, {} head", head.kind()),
                    &reference,
                    &head,
                    &targets,
                    None,
                )?;
            }
            let kind = head_kind(&args.head.model)?;
            // Awkward widths on purpose: not multiples of a warp, on both sides of the
            // linear kernel's warp/block switch.
            for (dim, dtype) in [
                (100, FeatureDtype::F32),
                (600, FeatureDtype::F32),
                (300, FeatureDtype::Bf16),
            ] {
                let spec = fixture::RandomBundleSpec::realistic(150, dim, dtype, args.head.seed);
                let bundle = fixture::random_bundle(&spec)?;
                let head = ParamPoint::Init.resolve(kind, &bundle, args.head.seed)?;
                let targets =
                    LabelScheme::parse(&args.head.model.labels, args.head.model.threshold)?
                        .targets(&bundle)?;
                check(
                    format!("random {dtype:?} d = {dim}, {kind} head at init"),
                    &bundle,
                    &head,
                    &targets,
                    None,
                )?;
            }
        }
    }
    Ok(if all_passed { 0 } else { EXIT_CHECK_FAILED })
}

fn kernels_ptx(args: KernelsPtxArgs) -> Result<u8> {
    let arch: &str = &args.arch;
    if std::fs::metadata(&args.out).is_ok_and(|m| !m.is_dir()) {
        return Err(Error::PathConflict(format!(
            "--out {} is a file; it must name a folder",
            args.out.display()
        )));
    }
    for k in &kernels::ALL {
        let ptx = gradnorm::cuda::compile_ptx(k, arch)?;
        let stem = k.file.trim_end_matches(".cu");
        let dest = args.out.join(format!("{stem}.ptx"));
        output::write_text(&dest, &ptx)?;
        println!(
            "kernels/{} -> {} ({})",
            k.file,
            dest.display(),
            k.symbols.join(", ")
        );
    }
    Ok(0)
}

fn print_timing(t: &bench::KernelTiming) {
    println!(
        "  {:<28} median {:>10.4} ms  min {:>10.4} ms  {:>9.2} GB/s  {:>12.0} rollouts/s",
        t.name,
        t.median_ms,
        t.min_ms,
        t.gb_per_s(),
        t.rollouts_per_s()
    );
}

/// A gradient-statistics run of every rollout of `bundle` on `device`: its options, its input
/// with the CPU sums set, and the sums it does (see [`accumulation_for`]).
fn gradnorm_request<'a>(
    device: Device,
    bundle: &'a FeatureBundle,
    setup: &'a HeadSetup,
    projection: Option<Projection>,
    asked: Option<Accumulation>,
) -> Result<(GradNormOptions, GradInput<'a>, Accumulation)> {
    let (accumulation, sums) = accumulation_for(device, asked)?;
    let opts = GradNormOptions {
        reduction: setup.reduction,
        projection,
        accumulation,
    };
    let input = gradnorm::engine::with_sums(
        device,
        GradInput::new(bundle, &setup.targets, &setup.head, None)?,
        accumulation,
    )?;
    Ok((opts, input, sums))
}

/// `--accumulate` on `device`: (the CPU engine's setting, the sums the run actually does). The
/// CPU sums as asked, f64 by default; the CUDA engine always sums in f32, so asking it for f64
/// is an error rather than a manifest that says f64.
fn accumulation_for(
    device: Device,
    asked: Option<Accumulation>,
) -> Result<(Accumulation, Accumulation)> {
    match (device, asked) {
        (Device::Cpu, asked) => {
            let sums = asked.unwrap_or_default();
            Ok((sums, sums))
        }
        (Device::Cuda(_), Some(Accumulation::F64)) => Err(Error::invalid(
            "--accumulate f64: the CUDA engine sums in f32; use --device cpu for f64 sums"
                .to_string(),
        )),
        (Device::Cuda(_), _) => Ok((Accumulation::F64, Accumulation::F32)),
    }
}

fn bench_gradnorm(args: BenchGradnormArgs) -> Result<u8> {
    PathRoles::new()
        .input("--bundle", &args.bundle)
        .output_opt("--json", args.json.as_ref())
        .check()?;
    let bundle = FeatureBundle::open(&args.bundle)?;
    let setup = head_setup(&args.head, &bundle)?;
    let device = device::resolve(setup.device)?;
    let (opts, input, sums) = gradnorm_request(device, &bundle, &setup, None, args.accumulate)?;
    println!(
        "bench gradnorm: {} ({} rollouts, {} steps, d = {}, {:?}), {} head, reduction {}, {} sums",
        args.bundle.display(),
        bundle.n_rollouts(),
        bundle.n_steps(),
        bundle.dim(),
        bundle.dtype(),
        setup.head.kind(),
        opts.reduction.name(),
        sums.name()
    );
    let mut timings = Vec::new();
    let mut device_name = device.to_string();
    if let Device::Cuda(ordinal) = device {
        let (name, kernels) = gradnorm::cuda::bench_kernels(
            ordinal,
            &input,
            opts.reduction,
            args.warmup.max(1),
            args.repeats,
        )?;
        device_name = format!("{device} ({name})");
        println!("resident chunk, CUDA events:");
        for t in &kernels {
            print_timing(t);
        }
        timings.extend(kernels);
    }
    println!("end to end (host memory in, statistics out), wall clock:");
    let whole = bench::time_engine(device, &input, &opts, args.warmup, args.repeats)?;
    print_timing(&whole);
    timings.push(whole);
    if let Device::Cuda(ordinal) = device {
        // The calls above found the features resident after the first; these upload them.
        let cold = gradnorm::cuda::time_cold_calls(ordinal, &input, opts.reduction, args.repeats)?;
        print_timing(&cold);
        timings.push(cold);
    }
    if let Some(json) = &args.json {
        output::write_json(
            json,
            &serde_json::json!({
                "bundle": bundle_record(&args.bundle, &bundle),
                "head": setup.head.kind(),
                "reduction": opts.reduction,
                "accumulation": sums,
                "device": device_name,
                "warmup": args.warmup,
                "repeats": args.repeats,
                "timings": timings.iter().map(|t| serde_json::json!({
                    "name": t.name, "median_ms": t.median_ms, "min_ms": t.min_ms,
                    "feature_bytes": t.feature_bytes, "rollouts": t.rollouts, "steps": t.steps,
                    "gb_per_s": t.gb_per_s(), "rollouts_per_s": t.rollouts_per_s(),
                })).collect::<Vec<_>>(),
            }),
        )?;
    }
    Ok(0)
}

fn bench_membw(args: BenchMembwArgs) -> Result<u8> {
    let bytes = args.mib << 20;
    match device::resolve(args.device)? {
        Device::Cpu => {
            let gbs = bench::cpu_read_bandwidth(bytes, args.repeats);
            println!(
                "membw device=cpu threads={} read_gb_per_s={gbs:.2}",
                rayon::current_num_threads()
            );
        }
        Device::Cuda(ordinal) => {
            let gbs = gradnorm::cuda::copy_bandwidth(ordinal, bytes, args.repeats)?;
            println!("membw device=cuda:{ordinal} copy_gb_per_s={gbs:.2} (bytes read + written)");
        }
    }
    Ok(0)
}

fn make_bundle(args: MakeBundleArgs) -> Result<u8> {
    let spec = fixture::RandomBundleSpec {
        rollouts: args.rollouts,
        dim: args.dim,
        dtype: args.dtype.parse()?,
        max_steps: args.max_steps,
        mean_steps: args.mean_steps,
        sources: 4,
        seed: args.seed,
    };
    PathRoles::new().output("--out", &args.out).check()?;
    let started = Instant::now();
    fixture::write_random_bundle(&spec, &args.out)?;
    let b = FeatureBundle::open(&args.out)?;
    println!(
        "{}: {} rollouts, {} steps (mean {:.3}), d = {}, {:?}, in {:.1} s",
        args.out.display(),
        b.n_rollouts(),
        b.n_steps(),
        b.n_steps() as f64 / b.n_rollouts() as f64,
        b.dim(),
        b.dtype(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// The device to use: the command line's request, else the config's.
fn pick_device(flag: Option<DeviceRequest>, config: &TrainConfig) -> Result<Device> {
    device::resolve(flag.unwrap_or(config.device))
}

fn train_cmd(args: TrainArgs) -> Result<u8> {
    let config_path = match (&args.config, args.resume) {
        (Some(p), _) => p.clone(),
        (None, true) => args.out.join("config.toml"),
        (None, false) => return Err(Error::invalid("--config is required unless --resume")),
    };
    let config = TrainConfig::load(&config_path)?;
    // What the run folder receives must not be anything the run reads.
    let mut roles = PathRoles::new()
        .input_opt("the config's bundle", config.data.bundle.as_ref())
        .input_opt("--subset", args.subset.as_ref())
        .input_opt("the config's subset", config.data.subset.as_ref())
        .input_opt("the bench records", config.bench.as_ref().map(|b| &b.jsonl))
        .input_opt(
            "the bench features",
            config.bench.as_ref().map(|b| &b.features),
        );
    if !args.resume {
        roles = roles
            .input("--config", &config_path)
            .output("--out's config.toml", args.out.join("config.toml"));
    }
    for name in ["metrics.jsonl", "manifest.json", "run.json", "timing.json"] {
        roles = roles.output(&format!("--out's {name}"), args.out.join(name));
    }
    roles.check()?;
    let device = pick_device(args.device, &config)?;
    let data = train::load_data(&config, args.subset.as_deref())?;
    if let Some(warning) = data.few_steps_warning(&config) {
        eprintln!("{warning}");
    }
    if let Some(s) = data.subset.as_ref().filter(|s| s.corpus.is_none()) {
        eprintln!(
            "note: {} records no corpus fingerprint (an older ids file), so it cannot be checked \
             against {}; it is matched by (source, line) or rollout index only",
            s.path.display(),
            config
                .data
                .bundle
                .as_ref()
                .map_or("the bundle".into(), |p| p.display().to_string())
        );
    }
    let opts = RunOptions {
        out_dir: Some(args.out.clone()),
        resume: args.resume,
        stop_after: args.stop_after,
        progress: true,
        subset_label: data.subset.as_ref().map(|s| s.path.display().to_string()),
        subset_corpus: data.subset.as_ref().and_then(|s| s.corpus),
        clip: train::ClipAt::Auto,
    };
    let inputs = TrainInputs {
        config: &config,
        bundle: &data.bundle,
        subset: data.subset.as_ref().map(|s| s.rollouts.as_slice()),
        bench: data.bench.as_ref(),
    };
    let out = train::execute(inputs, &opts, device)?;
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
    PathRoles::new()
        .input("--config", &args.config)
        .input_opt("the config's bundle", config.data.bundle.as_ref())
        .input_opt("--subset", args.subset.as_ref())
        .output_opt("--out", args.out.as_ref())
        .check()?;
    let device = pick_device(args.device, &config)?;
    let data = train::load_data(&config, args.subset.as_deref())?;
    if let Some(warning) = data.few_steps_warning(&config) {
        eprintln!("{warning}");
    }
    let bench = data
        .bench
        .as_ref()
        .ok_or_else(|| Error::invalid("tune-lr needs a [bench] section in the config"))?;
    let (trials, best) = train::lr_sweep(
        &config,
        &data.bundle,
        data.subset.as_ref().map(|s| s.rollouts.as_slice()),
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
    let device = device::resolve(args.device)?;
    let report = train::checkpoint::evaluate(&dir, &state.model, state.dim, &bench, device)?;
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
    PathRoles::new()
        .input("--bench", &args.bench)
        .input("--scores", &args.scores)
        .output_opt("--out", args.out.as_ref())
        .check()?;
    let bench = BenchSet::open(&args.bench, None, settings)?;
    let file = eval::read_scores_file(&args.scores)?;
    eval::check_scores_file(&bench, &file, args.lenient)?;
    let report = eval::evaluate_scores(&bench, &file.scores)?;
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

fn experiment(args: ExperimentArgs) -> Result<u8> {
    let overrides = mprm::experiments::runner::Overrides {
        device: args.device,
        scale: args.scale,
        corpus_seed: args.corpus_seed,
        skip_intervention: args.skip_intervention,
    };
    let summary =
        mprm::experiments::runner::run_experiment(&args.config, args.out.as_deref(), overrides)?;
    println!("{}", summary.key_tables);
    println!("report: {}", summary.dir.join("README.md").display());
    Ok(0)
}

fn report(args: ReportArgs) -> Result<u8> {
    let summary = mprm::experiments::runner::regenerate_report(&args.results)?;
    println!("{}", summary.key_tables);
    println!("report: {}", summary.dir.join("README.md").display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_names_the_sums_the_device_does() {
        let f32_ = Accumulation::F32;
        let f64_ = Accumulation::F64;
        assert_eq!(accumulation_for(Device::Cpu, None).unwrap(), (f64_, f64_));
        assert_eq!(
            accumulation_for(Device::Cpu, Some(f32_)).unwrap(),
            (f32_, f32_)
        );
        assert_eq!(
            accumulation_for(Device::Cuda(0), None).unwrap(),
            (f64_, f32_)
        );
        assert_eq!(
            accumulation_for(Device::Cuda(1), Some(f32_)).unwrap(),
            (f64_, f32_)
        );
        let err = accumulation_for(Device::Cuda(0), Some(f64_))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sums in f32"), "{err}");
    }
}
