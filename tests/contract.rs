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

/// Every reply and event up to and including the `pong` of a `ping` sent after the ops: all an
/// op answers arrives before it.
async fn replies_until_pong(c: &mut util::Client, ping_id: i64) -> Vec<Value> {
    c.send(json!({"op":"ping","id":ping_id})).await;
    let mut got = Vec::new();
    loop {
        let e = c.event().await;
        let done = e["type"] == "pong";
        got.push(e);
        if done {
            return got;
        }
    }
}

/// `type`, `op` or `code`, and `id` of each reply, in order (events without an `id` left out).
fn shape(replies: &[Value]) -> Vec<(String, i64)> {
    replies
        .iter()
        .filter(|e| e["id"].is_i64())
        .map(|e| {
            let what = match e["type"].as_str() {
                Some("ack") => format!("ack {}", e["op"].as_str().unwrap_or_default()),
                Some("error") => format!("error {}", code(e)),
                other => other.unwrap_or_default().to_owned(),
            };
            (what, e["id"].as_i64().unwrap_or_default())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ops_per_channel_errors_come_first_and_its_ack_last() {
    let srv = token_server().await;
    srv.ingest_n("MSFT", 1, 0.0).await;
    srv.wait_seq("MSFT", 1).await;
    let t = token(json!({"sub":"opal","exp":now_s() + 600}));
    let mut c = crate::auth::connect_with(&srv, &t).await;
    let s = |what: &str, id: i64| (what.to_owned(), id);

    // subscribe: a valid channel between two refused ones; the snapshot follows the ack.
    c.send(json!({"op":"subscribe","id":1,"channels":["ticks:NOPE","ticks:AAPL","nokind:AAPL"]}))
        .await;
    let got = replies_until_pong(&mut c, 2).await;
    assert_eq!(
        shape(&got),
        [
            s("error unknown_channel", 1),
            s("error unknown_channel", 1),
            s("ack subscribe", 1),
            s("pong", 2)
        ],
        "{got:?}"
    );
    let ack = got.iter().position(|e| e["type"] == "ack");
    let snapshot = got.iter().position(|e| e["type"] == "snapshot");
    assert!(ack < snapshot, "the snapshot comes after the ack: {got:?}");
    assert_eq!(
        got[ack.unwrap_or_default()]["channels"],
        json!(["ticks:AAPL"])
    );

    // unsubscribe: one held, one not.
    c.send(json!({"op":"subscribe","id":3,"channels":["ticks:MSFT"]}))
        .await;
    c.send(json!({"op":"unsubscribe","id":4,"channels":["bars.1m:AAPL","ticks:AAPL"]}))
        .await;
    let got = replies_until_pong(&mut c, 5).await;
    assert_eq!(
        shape(&got),
        [
            s("ack subscribe", 3),
            s("error not_subscribed", 4),
            s("ack unsubscribe", 4),
            s("pong", 5)
        ],
        "{got:?}"
    );

    // auth: a refresh with narrower channels drops ticks:MSFT; the error comes before the ack.
    let narrower = token(json!({"sub":"opal","exp":now_s() + 660,"channels":["ticks:A*"]}));
    c.send(json!({"op":"subscribe","id":6,"channels":["ticks:AAPL"]}))
        .await;
    c.send(json!({"op":"auth","id":7,"token":narrower})).await;
    let got = replies_until_pong(&mut c, 8).await;
    assert_eq!(
        shape(&got),
        [
            s("ack subscribe", 6),
            s("error forbidden", 7),
            s("ack auth", 7),
            s("pong", 8)
        ],
        "{got:?}"
    );

    // An op refused whole: its errors, no ack.
    c.send(json!({"op":"subscribe","id":9,"channels":["ticks:AXYZ"]}))
        .await;
    let got = replies_until_pong(&mut c, 10).await;
    assert_eq!(
        shape(&got),
        [s("error unknown_channel", 9), s("pong", 10)],
        "{got:?}"
    );
}
