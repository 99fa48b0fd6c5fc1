//! Connection auth end to end (docs/PROTOCOL.md "Authentication"): tokens at connect and in
//! `auth` ops, expiry and refresh, channel permissions and limits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::util::{self, Client, Got, TestServer};

/// The token `POST /api/v1/auth/token` gives for `key`.
pub(crate) async fn exchange(srv: &TestServer, key: &str) -> String {
    let (status, _, body) = srv.post("/api/v1/auth/token", Some(key), &[], b"").await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

pub(crate) const SECRET: &str = "an-end-to-end-secret-of-32-bytes-or-more";

pub(crate) fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

pub(crate) fn token(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

async fn server(anonymous: bool) -> TestServer {
    let mut c = util::config();
    c.auth.jwt_hs256_secret = Some(SECRET.into());
    c.auth.anonymous = anonymous;
    let srv = util::start(c).await;
    srv.ingest_n("AAPL", 1, 0.0).await;
    srv.ingest_n("BTC-USD", 1, 0.0).await;
    srv.wait_seq("BTC-USD", 1).await;
    srv
}

pub(crate) async fn connect_with(srv: &TestServer, token: &str) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{}?token={token}", srv.url()))
        .await
        .expect("connects with a valid token");
    Client::from_stream(ws)
}

/// A well-formed token signed with another key: it costs a verification to refuse.
fn forged_token() -> String {
    encode(
        &Header::default(),
        &json!({"sub":"mallory","exp":now_s() + 600}),
        &EncodingKey::from_secret(b"some-other-secret-of-32-bytes-or-more"),
    )
    .expect("token")
}

pub(crate) fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_anonymous_access_ops_wait_for_auth() {
    let srv = server(false).await;
    let mut c = srv.connect().await;
    c.send(json!({"op":"subscribe","id":1,"channels":["ticks:AAPL"]}))
        .await;
    let e = c.event().await;
    assert_eq!(
        (e["type"].as_str(), code(&e), e["id"].as_i64()),
        (Some("error"), "unauthorized", Some(1))
    );
    c.send(json!({"op":"list","id":2})).await;
    assert_eq!(code(&c.event().await), "unauthorized");
    // Ping needs no token.
    c.send(json!({"op":"ping","id":3})).await;
    assert_eq!(c.event().await["type"], "pong");

    // A bad token is refused and changes nothing.
    c.send(json!({"op":"auth","id":4,"token":"not-a-jwt"}))
        .await;
    let e = c.event().await;
    assert_eq!(code(&e), "unauthorized", "{e}");
    let exp = now_s() + 600;
    c.send(json!({"op":"auth","id":5,"token":token(json!({"sub":"alice","exp":exp}))}))
        .await;
    let ack = c.event().await;
    assert_eq!(
        (
            ack["type"].as_str(),
            ack["op"].as_str(),
            ack["user"].as_str(),
            ack["exp"].as_u64()
        ),
        (Some("ack"), Some("auth"), Some("alice"), Some(exp)),
        "{ack}"
    );
    c.subscribe(json!({"op":"subscribe","id":6,"channels":["ticks:AAPL"]}))
        .await;
    assert_eq!(c.event().await["type"], "snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_at_connect_get_401_problems() {
    let srv = server(true).await;
    let expired = token(json!({"sub":"alice","exp":now_s() - 10}));
    let forged = encode(
        &Header::default(),
        &json!({"sub":"alice","exp":now_s() + 600}),
        &EncodingKey::from_secret(b"some-other-secret-of-32-bytes-or-more"),
    )
    .expect("token");
    for (t, detail) in [(expired, "token expired"), (forged, "bad signature")] {
        let (status, headers, body) =
            util::http(srv.addr, "GET", &format!("/ws?token={t}"), &[], b"").await;
        assert_eq!(status, 401);
        assert_eq!(
            util::header(&headers, "content-type"),
            Some("application/problem+json")
        );
        let p: Value = serde_json::from_slice(&body).expect("problem");
        assert_eq!(p["code"], "unauthorized", "{p}");
        assert!(
            p["detail"].as_str().unwrap_or_default().contains(detail),
            "{p}"
        );
    }
    // Anonymous connections still work on this server.
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:AAPL"]}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_closes_the_connection_and_a_refreshed_one_keeps_it() {
    let srv = server(true).await;
    // `exp` is in whole seconds: at least one second left, at most two.
    let exp = now_s() + 2;
    let mut short = connect_with(&srv, &token(json!({"sub":"alice","exp":exp}))).await;
    let mut kept = connect_with(&srv, &token(json!({"sub":"bob","exp":exp}))).await;
    kept.send(json!({"op":"auth","id":1,"token":token(json!({"sub":"bob","exp":exp + 60}))}))
        .await;
    assert_eq!(kept.event().await["exp"].as_u64(), Some(exp + 60));
    // Another user's token cannot take over a connection.
    kept.send(json!({"op":"auth","id":2,"token":token(json!({"sub":"mallory","exp":exp + 60}))}))
        .await;
    assert_eq!(code(&kept.event().await), "forbidden");

    match short.next_within(Duration::from_secs(5)).await {
        Some(Got::Closed(code, reason)) => {
            assert_eq!(
                (code, reason.as_str()),
                (Some(CloseCode::Library(4001)), "token expired")
            );
        }
        other => panic!("expected a 4001 close, got {other:?}"),
    }
    assert!(now_s() >= exp);
    // The refreshed connection outlives the first token.
    kept.send(json!({"op":"ping","id":3})).await;
    assert_eq!(kept.event().await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_limits_channels_subscriptions_and_throttle() {
    let srv = server(true).await;
    let t = token(
        json!({"sub":"carol","exp":now_s() + 600,"channels":["ticks:BTC-*","indicators:*"],
                         "limits":{"subscriptions":2,"min_throttle_ms":500}}),
    );
    let mut c = connect_with(&srv, &t).await;
    c.send(json!({"op":"subscribe","id":1,"channels":["ticks:AAPL","ticks:*","ticks:BTC-USD"]}))
        .await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(c.event().await);
    }
    let forbidden: Vec<&str> = got
        .iter()
        .filter(|e| code(e) == "forbidden")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(forbidden.len(), 2, "{got:?}");
    assert!(forbidden[0].contains("ticks:AAPL") && forbidden[1].contains("ticks:*"));
    let ack = got.iter().find(|e| e["type"] == "ack").expect("ack");
    assert_eq!(ack["channels"], json!(["ticks:BTC-USD"]));

    // Two subscriptions at most: the third is refused.
    c.subscribe(json!({"op":"subscribe","id":2,"channels":["indicators:*"]}))
        .await;
    c.send(json!({"op":"subscribe","id":3,"channels":["indicators:BTC-USD"]}))
        .await;
    let e = c.event_of("error").await;
    assert_eq!(code(&e), "too_many_subscriptions", "{e}");

    // Every subscription is throttled to at least 500 ms: ten ticks in quick succession
    // arrive as at most two (the first at once, the newest when the throttle allows).
    srv.ingest_n("BTC-USD", 10, 100.0).await;
    srv.wait_seq("BTC-USD", 11).await;
    let mut ticks = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
        match c.next_within(left).await {
            Some(Got::Event(e)) if e["type"] == "tick" => {
                ticks.push(e["seq"].as_u64().unwrap_or_default());
            }
            Some(Got::Event(_)) => {}
            Some(Got::Closed(code, reason)) => panic!("closed ({code:?}, {reason})"),
            None => break,
        }
    }
    assert!(!ticks.is_empty() && ticks.len() <= 2, "{ticks:?}");
    assert_eq!(ticks.last(), Some(&11), "the newest wins: {ticks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_is_exchanged_for_a_token_that_opens_a_connection() {
    let srv = server(false).await;
    let (_, key) = srv
        .server()
        .store()
        .create_user("erin")
        .await
        .expect("user");
    let (status, _, body) = srv.post("/api/v1/auth/token", Some(&key), &[], b"").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], "erin");
    let exp = body["expires_at"].as_u64().expect("expires_at");
    assert!(exp > now_s() && exp <= now_s() + 900, "{body}");
    let t = body["token"].as_str().expect("token");
    let mut c = connect_with(&srv, t).await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:AAPL"]}))
        .await;
    // A wrong key or none: 401.
    for k in [Some("not-a-key"), None] {
        let (status, _, body) = srv.post("/api/v1/auth/token", k, &[], b"").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_there_is_no_token_exchange_and_tokens_are_refused() {
    let srv = util::start(util::config()).await;
    let (_, key) = srv
        .server()
        .store()
        .create_user("frank")
        .await
        .expect("user");
    let (status, _, body) = srv.post("/api/v1/auth/token", Some(&key), &[], b"").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("token_exchange_disabled")),
        "{body}"
    );
    // A token cannot be verified without a key: refused, not ignored.
    let t = token(json!({"sub":"frank","exp":now_s() + 60}));
    let (status, _, _) = util::http(srv.addr, "GET", &format!("/ws?token={t}"), &[], b"").await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_limits_connections_and_ops() {
    let srv = server(true).await;
    let exp = now_s() + 600;
    let t = token(json!({"sub":"gina","exp":exp,"limits":{"connections":1,"ops_per_second":1}}));
    let mut first = connect_with(&srv, &t).await;
    // The user's second connection is refused, at connect or by `auth`.
    let (status, _, body) = util::http(srv.addr, "GET", &format!("/ws?token={t}"), &[], b"").await;
    let p: Value = serde_json::from_slice(&body).expect("problem");
    assert_eq!(
        (status, p["code"].as_str()),
        (503, Some("too_many_connections")),
        "{p}"
    );
    let mut other = srv.connect().await;
    other.send(json!({"op":"auth","id":1,"token":t})).await;
    assert_eq!(code(&other.event().await), "forbidden");

    // One op per second, burst two: a quick third op is rate limited.
    for id in 0..3 {
        first.send(json!({"op":"ping","id":id})).await;
    }
    let replies = [
        first.event().await,
        first.event().await,
        first.event().await,
    ];
    assert_eq!(
        replies.iter().filter(|r| r["type"] == "pong").count(),
        2,
        "{replies:?}"
    );
    assert_eq!(
        replies.iter().filter(|r| code(r) == "rate_limited").count(),
        1
    );

    // The slot is freed when the connection ends.
    drop(first);
    let deadline = tokio::time::Instant::now() + util::WAIT;
    loop {
        let (status, _, _) = util::http(srv.addr, "GET", &format!("/ws?token={t}"), &[], b"").await;
        // 426: the slot was free (the plain GET is then refused as no upgrade).
        if status == 426 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot never freed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_anonymous_access_a_connection_that_never_authenticates_is_closed() {
    let mut c = util::config();
    c.auth.jwt_hs256_secret = Some(SECRET.into());
    c.auth.anonymous = false;
    c.auth.auth_timeout_s = 1;
    let srv = util::start(c).await;
    let mut idle = srv.connect().await;
    let mut authed = srv.connect().await;
    authed
        .send(json!({"op":"auth","id":1,"token":token(json!({"sub":"alice","exp":now_s() + 600}))}))
        .await;
    assert_eq!(authed.event().await["op"], "auth");
    match idle.next_within(Duration::from_secs(5)).await {
        Some(Got::Closed(code, reason)) => assert_eq!(
            (code, reason.as_str()),
            (Some(CloseCode::Library(4001)), "authentication required")
        ),
        other => panic!("expected a 4001 close, got {other:?}"),
    }
    // The one that authenticated in time lives on past the deadline.
    authed.send(json!({"op":"ping","id":2})).await;
    assert_eq!(authed.event().await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_with_narrower_channels_drops_what_it_no_longer_permits() {
    let srv = server(true).await;
    let exp = now_s() + 600;
    let mut c = connect_with(&srv, &token(json!({"sub":"dan","exp":exp}))).await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:AAPL","ticks:BTC-USD","bars.1s:*"]}))
        .await;
    for _ in 0..2 {
        assert_eq!(c.event_of("snapshot").await["type"], "snapshot");
    }
    let narrower = token(json!({"sub":"dan","exp":exp + 60,"channels":["ticks:BTC-*"]}));
    c.send(json!({"op":"auth","id":7,"token":narrower})).await;
    // Per-channel errors first, the ack last (the reply-order rule).
    let mut revoked = Vec::new();
    for _ in 0..2 {
        let e = c.event_of("error").await;
        assert_eq!((code(&e), e["id"].as_i64()), ("forbidden", Some(7)), "{e}");
        revoked.push(e["message"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(c.event_of("ack").await["op"], "auth");
    revoked.sort();
    assert!(revoked[0].starts_with("bars.1s:*"), "{revoked:?}");
    assert!(revoked[1].starts_with("ticks:AAPL"), "{revoked:?}");
    // AAPL no longer arrives; BTC-USD still does.
    srv.ingest_n("AAPL", 1, 100.0).await;
    srv.ingest_n("BTC-USD", 1, 100.0).await;
    srv.wait_seq("BTC-USD", 2).await;
    let tick = c.event_of("tick").await;
    assert_eq!(tick["ch"], "ticks:BTC-USD", "{tick}");
    c.send(json!({"op":"unsubscribe","id":8,"channels":["ticks:AAPL"]}))
        .await;
    assert_eq!(code(&c.event_of("error").await), "not_subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_yet_valid_is_refused_at_connect_and_in_auth() {
    let srv = server(true).await;
    let later = token(json!({"sub":"nina","exp":now_s() + 7200,"nbf":now_s() + 3600}));
    let (status, _, body) =
        util::http(srv.addr, "GET", &format!("/ws?token={later}"), &[], b"").await;
    let p: Value = serde_json::from_slice(&body).expect("problem");
    assert_eq!(
        (status, p["code"].as_str()),
        (401, Some("unauthorized")),
        "{p}"
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not yet valid"),
        "{p}"
    );
    let mut c = srv.connect().await;
    c.send(json!({"op":"auth","id":1,"token":later})).await;
    let e = c.event().await;
    assert_eq!(
        (code(&e), e["id"].as_i64()),
        ("unauthorized", Some(1)),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not yet valid"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expected_issuer_and_audience_refuse_other_tokens_and_mark_issued_ones() {
    let mut c = util::config();
    c.auth.jwt_hs256_secret = Some(SECRET.into());
    c.auth.jwt_issuer = Some("https://id.example".into());
    c.auth.jwt_audience = Some("tickcast".into());
    let srv = util::start(c).await;
    let exp = now_s() + 600;
    let ours = json!({"sub":"olga","exp":exp,"iss":"https://id.example","aud":"tickcast"});
    let mut other_aud = ours.clone();
    other_aud["aud"] = json!("billing");
    let mut other_iss = ours.clone();
    other_iss["iss"] = json!("https://elsewhere.example");
    let mut no_aud = ours.clone();
    no_aud.as_object_mut().map(|o| o.remove("aud"));
    for (claims, detail) in [
        (other_aud, "wrong `aud`"),
        (other_iss, "wrong `iss`"),
        (no_aud, "no `aud` claim"),
    ] {
        let t = token(claims.clone());
        let (status, _, body) =
            util::http(srv.addr, "GET", &format!("/ws?token={t}"), &[], b"").await;
        let p: Value = serde_json::from_slice(&body).expect("problem");
        assert_eq!(status, 401, "{claims}: {p}");
        assert!(
            p["detail"].as_str().unwrap_or_default().contains(detail),
            "{claims}: {p}"
        );
    }
    let mut ok = connect_with(&srv, &token(ours)).await;
    ok.send(json!({"op":"ping","id":1})).await;
    assert_eq!(ok.event().await["type"], "pong");
    // A token the server issues for an API key carries both, so it opens a connection.
    let (_, key) = srv
        .server()
        .store()
        .create_user("olga")
        .await
        .expect("user");
    let mut c = connect_with(&srv, &exchange(&srv, &key).await).await;
    c.send(json!({"op":"ping","id":2})).await;
    assert_eq!(c.event().await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_past_the_rate_limit_are_refused_before_their_token_is_verified() {
    let mut c = util::config();
    c.auth.jwt_hs256_secret = Some(SECRET.into());
    c.ws.upgrades_per_second = 1;
    c.ws.upgrade_burst = 2;
    let srv = util::start(c).await;
    let forged = forged_token();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, _, _) =
            util::http(srv.addr, "GET", &format!("/ws?token={forged}"), &[], b"").await;
        statuses.push(status);
    }
    // The burst's two are verified and refused (401); the rest are rate limited first (429).
    assert_eq!(statuses[..2], [401, 401], "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429) && statuses.contains(&429),
        "{statuses:?}"
    );
    let verified = srv
        .server()
        .metrics()
        .tokens_verified
        .load(std::sync::atomic::Ordering::Relaxed);
    let refused = statuses.iter().filter(|s| **s == 401).count() as u64;
    assert_eq!(
        verified, refused,
        "only admitted upgrades were verified: {statuses:?}"
    );
}

/// The `auth` op on an open socket is bounded by the connection's op rate like any op: past it,
/// `rate_limited` without the token being verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_ops_past_the_op_rate_are_refused_before_their_token_is_verified() {
    let mut c = util::config();
    c.auth.jwt_hs256_secret = Some(SECRET.into());
    c.ws.ops_per_second = 1;
    c.ws.ops_burst = 2;
    let srv = util::start(c).await;
    let forged = forged_token();
    let mut c = srv.connect().await;
    for id in 0..6 {
        c.send(json!({"op":"auth","id":id,"token":forged})).await;
    }
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(code(&c.event_of("error").await).to_owned());
    }
    let verified = srv
        .server()
        .metrics()
        .tokens_verified
        .load(std::sync::atomic::Ordering::Relaxed);
    let refused = codes.iter().filter(|c| *c == "unauthorized").count() as u64;
    assert!(codes.iter().any(|c| c == "rate_limited"), "{codes:?}");
    assert_eq!(verified, refused, "{codes:?}");
}
