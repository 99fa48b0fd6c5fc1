//! Cluster roles end to end: real `tickcast` processes (`--role ingest` and `--role edge`) on
//! the real NATS JetStream server and the real PostgreSQL, killed with SIGKILL the way a crashed
//! node dies. Each test has its own stream, subjects, lease and database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::util::{Client, TestDb};

/// The machine's NATS server (CI starts it if it is down).
pub(crate) const NATS: &str = "nats://127.0.0.1:4222";
/// How long a node may take to start, fail over or recover.
pub(crate) const SLOW: Duration = Duration::from_secs(30);

/// A free loopback port (bound, then released for the child to take).
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Names no other test (or earlier run) uses.
pub(crate) fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}{}x{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        tickcast::model::now_ns() % 1_000_000_007
    )
}

/// The settings every node of one test shares.
pub(crate) struct ClusterEnv {
    pub(crate) vars: Vec<(String, String)>,
}

impl ClusterEnv {
    pub(crate) fn new(db: &TestDb, nats_url: &str, lease_ttl_ms: u64) -> ClusterEnv {
        let id = unique("c");
        let vars = [
            ("DATABASE_URL", db.url.clone()),
            ("TICKCAST_CLUSTER__NATS_URL", nats_url.to_owned()),
            ("TICKCAST_CLUSTER__STREAM", format!("T{id}")),
            ("TICKCAST_CLUSTER__SUBJECT_PREFIX", format!("t{id}")),
            ("TICKCAST_CLUSTER__LEASE_BUCKET", format!("L{id}")),
            ("TICKCAST_CLUSTER__LEASE_TTL_MS", lease_ttl_ms.to_string()),
            ("TICKCAST_CLUSTER__MAX_AGE_MS", "600000".to_owned()),
            ("TICKCAST_CLUSTER__MAX_BYTES", "67108864".to_owned()),
            // Two symbols at 50 ticks/s each: a few seconds of outage outgrow a small ring.
            ("TICKCAST_FEEDS__SYNTHETIC__SYMBOLS", "2".to_owned()),
            ("TICKCAST_FEEDS__SYNTHETIC__RATE", "100".to_owned()),
            ("TICKCAST_DATABASE__RETENTION_DAYS", "0".to_owned()),
            ("TICKCAST_LOG__LEVEL", "info".to_owned()),
        ];
        ClusterEnv {
            vars: vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }
}

/// One `tickcast serve` process; killed (SIGKILL) when dropped.
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    role: &'static str,
    log: PathBuf,
}

impl Node {
    pub(crate) async fn start(
        role: &'static str,
        env: &ClusterEnv,
        extra: &[(&str, &str)],
    ) -> Node {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log =
            std::env::temp_dir().join(format!("{}-{role}-{}.log", unique("node"), addr.port()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickcast"));
        cmd.args(["serve", "--role", role])
            .env("TICKCAST_SERVER__LISTEN", addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true);
        for (k, v) in &env.vars {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("tickcast starts");
        Node {
            child,
            addr,
            role,
            log,
        }
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// `/readyz` status and body, or `None` while the node does not answer.
    pub(crate) async fn readyz(&self) -> Option<(u16, Value)> {
        let (status, body) = get(self.addr, "/readyz").await?;
        Some((status, serde_json::from_str(&body).ok()?))
    }

    /// Waits until `/readyz` answers `status` with `check` true of its body.
    pub(crate) async fn wait_ready(
        &self,
        status: u16,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + SLOW;
        loop {
            if let Some((s, body)) = self.readyz().await
                && s == status
                && check(&body)
            {
                return body;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{} node: not {what} in time; /readyz {:?}; log:\n{}",
                    self.role,
                    self.readyz().await,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn metric(&self, name: &str) -> u64 {
        let (_, text) = get(self.addr, "/metrics").await.expect("metrics answer");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `GET path` over a fresh connection: (status, body), or `None` if nothing answers.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let io = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .ok()
        .flatten()
}

pub(crate) fn state(body: &Value) -> &str {
    body["checks"]["cluster"]["state"].as_str().unwrap_or("")
}

/// The next `tick` of `ch` (skipping anything else), within `SLOW`.
async fn next_tick(c: &mut Client, ch: &str) -> Value {
    let deadline = tokio::time::Instant::now() + SLOW;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_within(left).await {
            Some(crate::util::Got::Event(v)) if v["type"] == "tick" && v["ch"] == ch => return v,
            Some(crate::util::Got::Event(v)) => {
                assert_ne!(v["type"], "snapshot", "unexpected snapshot (a reset?): {v}");
            }
            Some(crate::util::Got::Closed(code, reason)) => {
                panic!("socket closed ({code:?} {reason}) while waiting for {ch}")
            }
            None => panic!("no tick of {ch} within {SLOW:?}"),
        }
    }
}

/// Subscribes to `ch` again every 100 ms until the node knows its symbol (at most 10 s).
pub(crate) async fn subscribe_when_known(client: &mut Client, ch: &str) {
    for id in 0..100 {
        client
            .send(json!({"op":"subscribe","id":id,"channels":[ch]}))
            .await;
        let reply = client.event().await;
        if reply["type"] == "ack" {
            return;
        }
        assert_eq!(reply["code"], "unknown_channel", "{reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node never learned of {ch}");
}

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().expect("seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_another_edge_from_the_stream_and_ingest_failover_continues_seq() {
    let db = TestDb::postgres().await;
    let env = ClusterEnv::new(&db, NATS, 2_000);
    let ingest1 = Node::start("ingest", &env, &[]).await;
    ingest1
        .wait_ready(200, "the ingest leader", |b| state(b) == "leader")
        .await;
    let edge_a = Node::start("edge", &env, &[]).await;
    // Edge B keeps 32 events per channel: a few seconds away from it outgrow its ring.
    let small_ring = [
        ("TICKCAST_RING__CAPACITY", "32"),
        ("TICKCAST_RING__SNAPSHOT_DEPTH", "10"),
        ("TICKCAST_CLUSTER__RESUME_MAX_EVENTS", "300"),
    ];
    let edge_b = Node::start("edge", &env, &small_ring).await;
    for edge in [&edge_a, &edge_b] {
        let body = edge.wait_ready(200, "live", |b| state(b) == "live").await;
        assert_eq!(body["role"], "edge");
    }

    // A client on edge A sees live ticks with contiguous seq.
    let ch = "ticks:AAPL";
    let mut client = Client::connect(&edge_a.ws_url()).await;
    let ack = client
        .subscribe(json!({"op":"subscribe","id":1,"channels":[ch]}))
        .await;
    let epoch = ack["epoch"].as_i64().expect("epoch");
    let snap = client.event_of("snapshot").await;
    let mut last = snap["seq"].as_u64().expect("snapshot seq");
    for _ in 0..20 {
        let t = next_tick(&mut client, ch).await;
        assert_eq!(seq(&t), last + 1, "contiguous on edge A: {t}");
        last = seq(&t);
    }

    // Edge A dies; the client is away long enough for edge B's ring to drop what it missed.
    edge_a.kill().await;
    drop(client);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // On edge B it resumes with `from` and the epoch: exactly the missed events, then live.
    let mut client = Client::connect(&edge_b.ws_url()).await;
    let ack = client
        .subscribe(json!({"op":"subscribe","id":2,"channels":[ch],
                          "from":{ch: last},"epoch":epoch}))
        .await;
    assert_eq!(ack["epoch"], epoch, "every node reports the stream's epoch");
    // A MessagePack client resuming from the same point gets the same events (the edge makes
    // their MessagePack form from the stream's JSON, for the replay and for live events).
    let mut mp = Client::connect_msgpack(&edge_b.ws_url()).await;
    mp.subscribe(json!({"op":"subscribe","id":2,"channels":[ch],"from":{ch: last},"epoch":epoch}))
        .await;
    let first = next_tick(&mut client, ch).await;
    assert_eq!(seq(&first), last + 1, "the first missed event: {first}");
    last = seq(&first);
    let mut resumed = vec![first];
    for _ in 0..200 {
        let t = next_tick(&mut client, ch).await;
        assert_eq!(seq(&t), last + 1, "contiguous after the resume: {t}");
        last = seq(&t);
        resumed.push(t);
    }
    for want in &resumed {
        assert_eq!(
            &next_tick(&mut mp, ch).await,
            want,
            "msgpack and JSON agree"
        );
    }
    drop(mp);
    assert!(
        edge_b
            .metric("tickcast_cluster_resumes_from_stream_total")
            .await
            >= 1,
        "the gap was older than edge B's ring, so it came from the stream"
    );

    // Edges serve history from the shared database, which the ingest leader's recorder fills.
    let deadline = tokio::time::Instant::now() + SLOW;
    loop {
        let (status, body) = get(edge_b.addr, "/api/v1/ticks/AAPL?limit=5")
            .await
            .expect("edge answers REST");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        if v["ticks"].as_array().is_some_and(|t| t.len() == 5) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no history on the edge: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A standby ingest takes over when the leader dies: seq continues, the epoch stays.
    let ingest2 = Node::start("ingest", &env, &[]).await;
    ingest2
        .wait_ready(200, "standing by", |b| state(b) == "standby")
        .await;
    let leader_seq = last;
    ingest1.kill().await;
    let mut after = 0;
    while after < 100 {
        let t = next_tick(&mut client, ch).await;
        assert_eq!(
            seq(&t),
            last + 1,
            "no reuse and no gap across the failover: {t}"
        );
        last = seq(&t);
        if ingest2
            .readyz()
            .await
            .is_some_and(|(_, b)| state(&b) == "leader")
        {
            after += 1;
        }
    }
    assert!(last > leader_seq + 100);
    assert_eq!(
        ingest2
            .metric("tickcast_cluster_leadership_changes_total")
            .await,
        1
    );
    let mut again = Client::connect(&edge_b.ws_url()).await;
    let ack = again
        .subscribe(json!({"op":"subscribe","id":3,"channels":[ch]}))
        .await;
    assert_eq!(
        ack["epoch"], epoch,
        "a failover keeps the epoch: clients resume, not reset"
    );

    // A gap longer than one resume may read from the stream (`cluster.resume_max_events`,
    // 300 here) is answered with a reset snapshot, never a partial replay.
    while last <= 400 {
        last = seq(&next_tick(&mut client, ch).await);
    }
    let mut far = Client::connect(&edge_b.ws_url()).await;
    far.subscribe(json!({"op":"subscribe","id":4,"channels":[ch],
                         "from":{ch: last - 350},"epoch":epoch}))
        .await;
    let snap = far.event_of("snapshot").await;
    assert_eq!(snap["reset"], true, "{snap}");

    // What one resume reads from the stream is bounded in bytes by the connection's snapshot
    // budget: an edge with a tiny ring and a 4 KiB budget replays a short gap from the stream
    // and answers a long one (about 15 KiB of ticks) with `reset`, without holding it.
    let tight = [
        ("TICKCAST_RING__CAPACITY", "8"),
        ("TICKCAST_RING__SNAPSHOT_DEPTH", "8"),
        ("TICKCAST_WS__SNAPSHOT_MAX_BYTES", "4096"),
    ];
    let edge_c = Node::start("edge", &env, &tight).await;
    edge_c.wait_ready(200, "live", |b| state(b) == "live").await;
    let mut probe = Client::connect(&edge_c.ws_url()).await;
    probe
        .subscribe(json!({"op":"subscribe","id":5,"channels":[ch]}))
        .await;
    let snap = probe.event_of("snapshot").await;
    let now = snap["seq"].as_u64().expect("snapshot seq");
    assert_eq!(
        snap["data"].as_array().map(Vec::len),
        Some(8),
        "a new edge is ready with its rings warmed from the stream: {snap}"
    );
    let mut short = Client::connect(&edge_c.ws_url()).await;
    short
        .subscribe(json!({"op":"subscribe","id":6,"channels":[ch],
                          "from":{ch: now - 12},"epoch":epoch}))
        .await;
    let t = next_tick(&mut short, ch).await;
    assert_eq!(seq(&t), now - 11, "a short gap is replayed: {t}");
    let mut long = Client::connect(&edge_c.ws_url()).await;
    long.subscribe(json!({"op":"subscribe","id":7,"channels":[ch],
                          "from":{ch: now - 100},"epoch":epoch}))
        .await;
    let snap = long.event_of("snapshot").await;
    assert_eq!(snap["reset"], true, "{snap}");
    assert_eq!(
        edge_c
            .metric("tickcast_cluster_resumes_from_stream_total")
            .await,
        1,
        "only the short gap was read whole from the stream"
    );

    // Only the leader takes HTTP ingest.
    let (status, body) = get(edge_b.addr, "/readyz").await.expect("edge answers");
    assert_eq!(status, 200, "{body}");
    let mut s = TcpStream::connect(edge_b.addr).await.expect("connect");
    s.write_all(
        b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n[]",
    )
    .await
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
    assert!(raw.contains("\"code\":\"not_leader\""), "{raw}");
}

/// A NATS server of this test's own, so stopping it disturbs nothing else on the machine.
struct PrivateNats {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PrivateNats {
    async fn start(port: u16, dir: PathBuf) -> PrivateNats {
        std::fs::create_dir_all(&dir).expect("store dir");
        let child = Command::new(nats_server())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server starts (Debian package nats-server; .ci/run installs it)");
        let deadline = tokio::time::Instant::now() + SLOW;
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server listens"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        PrivateNats { child, port, dir }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn stop(mut self) -> (u16, PathBuf) {
        let _ = self.child.kill().await;
        (self.port, self.dir.clone())
    }
}

fn nats_server() -> PathBuf {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_else(|| PathBuf::from("nats-server"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_keeps_its_sockets_while_nats_is_down_and_recovers_by_itself() {
    let dir = std::env::temp_dir().join(unique("nats-"));
    let nats = PrivateNats::start(free_port(), dir.clone()).await;
    let db = TestDb::postgres().await;
    // A long lease: the ingest leader rides out the outage instead of stepping down.
    let env = ClusterEnv::new(&db, &nats.url(), 60_000);
    let ingest = Node::start("ingest", &env, &[]).await;
    ingest
        .wait_ready(200, "the ingest leader", |b| state(b) == "leader")
        .await;
    let edge = Node::start("edge", &env, &[]).await;
    edge.wait_ready(200, "live", |b| state(b) == "live").await;
    let ch = "ticks:MSFT";
    let mut client = Client::connect(&edge.ws_url()).await;
    client
        .subscribe(json!({"op":"subscribe","id":1,"channels":[ch]}))
        .await;
    client.event_of("snapshot").await;
    let mut last = seq(&next_tick(&mut client, ch).await);

    let (port, dir) = nats.stop().await;
    let body = edge
        .wait_ready(503, "degraded", |b| {
            b["checks"]["cluster"]["nats"] == "disconnected"
        })
        .await;
    assert_eq!(body["status"], "degraded", "{body}");
    // The socket stays open and answers.
    client.send(json!({"op":"ping","id":7})).await;
    let pong = client.event_of("pong").await;
    assert_eq!(pong["id"], 7);

    let _nats = PrivateNats::start(port, dir.clone()).await;
    edge.wait_ready(200, "live again", |b| state(b) == "live")
        .await;
    // Live ticks flow again on the same socket, later than before the outage.
    let t = next_tick(&mut client, ch).await;
    assert!(seq(&t) > last, "{t}");
    last = seq(&t);
    let t = next_tick(&mut client, ch).await;
    assert!(seq(&t) > last, "{t}");
    drop(ingest);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Order books reach edges: an edge builds each book from the stream's events (starting at a
/// reset, checking every checksum), serves it as snapshots and deltas, and its clients' copies
/// keep the checksums; MessagePack clients too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_serves_order_books_from_the_stream() {
    let db = TestDb::postgres().await;
    let env = ClusterEnv::new(&db, NATS, 2_000);
    // Whole books at least every 300 ms, so an edge that joins late starts its copies soon.
    let checkpoints = [("TICKCAST_BOOK__CHECKPOINT_MS", "300")];
    let ingest = Node::start(
        "ingest",
        &env,
        &[
            checkpoints[0],
            ("TICKCAST_FEEDS__HTTP__TOKEN", "cluster-book-token"),
        ],
    )
    .await;
    ingest
        .wait_ready(200, "the ingest leader", |b| state(b) == "leader")
        .await;
    let edge = Node::start("edge", &env, &checkpoints).await;
    edge.wait_ready(200, "live", |b| state(b) == "live").await;

    for msgpack in [false, true] {
        let mut client = if msgpack {
            Client::connect_msgpack(&edge.ws_url()).await
        } else {
            Client::connect(&edge.ws_url()).await
        };
        client
            .subscribe(json!({"op":"subscribe","id":1,"channels":["book:AAPL"]}))
            .await;
        let snap = client.event_of("snapshot").await;
        let mut copy = crate::util::book::Copy::new(25);
        let mut based = false;
        if let Some(first) = snap["data"].get(0) {
            copy.apply_checked(first);
            based = true;
        }
        let mut last = snap["seq"].as_u64().unwrap_or_default();
        let mut applied = 0;
        while applied < 30 {
            let e = client.event_of("book").await;
            let s = e["seq"].as_u64().expect("seq");
            assert!(s > last, "seq goes up on the edge: {s} after {last}");
            last = s;
            if !based && e["reset"] != true {
                panic!("a delta before any book on an empty snapshot: {e}");
            }
            copy.apply_checked(&e);
            based = true;
            applied += 1;
        }
        // The edge's REST view is the same book.
        let (status, body) = get(edge.addr, "/api/v1/book/AAPL").await.expect("answers");
        assert_eq!(status, 200, "{body}");
        let rest: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert!(rest["checksum"].is_u64(), "{rest}");
    }

    // A book that never changes after its one update reaches an edge that joins later than
    // the stream it reads back (warm_ms): ingest's checkpoints publish quiet books whole too.
    let still = json!([{"symbol":"STILL","snapshot":true,"bids":[[10.5, 3]],"asks":[[11, 4]]}]);
    let (status, _, body) = crate::util::http(
        ingest.addr,
        "POST",
        "/api/v1/ingest/book",
        &[
            ("Authorization", "Bearer cluster-book-token"),
            ("Content-Type", "application/json"),
        ],
        still.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let late = Node::start(
        "edge",
        &env,
        &[checkpoints[0], ("TICKCAST_CLUSTER__WARM_MS", "200")],
    )
    .await;
    late.wait_ready(200, "live", |b| state(b) == "live").await;
    let mut client = Client::connect(&late.ws_url()).await;
    // The edge knows the symbol once a checkpoint of its book reached it (every 300 ms).
    subscribe_when_known(&mut client, "book:STILL").await;
    let snap = client.event_of("snapshot").await;
    let whole = match snap["data"].get(0) {
        Some(first) => first.clone(),
        None => client.event_of("book").await,
    };
    assert_eq!(whole["reset"], true, "{whole}");
    let mut copy = crate::util::book::Copy::new(25);
    copy.apply_checked(&whole);
    assert_eq!(copy.bids(), vec![(10.5, 3.0)], "{whole}");
    assert_eq!(copy.asks(), vec![(11.0, 4.0)], "{whole}");
    drop(late);
    drop(edge);
    drop(ingest);
}
