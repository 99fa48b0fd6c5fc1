//! Ingest's side of the stream: every sequenced event, already encoded, goes to
//! `<prefix>.<kind>.<symbol>` with its `seq` in a header and a message id that makes a retried
//! publish a no-op on the server.
//!
//! [`StreamPublisher::publish`] runs on the ingest thread and never waits on NATS: it copies
//! `Bytes` handles into a queue bounded in bytes (`cluster.publish_buffer_bytes`); past it the
//! event is dropped and counted (edges then see a `seq` jump). One task drains the queue in
//! order, keeps a window of acknowledgements in flight, and retries a failed publish with
//! backoff, in order, while NATS is away.
//!
//! Fencing: the task sends only while the [`LeaseClock`] says the lease is surely ours, and
//! only after [`StreamPublisher::arm`] handed it this leadership's fence (`takeover.rs`). Each
//! message is chained to the one before it: it expects the stream's last message to be our
//! previous one, by stream sequence (`Nats-Expected-Last-Sequence`, counted locally: while we
//! are the only writer ours are consecutive) and by message id (`Nats-Expected-Last-Msg-Id`;
//! ids carry the fence's stream sequence, so no other leadership's id can match). A message of
//! anyone else in between breaks the chain, and the stream refuses ours from there on, even
//! those already in flight. A refusal that no earlier failure of ours explains means another
//! leader wrote: the node is deposed, drops what it holds and sends nothing more.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::lease::LeaseClock;
use super::{SEQ_HEADER, subject};
use crate::model::{ChannelId, Event, Symbols};
use crate::rooms::EventSink;
use crate::telemetry::metrics::Metrics;

/// Publishes per round trip window.
const WINDOW: usize = 512;

struct Outgoing {
    /// Shared with every other event of the channel (a `Bytes` handle).
    subject: Subject,
    seq: u64,
    bytes: Bytes,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    bytes: usize,
    /// Each channel's subject, made the first time the channel publishes.
    subjects: HashMap<ChannelId, Subject>,
    /// This leadership's fence; `None` until the takeover wrote it.
    armed: Option<Fence>,
}

/// The ingest side's [`EventSink`] into the stream.
pub(crate) struct StreamPublisher {
    queue: Mutex<Queue>,
    max_bytes: usize,
    ready: Notify,
    prefix: String,
    epoch: i64,
    symbols: Arc<Symbols>,
    metrics: Arc<Metrics>,
    lease: Arc<LeaseClock>,
}

/// Where this leader's chain of messages stands in the stream: its fence, then its last
/// message that landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    /// The stream sequence of the last message of the chain.
    pub stream_seq: u64,
    /// That message's id.
    pub msg_id: String,
    /// The fence's stream sequence: part of every message id of this leadership.
    pub token: u64,
}

/// How one window of publishes ended.
enum Round {
    /// Every message landed.
    Done,
    /// Some did not (NATS slow or away): retry the rest.
    Retry,
    /// Another leader has written, or the lease may have expired: publish nothing more.
    Fenced,
}

impl StreamPublisher {
    pub fn new(
        prefix: String,
        epoch: i64,
        max_bytes: usize,
        symbols: Arc<Symbols>,
        metrics: Arc<Metrics>,
        lease: Arc<LeaseClock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(Queue::default()),
            max_bytes,
            ready: Notify::new(),
            prefix,
            epoch,
            symbols,
            metrics,
            lease,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets the task publish, chained to `fence` (this leadership's first message).
    /// Anything queued before was sequenced before the takeover's seeds, so it is dropped.
    pub fn arm(&self, fence: Fence) {
        let held = {
            let mut q = self.lock();
            q.armed = Some(fence);
            q.items.len()
        };
        if held > 0 {
            self.drop_queued(0);
        }
        self.ready.notify_one();
    }

    /// Drops everything queued (a deposed leader publishes nothing more, a new one nothing
    /// sequenced before its takeover) and `held` more, counted as dropped.
    fn drop_queued(&self, held: usize) {
        let mut q = self.lock();
        let dropped = (q.items.len() + held) as u64;
        q.items.clear();
        q.bytes = 0;
        self.metrics
            .cluster_publish_buffer_bytes
            .store(0, Ordering::Relaxed);
        self.metrics
            .cluster_publish_dropped
            .fetch_add(dropped, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "events not of this leadership dropped");
        }
    }

    /// Drains the queue into JetStream until `stop` (what is queued then still goes out while
    /// the lease holds), and ends at once when this node is deposed.
    pub async fn run(self: Arc<Self>, js: jetstream::Context, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        // Our last message that landed, once armed.
        let mut last: Option<Fence> = None;
        loop {
            let batch: Vec<Outgoing> = {
                let mut q = self.lock();
                if last.is_none() {
                    last = q.armed.clone();
                }
                let n = if last.is_some() && self.lease.valid() {
                    q.items.len().min(WINDOW)
                } else {
                    0
                };
                let batch: Vec<Outgoing> = q.items.drain(..n).collect();
                q.bytes -= batch.iter().map(|o| o.bytes.len()).sum::<usize>();
                self.metrics
                    .cluster_publish_buffer_bytes
                    .store(q.bytes as u64, Ordering::Relaxed);
                batch
            };
            if self.lease.deposed().is_cancelled() {
                self.drop_queued(batch.len());
                return;
            }
            let Some(chain) = last.as_mut().filter(|_| !batch.is_empty()) else {
                if stop.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = self.ready.notified() => {}
                    _ = stop.cancelled() => {}
                    _ = self.lease.deposed().cancelled() => {}
                    // A wake-up lost to a race (or a lease renewed) costs at most this.
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            };
            let mut pending: VecDeque<Outgoing> = batch.into();
            // Publish the window, then collect its acks; whatever failed is published again,
            // in order, until it is acknowledged (the message id makes repeats harmless: the
            // server answers a duplicate before it checks the chain).
            while !pending.is_empty() {
                match self.round(&js, &mut pending, chain).await {
                    Round::Done => backoff = Duration::from_millis(50),
                    Round::Fenced => {
                        self.lease.depose();
                        self.drop_queued(pending.len());
                        return;
                    }
                    Round::Retry => {
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = self.lease.deposed().cancelled() => {}
                            _ = stop.cancelled() => {
                                tracing::warn!(lost = pending.len(), "shutdown with unpublished events");
                                return;
                            }
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }

    /// Publishes `pending` chained after `chain` and collects the acks. Everything up to the
    /// last acknowledged message landed (each expected its predecessor), so those leave
    /// `pending` and move `chain`; the rest stays for a retry.
    async fn round(
        &self,
        js: &jetstream::Context,
        pending: &mut VecDeque<Outgoing>,
        chain: &mut Fence,
    ) -> Round {
        let mut acks = Vec::with_capacity(pending.len());
        let mut ids = Vec::with_capacity(pending.len());
        for (i, item) in pending.iter().enumerate() {
            // Not one message past the local deadline: the lease may be another node's then.
            if !self.lease.valid() {
                break;
            }
            let id = self.msg_id(chain.token, item);
            let previous = ids.last().unwrap_or(&chain.msg_id);
            let headers = self.headers(item, &id, chain.stream_seq + i as u64, previous);
            ids.push(id);
            let ack = js
                .publish_with_headers(item.subject.clone(), headers, item.bytes.clone())
                .await;
            acks.push(ack);
        }
        let sent = acks.len();
        let mut landed = 0;
        let mut first_error: Option<(PublishErrorKind, String)> = None;
        for (i, ack) in acks.into_iter().enumerate() {
            let result = match ack {
                Ok(fut) => fut.await.map(|_| ()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => landed = i + 1,
                Err(e) => {
                    self.metrics
                        .cluster_publish_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if first_error.is_none() {
                        let item = &pending[i];
                        tracing::warn!(error = %e, subject = %item.subject, seq = item.seq,
                            "stream publish failed");
                        first_error = Some((e.kind(), e.to_string()));
                    }
                }
            }
        }
        self.metrics
            .cluster_events_published
            .fetch_add(landed as u64, Ordering::Relaxed);
        pending.drain(..landed);
        if let Some(id) = landed.checked_sub(1).and_then(|i| ids.get(i)) {
            chain.msg_id.clone_from(id);
            chain.stream_seq += landed as u64;
        }
        match first_error {
            // The first failure is a refusal: all of ours before it landed, so the stream's
            // last message is someone else's.
            Some((
                PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId,
                error,
            )) => {
                tracing::error!(%error, stream_seq = chain.stream_seq,
                    "the stream refused this node's write: another ingest leader has published; stepping down");
                Round::Fenced
            }
            _ if sent < pending.len() + landed => {
                tracing::error!(
                    unsent = pending.len(),
                    "lease not confirmed within cluster.lease_ttl_ms - cluster.lease_margin_ms; publishing stops"
                );
                Round::Fenced
            }
            Some(_) => Round::Retry,
            None => Round::Done,
        }
    }

    /// `epoch:token:subject:seq`: one per event of one leadership.
    fn msg_id(&self, token: u64, item: &Outgoing) -> String {
        format!("{}:{token}:{}:{}", self.epoch, item.subject, item.seq)
    }

    fn headers(&self, item: &Outgoing, id: &str, last_seq: u64, last_id: &str) -> HeaderMap {
        use async_nats::header::{
            NATS_EXPECTED_LAST_MESSAGE_ID, NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID,
        };
        let mut h = HeaderMap::new();
        h.insert(SEQ_HEADER, item.seq.to_string().as_str());
        h.insert(NATS_MESSAGE_ID, id);
        h.insert(NATS_EXPECTED_LAST_SEQUENCE, last_seq.to_string().as_str());
        h.insert(NATS_EXPECTED_LAST_MESSAGE_ID, last_id);
        h
    }
}

impl EventSink for StreamPublisher {
    fn publish(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        if self.lease.deposed().is_cancelled() {
            // A deposed leader's events go nowhere (its process is stopping).
            self.metrics
                .cluster_publish_dropped
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            return;
        }
        let mut dropped = 0u64;
        {
            let mut q = self.lock();
            for e in events {
                if q.bytes + e.wire.json().len() > self.max_bytes {
                    dropped += 1;
                    continue;
                }
                let subject = q
                    .subjects
                    .entry(e.channel)
                    .or_insert_with(|| {
                        let name = self.symbols.name(e.channel.symbol);
                        Subject::from(subject::subject(&self.prefix, e.channel.kind, &name))
                    })
                    .clone();
                q.bytes += e.wire.json().len();
                q.items.push_back(Outgoing {
                    subject,
                    seq: e.seq,
                    bytes: e.wire.json().clone(),
                });
            }
            self.metrics
                .cluster_publish_buffer_bytes
                .store(q.bytes as u64, Ordering::Relaxed);
        }
        if dropped > 0 {
            self.metrics
                .cluster_publish_dropped
                .fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(
                dropped,
                "stream publish buffer full (cluster.publish_buffer_bytes); events dropped"
            );
        }
        self.ready.notify_one();
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::{ChannelId, Kind, Payload, SymbolId, Tick, Wire};

    pub(in crate::cluster) fn event(symbol: SymbolId, seq: u64, size: usize) -> Event {
        Event {
            channel: ChannelId {
                kind: Kind::Ticks,
                symbol,
            },
            seq,
            ts: 1,
            payload: Payload::Tick(Tick {
                symbol,
                price: 1.0,
                size: 1.0,
                side: None,
                exchange_ts: 1,
                ts: 1,
            }),
            wire: Wire::new(Bytes::from(vec![b'x'; size]), Bytes::new()),
            book: None,
        }
    }

    #[test]
    fn the_buffer_is_bounded_in_bytes_and_drops_are_counted() {
        let symbols = Arc::new(Symbols::new(8));
        let brk = symbols.intern("BRK.B").unwrap();
        let metrics = Arc::new(Metrics::default());
        let p = StreamPublisher::new(
            "tc".into(),
            7,
            1_000,
            symbols,
            metrics.clone(),
            LeaseClock::new(),
        );
        // NATS is away: nothing drains. 4 x 300 bytes fit in 1,000 only 3 times.
        p.publish(&(1..=4).map(|s| event(brk, s, 300)).collect::<Vec<_>>());
        assert_eq!(metrics.cluster_publish_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(
            metrics.cluster_publish_buffer_bytes.load(Ordering::Relaxed),
            900
        );
        // A small event still fits beside them; a big one does not.
        p.publish(&[event(brk, 5, 100), event(brk, 6, 1)]);
        assert_eq!(metrics.cluster_publish_dropped.load(Ordering::Relaxed), 2);
        let q = p.lock();
        assert_eq!(q.bytes, 1_000);
        let first = &q.items[0];
        assert_eq!(&*first.subject, "tc.ticks.BRK~B");
        assert_eq!(first.seq, 1);
        let ids: Vec<String> = q.items.iter().map(|o| p.msg_id(40, o)).collect();
        assert_eq!(
            ids,
            [
                "7:40:tc.ticks.BRK~B:1",
                "7:40:tc.ticks.BRK~B:2",
                "7:40:tc.ticks.BRK~B:3",
                "7:40:tc.ticks.BRK~B:5"
            ]
        );
    }
}
