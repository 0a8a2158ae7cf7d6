//! Evaluating scores or a model on the bench: the report, its checks and its plain-text form.

use super::best_of_n::{BestOfNReport, best_of_n};
use super::scores::{ScoresFile, StepScores};
use super::threshold::{BenchReport, MetricsAt};
use crate::data::bench::{BenchSet, Split};
use crate::device::Device;
use crate::device::burn::BurnJob;
use crate::error::{Error, Result};
use crate::fused_ops::{FusedOps, TrainBackend};
use crate::head::HeadParams;
use crate::prm_model::{PrmModel, score_bundle};
use burn::tensor::backend::Backend;

/// Everything measured for one set of step scores.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalReport {
    /// Step metrics.
    pub bench: BenchReport,
    /// Best-of-N on the test records; absent when records lack `question_id`/`final_correct`.
    pub best_of_n: Option<BestOfNReport>,
}

/// Evaluates per-record step scores on `bench`.
pub fn evaluate_scores(bench: &BenchSet, scores: &StepScores) -> Result<EvalReport> {
    if scores.n_records() != bench.records.len() {
        return Err(Error::invalid(format!(
            "{} score entries for {} bench records in {}",
            scores.n_records(),
            bench.records.len(),
            bench.path.display()
        )));
    }
    Ok(EvalReport {
        bench: super::threshold::evaluate(bench, scores),
        best_of_n: best_of_n(bench, scores, &bench.indices(Split::Test)),
    })
}

/// Checks that `file` has one entry per bench record and, per record, one score per step.
///
/// A different number of entries is always an error. Records whose score count differs from their
/// step count are an error naming the first of them, unless `lenient`, which returns how many
/// there are (the metrics then pair scores and labels up to the shorter list).
pub fn check_scores_file(bench: &BenchSet, file: &ScoresFile, lenient: bool) -> Result<usize> {
    let (n_scores, n_bench) = (file.scores.n_records(), bench.records.len());
    if n_scores != n_bench {
        return Err(Error::CorpusMismatch {
            left: file.path.clone(),
            right: bench.path.clone(),
            reason: format!(
                "{}: {n_scores} score entries for {n_bench} bench records in {}; \
                 a scores file needs one entry per bench record, in record order",
                file.path.display(),
                bench.path.display()
            ),
        });
    }
    let mismatched: Vec<usize> = (0..n_bench)
        .filter(|&i| file.scores.record(i).len() != bench.records[i].labels.len())
        .collect();
    match mismatched.first() {
        Some(&i) if !lenient => {
            let place = file
                .places
                .get(i)
                .map_or_else(|| format!("entry {i}"), ToString::to_string);
            Err(Error::CorpusMismatch {
                left: file.path.clone(),
                right: bench.path.clone(),
                reason: format!(
                    "{}: {place} (record index {i}): expected {} step scores (bench record at \
                     {}:{}), found {}; {} of {n_bench} records have a different number of \
                     scores than steps (--lenient evaluates them anyway, paired up to the shorter)",
                    file.path.display(),
                    bench.records[i].labels.len(),
                    bench.path.display(),
                    bench.records[i].line + 1,
                    file.scores.record(i).len(),
                    mismatched.len()
                ),
            })
        }
        _ => Ok(mismatched.len()),
    }
}

/// Scores the bench's features with `model` (probabilities σ(z)) and evaluates them.
pub fn evaluate_model<B: FusedOps>(
    model: &PrmModel<B>,
    bench: &BenchSet,
    device: &B::Device,
) -> Result<EvalReport> {
    let scores = model_scores(model, bench, device)?;
    evaluate_scores(bench, &scores)
}

/// Step scores of `model` on the bench features.
pub fn model_scores<B: FusedOps>(
    model: &PrmModel<B>,
    bench: &BenchSet,
    device: &B::Device,
) -> Result<StepScores> {
    let features = bench.features.as_ref().ok_or_else(|| {
        Error::invalid(format!(
            "{} has no features bundle to score a model on",
            bench.path.display()
        ))
    })?;
    let flat = score_bundle(model, features, device)?;
    Ok(StepScores {
        flat: flat.into_iter().map(f64::from).collect(),
        offsets: features.offsets().to_vec(),
    })
}

/// Where a model to evaluate comes from; built on whichever backend the device seam picks.
pub trait ModelSource {
    /// The model on `device`.
    fn build<B: Backend>(&self, device: &B::Device) -> Result<PrmModel<B>>;
}

impl ModelSource for HeadParams {
    fn build<B: Backend>(&self, device: &B::Device) -> Result<PrmModel<B>> {
        Ok(PrmModel::from_head(self, device))
    }
}

/// Builds `source`'s model on `device` and evaluates it on `bench`.
pub fn evaluate_source(
    source: &(impl ModelSource + Sync),
    bench: &BenchSet,
    device: Device,
) -> Result<EvalReport> {
    struct Job<'a, S> {
        source: &'a S,
        bench: &'a BenchSet,
    }
    impl<S: ModelSource> BurnJob for Job<'_, S> {
        type Output = EvalReport;
        fn run<B: TrainBackend>(
            self,
            device: &B::Device,
            _: Device,
            _: &'static str,
        ) -> Result<EvalReport> {
            // Inference needs no tape: the inner backend shares the device.
            let model = self.source.build::<B::InnerBackend>(device)?;
            evaluate_model(&model, self.bench, device)
        }
    }
    crate::device::burn::run(device, Job { source, bench })
}

/// Evaluates a [`HeadParams`] head on the CPU.
pub fn evaluate_head(head: &HeadParams, bench: &BenchSet) -> Result<EvalReport> {
    evaluate_source(head, bench, Device::Cpu)
}

impl EvalReport {
    /// A plain-text summary: the dev-tuned test number first, oracles labelled as such.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let b = &self.bench;
        let mut s = String::new();
        if b.mismatched_records > 0 {
            let _ = writeln!(
                s,
                "note: {} records have a different number of scores than labels (paired up to the shorter)",
                b.mismatched_records
            );
        }
        let origin = match &b.split {
            crate::data::bench::SplitOrigin::Keys => "the records' split keys".to_string(),
            crate::data::bench::SplitOrigin::Seeded { dev_fraction, seed } => {
                format!("seeded split (dev fraction {dev_fraction}, seed {seed})")
            }
        };
        let _ = writeln!(
            s,
            "split: {origin}; dev {} records, test {} records",
            b.n_dev_records, b.n_test_records
        );
        if let Some(d) = &b.dev_tuned {
            let _ = writeln!(
                s,
                "dev-tuned threshold {:.4} (dev Overall {:.4}) → test:",
                d.dev.threshold, d.dev.overall
            );
            write_metrics(&mut s, &d.test);
        } else {
            let _ = writeln!(s, "no dev records: only oracle numbers below");
        }
        let _ = writeln!(s, "test ORACLE (threshold tuned on test itself):");
        write_metrics(&mut s, &b.test_oracle);
        let _ = writeln!(
            s,
            "reference ORACLE (all records, tuned on themselves, as the reference script): \
             threshold {:.4}, Overall {:.4}",
            b.reference_auto.threshold, b.reference_auto.overall
        );
        if let Some(bon) = &self.best_of_n {
            let picks: Vec<String> = bon
                .picks
                .iter()
                .map(|p| format!("{:?} {:.4}", p.aggregate, p.accuracy).to_lowercase())
                .collect();
            let _ = writeln!(
                s,
                "best-of-N on test ({} questions, {:.1} candidates each): {}; random {:.4}; oracle {:.4}",
                bon.n_questions,
                bon.mean_candidates,
                picks.join(", "),
                bon.random,
                bon.oracle
            );
        }
        s
    }
}

fn write_metrics(s: &mut String, m: &MetricsAt) {
    use std::fmt::Write;
    let auc = m.auc.map_or("n/a".into(), |a| format!("{a:.4}"));
    let _ = writeln!(
        s,
        "  threshold {:.4}  Overall {:.4}  pooled macro-F1 {:.4}  AUC {auc}  ({} steps)",
        m.threshold, m.overall, m.pooled_macro_f1, m.n_steps
    );
    let _ = writeln!(
        s,
        "  {:<28} {:>6} {:>7} {:>7} {:>7}",
        "source", "steps", "F1+", "F1-", "macro"
    );
    for p in &m.per_source {
        let _ = writeln!(
            s,
            "  {:<28} {:>6} {:>7.4} {:>7.4} {:>7.4}",
            p.source, p.n, p.f1_positive, p.f1_negative, p.macro_f1
        );
    }
}
