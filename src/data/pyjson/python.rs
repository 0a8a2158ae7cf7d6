//! Python built-ins the reference scripts lean on: `str.strip()`, `float()`, `str()`, and
//! `json.dumps` of a parsed value.
//!
//! Each differs from the obvious Rust equivalent in ways that change bytes or rankings: `strip`
//! also removes U+001C–U+001F, `float` accepts `" 0.5 "`, `"1_0"` and `true`, `str(1e-05)` has
//! an exponent, and a dict keeps a duplicated key at its first position with its last value.

use std::borrow::Cow;

use super::parse::{LoneSurrogate, RawStr, Value};
use super::write::{write_f64, write_str};

/// Python's `str.isspace()` set, which `str.strip()` removes.
pub fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{d}'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `s.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Why `float(value)` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatError {
    /// `TypeError` or `ValueError`: not a number and not a numeric string.
    NotNumeric,
    /// `OverflowError`: an integer too large for a double.
    Overflow,
    /// A string with an escape Python keeps but cannot use (a lone surrogate).
    BadString,
}

/// Python's `float(v)` for a value that came out of `json.loads`.
pub fn py_float(v: &Value<'_>) -> Result<f64, FloatError> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::Int(text) => {
            let f: f64 = text.parse().map_err(|_| FloatError::NotNumeric)?;
            if f.is_finite() {
                Ok(f)
            } else {
                Err(FloatError::Overflow)
            }
        }
        Value::Str(s) => {
            let text = s.decode().map_err(|_| FloatError::BadString)?;
            py_float_str(&text).ok_or(FloatError::NotNumeric)
        }
        Value::Null | Value::Array(_) | Value::Object(_) => Err(FloatError::NotNumeric),
    }
}

/// Python's `float(s)` for a string: surrounding whitespace, a sign, `inf`/`infinity`/`nan` in any
/// case, and single underscores between digits are allowed.
pub fn py_float_str(s: &str) -> Option<f64> {
    let t = py_strip(s);
    if !t.is_ascii() || t.is_empty() {
        return None;
    }
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        let v = if lower == "nan" {
            f64::NAN
        } else {
            f64::INFINITY
        };
        return Some(if t.starts_with('-') { -v } else { v });
    }
    let b = body.as_bytes();
    // Every character must be part of a decimal literal; `_` only between two digits.
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-' => {}
            b'_' => {
                let digit = |j: Option<&u8>| matches!(j, Some(b'0'..=b'9'));
                if i == 0 || !digit(b.get(i - 1)) || !digit(b.get(i + 1)) {
                    return None;
                }
            }
            _ => return None,
        }
    }
    let cleaned: Cow<str> = if t.contains('_') {
        Cow::Owned(t.replace('_', ""))
    } else {
        Cow::Borrowed(t)
    };
    if !cleaned.bytes().any(|c| c.is_ascii_digit()) {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

/// Python's `str(v)` for the scalar values a question field can hold; `None` for lists and
/// objects (whose Python repr mprm does not reproduce).
pub fn py_str<'a>(v: &Value<'a>) -> Option<Result<Cow<'a, str>, LoneSurrogate>> {
    Some(Ok(match v {
        Value::Str(s) => return Some(s.decode()),
        Value::Null => Cow::Borrowed("None"),
        Value::Bool(true) => Cow::Borrowed("True"),
        Value::Bool(false) => Cow::Borrowed("False"),
        Value::Int(t) => Cow::Owned(py_int_repr(t).into_owned()),
        Value::Float(f) if f.is_nan() => Cow::Borrowed("nan"),
        Value::Float(f) if f.is_infinite() => Cow::Borrowed(if *f > 0.0 { "inf" } else { "-inf" }),
        Value::Float(f) => {
            let mut s = String::new();
            write_f64(&mut s, *f);
            Cow::Owned(s)
        }
        Value::Array(_) | Value::Object(_) => return None,
    }))
}

fn py_int_repr(text: &str) -> Cow<'_, str> {
    if text == "-0" {
        Cow::Borrowed("0")
    } else {
        Cow::Borrowed(text)
    }
}

/// Appends `json.dumps(v, ensure_ascii=False)` of a value that came out of `json.loads`.
pub fn write_value(out: &mut String, v: &Value<'_>) -> Result<(), LoneSurrogate> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(t) => out.push_str(&py_int_repr(t)),
        Value::Float(f) => write_f64(out, *f),
        Value::Str(s) => write_raw_str(out, s)?,
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(entries) => {
            out.push('{');
            let mut first = true;
            for (i, (key, _)) in entries.iter().enumerate() {
                let name = key.decode()?;
                // A dict keeps a repeated key at its first position, with its last value.
                if entries[..i]
                    .iter()
                    .any(|(k, _)| k.decode().map(|k| k == name).unwrap_or(false))
                {
                    continue;
                }
                let value = &entries[i..]
                    .iter()
                    .rev()
                    .find(|(k, _)| k.decode().map(|k| k == name).unwrap_or(false))
                    .expect("the key itself matches")
                    .1;
                if !first {
                    out.push_str(", ");
                }
                first = false;
                write_str(out, &name);
                out.push_str(": ");
                write_value(out, value)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_raw_str(out: &mut String, s: &RawStr<'_>) -> Result<(), LoneSurrogate> {
    write_str(out, &s.decode()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    #[test]
    fn strip_uses_the_python_whitespace_set() {
        assert_eq!(py_strip("\u{1c}\u{1f} a b \u{3000}\u{85}"), "a b");
        assert_eq!(py_strip("\u{feff}x"), "\u{feff}x");
        assert_eq!(py_strip("\u{200b}x"), "\u{200b}x");
    }

    #[test]
    fn float_conversion_matches_python() {
        let f = |s: &str| py_float(&parse(s).unwrap());
        assert_eq!(f("0.5"), Ok(0.5));
        assert_eq!(f("1"), Ok(1.0));
        assert_eq!(f("true"), Ok(1.0));
        assert_eq!(f("false"), Ok(0.0));
        assert_eq!(f("\" 0.5 \""), Ok(0.5));
        assert_eq!(f("\"1_0\""), Ok(10.0));
        assert_eq!(f("\"-inf\""), Ok(f64::NEG_INFINITY));
        assert!(f("\"NaN\"").unwrap().is_nan());
        assert_eq!(f("\"1__0\""), Err(FloatError::NotNumeric));
        assert_eq!(f("\"_1\""), Err(FloatError::NotNumeric));
        assert_eq!(f("\"abc\""), Err(FloatError::NotNumeric));
        assert_eq!(f("\"\""), Err(FloatError::NotNumeric));
        assert_eq!(f("[1]"), Err(FloatError::NotNumeric));
        assert_eq!(f("{}"), Err(FloatError::NotNumeric));
        assert_eq!(
            f(&format!("1{}", "0".repeat(400))),
            Err(FloatError::Overflow)
        );
    }

    #[test]
    fn dumps_reproduces_python() {
        let cases = [
            (
                r#"{"a": 1, "b": [1.0, 2.5e-5, -0, "x\u00e9"], "a": 2}"#,
                r#"{"a": 2, "b": [1.0, 2.5e-05, 0, "xé"]}"#,
            ),
            (
                r#"[NaN, Infinity, true, null]"#,
                r#"[NaN, Infinity, true, null]"#,
            ),
            (r#"{"k":{"n":1e2}}"#, r#"{"k": {"n": 100.0}}"#),
        ];
        for (input, want) in cases {
            let mut out = String::new();
            write_value(&mut out, &parse(input).unwrap()).unwrap();
            assert_eq!(out, want);
        }
    }

    #[test]
    fn str_of_scalars() {
        let s = |t: &str| py_str(&parse(t).unwrap()).map(|r| r.unwrap().into_owned());
        assert_eq!(s("12"), Some("12".into()));
        assert_eq!(s("1e-5"), Some("1e-05".into()));
        assert_eq!(s("true"), Some("True".into()));
        assert_eq!(s("[1]"), None);
    }
}
