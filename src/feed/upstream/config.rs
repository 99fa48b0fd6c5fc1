//! `[feeds.upstream]`: the exchange WebSocket to follow, its mapping and its reconnect policy.

use serde::Deserialize;

use crate::config_section::{ConfigError, check};
use crate::feed::mapping::{Mapping, MappingError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub enabled: bool,
    /// `wss://` (TLS, see [`super::tls`]) or `ws://`.
    pub url: String,
    /// PEM file of extra root certificates for `wss://` (empty: the built-in Mozilla roots only).
    pub ca_file: String,
    /// `binance`, `coinbase`, or the path of a mapping TOML file.
    pub mapping: String,
    /// Symbols to subscribe to, as the exchange spells them.
    pub symbols: Vec<String>,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Silence that counts as a dead connection (also bounds connecting).
    pub idle_timeout_ms: u64,
}

// === impl UpstreamConfig ===

impl UpstreamConfig {
    /// Range checks serde cannot express; while the feed is on, also loads the mapping and
    /// builds the subscribe message, so a bad mapping stops start-up rather than the feed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            !self.enabled || self.url.starts_with("ws://") || self.url.starts_with("wss://"),
            "feeds.upstream.url",
            "must be a ws:// or wss:// URL",
        )?;
        check(
            !self.enabled || !self.symbols.is_empty(),
            "feeds.upstream.symbols",
            "must name at least one symbol",
        )?;
        check(
            self.idle_timeout_ms >= 1,
            "feeds.upstream.idle_timeout_ms",
            "must be at least 1",
        )?;
        if self.enabled {
            self.check_mapping()
                .map_err(|e| ConfigError::key("feeds.upstream.mapping", e.to_string()))?;
            super::tls::client_config(&self.ca_file)
                .map_err(|e| ConfigError::key("feeds.upstream.ca_file", e.to_string()))?;
        }
        check(
            self.backoff_initial_ms >= 1 && self.backoff_max_ms >= self.backoff_initial_ms,
            "feeds.upstream.backoff_max_ms",
            "must be >= backoff_initial_ms >= 1",
        )
    }

    /// The mapping loads and makes a subscribe message for the configured symbols.
    fn check_mapping(&self) -> Result<(), MappingError> {
        let mapping = Mapping::load(&self.mapping)?;
        mapping
            .subscribe_message(&self.symbols)
            .map(|_| ())
            .map_err(|e| MappingError::Invalid {
                name: self.mapping.clone(),
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(enabled: bool, url: &str, mapping: &str) -> UpstreamConfig {
        UpstreamConfig {
            enabled,
            url: url.into(),
            ca_file: String::new(),
            mapping: mapping.into(),
            symbols: vec!["BTCUSDT".into()],
            backoff_initial_ms: 10,
            backoff_max_ms: 100,
            idle_timeout_ms: 1000,
        }
    }

    fn key_of(r: Result<(), ConfigError>) -> Option<String> {
        match r {
            Ok(()) => None,
            Err(ConfigError::Key { key, .. }) => Some(key),
            Err(other) => panic!("expected a key error, got {other}"),
        }
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            (cfg(true, "ws://x/ws", "binance"), None),
            (cfg(true, "wss://x/ws", "binance"), None),
            // URL, CA file and mapping only matter while the feed is on.
            (cfg(false, "wss://x/ws", "/no/such.toml"), None),
            (
                UpstreamConfig {
                    ca_file: "/no/such/ca.pem".into(),
                    ..cfg(false, "wss://x/ws", "binance")
                },
                None,
            ),
            (cfg(true, "http://x", "binance"), Some("feeds.upstream.url")),
            (
                UpstreamConfig {
                    ca_file: "/no/such/ca.pem".into(),
                    ..cfg(true, "wss://x/ws", "binance")
                },
                Some("feeds.upstream.ca_file"),
            ),
            (
                cfg(true, "ws://x/ws", "/no/such.toml"),
                Some("feeds.upstream.mapping"),
            ),
            (
                UpstreamConfig {
                    symbols: vec![],
                    ..cfg(true, "ws://x/ws", "binance")
                },
                Some("feeds.upstream.symbols"),
            ),
            (
                UpstreamConfig {
                    backoff_max_ms: 5,
                    ..cfg(false, "ws://x/ws", "binance")
                },
                Some("feeds.upstream.backoff_max_ms"),
            ),
            (
                UpstreamConfig {
                    idle_timeout_ms: 0,
                    ..cfg(false, "ws://x/ws", "binance")
                },
                Some("feeds.upstream.idle_timeout_ms"),
            ),
        ];
        for (c, want) in cases {
            assert_eq!(key_of(c.validate()).as_deref(), want, "{c:?}");
        }
    }
}
