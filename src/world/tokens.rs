//! The policy's character-level vocabulary and the text layout of a trace.
//!
//! A trace is written `question?step;step;…;#answer` between `<bos>` and `<eos>`, for example
//! `C:17+5*3-4?17+5=22;22*3=66;66-4=62;#62`. The step separator `;` is its own token, `<step>`:
//! the PRM reads the policy's hidden state there, as the paper's PRM reads its `<prm>` token.

use crate::error::{Error, Result};

/// Padding (never predicted, masked out of the loss).
pub const PAD: u32 = 0;
/// Start of a trace.
pub const BOS: u32 = 1;
/// End of a trace.
pub const EOS: u32 = 2;
/// End of a step (`;` in text).
pub const STEP: u32 = 3;

/// Characters with a token of their own, in id order after the four specials.
const CHARS: &str = "0123456789+-*/=()[],:?#xCMEL";

/// Vocabulary size: the specials and [`CHARS`].
pub const VOCAB: usize = 4 + CHARS.len();

/// The step separator in text.
pub const STEP_CHAR: char = ';';

/// The token of `c`.
pub fn token(c: char) -> Option<u32> {
    if c == STEP_CHAR {
        return Some(STEP);
    }
    CHARS.find(c).map(|i| 4 + i as u32)
}

/// `text` as tokens, without `<bos>`/`<eos>`; an error names the first character outside the
/// vocabulary and its position.
pub fn encode(text: &str) -> Result<Vec<u32>> {
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            token(c).ok_or_else(|| {
                Error::invalid(format!(
                    "character {c:?} at position {i} of {text:?} is not in the policy's vocabulary"
                ))
            })
        })
        .collect()
}

/// The text of `tokens`; `<bos>`, `<eos>` and padding are dropped, an id outside the vocabulary
/// is an error.
pub fn decode(tokens: &[u32]) -> Result<String> {
    let mut out = String::with_capacity(tokens.len());
    for &t in tokens {
        match t {
            PAD | BOS | EOS => {}
            STEP => out.push(STEP_CHAR),
            _ => {
                let c = CHARS.chars().nth(t as usize - 4).ok_or_else(|| {
                    Error::invalid(format!("token {t} is outside a vocabulary of {VOCAB}"))
                })?;
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// The full text of a trace: `question?s1;s2;…;#answer`.
pub fn trace_text(question: &str, steps: &[String], answer: i64) -> String {
    let mut t = format!("{question}?");
    for s in steps {
        t.push_str(s);
        t.push(STEP_CHAR);
    }
    t.push('#');
    t.push_str(&answer.to_string());
    t
}

/// The parts of a trace's text: (question, steps, answer). The answer is `None` when the text
/// has no `#` part or it is not an integer; steps are whatever lies between separators.
pub fn split_trace(text: &str) -> Option<(&str, Vec<&str>, Option<i64>)> {
    let (question, rest) = text.split_once('?')?;
    let (body, answer) = match rest.rfind('#') {
        Some(at) => (&rest[..at], rest[at + 1..].parse().ok()),
        None => (rest, None),
    };
    let steps = body.split(STEP_CHAR).filter(|s| !s.is_empty()).collect();
    Some((question, steps, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_round_trips_through_tokens() {
        let steps = vec!["17+5=22".to_string(), "22*3=66".into(), "66-4=-62".into()];
        let text = trace_text("C:17+5*3-4", &steps, -62);
        assert_eq!(text, "C:17+5*3-4?17+5=22;22*3=66;66-4=-62;#-62");
        let ids = encode(&text).unwrap();
        assert_eq!(ids.iter().filter(|&&t| t == STEP).count(), 3);
        assert!(
            ids.iter()
                .all(|&t| (4..VOCAB as u32).contains(&t) || t == STEP)
        );
        let mut framed = vec![BOS];
        framed.extend(&ids);
        framed.extend([EOS, PAD, PAD]);
        assert_eq!(decode(&framed).unwrap(), text);
        let (q, s, a) = split_trace(&text).unwrap();
        assert_eq!(
            (q, s, a),
            (
                "C:17+5*3-4",
                vec!["17+5=22", "22*3=66", "66-4=-62"],
                Some(-62)
            )
        );
    }

    #[test]
    fn fixed_ids_for_the_fixture() {
        // The vocabulary is part of a saved policy's format: these ids must not move.
        assert_eq!(VOCAB, 32);
        assert_eq!(encode("0").unwrap(), [4]);
        assert_eq!(encode("9+=?#x").unwrap(), [13, 14, 18, 25, 26, 27]);
        assert_eq!(encode("CMEL;").unwrap(), [28, 29, 30, 31, STEP]);
    }

    #[test]
    fn bad_characters_and_ids_are_errors_naming_them() {
        let e = encode("17 + 5").unwrap_err().to_string();
        assert!(e.contains("' '") && e.contains("position 2"), "{e}");
        assert!(decode(&[99]).is_err());
        assert_eq!(split_trace("no question mark"), None);
        assert_eq!(split_trace("E:2x+1=5?5-1=4;").unwrap().2, None);
    }
}
