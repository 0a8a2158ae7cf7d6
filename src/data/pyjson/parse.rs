//! A JSON parser that accepts exactly what Python's `json.loads` accepts.
//!
//! The reference selection script skips every line `json.loads` rejects and ranks every line it
//! accepts, so "valid" must mean the same thing here: the `NaN`/`Infinity`/`-Infinity` literals
//! are numbers, control characters inside strings are errors, duplicate keys keep the last value,
//! and integers stay exact (they are converted to floats only when a score asks for it).
//!
//! The parser borrows from the line: strings are kept in their escaped form and decoded only when
//! a caller needs the text, which keeps the ranking pass (scores only) allocation-light.

use std::borrow::Cow;
use std::fmt;

/// Nesting deeper than this is rejected rather than risking the stack.
const MAX_DEPTH: usize = 512;

/// A parsed JSON value borrowing from its source text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer literal, kept as text (Python integers are unbounded).
    Int(&'a str),
    /// A literal with a fraction or exponent, or one of `NaN`, `Infinity`, `-Infinity`.
    Float(f64),
    /// A string, still escaped.
    Str(RawStr<'a>),
    /// An array.
    Array(Vec<Value<'a>>),
    /// An object; keys in source order, duplicates kept (lookups take the last).
    Object(Vec<(RawStr<'a>, Value<'a>)>),
}

/// A JSON string literal's contents between the quotes, escapes not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawStr<'a> {
    raw: &'a str,
    escaped: bool,
}

/// Why a line is not valid JSON (Python's `json.JSONDecodeError`, roughly).
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// Byte offset in the parsed text.
    pub at: usize,
    /// What was expected or found.
    pub what: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON: {} at byte {}", self.what, self.at)
    }
}

/// A string escape that Python accepts but Rust strings cannot hold.
#[derive(Debug, Clone, PartialEq)]
pub struct LoneSurrogate;

impl<'a> RawStr<'a> {
    /// The decoded text. Fails only on a `\uD8xx`-style escape without its pair, which Python
    /// keeps as a lone surrogate and then cannot encode as UTF-8 when writing.
    pub fn decode(&self) -> Result<Cow<'a, str>, LoneSurrogate> {
        if !self.escaped {
            return Ok(Cow::Borrowed(self.raw));
        }
        let mut out = String::with_capacity(self.raw.len());
        let b = self.raw.as_bytes();
        let mut i = 0;
        let mut start = 0;
        while i < b.len() {
            if b[i] != b'\\' {
                i += 1;
                continue;
            }
            out.push_str(&self.raw[start..i]);
            let c = b[i + 1];
            i += 2;
            match c {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let hi = hex4(&b[i..i + 4]).expect("validated by the parser");
                    i += 4;
                    let code = if (0xD800..0xDC00).contains(&hi) {
                        let lo = (b.len() >= i + 6 && b[i] == b'\\' && b[i + 1] == b'u')
                            .then(|| hex4(&b[i + 2..i + 6]))
                            .flatten()
                            .filter(|lo| (0xDC00..0xE000).contains(lo));
                        match lo {
                            Some(lo) => {
                                i += 6;
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            }
                            None => return Err(LoneSurrogate),
                        }
                    } else {
                        hi
                    };
                    out.push(char::from_u32(code).ok_or(LoneSurrogate)?);
                }
                _ => unreachable!("validated by the parser"),
            }
            start = i;
        }
        out.push_str(&self.raw[start..]);
        Ok(Cow::Owned(out))
    }

    /// Compares the decoded text with `key` without allocating in the common case.
    pub fn eq_str(&self, key: &str) -> bool {
        if !self.escaped {
            self.raw == key
        } else {
            self.decode().map(|d| d == key).unwrap_or(false)
        }
    }

    /// The escaped form, as it appears between the quotes.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// True when the decoded text is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    if b.len() < 4 {
        return None;
    }
    let mut v = 0u32;
    for &c in &b[..4] {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

impl<'a> Value<'a> {
    /// Looks up `key` in an object (the last occurrence wins, as in a Python dict).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| k.eq_str(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Python truthiness: `null`, `false`, `0`, `0.0`, `""`, `[]`, `{}` are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(t) => t.bytes().any(|c| c.is_ascii_digit() && c != b'0'),
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        }
    }

    /// A short name of the JSON type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        }
    }
}

/// Parses one JSON document (surrounding JSON whitespace allowed, nothing else).
pub fn parse(text: &str) -> Result<Value<'_>, ParseError> {
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
    };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.i != p.b.len() {
        return Err(p.err("extra data after the value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Bytes that end a run of plain string content.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> ParseError {
        ParseError { at: self.i, what }
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn literal(&mut self, word: &str) -> bool {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        let Some(&c) = self.b.get(self.i) else {
            return Err(self.err("expecting a value"));
        };
        match c {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => Ok(Value::Str(self.string()?)),
            b'n' if self.literal("null") => Ok(Value::Null),
            b't' if self.literal("true") => Ok(Value::Bool(true)),
            b'f' if self.literal("false") => Ok(Value::Bool(false)),
            b'N' if self.literal("NaN") => Ok(Value::Float(f64::NAN)),
            b'I' if self.literal("Infinity") => Ok(Value::Float(f64::INFINITY)),
            b'-' if self.b[self.i..].starts_with(b"-Infinity") => {
                self.i += "-Infinity".len();
                Ok(Value::Float(f64::NEG_INFINITY))
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.err("expecting a value")),
        }
    }

    fn number(&mut self) -> Result<Value<'a>, ParseError> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return Err(self.err("expecting a digit")),
        }
        let mut is_float = false;
        // Python's number pattern takes a fraction or exponent only when digits follow; otherwise
        // the dangling `.` or `e` is "extra data", which the caller reports.
        if self.b.get(self.i) == Some(&b'.') && matches!(self.b.get(self.i + 1), Some(b'0'..=b'9'))
        {
            is_float = true;
            self.i += 1;
            while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            let mut j = self.i + 1;
            if matches!(self.b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if matches!(self.b.get(j), Some(b'0'..=b'9')) {
                is_float = true;
                self.i = j;
                while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
        }
        let text = &self.s[start..self.i];
        if is_float {
            Ok(Value::Float(text.parse().expect("validated float literal")))
        } else {
            Ok(Value::Int(text))
        }
    }

    fn string(&mut self) -> Result<RawStr<'a>, ParseError> {
        self.i += 1; // opening quote
        let start = self.i;
        let mut escaped = false;
        loop {
            while self.i < self.b.len() && !STRING_STOP[self.b[self.i] as usize] {
                self.i += 1;
            }
            match self.b.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    let raw = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(RawStr { raw, escaped });
                }
                Some(b'\\') => {
                    escaped = true;
                    match self.b.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            if hex4(&self.b[(self.i + 2).min(self.b.len())..]).is_none() {
                                return Err(self.err("invalid \\uXXXX escape"));
                            }
                            self.i += 6;
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                Some(_) => return Err(self.err("invalid control character in string")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expecting ',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        self.i += 1;
        let mut entries = Vec::new();
        self.skip_ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Value::Object(entries));
        }
        loop {
            self.skip_ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.err("expecting a property name in double quotes"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(self.err("expecting ':'"));
            }
            self.i += 1;
            self.skip_ws();
            let v = self.value(depth + 1)?;
            entries.push((key, v));
            self.skip_ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(entries));
                }
                _ => return Err(self.err("expecting ',' or '}'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Value<'_> {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn accepts_what_python_accepts() {
        assert_eq!(ok(" 12 "), Value::Int("12"));
        assert_eq!(ok("-0"), Value::Int("-0"));
        assert_eq!(ok("1.5e3"), Value::Float(1500.0));
        assert_eq!(ok("1E-2"), Value::Float(0.01));
        assert!(matches!(ok("NaN"), Value::Float(f) if f.is_nan()));
        assert_eq!(ok("-Infinity"), Value::Float(f64::NEG_INFINITY));
        assert_eq!(ok("1e400"), Value::Float(f64::INFINITY));
        assert_eq!(ok("[]"), Value::Array(vec![]));
        assert_eq!(
            ok(r#"{"a": [1, {"b": null}], "c": true}"#).get("c"),
            Some(&Value::Bool(true))
        );
        let Value::Str(escaped) = ok(r#""a\u00e9\ud83d\ude00\/""#) else {
            panic!()
        };
        assert_eq!(escaped.decode().unwrap(), "aé😀/");
    }

    #[test]
    fn rejects_what_python_rejects() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            ".5",
            "-",
            "+1",
            "1e",
            "nan",
            "Inf",
            "'a'",
            "\"a\tb\"",
            "\"\\x\"",
            "\"\\u12\"",
            "{a: 1}",
            "[1] x",
            "\u{feff}{}",
            "tru",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let v = ok(r#"{"score": 1, "score": 0.5}"#);
        assert_eq!(v.get("score"), Some(&Value::Float(0.5)));
        let v = ok(r#"{"sc\u006fre": 2}"#);
        assert_eq!(v.get("score"), Some(&Value::Int("2")));
    }

    #[test]
    fn lone_surrogates_parse_but_do_not_decode() {
        let v = ok(r#""a\ud800b""#);
        let Value::Str(s) = v else { panic!() };
        assert_eq!(s.decode(), Err(LoneSurrogate));
    }

    #[test]
    fn python_truthiness() {
        for (s, t) in [
            ("0", false),
            ("-0", false),
            ("0.0", false),
            ("\"\"", false),
            ("[]", false),
            ("{}", false),
            ("null", false),
            ("false", false),
            ("10", true),
            ("NaN", true),
            ("\" \"", true),
            ("[0]", true),
        ] {
            assert_eq!(ok(s).truthy(), t, "{s}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = "[".repeat(100_000);
        assert!(parse(&s).is_err());
    }
}
