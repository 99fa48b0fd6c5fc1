//! The contract as a client written from docs/PROTOCOL.md alone finds it (issue 23): token
//! limits of 0, a slow consumer's close, query parameters and 405s on every endpoint, and the
//! order of an op's replies.

use serde_json::{Value, json};

use crate::auth::{SECRET, code, now_s, token};
use crate::util::{self, TestServer};

async fn token_server() -> TestServer {
    let mut c = util::config();
    c.auth.jwt_hs256_secret = Some(SECRET.into());
    let srv = util::start(c).await;
    srv.ingest_n("AAPL", 1, 0.0).await;
    srv.wait_seq("AAPL", 1).await;
    srv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_limit_of_0_invalidates_a_token_and_a_min_throttle_of_0_means_none() {
    let srv = token_server().await;
    for limit in ["subscriptions", "ops_per_second", "connections"] {
        let t = token(json!({"sub":"zed","exp":now_s() + 600,"limits":{limit: 0}}));
        let named = format!("limits.{limit} is 0");
        // At the upgrade: 401, the detail naming the limit.
        let (status, _, body) =
            util::http(srv.addr, "GET", &format!("/ws?token={t}"), &[], b"").await;
        let p: Value = serde_json::from_slice(&body).expect("problem");
        assert_eq!((status, code(&p)), (401, "unauthorized"), "{limit}: {p}");
        assert!(
            p["detail"].as_str().unwrap_or_default().contains(&named),
            "{p}"
        );
        // In the auth op: an unauthorized error with the op's id.
        let mut c = srv.connect().await;
        c.send(json!({"op":"auth","id":7,"token":t})).await;
        let e = c.event().await;
        assert_eq!(
            (code(&e), e["id"].as_i64()),
            ("unauthorized", Some(7)),
            "{e}"
        );
        assert!(
            e["message"].as_str().unwrap_or_default().contains(&named),
            "{e}"
        );
    }

    // min_throttle_ms 0: a valid token (at the upgrade and in auth) that throttles nothing.
    let t = token(json!({"sub":"zed","exp":now_s() + 600,"limits":{"min_throttle_ms":0}}));
    let mut c = crate::auth::connect_with(&srv, &t).await;
    c.send(json!({"op":"auth","id":1,"token":t})).await;
    let ack = c.event().await;
    assert_eq!(
        (ack["type"].as_str(), ack["op"].as_str()),
        (Some("ack"), Some("auth")),
        "{ack}"
    );
    c.subscribe(json!({"op":"subscribe","id":2,"channels":["ticks:AAPL"]}))
        .await;
    srv.ingest_n("AAPL", 5, 100.0).await;
    let mut seqs = Vec::new();
    while seqs.len() < 5 {
        let e = c.event_of("tick").await;
        seqs.push(e["seq"].as_u64().unwrap_or_default());
    }
    assert_eq!(
        seqs,
        [2, 3, 4, 5, 6],
        "every tick, none conflated by a throttle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_an_unknown_query_parameter_the_same_way() {
    let srv = token_server().await;
    let (_, key) = srv.server().store().create_user("quinn").await.unwrap();
    let trade = json!({"symbol":"AAPL","side":"buy","quantity":1,"price":1}).to_string();
    let tick = json!([{"symbol":"AAPL","price":1.0,"size":1,"side":"buy"}]).to_string();
    let book = json!([{"symbol":"AAPL","snapshot":true,"bids":[[1.0,1.0]],"asks":[]}]).to_string();
    let (user, ingest) = (Some(key.as_str()), Some(util::TOKEN));
    let cases: [(&str, &str, Option<&str>, &str); 15] = [
        ("GET", "/api/v1/symbols", None, ""),
        ("GET", "/api/v1/ticks/AAPL", None, ""),
        ("GET", "/api/v1/bars/AAPL", None, ""),
        ("GET", "/api/v1/indicators/AAPL", None, ""),
        ("GET", "/api/v1/book/AAPL", None, ""),
        ("GET", "/api/v1/predictions/AAPL", None, ""),
        ("GET", "/api/v1/portfolio", user, ""),
        ("POST", "/api/v1/portfolio/trades", user, &trade),
        ("POST", "/api/v1/auth/token", user, ""),
        ("POST", "/api/v1/ingest", ingest, &tick),
        ("POST", "/api/v1/ingest/book", ingest, &book),
        ("GET", "/healthz", None, ""),
        ("GET", "/readyz", None, ""),
        ("GET", "/metrics", None, ""),
        ("GET", "/openapi.json", None, ""),
    ];
    for (method, path, key, body) in cases {
        let bearer = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(b) = &bearer {
            headers.push(("Authorization", b.as_str()));
        }
        let url = format!("{path}?bogus=1");
        let (status, h, raw) = util::http(srv.addr, method, &url, &headers, body.as_bytes()).await;
        let p: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        assert_eq!(
            (status, code(&p)),
            (400, "bad_request"),
            "{method} {url}: {p}"
        );
        assert_eq!(
            util::header(&h, "content-type"),
            Some("application/problem+json")
        );
        let detail = p["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("`bogus`"), "{method} {url}: {detail}");
    }
    // Nothing was recorded by the refused requests.
    let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
    assert_eq!(p["trades"], 0, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_a_route_does_not_have_is_a_405_problem_with_allow() {
    let srv = token_server().await;
    let cases = [
        ("POST", "/api/v1/symbols", "GET,HEAD"),
        ("DELETE", "/api/v1/ticks/AAPL", "GET,HEAD"),
        ("PUT", "/api/v1/bars/AAPL", "GET,HEAD"),
        ("POST", "/api/v1/indicators/AAPL", "GET,HEAD"),
        ("POST", "/api/v1/book/AAPL", "GET,HEAD"),
        ("POST", "/api/v1/predictions/AAPL", "GET,HEAD"),
        ("POST", "/api/v1/portfolio", "GET,HEAD"),
        ("GET", "/api/v1/portfolio/trades", "POST"),
        ("GET", "/api/v1/auth/token", "POST"),
        ("GET", "/api/v1/ingest", "POST"),
        ("GET", "/api/v1/ingest/book", "POST"),
        ("POST", "/healthz", "GET,HEAD"),
        ("POST", "/readyz", "GET,HEAD"),
        ("DELETE", "/metrics", "GET,HEAD"),
        ("POST", "/openapi.json", "GET,HEAD"),
        ("POST", "/", "GET,HEAD"),
        ("POST", "/assets/app.js", "GET,HEAD"),
        ("POST", "/ws", "GET,HEAD"),
    ];
    for (method, path, allow) in cases {
        let (status, h, raw) = util::http(srv.addr, method, path, &[], b"").await;
        let p: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        assert_eq!(
            (status, code(&p)),
            (405, "method_not_allowed"),
            "{method} {path}: {p}"
        );
        assert_eq!(p["status"], 405, "{p}");
        assert_eq!(
            util::header(&h, "content-type"),
            Some("application/problem+json"),
            "{method} {path}"
        );
        let got = util::header(&h, "allow")
            .unwrap_or_default()
            .replace(' ', "");
        assert_eq!(got, allow, "{method} {path}");
    }
    // A route that does not exist stays a 404.
    let (status, _, raw) = util::http(srv.addr, "POST", "/api/v1/nothing", &[], b"").await;
    let p: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    assert_eq!((status, code(&p)), (404, "not_found"), "{p}");
}
