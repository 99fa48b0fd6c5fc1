//! Fencing, the stream's side: a new ingest leader writes a fence into the stream before it
//! publishes anything, and the stream refuses a stale leader's writes from then on.
//!
//! A node holding the lease reads the stream's last sequence `L`, then each channel's last
//! `seq` (where its sequences continue), then publishes the fence (subject `<prefix>.fence`,
//! body: the node's name) expecting the stream's last sequence to still be `L`. If it lands,
//! nothing was written between the read and the fence: the seeds are exact, and every later
//! message of the old leader is refused, because each of its messages expects its own previous
//! message to be the stream's last (`publish.rs`), which the fence no longer is. If the old
//! leader wrote in between, the fence is refused and the takeover reads again. So in the
//! stream every message after the fence is the new leader's, every one before it the old
//! leader's: not one event of the old leader lands after the new leader's first, whatever the
//! network delays, which a header that edges check (a lease revision) could not ensure for
//! the stream itself, its history reads or the next takeover's seeds.

use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::context::PublishErrorKind;
use bytes::Bytes;

use super::publish::Fence;
use super::{ClusterError, Nats, subject};
use crate::model::{ChannelId, Symbols};

/// Where a new leader starts: each channel's last `seq`, and its fence.
pub(crate) struct Takeover {
    pub seeds: Vec<(ChannelId, u64)>,
    pub fence: Fence,
}

impl Nats {
    /// Reads the stream's state and fences it for `node` (this process's unique name). A
    /// stream that moved while it was read (the old leader's last messages landing) is an
    /// error to retry.
    pub async fn take_over(&self, symbols: &Symbols, node: &str) -> Result<Takeover, ClusterError> {
        let last = self
            .stream
            .get_info()
            .await
            .map_err(ClusterError::js)?
            .state
            .last_sequence;
        let seeds = self.last_seqs(symbols).await?;
        // Unique per node and position: a fence is never taken for another's duplicate.
        let msg_id = format!("{}:fence:{node}:{last}", self.epoch);
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, msg_id.as_str());
        headers.insert(NATS_EXPECTED_LAST_SEQUENCE, last.to_string().as_str());
        let ack = self
            .js
            .publish_with_headers(
                subject::fence(&self.prefix),
                headers,
                Bytes::from(node.to_owned()),
            )
            .await
            .map_err(ClusterError::js)?
            .await
            .map_err(|e| match e.kind() {
                PublishErrorKind::WrongLastSequence => ClusterError::JetStream(format!(
                    "the stream moved past {last} while this node read it (the old leader's last messages); reading again"
                )),
                _ => ClusterError::js(e),
            })?;
        if ack.duplicate {
            return Err(ClusterError::JetStream(
                "the fence was taken for a duplicate; reading again".into(),
            ));
        }
        tracing::info!(
            stream_seq = ack.sequence,
            after = last,
            "takeover: stream fenced"
        );
        Ok(Takeover {
            seeds,
            fence: Fence {
                stream_seq: ack.sequence,
                msg_id,
                token: ack.sequence,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::cluster::lease::LeaseClock;
    use crate::cluster::publish::StreamPublisher;
    use crate::cluster::publish::tests::event;
    use crate::cluster::tests::{config, nats};
    use crate::cluster::{SEQ_HEADER, stream_config};
    use crate::model::{Event, Kind, SymbolId};
    use crate::rooms::EventSink;
    use crate::telemetry::metrics::Metrics;

    fn events(symbol: SymbolId, seqs: std::ops::RangeInclusive<u64>) -> Vec<Event> {
        seqs.map(|s| event(symbol, s, 10)).collect()
    }

    /// A leader of its own lease clock (held for a minute), armed by its takeover.
    async fn leader(nats: &Nats, symbols: &Arc<Symbols>, name: &str) -> Leader {
        let clock = LeaseClock::new();
        clock.hold_until(tokio::time::Instant::now() + Duration::from_secs(60));
        let publisher = StreamPublisher::new(
            nats.prefix.clone(),
            nats.epoch,
            1 << 20,
            symbols.clone(),
            Arc::new(Metrics::default()),
            clock.clone(),
        );
        let takeover = nats.take_over(symbols, name).await.expect("fenced");
        let seeds = takeover.seeds.clone();
        publisher.arm(takeover.fence);
        let task = tokio::spawn(
            publisher
                .clone()
                .run(nats.js.clone(), CancellationToken::new()),
        );
        Leader {
            clock,
            publisher,
            task,
            seeds,
        }
    }

    struct Leader {
        clock: Arc<LeaseClock>,
        publisher: Arc<StreamPublisher>,
        task: tokio::task::JoinHandle<()>,
        seeds: Vec<(ChannelId, u64)>,
    }

    async fn last_seq(nats: &Nats) -> u64 {
        let info = nats.stream.get_info().await.expect("info");
        info.state.last_sequence
    }

    async fn wait_last(nats: &Nats, want: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let last = last_seq(nats).await;
            if last == want {
                return;
            }
            assert!(last < want, "the stream went past {want}: {last}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "stream stuck at {last}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The stream's messages: (subject, Tickcast-Seq, message id).
    async fn messages(nats: &Nats) -> Vec<(String, Option<u64>, String)> {
        let last = last_seq(nats).await;
        let mut out = Vec::new();
        for seq in 1..=last {
            let m = nats.stream.get_raw_message(seq).await.expect("message");
            let id = m
                .headers
                .get(NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let seq = m
                .headers
                .get(SEQ_HEADER)
                .and_then(|v| v.as_str().parse().ok());
            out.push((m.subject.to_string(), seq, id));
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_leaders_writes_after_the_fence_are_refused_and_depose_it() {
        let cfg = config("fence");
        let js = nats().await;
        let stream = js
            .get_or_create_stream(stream_config(&cfg))
            .await
            .expect("stream");
        let nats = Nats {
            js: js.clone(),
            stream,
            prefix: cfg.subject_prefix.clone(),
            epoch: 1,
        };
        let symbols = Arc::new(Symbols::new(8));
        let fen = symbols.intern("FEN").expect("symbol");
        let channel = ChannelId {
            kind: Kind::Ticks,
            symbol: fen,
        };

        let old = leader(&nats, &symbols, "old").await;
        assert!(old.seeds.is_empty());
        old.publisher.publish(&events(fen, 1..=3));
        wait_last(&nats, 4).await;

        // The old leader's lease expired without it knowing; a new leader fences the stream and
        // continues after the old one's last event.
        let new = leader(&nats, &symbols, "new").await;
        assert_eq!(new.seeds, vec![(channel, 3)]);
        // The old leader's next window is refused whole, although its second message expects
        // the stream's last sequence that the fence happens to have made right: each one also
        // expects its predecessor's id. The old leader is deposed and drops what it holds.
        old.publisher.publish(&events(fen, 4..=6));
        tokio::time::timeout(Duration::from_secs(10), old.clock.deposed().cancelled())
            .await
            .expect("the old leader is deposed");
        tokio::time::timeout(Duration::from_secs(10), old.task)
            .await
            .expect("the old publisher stops")
            .expect("task");
        assert!(!old.clock.valid());
        old.publisher.publish(&events(fen, 7..=7));

        new.publisher.publish(&events(fen, 4..=5));
        wait_last(&nats, 7).await;
        let got = messages(&nats).await;
        let fence = subject::fence(&nats.prefix);
        let ticks = subject::subject(&nats.prefix, Kind::Ticks, "FEN");
        let shape: Vec<(&str, Option<u64>)> =
            got.iter().map(|(s, q, _)| (s.as_str(), *q)).collect();
        assert_eq!(
            shape,
            [
                (fence.as_str(), None),
                (ticks.as_str(), Some(1)),
                (ticks.as_str(), Some(2)),
                (ticks.as_str(), Some(3)),
                (fence.as_str(), None),
                (ticks.as_str(), Some(4)),
                (ticks.as_str(), Some(5)),
            ],
            "{got:?}"
        );
        // Each leadership's ids carry its fence's stream sequence.
        assert!(got[1].2.starts_with("1:1:"), "{got:?}");
        assert!(got[5].2.starts_with("1:5:"), "{got:?}");
        assert!(new.clock.valid() && !new.clock.deposed().is_cancelled());
        let _ = js.delete_stream(&cfg.stream).await;
    }
}
