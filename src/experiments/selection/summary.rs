//! The generated summary: every sentence is read off a computed number.

use crate::experiments::stats::MeanCi;
use crate::experiments::table::Table;

use super::render::pct;
use super::run::SelectionResults;

pub(super) fn summary(
    r: &SelectionResults,
    t2: &Table,
    gap: &Table,
    labelling: &Table,
    full: Option<MeanCi>,
) -> String {
    let mut s = String::from("## Selection comparison\n\n");
    let at = |row: &str, b: f64| r.overall(row, b);
    let describe = |b: f64| -> String {
        let d = r.paired_delta("bis", "random", b);
        match d {
            Some(d) if d.lo() > 0.0 => format!(
                "BIS beats random at {} by {:.2} points (95% CI {:.2} to {:.2})",
                pct(b),
                d.mean,
                d.lo(),
                d.hi()
            ),
            Some(d) if d.hi() < 0.0 => format!(
                "BIS is worse than random at {} by {:.2} points (95% CI {:.2} to {:.2})",
                pct(b),
                -d.mean,
                d.lo(),
                d.hi()
            ),
            Some(d) => format!(
                "BIS and random are indistinguishable at {} (Δ = {:.2}, 95% CI {:.2} to {:.2})",
                pct(b),
                d.mean,
                d.lo(),
                d.hi()
            ),
            None => format!("no BIS/random pair at {}", pct(b)),
        }
    };
    let sentences: Vec<String> = r.config.budgets.iter().map(|&b| describe(b)).collect();
    s.push_str(&format!("{}.\n\n", sentences.join("; ")));
    if let (Some(f), Some(b10), Some(b25)) = (full, at("bis", 0.10), at("bis", 0.25)) {
        s.push_str(&format!(
            "Full data reaches {:.2} ± {:.2}; BIS-10% reaches {:.2} ± {:.2} and BIS-25% {:.2} ± {:.2} (the paper: BIS-10% 65.46 vs full 65.12 on InternVL2.5-8B).\n\n",
            f.mean, f.half_width, b10.mean, b10.half_width, b25.mean, b25.half_width
        ));
    }
    let best_at = |b: f64| {
        r.rows()
            .into_iter()
            .filter_map(|row| at(&row, b).map(|v| (row, v.mean)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    for &b in &[0.10, 0.25] {
        if let Some((row, v)) = best_at(b) {
            s.push_str(&format!("Best mean at {}: `{row}` ({v:.2}).\n", pct(b)));
        }
    }
    s.push('\n');
    s.push_str(&t2.to_markdown());
    s.push('\n');
    s.push_str(&gap.to_markdown());
    s.push('\n');
    s.push_str(&labelling.to_markdown());
    s
}
