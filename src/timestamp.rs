//! Times as every input writes them (feeds, HTTP ingest, REST query parameters and trade
//! bodies), turned into nanoseconds since the Unix epoch. This is the one place tickcast parses a
//! time; it imports nothing from the rest of the crate, so every layer can use it.
//!
//! Two spellings are accepted, and nothing else:
//!
//! - **An integer** (JSON number or a string of ASCII digits). The unit is chosen by magnitude,
//!   on every input: `n < 100_000_000_000_000` (1e14) is **milliseconds**, anything larger is
//!   **nanoseconds**. 1e14 ms is the year 5138 and 1e14 ns is 1970-01-02T03:46:40Z, so no
//!   plausible time is ambiguous: REST callers keep sending milliseconds, HTTP ingest keeps
//!   sending nanoseconds, and feeds may send either. Negative integers, and milliseconds past the
//!   `i64` nanosecond range (after 2262-04-11), are refused.
//! - **RFC 3339** with a mandatory offset: `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, `T`/`Z` in
//!   either case. More than nine fraction digits, a separator other than `T`, out-of-range
//!   fields (`02-30`, `24:00`, `+24:00`) and times outside the `i64` nanosecond range are refused.
//!   A leap second (`:60`) is accepted and lands on the first instant of the next minute, as
//!   Unix time does.
//!
//! Two entry points differ only in the range they accept: [`parse`] (and [`from_integer`]) is
//! for the time of a trade, which must be after the epoch; [`parse_range_bound`] is for the ends
//! of a query range, where the epoch itself (`from=0`) and earlier instants are meaningful.
//!
//! Calendar arithmetic is the `time` crate's; this module adds the checks where RFC 3339 (as
//! tickcast has always read it) is stricter than `time`'s parser: the `T` separator, at most
//! nine fraction digits, and leap seconds at any minute rather than only at the end of a month.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Integers below this are milliseconds; at or above, nanoseconds.
pub(crate) const MS_NS_THRESHOLD: i64 = 100_000_000_000_000;

const NS_PER_MS: i64 = 1_000_000;
const NS_PER_SEC: i64 = 1_000_000_000;

/// Most fraction digits RFC 3339 times may have: nanoseconds are the finest unit kept.
const MAX_FRACTION_DIGITS: usize = 9;

/// Why a time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimestampError {
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

/// The time of a trade given as an integer, by the magnitude rule; it must be after the epoch.
pub(crate) fn from_integer(n: i64) -> Result<i64, TimestampError> {
    if n <= 0 {
        return Err(TimestampError::NotPositive(n));
    }
    integer_ns(n)
}

/// The time of a trade: an integer by the magnitude rule, or RFC 3339; after the epoch.
pub fn parse(s: &str) -> Result<i64, TimestampError> {
    match parse_range_bound(s)? {
        ns if ns > 0 => Ok(ns),
        ns if is_integer(s.trim()) => Err(TimestampError::NotPositive(ns)),
        _ => Err(TimestampError::OutOfRange(s.trim().to_owned())),
    }
}

/// Strict RFC 3339 (see the module docs) after the epoch, for sources that declare the format.
pub(crate) fn parse_rfc3339(s: &str) -> Result<i64, TimestampError> {
    match rfc3339_ns(s)? {
        ns if ns > 0 => Ok(ns),
        _ => Err(TimestampError::OutOfRange(s.to_owned())),
    }
}

/// One end of a query range: like [`parse`], but the epoch (`0`) and earlier instants are
/// accepted.
pub(crate) fn parse_range_bound(s: &str) -> Result<i64, TimestampError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(TimestampError::Empty);
    }
    if is_integer(s) {
        let n: i64 = s
            .parse()
            .map_err(|_| TimestampError::OutOfRange(s.to_owned()))?;
        return integer_ns(n);
    }
    if let Some(digits) = s.strip_prefix('-')
        && is_integer(digits)
    {
        return Err(TimestampError::NotPositive(s.parse().unwrap_or(-1)));
    }
    rfc3339_ns(s)
}

fn is_integer(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The magnitude rule for `n >= 0`.
fn integer_ns(n: i64) -> Result<i64, TimestampError> {
    if n < 0 {
        return Err(TimestampError::NotPositive(n));
    }
    if n < MS_NS_THRESHOLD {
        n.checked_mul(NS_PER_MS)
            .ok_or_else(|| TimestampError::OutOfRange(n.to_string()))
    } else {
        Ok(n)
    }
}

/// Any RFC 3339 instant in the `i64` nanosecond range.
fn rfc3339_ns(s: &str) -> Result<i64, TimestampError> {
    let syntax = || TimestampError::Syntax(s.to_owned());
    let b = s.as_bytes();
    // `time` takes any byte as the date-time separator (RFC 3339 allows a space "for
    // readability"); tickcast has always required `T`.
    if !matches!(b.get(10), Some(b'T' | b't')) {
        return Err(syntax());
    }
    // `time` reads any number of fraction digits and drops those past nine; refuse them instead
    // of silently losing precision.
    if b.get(19) == Some(&b'.') {
        let digits = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > MAX_FRACTION_DIGITS {
            return Err(syntax());
        }
    }
    // `time` accepts `:60` only as the last second of a month (UTC) and reads it as
    // `23:59:59.999999999`. Unix time folds a leap second into the next minute, whatever the
    // minute: parse it as `:59` and add the second back. The year has exactly four digits, so the
    // seconds are always at 17..19.
    let leap = b.get(17..19) == Some(b"60".as_slice());
    let parsed = if leap {
        let mut text = s.to_owned();
        text.replace_range(17..19, "59");
        OffsetDateTime::parse(&text, &Rfc3339)
    } else {
        OffsetDateTime::parse(s, &Rfc3339)
    };
    let t = parsed.map_err(|e| match e {
        time::error::Parse::TryFromParsed(_) => TimestampError::Field(s.to_owned()),
        _ => syntax(),
    })?;
    let leap_ns = if leap { i128::from(NS_PER_SEC) } else { 0 };
    i64::try_from(t.unix_timestamp_nanos() + leap_ns)
        .map_err(|_| TimestampError::OutOfRange(s.to_owned()))
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
        assert_eq!(
            from_integer(1_700_000_000_000),
            Ok(1_700_000_000_000 * NS_PER_MS)
        );
        assert_eq!(from_integer(MS_NS_THRESHOLD), Ok(MS_NS_THRESHOLD));
        assert_eq!(from_integer(0), Err(TimestampError::NotPositive(0)));
        assert_eq!(from_integer(-1), Err(TimestampError::NotPositive(-1)));
        assert!(matches!(
            from_integer(MS_NS_THRESHOLD - 1),
            Err(TimestampError::OutOfRange(_))
        ));
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

    #[test]
    fn rfc3339_edge_cases() {
        let cases: &[(&str, Result<i64, ()>)] = &[
            // A leap second at any minute, with a fraction, and under an offset.
            ("2024-01-01T12:00:60Z", Ok(1_704_110_460_000_000_000)),
            ("2016-12-31T23:59:60.5Z", Ok(1_483_228_800_500_000_000)),
            ("2017-01-01T00:59:60+01:00", Ok(1_483_228_800_000_000_000)),
            ("2024-01-01T00:00:61Z", Err(())),
            // Offsets: minutes must be < 60; the sign applies to both parts.
            (
                "2024-01-01T00:00:00+23:59",
                Ok(1_704_067_200_000_000_000 - 86_340 * NS_PER_SEC),
            ),
            (
                "2024-01-01T00:00:00-00:30",
                Ok(1_704_067_200_000_000_000 + 1_800 * NS_PER_SEC),
            ),
            ("2024-01-01T00:00:00+01:60", Err(())),
            // Nine fraction digits are kept exactly.
            ("1970-01-01T00:00:00.000000001Z", Ok(1)),
            // The last representable instant, and one past it.
            ("2262-04-11T23:47:16.854775807Z", Ok(i64::MAX)),
            ("2262-04-11T23:47:16.854775808Z", Err(())),
            ("9999-12-31T23:59:59Z", Err(())),
            // Exactly the epoch is not after it.
            ("1970-01-01T00:00:00Z", Err(())),
            ("1970-01-01T01:00:00+01:00", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).map_err(|_| ()), *want, "{input:?}");
        }
        assert!(matches!(
            parse("2262-04-12T00:00:00Z"),
            Err(TimestampError::OutOfRange(_))
        ));
        assert!(matches!(
            parse("2023-02-29T00:00:00Z"),
            Err(TimestampError::Field(_))
        ));
        assert!(matches!(parse("yesterday"), Err(TimestampError::Syntax(_))));
    }

    #[test]
    fn range_bounds_also_take_the_epoch_and_before() {
        let cases: &[(&str, Result<i64, ()>)] = &[
            ("0", Ok(0)),
            ("1764070000123", Ok(1_764_070_000_123_000_000)),
            ("1970-01-01T00:00:00Z", Ok(0)),
            ("1970-01-01T00:00:01Z", Ok(1_000_000_000)),
            ("1970-01-01T01:00:01.5+01:00", Ok(1_500_000_000)),
            ("1969-12-31T23:59:59Z", Ok(-1_000_000_000)),
            ("1970-01-01", Err(())),
            ("-5", Err(())),
            ("12abc", Err(())),
            ("", Err(())),
            ("99999999999999999999", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_range_bound(input).map_err(|_| ()), *want, "{input:?}");
        }
    }
}
