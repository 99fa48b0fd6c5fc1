//! The session's logic without a network: an in-memory socket stands in for the WebSocket, the
//! hub and the context are the real ones, and timers run on tokio's paused clock.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, Stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::run;
use crate::model::{ChannelId, Encoding, Event, Kind, Payload, Side, Symbols, Tick};
use crate::protocol;
use crate::rooms::{EventSink, Hub};
use crate::telemetry::metrics::Metrics;
use crate::ws::{Channels, Gate, WsAuth, WsContext, WsState};

/// The server's end of an in-memory WebSocket: what the test sends arrives as inbound
/// messages; what the session sends is collected for the test to read.
struct MemSocket {
    inbound: mpsc::UnboundedReceiver<Message>,
    outbound: mpsc::UnboundedSender<Message>,
}

impl Stream for MemSocket {
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inbound.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Sink<Message> for MemSocket {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        self.outbound
            .send(item)
            .map_err(|_| WsError::ConnectionClosed)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }
}

/// A socket whose peer takes one frame every `every` (its sends wait that long after each).
struct Trickle {
    inner: MemSocket,
    every: Duration,
    busy: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stream for Trickle {
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl Sink<Message> for Trickle {
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        if let Some(busy) = self.busy.as_mut() {
            if busy.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.busy = None;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        self.busy = Some(Box::pin(tokio::time::sleep(self.every)));
        Pin::new(&mut self.inner).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }
}

/// The test's end: send ops, read frames.
struct Peer {
    to_server: mpsc::UnboundedSender<Message>,
    from_server: mpsc::UnboundedReceiver<Message>,
    /// Events of a JSON-array frame not yet returned by [`Peer::event`].
    pending: std::collections::VecDeque<Value>,
}

impl Peer {
    fn send(&self, op: Value) {
        self.to_server
            .send(Message::Text(op.to_string().into()))
            .expect("session alive");
    }

    /// The next message the session sent, waiting on the (paused) clock for at most `within`.
    async fn next(&mut self, within: Duration) -> Option<Message> {
        tokio::time::timeout(within, self.from_server.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next event object (a frame may be a JSON array of several).
    async fn event(&mut self) -> Value {
        loop {
            if let Some(v) = self.pending.pop_front() {
                return v;
            }
            match self.next(Duration::from_secs(5)).await {
                Some(Message::Text(t)) => match serde_json::from_str(&t).expect("JSON frame") {
                    Value::Array(items) => self.pending.extend(items),
                    v => self.pending.push_back(v),
                },
                Some(Message::Ping(_)) => continue,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// The close frame's code, skipping anything sent before it.
    async fn close_code(&mut self, within: Duration) -> Option<CloseCode> {
        while let Some(msg) = self.next(within).await {
            if let Message::Close(frame) = msg {
                return frame.map(|f| f.code);
            }
        }
        None
    }
}

fn context() -> WsState {
    context_with(|_| {})
}

fn context_with(tune: impl FnOnce(&mut crate::config::Config)) -> WsState {
    let mut config = crate::config::Config::defaults().expect("defaults");
    tune(&mut config);
    let metrics = Arc::new(Metrics::default());
    let symbols = Arc::new(Symbols::new(16));
    let _ = symbols.intern("AAPL");
    let hub = Arc::new(Hub::new(
        crate::server::hub_config(&config),
        metrics.clone(),
    ));
    // The pool is lazy: these sessions never subscribe to `portfolio`, so it never connects.
    config.database.url = "sqlite::memory:".into();
    let store = Arc::new(crate::store::Store::open(&config.database).expect("store"));
    let portfolios = Arc::new(crate::portfolio::LivePortfolios::new(
        hub.clone(),
        store,
        symbols.clone(),
        config.portfolio,
        false,
    ));
    Arc::new(WsContext {
        gate: Gate::new(&config.ws, TaskTracker::new()),
        config: config.ws,
        metrics,
        shutdown: CancellationToken::new(),
        drain: Arc::new(crate::drain::Drain::new(Duration::from_millis(
            config.server.drain_grace_ms,
        ))),
        auth: WsAuth {
            verifier: None,
            anonymous: config.auth.anonymous,
            auth_timeout_s: config.auth.auth_timeout_s,
            users: Default::default(),
        },
        channels: Channels {
            hub,
            symbols,
            epoch: 42,
            ring_capacity: config.ring.capacity,
            book_depth: config.book.depth,
            bar_intervals: config.pipeline.intervals(),
            history: None,
            stored_ticks: None,
            portfolios,
        },
    })
}

/// Starts a session on an in-memory socket.
fn connect(ctx: &WsState) -> Peer {
    connect_trickle(ctx, Duration::ZERO)
}

/// Starts a session on an in-memory socket whose peer takes one frame every `every`.
fn connect_trickle(ctx: &WsState, every: Duration) -> Peer {
    let (to_server, inbound) = mpsc::unbounded_channel();
    let (outbound, from_server) = mpsc::unbounded_channel();
    let inner = MemSocket { inbound, outbound };
    if every.is_zero() {
        tokio::spawn(run(inner, ctx.clone(), Encoding::Json, None));
    } else {
        let socket = Trickle {
            inner,
            every,
            busy: None,
        };
        tokio::spawn(run(socket, ctx.clone(), Encoding::Json, None));
    }
    Peer {
        to_server,
        from_server,
        pending: Default::default(),
    }
}

fn tick_event(ctx: &WsContext, seq: u64, price: f64) -> Event {
    let symbol = ctx.channels.symbols.get("AAPL").expect("interned");
    let tick = Tick {
        symbol,
        price,
        size: 1.0,
        side: Some(Side::Buy),
        exchange_ts: 1,
        ts: 2,
    };
    Event {
        channel: ChannelId {
            kind: Kind::Ticks,
            symbol,
        },
        seq,
        ts: 2,
        wire: protocol::encode_tick("ticks:AAPL", seq, &tick),
        payload: Payload::Tick(tick),
        book: None,
    }
}

#[tokio::test(start_paused = true)]
async fn ping_op_gets_a_pong_with_its_id() {
    let ctx = context();
    let mut peer = connect(&ctx);
    peer.send(json!({"op": "ping", "id": 7}));
    let pong = peer.event().await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["id"], 7);
}

#[tokio::test(start_paused = true)]
async fn malformed_json_is_an_error_and_the_connection_stays_open() {
    let ctx = context();
    let mut peer = connect(&ctx);
    peer.to_server
        .send(Message::Text("{not json".into()))
        .expect("alive");
    let err = peer.event().await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "bad_request");
    peer.send(json!({"op": "list", "id": 2}));
    let list = peer.event().await;
    assert_eq!(list["type"], "list");
    assert_eq!(list["id"], 2);
}

#[tokio::test(start_paused = true)]
async fn binary_frames_are_refused_with_bad_request() {
    let ctx = context();
    let mut peer = connect(&ctx);
    peer.to_server
        .send(Message::Binary(Bytes::from_static(b"\x00\x01")))
        .expect("alive");
    let err = peer.event().await;
    assert_eq!(err["code"], "bad_request");
}

#[tokio::test(start_paused = true)]
async fn subscribe_acks_with_epoch_then_streams_published_events() {
    let ctx = context();
    let mut peer = connect(&ctx);
    peer.send(json!({"op": "subscribe", "id": 1, "channels": ["ticks:AAPL", "ticks:NOPE"]}));
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(peer.event().await);
    }
    let ack = got.iter().find(|e| e["type"] == "ack").expect("ack");
    assert_eq!(ack["epoch"], 42);
    assert_eq!(ack["channels"], json!(["ticks:AAPL"]));
    let err = got.iter().find(|e| e["type"] == "error").expect("error");
    assert_eq!(err["code"], "unknown_channel");
    assert!(got.iter().any(|e| e["type"] == "snapshot"), "{got:?}");

    ctx.channels.hub.publish(&[tick_event(&ctx, 1, 101.5)]);
    let tick = peer.event().await;
    assert_eq!(tick["type"], "tick");
    assert_eq!(tick["seq"], 1);
    assert_eq!(tick["price"], 101.5);
}

#[tokio::test(start_paused = true)]
async fn throttle_above_the_maximum_is_refused() {
    let ctx = context();
    let mut peer = connect(&ctx);
    let too_slow = ctx.config.max_throttle_ms + 1;
    peer.send(
        json!({"op": "subscribe", "id": 3, "channels": ["ticks:AAPL"], "throttle_ms": too_slow}),
    );
    let err = peer.event().await;
    assert_eq!(err["code"], "bad_request");
    assert_eq!(err["id"], 3);
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_closed_for_pong_timeout() {
    let ctx = context();
    let mut peer = connect(&ctx);
    let limit = Duration::from_millis(ctx.config.pong_timeout_ms + ctx.config.ping_interval_ms);
    // The paused clock jumps ahead whenever every task waits on a timer.
    assert_eq!(peer.close_code(limit * 2).await, Some(CloseCode::Policy));
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_with_going_away() {
    let ctx = context();
    let mut peer = connect(&ctx);
    peer.send(json!({"op": "ping", "id": 1}));
    assert_eq!(peer.event().await["type"], "pong");
    ctx.shutdown.cancel();
    assert_eq!(
        peer.close_code(Duration::from_secs(1)).await,
        Some(CloseCode::Away)
    );
}

#[tokio::test(start_paused = true)]
async fn a_drain_sends_the_notice_then_closes_with_going_away_after_the_grace() {
    let ctx = context_with(|c| c.server.drain_grace_ms = 4000);
    let mut peer = connect(&ctx);
    peer.send(json!({"op": "ping", "id": 1}));
    assert_eq!(peer.event().await["type"], "pong");
    let began = tokio::time::Instant::now();
    assert!(ctx.drain.begin());
    let notice = peer.event().await;
    assert_eq!(notice["type"], "notice", "{notice}");
    assert_eq!(notice["code"], "draining");
    let after = notice["reconnect_after_ms"].as_u64().expect("a delay");
    assert!(after < 2000, "within the first half of the grace: {after}");
    // Still served during the grace.
    peer.send(json!({"op": "ping", "id": 2}));
    assert_eq!(peer.event().await["type"], "pong");
    assert_eq!(
        peer.close_code(Duration::from_secs(10)).await,
        Some(CloseCode::Away)
    );
    // On the paused clock: the close came at the grace's end, not before.
    assert!(began.elapsed() >= Duration::from_millis(4000));
}

#[tokio::test(start_paused = true)]
async fn a_peer_taking_a_frame_just_under_the_timeout_is_still_closed_1013() {
    let ctx = context_with(|c| c.ws.batch_max_bytes = 1024);
    let slow = Duration::from_millis(ctx.config.slow_consumer_timeout_ms);
    ctx.channels.hub.publish(
        &(1..=200)
            .map(|s| tick_event(&ctx, s, 100.0))
            .collect::<Vec<_>>(),
    );
    // Each frame takes 98% of the timeout; the replay of 200 events needs some 30 frames.
    let mut peer = connect_trickle(&ctx, slow * 49 / 50);
    peer.send(json!({"op": "subscribe", "channels": ["ticks:AAPL"], "from": {"ticks:AAPL": 0}}));
    // The deadline covers the whole drain: the peer is closed after about one timeout, not
    // after 30 of them.
    assert_eq!(
        peer.close_code(slow * 4).await,
        Some(CloseCode::Again),
        "the trickling peer kept its backlog pinned"
    );
    assert_eq!(
        ctx.metrics
            .slow_consumers_closed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_ping_flood_counts_against_the_op_limit_and_closes_1008() {
    let ctx = context();
    let mut peer = connect(&ctx);
    let flood = ctx.config.ops_burst + ctx.config.abuse_threshold + 10;
    for _ in 0..flood {
        peer.to_server
            .send(Message::Ping(Bytes::from_static(b"x")))
            .expect("alive");
    }
    assert_eq!(
        peer.close_code(Duration::from_secs(5)).await,
        Some(CloseCode::Policy)
    );
}

#[tokio::test(start_paused = true)]
async fn adaptive_batching_writes_an_idle_socket_at_once_and_a_busy_one_per_window() {
    let ctx = context_with(|c| c.ws.batch_window_us = 5_000);
    let mut peer = connect(&ctx);
    peer.send(json!({"op": "subscribe", "channels": ["ticks:AAPL"]}));
    assert_eq!(peer.event().await["type"], "ack");
    assert_eq!(peer.event().await["type"], "snapshot");
    tokio::time::sleep(Duration::from_millis(10)).await;

    // Idle for longer than the window: the event goes at once, alone.
    let t0 = tokio::time::Instant::now();
    ctx.channels.hub.publish(&[tick_event(&ctx, 1, 1.0)]);
    let Some(Message::Text(first)) = peer.next(Duration::from_secs(1)).await else {
        panic!("no frame");
    };
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(serde_json::from_str::<Value>(&first).unwrap()["seq"], 1);

    // Right after a write: what arrives within the window leaves as one frame when it ends.
    ctx.channels.hub.publish(&[tick_event(&ctx, 2, 2.0)]);
    tokio::task::yield_now().await;
    ctx.channels.hub.publish(&[tick_event(&ctx, 3, 3.0)]);
    let Some(Message::Text(next)) = peer.next(Duration::from_secs(1)).await else {
        panic!("no frame");
    };
    assert!(
        t0.elapsed() >= Duration::from_millis(5),
        "{:?}",
        t0.elapsed()
    );
    let seqs: Vec<u64> = serde_json::from_str::<Value>(&next)
        .unwrap()
        .as_array()
        .expect("one frame of both")
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(seqs, vec![2, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_peer_that_reads_again_within_the_linger_gets_the_frame_in_flight_then_1013() {
    let ctx = context_with(|c| c.ws.slow_consumer_timeout_ms = 500);
    let grace = Duration::from_millis(ctx.config.close_grace_ms);
    // The peer takes the ack, then nothing for 3 s (less than the 5 s linger): the snapshot's
    // write times out after 500 ms, and the close frame waits behind it.
    let mut peer = connect_trickle(&ctx, Duration::from_secs(3));
    peer.send(json!({"op": "subscribe", "id": 1, "channels": ["ticks:AAPL"]}));
    assert_eq!(peer.event().await["type"], "ack");
    let started = tokio::time::Instant::now();
    ctx.channels.hub.publish(&[tick_event(&ctx, 1, 100.0)]);
    assert_eq!(peer.close_code(grace * 2).await, Some(CloseCode::Again));
    assert!(
        started.elapsed() < grace,
        "the close followed the frame in flight"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_reads_again_holds_its_socket_for_the_linger_at_most() {
    let ctx = context_with(|c| c.ws.slow_consumer_timeout_ms = 500);
    let slow = Duration::from_millis(ctx.config.slow_consumer_timeout_ms);
    let grace = Duration::from_millis(ctx.config.close_grace_ms);
    let mut peer = connect_trickle(&ctx, Duration::from_secs(3600));
    peer.send(json!({"op": "subscribe", "id": 1, "channels": ["ticks:AAPL"]}));
    assert_eq!(peer.event().await["type"], "ack");
    let started = tokio::time::Instant::now();
    ctx.channels.hub.publish(&[tick_event(&ctx, 1, 100.0)]);
    // The session ends (its end of the socket is dropped) without a close frame: none could
    // follow the frame the peer never took.
    while let Some(msg) = peer.from_server.recv().await {
        assert!(!matches!(msg, Message::Close(_)), "{msg:?}");
    }
    assert!(
        started.elapsed() <= slow + grace + Duration::from_millis(100),
        "held for {:?}",
        started.elapsed()
    );
}
