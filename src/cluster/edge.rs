//! An edge node's intake: one ordered consumer over the whole stream, from `cluster.warm_ms`
//! ago, into the hub exactly as ingest publishes on a single node (so fan-out, batching,
//! conflation and 1013 are unchanged). The node is live (`/readyz`) once it has caught up.
//!
//! The consumer resumes by itself after NATS comes back (the client reconnects; a consumer
//! that fails is recreated from the next stream sequence). An edge that falls behind the
//! stream only delays its own sockets: JetStream holds the backlog, ingest never waits.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{ClusterStatus, Nats, header_seq, subject};
use crate::book::{BookView, PublishedView};
use crate::model::{ChannelId, Event, Kind, Payload, Symbols, now_ns};
use crate::pipeline::LatestIndicators;
use crate::protocol::{
    Decoded, DecodedBook, IndicatorFields, decode_book, decode_event, rewire, rewire_book,
};
use crate::rooms::{EventSink, Hub};
use crate::telemetry::metrics::Metrics;

/// Messages handed to the hub as one batch at most.
const BATCH: usize = 512;

pub(crate) struct EdgeIntake {
    pub hub: Arc<Hub>,
    pub symbols: Arc<Symbols>,
    pub indicators: Arc<LatestIndicators>,
    pub fields: IndicatorFields,
    pub status: Arc<ClusterStatus>,
    pub metrics: Arc<Metrics>,
    pub warm: Duration,
    /// Levels per side of the book views (`book.depth`, the same as ingest's).
    pub book_depth: usize,
    /// Each book channel's view as the stream's events build it; `None` until a reset arrived
    /// (or after an event that does not check out), while its channel serves no snapshot.
    pub books: std::sync::Mutex<HashMap<ChannelId, Option<BookView>>>,
}

/// Runs until `stop`.
pub(crate) async fn run_edge(nats: Arc<Nats>, intake: EdgeIntake, stop: CancellationToken) {
    let start = time::OffsetDateTime::now_utc() - intake.warm;
    let mut policy = DeliverPolicy::ByStartTime { start_time: start };
    // The next stream sequence to read, once any was read.
    let mut next: Option<u64> = None;
    let mut retry = Duration::from_millis(100);
    loop {
        if let Some(seq) = next {
            policy = DeliverPolicy::ByStartSequence {
                start_sequence: seq,
            };
        }
        let consumed = tokio::select! {
            _ = stop.cancelled() => return,
            r = consume(&nats, &intake, policy, &mut next) => r,
        };
        if let Err(error) = consumed {
            tracing::warn!(%error, "stream consumer stopped; recreating");
        }
        intake.status.set_active(false);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(Duration::from_secs(2));
    }
}

async fn consume(
    nats: &Nats,
    intake: &EdgeIntake,
    policy: DeliverPolicy,
    next: &mut Option<u64>,
) -> Result<(), String> {
    let mut consumer = nats
        .stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject::all(&nats.prefix),
            deliver_policy: policy,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    // Nothing to read yet means caught up already.
    if let Ok(info) = consumer.info().await
        && info.num_pending == 0
    {
        mark_live(intake);
    }
    let messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut chunks = messages.ready_chunks(BATCH);
    let mut events: Vec<Event> = Vec::with_capacity(BATCH);
    // New leaders' fences share the stream; they carry no event.
    let fence = subject::fence(&nats.prefix);
    while let Some(chunk) = chunks.next().await {
        let received = chunk.len() as u64;
        // (messages pending behind it, publish time in ns) of the chunk's newest message.
        let mut newest: Option<(u64, i64)> = None;
        for message in chunk {
            let message = message.map_err(|e| e.to_string())?;
            let Ok(info) = message.info() else { continue };
            *next = Some(info.stream_sequence + 1);
            newest = Some((info.pending, info.published.unix_timestamp_nanos() as i64));
            if message.subject.as_str() == fence {
                continue;
            }
            match to_event(nats, intake, &message) {
                Some(e) => events.push(e),
                None => {
                    intake
                        .metrics
                        .cluster_decode_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        publish(intake, &mut events);
        let m = &intake.metrics;
        m.cluster_events_received
            .fetch_add(received, Ordering::Relaxed);
        if let Some((pending, published_ns)) = newest {
            let lag_ms = (now_ns() - published_ns) / 1_000_000;
            m.cluster_stream_lag_events
                .store(pending, Ordering::Relaxed);
            m.cluster_stream_lag_ms
                .store(lag_ms.max(0) as u64, Ordering::Relaxed);
            if pending == 0 {
                mark_live(intake);
            }
        }
    }
    Err("message stream ended".into())
}

fn mark_live(intake: &EdgeIntake) {
    if !intake.status.active() {
        tracing::info!("edge caught up with the stream; live");
    }
    intake.status.set_active(true);
}

/// Hands a batch to the hub, and indicators to the REST read model.
fn publish(intake: &EdgeIntake, events: &mut Vec<Event>) {
    if events.is_empty() {
        return;
    }
    let latest: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Indicators(v) => Some((e.channel.symbol, v.clone())),
            _ => None,
        })
        .collect();
    intake.hub.publish(events);
    if let Some(ts) = events.last().map(|e| e.ts) {
        intake.indicators.store(latest, ts);
    }
    events.clear();
}

/// The event a stream message carries, or `None` (logged) when it is not one of ours.
fn to_event(
    nats: &Nats,
    intake: &EdgeIntake,
    message: &async_nats::jetstream::Message,
) -> Option<Event> {
    let Some((kind, name)) = subject::parse(&nats.prefix, &message.subject) else {
        tracing::warn!(subject = %message.subject, "stream message on a foreign subject");
        return None;
    };
    let symbol = match intake.symbols.intern(&name) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, symbol = %name, "stream message dropped");
            return None;
        }
    };
    // A book event is read once: its sequencing, its MessagePack and the edge's copy of the
    // book all come from what `decode_book` read.
    let book = if kind == Kind::Book {
        match decode_book(&message.payload) {
            Ok(b) => Some(b),
            Err(error) => {
                tracing::warn!(%error, subject = %message.subject, "stream message not decoded");
                return None;
            }
        }
    } else {
        None
    };
    let decoded = match &book {
        Some(b) => Decoded {
            seq: b.seq,
            ts: b.ts,
            payload: Payload::Book,
        },
        None => match decode_event(kind, symbol, &message.payload, &intake.fields) {
            Ok(d) => d,
            Err(error) => {
                tracing::warn!(%error, subject = %message.subject, "stream message not decoded");
                return None;
            }
        },
    };
    if header_seq(message.headers.as_ref()).is_some_and(|s| s != decoded.seq) {
        tracing::warn!(subject = %message.subject, "stream message seq header disagrees");
        return None;
    }
    let channel = format!("{}:{name}", kind.as_str());
    let id = ChannelId { kind, symbol };
    let (wire, view) = match &book {
        Some(b) => (
            rewire_book(&channel, message.payload.clone(), b),
            follow_book(intake, id, &channel, b),
        ),
        None => (
            rewire(&channel, message.payload.clone(), &decoded, &intake.fields),
            None,
        ),
    };
    Some(Event {
        channel: id,
        seq: decoded.seq,
        ts: decoded.ts,
        payload: decoded.payload,
        wire,
        book: view,
    })
}

/// Applies a book event to the edge's copy of that book and returns the view after it: a reset
/// starts the copy, a delta needs one, and the event's checksum must agree (else the copy is
/// dropped until the next reset; ingest sends one at least every `book.checkpoint_ms`).
fn follow_book(
    intake: &EdgeIntake,
    ch: ChannelId,
    name: &str,
    b: &DecodedBook,
) -> Option<Arc<PublishedView>> {
    let mut books = intake.books.lock().unwrap_or_else(|e| e.into_inner());
    let copy = books.entry(ch).or_default();
    let levels = b.levels();
    match copy {
        _ if b.reset => *copy = Some(levels.top(intake.book_depth)),
        Some(view) => view.apply(&levels, intake.book_depth),
        None => return None,
    }
    if copy.as_ref().map(BookView::checksum) != Some(b.checksum) {
        tracing::warn!(channel = ?ch, seq = b.seq, "book copy does not match its checksum; waiting for a reset");
        *copy = None;
        return None;
    }
    let view = copy.clone()?;
    let name = Arc::from(name);
    Some(Arc::new(PublishedView::new(
        name, b.seq, b.ts, view, b.checksum,
    )))
}
