//! Query parameters of the REST handlers: the extraction into each endpoint's typed struct
//! (unknown parameters are refused by name) and the parsers of their values: times, limits,
//! cursors, symbols. Every failure is a [`Problem`] with a stable code.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::model::{SymbolId, Symbols, is_valid_symbol};
use crate::protocol::Problem;
use crate::protocol::ProblemCode;

/// An endpoint's query parameters as its typed struct (`#[serde(deny_unknown_fields)]`, every
/// field an `Option<String>` so that values are judged by the parsers below), or why not.
pub(crate) type Params<T> = Result<Query<T>, QueryRejection>;

/// The typed parameters. An unknown (or misspelt) parameter, a repeated one, or a query string
/// that cannot be decoded is `bad_request`, and the detail names the parameter.
pub(crate) fn params<T>(q: Params<T>) -> Result<T, Problem> {
    q.map(|Query(t)| t).map_err(|e| {
        // The rejection's own text starts with a generic prefix; the source is serde's message,
        // e.g. "unknown field `lmit`, expected one of `from`, `to`, `limit`, `cursor`".
        let cause = std::error::Error::source(&e).map_or_else(|| e.to_string(), |c| c.to_string());
        Problem::new(
            ProblemCode::BadRequest,
            format!("invalid query string: {cause}"),
        )
    })
}

/// The query of an endpoint that takes no parameters: every one is unknown.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

/// Middleware for the routes without query parameters: any parameter is refused as on the
/// others (400 `bad_request` naming it), instead of being ignored.
pub(crate) async fn no_params(req: Request, next: Next) -> Response {
    if req.uri().query().is_some_and(|q| !q.is_empty())
        && let Err(problem) = params(Query::<NoParams>::try_from_uri(req.uri()))
    {
        return problem.into_response();
    }
    next.run(req).await
}

/// The forms of a time value, for the OpenAPI document: an integer that fits (ms below 1e14,
/// ns above) or RFC 3339 from 1970 to 2261 with fields in range. That the date exists
/// (`2026-02-31`), that it is not before the epoch once its offset applies, and `from < to` are
/// the server's to check (400).
pub(crate) const TIME_PATTERN: &str = concat!(
    r"^(0*([0-9]{1,18}|[1-8][0-9]{18})",
    r"|(19[7-9][0-9]|2[01][0-9]{2}|22[0-5][0-9]|226[01])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])",
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?",
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$"
);

/// `from`/`to`: RFC 3339 (`2026-01-02T03:04:05.123Z`) or integer epoch milliseconds (by the
/// magnitude rule of [`crate::timestamp`], from 1e14 up nanoseconds). Returns nanoseconds since
/// the epoch.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    crate::timestamp::parse_range_bound(s).ok()
}

/// The `[from, to)` range in ns from the `from` and `to` parameters; `from` defaults to the
/// epoch and `to` to the end of time.
pub(crate) fn time_range(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), Problem> {
    let one = |key: &str, value: Option<&str>, default: i64| -> Result<i64, Problem> {
        match value {
            None => Ok(default),
            Some(v) => parse_time(v).ok_or_else(|| {
                Problem::new(
                    ProblemCode::BadTime,
                    format!("`{key}` must be RFC 3339 or epoch milliseconds, got {v:?}"),
                )
            }),
        }
    };
    let from = one("from", from, 0)?;
    let to = one("to", to, i64::MAX)?;
    if from >= to {
        return Err(Problem::new(
            ProblemCode::BadTimeRange,
            "`from` must be before `to`",
        ));
    }
    Ok((from, to))
}

/// The `limit` parameter: 1..=max, `default` when absent.
pub(crate) fn limit(value: Option<&str>, default: usize, max: usize) -> Result<usize, Problem> {
    match value {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Problem::new(
                ProblemCode::LimitOutOfRange,
                format!("`limit` must be an integer in 1..={max}, got {v:?}"),
            )),
        },
    }
}

/// `order`: `asc` (the default) or `desc`; anything else is `bad_request` naming it.
pub(crate) fn order(s: Option<&str>) -> Result<crate::store::Order, Problem> {
    match s {
        None | Some("asc") => Ok(crate::store::Order::Asc),
        Some("desc") => Ok(crate::store::Order::Desc),
        Some(other) => Err(Problem::new(
            ProblemCode::BadRequest,
            format!("`order` must be asc or desc, got {other:?}"),
        )),
    }
}

/// An opaque cursor over (ts, id): 32 hex digits.
pub(crate) fn encode_cursor(ts: i64, id: i64) -> String {
    format!("{:016x}{:016x}", ts as u64, id as u64)
}

pub(crate) fn decode_cursor(s: &str) -> Result<(i64, i64), Problem> {
    let bad = || {
        Problem::new(
            ProblemCode::BadCursor,
            "`cursor` is not one this server issued",
        )
    };
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let ts = u64::from_str_radix(&s[..16], 16).map_err(|_| bad())? as i64;
    let id = u64::from_str_radix(&s[16..], 16).map_err(|_| bad())? as i64;
    Ok((ts, id))
}

/// A symbol known to the live symbol table, or `unknown_symbol` (404).
pub(crate) fn live_symbol(symbols: &Symbols, symbol: &str) -> Result<SymbolId, Problem> {
    if is_valid_symbol(symbol)
        && let Some(id) = symbols.get(symbol)
    {
        return Ok(id);
    }
    Err(unknown_symbol(symbol))
}

pub(crate) fn unknown_symbol(symbol: &str) -> Problem {
    Problem::new(
        ProblemCode::UnknownSymbol,
        format!("no such symbol: {symbol:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Uri;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        limit: Option<String>,
    }

    fn sample(uri: &'static str) -> Result<Sample, Problem> {
        params(Query::<Sample>::try_from_uri(&Uri::from_static(uri)))
    }

    #[test]
    fn unknown_and_repeated_parameters_are_named() {
        assert_eq!(sample("/x?limit=5").unwrap().limit.as_deref(), Some("5"));
        assert_eq!(sample("/x").unwrap().limit, None);
        for (uri, name) in [("/x?lmit=5", "`lmit`"), ("/x?limit=1&limit=2", "`limit`")] {
            let p = sample(uri).unwrap_err();
            assert_eq!(p.code, ProblemCode::BadRequest, "{uri}");
            assert!(p.detail.contains(name), "{uri}: {}", p.detail);
        }
    }

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
    fn order_is_asc_or_desc() {
        use crate::store::Order;
        assert_eq!(order(None).unwrap(), Order::Asc);
        assert_eq!(order(Some("asc")).unwrap(), Order::Asc);
        assert_eq!(order(Some("desc")).unwrap(), Order::Desc);
        for bad in ["DESC", "", "newest"] {
            let p = order(Some(bad)).unwrap_err();
            assert_eq!(p.code, ProblemCode::BadRequest, "{bad}");
        }
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = encode_cursor(1_764_070_000_123_456_789, 42);
        assert_eq!(decode_cursor(&c).unwrap(), (1_764_070_000_123_456_789, 42));
        for bad in ["", "xyz", &"g".repeat(32), &"0".repeat(31)] {
            assert_eq!(decode_cursor(bad).unwrap_err().code, ProblemCode::BadCursor);
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None, 100, 1000).unwrap(), 100);
        assert_eq!(limit(Some("1000"), 100, 1000).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten"] {
            assert_eq!(
                limit(Some(bad), 100, 1000).unwrap_err().code,
                ProblemCode::LimitOutOfRange
            );
        }
    }
}
