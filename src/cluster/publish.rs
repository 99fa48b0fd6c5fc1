//! Ingest's side of the stream: every sequenced event, already encoded, goes to
//! `<prefix>.<kind>.<symbol>` with its `seq` in a header and a message id that makes a retried
//! (or a deposed leader's) publish a no-op on the server.
//!
//! [`StreamPublisher::publish`] runs on the ingest thread and never waits on NATS: it copies
//! `Bytes` handles into a queue bounded in bytes (`cluster.publish_buffer_bytes`); past it the
//! event is dropped and counted (edges then see a `seq` jump). One task drains the queue in
//! order, keeps a window of acknowledgements in flight, and retries a failed publish with
//! backoff, in order, while NATS is away.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{SEQ_HEADER, subject};
use crate::model::{Event, Symbols};
use crate::rooms::EventSink;
use crate::telemetry::metrics::Metrics;

/// Publishes per round trip window.
const WINDOW: usize = 512;

struct Outgoing {
    subject: String,
    seq: u64,
    bytes: Bytes,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    bytes: usize,
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
                if q.bytes + e.bytes.len() > self.max_bytes {
                    dropped += 1;
                    continue;
                }
                let name = self.symbols.name(e.channel.symbol);
                q.bytes += e.bytes.len();
                q.items.push_back(Outgoing {
                    subject: subject::subject(&self.prefix, e.channel.kind, &name),
                    seq: e.seq,
                    bytes: e.bytes.clone(),
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
