//! Upstream feed: a WebSocket client of an exchange's public trade stream, mapped to ticks by a
//! [`Mapping`](super::mapping::Mapping). Several run side by side (`[feeds.upstream]` and each
//! `[[feeds.upstreams]]`), each with its own name, symbols and aliases.
//!
//! One connection at a time per feed. After connecting it sends the mapping's subscribe message
//! for its `symbols`, then classifies every text (or binary) message: trades go to ingest
//! (only for configured symbols, under their alias; others are counted in the feed's
//! `unsubscribed` and dropped), the venue's heartbeats are signs of life, a refused subscription
//! is logged, counted and makes `/readyz` degraded for this feed until the next connection,
//! anything else is ignored (counted in `metrics.feed_ignored`), and a bad message is counted
//! in `metrics.feed_errors` and logged at warn; none of them is fatal. Messages already buffered
//! are drained into one batch (up to [`BATCH_MAX`]) so a burst costs one ingest send.
//!
//! **Liveness** is trades and the venue's heartbeat channel only: WebSocket pings, acks and
//! other channels do not count, so a venue that stops sending trades and heartbeats is
//! reconnected after `idle_timeout_ms` (which also bounds connecting) even if it keeps
//! answering pings. Mappings with a `ping_text` send it every `ping_interval_ms` to make the
//! venue answer with a heartbeat (Bybit, OKX). Inbound messages and frames are capped at
//! `max_message_bytes`; a larger one ends the connection.
//!
//! After a connection ends the feed waits a capped exponential backoff with full jitter —
//! uniform in `[0, min(backoff_max_ms, backoff_initial_ms · 2^attempt)]` — and reconnects.
//! `attempt` goes back to 0 only after a **healthy** connection: one that lasted
//! `healthy_after_ms`, showed signs of life and had no refused subscription (see
//! [`was_healthy`]). Shutdown is checked at every await.
//!
//! **Depth** (`depth` set): after the trade subscribe the feed sends the venue's depth subscribe
//! message(s) and offers every inbound message to the venue's
//! [`DepthStream`](super::depth::DepthStream) first (through [`depth::DepthSync`]); what is
//! not a depth message goes on to the mapping. Book updates for configured symbols go to
//! ingest under their aliases (`IngestHandle::send_books`) and are signs of life like trades.
//! A book that loses sync (a sequence gap, a checksum mismatch, an unusable delta) is logged,
//! counted (`book_resyncs`) and resynced on the open connection: the decoder's resubscribe
//! messages go out, the symbol's deltas still in flight are dropped, and the venue's fresh
//! snapshot reaches clients as a `reset` event, without interrupting the other symbols. A venue
//! that sends no snapshot within the idle timeout, or one whose book cannot be resubscribed
//! (none, today), gets a new connection.
//!
//! `wss://` URLs connect over rustls (see [`tls`]): the Mozilla roots are built in, and
//! `ca_file` adds PEM roots for private venues.

mod backoff;
mod config;
mod depth;
mod tls;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::mapping::{Mapping, MessageError, MessageParser, Parsed, SymbolMap};
use super::{BATCH_MAX, Feed, FeedContext, FeedError};
use crate::model::RawTick;
use crate::telemetry::events::UpstreamSubscriptionRefused;
use crate::telemetry::feeds::FeedStatus;
pub use backoff::Backoff;
pub use config::{DEFAULT_NAME, UpstreamConfig};
use depth::{DepthSync, Offered};

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
    #[error("sending a ping failed: {0}")]
    Ping(Box<tungstenite::Error>),
    #[error("no trade and no heartbeat for {0:?}")]
    Idle(Duration),
    #[error("connection closed by upstream")]
    Closed,
    #[error("read failed: {0}")]
    Read(Box<tungstenite::Error>),
    #[error("order book of {symbol} lost sync ({reason}): resyncing")]
    BookResync { symbol: String, reason: String },
}

/// How a session ended.
#[derive(Debug)]
enum Ended {
    Shutdown,
    Lost(UpstreamError),
}

/// What one connection showed, for the backoff decision.
#[derive(Debug, Default, Clone, Copy)]
struct Signs {
    /// Trades and heartbeats received (messages, not ticks).
    lives: u64,
    refused: bool,
    trades: u64,
}

/// Whether a connection counts as healthy, so the backoff starts over: it lasted
/// `healthy_after`, showed signs of life, and the venue refused no subscription on it. A venue
/// that sends one trade and drops, or refuses and then only heartbeats, keeps the backoff
/// growing.
fn was_healthy(lasted: Duration, healthy_after: Duration, signs: Signs) -> bool {
    lasted >= healthy_after && signs.lives > 0 && !signs.refused
}

/// The upstream WebSocket feed (see the module docs).
#[derive(Debug)]
pub struct UpstreamFeed {
    name: String,
    url: String,
    /// `url` with its credentials masked (a venue key in the query): what logs print.
    log_url: String,
    /// TLS client settings, used when the URL is `wss://`.
    tls: Arc<rustls::ClientConfig>,
    ws_config: WebSocketConfig,
    subscribe: String,
    /// Application-level keepalive the mapping asks for (text, interval).
    ping: Option<(String, Duration)>,
    parser: MessageParser,
    /// The depth stream, when `depth` is set.
    depth: Option<DepthSync>,
    backoff: Backoff,
    idle_timeout: Duration,
    healthy_after: Duration,
}

// === impl UpstreamFeed ===

impl UpstreamFeed {
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, FeedError> {
        let name = cfg.feed_name().to_owned();
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            FeedError::Config(format!("upstream feed {name}: {what}: {e}"))
        };
        let mapping = Mapping::load(&cfg.mapping).map_err(|e| fail("mapping", &e))?;
        let subscribe = mapping
            .subscribe_message(&cfg.symbols)
            .map_err(|e| fail("subscribe message", &e))?;
        let tls = tls::client_config(&cfg.ca_file).map_err(|e| fail("ca_file", &e))?;
        let ping = (!mapping.ping_text.is_empty()).then(|| {
            (
                mapping.ping_text.clone(),
                Duration::from_millis(mapping.ping_interval_ms.max(1)),
            )
        });
        let symbols = SymbolMap::only(&mapping, &cfg.symbols, &cfg.aliases);
        let depth = match cfg.depth.as_str() {
            "" => None,
            name => {
                let venue = crate::feed::venues::depth_venue(name)
                    .ok_or_else(|| fail("depth", &format!("unknown venue {name:?}")))?;
                let decoder = venue(&cfg.symbols).map_err(|e| fail("depth", &e))?;
                Some(DepthSync::new(decoder, symbols.clone(), cfg.feed_name()))
            }
        };
        Ok(Self {
            url: cfg.url.clone(),
            log_url: crate::redact::url(&cfg.url),
            tls,
            ws_config: WebSocketConfig::default()
                .max_message_size(Some(cfg.max_message_bytes))
                .max_frame_size(Some(cfg.max_message_bytes)),
            subscribe,
            ping,
            parser: MessageParser::with_symbols(mapping, symbols),
            depth,
            backoff: Backoff::from_clock(
                Duration::from_millis(cfg.backoff_initial_ms),
                Duration::from_millis(cfg.backoff_max_ms),
            ),
            idle_timeout: Duration::from_millis(cfg.idle_timeout_ms.max(1)),
            healthy_after: Duration::from_millis(cfg.healthy_after_ms),
            name,
        })
    }

    /// One connection: connect, subscribe, stream until it ends, noting its `signs`.
    async fn session(
        &mut self,
        ctx: &FeedContext,
        status: &FeedStatus,
        signs: &mut Signs,
    ) -> Result<Ended, FeedError> {
        let connect = tokio::time::timeout(
            self.idle_timeout,
            tokio_tungstenite::connect_async_tls_with_config(
                self.url.as_str(),
                Some(self.ws_config),
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
        status.set_refused(None);
        tracing::info!(feed = %self.name, url = %self.log_url, "upstream connected");
        if let Err(e) = ws.send(Message::text(self.subscribe.clone())).await {
            return Ok(Ended::Lost(UpstreamError::Subscribe(Box::new(e))));
        }
        tracing::debug!(feed = %self.name, message = %self.subscribe, "subscribed");
        if let Some(depth) = &mut self.depth {
            for msg in depth.connected() {
                if let Err(e) = ws.send(Message::text(msg.clone())).await {
                    return Ok(Ended::Lost(UpstreamError::Subscribe(Box::new(e))));
                }
                tracing::debug!(feed = %self.name, message = %msg, "subscribed to depth");
            }
        }
        let mut deadline = Instant::now() + self.idle_timeout;
        let ping_every = self
            .ping
            .as_ref()
            .map_or(Duration::MAX, |(_, every)| *every);
        let mut next_ping = Instant::now().checked_add(ping_every);
        let mut batch: Vec<RawTick> = Vec::new();
        loop {
            let lives = signs.lives;
            let ping_at = next_ping.unwrap_or(deadline);
            let next = tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => {
                    let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
                    return Ok(Ended::Shutdown);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Ok(Ended::Lost(UpstreamError::Idle(self.idle_timeout)));
                }
                _ = tokio::time::sleep_until(ping_at), if next_ping.is_some() => {
                    next_ping = Instant::now().checked_add(ping_every);
                    if let Some((text, _)) = &self.ping
                        && let Err(e) = ws.send(Message::text(text.clone())).await
                    {
                        return Ok(Ended::Lost(UpstreamError::Ping(Box::new(e))));
                    }
                    continue;
                }
                r = ws.next() => r,
            };
            let mut end = match next {
                None => Some(UpstreamError::Closed),
                Some(Err(e)) => Some(UpstreamError::Read(Box::new(e))),
                Some(Ok(msg)) => self.handle(msg, &mut batch, ctx, status, signs),
            };
            // Drain what is already buffered into the same batch, without waiting.
            while end.is_none() && batch.len() < BATCH_MAX {
                match ws.next().now_or_never() {
                    None => break,
                    Some(None) => end = Some(UpstreamError::Closed),
                    Some(Some(Err(e))) => end = Some(UpstreamError::Read(Box::new(e))),
                    Some(Some(Ok(msg))) => end = self.handle(msg, &mut batch, ctx, status, signs),
                }
            }
            // Only a trade or a heartbeat in this round pushes the idle deadline back.
            if signs.lives > lives {
                deadline = Instant::now() + self.idle_timeout;
            }
            if !batch.is_empty() {
                let n = batch.len() as u64;
                signs.trades += n;
                status.trades_accepted(n);
                if !super::send_batch(ctx, std::mem::take(&mut batch)).await? {
                    return Ok(Ended::Shutdown);
                }
            }
            if let Some(depth) = &mut self.depth {
                for msg in depth.resubscribes() {
                    tracing::debug!(feed = %self.name, message = %msg, "resubscribing to depth");
                    if let Err(e) = ws.send(Message::text(msg)).await {
                        return Ok(Ended::Lost(UpstreamError::Subscribe(Box::new(e))));
                    }
                }
                // A venue that never answers a resubscribe: resync by reconnecting.
                if end.is_none() {
                    end = depth.overdue(self.idle_timeout);
                }
                if let Some(books) = depth.take_batch() {
                    status
                        .book_updates
                        .fetch_add(books.len() as u64, Ordering::Relaxed);
                    tokio::select! {
                        _ = ctx.shutdown.cancelled() => return Ok(Ended::Shutdown),
                        r = ctx.ingest.send_books(depth.source(), books) => r?,
                    }
                }
            }
            if let Some(e) = end {
                return Ok(Ended::Lost(e));
            }
        }
    }

    /// Maps one message into `batch`; `Some` when the message ends the connection. Counts a
    /// trade or a heartbeat in `signs.lives`.
    fn handle(
        &mut self,
        msg: Message,
        batch: &mut Vec<RawTick>,
        ctx: &FeedContext,
        status: &FeedStatus,
        signs: &mut Signs,
    ) -> Option<UpstreamError> {
        let bytes: &[u8] = match &msg {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
            Message::Close(_) => return Some(UpstreamError::Closed),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return None,
        };
        status.messages.fetch_add(1, Ordering::Relaxed);
        if let Some(depth) = &mut self.depth {
            match depth.offer(bytes, &self.name, self.parser.mapping(), status, signs) {
                Ok(Offered::NotDepth) => {}
                Ok(Offered::Depth) => return None,
                Ok(Offered::Reconnect(end)) => return Some(end),
                Err(error) => {
                    self.bad_message(&error, bytes, ctx, status);
                    return None;
                }
            }
        }
        match self.parser.parse(bytes, batch) {
            Ok(Parsed::Trades { count, rejected }) => {
                signs.lives += u64::from(count > 0);
                for error in rejected {
                    self.rejected(&error, bytes, ctx, status);
                }
            }
            Ok(Parsed::Heartbeat) => {
                signs.lives += 1;
                ctx.metrics.feed_ignored.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Parsed::SubscribeError { message }) => {
                signs.refused = true;
                UpstreamSubscriptionRefused {
                    feed: &self.name,
                    reason: &message,
                }
                .emit(&ctx.metrics, status);
            }
            Ok(Parsed::Ignored { kind }) => {
                ctx.metrics.feed_ignored.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(feed = %self.name, kind, "message ignored");
            }
            Err(error) => self.rejected(&error, bytes, ctx, status),
        }
        None
    }

    /// A message or trade that could not be used: counted and logged (dropped symbols only
    /// at debug: they are a configuration choice, not a fault).
    fn rejected(&self, error: &MessageError, bytes: &[u8], ctx: &FeedContext, status: &FeedStatus) {
        if error.is_not_subscribed() {
            status.unsubscribed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(feed = %self.name, %error, "trade dropped");
            return;
        }
        self.bad_message(error, bytes, ctx, status);
    }

    /// A message that could not be used (a trade's, or a depth message on which no book's
    /// sync depends): counted and logged with its start.
    fn bad_message(
        &self,
        error: &dyn std::fmt::Display,
        bytes: &[u8],
        ctx: &FeedContext,
        status: &FeedStatus,
    ) {
        ctx.metrics.feed_errors.fetch_add(1, Ordering::Relaxed);
        status.errors.fetch_add(1, Ordering::Relaxed);
        let shown = &bytes[..bytes.len().min(256)];
        tracing::warn!(
            feed = %self.name,
            %error,
            message = %String::from_utf8_lossy(shown),
            "bad message skipped"
        );
    }
}

impl Feed for UpstreamFeed {
    fn name(&self) -> &'static str {
        "upstream"
    }

    fn run(mut self: Box<Self>, ctx: FeedContext) -> BoxFuture<'static, Result<(), FeedError>> {
        Box::pin(async move {
            let status = ctx.metrics.upstreams.register(&self.name);
            tracing::info!(feed = %self.name, url = %self.log_url, "upstream feed started");
            let mut first = true;
            loop {
                if !first {
                    ctx.metrics
                        .upstream_reconnects
                        .fetch_add(1, Ordering::Relaxed);
                    status.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                first = false;
                let mut signs = Signs::default();
                let started = Instant::now();
                let error = match self.session(&ctx, &status, &mut signs).await? {
                    Ended::Shutdown => return Ok(()),
                    Ended::Lost(e) => e,
                };
                status.errors.fetch_add(1, Ordering::Relaxed);
                if was_healthy(started.elapsed(), self.healthy_after, signs) {
                    self.backoff.reset();
                }
                let delay = self.backoff.next_delay();
                tracing::warn!(
                    feed = %self.name,
                    url = %self.log_url,
                    %error,
                    delivered = signs.trades,
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
mod tests;
