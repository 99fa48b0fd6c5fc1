//! Running tickcast as a service: the metric names the alert rules and the dashboard query are
//! the ones `/metrics` exports, the systemd unit fits the defaults, the packaged configuration is
//! the defaults with the database in the state directory, and the binary reports readiness and
//! stopping to systemd over `$NOTIFY_SOCKET`.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use tickcast::config::Config;

use crate::util::{self, WAIT};

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Every `tickcast_*` and `process_*` name in `text` (PromQL expressions in YAML or JSON).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    for prefix in ["tickcast_", "process_"] {
        for (at, _) in text.match_indices(prefix) {
            if at > 0 && is_ident(bytes[at - 1]) {
                continue;
            }
            let end = text[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |n| at + n);
            names.insert(text[at..end].to_owned());
        }
    }
    names
}

/// `# TYPE name kind` of a scrape.
fn exported(scrape: &str) -> HashMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("# TYPE ")?.split(' ');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// A name a query may use: exported as is, or a histogram's `_bucket`, `_sum` or `_count`.
fn is_exported(types: &HashMap<String, String>, name: &str) -> bool {
    if types.get(name).is_some_and(|k| k != "histogram") {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| types.get(base).is_some_and(|k| k == "histogram"))
    })
}

#[test]
fn metric_names_are_read_from_queries() {
    let names = metric_names(
        r#"histogram_quantile(0.99, rate(tickcast_a_seconds_bucket{x="tickcast_no"}[5m]))
           > 0.9 * process_resident_memory_bytes and my_tickcast_other"#,
    );
    let want: BTreeSet<String> = [
        "tickcast_a_seconds_bucket",
        "tickcast_no",
        "process_resident_memory_bytes",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, want);
    let types: HashMap<String, String> = [("h", "histogram"), ("c", "counter")]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into();
    assert!(is_exported(&types, "h_bucket") && is_exported(&types, "c"));
    assert!(!is_exported(&types, "h") && !is_exported(&types, "c_bucket"));
}

/// The scrape of a server with an upstream feed registered (its per-feed rows appear once a
/// feed exists; this one points at a closed port and keeps reconnecting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_query_is_exported() {
    let mut config = util::config();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    config.feeds.upstream.enabled = true;
    config.feeds.upstream.url = format!("ws://127.0.0.1:{port}/ws");
    let srv = util::start(config).await;
    let mut scrape = String::new();
    util::wait_until("per-feed metrics", WAIT, async || {
        scrape = util::metrics_text(&srv).await;
        scrape.contains("tickcast_upstream_trades_total{feed=\"upstream\"}")
    })
    .await;
    let types = exported(&scrape);

    for (file, at_least) in [
        ("deploy/prometheus/alerts.yml", 15),
        ("deploy/grafana/tickcast.json", 50),
    ] {
        let used = metric_names(&repo_file(file));
        assert!(
            used.len() >= at_least,
            "{file}: only {} names found: {used:?}",
            used.len()
        );
        let missing: Vec<&String> = used.iter().filter(|n| !is_exported(&types, n)).collect();
        assert!(
            missing.is_empty(),
            "{file} queries metrics /metrics does not export: {missing:?}"
        );
    }
    // Labels the rules and panels select on.
    for sample in [
        "tickcast_node_info{role=\"all\"} 1",
        "tickcast_http_responses_total{code=\"2xx\"}",
        "tickcast_upstream_last_trade_age_seconds{feed=\"upstream\"}",
        "tickcast_ws_delivery_seconds_bucket{le=\"0.25\"}",
    ] {
        assert!(scrape.contains(sample), "{sample} missing:\n{scrape}");
    }
}

/// `Key=value` lines of the unit's sections (a key given twice keeps both values).
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_sized_for_the_defaults() {
    let unit = unit_settings(&repo_file("deploy/systemd/tickcast.service"));
    let get = |key: &str| -> &str {
        unit.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("the unit has no {key}="))
    };
    for (key, value) in [
        ("Type", "notify"),
        ("User", "tickcast"),
        ("StateDirectory", "tickcast"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("Restart", "on-failure"),
        (
            "ExecStart",
            "/usr/bin/tickcast serve --config /etc/tickcast/tickcast.toml",
        ),
    ] {
        assert_eq!(get(key), value, "{key}");
    }
    let defaults = Config::defaults().expect("defaults");
    // Every socket is a descriptor; leave room for the pools, NATS, feeds and the journal.
    let nofile: usize = get("LimitNOFILE").parse().expect("a number");
    assert!(
        nofile >= defaults.server.max_http_connections + 1024,
        "LimitNOFILE {nofile} leaves no room above server.max_http_connections"
    );
    assert!(defaults.server.max_http_connections >= defaults.ws.max_connections);
    // systemd must not kill the process while it drains and flushes.
    let stop_s: u64 = get("TimeoutStopSec")
        .trim_end_matches('s')
        .parse()
        .expect("seconds");
    let needed_ms = defaults.server.drain_grace_ms + defaults.server.shutdown_grace_ms;
    assert!(stop_s * 1000 > needed_ms, "TimeoutStopSec {stop_s}s");
}

/// deploy/debian/tickcast.toml is config/default.toml with the database in /var/lib/tickcast,
/// and loads.
#[test]
fn the_packaged_config_is_the_defaults_with_the_database_in_the_state_directory() {
    const FROM: &str = "url = \"sqlite://tickcast.db?mode=rwc\"";
    const TO: &str = "url = \"sqlite:///var/lib/tickcast/tickcast.db?mode=rwc\"";
    let defaults = repo_file("config/default.toml");
    assert_eq!(defaults.matches(FROM).count(), 1);
    let packaged = repo_file("deploy/debian/tickcast.toml");
    assert!(
        packaged == defaults.replace(FROM, TO),
        "deploy/debian/tickcast.toml is stale; regenerate it with\n    \
         sed 's|^{FROM}$|{TO}|' config/default.toml > deploy/debian/tickcast.toml"
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/debian/tickcast.toml");
    let config = Config::load_with(Some(&path), Vec::new()).expect("the packaged config loads");
    assert_eq!(
        config.database.url,
        "sqlite:///var/lib/tickcast/tickcast.db?mode=rwc"
    );
}

/// The binary under `Type=notify` in a directory of its own: its notification socket (with the
/// receive timeout [`WAIT`]), its port, the child.
struct Notifying {
    dir: PathBuf,
    sock: Option<UnixDatagram>,
    port: u16,
    child: tokio::process::Child,
}

impl Notifying {
    fn spawn() -> Notifying {
        let dir =
            std::env::temp_dir().join(format!("tickcast-notify-{}", crate::cluster::unique("")));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_read_timeout(Some(WAIT)).expect("timeout");
        let port = crate::cluster::free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
            .arg("serve")
            .env("NOTIFY_SOCKET", &path)
            .env("TICKCAST_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("TICKCAST_SERVER__DRAIN_GRACE_MS", "0")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.join("t.db").display()),
            )
            .env("TICKCAST_DATABASE__JOURNAL_DIR", dir.join("journal"))
            .env("TICKCAST_FEEDS__SYNTHETIC__SYMBOLS", "2")
            .env("TICKCAST_LOG__LEVEL", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("binary starts");
        Notifying {
            dir,
            sock: Some(sock),
            port,
            child,
        }
    }

    /// The next notification (off the runtime's threads: the socket blocks).
    async fn notification(&mut self) -> String {
        let sock = self.sock.take().expect("socket");
        let (got, sock) = tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 256];
            let got = sock.recv(&mut buf).map(|n| buf[..n].to_vec());
            (got, sock)
        })
        .await
        .expect("join");
        self.sock = Some(sock);
        match got {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => panic!(
                "no notification within {WAIT:?} ({e}); the binary: {:?}",
                self.child.try_wait()
            ),
        }
    }

    fn sigterm(&self) {
        let pid = self.child.id().expect("pid").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(killed.success());
    }

    /// STOPPING=1, then a clean exit.
    async fn stops_cleanly(mut self) {
        assert_eq!(self.notification().await, "STOPPING=1");
        let exit = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits in time")
            .expect("status");
        assert!(exit.success(), "{exit:?}");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The binary under `Type=notify`: READY=1 once it answers HTTP, STOPPING=1 at SIGTERM, then a
/// clean exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_notifies_systemd_when_ready_and_when_stopping() {
    let mut bin = Notifying::spawn();
    assert_eq!(bin.notification().await, "READY=1");
    // Ready means listening: the first request is answered.
    let addr = format!("127.0.0.1:{}", bin.port).parse().expect("addr");
    let (status, _, _) = util::http(addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 200);
    bin.sigterm();
    bin.stops_cleanly().await;
}

/// A SIGTERM sent the moment READY=1 arrives (a stop on the heels of a start) drains and
/// stops like any other: the handlers are installed before READY=1, not at the first wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_right_after_ready_still_stops_cleanly() {
    for _ in 0..3 {
        let mut bin = Notifying::spawn();
        assert_eq!(bin.notification().await, "READY=1");
        bin.sigterm();
        bin.stops_cleanly().await;
    }
}
