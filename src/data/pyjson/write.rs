//! A JSON writer that matches Python's `json.dumps(obj, ensure_ascii=False)` byte for byte.
//!
//! The reference scripts write their outputs with Python's defaults: `", "` and `": "` separators,
//! raw UTF-8, lower-case `\u00XX` escapes for the other control characters, and floats as Python's
//! `repr` prints them (`1.0`, `0.0625`, `1e-05`). Matching those bytes is what makes `mprm select`
//! a drop-in replacement.

use super::scan::find_stop;

/// Appends `s` as a JSON string literal, escaped as Python does with `ensure_ascii=False`.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        // The bytes Python escapes are exactly the ones that end plain JSON string content.
        let i = find_stop(bytes, start);
        if i == bytes.len() {
            break;
        }
        let b = bytes[i];
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            _ => None,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `x` as Python's `repr(float)` (and hence `json.dumps`) prints it.
///
/// Shortest round-trip digits; fixed notation when the decimal exponent lies in [-4, 16), with a
/// `.0` on integral values; otherwise `d.ddde±XX` with at least two exponent digits. Non-finite
/// values print as Python's `NaN`, `Infinity`, `-Infinity`.
pub fn write_f64(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    // Python's decpt: x = 0.d1d2… × 10^decpt.
    let decpt = exp + 1;
    if negative {
        out.push('-');
    }
    if (-4 < decpt) && (decpt <= 16) {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let decpt = decpt as usize;
            if digits.len() <= decpt {
                out.push_str(&digits);
                for _ in digits.len()..decpt {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..decpt]);
                out.push('.');
                out.push_str(&digits[decpt..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        let abs = e.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        out.push_str(&abs.to_string());
    }
}

/// Python's `repr` of a float, as a new string.
pub fn f64_repr(x: f64) -> String {
    let mut s = String::new();
    write_f64(&mut s, x);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        write_str(&mut out, s);
        out
    }

    #[test]
    fn floats_print_like_python_repr() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.0625, "0.0625"),
            (0.1, "0.1"),
            (0.13611111111111113, "0.13611111111111113"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.0, "123456.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e100, "1.2345e+100"),
            (-2.5, "-2.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (5e-324, "5e-324"),
        ];
        for &(x, want) in cases {
            assert_eq!(f64_repr(x), want, "repr of {x:e}");
        }
    }

    #[test]
    fn k_over_16_values() {
        let want = [
            "0.0", "0.0625", "0.125", "0.1875", "0.25", "0.3125", "0.375", "0.4375", "0.5",
            "0.5625", "0.625", "0.6875", "0.75", "0.8125", "0.875", "0.9375", "1.0",
        ];
        for (k, w) in want.iter().enumerate() {
            assert_eq!(f64_repr(k as f64 / 16.0), *w);
        }
    }

    #[test]
    fn strings_escape_like_python() {
        assert_eq!(esc("plain"), "\"plain\"");
        assert_eq!(esc("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(esc("\n\r\t\u{8}\u{c}"), "\"\\n\\r\\t\\b\\f\"");
        assert_eq!(esc("\u{0}\u{1f}\u{b}"), "\"\\u0000\\u001f\\u000b\"");
        // Not escaped by Python with ensure_ascii=False.
        assert_eq!(
            esc("/\u{7f}\u{2028}\u{2029}é∠"),
            "\"/\u{7f}\u{2028}\u{2029}é∠\""
        );
    }
}
