//! `[feeds.upstream]` and each `[[feeds.upstreams]]` entry: one exchange WebSocket to follow,
//! its mapping, its symbols (and the names they are published under), and its reconnect and
//! health policy.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config_section::{ConfigError, check};
use crate::feed::mapping::{Mapping, MappingError};
use crate::feed::venues;

/// The name of the `[feeds.upstream]` feed when it sets none.
pub const DEFAULT_NAME: &str = "upstream";
pub(crate) const DEFAULT_BACKOFF_INITIAL_MS: u64 = 250;
pub(crate) const DEFAULT_BACKOFF_MAX_MS: u64 = 30_000;
pub(crate) const DEFAULT_IDLE_TIMEOUT_MS: u64 = 30_000;
pub(crate) const DEFAULT_HEALTHY_AFTER_MS: u64 = 10_000;
/// 1 MiB: far above any venue's trade message, far below tungstenite's 64 MiB default.
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

fn yes() -> bool {
    true
}
fn backoff_initial_ms() -> u64 {
    DEFAULT_BACKOFF_INITIAL_MS
}
fn backoff_max_ms() -> u64 {
    DEFAULT_BACKOFF_MAX_MS
}
fn idle_timeout_ms() -> u64 {
    DEFAULT_IDLE_TIMEOUT_MS
}
fn healthy_after_ms() -> u64 {
    DEFAULT_HEALTHY_AFTER_MS
}
fn max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}

/// One upstream feed. In `[[feeds.upstreams]]` entries only `name`, `url`, `mapping` and
/// `symbols` are required; the rest default as `config/default.toml` documents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Names the feed in logs, metrics labels and `/readyz` (`[a-z0-9_-]`, unique).
    #[serde(default)]
    pub name: String,
    /// `wss://` (TLS, see [`super::tls`]) or `ws://`.
    pub url: String,
    /// PEM file of extra root certificates for `wss://` (empty: the built-in Mozilla roots only).
    #[serde(default)]
    pub ca_file: String,
    /// A built-in mapping name (`binance`, `coinbase`, `kraken`, `bybit`, `okx`) or the path of
    /// a mapping TOML file.
    pub mapping: String,
    /// Symbols to subscribe to, as the exchange spells them; trades for any other symbol are
    /// counted and dropped.
    pub symbols: Vec<String>,
    /// Venue symbol → published symbol (`"BTC/USD" = "BTC-USD"`); unlisted symbols are
    /// published as the venue spells them. Two feeds may publish into one symbol.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    #[serde(default = "backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Time without a trade or a venue heartbeat that counts as a dead connection (also bounds
    /// connecting). WebSocket pings and other messages do not count.
    #[serde(default = "idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// A connection that lasted this long with signs of life resets the backoff.
    #[serde(default = "healthy_after_ms")]
    pub healthy_after_ms: u64,
    /// Largest inbound message (and frame) accepted; a larger one ends the connection.
    #[serde(default = "max_message_bytes")]
    pub max_message_bytes: usize,
    /// The venue whose depth stream to follow into order books (`binance`, `coinbase`,
    /// `kraken`, `bybit`; see [`crate::feed::depth`]); empty: none.
    #[serde(default)]
    pub depth: String,
}

// === impl UpstreamConfig ===

impl UpstreamConfig {
    /// The name in logs, metrics and `/readyz`.
    pub fn feed_name(&self) -> &str {
        if self.name.is_empty() {
            DEFAULT_NAME
        } else {
            &self.name
        }
    }

    /// [`UpstreamConfig::validate_at`] for `[feeds.upstream]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_at("feeds.upstream")
    }

    /// Range checks serde cannot express, naming keys under `at` (`feeds.upstreams[1]`);
    /// while the feed is on, also loads the mapping, builds the subscribe message and the TLS
    /// roots, and checks every published symbol, so a mistake stops start-up, not the feed.
    pub fn validate_at(&self, at: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{at}.{k}");
        let name = self.feed_name();
        check(
            !name.is_empty()
                && name.len() <= 32
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                }),
            &key("name"),
            "must be 1 to 32 of a-z, 0-9, _ and -",
        )?;
        check(
            !self.enabled || self.url.starts_with("ws://") || self.url.starts_with("wss://"),
            &key("url"),
            "must be a ws:// or wss:// URL",
        )?;
        check(
            !self.enabled || !self.symbols.is_empty(),
            &key("symbols"),
            "must name at least one symbol",
        )?;
        check(
            self.idle_timeout_ms >= 1,
            &key("idle_timeout_ms"),
            "must be at least 1",
        )?;
        check(
            (1024..=(256 << 20)).contains(&self.max_message_bytes),
            &key("max_message_bytes"),
            "must be between 1024 and 268435456",
        )?;
        let depth = venues::depth_venue(&self.depth);
        check(
            self.depth.is_empty() || depth.is_some(),
            &key("depth"),
            &format!(
                "must be \"\" (off) or one of {}",
                venues::depth_names().collect::<Vec<_>>().join(", ")
            ),
        )?;
        if self.enabled
            && let Some(open) = depth
        {
            open(&self.symbols).map_err(|e| ConfigError::key(&key("depth"), e.to_string()))?;
        }
        if self.enabled {
            let mapping = self
                .check_mapping()
                .map_err(|e| ConfigError::key(&key("mapping"), e.to_string()))?;
            super::tls::client_config(&self.ca_file)
                .map_err(|e| ConfigError::key(&key("ca_file"), e.to_string()))?;
            for venue in self.aliases.keys() {
                check(
                    self.symbols.contains(venue),
                    &key("aliases"),
                    &format!("{venue:?} is not one of `symbols`"),
                )?;
            }
            for venue in &self.symbols {
                let normalised = mapping.normalise(venue);
                let published = self.aliases.get(venue).unwrap_or(&normalised);
                check(
                    crate::model::is_valid_symbol(published),
                    &key("aliases"),
                    &format!(
                        "{published:?} is not a valid tickcast symbol ([A-Z0-9._-], 1 to 32); \
                         publish {venue:?} under another name with aliases = {{ {venue:?} = \"...\" }}"
                    ),
                )?;
            }
        }
        check(
            self.backoff_initial_ms >= 1 && self.backoff_max_ms >= self.backoff_initial_ms,
            &key("backoff_max_ms"),
            "must be >= backoff_initial_ms >= 1",
        )
    }

    /// The mapping loads and makes a subscribe message for the configured symbols.
    fn check_mapping(&self) -> Result<Mapping, MappingError> {
        let mapping = Mapping::load(&self.mapping)?;
        mapping
            .subscribe_message(&self.symbols)
            .map_err(|e| MappingError::Invalid {
                name: self.mapping.clone(),
                message: e.to_string(),
            })?;
        Ok(mapping)
    }
}

#[cfg(test)]
impl UpstreamConfig {
    /// A valid, enabled Binance feed on a local URL (unit tests adjust from here).
    pub(crate) fn example() -> Self {
        UpstreamConfig {
            enabled: true,
            name: String::new(),
            url: "ws://127.0.0.1:9/ws".into(),
            ca_file: String::new(),
            mapping: "binance".into(),
            symbols: vec!["BTCUSDT".into()],
            aliases: BTreeMap::new(),
            backoff_initial_ms: 10,
            backoff_max_ms: 100,
            idle_timeout_ms: 1000,
            healthy_after_ms: 1000,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            depth: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_section::failed_key as key_of;

    fn cfg(enabled: bool, url: &str, mapping: &str) -> UpstreamConfig {
        UpstreamConfig {
            enabled,
            url: url.into(),
            ca_file: String::new(),
            mapping: mapping.into(),
            symbols: vec!["BTCUSDT".into()],
            ..UpstreamConfig::example()
        }
    }

    #[test]
    fn published_symbols_and_names_are_checked() {
        let kraken = UpstreamConfig {
            symbols: vec!["BTC/USD".into()],
            ..cfg(true, "wss://x/ws", "kraken")
        };
        let err = kraken.validate().unwrap_err().to_string();
        assert!(
            err.contains("feeds.upstream.aliases") && err.contains("BTC/USD"),
            "{err}"
        );
        let aliased = UpstreamConfig {
            aliases: [("BTC/USD".to_owned(), "BTC-USD".to_owned())].into(),
            ..kraken.clone()
        };
        assert!(aliased.validate().is_ok());
        let stray = UpstreamConfig {
            aliases: [("ETH/USD".to_owned(), "ETH-USD".to_owned())].into(),
            ..kraken
        };
        let err = stray
            .validate_at("feeds.upstreams[2]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("feeds.upstreams[2].aliases") && err.contains("ETH/USD"),
            "{err}"
        );
        for bad in ["Binance", "a b", &"x".repeat(33)] {
            let c = UpstreamConfig {
                name: bad.to_owned(),
                ..cfg(true, "ws://x/ws", "binance")
            };
            assert_eq!(
                key_of(c.validate()).as_deref(),
                Some("feeds.upstream.name"),
                "{bad}"
            );
        }
        let big = UpstreamConfig {
            max_message_bytes: 10,
            ..cfg(true, "ws://x/ws", "binance")
        };
        assert_eq!(
            key_of(big.validate()).as_deref(),
            Some("feeds.upstream.max_message_bytes")
        );
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
                    depth: "okx".into(),
                    ..cfg(false, "ws://x/ws", "binance")
                },
                Some("feeds.upstream.depth"),
            ),
            (
                UpstreamConfig {
                    depth: "kraken".into(),
                    ..cfg(true, "ws://x/ws", "binance")
                },
                None,
            ),
            (
                UpstreamConfig {
                    depth: "binance".into(),
                    symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
                    ..cfg(true, "ws://x/ws", "binance")
                },
                Some("feeds.upstream.depth"),
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
