//! Configuration: one [`Config`] composed of per-component sections, loaded in layers and
//! validated before any port is bound.
//!
//! Layers, later wins: `config/default.toml` (compiled in), an optional file, `TICKCAST_*`
//! environment variables (`TICKCAST_WS__MAX_SUBSCRIPTIONS=64` sets `ws.max_subscriptions`), and
//! `DATABASE_URL`. Every struct denies unknown fields, so a misspelt key is an error that names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::feed::FeedsConfig;
use crate::telemetry::LogFormat;

/// The embedded defaults; the file is also the documentation of every key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "TICKCAST_";

/// A configuration problem, naming the key (`ws.max_frame_bytes`) or the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn key(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub feeds: FeedsConfig,
    pub ring: RingConfig,
    pub ws: WsConfig,
    pub pipeline: crate::pipeline::PipelineConfig,
    pub database: DatabaseConfig,
    pub api: ApiConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingConfig {
    pub capacity: usize,
    pub snapshot_depth: usize,
    pub max_symbols: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsConfig {
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    pub max_subscriptions: usize,
    pub outbox_max_events: usize,
    pub outbox_max_bytes: usize,
    pub batch_max_bytes: usize,
    pub slow_consumer_timeout_ms: u64,
    pub close_grace_ms: u64,
    pub ping_interval_ms: u64,
    pub pong_timeout_ms: u64,
    pub ops_per_second: u32,
    pub ops_burst: u32,
    pub abuse_threshold: u32,
    pub max_throttle_ms: u64,
    pub read_buffer_bytes: usize,
    pub write_buffer_bytes: usize,
    pub socket_send_buffer_bytes: usize,
}

/// Storage: where ticks, users and trades live, and how the write-behind queue behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH?mode=rwc` or `postgres://...`; `DATABASE_URL` overrides it.
    pub url: String,
    pub pool_size: u32,
    /// Tick rows held in memory while the database is slow or down; past it rows are dropped
    /// (counted and logged).
    pub queue_capacity: usize,
    /// Rows per insert transaction.
    pub batch_size: usize,
    /// A partial batch waits at most this long before it is written.
    pub flush_interval_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failed writes that open the circuit breaker.
    pub breaker_failures: u32,
    /// While the breaker is open, one probe write per this interval.
    pub breaker_probe_ms: u64,
    /// Ticks older than this are deleted; 0 keeps them forever.
    pub retention_days: u64,
    pub retention_interval_ms: u64,
    /// Time allowed for a connection or a query before it counts as a failure.
    pub timeout_ms: u64,
}

/// REST API limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Requests per second per API key (or per client IP without a key).
    pub requests_per_second: u32,
    pub burst: u32,
    /// Largest `limit` a list request may ask for.
    pub max_page_size: usize,
    pub default_page_size: usize,
    /// Largest REST request body (ingest has its own limit).
    pub max_body_bytes: usize,
    /// 1 s bar closes the prediction models are fitted on.
    pub prediction_window: usize,
    /// Order p of the autoregressive model.
    pub ar_order: usize,
    /// Largest `horizon_s` a prediction may ask for.
    pub max_horizon_s: u64,
}

/// Milliseconds as a `Duration`.
pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

// === impl Config ===

impl Config {
    /// The embedded defaults alone (tests start from here and adjust fields).
    pub fn defaults() -> Result<Config, ConfigError> {
        Self::from_layers(None, std::iter::empty())
    }

    /// Defaults, then `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let overlay = match file {
            Some(path) => Some(read_file(path)?),
            None => None,
        };
        Self::from_layers(overlay, std::env::vars())
    }

    /// Merges the layers and validates the result.
    pub fn from_layers(
        file: Option<(String, String)>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut root = parse_toml("config/default.toml (embedded)", DEFAULT_TOML)?;
        if let Some((name, text)) = file {
            merge(&mut root, parse_toml(&name, &text)?);
        }
        for (name, value) in env {
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
        fn check(ok: bool, key: &str, msg: &str) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::key(key, msg))
            }
        }
        self.feeds.validate()?;
        check(
            self.ring.capacity >= 1,
            "ring.capacity",
            "must be at least 1",
        )?;
        check(
            self.ring.snapshot_depth <= self.ring.capacity,
            "ring.snapshot_depth",
            "must not exceed ring.capacity",
        )?;
        check(
            self.ring.max_symbols >= 1,
            "ring.max_symbols",
            "must be at least 1",
        )?;
        let w = &self.ws;
        check(
            w.max_connections >= 1,
            "ws.max_connections",
            "must be at least 1",
        )?;
        check(
            w.max_frame_bytes >= 128,
            "ws.max_frame_bytes",
            "must be at least 128",
        )?;
        check(
            w.max_subscriptions >= 1,
            "ws.max_subscriptions",
            "must be at least 1",
        )?;
        check(
            w.outbox_max_events >= 2,
            "ws.outbox_max_events",
            "must be at least 2",
        )?;
        check(
            w.outbox_max_bytes >= 1024,
            "ws.outbox_max_bytes",
            "must be at least 1024",
        )?;
        check(
            w.batch_max_bytes >= 1024,
            "ws.batch_max_bytes",
            "must be at least 1024",
        )?;
        check(
            w.slow_consumer_timeout_ms >= 1,
            "ws.slow_consumer_timeout_ms",
            "must be at least 1",
        )?;
        check(
            w.ping_interval_ms >= 1,
            "ws.ping_interval_ms",
            "must be at least 1",
        )?;
        check(
            w.pong_timeout_ms > w.ping_interval_ms,
            "ws.pong_timeout_ms",
            "must exceed ws.ping_interval_ms",
        )?;
        check(
            w.ops_per_second >= 1,
            "ws.ops_per_second",
            "must be at least 1",
        )?;
        check(w.ops_burst >= 1, "ws.ops_burst", "must be at least 1")?;
        check(
            w.abuse_threshold >= 1,
            "ws.abuse_threshold",
            "must be at least 1",
        )?;
        check(
            w.read_buffer_bytes >= 256,
            "ws.read_buffer_bytes",
            "must be at least 256",
        )?;
        check(
            w.write_buffer_bytes >= 256,
            "ws.write_buffer_bytes",
            "must be at least 256",
        )?;
        let p = &self.pipeline;
        check(
            p.interval_ms >= 10,
            "pipeline.interval_ms",
            "must be at least 10",
        )?;
        check(
            p.close_delay_ms < p.interval_ms,
            "pipeline.close_delay_ms",
            "must be below pipeline.interval_ms",
        )?;
        if let Err(e) = p.indicators().validate() {
            let key = format!("pipeline.{}_period", e.indicator);
            return Err(ConfigError::key(&key, e.to_string()));
        }
        let d = &self.database;
        check(
            d.url.starts_with("sqlite:")
                || d.url.starts_with("postgres://")
                || d.url.starts_with("postgresql://"),
            "database.url",
            "must be a sqlite: or postgres:// URL",
        )?;
        check(d.pool_size >= 1, "database.pool_size", "must be at least 1")?;
        check(
            d.batch_size >= 1,
            "database.batch_size",
            "must be at least 1",
        )?;
        check(
            d.queue_capacity >= d.batch_size,
            "database.queue_capacity",
            "must be at least database.batch_size",
        )?;
        check(
            d.flush_interval_ms >= 1,
            "database.flush_interval_ms",
            "must be at least 1",
        )?;
        check(
            d.backoff_initial_ms >= 1 && d.backoff_max_ms >= d.backoff_initial_ms,
            "database.backoff_max_ms",
            "must be >= backoff_initial_ms >= 1",
        )?;
        check(
            d.breaker_failures >= 1,
            "database.breaker_failures",
            "must be at least 1",
        )?;
        check(
            d.breaker_probe_ms >= 1,
            "database.breaker_probe_ms",
            "must be at least 1",
        )?;
        check(
            d.retention_interval_ms >= 1000,
            "database.retention_interval_ms",
            "must be at least 1000",
        )?;
        check(
            d.timeout_ms >= 10,
            "database.timeout_ms",
            "must be at least 10",
        )?;
        let a = &self.api;
        check(
            a.requests_per_second >= 1,
            "api.requests_per_second",
            "must be at least 1",
        )?;
        check(a.burst >= 1, "api.burst", "must be at least 1")?;
        check(
            a.max_page_size >= 1,
            "api.max_page_size",
            "must be at least 1",
        )?;
        check(
            (1..=a.max_page_size).contains(&a.default_page_size),
            "api.default_page_size",
            "must be in 1..=api.max_page_size",
        )?;
        check(
            a.max_body_bytes >= 256,
            "api.max_body_bytes",
            "must be at least 256",
        )?;
        check(
            a.ar_order >= 1 && a.prediction_window >= 4 * a.ar_order + 4,
            "api.prediction_window",
            "must be at least 4 * api.ar_order + 4 (and ar_order >= 1)",
        )?;
        check(
            a.max_horizon_s >= 1,
            "api.max_horizon_s",
            "must be at least 1",
        )?;
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
            (&[("TICKCAST_NOPE__X", "1")], "nope"),
            (
                &[
                    ("TICKCAST_FEEDS__UPSTREAM__ENABLED", "true"),
                    ("TICKCAST_FEEDS__UPSTREAM__URL", "wss://example.com/ws"),
                ],
                "feeds.upstream.url",
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
            (&[("TICKCAST_API__MAX_PAGE_SIZE", "0")], "api.max_page_size"),
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
        let err = with_env(&[
            ("TICKCAST_FEEDS__UPSTREAM__ENABLED", "true"),
            ("TICKCAST_FEEDS__UPSTREAM__URL", "wss://example.com/ws"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("TLS support is not built in"), "{err}");
        // A wss:// URL is fine while the upstream feed is off.
        assert!(with_env(&[("TICKCAST_FEEDS__UPSTREAM__URL", "wss://example.com/ws")]).is_ok());
    }

    #[test]
    fn bad_file_is_a_syntax_error() {
        let err = Config::from_layers(Some(("f.toml".into(), "[ws\n".into())), std::iter::empty())
            .unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }
}
