//! The one duration parser of the command line: Go's `time.ParseDuration` syntax (`300ms`,
//! `-1.5h`, `2h45m`), because the tools operators compare against (`hubble observe --since 5m`,
//! `cilium status --wait-duration 5m`) take Go durations, and the same text should mean the same
//! thing here. Values are kept to Go's range (±2562047h47m16.854775807s); anything larger is an
//! error, never a wrapped or saturated value.

use std::time::Duration;

use jiff::SignedDuration;

/// Largest magnitude Go accepts (a negative duration may reach exactly 2^63 ns).
const MAX_MAGNITUDE: u64 = 1 << 63;

/// Why a duration did not parse. Messages are one line and quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {value:?} (expected e.g. 300ms, 1.5h, 2h45m)")]
    Invalid { value: String },
    #[error("missing unit in duration {value:?} (one of ns, us, ms, s, m, h)")]
    MissingUnit { value: String },
    #[error("unknown unit {unit:?} in duration {value:?} (one of ns, us, ms, s, m, h)")]
    UnknownUnit { unit: String, value: String },
    #[error("duration out of range: {value:?} (at most 2562047h47m16.854775807s)")]
    OutOfRange { value: String },
    #[error("negative duration {value:?} is not allowed here")]
    Negative { value: String },
}

/// Nanoseconds per unit, as Go's `unitMap` (both spellings of the micro sign included).
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses a Go `time.ParseDuration` string: an optional sign, then one or more
/// `<decimal><unit>` parts (`1h2m3.5s`, `.5s`, `1.s`, units in any order and repeatable), or a bare
/// `0`. A number without a unit (`10`) is an error, as in Go.
pub fn parse_go_duration(text: &str) -> Result<SignedDuration, DurationError> {
    let invalid = || DurationError::Invalid { value: text.to_string() };
    let out_of_range = || DurationError::OutOfRange { value: text.to_string() };
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let starts_number = rest.as_bytes()[0] == b'.' || rest.as_bytes()[0].is_ascii_digit();
        if !starts_number {
            return Err(invalid());
        }
        let (whole, after_whole) = leading_int(rest).ok_or_else(out_of_range)?;
        let has_whole = after_whole.len() != rest.len();
        rest = after_whole;
        let (mut frac, mut scale, mut has_frac) = (0u64, 1f64, false);
        if let Some(after_dot) = rest.strip_prefix('.') {
            let (f, s, after_frac) = leading_fraction(after_dot);
            has_frac = after_frac.len() != after_dot.len();
            (frac, scale, rest) = (f, s, after_frac);
        }
        if !has_whole && !has_frac {
            return Err(invalid());
        }
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit { value: text.to_string() });
        }
        let (unit, after_unit) = rest.split_at(unit_len);
        rest = after_unit;
        let per_unit = unit_nanos(unit)
            .ok_or_else(|| DurationError::UnknownUnit { unit: unit.to_string(), value: text.to_string() })?;
        let mut part = whole.checked_mul(per_unit).filter(|v| *v <= MAX_MAGNITUDE).ok_or_else(out_of_range)?;
        if frac > 0 {
            // Go scales the fraction in float64 and truncates; doing the same keeps results
            // identical to the nanosecond. The product is below `per_unit`, so the cast is exact
            // in range.
            part = part.checked_add((frac as f64 * (per_unit as f64 / scale)) as u64).ok_or_else(out_of_range)?;
            if part > MAX_MAGNITUDE {
                return Err(out_of_range());
            }
        }
        total = total.checked_add(part).filter(|v| *v <= MAX_MAGNITUDE).ok_or_else(out_of_range)?;
    }
    let nanos = if negative {
        // -2^63 is representable, +2^63 is not.
        0i64.checked_sub_unsigned(total).ok_or_else(out_of_range)?
    } else {
        i64::try_from(total).map_err(|_| out_of_range())?
    };
    Ok(SignedDuration::from_nanos(nanos))
}

/// [`parse_go_duration`] for values that cannot be negative (timeouts, waits).
pub fn parse_non_negative(text: &str) -> Result<Duration, DurationError> {
    let d = parse_go_duration(text)?;
    if d.is_negative() {
        return Err(DurationError::Negative { value: text.to_string() });
    }
    Ok(d.unsigned_abs())
}

/// A duration the way an operator reads it: `45s`, `2m05s`, `1h10m`, `400ms`.
pub fn format_short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 if s.is_multiple_of(60) => format!("{}m", s / 60),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ if s % 3600 / 60 == 0 => format!("{}h", s / 3600),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The leading decimal digits as a number and the rest; `None` when they exceed 2^63.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let end = s.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
    let mut v: u64 = 0;
    for b in s[..end].bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if v > MAX_MAGNITUDE {
            return None;
        }
    }
    Some((v, &s[end..]))
}

/// The leading fraction digits as `(digits, 10^count)` and the rest. Digits beyond what fits are
/// consumed but ignored (they are below a nanosecond of any unit), as Go does.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let end = s.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
    let (mut v, mut scale, mut full) = (0u64, 1f64, false);
    for b in s[..end].bytes() {
        if full {
            continue;
        }
        let next = if v > (MAX_MAGNITUDE - 1) / 10 { None } else { Some(v * 10 + u64::from(b - b'0')) };
        match next {
            Some(next) if next <= MAX_MAGNITUDE => {
                v = next;
                scale *= 10.0;
            }
            _ => full = true,
        }
    }
    (v, scale, &s[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(text: &str) -> Result<i64, DurationError> {
        parse_go_duration(text).map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn short_formats_read_as_an_operator_writes_them() {
        let f = |s: u64| format_short(Duration::from_secs(s));
        assert_eq!(format_short(Duration::from_millis(400)), "400ms");
        assert_eq!((f(45), f(60), f(125), f(900)), ("45s".into(), "1m".into(), "2m05s".into(), "15m".into()));
        assert_eq!((f(3600), f(4200)), ("1h".into(), "1h10m".into()));
    }

    #[test]
    fn go_examples() {
        assert_eq!(ns("300ms"), Ok(300_000_000));
        assert_eq!(ns("-1.5h"), Ok(-5400 * S));
        assert_eq!(ns("2h45m"), Ok((2 * 3600 + 45 * 60) * S));
        assert_eq!(ns("1h2m3.5s"), Ok(3723 * S + S / 2));
        assert_eq!(ns(".5s"), Ok(S / 2));
        assert_eq!(ns("1.s"), Ok(S));
        assert_eq!(ns("0"), Ok(0));
        assert_eq!(ns("-0"), Ok(0));
        assert_eq!(ns("+5s"), Ok(5 * S));
        assert_eq!(ns("1.004s"), Ok(1_004_000_000));
        assert_eq!(ns("1us"), Ok(1_000));
        assert_eq!(ns("1\u{b5}s"), Ok(1_000));
        assert_eq!(ns("1\u{3bc}s"), Ok(1_000));
        assert_eq!(ns("3ns"), Ok(3));
        // Units repeat and come in any order, as in Go.
        assert_eq!(ns("1s1h"), Ok(3601 * S));
        assert_eq!(ns("1m1m"), Ok(120 * S));
        // More fraction digits than a nanosecond holds are ignored.
        assert_eq!(ns("0.1234567891234567891234s"), Ok(123_456_789));
    }

    #[test]
    fn rejects_what_go_rejects() {
        let kind = |t: &str| parse_go_duration(t).map_err(|e| std::mem::discriminant(&e));
        let invalid = Err(std::mem::discriminant(&DurationError::Invalid { value: String::new() }));
        let missing = Err(std::mem::discriminant(&DurationError::MissingUnit { value: String::new() }));
        let unknown =
            Err(std::mem::discriminant(&DurationError::UnknownUnit { unit: String::new(), value: String::new() }));
        for t in ["", "-", "+", ".", ".s", "s", "-.s", " 1s", "--1s"] {
            assert_eq!(kind(t), invalid, "{t:?}");
        }
        for t in ["1", "10", "1h2", "-3.5", "1.2.3s"] {
            assert_eq!(kind(t), missing, "{t:?}");
        }
        // A unit runs to the next digit or dot, so `1s-1s` has the unit `s-`, as in Go.
        for t in ["1x", "5d", "1H", "2 h", "1s ", "1s-1s"] {
            assert_eq!(kind(t), unknown, "{t:?}");
        }
        assert_eq!(
            parse_go_duration("1x").map_err(|e| e.to_string()),
            Err("unknown unit \"x\" in duration \"1x\" (one of ns, us, ms, s, m, h)".to_string())
        );
    }

    #[test]
    fn overflow_is_an_error() {
        let range = |t: &str| matches!(parse_go_duration(t), Err(DurationError::OutOfRange { .. }));
        for t in [
            "99999999999999999999h",
            "9223372036854775807s",
            "9223372036854775808ns",
            "2562048h",
            "2562047h47m16.854775808s",
            "9223372036854775807ns1ns",
            "99999999999999999999999999999999ns",
            "5124095576030431h",
        ] {
            assert!(range(t), "{t:?}: {:?}", parse_go_duration(t));
        }
        assert_eq!(ns("9223372036854775807ns"), Ok(i64::MAX));
        assert_eq!(ns("2562047h47m16.854775807s"), Ok(i64::MAX));
        // The negative side reaches one nanosecond further, as Go's int64.
        assert_eq!(parse_go_duration("-9223372036854775808ns").map(|d| d.as_nanos()), Ok(i128::from(i64::MIN)));
        assert!(parse_go_duration("9223372036854775807s").is_err_and(|e| e.to_string().contains("out of range")));
    }

    #[test]
    fn non_negative() {
        assert_eq!(parse_non_negative("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_non_negative("0"), Ok(Duration::ZERO));
        assert!(matches!(parse_non_negative("-1s"), Err(DurationError::Negative { .. })));
        assert!(matches!(parse_non_negative("90"), Err(DurationError::MissingUnit { .. })));
    }
}
