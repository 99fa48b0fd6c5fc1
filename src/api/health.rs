//! Liveness, readiness and metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use tokio_util::sync::CancellationToken;

use crate::ingest::IngestHandle;
use crate::model::now_ms;
use crate::store::{Recorder, Store};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::node::{NodeGauges, resident_bytes};

/// What readiness and metrics read.
#[derive(Debug, Clone)]
pub struct HealthState {
    pub store: Arc<Store>,
    pub recorder: Arc<Recorder>,
    pub ingest: IngestHandle,
    pub metrics: Arc<Metrics>,
    /// Cancelled once shutdown begins: readiness turns 503 `shutting_down`.
    pub shutdown: CancellationToken,
    /// The node's cluster role and state (`single` on a one-process server).
    pub cluster: Arc<crate::cluster::ClusterStatus>,
    /// Begun: readiness turns 503 `draining` (a load balancer stops sending clients here).
    pub drain: Arc<crate::drain::Drain>,
    /// `server.memory_budget_bytes`, exported for the memory alert.
    pub memory_budget_bytes: u64,
}

pub(crate) async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// The pipeline counts as late when its last batch is older than this.
pub(crate) const PIPELINE_STALE_MS: i64 = 5_000;

/// Ready when the database answers (and persistence is not failing), ingest runs, and the
/// pipeline is on time; otherwise 503 `degraded` with the failing checks. Streaming goes on
/// either way: this is for load balancers and operators.
pub(crate) async fn readyz(State(health): State<HealthState>) -> Response {
    if health.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    if health.drain.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "draining"})),
        )
            .into_response();
    }
    let recorder = &health.recorder;
    let breaker_open = recorder.health.breaker_open.load(Ordering::Relaxed);
    // A journal being replayed is a delay of persistence, not a fault: still ready (taking the
    // node out of rotation would not make the database faster), reported for operators. A full
    // journal means rows are refused or dropped: not ready.
    let journal_full = !recorder.accepts_more();
    let mut database = match health.store.ping().await {
        Ok(()) if journal_full => json!({"ok": false, "backend": health.store.backend(),
            "error": "store overloaded; rows refused or dropped"}),
        Ok(()) if !breaker_open => json!({"ok": true, "backend": health.store.backend()}),
        Ok(()) => json!({"ok": false, "backend": health.store.backend(),
            "error": "writes failing; circuit breaker open"}),
        Err(error) => {
            // The raw error (host names, SQL states, credentials in a URL) is for the log, not
            // for whoever can reach /readyz.
            tracing::warn!(%error, "readiness: database check failed");
            let reason = if error.is_unavailable() {
                "database unreachable"
            } else {
                "database check failed"
            };
            json!({"ok": false, "backend": health.store.backend(), "error": reason})
        }
    };
    database["backlog"] = json!(recorder.backlog());
    database["journal_bytes"] = json!(recorder.journal_bytes());
    let feeds = feeds_check(&health);
    let last = health
        .metrics
        .pipeline_last_batch_ms
        .load(Ordering::Relaxed);
    let pipeline = if last == 0 {
        json!({"ok": true, "note": "no pipeline batch yet"})
    } else {
        let age = now_ms() - last;
        json!({"ok": age <= PIPELINE_STALE_MS, "last_batch_age_ms": age})
    };
    let cluster = health.cluster.check();
    let ok = [&database, &feeds, &pipeline, &cluster]
        .iter()
        .all(|c| c["ok"] == json!(true));
    let (code, status) = if ok {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    };
    let body = json!({"status": status, "role": health.cluster.role.as_str(), "checks": {
        "database": database, "feeds": feeds, "pipeline": pipeline, "cluster": cluster}});
    (code, axum::Json(body)).into_response()
}

/// Ingest must run, and no upstream feed may have a subscription the venue refused (each feed
/// is listed by name with its state).
fn feeds_check(health: &HealthState) -> serde_json::Value {
    let mut ok = health.ingest.is_alive();
    let mut upstreams = serde_json::Map::new();
    for feed in health.metrics.upstreams.list() {
        let refused = feed.refused();
        ok &= refused.is_none();
        let mut state = json!({
            "ok": refused.is_none(),
            "trades": feed.trades.load(Ordering::Relaxed),
            "last_trade_age_ms": feed.last_trade_age_ms(),
        });
        if let Some(reason) = refused {
            state["error"] = json!(format!("subscription refused: {reason}"));
        }
        upstreams.insert(feed.name.clone(), state);
    }
    if upstreams.is_empty() {
        json!({"ok": ok})
    } else {
        json!({"ok": ok, "upstreams": upstreams})
    }
}

pub async fn metrics(State(health): State<HealthState>) -> Response {
    let mut text = health.metrics.render();
    health.metrics.upstreams.render(&mut text);
    health.metrics.http_responses.render(&mut text);
    NodeGauges {
        role: health.cluster.role.as_str(),
        breaker_open: health.recorder.health.breaker_open.load(Ordering::Relaxed),
        draining: health.drain.is_draining(),
        memory_budget_bytes: health.memory_budget_bytes,
        resident_bytes: resident_bytes(),
        msgpack_made_bytes: crate::model::msgpack_made_bytes(),
    }
    .render(&mut text);
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}
