//! Time handling for Hubble: allocation-free printing of `google.protobuf.Timestamp` in the
//! layouts `hubble observe --time-format` offers (Go layouts, always UTC), and parsing of
//! `--since`/`--until` values (RFC 3339 and friends, or a Go duration such as `5m` = that long ago).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pbjson_types::Timestamp;

use super::buf::TextBuf;

/// Month abbreviations (Go `Jan`).
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/// Weekday abbreviations starting on Thursday (1970-01-01 was a Thursday).
const WEEKDAYS_FROM_THU: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Smallest and largest seconds Go's `timestamppb.IsValid` accepts (years 1–9999).
const MIN_VALID_SECONDS: i64 = -62_135_596_800;
const MAX_VALID_SECONDS: i64 = 253_402_300_799;

/// `--time-format` layouts of `hubble observe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// `Jan _2 15:04:05`
    Stamp,
    /// `Jan _2 15:04:05.000` (hubble's default)
    #[default]
    StampMilli,
    /// `Jan _2 15:04:05.000000`
    StampMicro,
    /// `Jan _2 15:04:05.000000000`
    StampNano,
    /// `2006-01-02T15:04:05Z07:00`
    Rfc3339,
    /// `2006-01-02T15:04:05.000Z07:00`
    Rfc3339Milli,
    /// `2006-01-02T15:04:05.000000Z07:00`
    Rfc3339Micro,
    /// `2006-01-02T15:04:05.999999999Z07:00` (trailing zeros trimmed)
    Rfc3339Nano,
    /// `Mon, 02 Jan 2006 15:04:05 -0700`
    Rfc1123Z,
}

impl TimeFormat {
    /// Names accepted by `--time-format`.
    pub const NAMES: &'static [&'static str] = &[
        "StampMilli",
        "Stamp",
        "StampMicro",
        "StampNano",
        "RFC3339",
        "RFC3339Milli",
        "RFC3339Micro",
        "RFC3339Nano",
        "RFC1123Z",
    ];

    /// Parses a `--time-format` name (case-insensitive).
    pub fn from_name(name: &str) -> Option<TimeFormat> {
        let n = name.to_ascii_lowercase();
        Some(match n.as_str() {
            "stamp" => TimeFormat::Stamp,
            "stampmilli" => TimeFormat::StampMilli,
            "stampmicro" => TimeFormat::StampMicro,
            "stampnano" => TimeFormat::StampNano,
            "rfc3339" => TimeFormat::Rfc3339,
            "rfc3339milli" => TimeFormat::Rfc3339Milli,
            "rfc3339micro" => TimeFormat::Rfc3339Micro,
            "rfc3339nano" => TimeFormat::Rfc3339Nano,
            "rfc1123z" => TimeFormat::Rfc1123Z,
            _ => return None,
        })
    }

    /// Writes `ts` in this layout (UTC), or `N/A` when it is absent or out of range (as hubble).
    pub fn write<B: TextBuf + ?Sized>(self, out: &mut B, ts: Option<&Timestamp>) {
        let Some(ts) = ts.filter(|t| is_valid(t)) else {
            out.push_str("N/A");
            return;
        };
        let c = Civil::from_unix(ts.seconds);
        let nanos = u32::try_from(ts.nanos).unwrap_or(0);
        match self {
            TimeFormat::Stamp | TimeFormat::StampMilli | TimeFormat::StampMicro | TimeFormat::StampNano => {
                out.push_str(MONTHS[usize::from(c.month - 1)]);
                out.push_byte(b' ');
                if c.day < 10 {
                    out.push_byte(b' ');
                }
                push_uint(out, u64::from(c.day));
                out.push_byte(b' ');
                push_hms(out, &c);
                match self {
                    TimeFormat::StampMilli => push_frac(out, nanos, 3),
                    TimeFormat::StampMicro => push_frac(out, nanos, 6),
                    TimeFormat::StampNano => push_frac(out, nanos, 9),
                    _ => {}
                }
            }
            TimeFormat::Rfc3339 | TimeFormat::Rfc3339Milli | TimeFormat::Rfc3339Micro | TimeFormat::Rfc3339Nano => {
                push_date(out, &c);
                out.push_byte(b'T');
                push_hms(out, &c);
                match self {
                    TimeFormat::Rfc3339Milli => push_frac(out, nanos, 3),
                    TimeFormat::Rfc3339Micro => push_frac(out, nanos, 6),
                    TimeFormat::Rfc3339Nano => push_frac_trimmed(out, nanos),
                    _ => {}
                }
                out.push_byte(b'Z');
            }
            TimeFormat::Rfc1123Z => {
                out.push_str(WEEKDAYS_FROM_THU[usize::from(c.weekday_from_thu)]);
                out.push_str(", ");
                push_pad(out, u64::from(c.day), 2);
                out.push_byte(b' ');
                out.push_str(MONTHS[usize::from(c.month - 1)]);
                out.push_byte(b' ');
                push_pad(out, u64::try_from(c.year).unwrap_or(0), 4);
                out.push_byte(b' ');
                push_hms(out, &c);
                out.push_str(" +0000");
            }
        }
    }
}

/// Whether Go's `timestamppb.IsValid` would accept `ts`.
pub fn is_valid(ts: &Timestamp) -> bool {
    (MIN_VALID_SECONDS..=MAX_VALID_SECONDS).contains(&ts.seconds) && (0..1_000_000_000).contains(&ts.nanos)
}

/// A UTC calendar date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    weekday_from_thu: u8,
}

impl Civil {
    /// Converts Unix seconds to a UTC civil time (days-from-civil inverse, proleptic Gregorian).
    fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // All values below are range-bounded by construction.
        let small = |v: i64| u8::try_from(v).unwrap_or(0);
        Civil {
            year,
            month: small(month),
            day: small(day),
            hour: small(sod / 3600),
            minute: small(sod % 3600 / 60),
            second: small(sod % 60),
            weekday_from_thu: small(days.rem_euclid(7)),
        }
    }
}

fn push_date<B: TextBuf + ?Sized>(out: &mut B, c: &Civil) {
    push_pad(out, u64::try_from(c.year).unwrap_or(0), 4);
    out.push_byte(b'-');
    push_pad(out, u64::from(c.month), 2);
    out.push_byte(b'-');
    push_pad(out, u64::from(c.day), 2);
}

fn push_hms<B: TextBuf + ?Sized>(out: &mut B, c: &Civil) {
    push_pad(out, u64::from(c.hour), 2);
    out.push_byte(b':');
    push_pad(out, u64::from(c.minute), 2);
    out.push_byte(b':');
    push_pad(out, u64::from(c.second), 2);
}

/// `.` and the first `digits` digits of the fraction.
fn push_frac<B: TextBuf + ?Sized>(out: &mut B, nanos: u32, digits: u32) {
    out.push_byte(b'.');
    let v = nanos / 10u32.pow(9 - digits);
    push_pad(out, u64::from(v), digits as usize);
}

/// Go's `.999999999`: the fraction without trailing zeros, nothing when zero.
fn push_frac_trimmed<B: TextBuf + ?Sized>(out: &mut B, nanos: u32) {
    if nanos == 0 {
        return;
    }
    let mut v = nanos;
    let mut digits = 9usize;
    while v.is_multiple_of(10) {
        v /= 10;
        digits -= 1;
    }
    out.push_byte(b'.');
    push_pad(out, u64::from(v), digits);
}

/// Writes `v` in decimal without allocating.
pub fn push_uint<B: TextBuf + ?Sized>(out: &mut B, v: u64) {
    push_pad(out, v, 1);
}

/// Writes `v` in decimal, left-padded with zeros to `width` digits.
pub fn push_pad<B: TextBuf + ?Sized>(out: &mut B, mut v: u64, width: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = tmp.len() - i;
    for _ in len..width {
        out.push_byte(b'0');
    }
    out.push_ascii(&tmp[i..]);
}

/// Writes a signed integer in decimal.
pub fn push_int<B: TextBuf + ?Sized>(out: &mut B, v: i64) {
    if v < 0 {
        out.push_byte(b'-');
    }
    push_uint(out, v.unsigned_abs());
}

/// Errors parsing `--since` / `--until`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid time {value:?}: expected RFC 3339 (2024-05-04T13:23:40Z), a date (2024-05-04) or a duration ago (5m, 1h30m)"
)]
pub struct TimeParseError {
    pub value: String,
}

/// Parses a `--since`/`--until` value like `hubble observe`: a Go duration means that long before
/// `now`; otherwise RFC 3339 (with or without fraction), `2006-01-02T15:04:05`, `2006-01-02T15:04`
/// or `2006-01-02` (the last three in UTC).
pub fn parse_time_arg(value: &str, now: SystemTime) -> Result<Timestamp, TimeParseError> {
    let err = || TimeParseError { value: value.to_string() };
    let v = value.trim();
    if v.is_empty() {
        return Err(err());
    }
    if let Some(ago) = parse_go_duration(v) {
        let (neg, d) = ago;
        let t = if neg { now.checked_add(d) } else { now.checked_sub(d) }.ok_or_else(err)?;
        return Ok(system_time_to_timestamp(t));
    }
    if let Ok(ts) = v.parse::<jiff::Timestamp>() {
        return Ok(Timestamp { seconds: ts.as_second(), nanos: ts.subsec_nanosecond() });
    }
    let utc = |dt: jiff::civil::DateTime| -> Result<Timestamp, TimeParseError> {
        let z = dt.to_zoned(jiff::tz::TimeZone::UTC).map_err(|_| err())?;
        let ts = z.timestamp();
        Ok(Timestamp { seconds: ts.as_second(), nanos: ts.subsec_nanosecond() })
    };
    if v.contains('T') {
        if let Ok(dt) = v.parse::<jiff::civil::DateTime>() {
            return utc(dt);
        }
    } else if v.len() == 10
        && let Ok(d) = v.parse::<jiff::civil::Date>()
    {
        return utc(d.to_datetime(jiff::civil::Time::midnight()));
    }
    Err(err())
}

/// Parses a Go `time.ParseDuration` string (`300ms`, `-1.5h`, `2h45m`); `(negative, magnitude)`.
pub fn parse_go_duration(s: &str) -> Option<(bool, Duration)> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some((false, Duration::ZERO));
    }
    if rest.is_empty() {
        return None;
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total_nanos += value * scale;
    }
    if !total_nanos.is_finite() || total_nanos > 9.2e18 {
        return None;
    }
    Some((neg, Duration::from_nanos(total_nanos as u64)))
}

/// Converts a `SystemTime` to a protobuf Timestamp.
pub fn system_time_to_timestamp(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp { seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX), nanos: d.subsec_nanos() as i32 },
        Err(e) => {
            let d = e.duration();
            let mut seconds = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let mut nanos = d.subsec_nanos() as i32;
            if nanos > 0 {
                seconds -= 1;
                nanos = 1_000_000_000 - nanos;
            }
            Timestamp { seconds, nanos }
        }
    }
}

/// A Timestamp as nanoseconds since the epoch (saturating), for ordering and arithmetic.
pub fn timestamp_nanos(ts: &Timestamp) -> i128 {
    i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos)
}

/// Builds a Timestamp from nanoseconds since the epoch.
pub fn timestamp_from_nanos(nanos: i128) -> Timestamp {
    let seconds = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000);
    Timestamp { seconds: i64::try_from(seconds).unwrap_or(i64::MAX), nanos: i32::try_from(sub).unwrap_or(0) }
}

/// RFC 3339 text of a timestamp (nanosecond precision, trailing zeros trimmed, `Z`).
pub fn rfc3339(ts: &Timestamp) -> String {
    let mut s = String::with_capacity(32);
    TimeFormat::Rfc3339Nano.write(&mut s, Some(ts));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(f: TimeFormat, seconds: i64, nanos: i32) -> String {
        let mut s = String::new();
        f.write(&mut s, Some(&Timestamp { seconds, nanos }));
        s
    }

    #[test]
    fn formats_like_go_layouts() {
        // 2021-06-16T16:52:13.136834446Z
        let (s, n) = (1_623_862_333, 136_834_446);
        assert_eq!(fmt(TimeFormat::StampMilli, s, n), "Jun 16 16:52:13.136");
        assert_eq!(fmt(TimeFormat::Stamp, s, n), "Jun 16 16:52:13");
        assert_eq!(fmt(TimeFormat::StampMicro, s, n), "Jun 16 16:52:13.136834");
        assert_eq!(fmt(TimeFormat::StampNano, s, n), "Jun 16 16:52:13.136834446");
        assert_eq!(fmt(TimeFormat::Rfc3339, s, n), "2021-06-16T16:52:13Z");
        assert_eq!(fmt(TimeFormat::Rfc3339Milli, s, n), "2021-06-16T16:52:13.136Z");
        assert_eq!(fmt(TimeFormat::Rfc3339Nano, s, n), "2021-06-16T16:52:13.136834446Z");
        assert_eq!(fmt(TimeFormat::Rfc3339Nano, s, 500_000_000), "2021-06-16T16:52:13.5Z");
        assert_eq!(fmt(TimeFormat::Rfc3339Nano, s, 0), "2021-06-16T16:52:13Z");
        assert_eq!(fmt(TimeFormat::Rfc1123Z, s, n), "Wed, 16 Jun 2021 16:52:13 +0000");
        // May  4: space-padded day.
        assert_eq!(fmt(TimeFormat::StampMilli, 1_620_134_620, 501_000_000), "May  4 13:23:40.501");
        let mut na = String::new();
        TimeFormat::StampMilli.write(&mut na, None);
        assert_eq!(na, "N/A");
        assert_eq!(fmt(TimeFormat::StampMilli, 0, -5), "N/A");
        assert_eq!(fmt(TimeFormat::Rfc3339, 0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt(TimeFormat::Rfc3339, -1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(fmt(TimeFormat::Rfc3339, 951_782_400, 0), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parses_time_args() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_time_arg("5m", now).unwrap(), Timestamp { seconds: 1_000_000 - 300, nanos: 0 });
        assert_eq!(parse_time_arg("1h30m", now).unwrap().seconds, 1_000_000 - 5400);
        assert_eq!(parse_time_arg("1.5s", now).unwrap(), Timestamp { seconds: 1_000_000 - 2, nanos: 500_000_000 });
        assert_eq!(
            parse_time_arg("2021-06-16T16:52:13.136834446Z", now).unwrap(),
            Timestamp { seconds: 1_623_862_333, nanos: 136_834_446 }
        );
        assert_eq!(parse_time_arg("2021-06-16T18:52:13+02:00", now).unwrap().seconds, 1_623_862_333);
        assert_eq!(parse_time_arg("2021-06-16T16:52:13", now).unwrap().seconds, 1_623_862_333);
        assert_eq!(parse_time_arg("2021-06-16", now).unwrap().seconds, 1_623_801_600);
        for bad in ["", "yesterday", "5x", "2021-13-01", "m", "1..2s"] {
            assert!(parse_time_arg(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("300ms"), Some((false, Duration::from_millis(300))));
        assert_eq!(parse_go_duration("-2h"), Some((true, Duration::from_secs(7200))));
        assert_eq!(parse_go_duration("0"), Some((false, Duration::ZERO)));
        assert_eq!(parse_go_duration("10"), None);
    }
}
