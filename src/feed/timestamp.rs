//! Exchange timestamps as feeds write them, turned into nanoseconds since the Unix epoch.
//!
//! Two spellings are accepted, and nothing else:
//!
//! - **An integer** (JSON number or a string of ASCII digits). The unit is chosen by magnitude:
//!   `n < 100_000_000_000_000` (1e14) is **milliseconds**, anything larger is **nanoseconds**.
//!   1e14 ms is the year 5138 and 1e14 ns is 1970-01-02T03:46:40Z, so no plausible market time
//!   is ambiguous. Zero, negative values, and milliseconds past the `i64` nanosecond range
//!   (after 2262-04-11) are refused.
//! - **RFC 3339** with a mandatory offset: `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, `T`/`Z` in
//!   either case. More than nine fraction digits, out-of-range fields (`02-30`, `24:00`),
//!   and times before the epoch are refused. A leap second (`:60`) is accepted and lands on the
//!   first instant of the next minute, as Unix time does.
//!
//! The parser is written out here (about a hundred lines) so the crate needs no date library.

/// Integers below this are milliseconds; at or above, nanoseconds.
pub const MS_NS_THRESHOLD: i64 = 100_000_000_000_000;

const NS_PER_MS: i64 = 1_000_000;
const NS_PER_SEC: i64 = 1_000_000_000;

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("timestamp is empty")]
    Empty,
    #[error("timestamp must be > 0, got {0}")]
    NotPositive(i64),
    #[error("timestamp {0} is out of range")]
    OutOfRange(String),
    #[error("not an integer or RFC 3339 time: {0:?}")]
    Syntax(String),
    #[error("RFC 3339 field out of range in {0:?}")]
    Field(String),
}

/// An integer timestamp by the magnitude rule: ms below [`MS_NS_THRESHOLD`], ns otherwise.
pub fn from_integer(n: i64) -> Result<i64, TimestampError> {
    if n <= 0 {
        return Err(TimestampError::NotPositive(n));
    }
    if n < MS_NS_THRESHOLD {
        n.checked_mul(NS_PER_MS)
            .ok_or_else(|| TimestampError::OutOfRange(n.to_string()))
    } else {
        Ok(n)
    }
}

/// A textual timestamp: an integer by the magnitude rule, or RFC 3339.
pub fn parse(s: &str) -> Result<i64, TimestampError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(TimestampError::Empty);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s
            .parse()
            .map_err(|_| TimestampError::OutOfRange(s.to_owned()))?;
        return from_integer(n);
    }
    if s.starts_with('-') && s[1..].bytes().all(|b| b.is_ascii_digit()) && s.len() > 1 {
        return Err(TimestampError::NotPositive(s.parse().unwrap_or(-1)));
    }
    parse_rfc3339(s)
}

/// Strict RFC 3339 (see the module docs), in nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64, TimestampError> {
    let syntax = || TimestampError::Syntax(s.to_owned());
    let field = || TimestampError::Field(s.to_owned());
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(syntax());
    }
    let num = |from: usize, len: usize| -> Result<i64, TimestampError> {
        let part = b.get(from..from + len).ok_or_else(syntax)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(syntax());
        }
        Ok(part
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let expect = |at: usize, set: &[u8]| -> Result<(), TimestampError> {
        match b.get(at) {
            Some(c) if set.contains(c) => Ok(()),
            _ => Err(syntax()),
        }
    };
    let year = num(0, 4)?;
    expect(4, b"-")?;
    let month = num(5, 2)?;
    expect(7, b"-")?;
    let day = num(8, 2)?;
    expect(10, b"Tt")?;
    let hour = num(11, 2)?;
    expect(13, b":")?;
    let minute = num(14, 2)?;
    expect(16, b":")?;
    let second = num(17, 2)?;
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return Err(syntax());
        }
        frac_ns = num(start, digits)? * 10i64.pow((9 - digits) as u32);
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            expect(i + 3, b":")?;
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(field());
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return Err(syntax()),
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(field());
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    let ns = secs
        .checked_mul(NS_PER_SEC)
        .and_then(|v| v.checked_add(frac_ns))
        .ok_or_else(|| TimestampError::OutOfRange(s.to_owned()))?;
    if ns <= 0 {
        return Err(TimestampError::OutOfRange(s.to_owned()));
    }
    Ok(ns)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_the_magnitude_rule() {
        let cases: &[(&str, Result<i64, ()>)] = &[
            ("1", Ok(1_000_000)),
            ("1700000000000", Ok(1_700_000_000_000_000_000)),
            // Just below the threshold: still ms, but past the i64 ns range.
            ("99999999999999", Err(())),
            ("9223372036853", Ok(9_223_372_036_853_000_000)),
            // At and above the threshold: ns.
            ("100000000000000", Ok(100_000_000_000_000)),
            ("1700000000123456789", Ok(1_700_000_000_123_456_789)),
            ("0", Err(())),
            ("-5", Err(())),
            ("", Err(())),
            ("99999999999999999999", Err(())),
            ("12a", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).map_err(|_| ()), *want, "{input:?}");
        }
    }

    #[test]
    fn rfc3339_is_strict() {
        let cases: &[(&str, Result<i64, ()>)] = &[
            ("1970-01-01T00:00:01Z", Ok(1_000_000_000)),
            ("2014-11-07T08:19:27.028459Z", Ok(1_415_348_367_028_459_000)),
            ("2014-11-07t08:19:27.028459z", Ok(1_415_348_367_028_459_000)),
            (
                "2014-11-07T09:19:27.028459+01:00",
                Ok(1_415_348_367_028_459_000),
            ),
            (
                "2014-11-07T03:49:27.028459-04:30",
                Ok(1_415_348_367_028_459_000),
            ),
            (
                "2024-02-29T00:00:00.123456789Z",
                Ok(1_709_164_800_123_456_789),
            ),
            ("2000-01-01T00:00:00.5Z", Ok(946_684_800_500_000_000)),
            // Leap second folds into the next minute.
            ("2016-12-31T23:59:60Z", Ok(1_483_228_800_000_000_000)),
            ("2023-02-29T00:00:00Z", Err(())),
            ("2024-13-01T00:00:00Z", Err(())),
            ("2024-01-01T24:00:00Z", Err(())),
            ("2024-01-01T00:00:00", Err(())),
            ("2024-01-01 00:00:00Z", Err(())),
            ("2024-01-01T00:00:00.Z", Err(())),
            ("2024-01-01T00:00:00.1234567890Z", Err(())),
            ("2024-01-01T00:00:00+0100", Err(())),
            ("2024-01-01T00:00:00+24:00", Err(())),
            ("2024-1-01T00:00:00Z", Err(())),
            ("1969-12-31T23:59:59Z", Err(())),
            ("2024-01-01T00:00:00Zjunk", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).map_err(|_| ()), *want, "{input:?}");
        }
    }
}
