//! The private `portfolio` channel end to end (docs/PROTOCOL.md "Portfolio"), and exact money
//! through REST and the socket on both backends.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::util::{self, Client, TestServer};

const SECRET: &str = "a-portfolio-secret-of-32-bytes-or-more";
const TRADES: &str = "/api/v1/portfolio/trades";

fn token(user: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        + 600;
    encode(
        &Header::default(),
        &json!({"sub": user, "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

/// A server with HS256 auth on `db`; price-driven updates every `update_ms`.
async fn server(db: &util::TestDb, update_ms: u64) -> TestServer {
    let mut c = db.config();
    c.auth.jwt_hs256_secret = Some(SECRET.into());
    c.portfolio.update_ms = update_ms;
    c.portfolio.idle_ms = update_ms.max(60_000);
    util::start(c).await
}

async fn connect(srv: &TestServer, user: &str, msgpack: bool) -> Client {
    let enc = if msgpack { "&encoding=msgpack" } else { "" };
    let url = format!("{}?token={}{enc}", srv.url(), token(user));
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connects with a token");
    let c = Client::from_stream(ws);
    if msgpack { c.msgpack() } else { c }
}

async fn trade(srv: &TestServer, key: &str, body: Value) -> Value {
    let (status, _, got) = srv
        .post(TRADES, Some(key), &[], body.to_string().as_bytes())
        .await;
    assert_eq!(status, 201, "{got}");
    got
}

/// The next `portfolio` event (skipping nothing else: this channel is all these clients hold).
async fn next_portfolio(c: &mut Client) -> Value {
    let e = c.event().await;
    assert_eq!(e["type"], "portfolio", "{e}");
    assert_eq!(e["ch"], "portfolio", "{e}");
    e
}

/// Subscribes to `portfolio` and returns (ack, the snapshot's one event).
async fn subscribe(c: &mut Client, req: Value) -> (Value, Value) {
    let ack = c.subscribe(req).await;
    let snap = c.event().await;
    assert_eq!(
        (snap["type"].as_str(), snap["ch"].as_str()),
        (Some("snapshot"), Some("portfolio")),
        "{snap}"
    );
    let data = snap["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        data.len(),
        1,
        "a portfolio snapshot is its latest state: {snap}"
    );
    (ack, data[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_authenticated_connection_gets_its_own_portfolio() {
    let db = util::TestDb::sqlite();
    let srv = server(&db, 60_000).await;
    let store = srv.server().store();
    let (_, alice) = store.create_user("alice").await.unwrap();
    store.create_user("bob").await.unwrap();

    // Anonymous: unauthorized, and the connection stays usable.
    let mut anon = srv.connect().await;
    anon.send(json!({"op":"subscribe","id":1,"channels":["portfolio"]}))
        .await;
    let e = anon.event().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_i64()),
        (Some("error"), Some("unauthorized"), Some(1)),
        "{e}"
    );
    for (name, code) in [
        ("portfolio:AAPL", "bad_request"),
        ("portfolio:*", "bad_request"),
    ] {
        anon.send(json!({"op":"subscribe","id":2,"channels":[name]}))
            .await;
        assert_eq!(anon.event().await["code"], code, "{name}");
    }
    anon.send(json!({"op":"ping","id":3})).await;
    assert_eq!(anon.event().await["type"], "pong");

    // A token whose user does not exist here: forbidden.
    let mut ghost = connect(&srv, "ghost", false).await;
    ghost
        .send(json!({"op":"subscribe","id":4,"channels":["portfolio"]}))
        .await;
    assert_eq!(ghost.event().await["code"], "forbidden");

    // Alice and Bob each see their own; Alice's trade reaches Alice only.
    let mut a = connect(&srv, "alice", false).await;
    let mut b = connect(&srv, "bob", false).await;
    let (_, a0) = subscribe(&mut a, json!({"op":"subscribe","channels":["portfolio"]})).await;
    let (_, b0) = subscribe(&mut b, json!({"op":"subscribe","channels":["portfolio"]})).await;
    assert_eq!(
        (a0["reason"].as_str(), a0["trades"].as_i64()),
        (Some("snapshot"), Some(0))
    );
    assert_eq!(b0["positions"], json!([]));
    trade(
        &srv,
        &alice,
        json!({"symbol":"AAPL","side":"buy","quantity":10,"price":100}),
    )
    .await;
    // Price-driven updates are a minute apart here: this one is the trade's.
    let a1 = next_portfolio(&mut a).await;
    assert_eq!(a1["reason"], "trade", "{a1}");
    assert_eq!(a1["seq"].as_u64(), a0["seq"].as_u64().map(|s| s + 1));
    assert_eq!(a1["trades"], 1);
    assert_eq!(a1["positions"][0]["symbol"], "AAPL");
    assert_eq!(a1["positions"][0]["quantity"], 10);
    assert!(
        b.silent_for(Duration::from_millis(500)).await,
        "bob must not see alice's trade"
    );

    // Unsubscribing stops the updates; a second subscribe gets the latest state as snapshot.
    a.send(json!({"op":"unsubscribe","id":5,"channels":["portfolio"]}))
        .await;
    assert_eq!(a.event().await["type"], "ack");
    a.send(json!({"op":"unsubscribe","id":6,"channels":["portfolio"]}))
        .await;
    assert_eq!(a.event().await["code"], "not_subscribed");
    let (_, again) = subscribe(&mut a, json!({"op":"subscribe","channels":["portfolio"]})).await;
    assert_eq!(again, a1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portfolio_resumes_from_its_seq_and_moves_with_prices() {
    let db = util::TestDb::sqlite();
    let srv = server(&db, 100).await;
    let (_, key) = srv.server().store().create_user("carol").await.unwrap();
    trade(
        &srv,
        &key,
        json!({"symbol":"MSFT","side":"buy","quantity":"2","price":"50"}),
    )
    .await;

    let mut c = connect(&srv, "carol", false).await;
    let (ack, first) = subscribe(&mut c, json!({"op":"subscribe","channels":["portfolio"]})).await;
    let epoch = ack["epoch"].clone();
    assert_eq!(
        first["unrealized_pnl"],
        Value::Null,
        "no live price yet: {first}"
    );
    let seen = first["seq"].as_u64().unwrap();
    drop(c);

    // Missed while away: a trade, and the first live price.
    trade(
        &srv,
        &key,
        json!({"symbol":"MSFT","side":"buy","quantity":"1","price":"53"}),
    )
    .await;
    srv.ingest(json!([{"symbol":"MSFT","price":55.5,"size":1,"side":"buy"}]))
        .await;
    srv.wait_seq("MSFT", 1).await;

    let mut c = connect(&srv, "carol", false).await;
    c.subscribe(json!({"op":"subscribe","channels":["portfolio"],
        "from":{"portfolio": seen},"epoch":epoch}))
        .await;
    // Replayed exactly from seen + 1 (no snapshot), ending at the valuation at 55.5:
    // 3 at an average of 51, so 13.5 unrealized.
    let mut next = seen + 1;
    loop {
        let e = next_portfolio(&mut c).await;
        assert_eq!(e["seq"].as_u64(), Some(next), "{e}");
        next += 1;
        if e["unrealized_pnl"] == json!(13.5) {
            assert_eq!(e["positions"][0]["avg_cost"], 51, "{e}");
            assert_eq!(e["positions"][0]["market_value"], 166.5, "{e}");
            // The trade's update may already see the new price (it reads the store after the
            // tick arrived); otherwise a price update brings it.
            assert!(e["reason"] == "prices" || e["reason"] == "trade", "{e}");
            break;
        }
    }

    // A stale epoch gets a reset snapshot with the current state.
    let mut c2 = connect(&srv, "carol", false).await;
    c2.send(json!({"op":"subscribe","channels":["portfolio"],
        "from":{"portfolio": seen},"epoch": 1}))
        .await;
    assert_eq!(c2.event().await["type"], "ack");
    let snap = c2.event().await;
    assert_eq!(
        (snap["type"].as_str(), snap["reset"].as_bool()),
        (Some("snapshot"), Some(true)),
        "{snap}"
    );
    assert_eq!(snap["data"][0]["unrealized_pnl"], 13.5, "{snap}");

    // Prices move: a throttled update follows.
    srv.ingest(json!([{"symbol":"MSFT","price":60,"size":1,"side":"buy"}]))
        .await;
    let moved = next_portfolio(&mut c).await;
    assert_eq!(
        (moved["reason"].as_str(), moved["unrealized_pnl"].as_f64()),
        (Some("prices"), Some(27.0)),
        "{moved}"
    );
}

/// 0.1 + 0.2 bought is 0.3 exactly, over REST and on the socket, on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_is_exact_through_rest_and_the_socket() {
    for db in util::backends().await {
        let srv = server(&db, 60_000).await;
        let (_, key) = srv.server().store().create_user("dora").await.unwrap();
        let mut c = connect(&srv, "dora", false).await;
        let mut m = connect(&srv, "dora", true).await;
        subscribe(&mut c, json!({"op":"subscribe","channels":["portfolio"]})).await;
        subscribe(&mut m, json!({"op":"subscribe","channels":["portfolio"]})).await;

        let t = trade(
            &srv,
            &key,
            json!({"symbol":"ETH-USD","side":"buy","quantity":0.1,"price":0.1}),
        )
        .await;
        assert_eq!(t["quantity"], json!(0.1));
        trade(
            &srv,
            &key,
            json!({"symbol":"ETH-USD","side":"buy","quantity":"0.2","price":"0.2"}),
        )
        .await;

        // REST, as text: the digits themselves, not 0.30000000000000004.
        let (status, _, body) = util::http(
            srv.addr,
            "GET",
            "/api/v1/portfolio",
            &[("Authorization", &format!("Bearer {key}"))],
            b"",
        )
        .await;
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains(r#""quantity":0.3,"#),
            "{}: {text}",
            db.backend
        );
        // Average cost (0.1 × 0.1 + 0.2 × 0.2) / 0.3 = 0.05 / 0.3, rounded to 28 digits.
        assert!(
            text.contains(r#""avg_cost":0.1666666666666666666666666667"#),
            "{}: {text}",
            db.backend
        );

        // The socket: JSON numbers with the same digits, MessagePack strings.
        let mut last = Value::Null;
        while last["trades"] != 2 {
            last = next_portfolio(&mut c).await;
        }
        assert_eq!(last["positions"][0]["quantity"], json!(0.3), "{last}");
        let mut packed = Value::Null;
        while packed["trades"] != 2 {
            packed = next_portfolio(&mut m).await;
        }
        assert_eq!(packed["positions"][0]["quantity"], json!("0.3"), "{packed}");
        assert_eq!(packed["realized_pnl"], json!("0"), "{packed}");

        // Selling 0.3 leaves exactly nothing, and the realized P&L is exact.
        trade(
            &srv,
            &key,
            json!({"symbol":"ETH-USD","side":"sell","quantity":0.3,"price":0.2}),
        )
        .await;
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        assert_eq!(
            p["positions"][0]["quantity"],
            json!(0),
            "{}: {p}",
            db.backend
        );
        // 0.3 × (0.2 − 0.1666…67) is 0.00999…9999 to 29 digits, rounded to the decimal's 28
        // fraction digits: 0.01, what 0.3 × (0.2 − 0.05 / 0.3) is.
        assert_eq!(p["realized_pnl"], json!(0.01), "{}: {p}", db.backend);
    }
}

/// Runs one statement on `store`'s database.
async fn exec(store: &tickcast::store::Store, q: &str) {
    match store.db() {
        tickcast::store::Db::Sqlite(p) => {
            sqlx::query(q).execute(p).await.unwrap();
        }
        tickcast::store::Db::Postgres(p) => {
            sqlx::query(q).execute(p).await.unwrap();
        }
    }
}

/// Trades stored as binary floats before migration 0007 come back as the decimals they were
/// sent as, and their positions are rebuilt in decimal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_turns_float_trades_into_exact_ones() {
    for db in util::backends().await {
        let url = db.url.clone();
        let (user, key) = {
            let store = tickcast::store::Store::open(&db.config().database).unwrap();
            store.migrate_to(6).await.unwrap();
            let (user, key) = store.create_user("gus").await.unwrap();
            // As 0006 stored them: doubles, and a position kept in doubles.
            for (i, (side, q, px)) in [(0, 0.1f64, 10.0f64), (0, 0.2, 10.0), (1, 0.1, 12.5)]
                .into_iter()
                .enumerate()
            {
                exec(
                    &store,
                    &format!(
                        "INSERT INTO trades (user_id, symbol, side, quantity, price, ts, \
                         created_ms, time_sent) VALUES ({user}, 'SOL', {side}, {q}, {px}, \
                         {ts}, 0, 1)",
                        ts = 1000 + i
                    ),
                )
                .await;
            }
            exec(
                &store,
                &format!(
                    "INSERT INTO positions VALUES ({user}, 'SOL', {}, 10, 0.25, 3, 1002, 3, 0)",
                    0.1f64 + 0.2 - 0.1
                ),
            )
            .await;
            store.close().await;
            (user, key)
        };
        assert!(user > 0);
        let mut c = db.config();
        c.database.url = url;
        let srv = util::start(c).await;
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        let pos = &p["positions"][0];
        assert_eq!(pos["quantity"], json!(0.2), "{}: {p}", db.backend);
        assert_eq!(pos["avg_cost"], json!(10), "{}: {p}", db.backend);
        assert_eq!(p["realized_pnl"], json!(0.25), "{}: {p}", db.backend);
        assert_eq!(p["trades"], 3);
    }
}

/// One subscribe naming `portfolio` 5,000 times resolves it once (one store look-up) and is
/// answered with one ack and one snapshot; one naming more distinct channels than the
/// connection may hold is refused with `too_many_subscriptions` before any is resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_channel_names_are_resolved_once_and_an_op_is_capped() {
    let db = util::TestDb::sqlite();
    let mut c = db.config();
    c.auth.jwt_hs256_secret = Some(SECRET.into());
    c.ws.max_subscriptions = 8;
    let srv = util::start(c).await;
    srv.server().store().create_user("dora").await.unwrap();
    let opens = || {
        srv.server()
            .metrics()
            .portfolio_opens
            .load(Ordering::Relaxed)
    };

    let mut dora = connect(&srv, "dora", false).await;
    let names = vec!["portfolio"; 5_000];
    let (ack, state) =
        subscribe(&mut dora, json!({"op":"subscribe","id":1,"channels":names})).await;
    assert_eq!(ack["channels"], json!(["portfolio"]), "{ack}");
    assert_eq!(state["reason"], "snapshot", "{state}");
    assert_eq!(opens(), 1, "5,000 repeats of one name are one look-up");

    // Nine distinct names (one more than ws.max_subscriptions): refused whole, nothing read.
    let mut names: Vec<String> = (0..8).map(|i| format!("ticks:NOPE{i}")).collect();
    names.push("portfolio".to_owned());
    dora.send(json!({"op":"subscribe","id":2,"channels":names}))
        .await;
    let e = dora.event().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_i64()),
        (Some("error"), Some("too_many_subscriptions"), Some(2)),
        "{e}"
    );
    assert!(dora.silent_for(Duration::from_millis(300)).await);
    assert_eq!(opens(), 1, "a refused op resolves nothing");
}
