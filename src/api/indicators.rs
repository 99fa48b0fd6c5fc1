//! `GET /api/v1/indicators/{symbol}`: without a query, the latest values from the pipeline
//! (the v1 response); with `from`, `to`, `limit` or `order`, a page of the stored indicator
//! history (one row per closed 1 s bar), paged like `/bars`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::IntoParams;

use super::market::{MarketState, known_symbol, store_problem};
use super::params::{self, Params};
use crate::model::{ChannelId, Kind};
use crate::protocol::{IndicatorFields, Problem};
use crate::store::Order;

/// Query parameters of `/indicators/{symbol}`; none of them: the latest values.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct IndicatorsQuery {
    /// RFC 3339 or epoch ms, inclusive: the first closed 1 s bar's start (pattern:
    /// `params::TIME_PATTERN`)
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

impl IndicatorsQuery {
    /// Any parameter asks for history; none for the latest values (v1).
    fn is_history(&self) -> bool {
        self.from.is_some() || self.to.is_some() || self.limit.is_some() || self.order.is_some()
    }
}

/// A page of indicator history.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct IndicatorHistory {
    symbol: String,
    /// In the requested `order`, one per closed 1 s bar: `start` (the bar's start, ms since
    /// the epoch, as on `bars.1s`) and every indicator field as the server named it then
    /// (`sma_20`, `ema_20`, `rsi_14`, `volatility`, `vwap`, `mid`, `spread`, `imbalance` by
    /// default; `null` while warming up).
    #[schema(value_type = Vec<Object>)]
    indicators: Vec<Value>,
    /// `order=asc`: pass as `from` for the next page; null on the last page (and with `desc`).
    next_from: Option<i64>,
    /// `order=desc`: pass as `to` for the next (older) page; null on the last page (and with
    /// `asc`).
    next_to: Option<i64>,
}

/// The v1 answer without parameters: the latest values from the pipeline, each indicator
/// field beside these (`sma_20`, ..., `null` before warm-up). Described for the OpenAPI
/// document; the handler builds it as a JSON object (the field names follow the config).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct LatestIndicators {
    symbol: String,
    /// The `indicators:{symbol}` channel's latest `seq` (0 before its first event).
    seq: u64,
    /// When the latest values were computed, ns since the epoch; null before any.
    ts: Option<i64>,
}

/// `/indicators/{symbol}`'s 200: the latest values without parameters, a history page with any.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum IndicatorsAnswer {
    Latest(LatestIndicators),
    History(IndicatorHistory),
}

/// Without parameters the latest indicator values from the pipeline (`{symbol, seq, ts,
/// sma_20, ...}`, nulls before warm-up); with `from`, `to`, `limit` or `order` the stored
/// history, one row per closed 1 s bar, oldest first or newest first with `order=desc`.
#[utoipa::path(get, path = "/api/v1/indicators/{symbol}", tag = "market",
    params(("symbol" = String, Path), IndicatorsQuery),
    responses((status = 200, body = IndicatorsAnswer,
            description = "with parameters: a page of history; without: the latest values, \
                `{symbol, seq, ts, sma_20, ema_20, rsi_14, volatility, vwap, mid, spread, imbalance}`"),
        (status = 400, description = "bad_request, bad_time, bad_time_range, limit_out_of_range"),
        (status = 404, description = "unknown_symbol")))]
pub(crate) async fn indicators(
    State(market): State<MarketState>,
    Path(symbol): Path<String>,
    q: Params<IndicatorsQuery>,
) -> Result<Response, Problem> {
    let p = params::params(q)?;
    if !p.is_history() {
        return latest(&market, symbol);
    }
    let (from, to) = params::time_range(p.from.as_deref(), p.to.as_deref())?;
    let api = &market.api;
    let limit = params::limit(p.limit.as_deref(), api.default_page_size, api.max_page_size)?;
    let order = params::order(p.order.as_deref())?;
    known_symbol(&market, &symbol).await?;
    let page = market
        .store
        .indicator_history(&symbol, (from, to), limit, order)
        .await
        .map_err(store_problem)?;
    let next = page.next.map(|ns| ns / 1_000_000);
    let (next_from, next_to) = match order {
        Order::Asc => (next, None),
        Order::Desc => (None, next),
    };
    let indicators = page
        .rows
        .into_iter()
        .map(|row| {
            let start = row.start / 1_000_000;
            let mut m = match serde_json::from_str::<Map<String, Value>>(&row.fields) {
                Ok(m) => m,
                Err(error) => {
                    // Written by the recorder as a JSON object: a row that is not one is
                    // served with its time alone, and said.
                    tracing::warn!(%symbol, start, %error, "stored indicator row is not a JSON object");
                    Map::new()
                }
            };
            m.insert("start".into(), json!(start));
            Value::Object(m)
        })
        .collect();
    Ok(Json(IndicatorHistory {
        symbol,
        indicators,
        next_from,
        next_to,
    })
    .into_response())
}

/// The v1 response: the latest values from the pipeline's read model.
fn latest(market: &MarketState, symbol: String) -> Result<Response, Problem> {
    let id = params::live_symbol(&market.symbols, &symbol)?;
    // The pipeline's read path: one read lock, never waiting on a batch in progress.
    let latest = market.indicators.get(id);
    let ts = latest.as_ref().map(|(_, ts)| *ts);
    let v = latest.map(|(v, _)| v).unwrap_or_default();
    let seq = market.hub.last_seq(ChannelId {
        kind: Kind::Indicators,
        symbol: id,
    });
    let mut m = Map::new();
    m.insert("symbol".into(), json!(symbol));
    m.insert("seq".into(), json!(seq));
    m.insert("ts".into(), json!(ts));
    IndicatorFields::new(&market.periods).insert(&mut m, &v);
    Ok(Json(Value::Object(m)).into_response())
}
