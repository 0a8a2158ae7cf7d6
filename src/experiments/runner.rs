//! `mprm experiment` and `mprm report`: run a config into a results folder, or redraw one.
//!
//! Layout of a results folder:
//!
//! ```text
//! RESULTS/manifest.json          what ran: config, seed, crate version, git commit, device
//! RESULTS/README.md              the report: findings, key tables, links to every file
//! RESULTS/<experiment>/results.json   raw numbers (the only input of `mprm report`)
//! RESULTS/<experiment>/*.md|csv|json|svg|png   tables and figures
//! RESULTS/timing.json            wall times (with selection/cost.* and the README cost table, the only files that differ between identical runs)
//! RESULTS/corpus/, RESULTS/cells/   the generated corpus and finished cells (not committed)
//! RESULTS/.mprm.lock             advisory lock held while a run or report writes the folder
//! ```
//!
//! One process at a time writes a results folder: a second `mprm experiment` or `mprm report` on
//! the same folder fails with [`Error::Locked`] naming the holder's pid.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::device::{self, DeviceRequest};
use crate::error::{Error, IoContext, Result};
use crate::lock::DirLock;
use crate::output::write_json;

use super::cells::CellStore;
use super::checks::Check;
use super::config::CorpusKind;
use super::config::ExperimentConfig;
use super::context::{Corpus, ExperimentContext};
use super::manifest::{Manifest, git_commit};
use super::report::{Rendered, write_readme};
use super::{intervention, regime, selection, theory};

/// What a finished run tells its caller.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The results folder.
    pub dir: PathBuf,
    /// The key tables, as Markdown.
    pub key_tables: String,
}

/// Where a run writes when no folder is given: `experiments/runs/<name>`, which git ignores, so a
/// quick start leaves the repository clean. The committed results under `experiments/results/`
/// are written only when asked for by name (`scripts/regenerate-results.sh`).
pub const DEFAULT_RUNS_DIR: &str = "experiments/runs";

/// What the command line changes in a config for one run (recorded in the manifest's config).
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// `--device`.
    pub device: Option<DeviceRequest>,
    /// `--scale`: the corpus scale, for a quick smoke run of a full config.
    pub scale: Option<f64>,
    /// `--corpus-seed`: another draw of the same corpus settings (replication).
    pub corpus_seed: Option<u64>,
    /// `--skip-intervention`: run without the config's `[intervention]` section.
    pub skip_intervention: bool,
}

/// Runs the experiments of `config_path` into `out` (default [`DEFAULT_RUNS_DIR`]`/<name>`),
/// reusing finished cells found there.
pub fn run_experiment(
    config_path: &Path,
    out: Option<&Path>,
    overrides: Overrides,
) -> Result<RunSummary> {
    let mut cfg = ExperimentConfig::load(config_path)?;
    if let Some(scale) = overrides.scale {
        cfg.corpus.scale = scale;
        cfg.validate()
            .map_err(|e| Error::invalid(format!("--scale {scale}: {e}")))?;
    }
    if let Some(seed) = overrides.corpus_seed {
        cfg.corpus.seed = seed;
        if cfg.corpus.kind == super::config::CorpusKind::Policy {
            cfg.corpus.world.get_or_insert_with(Default::default).seed = seed;
        }
    }
    if overrides.skip_intervention {
        cfg.intervention = None;
        cfg.validate()
            .map_err(|e| Error::invalid(format!("--skip-intervention: {e}")))?;
    }
    let dir = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUNS_DIR).join(&cfg.name));
    std::fs::create_dir_all(&dir).at(&dir)?;
    let _lock = DirLock::acquire(&dir)?;
    let request = overrides.device.unwrap_or(cfg.device);
    let device = device::resolve(request)?;
    let mut manifest = Manifest {
        experiment: cfg.name.clone(),
        config: serde_json::to_value(&cfg).expect("config serialises"),
        seed: cfg.seed,
        crate_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: git_commit(config_path.parent().unwrap_or(Path::new(".")), &dir),
        device: device.to_string(),
        corpus_fingerprint: None,
    };

    let mut timing = serde_json::Map::new();
    let cells = CellStore::open(&dir)?;
    if let Some(r) = &cfg.regime {
        // The map draws its own corpora, one per grid point and corpus seed.
        let started = Instant::now();
        let results = regime::run(r, &cfg.corpus, &cfg.train, device, cfg.seed, &dir, &cells)?;
        save_results(&dir, "regime", &results)?;
        timing.insert("regime_s".into(), started.elapsed().as_secs_f64().into());
    }
    if let Some(i) = &cfg.intervention {
        // Like the regime map, the interventions draw their own corpora (one per corpus seed).
        let started = Instant::now();
        let results =
            intervention::run(i, &cfg.corpus, &cfg.train, device, cfg.seed, &dir, &cells)?;
        save_results(&dir, "intervention", &results)?;
        timing.insert(
            "intervention_s".into(),
            started.elapsed().as_secs_f64().into(),
        );
    }
    let draws_own_corpora = cfg.regime.is_some() || cfg.intervention.is_some();
    if draws_own_corpora && cfg.theory.is_none() && cfg.selection.is_none() {
        write_json(dir.join("manifest.json"), &manifest)?;
        write_json(dir.join("timing.json"), &timing)?;
        return regenerate_locked(&dir);
    }
    let started = Instant::now();
    // A corpus reused from an earlier run keeps the time its build took (a world's is minutes;
    // opening it again is not a measurement worth recording).
    let built_before = load_timing(&dir)?
        .and_then(|t| t.get("corpus_s").cloned())
        .filter(|_| Corpus::is_prepared(&cfg.corpus, &dir));
    let corpus = Corpus::prepare(&cfg.corpus, &dir)?;
    manifest.corpus_fingerprint = Some(corpus.bundle.fingerprint());
    write_json(dir.join("manifest.json"), &manifest)?;
    let corpus_s = built_before.unwrap_or_else(|| started.elapsed().as_secs_f64().into());
    timing.insert("corpus_s".into(), corpus_s);
    let ctx = ExperimentContext {
        corpus: &corpus,
        cells: &cells,
        device,
        seed: cfg.seed,
        train: &cfg.train,
    };
    if let Some(t) = &cfg.theory {
        let started = Instant::now();
        save_results(&dir, "theory", &theory::run(t, &ctx)?)?;
        timing.insert("theory_s".into(), started.elapsed().as_secs_f64().into());
    }
    if let Some(s) = &cfg.selection {
        let started = Instant::now();
        let (results, cost) = selection::run(s, &ctx)?;
        save_results(&dir, "selection", &results)?;
        timing.insert("selection_s".into(), started.elapsed().as_secs_f64().into());
        timing.insert(
            "selection_cost".into(),
            serde_json::to_value(cost).expect("timings serialise"),
        );
    }
    write_json(dir.join("timing.json"), &timing)?;
    regenerate_locked(&dir)
}

fn save_results<T: Serialize>(dir: &Path, sub: &str, results: &T) -> Result<()> {
    write_json(dir.join(sub).join("results.json"), results)
}

/// Adds `checks` and `checks_post_hoc: true` at the end of `sub/results.json`, leaving every
/// byte before them as it was: re-serialising the typed results would write the defaults of
/// fields the run never measured (an extension count of 0, say) as if it had. Returns whether
/// anything was added.
fn append_checks(dir: &Path, sub: &str, checks: &[Check]) -> Result<bool> {
    if checks.is_empty() {
        return Ok(false);
    }
    let path = dir.join(sub).join("results.json");
    let text = std::fs::read_to_string(&path).at(&path)?;
    let body = text.trim_end();
    let Some(open) = body.strip_suffix('}') else {
        return Err(Error::Other(format!(
            "{}: not a JSON object, cannot add its checks",
            path.display()
        )));
    };
    let list = serde_json::to_string_pretty(checks).expect("checks serialise");
    let indented = list.replace('\n', "\n  ");
    let out = format!(
        "{},\n  \"checks\": {indented},\n  \"checks_post_hoc\": true\n}}\n",
        open.trim_end()
    );
    // The result must still be the same JSON plus the new key.
    serde_json::from_str::<serde_json::Value>(&out)
        .map_err(|e| Error::Other(format!("{}: adding its checks: {e}", path.display())))?;
    crate::output::write_text(&path, &out)?;
    Ok(true)
}

/// A rendered part whose checks were derived after the run gets a sentence saying so.
fn noted(mut r: Rendered, post_hoc: bool) -> Rendered {
    if post_hoc {
        r.summary.push_str(
            "\n\nThis run predates decision rules stated in its config: its `checks` list was \
             added afterwards by `mprm report`, from the stored measurements only, under the rule \
             recorded in each check. Read these verdicts as post hoc.\n",
        );
    }
    r
}

fn load_results<T: DeserializeOwned>(dir: &Path, sub: &str) -> Result<Option<T>> {
    let path = dir.join(sub).join("results.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn load_timing(dir: &Path) -> Result<Option<serde_json::Value>> {
    let path = dir.join("timing.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(serde_json::from_str(&text).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Redraws every table and figure of a results folder from its `results.json` files, and its
/// README.
pub fn regenerate_report(dir: &Path) -> Result<RunSummary> {
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "{} is not a results folder (no such folder)",
            dir.display()
        )));
    }
    let _lock = DirLock::acquire(dir)?;
    regenerate_locked(dir)
}

/// [`regenerate_report`], for a caller that holds the folder's lock.
fn regenerate_locked(dir: &Path) -> Result<RunSummary> {
    let manifest_path = dir.join("manifest.json");
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).at(&manifest_path)?)
            .map_err(|e| Error::Other(format!("{}: {e}", manifest_path.display())))?;
    let mut parts: Vec<(&str, Rendered)> = Vec::new();
    // Results written before verdicts existed get their `checks` list here. Every such check is
    // a pure function of the stored measurements and the stored rule, so nothing is re-measured;
    // results.json is rewritten (atomically) only when the list was missing.
    if let Some(mut r) = load_results::<regime::RegimeResults>(dir, "regime")? {
        if r.checks.is_empty() {
            r.checks = regime::checks(&r);
            r.checks_post_hoc = append_checks(dir, "regime", &r.checks)?;
        }
        parts.push(("regime", noted(regime::render(&r), r.checks_post_hoc)));
    }
    if let Some(mut r) = load_results::<theory::TheoryResults>(dir, "theory")? {
        if r.checks.is_empty() {
            r.checks = theory::derived_checks(&r);
            r.checks_post_hoc = append_checks(dir, "theory", &r.checks)?;
        }
        parts.push(("theory", noted(theory::render(&r), r.checks_post_hoc)));
    }
    if let Some(r) = load_results::<intervention::InterventionResults>(dir, "intervention")? {
        parts.push(("intervention", intervention::render(&r)));
    }
    if let Some(mut r) = load_results::<selection::SelectionResults>(dir, "selection")? {
        if r.checks.is_empty() {
            r.checks = selection::derived_checks(&r);
            r.checks_post_hoc = append_checks(dir, "selection", &r.checks)?;
        }
        // Older manifests leave `kind` out for the simulator, its default.
        let corpus = match manifest.config["corpus"]["kind"].as_str() {
            Some("policy") => CorpusKind::Policy,
            _ => CorpusKind::Synth,
        };
        let mut rendered = selection::render(&r, corpus);
        if let Some(cost) = load_timing(dir)?.and_then(|t| t.get("selection_cost").cloned())
            && let Ok(cost) =
                serde_json::from_value::<std::collections::BTreeMap<String, f64>>(cost)
            && let Some(table) = selection::cost_table(&cost)
        {
            rendered.summary.push('\n');
            rendered.summary.push_str(&table.to_markdown());
            rendered.tables.push(("cost".into(), table));
        }
        parts.push(("selection", noted(rendered, r.checks_post_hoc)));
    }
    if parts.is_empty() {
        return Err(Error::EmptyInput(format!(
            "{}: no results.json to report",
            dir.display()
        )));
    }
    for (sub, r) in &parts {
        r.save(&dir.join(sub))?;
    }
    let header = format!(
        "# mprm results: {}\n\nProduced by `mprm experiment` (mprm {}, commit {}, device {}, seed {}); \
         the full configuration is in [`manifest.json`](manifest.json). Regenerate the tables and \
         figures with `mprm report {}`.\n\n",
        manifest.experiment,
        manifest.crate_version,
        manifest.git_commit,
        manifest.device,
        manifest.seed,
        dir.display()
    );
    let refs: Vec<(&str, &Rendered)> = parts.iter().map(|(s, r)| (*s, r)).collect();
    write_readme(dir, &header, &refs)?;
    Ok(RunSummary {
        dir: dir.to_path_buf(),
        key_tables: parts
            .iter()
            .map(|(_, r)| r.key_table.clone())
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_results_folder_in_use_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(dir.path()).unwrap();
        let e = regenerate_report(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Locked { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains(&format!("in use by pid {}", std::process::id())),
            "{e}"
        );
        drop(held);
        // Free again: now the (empty) folder itself is the problem.
        let e = regenerate_report(dir.path()).unwrap_err().to_string();
        assert!(e.contains("manifest.json"), "{e}");
    }
}
