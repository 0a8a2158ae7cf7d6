//! Writing the training corpus: annotation files, the features bundle and the ground truth.
//!
//! Step counts are drawn first (they are the first draw of every rollout's stream), which fixes
//! the position of every step in the bundle. Then question-aligned chunks of rollouts are
//! simulated in parallel, in batches: each chunk writes its feature rows straight into the
//! bundle at their final offset and hands back its annotation text and per-step scalars, which
//! are appended in corpus order. Memory therefore holds one batch of text plus the per-step
//! scalars, never the feature matrix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use half::bf16;
use rayon::prelude::*;

use super::calibrate::{Calibration, SourceFit};
use super::generate::{
    FeatureSink, FeatureSpace, RolloutDraw, RolloutLatents, SourceModel, SourceSampler, Strata,
};
use super::model::{MC_SAMPLES, Quadrature};
use super::preset::SourceSpec;
use super::rng::{Stream, stream, uniform};
use super::stats::CorpusStats;
use super::text;
use super::{FlipBase, McLabels, SynthConfig};
use crate::data::features::{
    BundleLayout, BundleMeta, BundleWriter, FeatureDtype, FeatureRows, TeacherInfo,
};
use crate::data::raw::write_raw_line;
use crate::data::rollout::{Rollout, Step};
use crate::data::safetensors_io::{SafetensorsWriter, TensorSpec};
use crate::error::{Error, IoContext, Result};
use crate::output::AtomicFile;

/// Rollouts per chunk (a multiple of every sensible rollouts-per-question is not required:
/// chunks are aligned to question boundaries below).
const CHUNK_ROLLOUTS: usize = 512;
/// Chunks simulated in parallel before their text is written out.
const BATCH_CHUNKS: usize = 32;

/// Name of the ground-truth file written next to the bundle.
pub const TRUTH_FILE: &str = "truth.safetensors";
/// Value of its `format` metadata key.
pub const TRUTH_FORMAT: &str = "mprm-sim-truth/1";

/// One source as it will be written.
pub(crate) struct SourcePlan<'a> {
    /// Row of the preset table; keys every random stream of the source.
    pub key: u64,
    pub spec: &'a SourceSpec,
    pub fit: &'a SourceFit,
    pub slug: String,
    pub rollouts: usize,
    pub strata: Strata,
    pub embedding: Vec<f32>,
    pub step_counts: Vec<u8>,
    /// Global index of the source's first rollout / step in corpus order.
    pub first_rollout: usize,
    pub first_step: usize,
}

impl SourcePlan<'_> {
    pub fn model(&self, cfg: &SynthConfig) -> SourceModel<'_> {
        SourceModel {
            ability: self.fit.ability,
            recovery_mean: self.fit.recovery_mean,
            recovery_bonus: cfg.model.guess_bonus(self.spec.kind),
            steps_pmf: &self.fit.steps_pmf,
        }
    }

    pub fn sampler<'b>(
        &'b self,
        cfg: &'b SynthConfig,
        cal: &Calibration,
        quad: &'b Quadrature,
    ) -> SourceSampler<'b> {
        SourceSampler {
            seed: cfg.seed,
            key: self.key,
            bench: false,
            model: self.model(cfg),
            strata: &self.strata,
            params: &cfg.model,
            quad,
            recovery: cal.recovery,
            early_stop: self.fit.early_stop,
        }
    }

    pub fn file_name(&self) -> String {
        format!("{}.jsonl", self.slug)
    }
}

/// Rollouts per source at `scale`: Table 1's total apportioned over sources in proportion to
/// Table 8's counts (largest remainders), with a floor of `min_rollouts`.
pub fn source_sizes(
    specs: &[SourceSpec],
    total: u64,
    scale: f64,
    min_rollouts: usize,
) -> Vec<usize> {
    let weight: u64 = specs.iter().map(|s| s.rollouts).sum();
    let want = (total as f64 * scale).round();
    let quotas: Vec<f64> = specs
        .iter()
        .map(|s| want * s.rollouts as f64 / weight as f64)
        .collect();
    let mut sizes: Vec<usize> = quotas.iter().map(|q| q.floor() as usize).collect();
    let short = want as usize - sizes.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..specs.len()).collect();
    // Largest fractional part first; ties by table order keep this deterministic.
    order.sort_by(|&a, &b| {
        let fa = quotas[a] - quotas[a].floor();
        let fb = quotas[b] - quotas[b].floor();
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &i in order.iter().take(short) {
        sizes[i] += 1;
    }
    sizes.iter().map(|&s| s.max(min_rollouts)).collect()
}

/// Builds the per-source plans in corpus order (sorted file names) and draws every step count.
pub(crate) fn plan_sources<'a>(
    cfg: &SynthConfig,
    specs: &'a [SourceSpec],
    cal: &'a Calibration,
    sizes: &[usize],
    space: &FeatureSpace,
) -> Vec<SourcePlan<'a>> {
    let quad = Quadrature::default();
    let mut plans: Vec<SourcePlan<'a>> = specs
        .par_iter()
        .zip(&cal.sources)
        .zip(sizes)
        .enumerate()
        .map(|(key, ((spec, fit), &rollouts))| {
            let key = key as u64;
            let strata = source_strata(cfg, key, rollouts);
            let embedding = space.embedding(
                cfg.model.source_scale,
                &mut stream(cfg.seed, Stream::SourceEmbedding, key, 0),
            );
            let mut plan = SourcePlan {
                key,
                spec,
                fit,
                slug: spec.slug(),
                rollouts,
                strata,
                embedding,
                step_counts: Vec::new(),
                first_rollout: 0,
                first_step: 0,
            };
            let sampler = plan.sampler(cfg, cal, &quad);
            let step_counts = (0..rollouts).map(|i| sampler.steps(i) as u8).collect();
            plan.step_counts = step_counts;
            plan
        })
        .collect();
    plans.sort_by_key(|p| p.file_name());
    let (mut rollouts, mut steps) = (0, 0);
    for p in &mut plans {
        p.first_rollout = rollouts;
        p.first_step = steps;
        rollouts += p.rollouts;
        steps += p.step_counts.iter().map(|&n| n as usize).sum::<usize>();
    }
    plans
}

/// The Latin-hypercube strata of training source `key` with `rollouts` rollouts.
fn source_strata(cfg: &SynthConfig, key: u64, rollouts: usize) -> Strata {
    Strata::new(
        rollouts,
        rollouts.div_ceil(cfg.model.rollouts_per_question),
        &mut stream(cfg.seed, Stream::Strata, key, 0),
    )
}

/// Runs the generative model for every source at the configured size and counts what
/// [`synthesize`](super::synthesize) would write, without writing anything or drawing features
/// and text. The annotations it counts are exactly those `synthesize` writes with the same
/// settings. Returns the calibration and the counters per source, in preset order.
pub fn sample_statistics(cfg: &SynthConfig) -> Result<(Calibration, Vec<CorpusStats>)> {
    cfg.validate()?;
    let specs = &super::preset::VISUALPRM400K_SOURCES;
    let targets = super::preset::VISUALPRM400K_TARGETS;
    let cal = super::calibrate(specs, &targets, &cfg.model, cfg.post_error_success);
    let sizes = source_sizes(specs, targets.rollouts, cfg.scale, cfg.min_rollouts);
    let quad = Quadrature::default();
    let stats = specs
        .par_iter()
        .zip(&cal.sources)
        .zip(&sizes)
        .enumerate()
        .map(|(key, ((spec, fit), &rollouts))| {
            let strata = source_strata(cfg, key as u64, rollouts);
            let sampler = SourceSampler {
                seed: cfg.seed,
                key: key as u64,
                bench: false,
                model: SourceModel {
                    ability: fit.ability,
                    recovery_mean: fit.recovery_mean,
                    recovery_bonus: cfg.model.guess_bonus(spec.kind),
                    steps_pmf: &fit.steps_pmf,
                },
                strata: &strata,
                params: &cfg.model,
                quad: &quad,
                recovery: cal.recovery,
                early_stop: fit.early_stop,
            };
            let mut stats = CorpusStats::new();
            let mut difficulty = 0.0;
            for i in 0..rollouts {
                if i % cfg.model.rollouts_per_question == 0 {
                    difficulty = sampler.question(i / cfg.model.rollouts_per_question).0;
                }
                let (_, _, draw) = sampler.rollout(i, difficulty, None);
                stats.add(&draw, 0);
            }
            stats
        })
        .collect();
    Ok((cal, stats))
}

/// What one chunk hands back.
struct ChunkOut {
    source: usize,
    text: String,
    mc: Vec<f32>,
    teacher_q: Vec<f32>,
    correct: Vec<u8>,
    prefix_correct: Vec<u8>,
    success_rate: Vec<f32>,
    mc_total: Vec<u8>,
    labels: Vec<f32>,
    ability: Vec<f32>,
    recovery: Vec<f32>,
    early_stop: Vec<u8>,
    question: Vec<i64>,
    stats: CorpusStats,
}

/// Everything the chunks share.
struct Shared<'a> {
    cfg: &'a SynthConfig,
    cal: &'a Calibration,
    space: &'a FeatureSpace,
    quad: Quadrature,
    mean_words: f64,
    writer: Mutex<BundleWriter>,
    bundle_path: PathBuf,
}

/// Per-step and per-rollout arrays of the whole corpus, in corpus order.
#[derive(Default)]
struct Columns {
    mc: Vec<f32>,
    teacher_q: Vec<f32>,
    correct: Vec<u8>,
    prefix_correct: Vec<u8>,
    success_rate: Vec<f32>,
    mc_total: Vec<u8>,
    labels: Vec<f32>,
    ability: Vec<f32>,
    recovery: Vec<f32>,
    early_stop: Vec<u8>,
    question: Vec<i64>,
}

impl Columns {
    fn absorb(&mut self, c: &mut ChunkOut) {
        self.mc.append(&mut c.mc);
        self.teacher_q.append(&mut c.teacher_q);
        self.correct.append(&mut c.correct);
        self.prefix_correct.append(&mut c.prefix_correct);
        self.success_rate.append(&mut c.success_rate);
        self.mc_total.append(&mut c.mc_total);
        self.labels.append(&mut c.labels);
        self.ability.append(&mut c.ability);
        self.recovery.append(&mut c.recovery);
        self.early_stop.append(&mut c.early_stop);
        self.question.append(&mut c.question);
    }
}

/// The corpus-level result.
pub(crate) struct CorpusResult {
    /// Counters per source, in corpus order.
    pub per_source: Vec<CorpusStats>,
    /// Counters over everything.
    pub total: CorpusStats,
}

/// Writes `annotations/*.jsonl`, `features.safetensors` and `truth.safetensors` under `dir`.
pub(crate) fn write_corpus(
    cfg: &SynthConfig,
    cal: &Calibration,
    plans: &[SourcePlan<'_>],
    space: &FeatureSpace,
    meta: &BundleMeta,
    dir: &Path,
) -> Result<CorpusResult> {
    let n_rollouts: usize = plans.iter().map(|p| p.rollouts).sum();
    let n_steps: usize = plans
        .iter()
        .map(|p| p.step_counts.iter().map(|&n| n as usize).sum::<usize>())
        .sum();
    let flip = cfg.flip_noise > 0.0;
    let layout = BundleLayout {
        n_rollouts,
        n_steps,
        dim: cfg.dim,
        dtype: cfg.dtype,
        has_line: true,
        has_labels: flip,
        has_teacher: true,
    };
    let bundle_path = dir.join(super::FEATURES_FILE);
    let shared = Shared {
        cfg,
        cal,
        space,
        quad: Quadrature::default(),
        mean_words: text::reasoning_mean_words(
            cfg.model.words_per_step,
            n_steps,
            n_rollouts,
            plans
                .iter()
                .flat_map(|p| &p.step_counts)
                .filter(|&&n| n == 1)
                .count(),
        ),
        writer: Mutex::new(BundleWriter::create(&bundle_path, &layout, meta)?),
        bundle_path,
    };
    let annotations = dir.join(super::ANNOTATIONS_DIR);
    let mut files: Vec<(PathBuf, AtomicFile)> = plans
        .iter()
        .map(|p| {
            let path = annotations.join(p.file_name());
            AtomicFile::create(&path).map(|f| (path, f))
        })
        .collect::<Result<_>>()?;

    // Question-aligned chunks in corpus order.
    let rpq = cfg.model.rollouts_per_question;
    let per_chunk = CHUNK_ROLLOUTS.div_ceil(rpq) * rpq;
    let chunks: Vec<(usize, std::ops::Range<usize>)> = plans
        .iter()
        .enumerate()
        .flat_map(|(s, p)| {
            (0..p.rollouts)
                .step_by(per_chunk)
                .map(move |start| (s, start..(start + per_chunk).min(p.rollouts)))
        })
        .collect();

    let bar = crate::progress::bar(n_rollouts as u64, "synth");
    let mut columns = Columns::default();
    let mut per_source = vec![CorpusStats::new(); plans.len()];
    for batch in chunks.chunks(BATCH_CHUNKS) {
        let outs: Vec<ChunkOut> = batch
            .par_iter()
            .map(|(s, range)| {
                let out = generate_chunk(&shared, &plans[*s], *s, range.clone());
                bar.inc(range.len() as u64);
                out
            })
            .collect::<Result<_>>()?;
        for mut out in outs {
            let (path, file) = &mut files[out.source];
            file.write_all(out.text.as_bytes()).at(&*path)?;
            per_source[out.source].merge(&out.stats);
            columns.absorb(&mut out);
        }
    }
    bar.finish_and_clear();

    let mut offsets = Vec::with_capacity(n_rollouts + 1);
    offsets.push(0usize);
    let mut source_ids = Vec::with_capacity(n_rollouts);
    let mut lines = Vec::with_capacity(n_rollouts);
    for (s, p) in plans.iter().enumerate() {
        for (i, &n) in p.step_counts.iter().enumerate() {
            offsets.push(offsets.last().expect("non-empty") + n as usize);
            source_ids.push(s as u32);
            lines.push(i as u64);
        }
    }
    let writer = shared
        .writer
        .into_inner()
        .map_err(|_| Error::Other("a feature-writing thread panicked".into()))?;
    finish_bundle(
        writer,
        &offsets,
        &source_ids,
        &lines,
        &mut columns,
        space,
        flip,
    )?;
    write_truth(&dir.join(TRUTH_FILE), &offsets, &columns, meta)?;
    for (_, file) in files {
        file.commit()?;
    }
    let mut total = CorpusStats::new();
    per_source.iter().for_each(|s| total.merge(s));
    Ok(CorpusResult { per_source, total })
}

fn finish_bundle(
    mut w: BundleWriter,
    offsets: &[usize],
    source: &[u32],
    lines: &[u64],
    columns: &mut Columns,
    space: &FeatureSpace,
    flip: bool,
) -> Result<()> {
    w.write_offsets(offsets)?;
    w.write_mc_scores(&columns.mc)?;
    w.write_source(source)?;
    w.write_line(lines)?;
    if flip {
        w.write_labels(&columns.labels)?;
    }
    w.write_teacher(&TeacherInfo {
        q: std::mem::take(&mut columns.teacher_q),
        true_correct: std::mem::take(&mut columns.correct),
        w_star: space.w_star.clone(),
        b_star: space.b_star,
    })?;
    w.finish()
}

/// The simulator's own ground truth beyond the bundle's teacher tensors.
fn write_truth(path: &Path, offsets: &[usize], c: &Columns, meta: &BundleMeta) -> Result<()> {
    let (s, r) = (c.success_rate.len(), c.ability.len());
    let specs = [
        TensorSpec::new("offsets", safetensors::Dtype::I64, &[r + 1]),
        TensorSpec::new("success_rate", safetensors::Dtype::F32, &[s]),
        TensorSpec::new("prefix_correct", safetensors::Dtype::U8, &[s]),
        TensorSpec::new("mc_total", safetensors::Dtype::U8, &[s]),
        TensorSpec::new("ability", safetensors::Dtype::F32, &[r]),
        TensorSpec::new("recovery", safetensors::Dtype::F32, &[r]),
        TensorSpec::new("early_stop", safetensors::Dtype::U8, &[r]),
        TensorSpec::new("question", safetensors::Dtype::I64, &[r]),
    ];
    let mut header = std::collections::BTreeMap::new();
    header.insert("format".to_string(), TRUTH_FORMAT.to_string());
    header.insert(
        "sources".to_string(),
        serde_json::to_string(&meta.sources).expect("strings serialise"),
    );
    let mut w = SafetensorsWriter::create(path, &specs, &header)?;
    let offsets: Vec<i64> = offsets.iter().map(|&o| o as i64).collect();
    w.write_all("offsets", &offsets)?;
    w.write_all("success_rate", &c.success_rate)?;
    w.write_all("prefix_correct", &c.prefix_correct)?;
    w.write_all("mc_total", &c.mc_total)?;
    w.write_all("ability", &c.ability)?;
    w.write_all("recovery", &c.recovery)?;
    w.write_all("early_stop", &c.early_stop)?;
    w.write_all("question", &c.question)?;
    w.finish()
}

/// Simulates rollouts `range` of source `plan` (corpus position `s`).
fn generate_chunk(
    sh: &Shared<'_>,
    plan: &SourcePlan<'_>,
    s: usize,
    range: std::ops::Range<usize>,
) -> Result<ChunkOut> {
    let cfg = sh.cfg;
    let params = &cfg.model;
    let d = cfg.dim;
    let sampler = plan.sampler(cfg, sh.cal, &sh.quad);
    let first_step_in_source: usize = plan.step_counts[..range.start]
        .iter()
        .map(|&n| n as usize)
        .sum();
    let n_steps: usize = plan.step_counts[range.clone()]
        .iter()
        .map(|&n| n as usize)
        .sum();
    let mut features = vec![0.0f32; n_steps * d];
    let mut out = ChunkOut {
        source: s,
        text: String::with_capacity(range.len() * 2048),
        mc: Vec::with_capacity(n_steps),
        teacher_q: Vec::with_capacity(n_steps),
        correct: Vec::with_capacity(n_steps),
        prefix_correct: Vec::with_capacity(n_steps),
        success_rate: Vec::with_capacity(n_steps),
        mc_total: Vec::with_capacity(n_steps),
        labels: Vec::new(),
        ability: Vec::with_capacity(range.len()),
        recovery: Vec::with_capacity(range.len()),
        early_stop: Vec::with_capacity(range.len()),
        question: Vec::with_capacity(range.len()),
        stats: CorpusStats::new(),
    };
    let image_dir = format!("synthetic/{}/images", plan.slug);
    let mut current: Option<(usize, text::QuestionText, String, f64, Vec<f32>)> = None;
    let mut row = 0;
    let first_rollout = range.start;
    // Every rollout of the chunk is drawn first, so the negative control can shuffle MC
    // annotations across them before anything is written (the streams are keyed per rollout, so
    // drawing first changes no value).
    let mut drawn = Vec::with_capacity(range.len());
    for i in range {
        let q = i / params.rollouts_per_question;
        if current.as_ref().is_none_or(|c| c.0 != q) {
            let (difficulty, mut rng) = sampler.question(q);
            let qt = text::question(plan.spec.domain, plan.spec.kind, &mut rng);
            let prompted = qt.prompted();
            let mut base = sh.space.embedding(
                params.question_scale,
                &mut sampler.rng(Stream::QuestionEmbedding, q),
            );
            base.iter_mut()
                .zip(&plan.embedding)
                .for_each(|(b, e)| *b += e);
            current = Some((q, qt, prompted, difficulty, base));
        }
        let (_, qt, prompted, difficulty, base) = current.as_ref().expect("set above");
        let n = plan.step_counts[i] as usize;
        let sink = FeatureSink {
            space: sh.space,
            base,
            rng: sampler.rng(Stream::Features, i),
            out: &mut features[row * d..(row + n) * d],
        };
        let (latents, ability, draw) = sampler.rollout(i, *difficulty, Some(sink));
        debug_assert_eq!(latents.n, n);
        row += n;
        drawn.push(Drawn {
            i,
            q,
            latents,
            ability,
            draw,
            text: qt.clone(),
            prompted: prompted.clone(),
        });
    }
    if cfg.mc_labels == McLabels::Shuffled {
        shuffle_annotations(&mut drawn, &mut sampler.rng(Stream::Shuffle, first_rollout));
    }
    for Drawn {
        i,
        q,
        latents,
        ability,
        draw,
        text: qt,
        prompted,
    } in drawn
    {
        let final_answer = if draw.all_correct() {
            &qt.answer
        } else {
            &qt.wrong_answer
        };
        let texts = text::rollout_steps(
            plan.spec.domain,
            draw.steps.len(),
            final_answer,
            sh.mean_words,
            0.45,
            &mut sampler.rng(Stream::Text, i),
        );
        let words: u64 = texts
            .iter()
            .map(|t| t.split_ascii_whitespace().count() as u64)
            .sum();
        write_rollout_line(
            &mut out.text,
            plan,
            i,
            q,
            &image_dir,
            &qt,
            &prompted,
            texts,
            &draw,
        );

        for st in &draw.steps {
            out.mc.push(st.score() as f32);
            out.teacher_q.push(st.teacher_q);
            out.correct.push(st.correct as u8);
            out.prefix_correct.push(st.prefix_correct as u8);
            out.success_rate.push(st.success_rate);
            out.mc_total.push(st.mc_total as u8);
        }
        if cfg.flip_noise > 0.0 {
            let mut rng = sampler.rng(Stream::Flip, i);
            for st in &draw.steps {
                let clean = match cfg.flip_of {
                    FlipBase::Mc => st.mc_correct > 0,
                    FlipBase::True => st.correct,
                };
                let flipped = uniform(&mut rng) < cfg.flip_noise;
                out.stats.flipped_labels += flipped as u64;
                out.labels.push((clean != flipped) as u8 as f32);
            }
        }
        out.ability.push(ability as f32);
        out.recovery.push(latents.recovery as f32);
        out.early_stop.push(latents.early_stop as u8);
        out.question.push(q as i64);
        out.stats.add(&draw, words);
    }

    let first_step = plan.first_step + first_step_in_source;
    let mut writer = sh
        .writer
        .lock()
        .map_err(|_| Error::Other("a feature-writing thread panicked".into()))?;
    match cfg.dtype {
        FeatureDtype::F32 => writer.write_features(first_step, FeatureRows::F32(&features)),
        FeatureDtype::Bf16 => {
            let rows: Vec<bf16> = features.iter().map(|&v| bf16::from_f32(v)).collect();
            writer.write_features(first_step, FeatureRows::Bf16(&rows))
        }
    }
    .map_err(|e| match e {
        Error::Io { source, .. } => Error::io(&sh.bundle_path, source),
        other => other,
    })?;
    Ok(out)
}

/// One rollout of a chunk, drawn but not yet written.
struct Drawn {
    i: usize,
    q: usize,
    latents: RolloutLatents,
    ability: f64,
    draw: RolloutDraw,
    text: text::QuestionText,
    prompted: String,
}

/// The negative control: permutes the MC annotations (K, N, r) of every step of the chunk among
/// its steps, leaving the steps' correctness and features where they are.
fn shuffle_annotations(drawn: &mut [Drawn], rng: &mut rand_chacha::ChaCha8Rng) {
    let pool: Vec<(u32, u32, f32)> = drawn
        .iter()
        .flat_map(|d| {
            d.draw
                .steps
                .iter()
                .map(|s| (s.mc_correct, s.mc_total, s.success_rate))
        })
        .collect();
    let order = super::rng::permutation(rng, pool.len());
    let mut next = order.iter().map(|&k| pool[k as usize]);
    for d in drawn.iter_mut() {
        for st in &mut d.draw.steps {
            let (k, total, rate) = next.next().expect("one annotation per step");
            st.mc_correct = k;
            st.mc_total = total;
            st.success_rate = rate;
        }
    }
}

/// Appends the raw annotation line of rollout `i`.
#[allow(clippy::too_many_arguments)]
fn write_rollout_line(
    buf: &mut String,
    plan: &SourcePlan<'_>,
    i: usize,
    q: usize,
    image_dir: &str,
    qt: &text::QuestionText,
    prompted: &str,
    texts: Vec<String>,
    draw: &RolloutDraw,
) {
    let rollout = Rollout {
        source: plan.slug.clone(),
        line: i as u64,
        image: Some(format!("{image_dir}/{q:06}.png")),
        question: Some(prompted.to_string()),
        question_orig: Some(qt.question_orig.clone()),
        answer: Some(qt.answer.clone()),
        response: Some(texts.join("\n\n")),
        steps: texts
            .into_iter()
            .zip(&draw.steps)
            .map(|(text, st)| Step {
                text,
                score: st.score(),
                num_mc_correct: st.mc_correct,
                num_mc_total: st.mc_total,
            })
            .collect(),
        num_mc_sequences: MC_SAMPLES,
    };
    write_raw_line(buf, &rollout);
    buf.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::preset::{VISUALPRM400K_SOURCES, VISUALPRM400K_TARGETS};

    #[test]
    fn full_scale_gives_table1_rollouts() {
        let sizes = source_sizes(
            &VISUALPRM400K_SOURCES,
            VISUALPRM400K_TARGETS.rollouts,
            1.0,
            0,
        );
        assert_eq!(sizes.iter().sum::<usize>(), 565_096);
        for (s, spec) in sizes.iter().zip(&VISUALPRM400K_SOURCES) {
            assert!(
                (*s as i64 - spec.rollouts as i64).abs() <= 10,
                "{}: {s}",
                spec.name
            );
        }
        let small = source_sizes(
            &VISUALPRM400K_SOURCES,
            VISUALPRM400K_TARGETS.rollouts,
            0.02,
            40,
        );
        assert!(small.iter().all(|&s| s >= 40));
        assert_eq!(small[0], 563); // AI2D: 28,147 × 565,096/565,149 × 0.02, rounded.
    }
}
