//! Drain for rolling upgrades (docs/PROTOCOL.md "Draining"): `POST /admin/drain` (or SIGTERM,
//! tests/service.rs and tests/shutdown.rs) makes `/readyz` 503 at once, refuses new sockets,
//! sends every client a `notice`, and closes each with 1001 after `server.drain_grace_ms`;
//! clients resume on another node with `from` and `epoch` and miss nothing.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::cluster::{ClusterEnv, NATS, Node, SLOW, state};
use crate::util::{self, Client, Got, TestDb};

const ADMIN: &str = "an-admin-token-for-tests";

async fn post_drain(addr: SocketAddr, token: Option<&str>) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, _, body) = util::http(addr, "POST", "/admin/drain", &headers, b"").await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_drain_is_off_without_a_token() {
    let srv = util::start(util::config()).await;
    let (status, body) = post_drain(srv.addr, Some(ADMIN)).await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
    assert_eq!(srv.readyz().await.0, 200, "nothing was drained");
}

/// Bad credentials change nothing; the right token drains: readiness 503 `draining`, new
/// sockets refused, open ones (JSON and MessagePack) get the notice and, after the grace, 1001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_drain_tells_every_socket_then_closes_it_with_1001() {
    let mut config = util::config();
    config.server.admin_token = ADMIN.into();
    config.server.drain_grace_ms = 1500;
    let srv = util::start(config).await;
    srv.ingest_n("AAPL", 1, 0.0).await;
    srv.wait_seq("AAPL", 1).await;
    let mut json_client = srv.connect().await;
    json_client
        .subscribe(json!({"op":"subscribe","channels":["ticks:AAPL"]}))
        .await;
    json_client.event_of("snapshot").await;
    let mut msgpack_client = Client::connect_msgpack(&srv.url()).await;

    for (token, code) in [
        (None, "unauthorized"),
        (Some("wrong-token-wrong"), "unauthorized"),
    ] {
        let (status, body) = post_drain(srv.addr, token).await;
        assert_eq!((status, &body["code"]), (401, &json!(code)), "{body}");
    }
    assert_eq!(
        srv.readyz().await.0,
        200,
        "a refused request drains nothing"
    );

    let (status, body) = post_drain(srv.addr, Some(ADMIN)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (&body["status"], &body["already"]),
        (&json!("draining"), &json!(false))
    );
    assert!(
        body["close_in_ms"].as_u64().is_some_and(|ms| ms <= 1500),
        "{body}"
    );
    assert_eq!(
        srv.readyz().await,
        (503, json!({"status": "draining"})),
        "readiness turns at once"
    );
    let (again, body) = post_drain(srv.addr, Some(ADMIN)).await;
    assert_eq!((again, &body["already"]), (202, &json!(true)));
    let metrics = util::metrics_text(&srv).await;
    assert_eq!(util::metric(&metrics, "tickcast_draining"), Some(1));

    // No new socket: the upgrade is refused with a problem.
    let (status, _, body) = util::http(
        srv.addr,
        "GET",
        "/ws",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    )
    .await;
    let problem: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(
        (status, &problem["code"]),
        (503, &json!("shutting_down")),
        "{problem}"
    );

    for (client, name) in [(&mut json_client, "json"), (&mut msgpack_client, "msgpack")] {
        let notice = client.event_of("notice").await;
        assert_eq!(notice["code"], "draining", "{name}: {notice}");
        let after = notice["reconnect_after_ms"].as_u64().expect("a delay");
        assert!(
            after < 750,
            "{name}: within the first half of the grace: {after}"
        );
    }
    // Events still flow during the grace.
    srv.ingest_n("AAPL", 1, 0.0).await;
    assert_eq!(json_client.event_of("tick").await["seq"], 2);
    assert_eq!(json_client.closed().await, Some(CloseCode::Away));
    assert_eq!(msgpack_client.closed().await, Some(CloseCode::Away));
}

/// What one client saw of the stream: the last `seq` of each channel.
type Seen = HashMap<String, u64>;

/// Records an event; a tick must follow the last one of its channel exactly.
fn track(seen: &mut Seen, e: &Value) {
    let Some(ch) = e["ch"].as_str() else { return };
    let seq = e["seq"].as_u64().unwrap_or(0);
    match e["type"].as_str() {
        Some("snapshot") => {
            seen.insert(ch.to_owned(), seq);
        }
        Some("tick") => {
            if let Some(last) = seen.get(ch) {
                assert_eq!(seq, last + 1, "a gap on {ch}: {e}");
            }
            seen.insert(ch.to_owned(), seq);
        }
        _ => {}
    }
}

/// One client's drain: subscribed on A, it reads until the notice, then on until A closes it
/// (1001), then resumes on B with `from` and `epoch`: each channel continues at the next `seq`.
async fn ride_out_the_drain(
    a: String,
    b: String,
    subscribed: tokio::sync::mpsc::Sender<()>,
) -> usize {
    let mut c = Client::connect(&a).await;
    let ack = c
        .subscribe(json!({"op":"subscribe","channels":["ticks:*"],"snapshot":1}))
        .await;
    let epoch = ack["epoch"].clone();
    let mut seen = Seen::new();
    let _ = subscribed.send(()).await;
    let mut noticed = false;
    let deadline = tokio::time::Instant::now() + SLOW;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_within(left).await {
            Some(Got::Event(e)) if e["type"] == "notice" => {
                assert_eq!(e["code"], "draining", "{e}");
                noticed = true;
            }
            Some(Got::Event(e)) => track(&mut seen, &e),
            Some(Got::Closed(code, reason)) => {
                assert!(
                    noticed,
                    "closed ({code:?} {reason}) without the notice first"
                );
                assert_eq!(code, Some(CloseCode::Away), "{reason}");
                break;
            }
            None => panic!("no notice and close within {SLOW:?} (notice seen: {noticed})"),
        }
    }
    assert_eq!(seen.len(), 2, "both channels seen on A: {seen:?}");

    let from: Map<String, Value> = seen.iter().map(|(ch, s)| (ch.clone(), json!(s))).collect();
    let mut c = Client::connect(&b).await;
    c.subscribe(json!({"op":"subscribe","channels":["ticks:*"],"from":from,"epoch":epoch}))
        .await;
    let mut continued = HashMap::new();
    let deadline = tokio::time::Instant::now() + SLOW;
    while continued.len() < seen.len() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_within(left).await {
            Some(Got::Event(e)) if e["type"] == "tick" => {
                let ch = e["ch"].as_str().unwrap_or_default().to_owned();
                if let Some(last) = seen.get(&ch) {
                    continued
                        .entry(ch.clone())
                        .or_insert_with(|| e["seq"].as_u64());
                    assert_eq!(
                        continued[&ch],
                        Some(last + 1),
                        "{ch} resumed with a gap: {e}"
                    );
                }
            }
            Some(Got::Event(e)) if e["type"] == "snapshot" => {
                let ch = e["ch"].as_str().unwrap_or_default();
                assert!(
                    !seen.contains_key(ch),
                    "a held gap answered by a snapshot: {e}"
                );
            }
            Some(Got::Event(_)) => {}
            other => panic!("resume on B: {other:?}; continued {continued:?} of {seen:?}"),
        }
    }
    seen.len()
}

/// Two edges on one stream; 200 sockets on edge A. Draining A: every socket gets the notice,
/// then 1001; each client resumes on edge B from where it was, with no missed tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_an_edge_under_200_sockets_moves_them_to_another_edge_with_no_gap() {
    let db = TestDb::postgres().await;
    let env = ClusterEnv::new(&db, NATS, 2_000);
    // 10 ticks/s over two symbols: 200 clients read 2,000 events/s here.
    let slow_feed = [("TICKCAST_FEEDS__SYNTHETIC__RATE", "10")];
    let ingest = Node::start("ingest", &env, &slow_feed).await;
    ingest
        .wait_ready(200, "the ingest leader", |b| state(b) == "leader")
        .await;
    let edge_vars = [
        ("TICKCAST_SERVER__ADMIN_TOKEN", ADMIN),
        ("TICKCAST_SERVER__DRAIN_GRACE_MS", "3000"),
    ];
    let edge_a = Node::start("edge", &env, &edge_vars).await;
    let edge_b = Node::start("edge", &env, &edge_vars).await;
    for edge in [&edge_a, &edge_b] {
        edge.wait_ready(200, "live", |b| state(b) == "live").await;
    }
    // Both symbols known on A before the clients come (a wildcard's snapshot names them).
    let mut watch = Client::connect(&edge_a.ws_url()).await;
    watch
        .subscribe(json!({"op":"subscribe","channels":["ticks:*"],"snapshot":0}))
        .await;
    let mut known = std::collections::HashSet::new();
    while known.len() < 2 {
        match watch.next_within(SLOW).await {
            Some(Got::Event(e)) if e["type"] == "tick" => {
                known.insert(e["ch"].to_string());
            }
            Some(Got::Event(_)) => {}
            other => panic!("ticks on edge A: {other:?}"),
        }
    }
    drop(watch);

    const SOCKETS: usize = 200;
    let (tx, mut rx) = tokio::sync::mpsc::channel(SOCKETS);
    let clients: Vec<_> = (0..SOCKETS)
        .map(|_| {
            tokio::spawn(ride_out_the_drain(
                edge_a.ws_url(),
                edge_b.ws_url(),
                tx.clone(),
            ))
        })
        .collect();
    for _ in 0..SOCKETS {
        tokio::time::timeout(SLOW, rx.recv())
            .await
            .expect("every client subscribed in time");
    }

    let (status, body) = post_drain(edge_a.addr, Some(ADMIN)).await;
    assert_eq!(status, 202, "{body}");
    let (ready, body) = edge_a.readyz().await.expect("A answers");
    assert_eq!((ready, &body["status"]), (503, &json!("draining")));
    assert_eq!(
        edge_b.readyz().await.map(|r| r.0),
        Some(200),
        "B stays ready"
    );

    let mut resumed = 0;
    for c in clients {
        resumed += tokio::time::timeout(SLOW * 2, c)
            .await
            .expect("every client done in time")
            .expect("client task");
    }
    assert_eq!(
        resumed,
        SOCKETS * 2,
        "every channel of every client resumed"
    );
    util::wait_until("A's sockets gone", SLOW, async || {
        edge_a.metric("tickcast_ws_connections").await == 0
    })
    .await;
}
