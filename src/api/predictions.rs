//! `GET /api/v1/predictions/{symbol}?horizon_s=&model=`: a forecast from the recent final 1 s bar
//! closes held in the hub's `bars.1s` ring.
//!
//! Results are cached per (symbol, model, horizon) until the symbol's next 1 s bar (the
//! pipeline's next batch): the cache entry remembers the bar channel's `seq` it was computed at.
//! Concurrent requests for one key share one computation (a `OnceCell` per entry), which runs
//! on the blocking pool so the model math never stalls the async workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::OnceCell;
use utoipa::IntoParams;

use super::ApiConfig;
use super::params::{self, Params};
use crate::model::{BarInterval, ChannelId, Kind, SymbolId, Symbols};
use crate::pipeline::predictions::{PredictionSettings, closes};
use crate::predict::{Forecast, Model, PredictError};
use crate::protocol::Problem;
use crate::protocol::ProblemCode;
use crate::rooms::Hub;

/// What the predictions handler uses: 1 s bars from the hub's rings, and the results cache.
#[derive(Debug, Clone)]
pub struct PredictionState {
    pub symbols: Arc<Symbols>,
    pub hub: Arc<Hub>,
    pub api: Arc<ApiConfig>,
    pub cache: Arc<Cache>,
}

/// Entries kept before stale ones are evicted.
const CACHE_MAX: usize = 10_000;

/// Default horizon when `horizon_s` is absent.
pub(crate) const DEFAULT_HORIZON_S: u64 = 60;

type Key = (SymbolId, Model, u64);
type Computed = Result<Arc<Prediction>, PredictError>;
/// A cache entry: the bar `seq` it was computed at, and the (possibly pending) result.
type Entry = (u64, Arc<OnceCell<Computed>>);

/// A computed answer, with the data it was computed from.
#[derive(Debug)]
pub(crate) struct Prediction {
    forecast: Forecast,
    last_close: f64,
    /// `start` (ms) of the newest bar used.
    as_of_ms: i64,
}

/// Per-key single-flight cache, invalidated by the symbol's next 1 s bar.
#[derive(Debug, Default)]
pub struct Cache {
    // A std mutex: only map lookups and inserts happen under it, never an await.
    entries: Mutex<HashMap<Key, Entry>>,
    /// How many computations ran (tests check single-flight with it).
    pub computed: std::sync::atomic::AtomicU64,
}

impl Cache {
    fn cell(&self, key: Key, seq: u64) -> Arc<OnceCell<Computed>> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, cell)) = map.get(&key)
            && *s == seq
        {
            return cell.clone();
        }
        if map.len() >= CACHE_MAX {
            map.retain(|k, (s, _)| k.0 == key.0 && *s == seq);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        let cell = Arc::new(OnceCell::new());
        map.insert(key, (seq, cell.clone()));
        cell
    }
}

/// What the `predictions:SYM` channel computes with: this endpoint's defaults, so its events
/// equal what a request without `horizon_s` and `model` parameters answers per model.
pub(crate) fn settings(api: &ApiConfig) -> PredictionSettings {
    PredictionSettings {
        window: api.prediction_window,
        ar_order: api.ar_order,
        horizon_s: DEFAULT_HORIZON_S.min(api.max_horizon_s),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PredictionOut {
    symbol: String,
    model: &'static str,
    horizon_s: u64,
    last_close: f64,
    /// Point forecast of the close `horizon_s` seconds after the newest bar.
    forecast: f64,
    /// 95 % prediction interval `{level, low, high}`.
    #[schema(value_type = Object)]
    interval: serde_json::Value,
    /// `{rmse_in_sample, rmse_walk_forward, rmse_naive_walk_forward, skill, points, params}`:
    /// `rmse_naive_walk_forward` is the naive random-walk forecast's (next close = last close)
    /// walk-forward RMSE on the same held-out points as `rmse_walk_forward`, and `skill` is
    /// `1 - rmse_walk_forward / rmse_naive_walk_forward` (above 0: the model beats the naive
    /// forecast; null when the naive forecast made no error).
    #[schema(value_type = Object)]
    fit: serde_json::Value,
    /// `start` (ms) of the newest 1 s bar used.
    as_of: i64,
}

/// Query parameters of `/predictions/{symbol}`; values are parsed (and refused) by the handler.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PredictionsQuery {
    /// seconds ahead, 1..=api.max_horizon_s (3600 by default; default 60)
    #[param(value_type = Option<u64>, minimum = 1, maximum = 3600)]
    horizon_s: Option<String>,
    /// ar (default) or ewma
    #[param(pattern = "^(ar|ewma)$")]
    model: Option<String>,
}

/// A model forecast with a 95 % interval and the model's fit error.
#[utoipa::path(get, path = "/api/v1/predictions/{symbol}", tag = "predictions",
    params(("symbol" = String, Path), PredictionsQuery),
    responses((status = 200, body = PredictionOut),
        (status = 400, description = "bad_request, bad_horizon, bad_model"),
        (status = 404, description = "unknown_symbol"),
        (status = 422, description = "insufficient_data")))]
pub(crate) async fn predictions(
    State(state): State<PredictionState>,
    Path(symbol): Path<String>,
    q: Params<PredictionsQuery>,
) -> Result<Response, Problem> {
    let p = params::params(q)?;
    let api = &state.api;
    let horizon = match p.horizon_s {
        None => DEFAULT_HORIZON_S.min(api.max_horizon_s),
        Some(v) => match v.parse::<u64>() {
            Ok(h) if (1..=api.max_horizon_s).contains(&h) => h,
            _ => {
                return Err(Problem::new(
                    ProblemCode::BadHorizon,
                    format!(
                        "`horizon_s` must be an integer in 1..={}, got {v:?}",
                        api.max_horizon_s
                    ),
                ));
            }
        },
    };
    let model = match p.model {
        None => Model::Ar,
        Some(m) => Model::parse(&m).ok_or_else(|| {
            Problem::new(
                ProblemCode::BadModel,
                format!("`model` must be ar or ewma, got {m:?}"),
            )
        })?,
    };
    let id = params::live_symbol(&state.symbols, &symbol)?;
    let seq = state.hub.last_seq(ChannelId {
        kind: Kind::Bars(BarInterval::S1),
        symbol: id,
    });
    let cell = state.cache.cell((id, model, horizon), seq);
    let computed = cell
        .get_or_init(|| {
            let state = state.clone();
            async move {
                state
                    .cache
                    .computed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let window = state.api.prediction_window;
                let order = state.api.ar_order;
                let job = tokio::task::spawn_blocking(move || {
                    let (closes, as_of_ms) = closes(&state.hub, id, window);
                    let forecast = model.forecast(&closes, order, horizon as usize)?;
                    Ok(Arc::new(Prediction {
                        forecast,
                        last_close: closes.last().copied().unwrap_or(0.0),
                        as_of_ms,
                    }))
                });
                job.await.unwrap_or(Err(PredictError::BadInput))
            }
        })
        .await;
    let pred = match computed {
        Ok(p) => p.clone(),
        Err(e @ PredictError::TooFewPoints { .. }) => {
            return Err(Problem::new(
                ProblemCode::InsufficientData,
                format!("not enough final 1 s bars yet: {e}"),
            ));
        }
        Err(e) => {
            return Err(Problem::new(
                ProblemCode::InsufficientData,
                format!("the model cannot be fitted on the current bars: {e}"),
            ));
        }
    };
    let f = &pred.forecast;
    let params: serde_json::Map<String, serde_json::Value> = f
        .params
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    Ok(Json(PredictionOut {
        symbol,
        model: model.as_str(),
        horizon_s: horizon,
        last_close: pred.last_close,
        forecast: f.point,
        interval: json!({"level": 0.95, "low": f.low, "high": f.high}),
        fit: json!({
            "rmse_in_sample": f.rmse_in_sample,
            "rmse_walk_forward": f.rmse_walk_forward,
            "rmse_naive_walk_forward": f.rmse_naive_walk_forward,
            "skill": f.skill(),
            "points": f.points,
            "params": params,
        }),
        as_of: pred.as_of_ms,
    })
    .into_response())
}
