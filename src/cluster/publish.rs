//! Ingest's side of the stream: every sequenced event, already encoded, goes to
//! `<prefix>.<kind>.<symbol>` with its `seq` in a header and a message id that makes a retried
//! (or a deposed leader's) publish a no-op on the server.
//!
//! [`StreamPublisher::publish`] runs on the ingest thread and never waits on NATS: it copies
//! `Bytes` handles into a queue bounded in bytes (`cluster.publish_buffer_bytes`); past it the
//! event is dropped and counted (edges then see a `seq` jump). One task drains the queue in
//! order, keeps a window of acknowledgements in flight, and retries a failed publish with
//! backoff, in order, while NATS is away.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
}

impl StreamPublisher {
    pub fn new(
        prefix: String,
        epoch: i64,
        max_bytes: usize,
        symbols: Arc<Symbols>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(Queue::default()),
            max_bytes,
            ready: Notify::new(),
            prefix,
            epoch,
            symbols,
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drains the queue into JetStream until `stop`, then for at most `grace` more.
    pub async fn run(self: Arc<Self>, js: jetstream::Context, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let batch: Vec<Outgoing> = {
                let mut q = self.lock();
                let n = q.items.len().min(WINDOW);
                let batch: Vec<Outgoing> = q.items.drain(..n).collect();
                q.bytes -= batch.iter().map(|o| o.bytes.len()).sum::<usize>();
                self.metrics
                    .cluster_publish_buffer_bytes
                    .store(q.bytes as u64, Ordering::Relaxed);
                batch
            };
            if batch.is_empty() {
                if stop.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = self.ready.notified() => {}
                    _ = stop.cancelled() => {}
                    // A wake-up lost to a race costs at most this.
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
            let mut pending = VecDeque::with_capacity(batch.len());
            for item in batch {
                pending.push_back(item);
            }
            // Publish the window, then collect its acks; whatever failed is published again,
            // in order, until it is acknowledged (the message id makes repeats harmless).
            while !pending.is_empty() {
                let mut acks = Vec::with_capacity(pending.len());
                for item in &pending {
                    let ack = js
                        .publish_with_headers(
                            item.subject.clone(),
                            self.headers(item),
                            item.bytes.clone(),
                        )
                        .await;
                    acks.push(ack);
                }
                let mut failed = VecDeque::new();
                for (item, ack) in pending.drain(..).zip(acks) {
                    let result = match ack {
                        Ok(fut) => fut.await.map(|_| ()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match result {
                        Ok(()) => {
                            self.metrics
                                .cluster_events_published
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            self.metrics
                                .cluster_publish_errors
                                .fetch_add(1, Ordering::Relaxed);
                            if failed.is_empty() {
                                tracing::warn!(%error, subject = %item.subject, seq = item.seq,
                                    "stream publish failed; retrying");
                            }
                            failed.push_back(item);
                        }
                    }
                }
                if failed.is_empty() {
                    backoff = Duration::from_millis(50);
                } else {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => {
                            tracing::warn!(lost = failed.len(), "shutdown with unpublished events");
                            return;
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                pending = failed;
            }
        }
    }

    fn headers(&self, item: &Outgoing) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SEQ_HEADER, item.seq.to_string().as_str());
        h.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{}:{}:{}", self.epoch, item.subject, item.seq).as_str(),
        );
        h
    }
}

impl EventSink for StreamPublisher {
    fn publish(&self, events: &[Event]) {
        if events.is_empty() {
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
mod tests {
    use super::*;
    use crate::model::{ChannelId, Kind, Payload, SymbolId, Tick, Wire};

    fn event(symbol: SymbolId, seq: u64, size: usize) -> Event {
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
        let p = StreamPublisher::new("tc".into(), 7, 1_000, symbols, metrics.clone());
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
        let ids: Vec<String> = q
            .items
            .iter()
            .map(|o| {
                p.headers(o)
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            ids,
            [
                "7:tc.ticks.BRK~B:1",
                "7:tc.ticks.BRK~B:2",
                "7:tc.ticks.BRK~B:3",
                "7:tc.ticks.BRK~B:5"
            ]
        );
    }
}
