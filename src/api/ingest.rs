//! `POST /api/v1/ingest`: the HTTP ingest feed. A JSON array of ticks, authenticated by the
//! configured ingest token; all records are validated before any is ingested.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::book::BookUpdate;
use crate::client::{VerifiedKeys, key_digest};
use crate::cluster::ClusterStatus;
use crate::feed::HttpIngestConfig;
use crate::ingest::{IngestHandle, TrySubmitError, validate};
use crate::model::{RawTick, Side, now_ns};
use crate::protocol::Problem;
use crate::protocol::ProblemCode;
use crate::store::{OnOverload, Recorder};
use crate::timestamp;

/// What the HTTP ingest endpoint uses: its config section and the ingest queue.
#[derive(Debug, Clone)]
pub struct IngestState {
    pub config: Arc<HttpIngestConfig>,
    pub ingest: IngestHandle,
    /// Credentials that authenticated: the rate limit keys them by themselves.
    pub verified: Arc<VerifiedKeys>,
    /// In a cluster only the ingest leader takes ticks.
    pub cluster: Arc<ClusterStatus>,
    /// The source name of the books posted here (`http`).
    pub book_source: Arc<str>,
    /// Ticks are refused (503) while the store cannot take more (`database.on_overload`).
    pub recorder: Arc<Recorder>,
}

/// One record of the request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    symbol: String,
    price: f64,
    size: f64,
    side: String,
    /// Exchange time, an integer by the magnitude rule of [`crate::timestamp`] (senders write
    /// nanoseconds; below 1e14 it is read as milliseconds); the server's clock when absent.
    #[serde(default)]
    ts: Option<i64>,
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Checks the token before reading the body, so an unauthenticated client cannot make the
/// server buffer up to 4 MiB; then the body's records (a JSON array of at most
/// `feeds.http.max_records`), or the problem that answers the request.
async fn records(
    state: &IngestState,
    req: Request,
    what: &str,
) -> Result<Vec<serde_json::Value>, Response> {
    let cfg = &state.config;
    let headers = req.headers();
    if !state.cluster.leads_ingest() {
        return Err(Problem::new(
            ProblemCode::NotLeader,
            format!(
                "this {} node does not lead ingest; post {what} to the ingest leader",
                state.cluster.role.as_str()
            ),
        )
        .retry_after(1)
        .into_response());
    }
    if cfg.token.is_empty() {
        return Err(Problem::new(
            ProblemCode::IngestDisabled,
            "HTTP ingest is disabled: set feeds.http.token to enable it",
        )
        .into_response());
    }
    match bearer(headers) {
        Some(t) if same(t.as_bytes(), cfg.token.as_bytes()) => {
            // From now on the feeder is limited by its token, not by its address.
            state.verified.insert(key_digest(t));
        }
        Some(_) => {
            return Err(
                Problem::new(ProblemCode::Unauthorized, "invalid ingest token").into_response(),
            );
        }
        None => {
            return Err(Problem::new(
                ProblemCode::Unauthorized,
                "missing `Authorization: Bearer <ingest token>`",
            )
            .into_response());
        }
    }
    let body: Result<Bytes, BytesRejection> = Bytes::from_request(req, &()).await;
    let body = match body {
        Ok(b) => b,
        Err(e) => return Err(Problem::body_rejection(&e, super::MAX_BODY_BYTES).into_response()),
    };
    let values: Vec<serde_json::Value> = match serde_json::from_slice(&body) {
        Ok(serde_json::Value::Array(v)) => v,
        Ok(_) => {
            return Err(Problem::new(
                ProblemCode::BadRequest,
                format!("the body must be a JSON array of {what}"),
            )
            .into_response());
        }
        Err(e) => {
            return Err(
                Problem::new(ProblemCode::MalformedBody, format!("malformed JSON: {e}"))
                    .into_response(),
            );
        }
    };
    if values.len() > cfg.max_records {
        return Err(Problem::new(
            ProblemCode::TooManyRecords,
            format!(
                "{} records; at most {} per request",
                values.len(),
                cfg.max_records
            ),
        )
        .into_response());
    }
    Ok(values)
}

/// The 422 for records that failed validation (nothing of the request is ingested).
fn invalid_records(state: &IngestState, errors: Vec<serde_json::Value>) -> Response {
    state.ingest.count_rejected(errors.len() as u64);
    let n = errors.len();
    Problem::new(
        ProblemCode::InvalidRecords,
        format!("{n} record(s) failed validation; nothing was ingested"),
    )
    .with("errors", serde_json::Value::Array(errors))
    .into_response()
}

/// The answer to records handed to ingest (or not, when its queue is full).
fn submitted(accepted: usize, sent: Result<(), TrySubmitError>) -> Response {
    match sent {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"accepted": accepted})),
        )
            .into_response(),
        Err(TrySubmitError::Full) => Problem::new(
            ProblemCode::IngestBusy,
            "the ingest queue is full; retry shortly",
        )
        .retry_after(1)
        .into_response(),
        Err(TrySubmitError::Closed(_)) => {
            Problem::new(ProblemCode::ShuttingDown, "the server is shutting down").into_response()
        }
    }
}

/// The 503 for ticks the store could not keep: with `on_overload = "block"` the write-behind
/// queue is full, with `"journal"` the journal is; the sender retries instead of losing them.
fn store_busy(overload: OnOverload) -> Response {
    let what = match overload {
        OnOverload::Block => "the write-behind queue is full",
        OnOverload::Journal | OnOverload::Drop => "the write-behind queue and its journal are full",
    };
    Problem::new(
        ProblemCode::IngestBusy,
        format!("{what}: the database is behind; retry shortly"),
    )
    .retry_after(1)
    .into_response()
}

/// `POST /api/v1/ingest`: ticks.
pub(crate) async fn ingest(State(state): State<IngestState>, req: Request) -> Response {
    let values = match records(&state, req, "ticks").await {
        Ok(v) => v,
        Err(res) => return res,
    };
    if !state.recorder.accepts_more() {
        return store_busy(state.recorder.on_overload());
    }
    let now = now_ns();
    let mut ticks = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (index, v) in values.into_iter().enumerate() {
        let tick = Record::deserialize(v)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                let side = Side::parse_lenient(&r.side)
                    .ok_or_else(|| format!("side must be \"buy\" or \"sell\", got {:?}", r.side))?;
                let exchange_ts = match r.ts {
                    None => now,
                    Some(n) => timestamp::from_integer(n).map_err(|e| format!("ts: {e}"))?,
                };
                Ok(RawTick {
                    symbol: r.symbol,
                    price: r.price,
                    size: r.size,
                    side: Some(side),
                    exchange_ts,
                })
            })
            .and_then(|t| validate(&t).map(|()| t).map_err(|e| e.to_string()))
            .and_then(|t| {
                state
                    .ingest
                    .check_future(&t, now)
                    .map(|()| t)
                    .map_err(|e| e.to_string())
            });
        match tick {
            Ok(t) => ticks.push(t),
            Err(message) => errors.push(json!({"index": index, "message": message})),
        }
    }
    if errors.is_empty() {
        // Only a batch that is valid as a whole may add symbols.
        for (index, t) in ticks.iter().enumerate() {
            if let Err(e) = state.ingest.reserve_symbol(t) {
                errors.push(json!({"index": index, "message": e.to_string()}));
            }
        }
    }
    if !errors.is_empty() {
        return invalid_records(&state, errors);
    }
    let accepted = ticks.len();
    submitted(accepted, state.ingest.try_send(ticks))
}

/// One record of a book ingest body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BookRecord {
    symbol: String,
    /// The whole book (replaces every level) rather than changed levels.
    #[serde(default)]
    snapshot: bool,
    #[serde(default)]
    bids: Vec<(f64, f64)>,
    #[serde(default)]
    asks: Vec<(f64, f64)>,
    /// As a tick's `ts`.
    #[serde(default)]
    ts: Option<i64>,
}

/// `POST /api/v1/ingest/book`: order book updates, `[{"symbol","snapshot"?,"bids":[[price,
/// size],..],"asks":[..],"ts"?}]` (size 0 removes a level); validated as a whole like ticks.
pub(crate) async fn ingest_book(State(state): State<IngestState>, req: Request) -> Response {
    let values = match records(&state, req, "book updates").await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let now = now_ns();
    let mut updates = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (index, v) in values.into_iter().enumerate() {
        let update = BookRecord::deserialize(v)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                let exchange_ts = match r.ts {
                    None => now,
                    Some(n) => timestamp::from_integer(n).map_err(|e| format!("ts: {e}"))?,
                };
                Ok(BookUpdate {
                    symbol: r.symbol,
                    snapshot: r.snapshot,
                    bids: r.bids,
                    asks: r.asks,
                    exchange_ts,
                })
            })
            .and_then(|u| u.validate().map(|()| u).map_err(|e| e.to_string()))
            .and_then(|u| {
                state
                    .ingest
                    .check_future_ts(u.exchange_ts, now)
                    .map(|()| u)
                    .map_err(|e| e.to_string())
            });
        match update {
            Ok(u) => updates.push(u),
            Err(message) => errors.push(json!({"index": index, "message": message})),
        }
    }
    if errors.is_empty() {
        for (index, u) in updates.iter().enumerate() {
            if let Err(e) = state.ingest.reserve_symbol_name(&u.symbol) {
                errors.push(json!({"index": index, "message": e.to_string()}));
            }
        }
    }
    if !errors.is_empty() {
        return invalid_records(&state, errors);
    }
    let accepted = updates.len();
    submitted(
        accepted,
        state.ingest.try_send_books(&state.book_source, updates),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
