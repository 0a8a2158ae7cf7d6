//! The VisualPRM400K-v1.1 raw annotation layout: one JSON object per line, one file per source.

use crate::data::pyjson::write::{write_f64, write_str};
use crate::data::rollout::Rollout;

/// Appends `rollout` as one raw annotation line (no newline), in the generator's key order and
/// with Python's `json.dumps` spacing, so synthetic corpora look like the real files.
pub fn write_raw_line(out: &mut String, rollout: &Rollout) {
    out.push('{');
    let mut first = true;
    let mut key = |out: &mut String, k: &str| {
        if !first {
            out.push_str(", ");
        }
        first = false;
        write_str(out, k);
        out.push_str(": ");
    };
    for (k, v) in [
        ("image", &rollout.image),
        ("question", &rollout.question),
        ("question_orig", &rollout.question_orig),
        ("answer", &rollout.answer),
        ("response", &rollout.response),
    ] {
        if let Some(v) = v {
            key(out, k);
            write_str(out, v);
        }
    }
    key(out, "steps_with_score");
    out.push('[');
    for (i, s) in rollout.steps.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str("{\"step\": ");
        write_str(out, &s.text);
        out.push_str(", \"score\": ");
        write_f64(out, s.score);
        out.push_str(&format!(
            ", \"num_mc_correct\": {}, \"num_mc_total\": {}}}",
            s.num_mc_correct, s.num_mc_total
        ));
    }
    out.push(']');
    key(out, "num_mc_sequences");
    out.push_str(&rollout.num_mc_sequences.to_string());
    out.push('}');
}
