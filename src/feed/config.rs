//! `[feeds]` configuration: one section per source, each owned and checked by its adapter.
//!
//! The top-level `Config` (`config.rs`) composes [`FeedsConfig`] and calls
//! [`FeedsConfig::validate`]; the checks themselves (including those that read files: the
//! replay path's format, the upstream mapping) live beside the feed they protect.

use serde::Deserialize;

use super::replay::ReplayConfig;
use super::synthetic::SyntheticConfig;
use super::upstream::UpstreamConfig;
use crate::config_section::{ConfigError, check};

/// `[feeds]`: every source of ticks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedsConfig {
    /// Live feeds (synthetic, upstream, HTTP ingest; not replay) refuse ticks dated more than
    /// this many ms ahead of the server clock.
    pub max_future_skew_ms: u64,
    pub synthetic: SyntheticConfig,
    pub replay: ReplayConfig,
    /// The single upstream feed of earlier releases; still one feed among `upstreams`.
    pub upstream: UpstreamConfig,
    /// More upstream feeds, side by side (`[[feeds.upstreams]]`), each with its own symbols.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    pub http: HttpIngestConfig,
}

/// Largest `feeds.max_future_skew_ms`: a year.
const MAX_FUTURE_SKEW_MS: u64 = 365 * 86_400_000;

/// `[feeds.http]`: the HTTP ingest feed, `POST /api/v1/ingest` (served by `api::ingest`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngestConfig {
    /// Bearer token senders must present; empty disables the endpoint.
    pub token: String,
    /// Most records one request may carry.
    pub max_records: usize,
}

// === impl FeedsConfig ===

impl FeedsConfig {
    /// Range checks serde cannot express, section by section; the first failure names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=MAX_FUTURE_SKEW_MS).contains(&self.max_future_skew_ms),
            "feeds.max_future_skew_ms",
            "must be between 1 and 31536000000 (a year)",
        )?;
        self.synthetic.validate()?;
        self.replay.validate()?;
        self.upstream.validate()?;
        let mut names = Vec::new();
        if self.upstream.enabled {
            names.push(self.upstream.feed_name());
        }
        for (i, up) in self.upstreams.iter().enumerate() {
            let at = format!("feeds.upstreams[{i}]");
            check(!up.name.is_empty(), &format!("{at}.name"), "must be set")?;
            up.validate_at(&at)?;
            if up.enabled {
                check(
                    !names.contains(&up.feed_name()),
                    &format!("{at}.name"),
                    &format!("{:?} names another upstream feed too", up.name),
                )?;
                names.push(up.feed_name());
            }
        }
        self.http.validate()
    }

    /// Every enabled upstream feed: `[feeds.upstream]` first, then `[[feeds.upstreams]]`.
    pub(crate) fn enabled_upstreams(&self) -> impl Iterator<Item = &UpstreamConfig> {
        std::iter::once(&self.upstream)
            .chain(&self.upstreams)
            .filter(|u| u.enabled)
    }
}

// === impl HttpIngestConfig ===

impl HttpIngestConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.max_records >= 1,
            "feeds.http.max_records",
            "must be at least 1",
        )
    }
}
