//! Portfolio: `POST /api/v1/portfolio/trades` records a fill, `GET /api/v1/portfolio` values the
//! caller's positions at live prices. Callers authenticate with `Authorization: Bearer <key>`
//! (keys come from `tickcast user add NAME`) and see only their own data.
//!
//! Positions use the average-cost method. A sell larger than the long position closes it and
//! opens a short at the fill price (and a buy larger than a short does the reverse): fills are
//! facts reported after the event, so the server records them rather than refusing them.
//! Reductions realize `closed quantity × (price − average cost)` (sign-flipped for shorts);
//! unrealized P&L is `quantity × (live price − average cost)`, null while a symbol has no live
//! price.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::market::store_problem;
use super::problem::Problem;
use crate::model::{Side, is_valid_symbol, now_ns};
use crate::server::Shared;
use crate::store::{NewTrade, Recorded, StoreError, Trade};
use crate::timestamp::{self, TimestampError};

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// Quantities below this are a flat position (float residue of partial closes).
const FLAT: f64 = 1e-9;

/// The authenticated user of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub i64);

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let Some(key) = super::ingest::bearer(&parts.headers) else {
            return Err(Problem::unauthorized(
                "missing `Authorization: Bearer <API key>`",
            ));
        };
        match shared.store.user_for_key(key).await {
            Ok(Some(user)) => Ok(Caller(user)),
            Ok(None) => Err(Problem::unauthorized("invalid API key")),
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
pub struct TradeIn {
    symbol: String,
    /// `buy` or `sell`
    side: String,
    quantity: f64,
    price: f64,
    /// Fill time, RFC 3339 or epoch ms; now when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    time: Option<TimeIn>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TradeOut {
    id: i64,
    symbol: String,
    side: &'static str,
    quantity: f64,
    price: f64,
    /// Fill time, ns since the epoch.
    ts: i64,
}

impl From<Trade> for TradeOut {
    fn from(t: Trade) -> Self {
        TradeOut {
            id: t.id,
            symbol: t.trade.symbol,
            side: t.trade.side.as_str(),
            quantity: t.trade.quantity,
            price: t.trade.price,
            ts: t.trade.ts,
        }
    }
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_trade", detail)
}

/// Checks a trade body; every rule has its message.
fn validate(t: TradeIn) -> Result<NewTrade, Problem> {
    if !is_valid_symbol(&t.symbol) {
        return Err(invalid(format!(
            "symbol must match [A-Z0-9._-]{{1,32}}, got {:?}",
            t.symbol
        )));
    }
    let side = Side::parse_strict(&t.side)
        .ok_or_else(|| invalid(format!("side must be buy or sell, got {:?}", t.side)))?;
    if !(t.quantity.is_finite() && t.quantity > 0.0) {
        return Err(invalid("quantity must be a finite number > 0"));
    }
    if !(t.price.is_finite() && t.price > 0.0) {
        return Err(invalid("price must be a finite number > 0"));
    }
    let ts = match t.time {
        None => now_ns(),
        Some(TimeIn::Ms(n)) => timestamp::from_integer(n).map_err(|e| match e {
            TimestampError::NotPositive(_) => invalid("time must be after the epoch"),
            _ => invalid("time is out of range"),
        })?,
        Some(TimeIn::Text(s)) => timestamp::parse(&s)
            .map_err(|_| invalid(format!("time must be RFC 3339 or epoch ms, got {s:?}")))?,
    };
    Ok(NewTrade {
        symbol: t.symbol,
        side,
        quantity: t.quantity,
        price: t.price,
        ts,
    })
}

/// Records a fill; a repeated `Idempotency-Key` returns the first result instead.
#[utoipa::path(post, path = "/api/v1/portfolio/trades", tag = "portfolio",
    request_body = TradeIn,
    params(("Idempotency-Key" = Option<String>, Header, description = "1..=128 visible ASCII characters")),
    responses((status = 201, body = TradeOut), (status = 200, body = TradeOut, description = "replayed"),
        (status = 400, description = "malformed_body, bad_idempotency_key"),
        (status = 401, description = "unauthorized"),
        (status = 409, description = "idempotency_conflict"),
        (status = 413, description = "body_too_large"),
        (status = 422, description = "invalid_trade")),
    security(("bearer" = [])))]
pub async fn record_trade(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|e| Problem::body_rejection(&e, shared.config.api.max_body_bytes))?;
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
                return Err(Problem::bad_request(
                    "bad_idempotency_key",
                    format!(
                        "Idempotency-Key must be 1..={MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                    ),
                ));
            }
        },
    };
    let input: TradeIn = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request("malformed_body", format!("malformed trade: {e}")))?;
    let trade = validate(input)?;
    match shared
        .store
        .record_trade(caller.0, &trade, key.as_deref())
        .await
    {
        Ok(Recorded::Created(t)) => {
            Ok((StatusCode::CREATED, Json(TradeOut::from(t))).into_response())
        }
        Ok(Recorded::Replayed(t)) => {
            let mut res = Json(TradeOut::from(t)).into_response();
            res.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(res)
        }
        Err(StoreError::IdempotencyConflict) => Err(Problem::new(
            StatusCode::CONFLICT,
            "idempotency_conflict",
            "this Idempotency-Key was used for a different trade",
        )),
        Err(e) => Err(store_problem(e)),
    }
}

/// One symbol's position.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Position {
    /// Signed: negative is short.
    pub quantity: f64,
    pub avg_cost: f64,
    pub realized: f64,
}

impl Position {
    /// Applies one fill (average-cost method).
    pub fn apply(&mut self, side: Side, quantity: f64, price: f64) {
        let d = match side {
            Side::Buy => quantity,
            Side::Sell => -quantity,
        };
        let q = self.quantity;
        if q.abs() < FLAT || q.signum() == d.signum() {
            let total = q.abs() + d.abs();
            self.avg_cost = (q.abs() * self.avg_cost + d.abs() * price) / total;
            self.quantity = q + d;
            return;
        }
        let closed = d.abs().min(q.abs());
        self.realized += closed * (price - self.avg_cost) * q.signum();
        self.quantity = q + d;
        if self.quantity.abs() < FLAT {
            self.quantity = 0.0;
            self.avg_cost = 0.0;
        } else if self.quantity.signum() != q.signum() {
            // Flipped through flat: the remainder opened at this fill's price.
            self.avg_cost = price;
        }
    }
}

/// Positions per symbol from fills in time order.
pub fn positions(trades: &[Trade]) -> BTreeMap<String, Position> {
    let mut out: BTreeMap<String, Position> = BTreeMap::new();
    for t in trades {
        out.entry(t.trade.symbol.clone()).or_default().apply(
            t.trade.side,
            t.trade.quantity,
            t.trade.price,
        );
    }
    out
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PositionOut {
    symbol: String,
    /// Negative when short.
    quantity: f64,
    avg_cost: f64,
    /// Live price from the ring; null before the symbol's first tick.
    last_price: Option<f64>,
    market_value: Option<f64>,
    unrealized_pnl: Option<f64>,
    realized_pnl: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PortfolioOut {
    positions: Vec<PositionOut>,
    realized_pnl: f64,
    /// Null when an open position has no live price yet.
    unrealized_pnl: Option<f64>,
    trades: usize,
}

/// The caller's positions valued at live prices, with realized and unrealized P&L.
#[utoipa::path(get, path = "/api/v1/portfolio", tag = "portfolio",
    responses((status = 200, body = PortfolioOut), (status = 401, description = "unauthorized")),
    security(("bearer" = [])))]
pub async fn portfolio(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Response, Problem> {
    let trades = shared.store.trades(caller.0).await.map_err(store_problem)?;
    let mut realized = 0.0;
    let mut unrealized = Some(0.0);
    let positions = positions(&trades)
        .into_iter()
        .map(|(symbol, p)| {
            let last = shared
                .symbols
                .get(&symbol)
                .and_then(|id| shared.hub.latest_tick(id))
                .map(|t| t.price);
            let upnl = if p.quantity == 0.0 {
                Some(0.0)
            } else {
                last.map(|px| p.quantity * (px - p.avg_cost))
            };
            realized += p.realized;
            unrealized = match (unrealized, upnl) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
            PositionOut {
                symbol,
                quantity: p.quantity,
                avg_cost: p.avg_cost,
                last_price: last,
                market_value: last.map(|px| px * p.quantity),
                unrealized_pnl: upnl,
                realized_pnl: p.realized,
            }
        })
        .collect();
    Ok(Json(PortfolioOut {
        positions,
        realized_pnl: realized,
        unrealized_pnl: unrealized,
        trades: trades.len(),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(fills: &[(Side, f64, f64)]) -> Position {
        let mut p = Position::default();
        for &(s, q, px) in fills {
            p.apply(s, q, px);
        }
        p
    }

    #[test]
    fn average_cost_and_realized_pnl() {
        use Side::*;
        // Table: fills, then (quantity, avg cost, realized).
        type Case<'a> = (&'a [(Side, f64, f64)], (f64, f64, f64));
        let cases: &[Case] = &[
            (&[(Buy, 10.0, 100.0)], (10.0, 100.0, 0.0)),
            (
                &[(Buy, 10.0, 100.0), (Buy, 10.0, 110.0)],
                (20.0, 105.0, 0.0),
            ),
            (
                &[(Buy, 10.0, 100.0), (Buy, 10.0, 110.0), (Sell, 5.0, 120.0)],
                (15.0, 105.0, 75.0),
            ),
            (
                &[(Buy, 10.0, 100.0), (Sell, 10.0, 90.0)],
                (0.0, 0.0, -100.0),
            ),
            // Oversell flips to a short at the fill price.
            (
                &[(Buy, 10.0, 100.0), (Sell, 15.0, 110.0)],
                (-5.0, 110.0, 100.0),
            ),
            // Covering a short realizes (avg - price) per unit.
            (&[(Sell, 10.0, 50.0), (Buy, 4.0, 40.0)], (-6.0, 50.0, 40.0)),
        ];
        for (fills, (q, avg, realized)) in cases {
            let p = run(fills);
            assert!((p.quantity - q).abs() < 1e-9, "{fills:?}: {p:?}");
            assert!((p.avg_cost - avg).abs() < 1e-9, "{fills:?}: {p:?}");
            assert!((p.realized - realized).abs() < 1e-9, "{fills:?}: {p:?}");
        }
    }
}
