//! One WebSocket connection: one task, one loop that reads ops and drains the outbox.
//!
//! The loop is the only code that writes to the socket; the op handlers (`ops.rs`) and the hub
//! only push into the [`Outbox`]. Generic over any `Sink + Stream` of tungstenite messages, so it
//! is testable without a network (`session/tests.rs`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::WsContext;
use super::books::BookSubs;
use super::limits::{OpLimiter, Verdict};
use super::ops::Ops;
use crate::auth::{Principal, UserSlot};
use crate::config_section::ms;
use crate::model::{Encoding, Kind};
use crate::protocol::{self, ErrorCode};
use crate::rooms::{ConnId, Item, Outbox, OutboxLimits};
use crate::telemetry::events::{ConnectionClosed, ConnectionOpened, SlowConsumerClosed};

/// Why and how the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Close {
    /// `None`: the peer is gone, no close frame can be sent.
    code: Option<CloseCode>,
    reason: &'static str,
}

impl Close {
    const GONE: Close = Close {
        code: None,
        reason: "",
    };
    fn with(code: CloseCode, reason: &'static str) -> Close {
        Close {
            code: Some(code),
            reason,
        }
    }
}

/// One connection's identity and state, seen by its op handlers and its write loop.
struct Conn {
    id: ConnId,
    outbox: Arc<Outbox>,
    close: Mutex<Option<Close>>,
    /// Milliseconds since `started` at which the peer last sent anything.
    last_seen_ms: AtomicU64,
    /// On tokio's clock, so tests on a paused clock see silence without waiting for it.
    started: tokio::time::Instant,
    /// When the connection's token expires (seconds since the Unix epoch; 0: no token). An
    /// `auth` op with a fresh token moves it.
    expires_s: AtomicU64,
}

impl Conn {
    /// Records the first reason to close; wakes the writer.
    fn request_close(&self, c: Close) {
        let mut slot = self.close.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(c);
        drop(slot);
        self.outbox.close();
    }

    fn close_reason(&self) -> Option<Close> {
        *self.close.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn seen(&self) {
        let t = self.started.elapsed().as_millis() as u64;
        self.last_seen_ms.store(t, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// Serves one upgraded socket until it closes.
#[tracing::instrument(name = "ws", skip_all, fields(conn))]
pub(crate) async fn run<S>(
    socket: S,
    ctx: Arc<WsContext>,
    encoding: Encoding,
    authenticated: Option<(Principal, UserSlot)>,
) where
    S: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin + Send,
{
    let cfg = &ctx.config;
    let conn = Conn {
        id: ctx.channels.hub.next_conn_id(),
        outbox: Arc::new(Outbox::new(OutboxLimits {
            max_events: cfg.outbox_max_events,
            max_bytes: cfg.outbox_max_bytes,
            max_held_bytes: cfg.snapshot_max_bytes,
        })),
        close: Mutex::new(None),
        last_seen_ms: AtomicU64::new(0),
        started: tokio::time::Instant::now(),
        expires_s: AtomicU64::new(match &authenticated {
            Some((p, _)) => p.expires_s,
            // Without anonymous access, an unauthenticated connection has until this to `auth`.
            None if !ctx.auth.anonymous => {
                (unix_now() + Duration::from_secs(ctx.auth.auth_timeout_s)).as_secs()
            }
            None => 0,
        }),
    };
    tracing::Span::current().record("conn", conn.id.0);
    ConnectionOpened.emit(&ctx.metrics);

    let mut socket = socket;
    let (principal, slot) = authenticated.unzip();
    let ops_limit = principal.as_ref().and_then(|p| p.limits.ops_per_second);
    let mut reader = Reader {
        limiter: op_limiter(cfg, ops_limit),
        ops_limit,
        conn: &conn,
        ops: Ops {
            conn: conn.id,
            outbox: &conn.outbox,
            channels: &ctx.channels,
            auth: &ctx.auth,
            config: &ctx.config,
            metrics: &ctx.metrics,
            encoding,
            principal,
            slot,
            expires_s: &conn.expires_s,
            portfolio: None,
            books: BookSubs::new(encoding, ctx.channels.book_depth),
        },
    };
    let close = serve(&mut socket, &conn, &ctx, &mut reader).await;
    linger_close(&mut socket, close, ms(cfg.close_grace_ms)).await;

    ctx.channels.hub.disconnect(conn.id);
    let stats = conn.outbox.stats();
    ConnectionClosed {
        conflated: stats.conflated,
        dropped: stats.dropped,
        close: conn.close_reason(),
    }
    .emit(&ctx.metrics);
}

// --- writer -------------------------------------------------------------------------------

/// The connection's one loop: reads ops and writes what the outbox holds. Reading and writing
/// share the socket without a lock (no split halves): a read is only ever in flight while the
/// loop waits, and a write happens between reads.
async fn serve<S>(sink: &mut S, conn: &Conn, ctx: &WsContext, reader: &mut Reader<'_>) -> Close
where
    S: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin,
{
    let cfg = &ctx.config;
    let slow = ms(cfg.slow_consumer_timeout_ms);
    let mut items: VecDeque<Item> = VecDeque::new();
    let mut next_due: Option<Instant> = None;
    let window = Duration::from_micros(cfg.batch_window_us);
    // Set after a write: queued events wait for the window to pass (adaptive batching).
    let mut hold_until: Option<tokio::time::Instant> = None;
    // Woken inside the window: the drain waits for the window's end. A timer is armed only then,
    // not after every write.
    let mut held = false;
    let mut ping = tokio::time::interval(ms(cfg.ping_interval_ms));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    // The drain's notice goes out once, queued behind what is already waiting.
    let mut told_to_move = false;
    loop {
        let throttle = async {
            match next_due {
                Some(d) => sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = sink.next() => {
                if let Some(close) = reader.on_message(msg).await {
                    conn.request_close(close);
                }
            }
            _ = ctx.shutdown.cancelled() => {
                conn.request_close(Close::with(CloseCode::Away, "server shutting down"));
            }
            _ = ctx.drain.begun(), if !told_to_move => {
                told_to_move = true;
                let after = ctx.drain.reconnect_after_ms();
                conn.outbox
                    .push_control(protocol::encode_draining_notice(reader.ops.encoding, after));
            }
            _ = ctx.drain.closing() => {
                conn.request_close(Close::with(CloseCode::Away, "server draining"));
            }
            _ = conn.outbox.notified(), if !held => {
                if hold_until.is_some_and(|h| h > tokio::time::Instant::now()) {
                    held = true;
                    continue;
                }
            }
            _ = async {
                match hold_until {
                    Some(h) if held => sleep_until(h).await,
                    _ => std::future::pending().await,
                }
            } => {}
            _ = throttle => {}
            _ = token_expiry(&conn.expires_s) => {
                // Checked again: an `auth` op may have moved the expiry meanwhile.
                if token_expired(&conn.expires_s) {
                    let reason = match reader.ops.principal {
                        Some(_) => "token expired",
                        None => "authentication required",
                    };
                    conn.request_close(Close::with(TOKEN_EXPIRED, reason));
                }
            }
            _ = ping.tick() => {
                if conn.silent_for() > ms(cfg.pong_timeout_ms) {
                    conn.request_close(Close::with(CloseCode::Policy, "pong timeout"));
                } else if send_timed(sink, Message::Ping(Bytes::new()), slow).await.is_err() {
                    return evict(conn, ctx);
                }
            }
        }
        held = false;
        let now = Instant::now();
        let drain = conn.outbox.drain(now, &mut items);
        next_due = drain.next_due;
        if let Some(close) = conn.close_reason() {
            // What is already queued (events before a shutdown, the errors that led to a
            // policy close) still goes out first.
            if close.code.is_some() {
                let _ = send_items(sink, &mut items, ctx, &mut reader.ops.books, now + slow).await;
            }
            return close;
        }
        if drain
            .behind_since
            .is_some_and(|t| now.duration_since(t) >= slow)
        {
            return evict(conn, ctx);
        }
        // One deadline for the whole drain, not one per frame: a peer that takes a frame now
        // and then cannot keep a backlog pinned for longer than the slow-consumer timeout.
        let wrote = !items.is_empty();
        if send_items(sink, &mut items, ctx, &mut reader.ops.books, now + slow)
            .await
            .is_err()
        {
            return evict(conn, ctx);
        }
        if let Some(queued) = drain.oldest_queued {
            ctx.metrics
                .ws_delivery_seconds
                .observe(Instant::now().saturating_duration_since(queued));
        }
        hold_until = (wrote && !window.is_zero()).then(|| tokio::time::Instant::now() + window);
        // The drain swaps this deque with the outbox's queue, so both keep the capacity of the
        // largest burst; give a burst's memory back instead of holding it per socket.
        if items.capacity() > KEEP_ITEMS_CAPACITY {
            items.shrink_to(KEEP_ITEMS_CAPACITY / 4);
        }
    }
}

/// The close code of a connection whose token expired, or that did not authenticate in time
/// when anonymous access is off (an application code: 4000-4999).
const TOKEN_EXPIRED: CloseCode = CloseCode::Library(4001);

fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn token_expired(expires_s: &AtomicU64) -> bool {
    let exp = expires_s.load(Ordering::Relaxed);
    exp != 0 && unix_now() >= Duration::from_secs(exp)
}

/// Completes when the connection's token expires (never without one).
async fn token_expiry(expires_s: &AtomicU64) {
    match expires_s.load(Ordering::Relaxed) {
        0 => std::future::pending().await,
        exp => {
            let left = Duration::from_secs(exp).saturating_sub(unix_now());
            tokio::time::sleep(left).await
        }
    }
}

/// Queued items a connection keeps room for between bursts (24 bytes each).
const KEEP_ITEMS_CAPACITY: usize = 256;

/// The write did not complete in time or failed.
struct WriteStalled;

/// Sends the drained items as frames of at most `batch_max_bytes` (a lone larger item goes
/// alone), each an object or a JSON array of objects (or a MessagePack array), all by
/// `deadline`. Snapshots are encoded here, outside every lock, one at a time as they go out. A
/// lone shared batch (a wildcard subscriber that keeps up) goes out as the frame its first
/// writer of this encoding built for everyone; among other items it goes as its events.
async fn send_items<K>(
    sink: &mut K,
    items: &mut VecDeque<Item>,
    ctx: &WsContext,
    books: &mut BookSubs,
    deadline: Instant,
) -> Result<(), WriteStalled>
where
    K: Sink<Message, Error = WsError> + Unpin,
{
    let max = ctx.config.batch_max_bytes;
    let encoding = books.encoding;
    if items.len() == 1
        && let Some(Item::Batch(batch)) = items.front()
        && batch.bytes + batch.events.len() < max
        // Book events go through this connection's book state, one by one.
        && batch.events.first().is_none_or(|(ch, _)| ch.kind != Kind::Book)
    {
        let frame = batch
            .frame(encoding, |events| {
                let total = events.iter().map(|(_, w)| w.get(encoding).len() + 1).sum();
                protocol::encode_frame(encoding, events.iter().map(|(_, w)| w.get(encoding)), total)
            })
            .clone();
        let n = batch.events.len();
        items.clear();
        return send_frame(sink, frame, n, ctx, encoding, deadline).await;
    }
    let mut parts: Vec<Bytes> = Vec::new();
    while !items.is_empty() {
        parts.clear();
        let mut len = 0;
        while let Some(item) = items.pop_front() {
            let bytes = match item {
                Item::Control(b) => *b,
                Item::Event { channel, wire } | Item::Replay { channel, wire }
                    if channel.kind == Kind::Book =>
                {
                    match books.event(channel, &wire, &ctx.channels.hub) {
                        Some(b) => b,
                        None => continue,
                    }
                }
                Item::Replay { wire: w, .. } | Item::Event { wire: w, .. } => {
                    w.get(encoding).clone()
                }
                Item::Snapshot(s) if s.channel.kind == Kind::Book => {
                    let name = ctx.channels.symbols.channel_name(s.channel);
                    books.snapshot(&s, &name)
                }
                Item::Snapshot(s) => {
                    let name = ctx.channels.symbols.channel_name(s.channel);
                    protocol::encode_snapshot(encoding, &name, s.seq, &s.events, s.reset)
                }
                Item::ReplayDone(d) => {
                    let name = ctx.channels.symbols.channel_name(d.channel);
                    protocol::encode_replay_done(encoding, &name, d.seq, d.more)
                }
                Item::Batch(batch) => {
                    for (channel, wire) in batch.events.iter().rev() {
                        items.push_front(Item::Event {
                            channel: *channel,
                            wire: wire.clone(),
                        });
                    }
                    continue;
                }
            };
            let l = bytes.len() + 1;
            if !parts.is_empty() && len + l > max {
                items.push_front(Item::Control(Box::new(bytes)));
                break;
            }
            len += l;
            parts.push(bytes);
        }
        if parts.is_empty() {
            break;
        }
        let frame = protocol::encode_frame(encoding, parts.iter(), len);
        send_frame(sink, frame, parts.len(), ctx, encoding, deadline).await?;
    }
    Ok(())
}

/// Writes one frame of `events` events (or replies) by `deadline`: a text frame in JSON, a
/// binary frame in MessagePack.
async fn send_frame<K>(
    sink: &mut K,
    frame: Bytes,
    events: usize,
    ctx: &WsContext,
    encoding: Encoding,
    deadline: Instant,
) -> Result<(), WriteStalled>
where
    K: Sink<Message, Error = WsError> + Unpin,
{
    let msg = match encoding {
        Encoding::Json => Message::Text(Utf8Bytes::try_from(frame).map_err(|_| WriteStalled)?),
        Encoding::Msgpack => Message::Binary(frame),
    };
    match tokio::time::timeout_at(deadline.into(), sink.send(msg)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => return Err(WriteStalled),
    }
    ctx.metrics.frames_sent.fetch_add(1, Ordering::Relaxed);
    ctx.metrics
        .events_sent
        .fetch_add(events as u64, Ordering::Relaxed);
    Ok(())
}

async fn send_timed<K>(sink: &mut K, msg: Message, limit: Duration) -> Result<(), WriteStalled>
where
    K: Sink<Message, Error = WsError> + Unpin,
{
    match timeout(limit, sink.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(WriteStalled),
    }
}

/// A consumer that stayed behind: closed with 1013 (by [`linger_close`]).
fn evict(conn: &Conn, ctx: &WsContext) -> Close {
    SlowConsumerClosed { conn: conn.id.0 }.emit(&ctx.metrics);
    let close = Close::with(CloseCode::Again, "slow consumer");
    conn.request_close(close);
    close
}

/// Ends the connection within `linger`: the frame in flight is finished (a write that timed out
/// leaves the rest of its frame in the socket's buffer, and a close frame can only follow a
/// whole frame), then the close frame goes out, then the peer's answer is awaited. Reads go on
/// meanwhile (a peer that reads again and answers the close ends it at once). A peer that never
/// reads holds the socket for `linger` at most; one that reads again within it gets what was in
/// flight, then the close frame.
async fn linger_close<S>(socket: &mut S, close: Close, linger: Duration)
where
    S: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin,
{
    let Some(code) = close.code else { return };
    let mut frame = Some(Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(close.reason),
    })));
    let ends = std::future::poll_fn(|cx| {
        // Bounded work per wake-up, so a peer that floods frames cannot keep this from
        // yielding (and the linger's timer from firing).
        for _ in 0..64 {
            let mut progress = false;
            if let Some(f) = frame.take() {
                // Ready once the frame in flight is out; then the close frame is queued.
                match Pin::new(&mut *socket).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if Pin::new(&mut *socket).start_send(f).is_err() {
                            return Poll::Ready(());
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => frame = Some(f),
                }
            }
            if frame.is_none() {
                // Once sent (or failed: nothing more can go out), only the peer's answer is
                // awaited.
                let _ = Pin::new(&mut *socket).poll_flush(cx);
            }
            match Pin::new(&mut *socket).poll_next(cx) {
                Poll::Ready(None | Some(Err(_))) => return Poll::Ready(()),
                Poll::Ready(Some(Ok(_))) => progress = true,
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    });
    let _ = timeout(linger, ends).await;
}

// --- reader -------------------------------------------------------------------------------

/// The op limiter of a connection: the server's, or its token's `limits.ops_per_second` (with a
/// burst of twice that).
fn op_limiter(cfg: &super::WsConfig, token_limit: Option<u32>) -> OpLimiter {
    match token_limit {
        Some(n) => OpLimiter::new(n, n.saturating_mul(2), cfg.abuse_threshold),
        None => OpLimiter::new(cfg.ops_per_second, cfg.ops_burst, cfg.abuse_threshold),
    }
}

/// The inbound half: the op rate limit and the op handlers.
struct Reader<'a> {
    limiter: OpLimiter,
    /// The token limit `limiter` was built for; an `auth` op may change it.
    ops_limit: Option<u32>,
    conn: &'a Conn,
    ops: Ops<'a>,
}

impl Reader<'_> {
    /// Handles one inbound message; `Some` when the connection must close.
    async fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> Option<Close> {
        let Some(msg) = msg else {
            return Some(Close::GONE);
        };
        let (config, metrics) = (self.ops.config, self.ops.metrics);
        self.conn.seen();
        let is_binary = matches!(msg, Ok(Message::Binary(_)));
        let ops = &mut self.ops;
        // Every frame the peer chooses to send costs one op, so binary and ping floods are
        // floods too; only the close handshake and raw frames are free.
        let text = match msg {
            Ok(Message::Text(t)) => Some(t),
            Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_)) => None,
            Ok(Message::Close(_)) => return Some(Close::GONE),
            Ok(Message::Frame(_)) => return None,
            Err(WsError::Capacity(_)) => {
                return Some(Close::with(CloseCode::Size, "frame too large"));
            }
            Err(WsError::Protocol(_) | WsError::Utf8(_)) => {
                return Some(Close::with(CloseCode::Protocol, "protocol error"));
            }
            Err(_) => return Some(Close::GONE),
        };
        match (self.limiter.check(), text) {
            (Verdict::Allow, Some(text)) => {
                ops.handle(&text).await;
                let limit = ops.principal.as_ref().and_then(|p| p.limits.ops_per_second);
                if limit != self.ops_limit {
                    self.ops_limit = limit;
                    self.limiter = op_limiter(config, limit);
                }
            }
            (Verdict::Allow, None) => {
                if is_binary {
                    ops.error(
                        None,
                        ErrorCode::BadRequest,
                        "binary frames are not supported; send JSON text",
                    );
                }
            }
            (Verdict::Limited, text) => {
                metrics.rate_limited_ops.fetch_add(1, Ordering::Relaxed);
                // A limited control frame gets no answer: answering would feed the flood.
                if text.is_some() || is_binary {
                    let id = text
                        .and_then(|t| protocol::parse_op(&t).ok())
                        .and_then(|op| op.id());
                    ops.error(id, ErrorCode::RateLimited, "too many ops; slow down");
                }
            }
            (Verdict::Abuse, _) => {
                metrics.rate_limited_ops.fetch_add(1, Ordering::Relaxed);
                return Some(Close::with(CloseCode::Policy, "op rate limit exceeded"));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
