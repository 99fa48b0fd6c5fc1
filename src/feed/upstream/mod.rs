//! Upstream feed: a WebSocket client of an exchange's public trade stream, mapped to ticks by a
//! [`Mapping`](super::mapping::Mapping).
//!
//! One connection at a time. After connecting it sends the mapping's subscribe message for
//! `feeds.upstream.symbols`, then turns every text (or binary) message into a tick, an ignored
//! message (counted in `metrics.feed_ignored`, logged at debug) or a bad one (counted in
//! `metrics.feed_errors`, logged at warn); none of them is fatal. Messages already buffered are
//! drained into one batch (up to [`BATCH_MAX`]) so a burst costs one ingest send.
//!
//! The connection is considered dead when it errors, closes, or is silent for
//! `idle_timeout_ms` (the connect and handshake are bounded by the same timeout). Then the feed
//! waits a capped exponential backoff with full jitter — uniform in
//! `[0, min(backoff_max_ms, backoff_initial_ms · 2^attempt)]` — increments
//! `metrics.upstream_reconnects`, reconnects and subscribes again. A connection that delivered
//! at least one valid trade resets `attempt` to 0. Shutdown is checked at every await.
//!
//! `wss://` URLs connect over rustls (see [`tls`]): the Mozilla roots are built in, and
//! `ca_file` adds PEM roots for private venues.

mod backoff;
mod config;
mod tls;

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::{self, Message};

use super::mapping::{Mapping, MessageParser, Parsed};
use super::{BATCH_MAX, Feed, FeedContext, FeedError};
use crate::model::RawTick;
pub use backoff::Backoff;
pub use config::UpstreamConfig;

/// Time given to a polite close frame on shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why one connection ended (the feed reconnects after each).
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect failed: {0}")]
    Connect(Box<tungstenite::Error>),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("sending the subscribe message failed: {0}")]
    Subscribe(Box<tungstenite::Error>),
    #[error("no message for {0:?}")]
    Idle(Duration),
    #[error("connection closed by upstream")]
    Closed,
    #[error("read failed: {0}")]
    Read(Box<tungstenite::Error>),
}

/// How a session ended.
#[derive(Debug)]
enum Ended {
    Shutdown,
    Lost(UpstreamError),
}

/// The upstream WebSocket feed (see the module docs).
#[derive(Debug)]
pub struct UpstreamFeed {
    url: String,
    /// TLS client settings, used when the URL is `wss://`.
    tls: std::sync::Arc<rustls::ClientConfig>,
    subscribe: String,
    parser: MessageParser,
    backoff: Backoff,
    idle_timeout: Duration,
}

// === impl UpstreamFeed ===

impl UpstreamFeed {
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, FeedError> {
        let mapping = Mapping::load(&cfg.mapping).map_err(|e| FeedError::Config(e.to_string()))?;
        let subscribe = mapping
            .subscribe_message(&cfg.symbols)
            .map_err(|e| FeedError::Config(format!("subscribe message: {e}")))?;
        let tls = tls::client_config(&cfg.ca_file)
            .map_err(|e| FeedError::Config(format!("ca_file: {e}")))?;
        Ok(Self {
            url: cfg.url.clone(),
            tls,
            subscribe,
            parser: MessageParser::new(mapping),
            backoff: Backoff::from_clock(
                Duration::from_millis(cfg.backoff_initial_ms),
                Duration::from_millis(cfg.backoff_max_ms),
            ),
            idle_timeout: Duration::from_millis(cfg.idle_timeout_ms.max(1)),
        })
    }

    /// One connection: connect, subscribe, stream until it ends. `delivered` counts the valid
    /// trades it produced.
    async fn session(
        &mut self,
        ctx: &FeedContext,
        delivered: &mut u64,
    ) -> Result<Ended, FeedError> {
        let connect = tokio::time::timeout(
            self.idle_timeout,
            tokio_tungstenite::connect_async_tls_with_config(
                self.url.as_str(),
                None,
                false,
                Some(Connector::Rustls(self.tls.clone())),
            ),
        );
        let mut ws = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(Ended::Shutdown),
            r = connect => match r {
                Err(_) => return Ok(Ended::Lost(UpstreamError::ConnectTimeout(self.idle_timeout))),
                Ok(Err(e)) => return Ok(Ended::Lost(UpstreamError::Connect(Box::new(e)))),
                Ok(Ok((ws, _response))) => ws,
            },
        };
        tracing::info!(feed = "upstream", url = %self.url, "upstream connected");
        if let Err(e) = ws.send(Message::text(self.subscribe.clone())).await {
            return Ok(Ended::Lost(UpstreamError::Subscribe(Box::new(e))));
        }
        tracing::debug!(feed = "upstream", message = %self.subscribe, "subscribed");
        let mut batch: Vec<RawTick> = Vec::new();
        loop {
            let next = tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => {
                    let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
                    return Ok(Ended::Shutdown);
                }
                r = tokio::time::timeout(self.idle_timeout, ws.next()) => r,
            };
            let mut end = match next {
                Err(_) => Some(UpstreamError::Idle(self.idle_timeout)),
                Ok(None) => Some(UpstreamError::Closed),
                Ok(Some(Err(e))) => Some(UpstreamError::Read(Box::new(e))),
                Ok(Some(Ok(msg))) => self.handle(msg, &mut batch, ctx),
            };
            // Drain what is already buffered into the same batch, without waiting.
            while end.is_none() && batch.len() < BATCH_MAX {
                match ws.next().now_or_never() {
                    None => break,
                    Some(None) => end = Some(UpstreamError::Closed),
                    Some(Some(Err(e))) => end = Some(UpstreamError::Read(Box::new(e))),
                    Some(Some(Ok(msg))) => end = self.handle(msg, &mut batch, ctx),
                }
            }
            if !batch.is_empty() {
                *delivered += batch.len() as u64;
                if !super::send_batch(ctx, std::mem::take(&mut batch)).await? {
                    return Ok(Ended::Shutdown);
                }
            }
            if let Some(e) = end {
                return Ok(Ended::Lost(e));
            }
        }
    }

    /// Maps one message into `batch`; `Some` when the message ends the connection.
    fn handle(
        &mut self,
        msg: Message,
        batch: &mut Vec<RawTick>,
        ctx: &FeedContext,
    ) -> Option<UpstreamError> {
        let bytes: &[u8] = match &msg {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
            Message::Close(_) => return Some(UpstreamError::Closed),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return None,
        };
        match self.parser.parse(bytes) {
            Ok(Parsed::Trade(tick)) => batch.push(tick),
            Ok(Parsed::Ignored { kind }) => {
                ctx.metrics.feed_ignored.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(feed = "upstream", kind, "message ignored");
            }
            Err(error) => {
                ctx.metrics.feed_errors.fetch_add(1, Ordering::Relaxed);
                let shown = &bytes[..bytes.len().min(256)];
                tracing::warn!(
                    feed = "upstream",
                    %error,
                    message = %String::from_utf8_lossy(shown),
                    "bad message skipped"
                );
            }
        }
        None
    }
}

impl Feed for UpstreamFeed {
    fn name(&self) -> &'static str {
        "upstream"
    }

    fn run(mut self: Box<Self>, ctx: FeedContext) -> BoxFuture<'static, Result<(), FeedError>> {
        Box::pin(async move {
            tracing::info!(feed = "upstream", url = %self.url, "upstream feed started");
            let mut first = true;
            loop {
                if !first {
                    ctx.metrics
                        .upstream_reconnects
                        .fetch_add(1, Ordering::Relaxed);
                }
                first = false;
                let mut delivered = 0;
                let error = match self.session(&ctx, &mut delivered).await? {
                    Ended::Shutdown => return Ok(()),
                    Ended::Lost(e) => e,
                };
                if delivered > 0 {
                    self.backoff.reset();
                }
                let delay = self.backoff.next_delay();
                tracing::warn!(
                    feed = "upstream",
                    url = %self.url,
                    %error,
                    delivered,
                    retry_in_ms = delay.as_millis() as u64,
                    "upstream connection lost; reconnecting"
                );
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, mapping: &str) -> UpstreamConfig {
        UpstreamConfig {
            enabled: true,
            url: url.into(),
            ca_file: String::new(),
            mapping: mapping.into(),
            symbols: vec!["BTCUSDT".into()],
            backoff_initial_ms: 10,
            backoff_max_ms: 100,
            idle_timeout_ms: 1000,
        }
    }

    #[test]
    fn construction_refuses_bad_mappings_and_ca_files() {
        assert!(UpstreamFeed::new(&cfg("wss://x/ws", "binance")).is_ok());
        let err = UpstreamFeed::new(&UpstreamConfig {
            ca_file: "/no/such/ca.pem".into(),
            ..cfg("wss://x/ws", "binance")
        })
        .unwrap_err();
        assert!(err.to_string().contains("/no/such/ca.pem"), "{err}");
        let err = UpstreamFeed::new(&cfg("ws://x/ws", "/no/such.toml")).unwrap_err();
        assert!(err.to_string().contains("/no/such.toml"), "{err}");
        assert!(UpstreamFeed::new(&cfg("ws://x/ws", "coinbase")).is_ok());
    }
}
