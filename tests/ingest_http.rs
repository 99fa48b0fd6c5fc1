//! `POST /api/v1/ingest`: authentication, per-record validation, and delivery.

use serde_json::{Value, json};

use crate::util::{self, TOKEN};

async fn post(
    srv: &util::TestServer,
    auth: Option<&str>,
    body: &str,
) -> (u16, Vec<(String, String)>, Value) {
    let auth_header = auth.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(h) = &auth_header {
        headers.push(("Authorization", h));
    }
    let (status, h, body) = util::http(
        srv.addr,
        "POST",
        "/api/v1/ingest",
        &headers,
        body.as_bytes(),
    )
    .await;
    (
        status,
        h,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_requires_the_token() {
    let srv = util::start(util::config()).await;
    let body = r#"[{"symbol":"AAPL","price":1,"size":1,"side":"buy"}]"#;
    for auth in [None, Some("wrong")] {
        let (status, headers, problem) = post(&srv, auth, body).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(
            util::header(&headers, "content-type"),
            Some("application/problem+json")
        );
        assert_eq!(problem["code"], "unauthorized");
    }
    let (status, _, ok) = post(&srv, Some(TOKEN), body).await;
    assert_eq!((status, ok), (202, json!({"accepted": 1})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_records_are_named_by_index_and_nothing_is_ingested() {
    let srv = util::start(util::config()).await;
    let body = json!([
        {"symbol":"AAPL","price":1.5,"size":1,"side":"buy"},
        {"symbol":"aapl","price":1,"size":1,"side":"buy"},
        {"symbol":"AAPL","price":-1,"size":1,"side":"buy"},
        {"symbol":"AAPL","price":1,"size":1,"side":"hold"},
        {"symbol":"AAPL","price":1,"side":"buy"}
    ]);
    let (status, _, problem) = post(&srv, Some(TOKEN), &body.to_string()).await;
    assert_eq!(status, 422);
    assert_eq!(problem["code"], "invalid_records");
    assert_eq!(problem["type"], "urn:tickcast:problem:invalid_records");
    let idx: Vec<u64> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![1, 2, 3, 4]);
    let msgs = problem["errors"].to_string();
    for needle in ["invalid symbol", "price", "side", "size"] {
        assert!(msgs.contains(needle), "{needle} in {msgs}");
    }
    // Nothing was ingested: the valid record 0 did not go through either.
    let mut c = srv.connect().await;
    c.send(json!({"op":"list"})).await;
    let list = c.event().await;
    assert_eq!(list["symbols"], json!([]), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_problem_details() {
    let srv = util::start(util::config()).await;
    for (body, code) in [
        ("{nope", "malformed_body"),
        (r#"{"symbol":"A"}"#, "bad_request"),
    ] {
        let (status, _, problem) = post(&srv, Some(TOKEN), body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let mut cfg = util::config();
    cfg.feeds.http.max_records = 2;
    let srv = util::start(cfg).await;
    let three = r#"[{"symbol":"A","price":1,"size":1,"side":"buy"},{"symbol":"A","price":1,"size":1,"side":"buy"},{"symbol":"A","price":1,"size":1,"side":"buy"}]"#;
    let (status, _, problem) = post(&srv, Some(TOKEN), three).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (413, Some("too_many_records"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_is_disabled_without_a_token() {
    let mut cfg = util::config();
    cfg.feeds.http.token = String::new();
    let srv = util::start(cfg).await;
    let (status, _, problem) = post(&srv, Some("anything"), "[]").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("ingest_disabled"))
    );
}

/// Through the real router and state, without a socket: over TCP the server answers 413 as soon
/// as it has read the headers and closes while the client may still be sending, which races.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_a_413_problem() {
    use tower::ServiceExt;
    let srv = util::start(util::config()).await;
    let big = format!("[{}]", "1,".repeat(3 << 20) + "1");
    let req = axum::http::Request::post("/api/v1/ingest")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(big))
        .unwrap();
    let res = srv.server().router().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "body_too_large", "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_dated_past_the_future_skew_are_refused_by_name() {
    let mut cfg = util::config();
    cfg.feeds.max_future_skew_ms = 2_000;
    let srv = util::start(cfg).await;
    let now = tickcast::model::now_ns();
    let ms = 1_000_000i64;
    let tick = |ahead_ms: i64| json!({"symbol":"SKEW","price":1,"size":1,"side":"buy","ts": now + ahead_ms * ms});
    // A day ahead (a bad clock, a typo): refused, named, nothing ingested.
    let body = json!([tick(0), tick(86_400_000)]);
    let (status, _, problem) = post(&srv, Some(TOKEN), &body.to_string()).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "invalid_records");
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{problem}");
    assert_eq!(errors[0]["index"], 1);
    let message = errors[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ahead of the server clock") && message.contains("2000 ms"),
        "{message}"
    );
    let metrics = srv.server().metrics();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load(&metrics.ticks_future), 1);
    assert_eq!(load(&metrics.ticks_ingested), 0);
    // Within the skew, and any time in the past, is fine.
    let body = json!([tick(1_000), tick(-86_400_000)]);
    let (status, _, ok) = post(&srv, Some(TOKEN), &body.to_string()).await;
    assert_eq!((status, ok), (202, json!({"accepted": 2})));
}
