//! `GET /api/v1/ticker` and `/api/v1/ticker/{symbol}`: the rolling 24 h statistics, exactly as
//! the latest `ticker:` event of each symbol carries them (read from the hub's rings, so REST
//! and the channel agree; the window is defined in `pipeline::ticker`).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::market::MarketState;
use super::params;
use crate::model::{ChannelId, Kind, Payload, SymbolId, TickerStats};
use crate::protocol::{Problem, ProblemCode};

/// A symbol's ticker as REST shows it: the fields of the `ticker` event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TickerOut {
    symbol: String,
    /// The `seq` of the `ticker:` event these figures are.
    seq: u64,
    /// When the pipeline computed them, ns since the epoch.
    ts: i64,
    /// Price of the window's first trade (by exchange time).
    open: f64,
    high: f64,
    low: f64,
    /// Price of the window's newest trade (by exchange time).
    last: f64,
    /// Σ size.
    volume: f64,
    /// Σ price × size.
    quote_volume: f64,
    /// `last - open`.
    change: f64,
    /// `(last - open) / open × 100`.
    change_pct: f64,
    trades: u64,
    /// Start of the window, ms since the epoch: 1,440 minutes before the newest trade's minute.
    open_time: i64,
    /// Exchange time of the newest trade, ms since the epoch.
    close_time: i64,
}

impl TickerOut {
    fn new(symbol: String, seq: u64, ts: i64, s: &TickerStats) -> Self {
        TickerOut {
            symbol,
            seq,
            ts,
            open: s.open,
            high: s.high,
            low: s.low,
            last: s.last,
            volume: s.volume,
            quote_volume: s.quote_volume,
            change: s.change,
            change_pct: s.change_pct,
            trades: s.trades,
            open_time: s.open_time_ms,
            close_time: s.close_time_ms,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TickerList {
    /// Every symbol with a ticker, in the order the server first saw them.
    tickers: Vec<TickerOut>,
}

/// The latest ticker of `symbol`, if it has had one.
fn latest(market: &MarketState, symbol: SymbolId, name: String) -> Option<TickerOut> {
    let ch = ChannelId {
        kind: Kind::Ticker,
        symbol,
    };
    let e = market.hub.latest_event(ch)?;
    match e.payload {
        Payload::Ticker(s) => Some(TickerOut::new(name, e.seq, e.ts, &s)),
        _ => None,
    }
}

/// Every symbol's rolling 24 h ticker.
#[utoipa::path(get, path = "/api/v1/ticker", tag = "market",
    responses((status = 200, body = TickerList)))]
pub(crate) async fn tickers(State(market): State<MarketState>) -> Response {
    let tickers = market
        .symbols
        .all()
        .into_iter()
        .filter_map(|(id, name)| latest(&market, id, name.to_string()))
        .collect();
    Json(TickerList { tickers }).into_response()
}

/// One symbol's rolling 24 h ticker.
#[utoipa::path(get, path = "/api/v1/ticker/{symbol}", tag = "market",
    params(("symbol" = String, Path)),
    responses((status = 200, body = TickerOut),
        (status = 404, description = "unknown_symbol, or not_found: no ticker yet (no trade read by the pipeline)")))]
pub(crate) async fn ticker(
    State(market): State<MarketState>,
    Path(symbol): Path<String>,
) -> Result<Response, Problem> {
    let id = params::live_symbol(&market.symbols, &symbol)?;
    match latest(&market, id, symbol.clone()) {
        Some(t) => Ok(Json(t).into_response()),
        None => Err(Problem::new(
            ProblemCode::NotFound,
            format!("{symbol} has no ticker yet"),
        )),
    }
}
