//! One WebSocket connection: one task, one loop that reads ops and drains the outbox.
//!
//! The loop is the only code that writes to the socket; op handlers and the hub only push into
//! the [`Outbox`]. Generic over any `Sink + Stream` of tungstenite messages, so it is testable
//! without a network.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::WsContext;
use super::limits::{OpLimiter, Verdict};
use crate::config_section::ms;
use crate::model::{ChannelId, now_ns};
use crate::protocol::{self, ChannelName, ClientOp, ErrorCode};
use crate::rooms::{ConnId, Hub, Item, Outbox, OutboxLimits, Subscribe, Target};
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
    started: Instant,
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
pub async fn run<S>(socket: S, ctx: Arc<WsContext>)
where
    S: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin + Send,
{
    let cfg = &ctx.config;
    let conn = Conn {
        id: ctx.hub.next_conn_id(),
        outbox: Arc::new(Outbox::new(OutboxLimits {
            max_events: cfg.outbox_max_events,
            max_bytes: cfg.outbox_max_bytes,
        })),
        close: Mutex::new(None),
        last_seen_ms: AtomicU64::new(0),
        started: Instant::now(),
    };
    tracing::Span::current().record("conn", conn.id.0);
    ConnectionOpened.emit(&ctx.metrics);

    let mut socket = socket;
    let mut reader = Reader {
        limiter: OpLimiter::new(cfg.ops_per_second, cfg.ops_burst, cfg.abuse_threshold),
        ops: Ops {
            conn: &conn,
            ctx: &ctx,
        },
    };
    serve(&mut socket, &conn, &ctx, &mut reader).await;
    // The close frame went out (or the peer is gone): give the peer a moment to answer it so
    // the TCP connection ends cleanly, then drop it.
    let _ = timeout(ms(cfg.close_grace_ms), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;

    ctx.hub.disconnect(conn.id);
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
async fn serve<S>(sink: &mut S, conn: &Conn, ctx: &WsContext, reader: &mut Reader<'_>)
where
    S: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin,
{
    let cfg = &ctx.config;
    let slow = ms(cfg.slow_consumer_timeout_ms);
    let mut items: VecDeque<Item> = VecDeque::new();
    let mut next_due: Option<Instant> = None;
    let mut ping = tokio::time::interval(ms(cfg.ping_interval_ms));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        let throttle = async {
            match next_due {
                Some(d) => sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = sink.next() => {
                if let Some(close) = reader.on_message(msg) {
                    conn.request_close(close);
                }
            }
            _ = ctx.shutdown.cancelled() => {
                conn.request_close(Close::with(CloseCode::Away, "server shutting down"));
            }
            _ = conn.outbox.notified() => {}
            _ = throttle => {}
            _ = ping.tick() => {
                if conn.silent_for() > ms(cfg.pong_timeout_ms) {
                    conn.request_close(Close::with(CloseCode::Policy, "pong timeout"));
                } else if send_timed(sink, Message::Ping(Bytes::new()), slow).await.is_err() {
                    return evict(sink, conn, ctx).await;
                }
            }
        }
        let now = Instant::now();
        let drain = conn.outbox.drain(now, &mut items);
        next_due = drain.next_due;
        if let Some(close) = conn.close_reason() {
            // What is already queued (events before a shutdown, the errors that led to a
            // policy close) still goes out first.
            if close.code.is_some() {
                let _ = send_items(sink, &mut items, ctx, slow).await;
            }
            return send_close(sink, close, ctx).await;
        }
        if drain
            .behind_since
            .is_some_and(|t| now.duration_since(t) >= slow)
        {
            return evict(sink, conn, ctx).await;
        }
        if send_items(sink, &mut items, ctx, slow).await.is_err() {
            return evict(sink, conn, ctx).await;
        }
    }
}

/// The write did not complete in time or failed.
struct WriteStalled;

/// Sends the drained items as frames of at most `batch_max_bytes` (a lone larger item goes
/// alone), each an object or a JSON array of objects.
async fn send_items<K>(
    sink: &mut K,
    items: &mut VecDeque<Item>,
    ctx: &WsContext,
    limit: Duration,
) -> Result<(), WriteStalled>
where
    K: Sink<Message, Error = WsError> + Unpin,
{
    let max = ctx.config.batch_max_bytes;
    while !items.is_empty() {
        let mut n = 0;
        let mut len = 0;
        for item in items.iter() {
            let l = item.bytes().len() + 1;
            if n > 0 && len + l > max {
                break;
            }
            n += 1;
            len += l;
        }
        let frame = protocol::join_frame(items.range(..n).map(Item::bytes), len);
        items.drain(..n);
        let text = Utf8Bytes::try_from(frame).map_err(|_| WriteStalled)?;
        send_timed(sink, Message::Text(text), limit).await?;
        ctx.metrics.frames_sent.fetch_add(1, Ordering::Relaxed);
        ctx.metrics
            .events_sent
            .fetch_add(n as u64, Ordering::Relaxed);
    }
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

/// Closes a consumer that stayed behind with 1013.
async fn evict<K>(sink: &mut K, conn: &Conn, ctx: &WsContext)
where
    K: Sink<Message, Error = WsError> + Unpin,
{
    SlowConsumerClosed { conn: conn.id.0 }.emit(&ctx.metrics);
    let close = Close::with(CloseCode::Again, "slow consumer");
    conn.request_close(close);
    send_close(sink, close, ctx).await;
}

async fn send_close<K>(sink: &mut K, close: Close, ctx: &WsContext)
where
    K: Sink<Message, Error = WsError> + Unpin,
{
    let Some(code) = close.code else { return };
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(close.reason),
    };
    let grace = ms(ctx.config.close_grace_ms);
    let _ = timeout(grace, sink.send(Message::Close(Some(frame)))).await;
}

// --- reader -------------------------------------------------------------------------------

/// The inbound half: the op rate limit and the op handlers.
struct Reader<'a> {
    limiter: OpLimiter,
    ops: Ops<'a>,
}

impl Reader<'_> {
    /// Handles one inbound message; `Some` when the connection must close.
    fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> Option<Close> {
        let Some(msg) = msg else {
            return Some(Close::GONE);
        };
        let ctx = self.ops.ctx;
        let ops = &mut self.ops;
        ops.conn.seen();
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(_)) => {
                ops.error(
                    None,
                    ErrorCode::BadRequest,
                    "binary frames are not supported; send JSON text",
                );
                return None;
            }
            Ok(Message::Close(_)) => return Some(Close::GONE),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => return None,
            Err(WsError::Capacity(_)) => {
                return Some(Close::with(CloseCode::Size, "frame too large"));
            }
            Err(WsError::Protocol(_) | WsError::Utf8(_)) => {
                return Some(Close::with(CloseCode::Protocol, "protocol error"));
            }
            Err(_) => return Some(Close::GONE),
        };
        match self.limiter.check() {
            Verdict::Allow => ops.handle(&text),
            Verdict::Limited => {
                ctx.metrics.rate_limited_ops.fetch_add(1, Ordering::Relaxed);
                let id = protocol::parse_op(&text).ok().and_then(|op| op_id(&op));
                ops.error(id, ErrorCode::RateLimited, "too many ops; slow down");
            }
            Verdict::Abuse => {
                ctx.metrics.rate_limited_ops.fetch_add(1, Ordering::Relaxed);
                return Some(Close::with(CloseCode::Policy, "op rate limit exceeded"));
            }
        }
        None
    }
}

fn op_id(op: &ClientOp) -> Option<i64> {
    match op {
        ClientOp::Subscribe { id, .. }
        | ClientOp::Unsubscribe { id, .. }
        | ClientOp::Ping { id }
        | ClientOp::List { id } => *id,
    }
}

/// The op handlers of one connection.
struct Ops<'a> {
    conn: &'a Conn,
    ctx: &'a WsContext,
}

impl Ops<'_> {
    fn hub(&self) -> &Hub {
        &self.ctx.hub
    }

    fn reply(&self, bytes: Bytes) {
        self.conn.outbox.push_control(bytes);
    }

    fn error(&self, id: Option<i64>, code: ErrorCode, message: &str) {
        self.reply(protocol::encode_error(id, code, message));
    }

    fn handle(&mut self, text: &str) {
        let op = match protocol::parse_op(text) {
            Ok(op) => op,
            Err(bad) => return self.error(bad.id, ErrorCode::BadRequest, &bad.message),
        };
        match op {
            ClientOp::Subscribe {
                id,
                channels,
                from,
                throttle_ms,
                snapshot,
                epoch,
            } => {
                let stale = epoch.is_some_and(|e| e != self.ctx.epoch);
                let from = from.unwrap_or_default();
                self.subscribe(id, &channels, from, throttle_ms, snapshot, stale)
            }
            ClientOp::Unsubscribe { id, channels } => self.unsubscribe(id, &channels),
            ClientOp::Ping { id } => self.reply(protocol::encode_pong(id, now_ns())),
            ClientOp::List { id } => {
                let all = self.ctx.symbols.all();
                let names: Vec<&str> = all.iter().map(|(_, n)| &**n).collect();
                self.reply(protocol::encode_list(id, &names));
            }
        }
    }

    /// Resolves a channel name to a target, or says why not.
    fn resolve(&self, name: &str) -> Result<Target, (ErrorCode, String)> {
        match protocol::parse_channel(name) {
            Ok(ChannelName::Wildcard(kind)) => Ok(Target::Wildcard(kind)),
            Ok(ChannelName::Concrete(kind, sym)) => match self.ctx.symbols.get(sym) {
                Some(symbol) => Ok(Target::Channel(ChannelId { kind, symbol })),
                None => Err((ErrorCode::UnknownChannel, format!("no such symbol: {sym}"))),
            },
            Err(e) => Err((e.code, e.message)),
        }
    }

    fn subscribe(
        &mut self,
        id: Option<i64>,
        channels: &[String],
        from: HashMap<String, u64>,
        throttle_ms: Option<u64>,
        snapshot: Option<usize>,
        stale_from: bool,
    ) {
        let cfg = &self.ctx.config;
        let ring_capacity = self.ctx.ring_capacity;
        if channels.is_empty() {
            return self.error(id, ErrorCode::BadRequest, "`channels` must not be empty");
        }
        if let Some(t) = throttle_ms.filter(|t| *t > cfg.max_throttle_ms) {
            let msg = format!(
                "throttle_ms {t} exceeds the maximum of {}",
                cfg.max_throttle_ms
            );
            return self.error(id, ErrorCode::BadRequest, &msg);
        }
        if let Some(n) = snapshot.filter(|n| *n > ring_capacity) {
            let msg = format!("snapshot depth {n} exceeds the ring capacity of {ring_capacity}");
            return self.error(id, ErrorCode::BadRequest, &msg);
        }
        let mut targets = Vec::new();
        let mut accepted = Vec::new();
        for name in channels {
            match self.resolve(name) {
                Ok(t) if targets.contains(&t) => {}
                Ok(t) => {
                    targets.push(t);
                    accepted.push(name.clone());
                }
                Err((code, msg)) => self.error(id, code, &msg),
            }
        }
        // A resume point that cannot be honoured refuses the whole op: subscribing without it
        // would silently skip or repeat events.
        let mut resume = HashMap::new();
        let mut bad_from = false;
        for (name, seq) in from {
            match self.resolve(&name) {
                Ok(Target::Channel(ch))
                    if targets.contains(&Target::Channel(ch))
                        || targets.contains(&Target::Wildcard(ch.kind)) =>
                {
                    resume.insert(ch, seq);
                }
                Ok(Target::Channel(_)) => {
                    bad_from = true;
                    let msg = format!("`from` names {name}, which this subscribe does not cover");
                    self.error(id, ErrorCode::BadRequest, &msg);
                }
                Ok(Target::Wildcard(_)) => {
                    bad_from = true;
                    let msg = format!("`from` keys are concrete channels, not {name}");
                    self.error(id, ErrorCode::BadRequest, &msg);
                }
                Err((code, msg)) => {
                    bad_from = true;
                    self.error(id, code, &msg);
                }
            }
        }
        if targets.is_empty() || bad_from {
            return;
        }
        let would_hold = self.hub().count_after(self.conn.id, &targets);
        if would_hold > cfg.max_subscriptions {
            let msg = format!(
                "this subscribe would hold {would_hold} subscriptions; the limit is {}",
                cfg.max_subscriptions
            );
            return self.error(id, ErrorCode::TooManySubscriptions, &msg);
        }
        self.reply(protocol::encode_ack(
            id,
            "subscribe",
            &accepted,
            self.ctx.epoch,
        ));
        let req = Subscribe {
            targets,
            from: resume,
            throttle: throttle_ms.filter(|t| *t > 0).map(Duration::from_millis),
            snapshot,
            stale_from,
        };
        let symbols = &self.ctx.symbols;
        let encode = |v: &crate::rooms::SnapshotView<'_>| {
            protocol::encode_snapshot(&symbols.channel_name(v.channel), v.seq, &v.events, v.reset)
        };
        self.hub()
            .subscribe(self.conn.id, &self.conn.outbox, &req, &encode);
    }

    fn unsubscribe(&mut self, id: Option<i64>, channels: &[String]) {
        let mut targets = Vec::new();
        let mut names = Vec::new();
        for name in channels {
            match self.resolve(name) {
                Ok(t) => {
                    targets.push(t);
                    names.push(name.clone());
                }
                Err((code, msg)) => self.error(id, code, &msg),
            }
        }
        let removed = self.hub().unsubscribe(self.conn.id, &targets);
        let mut acked = Vec::new();
        for (t, name) in targets.iter().zip(names) {
            if removed.contains(t) {
                acked.push(name);
            } else {
                self.error(
                    id,
                    ErrorCode::NotSubscribed,
                    &format!("not subscribed to {name}"),
                );
            }
        }
        if acked.is_empty() && !channels.is_empty() {
            return;
        }
        self.reply(protocol::encode_ack(
            id,
            "unsubscribe",
            &acked,
            self.ctx.epoch,
        ));
    }
}

#[cfg(test)]
mod tests;
