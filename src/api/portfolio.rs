//! Portfolio: `POST /api/v1/portfolio/trades` records a fill, `GET /api/v1/portfolio` values the
//! caller's positions at live prices. Callers authenticate with `Authorization: Bearer <key>`
//! (keys come from `tickcast user add NAME`) and see only their own data.
//!
//! The accounting (average cost, realized and unrealized P&L) is [`crate::portfolio`]; this file
//! authenticates, validates and shapes the responses. Unrealized P&L is null while an open
//! position's symbol has no live price.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::market::store_problem;
use crate::client::{VerifiedKeys, key_digest};
use crate::ingest::{TickError, check_future_ts, skew_ns};
use crate::model::{Side, Symbols, is_valid_symbol, now_ns};
use crate::money::{self, Exact, MoneyError};
use crate::portfolio::{self as accounting, LivePortfolios, PortfolioOut};
use crate::protocol::Problem;
use crate::protocol::ProblemCode;
use crate::rooms::Hub;
use crate::store::{NewTrade, Recorded, Store, StoreError, Trade};
use crate::timestamp::{self, TimestampError};

/// What the portfolio handlers use: users and trades in the store, live prices from the hub.
#[derive(Debug, Clone)]
pub struct PortfolioState {
    pub store: Arc<Store>,
    pub symbols: Arc<Symbols>,
    pub hub: Arc<Hub>,
    /// Largest trade body accepted (`api.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Keys that authenticated: the rate limit keys them by themselves.
    pub verified: Arc<VerifiedKeys>,
    /// The `portfolio` channels: told of every trade recorded.
    pub live: Arc<LivePortfolios>,
    /// A fill dated more than this ahead of the server clock is refused
    /// (`feeds.max_future_skew_ms`, the live ticks' rule): one fill dated years ahead would turn
    /// every later fill of its symbol into a full rebuild.
    pub max_future_skew_ms: u64,
}

/// Longest `Idempotency-Key` accepted.
pub(crate) const MAX_IDEMPOTENCY_KEY: usize = 128;

/// The authenticated user of a request: id and name.
#[derive(Debug, Clone)]
pub struct Caller(pub i64, pub String);

impl<S> FromRequestParts<S> for Caller
where
    PortfolioState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let portfolio = PortfolioState::from_ref(state);
        let Some(key) = super::ingest::bearer(&parts.headers) else {
            return Err(Problem::new(
                ProblemCode::Unauthorized,
                "missing `Authorization: Bearer <API key>`",
            ));
        };
        match portfolio.store.user_for_key(key).await {
            Ok(Some((id, name))) => {
                // From now on this key is limited by itself, not by its address.
                portfolio.verified.insert(key_digest(key));
                Ok(Caller(id, name))
            }
            Ok(None) => Err(Problem::new(ProblemCode::Unauthorized, "invalid API key")),
            Err(e) => Err(store_problem(e)),
        }
    }
}

/// `time`: RFC 3339 or epoch milliseconds (the magnitude rule of [`crate::timestamp`]).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeIn {
    Ms(i64),
    Text(String),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TradeIn<'a> {
    #[schema(pattern = "^[A-Z0-9._-]{1,32}$")]
    symbol: String,
    /// `buy` or `sell`
    #[schema(pattern = "^(buy|sell)$")]
    side: String,
    /// Exact decimal, > 0, at most 1e15 and 12 fraction digits: a JSON number (read as its
    /// digits, never as a float) or a string of one.
    #[serde(borrow)]
    #[schema(value_type = f64, exclusive_minimum = 0, maximum = 1e15)]
    quantity: &'a RawValue,
    /// Exact decimal, as `quantity`.
    #[serde(borrow)]
    #[schema(value_type = f64, exclusive_minimum = 0, maximum = 1e15)]
    price: &'a RawValue,
    /// Fill time, RFC 3339 or epoch ms; now when absent (a retry without it, with the same
    /// `Idempotency-Key`, replays the first trade). At most `feeds.max_future_skew_ms`
    /// (default 5 s) ahead of the server clock: a later time is 422 `invalid_trade`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    time: Option<TimeIn>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TradeOut {
    id: i64,
    symbol: String,
    side: &'static str,
    /// Exact: the digits recorded.
    #[schema(value_type = f64)]
    quantity: Exact,
    /// Exact: the digits recorded.
    #[schema(value_type = f64)]
    price: Exact,
    /// Fill time, ns since the epoch.
    ts: i64,
}

impl From<Trade> for TradeOut {
    fn from(t: Trade) -> Self {
        TradeOut {
            id: t.id,
            symbol: t.trade.symbol,
            side: t.trade.side.as_str(),
            quantity: Exact(t.trade.quantity),
            price: Exact(t.trade.price),
            ts: t.trade.ts,
        }
    }
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemCode::InvalidTrade, detail)
}

/// A quantity or price, exactly as sent: a value of the wrong JSON type is a malformed body, a
/// number or string that is not an acceptable decimal an invalid trade.
fn exact(raw: &RawValue, field: &str) -> Result<rust_decimal::Decimal, Problem> {
    money::parse_input(raw).map_err(|e| match e {
        MoneyError::WrongType(_) => Problem::new(
            ProblemCode::MalformedBody,
            format!("malformed trade: {field} {e}"),
        ),
        _ => invalid(format!("{field} {e}")),
    })
}

/// Checks a trade body at `now` (ns); every rule has its message.
fn validate(t: TradeIn, now: i64, max_future_skew_ms: u64) -> Result<NewTrade, Problem> {
    if !is_valid_symbol(&t.symbol) {
        return Err(invalid(format!(
            "symbol must match [A-Z0-9._-]{{1,32}}, got {:?}",
            t.symbol
        )));
    }
    let side = Side::parse_strict(&t.side)
        .ok_or_else(|| invalid(format!("side must be buy or sell, got {:?}", t.side)))?;
    let quantity = exact(t.quantity, "quantity")?;
    let price = exact(t.price, "price")?;
    let time_sent = t.time.is_some();
    let ts = match t.time {
        None => now,
        Some(TimeIn::Ms(n)) => timestamp::from_integer(n).map_err(|e| match e {
            TimestampError::NotPositive(_) => invalid("time must be after the epoch"),
            _ => invalid("time is out of range"),
        })?,
        Some(TimeIn::Text(s)) => timestamp::parse(&s)
            .map_err(|_| invalid(format!("time must be RFC 3339 or epoch ms, got {s:?}")))?,
    };
    let max_skew_ns = skew_ns(max_future_skew_ms);
    if let Err(TickError::Future { ahead_ms, max_ms }) = check_future_ts(ts, now, max_skew_ns) {
        return Err(invalid(format!(
            "time is {ahead_ms} ms ahead of the server clock; a trade may be dated at most \
             {max_ms} ms ahead (feeds.max_future_skew_ms)"
        )));
    }
    Ok(NewTrade {
        symbol: t.symbol,
        side,
        quantity,
        price,
        ts,
        time_sent,
    })
}

/// Records a fill; a repeated `Idempotency-Key` returns the first result instead.
#[utoipa::path(post, path = "/api/v1/portfolio/trades", tag = "portfolio",
    request_body = TradeIn,
    params(("Idempotency-Key" = Option<String>, Header, description = "1..=128 visible ASCII characters",
        pattern = "^[!-~]{1,128}$")),
    responses((status = 201, body = TradeOut), (status = 200, body = TradeOut, description = "replayed"),
        (status = 400, description = "malformed_body, bad_idempotency_key"),
        (status = 401, description = "unauthorized"),
        (status = 409, description = "idempotency_conflict"),
        (status = 408, description = "body_timeout"),
        (status = 413, description = "body_too_large"),
        (status = 422, description = "invalid_trade: a field breaks its rule, or `time` is more than feeds.max_future_skew_ms ahead of the server clock")),
    security(("bearer" = [])))]
pub async fn record_trade(
    State(portfolio): State<PortfolioState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|e| Problem::body_rejection(&e, portfolio.max_body_bytes))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k)
                if (1..=MAX_IDEMPOTENCY_KEY).contains(&k.len())
                    && k.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Some(k.to_owned())
            }
            _ => {
                return Err(Problem::new(
                    ProblemCode::BadIdempotencyKey,
                    format!(
                        "Idempotency-Key must be 1..={MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                    ),
                ));
            }
        },
    };
    let input: TradeIn = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(ProblemCode::MalformedBody, format!("malformed trade: {e}")))?;
    let trade = validate(input, now_ns(), portfolio.max_future_skew_ms)?;
    match portfolio
        .store
        .record_trade(caller.0, &trade, key.as_deref(), accounting::fold)
        .await
    {
        Ok(Recorded::Created(t)) => {
            // Committed: the user's `portfolio` subscribers get the new state.
            portfolio.live.trade_recorded(caller.0);
            Ok((StatusCode::CREATED, Json(TradeOut::from(t))).into_response())
        }
        Ok(Recorded::Replayed(t)) => {
            let mut res = Json(TradeOut::from(t)).into_response();
            res.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(res)
        }
        Err(StoreError::IdempotencyConflict) => Err(Problem::new(
            ProblemCode::IdempotencyConflict,
            "this Idempotency-Key was used for a different trade",
        )),
        Err(StoreError::OutOfRange(e)) => Err(invalid(e.to_string())),
        Err(e) => Err(store_problem(e)),
    }
}

/// The caller's positions valued at live prices, with realized and unrealized P&L.
#[utoipa::path(get, path = "/api/v1/portfolio", tag = "portfolio",
    responses((status = 200, body = PortfolioOut), (status = 401, description = "unauthorized")),
    security(("bearer" = [])))]
pub(crate) async fn portfolio(
    State(portfolio): State<PortfolioState>,
    caller: Caller,
) -> Result<Response, Problem> {
    let positions = portfolio
        .store
        .positions(caller.0, accounting::fold)
        .await
        .map_err(store_problem)?;
    let valuation = accounting::value(&positions, |symbol| {
        accounting::live_price(&portfolio.symbols, &portfolio.hub, symbol)
    });
    Ok(Json(PortfolioOut::from(valuation)).into_response())
}
