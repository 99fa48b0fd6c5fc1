//! Query-parameter parsing shared by the REST handlers: times, limits, cursors, symbols. Every
//! failure is a [`Problem`] with a stable code.

use std::collections::HashMap;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;

use super::problem::Problem;
use crate::model::{SymbolId, is_valid_symbol};
use crate::server::Shared;

/// Raw query parameters, or the problem that they could not be parsed.
pub type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The parameters as a map; a malformed query string is `bad_request`.
pub fn params(q: Params) -> Result<HashMap<String, String>, Problem> {
    q.map(|Query(m)| m)
        .map_err(|e| Problem::bad_request("bad_request", format!("malformed query string: {e}")))
}

/// `from`/`to`: RFC 3339 (`2026-01-02T03:04:05.123Z`) or integer epoch milliseconds (by the
/// magnitude rule of [`crate::timestamp`], from 1e14 up nanoseconds). Returns nanoseconds since
/// the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    crate::timestamp::parse_range_bound(s).ok()
}

/// The `[from, to)` range in ns; `from` defaults to the epoch and `to` to the end of time.
pub fn time_range(p: &HashMap<String, String>) -> Result<(i64, i64), Problem> {
    let one = |key: &str, default: i64| -> Result<i64, Problem> {
        match p.get(key) {
            None => Ok(default),
            Some(v) => parse_time(v).ok_or_else(|| {
                Problem::bad_request(
                    "bad_time",
                    format!("`{key}` must be RFC 3339 or epoch milliseconds, got {v:?}"),
                )
            }),
        }
    };
    let from = one("from", 0)?;
    let to = one("to", i64::MAX)?;
    if from >= to {
        return Err(Problem::bad_request(
            "bad_time_range",
            "`from` must be before `to`",
        ));
    }
    Ok((from, to))
}

/// `limit`: 1..=max, `default` when absent.
pub fn limit(p: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, Problem> {
    match p.get("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Problem::bad_request(
                "limit_out_of_range",
                format!("`limit` must be an integer in 1..={max}, got {v:?}"),
            )),
        },
    }
}

/// An opaque cursor over (ts, id): 32 hex digits.
pub fn encode_cursor(ts: i64, id: i64) -> String {
    format!("{:016x}{:016x}", ts as u64, id as u64)
}

pub fn decode_cursor(s: &str) -> Result<(i64, i64), Problem> {
    let bad = || Problem::bad_request("bad_cursor", "`cursor` is not one this server issued");
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let ts = u64::from_str_radix(&s[..16], 16).map_err(|_| bad())? as i64;
    let id = u64::from_str_radix(&s[16..], 16).map_err(|_| bad())? as i64;
    Ok((ts, id))
}

/// A symbol known to the live symbol table, or `unknown_symbol` (404).
pub fn live_symbol(shared: &Shared, symbol: &str) -> Result<SymbolId, Problem> {
    if is_valid_symbol(symbol)
        && let Some(id) = shared.symbols.get(symbol)
    {
        return Ok(id);
    }
    Err(unknown_symbol(symbol))
}

pub fn unknown_symbol(symbol: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "unknown_symbol",
        format!("no such symbol: {symbol:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_strictly() {
        let cases: &[(&str, Option<i64>)] = &[
            ("0", Some(0)),
            ("1764070000123", Some(1_764_070_000_123_000_000)),
            ("1970-01-01T00:00:01Z", Some(1_000_000_000)),
            ("1970-01-01T01:00:01.5+01:00", Some(1_500_000_000)),
            ("1970-01-01", None),
            ("-5", None),
            ("12abc", None),
            ("", None),
            ("99999999999999999999", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_time(s), *want, "{s}");
        }
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = encode_cursor(1_764_070_000_123_456_789, 42);
        assert_eq!(decode_cursor(&c).unwrap(), (1_764_070_000_123_456_789, 42));
        for bad in ["", "xyz", &"g".repeat(32), &"0".repeat(31)] {
            assert_eq!(decode_cursor(bad).unwrap_err().code, "bad_cursor");
        }
    }

    #[test]
    fn limits_are_bounded() {
        let p = |v: &str| HashMap::from([("limit".to_owned(), v.to_owned())]);
        assert_eq!(limit(&HashMap::new(), 100, 1000).unwrap(), 100);
        assert_eq!(limit(&p("1000"), 100, 1000).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten"] {
            assert_eq!(
                limit(&p(bad), 100, 1000).unwrap_err().code,
                "limit_out_of_range"
            );
        }
    }
}
