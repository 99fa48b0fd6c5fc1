//! Portfolio: API-key auth, isolation between users, idempotent trade recording, positions and
//! P&L valued at live prices. Each test runs on SQLite and on PostgreSQL.

use serde_json::{Value, json};

use crate::util::{self, TestServer, header};

const TRADES: &str = "/api/v1/portfolio/trades";

async fn trade(srv: &TestServer, key: &str, idem: Option<&str>, body: Value) -> (u16, Value) {
    let extra: Vec<(&str, &str)> = idem.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    let (status, _, body) = srv
        .post(TRADES, Some(key), &extra, body.to_string().as_bytes())
        .await;
    (status, body)
}

#[tokio::test]
async fn keys_authenticate_and_users_see_only_their_own_data() {
    for db in util::backends().await {
        let srv = util::start(db.config()).await;
        let store = &srv.server().store();
        let (_, alice) = store.create_user("alice").await.unwrap();
        let (_, bob) = store.create_user("bob").await.unwrap();
        assert!(
            store.create_user("alice").await.is_err(),
            "names are unique"
        );

        let (status, body) = trade(
            &srv,
            &alice,
            None,
            json!({"symbol": "AAPL", "side": "buy", "quantity": 10, "price": 100.0}),
        )
        .await;
        assert_eq!(status, 201, "{}: {body}", db.backend);

        let (_, _, mine) = srv.get("/api/v1/portfolio", Some(&alice)).await;
        assert_eq!(mine["trades"], 1, "{}", db.backend);
        assert_eq!(mine["positions"][0]["symbol"], "AAPL");
        let (status, _, theirs) = srv.get("/api/v1/portfolio", Some(&bob)).await;
        assert_eq!(status, 200);
        assert_eq!(theirs["trades"], 0, "{}: bob sees alice's data", db.backend);
        assert_eq!(theirs["positions"], json!([]));

        // Bob reusing alice's idempotency key gets his own trade, not hers.
        let (s1, _) = trade(
            &srv,
            &alice,
            Some("k1"),
            json!({"symbol": "MSFT", "side": "buy", "quantity": 1, "price": 5.0}),
        )
        .await;
        let (s2, b2) = trade(
            &srv,
            &bob,
            Some("k1"),
            json!({"symbol": "TSLA", "side": "sell", "quantity": 2, "price": 7.0}),
        )
        .await;
        assert_eq!((s1, s2), (201, 201), "{b2}");
        assert_eq!(b2["symbol"], "TSLA");

        for (what, key) in [("missing", None), ("wrong", Some("not-a-key"))] {
            for (method, path) in [("GET", "/api/v1/portfolio"), ("POST", TRADES)] {
                let (status, h, body) = if method == "GET" {
                    srv.get(path, key).await
                } else {
                    srv.post(path, key, &[], b"{}").await
                };
                assert_eq!(status, 401, "{what} key, {method} {path}: {body}");
                assert_eq!(body["code"], "unauthorized");
                assert_eq!(header(&h, "content-type"), Some("application/problem+json"));
            }
        }
    }
}

#[tokio::test]
async fn idempotency_key_records_a_trade_once() {
    for db in util::backends().await {
        let srv = util::start(db.config()).await;
        let (_, key) = srv.server().store().create_user("carol").await.unwrap();
        let fill = json!({"symbol": "AAPL", "side": "buy", "quantity": 3, "price": 10.5,
            "time": "2025-11-25T11:26:40Z"});
        let (s1, first) = trade(&srv, &key, Some("order-1"), fill.clone()).await;
        assert_eq!(s1, 201, "{}: {first}", db.backend);
        assert_eq!(first["ts"], 1_764_070_000_000_000_000i64);

        // Concurrent retries of the same request: all answer with the first trade.
        let retries = (0..8).map(|_| trade(&srv, &key, Some("order-1"), fill.clone()));
        for (status, body) in futures_util::future::join_all(retries).await {
            assert_eq!(status, 200, "{}: {body}", db.backend);
            assert_eq!(body["id"], first["id"]);
        }
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        assert_eq!(p["trades"], 1, "{}", db.backend);
        assert_eq!(p["positions"][0]["quantity"], 3.0);

        // Same key, different trade: conflict.
        let mut other = fill.clone();
        other["quantity"] = json!(4);
        let (status, body) = trade(&srv, &key, Some("order-1"), other).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["code"], "idempotency_conflict");

        // A request without `time` ("now") retried with the same key: the first trade again,
        // although "now" has moved on.
        let untimed = json!({"symbol": "AAPL", "side": "buy", "quantity": 1, "price": 10.0});
        let (s1, first) = trade(&srv, &key, Some("order-2"), untimed.clone()).await;
        assert_eq!(s1, 201, "{first}");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let (s2, again) = trade(&srv, &key, Some("order-2"), untimed.clone()).await;
        assert_eq!(s2, 200, "{}: {again}", db.backend);
        assert_eq!(again, first);
        // Adding a time to that request, or dropping it from a timed one, is another request.
        let mut timed = untimed.clone();
        timed["time"] = first["ts"].clone();
        let (status, body) = trade(&srv, &key, Some("order-2"), timed).await;
        assert_eq!(status, 409, "{body}");
        let mut dropped = fill.clone();
        dropped.as_object_mut().unwrap().remove("time");
        let (status, body) = trade(&srv, &key, Some("order-1"), dropped).await;
        assert_eq!(status, 409, "{body}");
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        assert_eq!(p["trades"], 2, "{}", db.backend);

        // Without a key, two posts are two trades.
        trade(&srv, &key, None, fill.clone()).await;
        trade(&srv, &key, None, fill.clone()).await;
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        assert_eq!(p["trades"], 4);
    }
}

#[tokio::test]
async fn positions_use_average_cost_and_live_prices() {
    for db in util::backends().await {
        let srv = util::start(db.config()).await;
        let (_, key) = srv.server().store().create_user("dave").await.unwrap();
        let fills = [
            ("AAPL", "buy", 10.0, 100.0, 1000),
            ("AAPL", "buy", 10.0, 110.0, 2000),
            ("AAPL", "sell", 5.0, 120.0, 3000),
            ("MSFT", "sell", 2.0, 50.0, 1000),
        ];
        for (symbol, side, quantity, price, time) in fills {
            let (status, body) = trade(
                &srv,
                &key,
                None,
                json!({"symbol": symbol, "side": side, "quantity": quantity,
                    "price": price, "time": time}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
        }
        // No live price yet: unrealized is null.
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        assert_eq!(p["unrealized_pnl"], Value::Null, "{p}");
        assert_eq!(p["realized_pnl"], 75.0);

        // AAPL trades at 130 live; MSFT at 40.
        srv.ingest(json!([
            {"symbol": "AAPL", "price": 130.0, "size": 1, "side": "buy"},
            {"symbol": "MSFT", "price": 40.0, "size": 1, "side": "sell"}
        ]))
        .await;
        srv.wait_seq("MSFT", 1).await;
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        let aapl = &p["positions"][0];
        assert_eq!(aapl["symbol"], "AAPL");
        assert_eq!(aapl["quantity"], 15.0);
        assert_eq!(aapl["avg_cost"], 105.0);
        assert_eq!(aapl["last_price"], 130.0);
        assert_eq!(aapl["unrealized_pnl"], 375.0);
        assert_eq!(aapl["realized_pnl"], 75.0);
        let msft = &p["positions"][1];
        assert_eq!(msft["quantity"], -2.0);
        assert_eq!(msft["unrealized_pnl"], 20.0, "short gains when price falls");
        assert_eq!(p["unrealized_pnl"], 395.0, "{}: {p}", db.backend);
    }
}

#[tokio::test]
async fn bad_trades_are_problems() {
    for db in util::backends().await {
        let srv = util::start(db.config()).await;
        let (_, key) = srv.server().store().create_user("erin").await.unwrap();
        let ok = json!({"symbol": "AAPL", "side": "buy", "quantity": 1, "price": 1.0});
        let with = |k: &str, v: Value| {
            let mut b = ok.clone();
            b[k] = v;
            b
        };
        let cases: Vec<(Value, u16, &str)> = vec![
            (json!([1, 2]), 400, "malformed_body"),
            (json!({"symbol": "AAPL"}), 400, "malformed_body"),
            (with("extra", json!(1)), 400, "malformed_body"),
            (with("quantity", json!(true)), 400, "malformed_body"),
            (with("price", json!(null)), 400, "malformed_body"),
            // Decimals may come as strings (exact either way); this one is not a number.
            (with("quantity", json!("ten")), 422, "invalid_trade"),
            (
                with("quantity", json!(0.0000000000001)),
                422,
                "invalid_trade",
            ),
            (with("price", json!(1e16)), 422, "invalid_trade"),
            (with("symbol", json!("aapl")), 422, "invalid_trade"),
            (with("side", json!("hold")), 422, "invalid_trade"),
            (with("quantity", json!(0)), 422, "invalid_trade"),
            (with("price", json!(-1.0)), 422, "invalid_trade"),
            (with("time", json!("last tuesday")), 422, "invalid_trade"),
            (with("time", json!(-5)), 422, "invalid_trade"),
            // Past feeds.max_future_skew_ms (5 s by default): ten years ahead, and one minute.
            (
                with("time", json!("2036-01-01T00:00:00Z")),
                422,
                "invalid_trade",
            ),
            (with("time", json!(now_ms() + 60_000)), 422, "invalid_trade"),
        ];
        for (body, status, code) in cases {
            let (s, got) = trade(&srv, &key, None, body.clone()).await;
            assert_eq!(
                (s, got["code"].as_str()),
                (status, Some(code)),
                "{body}: {got}"
            );
        }
        let (_, got) = trade(&srv, &key, None, with("time", json!(now_ms() + 60_000))).await;
        let detail = got["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("ahead") && detail.contains("feeds.max_future_skew_ms"),
            "{got}"
        );
        let long = "k".repeat(129);
        for bad in [long.as_str(), "has space"] {
            let (s, got) = trade(&srv, &key, Some(bad), ok.clone()).await;
            assert_eq!(
                (s, got["code"].as_str()),
                (400, Some("bad_idempotency_key"))
            );
        }
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        assert_eq!(p["trades"], 0, "{}: nothing recorded", db.backend);
        // Within the skew a fill dated ahead is recorded.
        let (s, got) = trade(&srv, &key, None, with("time", json!(now_ms() + 1_000))).await;
        assert_eq!(s, 201, "{got}");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Runs one statement on the server's own database (the test's view behind the API).
async fn sql(srv: &TestServer, q: &str) {
    match srv.server().store().db() {
        tickcast::store::Db::Sqlite(p) => {
            sqlx::query(q).execute(p).await.unwrap();
        }
        tickcast::store::Db::Postgres(p) => {
            sqlx::query(q).execute(p).await.unwrap();
        }
    }
}

#[tokio::test]
async fn positions_are_kept_with_each_trade_and_late_fills_rebuild_them() {
    for db in util::backends().await {
        let srv = util::start(db.config()).await;
        let (_, key) = srv.server().store().create_user("erin").await.unwrap();
        let post = |side: &'static str, quantity: f64, price: f64, time: i64| {
            let body = json!({"symbol": "AAPL", "side": side, "quantity": quantity,
                "price": price, "time": time});
            let (srv, key) = (&srv, &key);
            async move {
                let (status, body) = trade(srv, key, None, body).await;
                assert_eq!(status, 201, "{body}");
            }
        };
        post("buy", 10.0, 100.0, 1000).await;
        post("buy", 10.0, 110.0, 3000).await;
        // Reported late: fills before the one at 3000, so average cost is recomputed in time
        // order (buy 10@100, sell 5@120 realizes 100, buy 10@110: 15 at 106.67).
        post("sell", 5.0, 120.0, 2000).await;
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        let pos = &p["positions"][0];
        assert_eq!(pos["quantity"], 15.0, "{}: {p}", db.backend);
        assert_eq!(pos["realized_pnl"], 100.0, "{}: {p}", db.backend);
        let avg = pos["avg_cost"].as_f64().unwrap();
        assert!(
            (avg - (5.0 * 100.0 + 10.0 * 110.0) / 15.0).abs() < 1e-9,
            "{p}"
        );
        assert_eq!(p["trades"], 3);

        // The portfolio is read from the positions, not the trade history: with the history
        // gone from under it, it answers the same.
        sql(&srv, "DELETE FROM trades").await;
        let (status, _, again) = srv.get("/api/v1/portfolio", Some(&key)).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again, p, "{}", db.backend);
    }
}

#[tokio::test]
async fn stale_positions_are_rebuilt_from_trades_on_first_read() {
    for db in util::backends().await {
        let srv = util::start(db.config()).await;
        let (_, key) = srv.server().store().create_user("frank").await.unwrap();
        for (side, quantity, price, time) in [("buy", 4.0, 10.0, 1000), ("sell", 1.0, 14.0, 2000)] {
            let body = json!({"symbol": "IBM", "side": side, "quantity": quantity,
                "price": price, "time": time});
            assert_eq!(trade(&srv, &key, None, body).await.0, 201);
        }
        // As migration 0006 leaves the positions of trades recorded before it: stale, empty.
        sql(
            &srv,
            "UPDATE positions SET stale = 1, quantity = 0, cost = 0, realized = 0, trades = 0",
        )
        .await;
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        assert_eq!(p["positions"][0]["quantity"], 3.0, "{}: {p}", db.backend);
        assert_eq!(p["positions"][0]["avg_cost"], 10.0);
        assert_eq!(p["realized_pnl"], 4.0);
        assert_eq!(p["trades"], 2);
        // The next fill is folded into the rebuilt row.
        let body =
            json!({"symbol": "IBM", "side": "buy", "quantity": 1, "price": 14, "time": 3000});
        assert_eq!(trade(&srv, &key, None, body).await.0, 201);
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        assert_eq!(p["positions"][0]["quantity"], 4.0, "{p}");
        assert_eq!(p["positions"][0]["avg_cost"], 11.0, "{p}");
        assert_eq!(p["trades"], 3);
    }
}

/// The portfolio as text, so exact numbers are read as their digits.
async fn portfolio_text(srv: &TestServer, key: &str) -> String {
    let bearer = format!("Bearer {key}");
    let (status, _, body) = util::http(
        srv.addr,
        "GET",
        "/api/v1/portfolio",
        &[("Authorization", &bearer)],
        b"",
    )
    .await;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{text}");
    text
}

#[tokio::test]
async fn pnl_is_exact_from_the_cost_basis_and_unpriced_symbols_are_null() {
    for db in util::backends().await {
        let srv = util::start(db.config()).await;
        let (_, key) = srv.server().store().create_user("gina").await.unwrap();
        for (symbol, quantity, price) in [("AAPL", "0.1", "0.1"), ("AAPL", "0.2", "0.2")] {
            let body = json!({"symbol": symbol, "side": "buy", "quantity": quantity,
                "price": price});
            let (status, body) = trade(&srv, &key, None, body).await;
            assert_eq!(status, 201, "{body}");
        }
        srv.ingest(json!([{"symbol": "AAPL", "price": 85.6, "size": 1, "side": "buy"}]))
            .await;
        srv.wait_seq("AAPL", 1).await;
        // 0.3 × 85.6 − 0.05 is 25.63 (through the rounded average: 25.629999…).
        let text = portfolio_text(&srv, &key).await;
        for exact in [
            r#""unrealized_pnl":25.63,"realized_pnl":0}"#,
            r#""unrealized_pnl":25.63,"trades":2"#,
            r#""avg_cost":0.1666666666666666666666666667,"#,
            r#""market_value":25.68,"#,
        ] {
            assert!(text.contains(exact), "{}: {exact} in {text}", db.backend);
        }

        // Selling it all realizes exactly what was shown.
        let body = json!({"symbol": "AAPL", "side": "sell", "quantity": "0.3", "price": "85.6"});
        assert_eq!(trade(&srv, &key, None, body).await.0, 201);
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        assert_eq!(p["realized_pnl"], json!(25.63), "{}: {p}", db.backend);

        // A fill for a symbol with no market data is recorded (fills are facts), and valued
        // as documented: no price, so its market value and unrealized P&L are null, and so is
        // the portfolio's unrealized total; the realized total stays a number.
        let body = json!({"symbol": "NODATA", "side": "buy", "quantity": 2, "price": 10});
        let (status, body) = trade(&srv, &key, None, body).await;
        assert_eq!(status, 201, "{body}");
        let (_, _, p) = srv.get("/api/v1/portfolio", Some(&key)).await;
        let unpriced = &p["positions"][1];
        assert_eq!(unpriced["symbol"], "NODATA", "{p}");
        assert_eq!(unpriced["quantity"], json!(2));
        assert_eq!(unpriced["avg_cost"], json!(10));
        for null in ["last_price", "market_value", "unrealized_pnl"] {
            assert_eq!(unpriced[null], Value::Null, "{null}: {p}");
        }
        assert_eq!(p["unrealized_pnl"], Value::Null, "{p}");
        assert_eq!(p["realized_pnl"], json!(25.63), "{p}");
    }
}
