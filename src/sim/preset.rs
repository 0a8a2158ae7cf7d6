//! The `visualprm400k` calibration preset: the paper's per-source and corpus-wide statistics.
//!
//! Every number here is copied from the paper (Table 8 for the 38 sources, Table 1 for the whole
//! corpus, Table 6 / the benchmark card for VisualProcessBench). The answer kind and text domain
//! of each source are this crate's reading of what the public source datasets ask; they only
//! shape the synthetic text and the lucky-guess bonus of the post-error success rate.

use serde::Serialize;

/// What a source's answers look like; decides the answer text and how easily a wrong prefix
/// still guesses the right final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// Four lettered options (A–D).
    Choice,
    /// Yes / No.
    YesNo,
    /// A number.
    Numeric,
    /// A short phrase.
    Phrase,
}

/// The vocabulary a source's synthetic steps are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// Plane geometry (angles, segments, circles).
    Geometry,
    /// Function plots (MAVIS-Function).
    Function,
    /// Charts and plots.
    Chart,
    /// Documents, receipts and infographics.
    Document,
    /// Natural or rendered scenes.
    Scene,
    /// Science diagrams and textbook questions.
    Science,
}

/// One training source of the preset.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SourceSpec {
    /// The paper's name (Table 8).
    pub name: &'static str,
    /// Mean MC score per step (Table 8, "Avg. MC").
    pub mean_mc: f64,
    /// Steps in the source (Table 8).
    pub steps: u64,
    /// Rollouts in the source (Table 8).
    pub rollouts: u64,
    /// Answer format.
    pub kind: AnswerKind,
    /// Text vocabulary.
    pub domain: Domain,
}

impl SourceSpec {
    /// Mean steps per rollout implied by Table 8.
    pub fn steps_per_rollout(&self) -> f64 {
        self.steps as f64 / self.rollouts as f64
    }

    /// The annotation file stem: see [`slug`].
    pub fn slug(&self) -> String {
        slug(self.name)
    }
}

const fn src(
    name: &'static str,
    mean_mc: f64,
    steps: u64,
    rollouts: u64,
    kind: AnswerKind,
    domain: Domain,
) -> SourceSpec {
    SourceSpec {
        name,
        mean_mc,
        steps,
        rollouts,
        kind,
        domain,
    }
}

use AnswerKind::{Choice, Numeric, Phrase, YesNo};
use Domain::{Chart, Document, Function, Geometry, Scene, Science};

/// Table 8 of the paper, in the paper's row order.
pub const VISUALPRM400K_SOURCES: [SourceSpec; 38] = [
    src("AI2D", 0.9409, 146_419, 28_147, Choice, Science),
    src("ChartQA", 0.9078, 136_655, 28_049, Numeric, Chart),
    src("CLEVR", 0.9106, 109_317, 24_004, Numeric, Scene),
    src("COCO-ReM (Y/N)", 0.8933, 55_628, 18_450, YesNo, Scene),
    src("DocVQA", 0.8663, 85_589, 21_049, Phrase, Document),
    src("DVQA", 0.9453, 177_352, 35_367, Numeric, Chart),
    src("FigureQA", 0.7615, 57_601, 12_345, YesNo, Chart),
    src("Geo170K", 0.9023, 61_314, 8_205, Choice, Geometry),
    src("Geometry3K", 0.9243, 94_624, 11_756, Choice, Geometry),
    src(
        "Geometry3K (Open)",
        0.8707,
        58_569,
        7_090,
        Numeric,
        Geometry,
    ),
    src("GeomVerse", 0.6819, 38_156, 7_765, Numeric, Geometry),
    src("GeoQA+ (Open)", 0.5720, 45_287, 7_025, Numeric, Geometry),
    src("GeoQA+ (MC)", 0.8486, 67_715, 9_216, Choice, Geometry),
    src("GEOS", 0.9061, 16_847, 1_827, Choice, Geometry),
    src("GEOS (Open)", 0.8217, 1_563, 178, Numeric, Geometry),
    src("IconQA", 0.8908, 121_873, 25_811, Choice, Scene),
    src("InfographicVQA", 0.7645, 78_408, 17_996, Phrase, Document),
    src("KonIQ-10k", 0.8822, 72_430, 13_337, Choice, Scene),
    src("M3CoT", 0.8811, 115_649, 19_476, Choice, Science),
    src("MAPQA-SUV", 0.7260, 48_368, 12_366, Phrase, Chart),
    src("MathV360K", 0.8759, 107_503, 20_132, Choice, Geometry),
    src("MAVIS-Abs", 0.8104, 166_756, 16_530, Numeric, Function),
    src("MAVIS-Cos", 0.8057, 86_393, 9_174, Numeric, Function),
    src("MAVIS-Log", 0.7357, 162_713, 15_422, Numeric, Function),
    src("MAVIS-Poly", 0.8836, 206_293, 23_461, Numeric, Function),
    src("MAVIS-Sin", 0.8231, 88_130, 9_675, Numeric, Function),
    src("MAVIS-Tan", 0.8027, 60_391, 6_180, Numeric, Function),
    src("MAVIS-Geo-0", 0.9280, 78_764, 13_149, Choice, Geometry),
    src("MAVIS-Geo-1", 0.8765, 37_760, 6_728, Choice, Geometry),
    src("MAVIS-Geo-2", 0.7990, 25_851, 4_801, Choice, Geometry),
    src("MAVIS-Geo-3", 0.7719, 19_080, 3_706, Choice, Geometry),
    src("NLVR2", 0.9672, 96_072, 26_439, YesNo, Scene),
    src("ScienceQA", 0.9723, 186_894, 34_523, Choice, Science),
    src("SROIE", 0.8708, 83_389, 18_074, Phrase, Document),
    src("Super-CLEVR (Int)", 0.7325, 37_279, 12_070, Numeric, Scene),
    src("Super-CLEVR (Y/N)", 0.7713, 33_171, 10_440, YesNo, Scene),
    src("UniGeo", 0.6015, 41_523, 6_299, Numeric, Geometry),
    src("VQAv2", 0.8253, 67_166, 18_887, Phrase, Scene),
];

/// Corpus-wide statistics of VisualPRM400K-v1.1 (Table 1, "Full-Data").
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CorpusTargets {
    /// Rollouts.
    pub rollouts: u64,
    /// Reasoning steps.
    pub steps: u64,
    /// Average steps per rollout.
    pub steps_per_rollout: f64,
    /// Average words per step.
    pub words_per_step: f64,
    /// Fraction of steps with MC score 0 ("error-step ratio").
    pub zero_mc_fraction: f64,
    /// Mean MC score per step.
    pub mean_mc: f64,
    /// Fraction of rollouts with both a positive and a zero-score step (§2.3 of the paper).
    pub mixed_fraction: f64,
}

/// Table 1 of the paper.
pub const VISUALPRM400K_TARGETS: CorpusTargets = CorpusTargets {
    rollouts: 565_096,
    steps: 3_174_394,
    steps_per_rollout: 5.62,
    words_per_step: 27.8,
    zero_mc_fraction: 0.0357,
    mean_mc: 0.8566,
    mixed_fraction: 0.0767,
};

/// One source of the VisualProcessBench-like evaluation set.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BenchSourceSpec {
    /// The benchmark's `data_source` value.
    pub name: &'static str,
    /// Mean steps per solution in the real benchmark (steps / samples of the benchmark card).
    pub steps_per_solution: f64,
    /// Difficulty offset (logits) relative to the fitted benchmark ability; lower is harder.
    pub ability_offset: f64,
    /// Answer format.
    pub kind: AnswerKind,
    /// Text vocabulary.
    pub domain: Domain,
}

/// The five VisualProcessBench sources. Steps per solution are the card's steps / samples.
/// The offsets are a judgement call (MathVision is the hardest competition set, WeMath and
/// DynaMath the most elementary); only their spread matters, the level is fitted.
pub const VISUALPROCESSBENCH_SOURCES: [BenchSourceSpec; 5] = [
    BenchSourceSpec {
        name: "DynaMath",
        steps_per_solution: 5_026.0 / 570.0,
        ability_offset: 0.3,
        kind: Numeric,
        domain: Function,
    },
    BenchSourceSpec {
        name: "MMMU_DEV_VAL",
        steps_per_solution: 2_679.0 / 267.0,
        ability_offset: -0.2,
        kind: Choice,
        domain: Science,
    },
    BenchSourceSpec {
        name: "MathVerse_MINI_Vision_Only",
        steps_per_solution: 9_667.0 / 1_026.0,
        ability_offset: 0.0,
        kind: Choice,
        domain: Geometry,
    },
    BenchSourceSpec {
        name: "MathVision_MINI",
        steps_per_solution: 7_000.0 / 712.0,
        ability_offset: -0.5,
        kind: Choice,
        domain: Geometry,
    },
    BenchSourceSpec {
        name: "WeMath",
        steps_per_solution: 2_578.0 / 291.0,
        ability_offset: 0.2,
        kind: Choice,
        domain: Geometry,
    },
];

/// VisualProcessBench step-label counts (correct, incorrect, neutral) from Table 6.
pub const VISUALPROCESSBENCH_LABELS: (u64, u64, u64) = (16_585, 7_691, 2_674);

/// The policy names VisualProcessBench uses in `policy_model`.
pub const VISUALPROCESSBENCH_POLICIES: [&str; 4] = [
    "GPT4o_20241120_tem07",
    "Claude3-5V_Sonnet_20241022_tem07",
    "lmdeploy_qvq",
    "lmdeploy_internvl",
];

/// A file-name-safe, lower-case ASCII stem for a source name.
///
/// Letters are lower-cased; digits, `-` and `+` are kept; a space becomes `_`; every other
/// character (parentheses, `/`) is dropped. So `COCO-ReM (Y/N)` → `coco-rem_yn`, `GeoQA+ (Open)` →
/// `geoqa+_open`, `MAVIS-Geo-0` → `mavis-geo-0`. The 38 preset names map to 38 distinct stems.
pub fn slug(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '+' => Some(c.to_ascii_lowercase()),
            ' ' | '_' => Some('_'),
            _ => None,
        })
        .collect()
}

/// Parses `NAME=VALUE` settings whose NAME is a preset source's paper name or file stem; the
/// result is keyed by paper name.
pub fn parse_source_values(
    items: &[String],
) -> crate::Result<std::collections::BTreeMap<String, f64>> {
    items
        .iter()
        .map(|item| {
            let (name, value) = item
                .rsplit_once('=')
                .ok_or_else(|| crate::Error::invalid(format!("`{item}` is not NAME=VALUE")))?;
            let spec = VISUALPRM400K_SOURCES
                .iter()
                .find(|s| s.name == name || s.slug() == name)
                .ok_or_else(|| {
                    crate::Error::invalid(format!(
                        "`{name}` is not a source of the preset (use a Table 8 name such as \
                         `GeoQA+ (Open)` or its file stem `geoqa+_open`)"
                    ))
                })?;
            let value: f64 = value.trim().parse().map_err(|_| {
                crate::Error::invalid(format!("`{value}` in `{item}` is not a number"))
            })?;
            Ok((spec.name.to_string(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table8_totals_match_the_paper_sheet() {
        let steps: u64 = VISUALPRM400K_SOURCES.iter().map(|s| s.steps).sum();
        let rollouts: u64 = VISUALPRM400K_SOURCES.iter().map(|s| s.rollouts).sum();
        // paper-facts §3.3: the columns sum to 3,174,492 steps and 565,149 rollouts.
        assert_eq!(steps, 3_174_492);
        assert_eq!(rollouts, 565_149);
        let weighted: f64 = VISUALPRM400K_SOURCES
            .iter()
            .map(|s| s.mean_mc * s.steps as f64)
            .sum::<f64>()
            / steps as f64;
        assert!((weighted - 0.860).abs() < 0.001, "{weighted}");
    }

    #[test]
    fn source_settings_accept_names_and_stems() {
        let parsed =
            parse_source_values(&["GeoQA+ (Open)=0.5".to_string(), "coco-rem_yn=1".to_string()])
                .unwrap();
        assert_eq!(parsed["GeoQA+ (Open)"], 0.5);
        assert_eq!(parsed["COCO-ReM (Y/N)"], 1.0);
        assert!(parse_source_values(&["nope=0.1".to_string()]).is_err());
        assert!(parse_source_values(&["AI2D".to_string()]).is_err());
        assert!(parse_source_values(&["AI2D=x".to_string()]).is_err());
    }

    #[test]
    fn slugs_are_distinct_and_safe() {
        let mut slugs: Vec<String> = VISUALPRM400K_SOURCES.iter().map(|s| s.slug()).collect();
        assert_eq!(slug("COCO-ReM (Y/N)"), "coco-rem_yn");
        assert_eq!(slug("GeoQA+ (Open)"), "geoqa+_open");
        assert_eq!(slug("AI2D"), "ai2d");
        assert!(slugs.iter().all(|s| {
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-+_".contains(&b))
        }));
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), 38);
    }
}
