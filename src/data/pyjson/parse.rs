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

use super::scan::find_stop;

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

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> ParseError {
        ParseError { at: self.i, what }
    }

    #[inline]
    fn skip_ws(&mut self) {
        let mut i = self.i;
        while i < self.b.len() && matches!(self.b[i], b' ' | b'\n' | b'\r' | b'\t') {
            i += 1;
        }
        self.i = i;
    }

    fn literal(&mut self, word: &str) -> bool {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// Parses one value into a tree.
    fn value(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        match self.peek_container(depth)? {
            Some(b'{') => {
                let mut entries = Vec::new();
                self.object_entries(|p, key| {
                    entries.push((key, p.value(depth + 1)?));
                    Ok(())
                })?;
                Ok(Value::Object(entries))
            }
            Some(_) => {
                let mut items = Vec::new();
                self.array_items(|p| {
                    items.push(p.value(depth + 1)?);
                    Ok(())
                })?;
                Ok(Value::Array(items))
            }
            None => self.scalar(),
        }
    }

    /// Validates and steps over one value without building anything.
    fn skip(&mut self, depth: usize) -> Result<(), ParseError> {
        match self.peek_container(depth)? {
            Some(b'{') => self.object_entries(|p, _| p.skip(depth + 1)),
            Some(_) => self.array_items(|p| p.skip(depth + 1)),
            None => self.skip_scalar(),
        }
    }

    /// Like [`Parser::scalar`] but without converting numbers.
    fn skip_scalar(&mut self) -> Result<(), ParseError> {
        match self.b[self.i] {
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' if !self.b[self.i..].starts_with(b"-Infinity") => {
                self.number_span().map(|_| ())
            }
            _ => self.scalar().map(|_| ()),
        }
    }

    /// `Some(b'{' | b'[')` at a container (checking the depth limit), `None` at a scalar.
    fn peek_container(&self, depth: usize) -> Result<Option<u8>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.b.get(self.i) {
            None => Err(self.err("expecting a value")),
            Some(&c @ (b'{' | b'[')) => Ok(Some(c)),
            Some(_) => Ok(None),
        }
    }

    /// A string, number, literal, or one of Python's non-finite literals.
    fn scalar(&mut self) -> Result<Value<'a>, ParseError> {
        let c = self.b[self.i];
        match c {
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
        let (text, is_float) = self.number_span()?;
        if is_float {
            Ok(Value::Float(text.parse().expect("validated float literal")))
        } else {
            Ok(Value::Int(text))
        }
    }

    /// Validates a number literal; returns its text and whether it has a fraction or exponent.
    fn number_span(&mut self) -> Result<(&'a str, bool), ParseError> {
        // A local cursor keeps the digit loops in registers.
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let digits = |mut i: usize| {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            i
        };
        if b[i] == b'-' {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i + 1),
            _ => {
                self.i = i;
                return Err(self.err("expecting a digit"));
            }
        }
        let mut is_float = false;
        // Python's number pattern takes a fraction or exponent only when digits follow; otherwise
        // the dangling `.` or `e` is "extra data", which the caller reports.
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            is_float = true;
            i = digits(i + 1);
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if b.get(j).is_some_and(u8::is_ascii_digit) {
                is_float = true;
                i = digits(j);
            }
        }
        self.i = i;
        Ok((&self.s[start..i], is_float))
    }

    fn string(&mut self) -> Result<RawStr<'a>, ParseError> {
        self.i += 1; // opening quote
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i = find_stop(self.b, self.i);
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

    /// `[ item, item, … ]`: the punctuation is checked here, each item by `item`.
    fn array_items(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), ParseError>,
    ) -> Result<(), ParseError> {
        self.i += 1;
        self.skip_ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            item(self)?;
            self.skip_ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expecting ',' or ']'")),
            }
        }
    }

    /// `{ "key": value, … }`: the punctuation and keys are checked here, each value by `entry`.
    fn object_entries(
        &mut self,
        mut entry: impl FnMut(&mut Self, RawStr<'a>) -> Result<(), ParseError>,
    ) -> Result<(), ParseError> {
        self.i += 1;
        self.skip_ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(());
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
            entry(self, key)?;
            self.skip_ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expecting ',' or '}'")),
            }
        }
    }
}

/// How [`skim_record`] found `record[array_key]`.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordShape {
    /// The document is valid JSON but not an object; the payload names its type.
    NotAnObject(&'static str),
    /// `array_key` is absent or falsy (Python reads it as an empty list).
    Empty,
    /// `array_key` holds a truthy non-list; the payload names its type.
    NotAList(&'static str),
    /// An element of the list is not an object; the payload names its type.
    ItemNotAnObject(&'static str),
    /// A list of objects; `items` got one entry per element.
    Items,
}

/// Validates `text` as one JSON document by Python's rules and extracts
/// `record[array_key][i][item_key]` for every i, without building a tree.
///
/// `items` receives, per element, the last `item_key` value when it is a scalar, `None` when the
/// key is absent, and an empty array as a stand-in when the value is a list or an object. As in a
/// Python dict, the last occurrence of a repeated key wins. This is the ranking pass's hot path:
/// every long string is scanned exactly once and nothing is allocated but the output.
pub fn skim_record<'a>(
    text: &'a str,
    array_key: &str,
    item_key: &str,
    items: &mut Vec<Option<Value<'a>>>,
) -> Result<RecordShape, ParseError> {
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
    };
    p.skip_ws();
    let shape = if p.peek_container(0)? == Some(b'{') {
        let mut shape = RecordShape::Empty;
        p.object_entries(|p, key| {
            if !key.eq_str(array_key) {
                return p.skip(1);
            }
            items.clear();
            shape = if p.b.get(p.i) == Some(&b'[') {
                let mut bad_item = None;
                p.array_items(|p| {
                    if p.b.get(p.i) != Some(&b'{') {
                        let v = p.value(2)?;
                        bad_item.get_or_insert(v.type_name());
                        return Ok(());
                    }
                    let mut found = None;
                    p.object_entries(|p, k| {
                        if !k.eq_str(item_key) {
                            return p.skip(3);
                        }
                        found = Some(match p.peek_container(3)? {
                            Some(_) => {
                                p.skip(3)?;
                                Value::Array(Vec::new())
                            }
                            None => p.scalar()?,
                        });
                        Ok(())
                    })?;
                    items.push(found);
                    Ok(())
                })?;
                match bad_item {
                    Some(t) => RecordShape::ItemNotAnObject(t),
                    None if items.is_empty() => RecordShape::Empty,
                    None => RecordShape::Items,
                }
            } else {
                let v = p.value(1)?;
                if v.truthy() {
                    RecordShape::NotAList(v.type_name())
                } else {
                    RecordShape::Empty
                }
            };
            Ok(())
        })?;
        if shape != RecordShape::Items {
            items.clear();
        }
        shape
    } else {
        RecordShape::NotAnObject(p.value(0)?.type_name())
    };
    p.skip_ws();
    if p.i != p.b.len() {
        return Err(p.err("extra data after the value"));
    }
    Ok(shape)
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
