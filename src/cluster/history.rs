//! Resume from the stream: the events of one channel after a client's `from` that an edge's
//! ring no longer holds. The stream is indexed by its own sequence, not by channel `seq`, so the
//! first missed event is found by a binary search over the subject's messages (each probe one
//! "next message of this subject at or after" request, carrying the channel `seq` in a header),
//! and the rest is read in order by a short-lived ordered consumer.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::message::StreamMessage;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use super::{Nats, header_seq, subject};
use crate::model::{ChannelId, Symbols, Wire};
use crate::protocol::{IndicatorFields, decode_event, rewire};
use crate::ws::History;

/// How long one resume may spend reading the stream before it is answered with `reset`.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct StreamHistory {
    pub nats: Arc<Nats>,
    pub symbols: Arc<Symbols>,
    pub max_events: usize,
    /// Most gaps one subscribe may read (`cluster.resume_max_reads`).
    pub max_reads: usize,
    /// The indicator field names, to read `indicators` events back for their other encoding.
    pub fields: IndicatorFields,
}

impl std::fmt::Debug for StreamHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHistory")
            .field("prefix", &self.nats.prefix)
            .field("max_events", &self.max_events)
            .field("max_reads", &self.max_reads)
            .finish()
    }
}

fn seq_of(m: &StreamMessage) -> Option<u64> {
    header_seq(Some(&m.headers))
}

impl StreamHistory {
    /// The first message of `subject` at or after stream sequence `from`.
    async fn next_at(&self, subject: &str, from: u64) -> Option<StreamMessage> {
        self.nats
            .stream
            .raw_message_builder()
            .sequence(from)
            .next_by_subject(subject.to_string())
            .send()
            .await
            .ok()
    }

    async fn read(
        &self,
        ch: ChannelId,
        from: u64,
        until: u64,
        max_bytes: usize,
    ) -> Option<Vec<Wire>> {
        if until <= from || (until - from) as usize > self.max_events {
            return None;
        }
        let name = self.symbols.name(ch.symbol);
        let subject = subject::subject(&self.nats.prefix, ch.kind, &name);
        let first = self.next_at(&subject, 1).await?;
        if seq_of(&first)? > from + 1 {
            return None; // the stream no longer holds the first missed event
        }
        let last = self
            .nats
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .ok()?;
        if seq_of(&last)? < until {
            return None;
        }
        // Smallest stream sequence whose message of this subject has channel seq > from.
        let (mut lo, mut hi) = (first.sequence, last.sequence);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let m = self.next_at(&subject, mid).await?;
            if seq_of(&m)? > from {
                hi = mid;
            } else {
                lo = m.sequence + 1;
            }
        }
        let consumer = self
            .nats
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: lo },
                ..Default::default()
            })
            .await
            .ok()?;
        let mut messages = consumer.messages().await.ok()?;
        // Grown as read: reserving the whole gap would hold up to `max_events` handles for a
        // read that the byte budget may end after a few.
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for want in from + 1..=until {
            let m = messages.next().await?.ok()?;
            let seq = header_seq(m.headers.as_ref())?;
            if seq != want {
                // A hole in the stream (events ingest dropped): not an exact replay.
                return None;
            }
            bytes += m.payload.len() + 1;
            if bytes > max_bytes {
                return None; // more than the connection may hold: reset, without reading on
            }
            // The stream carries the JSON; the MessagePack form is made from it if asked for.
            let decoded = decode_event(ch.kind, ch.symbol, &m.payload, &self.fields).ok()?;
            out.push(rewire(&m.payload, &decoded, &self.fields));
        }
        Some(out)
    }
}

impl History for StreamHistory {
    fn range(
        &self,
        ch: ChannelId,
        from: u64,
        until: u64,
        max_bytes: usize,
    ) -> BoxFuture<'_, Option<Vec<Wire>>> {
        Box::pin(async move {
            tokio::time::timeout(TIMEOUT, self.read(ch, from, until, max_bytes))
                .await
                .ok()
                .flatten()
        })
    }

    fn max_reads(&self) -> usize {
        self.max_reads
    }
}
