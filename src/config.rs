//! Configuration: one [`Config`] composed of per-component sections, loaded in layers and
//! validated before any port is bound.
//!
//! Layers, later wins: `config/default.toml` (compiled in), an optional file, `TICKCAST_*`
//! environment variables (`TICKCAST_WS__MAX_SUBSCRIPTIONS=64` sets `ws.max_subscriptions`), and
//! `DATABASE_URL`. Every struct denies unknown fields, so a misspelt key is an error that names it.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

pub use crate::api::ApiConfig;
pub use crate::auth::AuthConfig;
pub use crate::book::BookConfig;
use crate::client::TrustedProxies;
pub use crate::cluster::{ClusterConfig, Role};
pub use crate::config_section::ConfigError;
use crate::config_section::check;
pub use crate::feed::FeedsConfig;
pub use crate::pipeline::PipelineConfig;
pub use crate::portfolio::PortfolioConfig;
use crate::redact;
pub use crate::ring::RingConfig;
pub use crate::store::DatabaseConfig;
pub use crate::telemetry::LogConfig;
pub use crate::ws::WsConfig;

/// The embedded defaults; the file is also the documentation of every key.
pub(crate) const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variable prefix for overrides.
pub(crate) const ENV_PREFIX: &str = "TICKCAST_";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub feeds: FeedsConfig,
    pub ring: RingConfig,
    pub ws: WsConfig,
    pub pipeline: PipelineConfig,
    pub database: DatabaseConfig,
    pub api: ApiConfig,
    pub cluster: ClusterConfig,
    pub auth: AuthConfig,
    pub portfolio: PortfolioConfig,
    pub book: BookConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub shutdown_grace_ms: u64,
    /// Open TCP connections, WebSockets included; past it a new one is closed at once.
    pub max_http_connections: usize,
    /// Open TCP connections of one peer address (IPv6 by /64), WebSockets included; 0: no share.
    pub max_http_connections_per_ip: usize,
    /// A request's header must arrive within this; also the idle limit of keep-alive connections.
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive whole within this of its header.
    pub request_body_timeout_ms: u64,
    /// A response write that makes no progress for this long closes the connection.
    pub response_write_timeout_ms: u64,
    /// Peers (addresses or CIDR blocks) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// From a drain's start (SIGTERM, `POST /admin/drain`) to the 1001 close of every socket.
    pub drain_grace_ms: u64,
    /// Bearer token of `POST /admin/drain`; empty: the endpoint is off (404).
    pub admin_token: String,
    /// The memory this node is sized for (`tickcast_memory_budget_bytes`, the memory alert);
    /// 0: none.
    pub memory_budget_bytes: u64,
}

impl ServerConfig {
    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.max_http_connections >= 1,
            "server.max_http_connections",
            "must be at least 1",
        )?;
        check(
            self.header_read_timeout_ms >= 100,
            "server.header_read_timeout_ms",
            "must be at least 100",
        )?;
        for (key, value) in [
            (
                "server.request_body_timeout_ms",
                self.request_body_timeout_ms,
            ),
            (
                "server.response_write_timeout_ms",
                self.response_write_timeout_ms,
            ),
        ] {
            check(
                (100..=3_600_000).contains(&value),
                key,
                "must be between 100 and 3600000 (an hour)",
            )?;
        }
        check(
            self.drain_grace_ms <= 3_600_000,
            "server.drain_grace_ms",
            "must be at most 3600000 (an hour)",
        )?;
        check(
            self.admin_token.is_empty() || self.admin_token.len() >= 16,
            "server.admin_token",
            "must be empty (POST /admin/drain off) or at least 16 characters",
        )?;
        TrustedProxies::parse(&self.trusted_proxies)
            .map(|_| ())
            .map_err(|m| ConfigError::key("server.trusted_proxies", m))
    }
}

// === impl Config ===

impl Config {
    /// The embedded defaults alone (tests start from here and adjust fields).
    pub fn defaults() -> Result<Config, ConfigError> {
        Self::from_layers(None, std::iter::empty())
    }

    /// Defaults, then `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with(file, Vec::new())
    }

    /// [`Config::load`], then `overrides` (command-line flags, as `TICKCAST_*` names).
    pub fn load_with(
        file: Option<&Path>,
        overrides: Vec<(String, String)>,
    ) -> Result<Config, ConfigError> {
        let overlay = match file {
            Some(path) => Some(read_file(path)?),
            None => None,
        };
        Self::from_layers(overlay, std::env::vars().chain(overrides))
    }

    /// A copy safe to print: the ingest token, the HS256 secret and every credential in a URL
    /// (database, NATS, upstream feeds; see [`crate::redact::url`]) are masked.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if !c.feeds.http.token.is_empty() {
            c.feeds.http.token = redact::MASK.to_owned();
        }
        if !c.server.admin_token.is_empty() {
            c.server.admin_token = redact::MASK.to_owned();
        }
        c.database.url = redact::url(&self.database.url);
        c.database.read_url = redact::url(&self.database.read_url);
        c.cluster.nats_url = redact::url(&self.cluster.nats_url);
        for feed in std::iter::once(&mut c.feeds.upstream).chain(&mut c.feeds.upstreams) {
            feed.url = redact::url(&feed.url);
        }
        c.auth = self.auth.redacted();
        c
    }

    /// Merges the layers and validates the result.
    pub fn from_layers(
        file: Option<(String, String)>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut root = parse_toml("config/default.toml (embedded)", DEFAULT_TOML)?;
        if let Some((name, text)) = file {
            let mut layer = parse_toml(&name, &text)?;
            crate::pipeline::upgrade_legacy_keys(&mut layer)?;
            merge(&mut root, layer);
        }
        for (name, value) in crate::pipeline::upgrade_legacy_env(env.collect())? {
            let path: Vec<String> = if name == "DATABASE_URL" {
                vec!["database".into(), "url".into()]
            } else if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                rest.split("__").map(|p| p.to_ascii_lowercase()).collect()
            } else {
                continue;
            };
            if path.iter().any(String::is_empty) {
                return Err(ConfigError::key(
                    &name,
                    "malformed environment variable name",
                ));
            }
            set_path(&mut root, &path, &value).map_err(|m| ConfigError::key(&path.join("."), m))?;
        }
        let config: Config = serde_path_to_error::deserialize(root).map_err(|e| {
            let key = match e.path().to_string() {
                k if k.is_empty() || k == "." => "<root>".to_owned(),
                k => k,
            };
            ConfigError::key(&key, e.into_inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        check(
            self.server.max_http_connections >= self.ws.max_connections,
            "server.max_http_connections",
            "must be at least ws.max_connections (every WebSocket is one HTTP connection)",
        )?;
        let (http_share, ws_share) = (
            self.server.max_http_connections_per_ip,
            self.ws.max_connections_per_ip,
        );
        check(
            http_share == 0 || (ws_share != 0 && ws_share <= http_share),
            "server.max_http_connections_per_ip",
            "must be 0 or at least ws.max_connections_per_ip (every WebSocket is one HTTP \
             connection of its address)",
        )?;
        self.feeds.validate()?;
        self.ring.validate()?;
        self.ws.validate()?;
        self.pipeline.validate()?;
        self.database.validate()?;
        self.api.validate()?;
        self.cluster
            .validate(self.database.url.starts_with("postgres"))?;
        self.auth.validate()?;
        self.portfolio.validate()?;
        self.book.validate()?;
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<(String, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok((path.display().to_string(), text))
}

fn parse_toml(name: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: name.to_owned(),
            message: e.to_string(),
        })
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// An environment value is read as a TOML value when it parses as one (`42`, `true`,
/// `["A","B"]`), else taken as a plain string.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(root: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut table = root;
    for p in parents {
        let entry = table
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("`{p}` is not a section")),
        };
    }
    // A key whose default is a string stays a string even if the value looks like TOML (a
    // token of digits, say).
    let value = match table.get(last) {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
        _ => env_value(raw),
    };
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_layers(None, env.collect::<Vec<_>>().into_iter())
    }

    fn key_of(err: ConfigError) -> String {
        match err {
            ConfigError::Key { key, .. } => key,
            other => panic!("expected a key error, got {other}"),
        }
    }

    #[test]
    fn defaults_load_and_validate() {
        let c = Config::defaults().unwrap();
        assert!(c.feeds.synthetic.enabled);
        assert!(
            c.server.admin_token.is_empty(),
            "the admin endpoint is off by default"
        );
        assert_eq!(c.feeds.synthetic.symbols, 100);
        assert_eq!(c.feeds.synthetic.rate, 1000.0);
    }

    #[test]
    fn env_overrides_nested_keys() {
        let c = with_env(&[
            ("TICKCAST_WS__MAX_SUBSCRIPTIONS", "7"),
            (
                "TICKCAST_FEEDS__SYNTHETIC__SYMBOL_NAMES",
                r#"["AAPL","MSFT"]"#,
            ),
            ("TICKCAST_FEEDS__HTTP__TOKEN", "12345"),
            ("TICKCAST_SERVER__LISTEN", "127.0.0.1:0"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(c.ws.max_subscriptions, 7);
        assert_eq!(c.feeds.synthetic.symbol_names, vec!["AAPL", "MSFT"]);
        assert_eq!(c.feeds.http.token, "12345");
        assert_eq!(c.server.listen.port(), 0);
    }

    #[test]
    fn file_layer_merges_sections() {
        let file = "[ws]\nmax_subscriptions = 3\n".to_string();
        let c = Config::from_layers(Some(("f.toml".into(), file)), std::iter::empty()).unwrap();
        assert_eq!(c.ws.max_subscriptions, 3);
        assert_eq!(c.ws.max_connections, 20000);
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("TICKCAST_WS__NO_SUCH_KEY", "1")], "ws"),
            (
                &[("TICKCAST_WS__MAX_SUBSCRIPTIONS", "lots")],
                "ws.max_subscriptions",
            ),
            (
                &[("TICKCAST_FEEDS__SYNTHETIC__RATE", "-5")],
                "feeds.synthetic.rate",
            ),
            (&[("TICKCAST_SERVER__LISTEN", "nowhere")], "server.listen"),
            (
                &[("TICKCAST_RING__SNAPSHOT_DEPTH", "99999")],
                "ring.snapshot_depth",
            ),
            (&[("TICKCAST_LOG__FORMAT", "xml")], "log.format"),
            (
                &[("TICKCAST_PIPELINE__BAR_INTERVALS", r#"["1s","1m","2h"]"#)],
                "pipeline.bar_intervals",
            ),
            (
                &[("TICKCAST_PIPELINE__BAR_INTERVALS", r#"["1m","5m"]"#)],
                "pipeline.bar_intervals",
            ),
            (
                &[("TICKCAST_RING__LONG_BAR_CAPACITY", "0")],
                "ring.long_bar_capacity",
            ),
            (&[("TICKCAST_NOPE__X", "1")], "nope"),
            (
                &[
                    ("TICKCAST_FEEDS__UPSTREAM__ENABLED", "true"),
                    ("TICKCAST_FEEDS__UPSTREAM__URL", "https://example.com/ws"),
                ],
                "feeds.upstream.url",
            ),
            (
                &[
                    ("TICKCAST_FEEDS__UPSTREAM__ENABLED", "true"),
                    ("TICKCAST_FEEDS__UPSTREAM__CA_FILE", "/no/such/ca.pem"),
                ],
                "feeds.upstream.ca_file",
            ),
            (
                &[
                    ("TICKCAST_FEEDS__UPSTREAM__ENABLED", "true"),
                    ("TICKCAST_FEEDS__UPSTREAM__MAPPING", "/no/such/mapping.toml"),
                ],
                "feeds.upstream.mapping",
            ),
            (
                &[
                    ("TICKCAST_FEEDS__UPSTREAM__ENABLED", "true"),
                    ("TICKCAST_FEEDS__UPSTREAM__SYMBOLS", "[]"),
                ],
                "feeds.upstream.symbols",
            ),
            (
                &[
                    ("TICKCAST_FEEDS__REPLAY__ENABLED", "true"),
                    ("TICKCAST_FEEDS__REPLAY__PATH", "ticks.txt"),
                ],
                "feeds.replay.path",
            ),
            (&[("DATABASE_URL", "mysql://x")], "database.url"),
            (
                &[("TICKCAST_DATABASE__QUEUE_CAPACITY", "1")],
                "database.queue_capacity",
            ),
            (
                &[("TICKCAST_DATABASE__READ_URL", "postgres://replica/db")],
                "database.read_url",
            ),
            (
                &[
                    ("DATABASE_URL", "postgres://primary/db"),
                    ("TICKCAST_DATABASE__READ_URL", "sqlite://replica.db"),
                ],
                "database.read_url",
            ),
            (
                &[("TICKCAST_DATABASE__READ_POOL_SIZE", "0")],
                "database.read_pool_size",
            ),
            (
                &[("TICKCAST_DATABASE__QUERY_TIMEOUT_MS", "1")],
                "database.query_timeout_ms",
            ),
            (
                &[("TICKCAST_DATABASE__RETENTION_BATCH_ROWS", "0")],
                "database.retention_batch_rows",
            ),
            (
                &[("TICKCAST_DATABASE__PARTITIONS_AHEAD_DAYS", "400")],
                "database.partitions_ahead_days",
            ),
            (&[("TICKCAST_API__MAX_PAGE_SIZE", "0")], "api.max_page_size"),
            (
                &[("TICKCAST_SERVER__REQUEST_BODY_TIMEOUT_MS", "0")],
                "server.request_body_timeout_ms",
            ),
            (
                &[("TICKCAST_SERVER__RESPONSE_WRITE_TIMEOUT_MS", "99")],
                "server.response_write_timeout_ms",
            ),
            (
                &[("TICKCAST_WS__MAX_CONNECTIONS_PER_IP", "2001")],
                "server.max_http_connections_per_ip",
            ),
            (
                &[("TICKCAST_WS__MAX_CONNECTIONS_PER_IP", "0")],
                "server.max_http_connections_per_ip",
            ),
            (
                &[("TICKCAST_WS__SNAPSHOT_MAX_BYTES", "100")],
                "ws.snapshot_max_bytes",
            ),
            (
                &[("TICKCAST_SERVER__DRAIN_GRACE_MS", "3600001")],
                "server.drain_grace_ms",
            ),
            (
                &[("TICKCAST_SERVER__ADMIN_TOKEN", "short")],
                "server.admin_token",
            ),
            (
                &[("TICKCAST_SERVER__MEMORY_BUDGET_BYTES", "-1")],
                "server.memory_budget_bytes",
            ),
        ];
        for (env, key) in cases {
            let err = with_env(env).expect_err("bad config must fail");
            let msg = err.to_string();
            let got = key_of(err);
            assert!(got.starts_with(key), "{env:?}: key {got:?} ({msg})");
        }
        let err = with_env(&[("TICKCAST_WS__NO_SUCH_KEY", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_key"), "{err}");
        // wss:// is built in.
        assert!(
            with_env(&[
                ("TICKCAST_FEEDS__UPSTREAM__ENABLED", "true"),
                ("TICKCAST_FEEDS__UPSTREAM__URL", "wss://example.com/ws"),
            ])
            .is_ok()
        );
    }

    #[test]
    fn bad_file_is_a_syntax_error() {
        let err = Config::from_layers(Some(("f.toml".into(), "[ws\n".into())), std::iter::empty())
            .unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }
}
