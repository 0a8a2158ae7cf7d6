//! The held-out VisualProcessBench-like evaluation set: `bench.jsonl` and `bench.safetensors`.
//!
//! Same teacher and feature geometry as the training corpus, but new questions from five
//! benchmark-named sources that are harder (the ability level is fitted to the benchmark's share
//! of correct steps) and longer (the benchmark's steps per solution). Labels are the TRUE step
//! correctness, as human labels would be, with a benchmark-like share of steps marked neutral.
//! Each question has several candidate solutions sharing its `question_id` and `split`, so the
//! set also supports best-of-N reranking (`final_correct`), and thresholds are tuned on `dev`,
//! never on `test`.
//!
//! Record layout (one JSON object per line, keys in this order):
//! `image` (array of strings), `question`, `answer`, `response` (`{"steps": [...],
//! "process_correctness": [1 | -1 | 0, ...]}`), `policy_model`, `data_source`, then the
//! additions `split` (`"dev"` | `"test"`), `question_id` (`"<source>-<n>"`) and
//! `final_correct` (bool). In `bench.safetensors`, rollout i is record i, `sources` are the five
//! names, `mc_scores` hold the 0/1 true correctness, `line` the record index, and the teacher
//! tensors are present.

use std::path::Path;

use half::bf16;
use rayon::prelude::*;
use serde::Serialize;

use super::SynthConfig;
use super::calibrate::{BenchCalibration, Calibration};
use super::generate::{FeatureSink, FeatureSpace, SourceModel, SourceSampler, Strata};
use super::model::Quadrature;
use super::preset::{BenchSourceSpec, VISUALPROCESSBENCH_LABELS, VISUALPROCESSBENCH_POLICIES};
use super::rng::{Stream, bench_stream, uniform};
use super::text;
use crate::data::bench::{BenchLine, write_record};
use crate::data::features::{
    BundleMeta, BundleParts, FeatureBundle, FeatureData, FeatureDtype, TeacherInfo,
};
use crate::error::Result;
use crate::output::write_text;

/// Mean words of a benchmark reasoning step (the benchmark's steps are longer and more varied
/// than the training corpus's: word quartiles 13 / 31 / 67).
const BENCH_MEAN_WORDS: f64 = 40.0;
const BENCH_WORD_SPREAD: f64 = 0.8;

/// Counters of the benchmark set, per source or overall.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchStats {
    /// Source name (empty for the total).
    pub source: String,
    /// Questions.
    pub questions: u64,
    /// Candidate solutions (records).
    pub records: u64,
    /// Records in the dev split.
    pub dev_records: u64,
    /// Steps.
    pub steps: u64,
    /// Steps labelled 1.
    pub correct: u64,
    /// Steps labelled −1.
    pub incorrect: u64,
    /// Steps labelled 0.
    pub neutral: u64,
    /// Records whose final answer is right.
    pub final_correct: u64,
}

impl BenchStats {
    fn merge(&mut self, o: &BenchStats) {
        self.questions += o.questions;
        self.records += o.records;
        self.dev_records += o.dev_records;
        self.steps += o.steps;
        self.correct += o.correct;
        self.incorrect += o.incorrect;
        self.neutral += o.neutral;
        self.final_correct += o.final_correct;
    }

    /// Mean steps per solution.
    pub fn steps_per_solution(&self) -> f64 {
        self.steps as f64 / self.records.max(1) as f64
    }
}

/// VisualProcessBench's share of neutral steps.
pub fn neutral_rate() -> f64 {
    let (c, i, n) = VISUALPROCESSBENCH_LABELS;
    n as f64 / (c + i + n) as f64
}

/// VisualProcessBench's share of correct steps among the non-neutral ones.
pub fn correct_share() -> f64 {
    let (c, i, _) = VISUALPROCESSBENCH_LABELS;
    c as f64 / (c + i) as f64
}

struct SourceOut {
    text: String,
    features: Vec<f32>,
    lens: Vec<usize>,
    truth: Vec<f32>,
    q: Vec<f32>,
    correct: Vec<u8>,
    stats: BenchStats,
}

/// Writes `bench.jsonl` and `bench.safetensors` under `dir`; returns per-source and total counts.
pub(crate) fn write_bench(
    cfg: &SynthConfig,
    cal: &Calibration,
    bench: &BenchCalibration,
    specs: &[BenchSourceSpec],
    space: &FeatureSpace,
    dir: &Path,
) -> Result<(Vec<BenchStats>, BenchStats)> {
    let n_sources = specs.len();
    let outs: Vec<SourceOut> = specs
        .par_iter()
        .enumerate()
        .map(|(b, spec)| {
            let questions =
                cfg.bench_questions / n_sources + usize::from(b < cfg.bench_questions % n_sources);
            generate_source(cfg, cal, bench, spec, b, questions, space)
        })
        .collect();

    let mut jsonl = String::new();
    let mut features = Vec::new();
    let mut offsets = vec![0usize];
    let (mut mc, mut q, mut correct, mut source) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut total = BenchStats::default();
    let mut per_source = Vec::new();
    for (b, o) in outs.into_iter().enumerate() {
        jsonl.push_str(&o.text);
        features.extend_from_slice(&o.features);
        for len in &o.lens {
            offsets.push(offsets.last().expect("non-empty") + len);
            source.push(b as u32);
        }
        mc.extend_from_slice(&o.truth);
        q.extend_from_slice(&o.q);
        correct.extend_from_slice(&o.correct);
        total.merge(&o.stats);
        per_source.push(o.stats);
    }
    let n_records = source.len();
    let meta = BundleMeta {
        sources: specs.iter().map(|s| s.name.to_string()).collect(),
        seed: Some(cfg.seed),
        generator: serde_json::json!({
            "tool": "mprm synth",
            "version": env!("CARGO_PKG_VERSION"),
            "part": "bench",
            "preset": cfg.preset,
            "dim": cfg.dim,
            "dtype": cfg.dtype,
            "mc_scores": "true step correctness (0/1)",
        }),
        extra: Default::default(),
    };
    let bundle = FeatureBundle::from_parts(BundleParts {
        features: match cfg.dtype {
            FeatureDtype::F32 => FeatureData::F32(features),
            FeatureDtype::Bf16 => {
                FeatureData::Bf16(features.iter().map(|&v| bf16::from_f32(v)).collect())
            }
        },
        dim: cfg.dim,
        offsets,
        mc_scores: mc,
        source,
        line: Some((0..n_records as u64).collect()),
        labels: None,
        teacher: Some(TeacherInfo {
            q,
            true_correct: correct,
            w_star: space.w_star.clone(),
            b_star: space.b_star,
        }),
        meta,
    })?;
    bundle.save(dir.join(super::BENCH_BUNDLE_FILE))?;
    write_text(dir.join(super::BENCH_FILE), &jsonl)?;
    Ok((per_source, total))
}

fn generate_source(
    cfg: &SynthConfig,
    cal: &Calibration,
    bench: &BenchCalibration,
    spec: &BenchSourceSpec,
    b: usize,
    questions: usize,
    space: &FeatureSpace,
) -> SourceOut {
    let params = &cfg.model.for_bench();
    let quad = Quadrature::default();
    let key = b as u64;
    let seed = cfg.seed;
    let candidates = cfg.bench_candidates;
    let rollouts = questions * candidates;
    let bonus = params.guess_bonus(spec.kind);
    let model = SourceModel {
        ability: bench.abilities[b],
        recovery_mean: cal.recovery.mean(bonus, &quad),
        recovery_bonus: bonus,
        steps_pmf: &bench.steps_pmfs[b],
    };
    let strata = Strata::new(
        rollouts,
        questions,
        &mut bench_stream(seed, Stream::Strata, key, 0),
    );
    let source_embedding = space.embedding(
        params.source_scale,
        &mut bench_stream(seed, Stream::SourceEmbedding, key, 0),
    );
    let sampler = SourceSampler {
        seed,
        key,
        bench: true,
        model,
        strata: &strata,
        params,
        quad: &quad,
        recovery: cal.recovery,
        early_stop: 0.0,
    };
    let dev_questions = (cfg.bench_dev_fraction * questions as f64).ceil() as usize;
    let neutral = neutral_rate();
    let d = cfg.dim;
    let mut out = SourceOut {
        text: String::new(),
        features: Vec::new(),
        lens: Vec::new(),
        truth: Vec::new(),
        q: Vec::new(),
        correct: Vec::new(),
        stats: BenchStats {
            source: spec.name.to_string(),
            questions: questions as u64,
            ..BenchStats::default()
        },
    };
    for qi in 0..questions {
        let (difficulty, mut qrng) = sampler.question(qi);
        let qt = text::question(spec.domain, spec.kind, &mut qrng);
        let mut base = space.embedding(
            params.question_scale,
            &mut sampler.rng(Stream::QuestionEmbedding, qi),
        );
        base.iter_mut()
            .zip(&source_embedding)
            .for_each(|(x, e)| *x += e);
        let split = if qi < dev_questions { "dev" } else { "test" };
        let policy = VISUALPROCESSBENCH_POLICIES[qi % VISUALPROCESSBENCH_POLICIES.len()];
        for c in 0..candidates {
            let i = qi * candidates + c;
            let n = sampler.steps(i);
            let start = out.features.len();
            out.features.resize(start + n * d, 0.0);
            let sink = FeatureSink {
                space,
                base: &base,
                rng: sampler.rng(Stream::Features, i),
                out: &mut out.features[start..],
            };
            let (_, _, draw) = sampler.rollout(i, difficulty, Some(sink));
            let final_correct = draw.all_correct() || draw.recovered;
            let answer = if final_correct {
                &qt.answer
            } else {
                &qt.wrong_answer
            };
            let steps = text::rollout_steps(
                spec.domain,
                n,
                answer,
                BENCH_MEAN_WORDS,
                BENCH_WORD_SPREAD,
                &mut sampler.rng(Stream::Text, i),
            );
            let mut nrng = sampler.rng(Stream::Flip, i);
            let labels: Vec<i32> = draw
                .steps
                .iter()
                .map(|s| {
                    if uniform(&mut nrng) < neutral {
                        0
                    } else if s.correct {
                        1
                    } else {
                        -1
                    }
                })
                .collect();
            write_record(
                &mut out.text,
                &BenchLine {
                    source: spec.name,
                    image: &format!("images/{}/{qi:05}.png", spec.name),
                    question: &format!("<image1>\n{}", qt.question_orig),
                    answer: &qt.answer,
                    steps: &steps,
                    labels: &labels,
                    policy,
                    split,
                    question_id: &format!("{}-{qi}", spec.name),
                    final_correct,
                },
            );
            let st = &mut out.stats;
            st.records += 1;
            st.dev_records += (split == "dev") as u64;
            st.steps += n as u64;
            st.final_correct += final_correct as u64;
            for l in &labels {
                match l {
                    1 => st.correct += 1,
                    -1 => st.incorrect += 1,
                    _ => st.neutral += 1,
                }
            }
            out.lens.push(n);
            for s in &draw.steps {
                out.truth.push(s.correct as u8 as f32);
                out.q.push(s.teacher_q);
                out.correct.push(s.correct as u8);
            }
        }
    }
    out
}
