//! Test fixtures: a server builder, a WebSocket client that understands batched frames, and a
//! minimal HTTP/1.1 client (no extra dependencies).

#![allow(dead_code)]

pub mod book;
pub mod slow;
pub mod venue;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tickcast::config::Config;
use tickcast::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TOKEN: &str = "test-ingest-token";

/// Generous bound for anything the server should do "soon"; only failing tests wait this long.
pub const WAIT: Duration = Duration::from_secs(10);

/// A SQLite URL in a fresh temporary file (removed when its server or [`TestDb`] drops).
pub fn temp_sqlite_url() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "tickcast-test-{}-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        tickcast::model::now_ns() % 1_000_000_007
    ));
    format!("sqlite://{}?mode=rwc", path.display())
}

fn remove_sqlite(url: &str) {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .and_then(|p| p.split('?').next())
        .filter(|p| p.contains("tickcast-test-"))
    {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
}

/// The admin URL of the test PostgreSQL server (a database that always exists).
pub fn pg_admin_url() -> String {
    std::env::var("TICKCAST_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database of its own for one test: a temporary SQLite file, or a fresh PostgreSQL database
/// (created here, dropped with `WITH (FORCE)` when this drops).
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    pg_name: Option<String>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb {
            url: temp_sqlite_url(),
            backend: "sqlite",
            pg_name: None,
        }
    }

    pub async fn postgres() -> TestDb {
        use sqlx::Connection;
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "tc_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            tickcast::model::now_ns() % 1_000_000_007
        );
        let admin = pg_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("the test PostgreSQL server (127.0.0.1:5432) is reachable");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        TestDb {
            url: format!("{base}/{name}"),
            backend: "postgres",
            pg_name: Some(name),
        }
    }

    /// A test config using this database.
    pub fn config(&self) -> Config {
        let mut c = config();
        remove_sqlite(&c.database.url);
        c.database.url = self.url.clone();
        c
    }

    /// A test config for outages: failures detected quickly, and a write-behind queue (50 rows,
    /// batches of 10) far smaller than what an outage brings.
    pub fn outage_config(&self) -> Config {
        let mut c = self.config();
        c.database.timeout_ms = 50;
        c.database.breaker_failures = 2;
        c.database.breaker_probe_ms = 50;
        c.database.batch_size = 10;
        c.database.queue_capacity = 50;
        c
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self.pg_name.take() {
            None => remove_sqlite(&self.url),
            Some(name) => {
                let admin = pg_admin_url();
                // Drop runs inside the test's runtime: use a thread with its own.
                let _ = std::thread::spawn(move || {
                    use sqlx::Connection;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// One database per backend, for tests that must pass on both.
pub async fn backends() -> Vec<TestDb> {
    vec![TestDb::sqlite(), TestDb::postgres().await]
}

/// Defaults for tests: ephemeral port, no synthetic feed, HTTP ingest on, short grace, a
/// SQLite database of its own, quick write-behind flushes, no practical REST or upgrade rate
/// limit.
pub fn config() -> Config {
    let mut c = Config::defaults().expect("embedded defaults are valid");
    c.database.url = temp_sqlite_url();
    c.database.flush_interval_ms = 10;
    c.database.backoff_initial_ms = 10;
    c.database.backoff_max_ms = 100;
    c.database.breaker_probe_ms = 100;
    // Tests store ticks at fixed dates that age past any retention window; a retention pass at
    // start-up would race the test's own inserts and delete them.
    c.database.retention_days = 0;
    c.api.requests_per_second = 100_000;
    c.api.burst = 100_000;
    c.ws.upgrades_per_second = 100_000;
    c.ws.upgrade_burst = 100_000;
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.shutdown_grace_ms = 3000;
    c.feeds.synthetic.enabled = false;
    c.feeds.http.token = TOKEN.into();
    c.ring.capacity = 16;
    c.ring.snapshot_depth = 3;
    c
}

/// Polls `ok` every 20 ms until it holds; fails the test after `bound`.
pub async fn wait_until(what: &str, bound: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + bound;
    while !ok().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Another process takes a SQLite database's write lock (`BEGIN EXCLUSIVE`): every write of
/// the server's times out with SQLITE_BUSY until the connection rolls back.
pub async fn lock_sqlite(url: &str) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut locker = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    locker
}

/// A PostgreSQL test database taken away: new connections refused, the existing ones killed,
/// until [`PgOutage::end`].
pub struct PgOutage {
    admin: sqlx::PgConnection,
    name: String,
}

impl PgOutage {
    pub async fn begin(db: &TestDb) -> PgOutage {
        use sqlx::Connection;
        let name = db.url.rsplit('/').next().unwrap().to_owned();
        let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
        sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&name)
            .execute(&mut admin)
            .await
            .unwrap();
        PgOutage { admin, name }
    }

    /// The database takes connections again.
    pub async fn end(mut self) {
        use sqlx::Connection;
        let allow = format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name);
        sqlx::query(&allow).execute(&mut self.admin).await.unwrap();
        let _ = self.admin.close().await;
    }
}

/// A stored bar of one trade at 1.0 (tests that need bars to exist, not particular values).
pub fn flat_bar(symbol: &str, interval_ns: i64, start: i64) -> tickcast::store::BarRecord {
    tickcast::store::BarRecord {
        symbol: symbol.into(),
        interval_ns,
        start,
        epoch: 1,
        open: 1.0,
        high: 1.0,
        low: 1.0,
        close: 1.0,
        volume: 1.0,
        trades: 1,
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    server: Option<Server>,
    db_url: String,
    /// The journal directory this fixture made up (removed on drop).
    journal: Option<std::path::PathBuf>,
}

/// A journal directory of its own, so no two test servers (or runs) share one.
pub fn temp_journal_dir() -> std::path::PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "tickcast-test-journal-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        tickcast::model::now_ns() % 1_000_000_007
    ))
}

/// Starts a server; without a `database.journal_dir` it gets a fresh one of its own.
pub async fn start(mut config: Config) -> TestServer {
    let journal = config
        .database
        .journal_dir
        .is_empty()
        .then(temp_journal_dir);
    if let Some(dir) = &journal {
        config.database.journal_dir = dir.display().to_string();
    }
    config.validate().expect("test config is valid");
    let db_url = config.database.url.clone();
    let server = Server::start(config).await.expect("server starts");
    TestServer {
        addr: server.addr,
        journal,
        server: Some(server),
        db_url,
    }
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn connect(&self) -> Client {
        Client::connect(&self.url()).await
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    /// GET with an optional bearer key; returns (status, headers, JSON body or Null).
    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Vec<(String, String)>, Value) {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let (status, h, body) = http(self.addr, "GET", path, &headers, b"").await;
        (
            status,
            h,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    /// POST JSON with an optional bearer key and extra headers.
    pub async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<(String, String)>, Value) {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        headers.extend_from_slice(extra);
        let (status, h, body) = http(self.addr, "POST", path, &headers, body).await;
        (
            status,
            h,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    /// `/readyz`: status and body.
    pub async fn readyz(&self) -> (u16, Value) {
        let (status, _, body) = self.get("/readyz", None).await;
        (status, body)
    }

    /// The recorder's circuit breaker is open (database writes failing).
    pub fn breaker_open(&self) -> bool {
        let health = &self.server().app().health.recorder.health;
        health.breaker_open.load(Ordering::Relaxed)
    }

    /// Waits for the recorder's circuit breaker to open, then returns `/readyz`'s body, which
    /// must say 503 (the database check failing).
    pub async fn wait_degraded(&self) -> Value {
        wait_until("breaker opens", WAIT, async || self.breaker_open()).await;
        let (status, body) = self.readyz().await;
        assert_eq!(status, 503, "{body}");
        body
    }

    /// Waits for `/readyz` to answer 200 again (after an outage).
    pub async fn wait_ready(&self) {
        wait_until("ready again", WAIT, async || self.readyz().await.0 == 200).await;
    }

    /// Waits until at least `n` tick rows were committed by the write-behind writer.
    pub async fn wait_persisted(&self, n: u64) {
        let m = self.server().metrics();
        let deadline = tokio::time::Instant::now() + WAIT;
        while m.db_rows_written.load(Ordering::Relaxed) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} rows persisted",
                m.db_rows_written.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Publishes pipeline output through the real ingest path, as the pipeline does.
    pub async fn derived(&self, values: Vec<tickcast::ingest::Derived>) {
        let ingest = self.server().app().ingest.ingest.clone();
        tokio::task::spawn_blocking(move || ingest.send_derived_blocking(values))
            .await
            .expect("join")
            .expect("ingest open");
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// POSTs ticks to the ingest endpoint; returns (status, body).
    pub async fn ingest(&self, ticks: Value) -> (u16, Value) {
        self.ingest_at("/api/v1/ingest", ticks).await
    }

    /// POSTs `records` to an ingest endpoint (`/api/v1/ingest`, `/api/v1/ingest/book`) with the
    /// test token.
    pub async fn ingest_at(&self, path: &str, records: Value) -> (u16, Value) {
        let (status, _, body) = http(
            self.addr,
            "POST",
            path,
            &[
                ("Authorization", &format!("Bearer {TOKEN}")),
                ("Content-Type", "application/json"),
            ],
            records.to_string().as_bytes(),
        )
        .await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Ingests `n` ticks of `symbol` with prices 1, 2, 3, ... offset by `base`.
    pub async fn ingest_n(&self, symbol: &str, n: usize, base: f64) {
        let ticks: Vec<Value> = (0..n)
            .map(|i| json!({"symbol": symbol, "price": base + i as f64 + 1.0, "size": 1, "side": "buy"}))
            .collect();
        let (status, body) = self.ingest(Value::Array(ticks)).await;
        assert_eq!(status, 202, "ingest failed: {body}");
    }

    /// Waits until the channel has published `seq` (ingest is asynchronous).
    pub async fn wait_seq(&self, symbol: &str, seq: u64) {
        let server = self.server();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(id) = server.symbols().get(symbol) {
                let ch = tickcast::model::ChannelId {
                    kind: tickcast::model::Kind::Ticks,
                    symbol: id,
                };
                if server.hub().last_seq(ch) >= seq {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{symbol} never reached seq {seq}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
        remove_sqlite(&self.db_url);
        if let Some(dir) = &self.journal {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What a client read: an event object, or the close.
/// A message of an `encoding=msgpack` frame in the shape of its JSON object
/// (docs/PROTOCOL.md "Encodings"): positional events get their field names back; maps (replies,
/// snapshots) are already keyed, and a snapshot's `data` holds positional events.
pub fn from_msgpack(m: Value) -> Value {
    const TICK: [&str; 7] = ["ch", "seq", "ts", "price", "size", "side", "xts"];
    const BOOK: [&str; 7] = ["ch", "seq", "ts", "reset", "bids", "asks", "checksum"];
    const BAR: [&str; 11] = [
        "ch", "seq", "ts", "start", "open", "high", "low", "close", "volume", "trades", "final",
    ];
    const TICKER: [&str; 14] = [
        "ch",
        "seq",
        "ts",
        "open",
        "high",
        "low",
        "last",
        "volume",
        "quote_volume",
        "change",
        "change_pct",
        "trades",
        "open_time",
        "close_time",
    ];
    const BBO: [&str; 7] = ["ch", "seq", "ts", "bid", "bid_size", "ask", "ask_size"];
    match m {
        Value::Array(fields) => {
            let (kind, names): (&str, &[&str]) = match fields.first().and_then(Value::as_u64) {
                Some(1) => ("tick", &TICK),
                Some(2) => ("bar", &BAR),
                Some(3) => ("indicators", &["ch", "seq", "ts"]),
                Some(4) => ("portfolio", &["ch", "seq", "ts"]),
                Some(5) => ("book", &BOOK),
                Some(6) => ("ticker", &TICKER),
                Some(7) => ("bbo", &BBO),
                Some(8) => ("prediction", &["ch", "seq", "ts"]),
                other => panic!("unknown event kind {other:?} in {fields:?}"),
            };
            let keyed = matches!(kind, "indicators" | "portfolio" | "prediction");
            if !keyed {
                assert_eq!(fields.len(), names.len() + 1, "{kind} arity: {fields:?}");
            } else {
                assert_eq!(fields.len(), 5, "{kind} arity: {fields:?}");
            }
            let mut object = serde_json::Map::new();
            object.insert("type".into(), kind.into());
            for (name, value) in names.iter().zip(&fields[1..]) {
                object.insert((*name).into(), value.clone());
            }
            if let Some(Value::Object(values)) = fields.get(4).filter(|_| keyed) {
                object.extend(values.clone());
            }
            Value::Object(object)
        }
        Value::Object(mut map) => {
            if let Some(Value::Array(data)) = map.remove("data") {
                let data = data.into_iter().map(from_msgpack).collect();
                map.insert("data".into(), Value::Array(data));
            }
            Value::Object(map)
        }
        other => panic!("a msgpack message that is neither an event nor a map: {other}"),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    Event(Value),
    Closed(Option<CloseCode>, String),
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: VecDeque<Value>,
    pub frames: usize,
    /// Payload bytes of every data frame received.
    pub frame_bytes: usize,
    /// Connected with `?encoding=msgpack`: frames must be binary MessagePack, and each message
    /// is handed to the test in its JSON shape ([`from_msgpack`]).
    msgpack: bool,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client::from_stream(ws)
    }

    /// Connects to `url` (a `/ws` URL without a query) with `?encoding=msgpack`.
    pub async fn connect_msgpack(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("{url}?encoding=msgpack"))
            .await
            .expect("websocket connects");
        Client {
            msgpack: true,
            ..Client::from_stream(ws)
        }
    }

    /// This client's frames are MessagePack (it connected with `encoding=msgpack`).
    pub fn msgpack(self) -> Client {
        Client {
            msgpack: true,
            ..self
        }
    }

    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client {
            ws,
            pending: VecDeque::new(),
            frames: 0,
            frame_bytes: 0,
            msgpack: false,
        }
    }

    /// Connects over a socket with a small kernel receive buffer (a slow reader's pipe fills
    /// quickly).
    pub async fn connect_with_recv_buffer(url: &str, addr: SocketAddr, bytes: u32) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let tcp = socket.connect(addr).await.expect("tcp connects");
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
            .await
            .expect("websocket handshake");
        Client::from_stream(ws)
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_raw(&mut self, msg: Message) {
        let _ = self.ws.send(msg).await;
    }

    /// The next event or close, within `WAIT`.
    pub async fn next(&mut self) -> Got {
        self.next_within(WAIT)
            .await
            .expect("nothing arrived in time")
    }

    /// The next event or close, or `None` if nothing came within `d`.
    pub async fn next_within(&mut self, d: Duration) -> Option<Got> {
        if let Some(v) = self.pending.pop_front() {
            return Some(Got::Event(v));
        }
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(Got::Closed(None, "eof".into())),
                Ok(Some(Err(e))) => return Some(Got::Closed(None, e.to_string())),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(_) if self.msgpack => panic!("a text frame on a msgpack connection"),
                Message::Binary(b) if self.msgpack => {
                    self.frames += 1;
                    self.frame_bytes += b.len();
                    // Every MessagePack frame is one array of messages, also of one.
                    let frame: Value = rmp_serde::from_slice(&b).expect("server sends MessagePack");
                    let Value::Array(items) = frame else {
                        panic!("a msgpack frame that is not an array: {frame}");
                    };
                    assert!(!items.is_empty(), "empty batch frame");
                    self.pending.extend(items.into_iter().map(from_msgpack));
                    return self.pending.pop_front().map(Got::Event);
                }
                Message::Text(t) => {
                    self.frames += 1;
                    self.frame_bytes += t.len();
                    match serde_json::from_str::<Value>(&t).expect("server sends JSON") {
                        Value::Array(items) => {
                            assert!(!items.is_empty(), "empty batch frame");
                            self.pending.extend(items);
                        }
                        v => self.pending.push_back(v),
                    }
                    return self.pending.pop_front().map(Got::Event);
                }
                Message::Close(f) => {
                    return Some(match f {
                        Some(f) => Got::Closed(Some(f.code), f.reason.to_string()),
                        None => Got::Closed(None, String::new()),
                    });
                }
                _ => continue,
            }
        }
    }

    /// The next event object (panics on close).
    pub async fn event(&mut self) -> Value {
        match self.next().await {
            Got::Event(v) => v,
            Got::Closed(code, reason) => {
                panic!("closed ({code:?}, {reason}) while waiting for an event")
            }
        }
    }

    /// The next event of `type`, skipping others.
    pub async fn event_of(&mut self, ty: &str) -> Value {
        loop {
            let v = self.event().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Reads until the close frame and returns its code.
    pub async fn closed(&mut self) -> Option<CloseCode> {
        loop {
            if let Got::Closed(code, _) = self.next().await {
                return code;
            }
        }
    }

    /// Subscribes and checks the ack.
    pub async fn subscribe(&mut self, req: Value) -> Value {
        self.send(req).await;
        let ack = self.event().await;
        assert_eq!(ack["type"], "ack", "expected ack, got {ack}");
        ack
    }

    /// True when no event arrives within `d`.
    pub async fn silent_for(&mut self, d: Duration) -> bool {
        match self.next_within(d).await {
            None => true,
            Some(got) => {
                eprintln!("unexpected: {got:?}");
                false
            }
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, headers, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    // A server may answer (413, 401) and close before reading the whole body: the response is
    // what the test checks, so a write cut short by that is not a failure.
    if let Err(e) = s.write_all(body).await {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "write: {e}"
        );
    }
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Resident set size of this process in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The `/metrics` text of a running server.
pub async fn metrics_text(srv: &TestServer) -> String {
    let (_, _, body) = http(srv.addr, "GET", "/metrics", &[], b"").await;
    String::from_utf8_lossy(&body).into_owned()
}

/// The value of one sample (`name{labels}` exactly as rendered) in Prometheus text.
pub fn metric(text: &str, sample: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
