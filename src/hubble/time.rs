//! Time handling for Hubble: allocation-free printing of `google.protobuf.Timestamp` in the
//! layouts `hubble observe --time-format` offers (Go layouts, always UTC), and parsing of
//! `--since`/`--until` values (RFC 3339 and friends, or a Go duration such as `5m` = that long ago).
//! jiff does the calendar (seconds to civil UTC, RFC 3339 parsing); the digit writers here only
//! keep the per-flow path free of allocation and format-string parsing.

use std::time::SystemTime;

use pbjson_types::Timestamp;

use super::buf::TextBuf;
use crate::duration::{DurationError, parse_go_duration};

/// Month abbreviations (Go `Jan`).
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/// Weekday abbreviations (Go `Mon`), Monday first as jiff's `to_monday_zero_offset`.
const WEEKDAYS_FROM_MON: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

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
        // Protobuf keeps whole seconds floored and nanos in 0..1e9, so the calendar fields come
        // from the seconds alone and the fraction straight from `nanos`.
        let Some(c) = civil_utc(ts.seconds) else {
            out.push_str("N/A");
            return;
        };
        let nanos = u32::try_from(ts.nanos).unwrap_or(0);
        let month = MONTHS[usize::try_from(c.month() - 1).unwrap_or(0) % 12];
        match self {
            TimeFormat::Stamp | TimeFormat::StampMilli | TimeFormat::StampMicro | TimeFormat::StampNano => {
                out.push_str(month);
                out.push_byte(b' ');
                if c.day() < 10 {
                    out.push_byte(b' ');
                }
                push_uint(out, field(c.day()));
                out.push_byte(b' ');
                push_hms(out, c.time());
                match self {
                    TimeFormat::StampMilli => push_frac(out, nanos, 3),
                    TimeFormat::StampMicro => push_frac(out, nanos, 6),
                    TimeFormat::StampNano => push_frac(out, nanos, 9),
                    _ => {}
                }
            }
            TimeFormat::Rfc3339 | TimeFormat::Rfc3339Milli | TimeFormat::Rfc3339Micro | TimeFormat::Rfc3339Nano => {
                push_date(out, c.date());
                out.push_byte(b'T');
                push_hms(out, c.time());
                match self {
                    TimeFormat::Rfc3339Milli => push_frac(out, nanos, 3),
                    TimeFormat::Rfc3339Micro => push_frac(out, nanos, 6),
                    TimeFormat::Rfc3339Nano => push_frac_trimmed(out, nanos),
                    _ => {}
                }
                out.push_byte(b'Z');
            }
            TimeFormat::Rfc1123Z => {
                let weekday = usize::try_from(c.weekday().to_monday_zero_offset()).unwrap_or(0) % 7;
                out.push_str(WEEKDAYS_FROM_MON[weekday]);
                out.push_str(", ");
                push_pad(out, field(c.day()), 2);
                out.push_byte(b' ');
                out.push_str(month);
                out.push_byte(b' ');
                push_pad(out, field(c.year()), 4);
                out.push_byte(b' ');
                push_hms(out, c.time());
                out.push_str(" +0000");
            }
        }
    }
}

/// Whether Go's `timestamppb.IsValid` would accept `ts`.
pub fn is_valid(ts: &Timestamp) -> bool {
    (MIN_VALID_SECONDS..=MAX_VALID_SECONDS).contains(&ts.seconds) && (0..1_000_000_000).contains(&ts.nanos)
}

/// 1970-01-01T00:00:00, the civil origin of Unix seconds.
const EPOCH_CIVIL: jiff::civil::DateTime = jiff::civil::date(1970, 1, 1).at(0, 0, 0, 0);

/// Civil UTC date and time of a valid protobuf timestamp's whole seconds (jiff does the
/// calendar; no allocation, no time zone lookup).
fn civil_utc(seconds: i64) -> Option<jiff::civil::DateTime> {
    match jiff::Timestamp::from_second(seconds) {
        Ok(t) => Some(jiff::tz::Offset::UTC.to_datetime(t)),
        // jiff's Timestamp ends 26 hours before protobuf's last second (9999-12-31T23:59:59Z)
        // so that every UTC offset has a civil time; the civil calendar itself reaches it.
        Err(_) => EPOCH_CIVIL.checked_add(jiff::SignedDuration::from_secs(seconds)).ok(),
    }
}

/// A civil field (month, day, hour, …), never negative for valid timestamps.
fn field(v: impl Into<i64>) -> u64 {
    u64::try_from(v.into()).unwrap_or(0)
}

fn push_date<B: TextBuf + ?Sized>(out: &mut B, d: jiff::civil::Date) {
    push_pad(out, field(d.year()), 4);
    out.push_byte(b'-');
    push_pad(out, field(d.month()), 2);
    out.push_byte(b'-');
    push_pad(out, field(d.day()), 2);
}

fn push_hms<B: TextBuf + ?Sized>(out: &mut B, t: jiff::civil::Time) {
    push_pad(out, field(t.hour()), 2);
    out.push_byte(b':');
    push_pad(out, field(t.minute()), 2);
    out.push_byte(b':');
    push_pad(out, field(t.second()), 2);
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
pub enum TimeParseError {
    #[error(
        "invalid time {value:?}: expected RFC 3339 (2024-05-04T13:23:40Z), a date (2024-05-04) or a duration ago (5m, 1h30m)"
    )]
    Invalid { value: String },
    /// A well-formed duration that is too large (for Go or for the calendar).
    #[error("invalid time {value:?}: {reason}")]
    OutOfRange { value: String, reason: String },
}

/// Parses a `--since`/`--until` value like `hubble observe`: a Go duration means that long before
/// `now` (a negative one, after); otherwise RFC 3339 (with or without fraction),
/// `2006-01-02T15:04:05`, `2006-01-02T15:04` or `2006-01-02` (the last three in UTC).
pub fn parse_time_arg(value: &str, now: SystemTime) -> Result<Timestamp, TimeParseError> {
    let err = || TimeParseError::Invalid { value: value.to_string() };
    let v = value.trim();
    if v.is_empty() {
        return Err(err());
    }
    match parse_go_duration(v) {
        Ok(ago) => {
            let out_of_range = |reason: String| TimeParseError::OutOfRange { value: value.to_string(), reason };
            let now = jiff::Timestamp::try_from(now).map_err(|e| out_of_range(e.to_string()))?;
            let t = now
                .checked_sub(ago)
                .map_err(|_| out_of_range(format!("{v} from now is outside the years -9999..9999")))?;
            return Ok(from_jiff(t));
        }
        Err(e @ DurationError::OutOfRange { .. }) => {
            return Err(TimeParseError::OutOfRange { value: value.to_string(), reason: e.to_string() });
        }
        // Not a duration: try the date forms.
        Err(_) => {}
    }
    if let Ok(ts) = v.parse::<jiff::Timestamp>() {
        return Ok(from_jiff(ts));
    }
    let utc = |dt: jiff::civil::DateTime| -> Result<Timestamp, TimeParseError> {
        jiff::tz::Offset::UTC.to_timestamp(dt).map(from_jiff).map_err(|_| err())
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

/// A jiff timestamp as protobuf keeps it: whole seconds floored, `nanos` in 0..1e9 (jiff gives
/// both parts the sign of the instant, so 0.5 s before the epoch is `-0 s -500000000 ns` there
/// and `-1 s +500000000 ns` here).
pub fn from_jiff(t: jiff::Timestamp) -> Timestamp {
    let (mut seconds, mut nanos) = (t.as_second(), t.subsec_nanosecond());
    if nanos < 0 {
        seconds -= 1;
        nanos += 1_000_000_000;
    }
    Timestamp { seconds, nanos }
}

/// Converts a `SystemTime` to a protobuf Timestamp (clamped to jiff's range, years ±9999).
pub fn system_time_to_timestamp(t: SystemTime) -> Timestamp {
    let ts = jiff::Timestamp::try_from(t)
        .unwrap_or_else(|_| if t > SystemTime::UNIX_EPOCH { jiff::Timestamp::MAX } else { jiff::Timestamp::MIN });
    from_jiff(ts)
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
    use std::time::{Duration, UNIX_EPOCH};

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
    fn agrees_with_jiff_formatting() {
        // Leap days, century rules, the ends of the valid range, before the epoch.
        let seconds = [
            MIN_VALID_SECONDS,
            -62_104_060_800,
            -2_203_891_200,
            -86_401,
            -1,
            0,
            951_782_400,
            978_307_199,
            1_709_164_800,
            4_107_542_400,
            MAX_VALID_SECONDS,
        ];
        for (i, &s) in seconds.iter().enumerate() {
            let n = [0, 1, 500_000_000, 999_999_999, 136_834_446][i % 5];
            // The civil calendar (not the Timestamp path the formatter takes where it can).
            let dt = EPOCH_CIVIL.checked_add(jiff::SignedDuration::new(s, n)).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(fmt(TimeFormat::Rfc3339Nano, s, n), format!("{dt}Z"), "{s}");
            let whole = dt.with().subsec_nanosecond(0).build().unwrap_or(dt);
            assert_eq!(fmt(TimeFormat::Rfc1123Z, s, n), whole.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string());
            assert_eq!(fmt(TimeFormat::Stamp, s, n), whole.strftime("%b %e %H:%M:%S").to_string());
            if let Ok(t) = jiff::Timestamp::new(s, n) {
                assert_eq!(fmt(TimeFormat::Rfc3339Nano, s, n), t.to_string(), "{s}");
            }
        }
        assert_eq!(fmt(TimeFormat::Rfc3339Nano, MAX_VALID_SECONDS, 999_999_999), "9999-12-31T23:59:59.999999999Z");
        assert_eq!(fmt(TimeFormat::Rfc1123Z, MAX_VALID_SECONDS, 0), "Fri, 31 Dec 9999 23:59:59 +0000");
        assert_eq!(fmt(TimeFormat::Rfc3339, MIN_VALID_SECONDS, 0), "0001-01-01T00:00:00Z");
        assert_eq!(fmt(TimeFormat::Rfc3339, MAX_VALID_SECONDS + 1, 0), "N/A");
        assert_eq!(fmt(TimeFormat::Rfc3339, MIN_VALID_SECONDS - 1, 0), "N/A");
    }

    #[test]
    fn jiff_timestamps_become_protobuf_ones() {
        let half_before = jiff::Timestamp::new(0, -500_000_000).unwrap();
        assert_eq!(from_jiff(half_before), Timestamp { seconds: -1, nanos: 500_000_000 });
        assert!(is_valid(&from_jiff(half_before)));
        assert_eq!(
            parse_time_arg("1969-12-31T23:59:59.25Z", UNIX_EPOCH).unwrap(),
            Timestamp { seconds: -1, nanos: 250_000_000 }
        );
        let t = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(system_time_to_timestamp(t), Timestamp { seconds: -2, nanos: 500_000_000 });
        assert_eq!(system_time_to_timestamp(UNIX_EPOCH + Duration::new(7, 9)), Timestamp { seconds: 7, nanos: 9 });
    }

    #[test]
    fn durations_ago_and_ahead() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_time_arg("-5m", now).unwrap().seconds, 1_000_300);
        assert_eq!(parse_time_arg("0", now).unwrap().seconds, 1_000_000);
        for big in ["99999999999999999999h", "9223372036854775807s"] {
            let e = parse_time_arg(big, now).unwrap_err();
            assert!(matches!(e, TimeParseError::OutOfRange { .. }) && e.to_string().contains("out of range"), "{e}");
        }
        // Go's longest duration (292 years) ahead of now, and beyond year 9999 from late in it.
        assert_eq!(parse_time_arg("-2562047h", now).unwrap().seconds, 1_000_000 + 2_562_047 * 3600);
        let late = SystemTime::from(jiff::Timestamp::from_second(252_000_000_000).unwrap());
        assert!(matches!(parse_time_arg("-2562047h", late), Err(TimeParseError::OutOfRange { .. })));
    }
}
