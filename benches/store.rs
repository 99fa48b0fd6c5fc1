//! Persistence and REST measurements (not criterion: they need a database and a server).
//!
//! `cargo bench --bench store` prints, for SQLite and PostgreSQL (`TICKCAST_BENCH_PG`, default
//! `postgres://postgres@127.0.0.1:5432/test`, a scratch database is created and dropped):
//! - sustained tick inserts per second through `Store::insert_ticks` in 5,000-row batches,
//! - bytes per stored tick (table + indexes),
//! - REST latency p50/p99 for `/api/v1/ticks/{sym}`, `/api/v1/bars/{sym}` (1 s direct, 1 h rolled
//!   up from 1 m) and `/api/v1/portfolio` with 200 concurrent keep-alive clients.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs a tiny smoke version.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use tickcast::config::Config;
use tickcast::model::Side;
use tickcast::server::Server;
use tickcast::store::{Store, TickRow};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Scale {
    rows: usize,
    clients: usize,
    requests_per_client: usize,
}

fn rows(n: usize, offset: i64) -> Vec<TickRow> {
    let symbols: Vec<Arc<str>> = (0..100).map(|i| Arc::from(format!("SYM{i:04}"))).collect();
    (0..n)
        .map(|i| TickRow {
            symbol: symbols[i % 100].clone(),
            ts: 1_764_070_000_000_000_000 + offset + i as i64 * 1_000_000,
            ingest_ts: 1_764_070_000_000_000_000 + offset + i as i64 * 1_000_000,
            epoch: 1,
            seq: offset + i as i64,
            price: 100.0 + (i % 97) as f64 * 0.01,
            size: 1.0 + (i % 13) as f64,
            side: Some(if i % 2 == 0 { Side::Buy } else { Side::Sell }),
        })
        .collect()
}

async fn persistence(url: &str, backend: &str, scale: &Scale) {
    let mut cfg = Config::defaults().expect("defaults").database;
    cfg.url = url.to_owned();
    let store = Store::open(&cfg).expect("open");
    store.migrate().await.expect("migrate");
    let data = rows(scale.rows, 0);
    let started = Instant::now();
    for chunk in data.chunks(5000) {
        store.insert_ticks(chunk).await.expect("insert");
    }
    let secs = started.elapsed().as_secs_f64();
    let n = store.count_ticks(None).await.expect("count");
    assert_eq!(n as usize, scale.rows);
    let bytes: i64 = match store.db() {
        tickcast::store::Db::Sqlite(p) => {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(p)
                .await
                .expect("checkpoint");
            let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
                .fetch_one(p)
                .await
                .expect("pages");
            let (size,): (i64,) = sqlx::query_as("PRAGMA page_size")
                .fetch_one(p)
                .await
                .expect("size");
            pages * size
        }
        tickcast::store::Db::Postgres(p) => {
            sqlx::query("VACUUM ANALYZE ticks")
                .execute(p)
                .await
                .expect("vacuum");
            let (b,): (i64,) = sqlx::query_as("SELECT pg_total_relation_size('ticks')")
                .fetch_one(p)
                .await
                .expect("size");
            b
        }
    };
    println!(
        "{backend}: {} rows in {secs:.2} s = {:.0} rows/s; {:.0} bytes per tick (table + indexes)",
        scale.rows,
        scale.rows as f64 / secs,
        bytes as f64 / scale.rows as f64
    );
    store.close().await;
}

/// GETs `path` `n` times over one keep-alive connection; returns each latency and whether it
/// was a 503 (the database's bound answered; anything else but 200 fails the bench).
async fn client(
    addr: SocketAddr,
    path: String,
    key: Option<String>,
    n: usize,
) -> Vec<(Duration, bool)> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\n");
    let mut out = Vec::with_capacity(n);
    let mut line = String::new();
    let mut body = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        w.write_all(req.as_bytes()).await.expect("write");
        let mut len = 0usize;
        let mut status = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).await.expect("read");
            if status.is_empty() {
                status = line.clone();
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
        }
        let unavailable = status.contains(" 503 ");
        assert!(status.contains(" 200 ") || unavailable, "{path}: {status}");
        body.resize(len, 0);
        r.read_exact(&mut body).await.expect("body");
        out.push((t.elapsed(), unavailable));
    }
    out
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn rest(url: &str, backend: &str, scale: &Scale) {
    let mut c = Config::defaults().expect("defaults");
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.feeds.synthetic.enabled = false;
    c.database.url = url.to_owned();
    c.api.requests_per_second = 1_000_000;
    c.api.burst = 1_000_000;
    c.log.level = "warn".into();
    let server = Server::start(c).await.expect("start");
    let store = server.store().clone();
    // History for /ticks: 10,000 rows of one symbol; a portfolio of 50 trades.
    store
        .insert_ticks(
            &rows(10_000, 0)
                .into_iter()
                .map(|mut r| {
                    r.symbol = Arc::from("AAPL");
                    r
                })
                .collect::<Vec<_>>(),
        )
        .await
        .expect("ticks");
    // Stored bars for /bars: 20,000 1 s bars (5.5 h) and 20,000 1 m bars (two weeks).
    for interval_ns in [tickcast::store::BAR_1S_NS, tickcast::store::BAR_1M_NS] {
        let bars: Vec<_> = (0..20_000i64)
            .map(|i| tickcast::store::BarRecord {
                symbol: Arc::from("AAPL"),
                interval_ns,
                start: 1_764_070_000_000_000_000 + i * interval_ns,
                epoch: 1,
                open: 100.0,
                high: 101.0,
                low: 99.0,
                close: 100.5,
                volume: 10.0,
                trades: 3,
            })
            .collect();
        for chunk in bars.chunks(5000) {
            store.insert_bars(chunk).await.expect("bars");
        }
    }
    let _ = server.symbols().intern("AAPL");
    let (user, key) = store.create_user("bench").await.expect("user");
    for i in 0..50 {
        let t = tickcast::store::NewTrade {
            symbol: format!("SYM{:04}", i % 10),
            side: if i % 3 == 0 { Side::Sell } else { Side::Buy },
            quantity: rust_decimal::Decimal::from(1 + i),
            price: rust_decimal::Decimal::from(100 + i),
            ts: 1 + i,
            time_sent: true,
        };
        store
            .record_trade(user, &t, None, tickcast::portfolio::fold)
            .await
            .expect("trade");
    }
    for (name, path, key) in [
        (
            "/ticks/AAPL?limit=100",
            "/api/v1/ticks/AAPL?limit=100",
            None,
        ),
        (
            "/bars/AAPL?interval=1s&limit=100",
            "/api/v1/bars/AAPL?interval=1s&limit=100",
            None,
        ),
        (
            "/bars/AAPL?interval=1h&limit=100",
            "/api/v1/bars/AAPL?interval=1h&limit=100",
            None,
        ),
        ("/portfolio", "/api/v1/portfolio", Some(key.clone())),
    ] {
        let started = Instant::now();
        let tasks: Vec<_> = (0..scale.clients)
            .map(|_| {
                tokio::spawn(client(
                    server.addr,
                    path.to_owned(),
                    key.clone(),
                    scale.requests_per_client,
                ))
            })
            .collect();
        let mut all = Vec::new();
        let mut unavailable = 0;
        for t in tasks {
            for (d, u) in t.await.expect("client") {
                all.push(d);
                unavailable += usize::from(u);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        all.sort();
        println!(
            "{backend} REST {name}: {} requests, {} concurrent: p50 {:.2} ms, p99 {:.2} ms, {:.0} req/s, {unavailable} answered 503",
            all.len(),
            scale.clients,
            pct(&all, 0.5),
            pct(&all, 0.99),
            all.len() as f64 / secs
        );
    }
    server.shutdown().await;
}

async fn pg_scratch(admin: &str) -> (String, String) {
    let name = format!("tc_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(admin).await.expect("postgres");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("drop");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create");
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    (format!("{base}/{name}"), name)
}

async fn pg_drop(admin: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = if full {
        Scale {
            rows: 500_000,
            clients: 200,
            requests_per_client: 50,
        }
    } else {
        Scale {
            rows: 10_000,
            clients: 4,
            requests_per_client: 2,
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let admin = std::env::var("TICKCAST_BENCH_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let dir = std::env::temp_dir();
        for run in ["persist", "rest"] {
            let path = dir.join(format!("tickcast-bench-{}-{run}.db", std::process::id()));
            let url = format!("sqlite://{}?mode=rwc", path.display());
            if run == "persist" {
                persistence(&url, "sqlite", &scale).await;
            } else {
                rest(&url, "sqlite", &scale).await;
            }
            for s in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{s}", path.display()));
            }
            let (url, name) = pg_scratch(&admin).await;
            if run == "persist" {
                persistence(&url, "postgres", &scale).await;
            } else {
                rest(&url, "postgres", &scale).await;
            }
            pg_drop(&admin, &name).await;
        }
    });
}
