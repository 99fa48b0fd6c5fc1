//! REST reads of history at scale (issue 22's goals table), against a running server: each
//! request kind in turn from `CLIENTS` closed-loop keep-alive clients for `SECONDS`, then p50,
//! p99, requests/s and the status counts of each (`benches/history_at_scale.sh` drives it).
//!
//! ```text
//! cargo bench --bench history -- setup DATABASE_URL [TRADES]   # a user with TRADES trades; prints its key
//! cargo bench --bench history -- run ADDR FROM_MS TO_MS KEY [CLIENTS] [SECONDS] [SYMBOLS]
//! ```
//!
//! The kinds: `/bars/{sym}?interval=1m&limit=1000` from a random time, `/bars/{sym}?interval=1h`
//! over the whole range, `/ticks/{sym}?limit=1000` from a random time and then its next page by
//! `next_cursor` (measured apart), and `/portfolio` as the setup's user. Symbols are
//! `S000`..`S{SYMBOLS-1}` (`benches/gen_ticks.py`'s). Under `cargo test --all-targets` (no
//! `--bench` argument) it runs a small version against a server of its own on SQLite.
//!
//! With `SERVER_PID` set (the script sets it), each row also gives the server process's CPU
//! time per answered request (user + system, from `/proc/PID/stat`; with `DB_PROCESS` set, plus
//! that of every process whose command line holds it: PostgreSQL's backends of the store's
//! database, titled `postgres: CLUSTER: USER DB ...`) and the load average at the end of the
//! kind: on a shared machine that says whether a latency is the request's cost or its wait for
//! a CPU. With `CLIENTS` = 200 closed-loop clients and no think time, latency is at least
//! clients / throughput (Little's law): a p99 of 50 ms needs about 4,000 answers a second,
//! whatever each costs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickcast::config::Config;
use tickcast::model::Side;
use tickcast::server::Server;
use tickcast::store::{NewTrade, Store, TickRow};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Longest one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Bars1m,
    Bars1h,
    Ticks,
    TicksNext,
    Portfolio,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Bars1m => "/bars/{sym}?interval=1m&limit=1000 at a random time",
            Kind::Bars1h => "/bars/{sym}?interval=1h over the whole range",
            Kind::Ticks => "/ticks/{sym}?limit=1000 at a random time",
            Kind::TicksNext => "/ticks next page by cursor",
            Kind::Portfolio => "/portfolio (10,000 trades)",
        }
    }
}

/// What a run is asked to read.
#[derive(Clone)]
struct Plan {
    addr: SocketAddr,
    from_ms: i64,
    to_ms: i64,
    key: String,
    symbols: u64,
    clients: usize,
    duration: Duration,
}

/// Outcomes of one kind: latencies of answered requests, statuses, transport errors.
#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.latencies.extend(other.latencies);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.errors += other.errors;
    }
}

/// SplitMix64: reproducible random symbols and times per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One keep-alive connection.
struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let (r, w) = TcpStream::connect(addr).await?.into_split();
        Ok(Conn {
            r: BufReader::new(r),
            w,
        })
    }

    /// One GET: its status and body.
    async fn get(&mut self, path: &str, key: Option<&str>) -> std::io::Result<(u16, Vec<u8>)> {
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n");
        self.w.write_all(req.as_bytes()).await?;
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let mut line = String::new();
        self.r.read_line(&mut line).await?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut len = 0usize;
        loop {
            line.clear();
            if self.r.read_line(&mut line).await? == 0 {
                return Err(bad("closed in the header"));
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().map_err(|_| bad("content-length"))?;
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// `s` made safe for a query string (cursors are opaque).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One client's loop for `kind` until `until`.
async fn client(plan: Arc<Plan>, kind: Kind, seed: u64, until: Instant) -> [Outcome; 2] {
    let mut out = [Outcome::default(), Outcome::default()];
    let mut rng = Rng(seed);
    let mut conn = None;
    let span = (plan.to_ms - plan.from_ms).max(1) as u64;
    while Instant::now() < until {
        let sym = format!("S{:03}", rng.below(plan.symbols));
        let at = plan.from_ms + rng.below(span) as i64;
        let path = match kind {
            Kind::Bars1m => format!("/api/v1/bars/{sym}?interval=1m&limit=1000&from={at}"),
            Kind::Bars1h => format!(
                "/api/v1/bars/{sym}?interval=1h&limit=1000&from={}&to={}",
                plan.from_ms, plan.to_ms
            ),
            Kind::Ticks | Kind::TicksNext => {
                format!("/api/v1/ticks/{sym}?limit=1000&from={at}")
            }
            Kind::Portfolio => "/api/v1/portfolio".to_owned(),
        };
        let key = (kind == Kind::Portfolio).then_some(plan.key.as_str());
        let first = timed(&mut conn, plan.addr, &path, key, &mut out[0]).await;
        if kind != Kind::Ticks {
            continue;
        }
        // The next page, by the cursor the first one gave.
        let cursor = first.and_then(|body| {
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            v.get("next_cursor")?.as_str().map(query_escape)
        });
        if let Some(c) = cursor {
            let next = format!("/api/v1/ticks/{sym}?limit=1000&cursor={c}");
            timed(&mut conn, plan.addr, &next, None, &mut out[1]).await;
        }
    }
    out
}

/// One GET on the client's connection (opened again after an error), counted in `out`;
/// the body of a 200.
async fn timed(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    path: &str,
    key: Option<&str>,
    out: &mut Outcome,
) -> Option<Vec<u8>> {
    let started = Instant::now();
    let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
        if conn.is_none() {
            *conn = Some(Conn::open(addr).await?);
        }
        match conn.as_mut() {
            Some(c) => c.get(path, key).await,
            None => Err(std::io::Error::other("no connection")),
        }
    })
    .await;
    match result {
        Ok(Ok((status, body))) => {
            out.latencies.push(started.elapsed());
            *out.statuses.entry(status).or_default() += 1;
            (status == 200).then_some(body)
        }
        _ => {
            out.errors += 1;
            *conn = None;
            None
        }
    }
}

/// CPU seconds (user + system) the process `pid` has used, from `/proc/PID/stat`; `None` off
/// Linux or when the process is gone.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its `)` are fixed.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; in clock
    // ticks of USER_HZ, which Linux fixes at 100 for everything /proc reports.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds of the server `pid` and of every process whose command line holds `db` (the
/// database's backends that serve it), when given.
fn serving_cpu(pid: u32, db: Option<&str>) -> Option<f64> {
    let mut total = cpu_seconds(pid)?;
    let Some(db) = db else {
        return Some(total);
    };
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(other) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{other}/cmdline")).unwrap_or_default();
        if other != pid && String::from_utf8_lossy(&cmdline).contains(db) {
            total += cpu_seconds(other).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// The 1-minute load average, as text.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    sorted[(last as f64 * p).round() as usize].as_secs_f64() * 1e3
}

/// Runs every kind in turn; prints a Markdown table row per kind and returns the outcomes.
async fn run(plan: Plan) -> BTreeMap<Kind, Outcome> {
    let plan = Arc::new(plan);
    let mut all = BTreeMap::new();
    let server: Option<u32> = std::env::var("SERVER_PID")
        .ok()
        .and_then(|p| p.parse().ok());
    let db = std::env::var("DB_PROCESS").ok().filter(|d| !d.is_empty());
    let cpu_now = || server.and_then(|pid| serving_cpu(pid, db.as_deref()));
    println!(
        "| request ({} clients) | p50 / p99 ms | req/s | statuses | errors | server CPU ms/req | load |",
        plan.clients
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for kind in [Kind::Bars1m, Kind::Bars1h, Kind::Ticks, Kind::Portfolio] {
        let cpu_before = cpu_now();
        let started = Instant::now();
        let until = started + plan.duration;
        let tasks: Vec<_> = (0..plan.clients)
            .map(|i| tokio::spawn(client(plan.clone(), kind, i as u64 * 7919 + 1, until)))
            .collect();
        let (mut first, mut next) = (Outcome::default(), Outcome::default());
        for t in tasks {
            if let Ok([a, b]) = t.await {
                first.merge(a);
                next.merge(b);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let cpu = cpu_before.zip(cpu_now()).map(|(a, b)| b - a);
        let answered = (first.latencies.len() + next.latencies.len()) as f64;
        // The ticks kind's CPU is shared by its two pages (one row each, the same figure).
        let cpu_per_request = cpu.map_or("-".to_owned(), |c| {
            format!("{:.2}", 1e3 * c / answered.max(1.0))
        });
        let load = load_average();
        let mut kinds = vec![(kind, first)];
        if kind == Kind::Ticks {
            kinds.push((Kind::TicksNext, next));
        }
        for (kind, mut o) in kinds {
            o.latencies.sort();
            let ok = o.statuses.get(&200).copied().unwrap_or(0);
            let total = o.latencies.len() as u64 + o.errors;
            println!(
                "| `{}` | {:.1} / {:.1} | {:.0} | {:?} ({:.2} % 200) | {} | {cpu_per_request} | {load} |",
                kind.label(),
                pct(&o.latencies, 0.5),
                pct(&o.latencies, 0.99),
                o.latencies.len() as f64 / secs,
                o.statuses,
                100.0 * ok as f64 / total.max(1) as f64,
                o.errors
            );
            all.insert(kind, o);
        }
    }
    all
}

/// A user `bench` with `trades` trades over 100 symbols; returns its API key.
async fn setup(store: &Store, trades: i64) -> String {
    let name = format!("bench-{}", std::process::id());
    let (user, key) = store.create_user(&name).await.expect("user");
    for i in 0..trades {
        let t = NewTrade {
            symbol: format!("S{:03}", i % 100),
            side: if i % 3 == 0 { Side::Sell } else { Side::Buy },
            quantity: rust_decimal::Decimal::from(1 + i % 50),
            price: rust_decimal::Decimal::from(100 + i % 1000),
            ts: 1 + i,
            time_sent: true,
        };
        store
            .record_trade(user, &t, None, tickcast::portfolio::fold)
            .await
            .expect("trade");
    }
    key
}

/// The small version: a server of its own with a little history of `S000`.
async fn smoke() {
    let path = std::env::temp_dir().join(format!("tickcast-history-{}.db", std::process::id()));
    let mut c = Config::defaults().expect("defaults");
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.feeds.synthetic.enabled = false;
    c.database.url = format!("sqlite://{}?mode=rwc", path.display());
    c.api.requests_per_second = 1_000_000;
    c.api.burst = 1_000_000;
    c.log.level = "warn".into();
    let server = Server::start(c).await.expect("start");
    let store = server.store().clone();
    let t0: i64 = 1_764_000_000_000_000_000;
    let rows: Vec<TickRow> = (0..3000i64)
        .map(|i| TickRow {
            symbol: Arc::from("S000"),
            ts: t0 + i * 1_000_000_000,
            ingest_ts: t0,
            epoch: 1,
            seq: i,
            price: 100.0,
            size: 1.0,
            side: Some(Side::Buy),
        })
        .collect();
    store.insert_ticks(&rows).await.expect("ticks");
    let key = setup(&store, 20).await;
    let plan = Plan {
        addr: server.addr,
        from_ms: t0 / 1_000_000,
        to_ms: t0 / 1_000_000 + 3_000_000,
        key,
        symbols: 1,
        clients: 2,
        duration: Duration::from_millis(300),
    };
    let all = run(plan).await;
    for (kind, o) in &all {
        let ok = o.statuses.get(&200).copied().unwrap_or(0);
        assert!(
            ok > 0 && ok == o.latencies.len() as u64,
            "{kind:?}: {:?}",
            o.statuses
        );
        assert_eq!(o.errors, 0, "{kind:?}");
    }
    assert!(
        all.contains_key(&Kind::TicksNext),
        "3,000 ticks make a next page"
    );
    server.shutdown().await;
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", path.display()));
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: history setup DATABASE_URL [TRADES] | history run ADDR FROM_MS TO_MS KEY \
         [CLIENTS] [SECONDS] [SYMBOLS]"
    );
    std::process::exit(64)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: Option<T>) -> T {
    match args.get(i) {
        Some(v) => v.parse().unwrap_or_else(|_| usage()),
        None => default.unwrap_or_else(|| usage()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match args.first().map(String::as_str) {
            None if !full => smoke().await,
            Some("setup") => {
                let mut c = Config::defaults().expect("defaults");
                c.database.url = arg(&args, 1, None);
                let store = Store::open(&c.database).expect("store");
                store.migrate().await.expect("migrate");
                println!("{}", setup(&store, arg(&args, 2, Some(10_000))).await);
            }
            Some("run") => {
                let plan = Plan {
                    addr: arg(&args, 1, None),
                    from_ms: arg(&args, 2, None),
                    to_ms: arg(&args, 3, None),
                    key: arg(&args, 4, None),
                    clients: arg(&args, 5, Some(200)),
                    duration: Duration::from_secs(arg(&args, 6, Some(20))),
                    symbols: arg(&args, 7, Some(100)),
                };
                run(plan).await;
            }
            _ => usage(),
        }
    });
}
