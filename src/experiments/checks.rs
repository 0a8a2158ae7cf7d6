//! Machine-readable verdicts: every experiment's `results.json` carries a `checks` list, one
//! entry per claim it tested, so a reader (or a script) can see at a glance what held, what did
//! not, and what the data could not decide.
//!
//! Three kinds, kept apart because they say different things:
//!
//! * **identity**: true by how the code samples its own data (labels drawn from Bernoulli(q*)
//!   checked against Eq. 5, a closed form against draws from the same prior). It can only fail
//!   through a bug, so its verdict is `holds` or `fails`, and it is never reported as agreement
//!   with the paper.
//! * **empirical**: a claim of the paper confronted with data whose generation does not satisfy
//!   the claim's assumptions by construction (the corpus's Monte Carlo labels). Its decision rule
//!   is part of the experiment's config, written before it runs, and every one has a negative
//!   control (`experiments/controls.toml`) under which it must say `disagrees`.
//! * **intervention**: the training data changed on purpose and the trained head measured.
//!
//! Empirical and intervention verdicts come from a [`Rule`] applied to a 95% interval:
//! `inconclusive` when the interval is wider than the rule's minimum precision allows, else
//! `agrees` when it lies above the threshold, `disagrees` when it lies below, and `inconclusive`
//! when it straddles it.

use serde::{Deserialize, Serialize};

/// What a check is (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// True by construction of our own sampling: a test, not a finding.
    Identity,
    /// A claim against data that does not satisfy it by construction.
    Empirical,
    /// Training data changed on purpose, trained model measured.
    Intervention,
}

impl CheckKind {
    /// The word used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Identity => "identity",
            CheckKind::Empirical => "empirical",
            CheckKind::Intervention => "intervention",
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The interval lies on the claim's side of the threshold.
    Agrees,
    /// The interval lies on the other side.
    Disagrees,
    /// Too wide, or straddling the threshold.
    Inconclusive,
    /// An identity that held within its tolerance.
    Holds,
    /// An identity that did not: a bug.
    Fails,
}

impl Verdict {
    /// The word used in tables and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Agrees => "agrees",
            Verdict::Disagrees => "disagrees",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Holds => "holds",
            Verdict::Fails => "fails",
        }
    }
}

/// A decision rule stated before a check runs: the claim is that the estimand exceeds
/// `threshold`; a 95% interval wider than `max_width` is too imprecise to decide.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The claim holds when the estimand exceeds this.
    pub threshold: f64,
    /// Widest 95% interval that may decide (the minimum precision).
    pub max_width: f64,
}

impl Rule {
    /// A rule with threshold `threshold` and minimum precision `max_width`.
    pub const fn new(threshold: f64, max_width: f64) -> Self {
        Rule {
            threshold,
            max_width,
        }
    }

    /// The verdict for a 95% interval [lo, hi].
    pub fn decide(&self, lo: f64, hi: f64) -> Verdict {
        if !(lo.is_finite() && hi.is_finite()) || hi - lo > self.max_width {
            Verdict::Inconclusive
        } else if lo > self.threshold {
            Verdict::Agrees
        } else if hi < self.threshold {
            Verdict::Disagrees
        } else {
            Verdict::Inconclusive
        }
    }

    /// The rule in words, as stored next to the verdict.
    pub fn describe(&self) -> String {
        format!(
            "agrees if the 95% CI lies above {t}, disagrees if it lies below {t}; inconclusive if \
             it straddles {t} or is wider than {w}",
            t = self.threshold,
            w = self.max_width
        )
    }

    /// Checks the rule's numbers; `name` names it in the message.
    pub fn validate(&self, name: &str) -> crate::error::Result<()> {
        if self.threshold.is_finite() && self.max_width.is_finite() && self.max_width > 0.0 {
            Ok(())
        } else {
            Err(crate::error::Error::invalid(format!(
                "rule {name}: threshold must be a number and max_width a positive number"
            )))
        }
    }
}

/// One tested claim, as stored in `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Stable identifier (`lemma2-mc-labels`, `factorial-mixture`, …).
    pub id: String,
    /// What kind of check it is.
    pub kind: CheckKind,
    /// The claim tested, in words.
    pub claim: String,
    /// The point estimate of the estimand.
    #[serde(with = "super::nan")]
    pub estimate: f64,
    /// Its 95% interval [lo, hi] (an undefined end is `null`).
    #[serde(with = "super::nan::vec")]
    pub ci: Vec<f64>,
    /// The decision rule (or, for an identity, its tolerance), in words.
    pub rule: String,
    /// The outcome.
    pub verdict: Verdict,
}

impl Check {
    /// An empirical check or an intervention decided by `rule`.
    pub fn decided(
        id: &str,
        kind: CheckKind,
        claim: &str,
        estimate: f64,
        ci: [f64; 2],
        rule: Rule,
    ) -> Self {
        Check {
            id: id.into(),
            kind,
            claim: claim.into(),
            estimate,
            ci: ci.to_vec(),
            rule: rule.describe(),
            verdict: rule.decide(ci[0], ci[1]),
        }
    }

    /// An identity: `holds` when `held`, with its tolerance in words.
    pub fn identity(
        id: &str,
        claim: &str,
        estimate: f64,
        ci: [f64; 2],
        tolerance: &str,
        held: bool,
    ) -> Self {
        Check {
            id: id.into(),
            kind: CheckKind::Identity,
            claim: claim.into(),
            estimate,
            ci: ci.to_vec(),
            rule: tolerance.into(),
            verdict: if held { Verdict::Holds } else { Verdict::Fails },
        }
    }
}

/// The checks of every kind as one Markdown table (id, kind, claim, estimate, CI, rule, verdict).
pub fn checks_table(checks: &[Check], title: &str) -> super::table::Table {
    use super::table::{Cell, Table};
    let mut t = Table::new(
        title,
        &[
            "id", "kind", "claim", "estimate", "95% CI", "rule", "verdict",
        ],
    );
    for c in checks {
        t.push(vec![
            Cell::text(&c.id),
            Cell::text(c.kind.as_str()),
            Cell::text(&c.claim),
            Cell::num(c.estimate, 4),
            Cell::text(format!("[{:.4}, {:.4}]", c.ci[0], c.ci[1])),
            Cell::text(&c.rule),
            Cell::text(c.verdict.as_str()),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_decides_by_where_the_interval_lies() {
        let r = Rule::new(0.1, 0.3);
        assert_eq!(r.decide(0.15, 0.3), Verdict::Agrees);
        assert_eq!(r.decide(-0.1, 0.05), Verdict::Disagrees);
        assert_eq!(r.decide(0.05, 0.2), Verdict::Inconclusive);
        // Above the threshold but too imprecise to count.
        assert_eq!(r.decide(0.11, 0.5), Verdict::Inconclusive);
        assert_eq!(r.decide(f64::NAN, 0.2), Verdict::Inconclusive);
    }

    #[test]
    fn checks_serialise_with_lowercase_kinds_and_verdicts() {
        let c = Check::decided(
            "x",
            CheckKind::Empirical,
            "claim",
            0.2,
            [0.15, 0.25],
            Rule::new(0.1, 0.3),
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["kind"], "empirical");
        assert_eq!(v["verdict"], "agrees");
        assert_eq!(v["ci"][0], 0.15);
        let back: Check = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }
}
