//! Market data: `GET /api/v1/symbols`, `/ticks/{symbol}`, `/bars/{symbol}` (and
//! `/indicators/{symbol}` in `indicators.rs`). Live values come from the hub's rings; history
//! from the store.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::params::{self, Params};
use crate::model::{BarInterval, IndicatorPeriods, Side, Symbols, is_valid_symbol};
use crate::pipeline::LatestIndicators;
use crate::protocol::Problem;
use crate::protocol::{Num, ProblemCode};
use crate::rooms::Hub;
use crate::store::{Order, Store, StoreError};

use super::ApiConfig;

/// What the market-data handlers read: live values from the hub and the pipeline, history from
/// the store.
#[derive(Debug, Clone)]
pub struct MarketState {
    pub symbols: Arc<Symbols>,
    pub hub: Arc<Hub>,
    pub store: Arc<Store>,
    pub indicators: Arc<LatestIndicators>,
    pub api: Arc<ApiConfig>,
    /// Name the indicator fields (`sma_20`).
    pub periods: IndicatorPeriods,
    /// Levels per side of the book views (`book.depth`).
    pub book_depth: usize,
}

/// A database failure as a response: 503 when the database is unreachable, 500 otherwise.
pub(crate) fn store_problem(e: StoreError) -> Problem {
    if e.is_unavailable() {
        tracing::warn!(error = %e, "database unavailable for a request");
        Problem::new(
            ProblemCode::DatabaseUnavailable,
            "the database is unavailable; retry shortly",
        )
        .retry_after(1)
    } else {
        Problem::internal(&e)
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SymbolInfo {
    symbol: String,
    /// Latest live price; null before the first tick.
    price: Option<f64>,
    /// Ingest time of that tick, ns since the epoch.
    ts: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SymbolList {
    symbols: Vec<SymbolInfo>,
}

/// Symbols known to the server, with their latest live price.
#[utoipa::path(get, path = "/api/v1/symbols", tag = "market",
    responses((status = 200, body = SymbolList)))]
pub async fn symbols(State(market): State<MarketState>) -> Response {
    let symbols = market
        .symbols
        .all()
        .into_iter()
        .map(|(id, name)| {
            let tick = market.hub.latest_tick(id);
            SymbolInfo {
                symbol: name.to_string(),
                price: tick.map(|t| t.price),
                ts: tick.map(|t| t.ts),
            }
        })
        .collect();
    Json(SymbolList { symbols }).into_response()
}

/// Live symbols, and symbols with stored history from earlier runs. The history handlers ask
/// only when their page is empty (a page with rows names a known symbol): one query less per
/// page, the same answers.
pub(crate) async fn known_symbol(market: &MarketState, symbol: &str) -> Result<(), Problem> {
    if !is_valid_symbol(symbol) {
        return Err(params::unknown_symbol(symbol));
    }
    if market.symbols.get(symbol).is_some() {
        return Ok(());
    }
    let stored = market
        .store
        .ticks(symbol, (0, i64::MAX), None, 1, Order::Asc)
        .await
        .map_err(store_problem)?;
    if stored.is_empty() {
        Err(params::unknown_symbol(symbol))
    } else {
        Ok(())
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TickOut {
    /// Exchange time, ns since the epoch (the socket's `xts`; v1 named it `ts`).
    ts: i64,
    /// Exchange time again, under the socket's name.
    xts: i64,
    /// Server ingest time, ns since the epoch (the socket's `ts`).
    ingest_ts: i64,
    /// The server run that assigned `seq` (an `ack`'s `epoch`).
    epoch: i64,
    seq: i64,
    price: f64,
    /// An integer when it is whole, as on the socket.
    #[schema(value_type = f64)]
    size: Num,
    /// `null` when the source gave no side.
    side: Option<&'static str>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TickPage {
    symbol: String,
    ticks: Vec<TickOut>,
    /// Pass as `cursor` (with the same `order`) for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// Query parameters of `/ticks/{symbol}`. Values stay strings here: their parsers give each
/// malformed value its own problem code.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TicksQuery {
    /// RFC 3339 or epoch ms, inclusive (pattern: `params::TIME_PATTERN`)
    #[param(min_length = 1)]
    from: Option<String>,
    /// RFC 3339 or epoch ms, exclusive; after `from`
    #[param(min_length = 1)]
    to: Option<String>,
    /// 1..=`api.max_page_size` (1000 by default)
    #[param(value_type = Option<u64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page
    #[param(pattern = "^[0-9a-f]{32}$")]
    cursor: Option<String>,
    /// `asc` (default): oldest first; `desc`: newest first (the latest `limit`)
    #[param(value_type = Option<String>, pattern = "^(asc|desc)$")]
    order: Option<String>,
}

/// Stored ticks, oldest first (by exchange time, then arrival), or newest first with
/// `order=desc`; paginated by cursor.
#[utoipa::path(get, path = "/api/v1/ticks/{symbol}", tag = "market",
    params(("symbol" = String, Path), TicksQuery),
    responses((status = 200, body = TickPage),
        (status = 400, description = "bad_request, bad_time, bad_time_range, limit_out_of_range, bad_cursor"),
        (status = 404, description = "unknown_symbol")))]
pub(crate) async fn ticks(
    State(market): State<MarketState>,
    Path(symbol): Path<String>,
    q: Params<TicksQuery>,
) -> Result<Response, Problem> {
    let p = params::params(q)?;
    let (from, to) = params::time_range(p.from.as_deref(), p.to.as_deref())?;
    let api = &market.api;
    let limit = params::limit(p.limit.as_deref(), api.default_page_size, api.max_page_size)?;
    let after = p.cursor.as_deref().map(params::decode_cursor).transpose()?;
    let order = params::order(p.order.as_deref())?;
    if !is_valid_symbol(&symbol) {
        return Err(params::unknown_symbol(&symbol));
    }
    let mut rows = market
        .store
        .ticks(&symbol, (from, to), after, limit + 1, order)
        .await
        .map_err(store_problem)?;
    // A page with ticks names a symbol with history; only an empty one asks whether it is known.
    if rows.is_empty() {
        known_symbol(&market, &symbol).await?;
    }
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| params::encode_cursor(r.row.ts, r.id))
    } else {
        None
    };
    let ticks = rows
        .into_iter()
        .map(|r| TickOut {
            ts: r.row.ts,
            xts: r.row.ts,
            ingest_ts: r.row.ingest_ts,
            epoch: r.row.epoch,
            seq: r.row.seq,
            price: r.row.price,
            size: Num(r.row.size),
            side: r.row.side.map(Side::as_str),
        })
        .collect();
    Ok(Json(TickPage {
        symbol,
        ticks,
        next_cursor,
    })
    .into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct BarOut {
    /// Bucket start, ms since the epoch (as on the `bars.*` channels).
    start: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    /// An integer when it is whole, as on the socket.
    #[schema(value_type = f64)]
    volume: Num,
    trades: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct BarPage {
    symbol: String,
    interval: String,
    /// In the requested `order`.
    bars: Vec<BarOut>,
    /// `order=asc`: pass as `from` for the next page; null on the last page (and with `desc`).
    next_from: Option<i64>,
    /// `order=desc`: pass as `to` for the next (older) page; null on the last page (and with
    /// `asc`).
    next_to: Option<i64>,
}

/// Query parameters of `/bars/{symbol}`; values are parsed (and refused) by the handler.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct BarsQuery {
    /// 1s, 1m, 5m, 15m, 1h, 4h or 1d
    #[param(required = true, value_type = String, pattern = "^(1s|1m|5m|15m|1h|4h|1d)$")]
    interval: Option<String>,
    /// RFC 3339 or epoch ms, inclusive (pattern: `params::TIME_PATTERN`)
    #[param(min_length = 1)]
    from: Option<String>,
    /// RFC 3339 or epoch ms, exclusive; after `from`
    #[param(min_length = 1)]
    to: Option<String>,
    /// 1..=`api.max_page_size` (1000 by default)
    #[param(value_type = Option<u64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `asc` (default): oldest first from `from`; `desc`: newest first back from `to` (the
    /// latest `limit`)
    #[param(value_type = Option<String>, pattern = "^(asc|desc)$")]
    order: Option<String>,
}

/// OHLCV bars as the pipeline closed and stored them, each interval from its own stored bars
/// (never rolled up); oldest first, or newest first with `order=desc`.
#[utoipa::path(get, path = "/api/v1/bars/{symbol}", tag = "market",
    params(("symbol" = String, Path), BarsQuery),
    responses((status = 200, body = BarPage),
        (status = 400, description = "bad_request, bad_interval, bad_time, bad_time_range, limit_out_of_range"),
        (status = 404, description = "unknown_symbol")))]
pub(crate) async fn bars(
    State(market): State<MarketState>,
    Path(symbol): Path<String>,
    q: Params<BarsQuery>,
) -> Result<Response, Problem> {
    let p = params::params(q)?;
    let interval = p.interval.as_deref().unwrap_or("");
    let Some(iv) = BarInterval::parse(interval) else {
        let names: Vec<&str> = BarInterval::ALL.iter().map(|i| i.name()).collect();
        return Err(Problem::new(
            ProblemCode::BadInterval,
            format!(
                "`interval` must be one of {}, got {interval:?}",
                names.join(", ")
            ),
        ));
    };
    let (from, to) = params::time_range(p.from.as_deref(), p.to.as_deref())?;
    let api = &market.api;
    let limit = params::limit(p.limit.as_deref(), api.default_page_size, api.max_page_size)?;
    let order = params::order(p.order.as_deref())?;
    if !is_valid_symbol(&symbol) {
        return Err(params::unknown_symbol(&symbol));
    }
    let page = market
        .store
        .bars(&symbol, iv.ns(), (from, to), limit, order)
        .await
        .map_err(store_problem)?;
    // Stored bars are made of the symbol's ticks; only an empty page asks whether it is known.
    if page.bars.is_empty() {
        known_symbol(&market, &symbol).await?;
    }
    // Pages end at a start boundary: the next page's `from` (asc) or `to` (desc).
    let next = page.next.map(|ns| ns / 1_000_000);
    let (next_from, next_to) = match order {
        Order::Asc => (next, None),
        Order::Desc => (None, next),
    };
    let bars = page
        .bars
        .into_iter()
        .map(|b| BarOut {
            start: b.start / 1_000_000,
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: Num(b.volume),
            trades: b.trades,
        })
        .collect();
    Ok(Json(BarPage {
        symbol,
        interval: iv.name().to_owned(),
        bars,
        next_from,
        next_to,
    })
    .into_response())
}
