//! Which ingest node runs the feeds: a lease, the one message on `<bucket>.leader` in a small
//! JetStream stream (`cluster.lease_bucket`) whose messages expire after `cluster.lease_ttl_ms`:
//! a key-value entry with a TTL, built on the stream primitives directly (the KV API of the
//! client needs a newer server than some deployments run; this works on NATS 2.9 and later).
//!
//! A standby tries to create the entry every third of the TTL: a publish that expects the
//! subject to be empty (`Nats-Expected-Last-Subject-Sequence: 0`), so it succeeds only when no
//! leader renewed it for a whole TTL. The leader renews it every third of the TTL with a
//! publish that expects its own last message (compare-and-set). A leader that finds
//! another node's lease, or cannot renew for a whole TTL, is deposed: it must stop publishing
//! at once, so [`Leadership::lost`] fires and the process stops (a supervisor restarts it as a
//! standby). A leader whose key merely expired while NATS was away takes it again if it can.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{ClusterConfig, ClusterError, ClusterStatus};
use crate::telemetry::metrics::Metrics;

/// The lease entry: a stream holding at most one message on one subject.
struct Entry {
    js: jetstream::Context,
    stream: stream::Stream,
    subject: String,
}

/// Why a compare-and-set publish did not land.
enum Cas {
    /// The subject's last message is not the one expected: someone else wrote (or it expired).
    Conflict,
    /// NATS did not answer.
    Unreachable(String),
}

impl Entry {
    /// Writes `value` if the subject's last message is `expected` (0: none); its new revision.
    async fn put_if(&self, value: &Bytes, expected: u64) -> Result<u64, Cas> {
        let mut h = HeaderMap::new();
        h.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        let ack = self
            .js
            .publish_with_headers(self.subject.clone(), h, value.clone())
            .await
            .map_err(|e| Cas::Unreachable(e.to_string()))?;
        match ack.await {
            Ok(a) => Ok(a.sequence),
            Err(e) => {
                let text = e.to_string();
                // JetStream answers "wrong last sequence" (error 10071) to a failed CAS.
                if text.contains("wrong last sequence") || text.contains("10071") {
                    Err(Cas::Conflict)
                } else {
                    Err(Cas::Unreachable(text))
                }
            }
        }
    }

    async fn release(&self, revision: u64) {
        let _ = self.stream.delete_message(revision).await;
    }
}

/// What the lease task tells the node.
#[derive(Clone)]
pub(crate) struct Leadership {
    /// True once this node holds the lease.
    pub acquired: watch::Receiver<bool>,
    /// Cancelled when this node lost the lease it held.
    pub lost: CancellationToken,
}

/// Opens the lease bucket and starts competing for the lease.
pub(crate) async fn run_lease(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
    node: String,
    status: Arc<ClusterStatus>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<Leadership, ClusterError> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: cfg.lease_bucket.clone(),
            subjects: vec![format!("{}.leader", cfg.lease_bucket)],
            max_messages_per_subject: 1,
            max_age: cfg.lease_ttl(),
            storage: stream::StorageType::File,
            num_replicas: cfg.replicas,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await
        .map_err(ClusterError::js)?;
    let store = Entry {
        js: js.clone(),
        stream,
        subject: format!("{}.leader", cfg.lease_bucket),
    };
    let (tx, acquired) = watch::channel(false);
    let lost = CancellationToken::new();
    let ttl = cfg.lease_ttl();
    tokio::spawn(compete(
        store,
        node,
        ttl,
        tx,
        lost.clone(),
        status,
        metrics,
        stop,
    ));
    Ok(Leadership { acquired, lost })
}

#[allow(clippy::too_many_arguments)]
async fn compete(
    store: Entry,
    node: String,
    ttl: Duration,
    acquired: watch::Sender<bool>,
    lost: CancellationToken,
    status: Arc<ClusterStatus>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let tick = ttl / 3;
    let value = Bytes::from(node.clone());
    // Standby: try to take the lease until it is free.
    let mut revision = loop {
        match store.put_if(&value, 0).await {
            Ok(rev) => break rev,
            Err(Cas::Conflict) => {}
            Err(Cas::Unreachable(error)) => tracing::warn!(%error, "lease: NATS did not answer"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    };
    tracing::info!(node = %node, "lease acquired: this node leads ingest");
    metrics
        .cluster_leadership_changes
        .fetch_add(1, Ordering::Relaxed);
    metrics.cluster_leader.store(1, Ordering::Relaxed);
    status.set_active(true);
    let _ = acquired.send(true);
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                // A clean stop hands the lease over at once instead of after a TTL.
                store.release(revision).await;
                metrics.cluster_leader.store(0, Ordering::Relaxed);
                status.set_active(false);
                return;
            }
            _ = tokio::time::sleep(tick) => {}
        }
        match store.put_if(&value, revision).await {
            Ok(rev) => {
                revision = rev;
                renewed = tokio::time::Instant::now();
                continue;
            }
            Err(Cas::Unreachable(_)) if renewed.elapsed() < ttl => continue,
            Err(Cas::Unreachable(error)) => {
                tracing::error!(%error, "lease: not renewed for a whole TTL; this node steps down");
                break;
            }
            Err(Cas::Conflict) => {}
        }
        // Our entry is gone (it expired while NATS was away): take it again if nobody has.
        match store.put_if(&value, 0).await {
            Ok(rev) => {
                revision = rev;
                renewed = tokio::time::Instant::now();
                tracing::warn!("lease: expired entry taken again");
            }
            Err(Cas::Conflict) => {
                tracing::error!("lease: another node holds the lease; this node steps down");
                break;
            }
            Err(Cas::Unreachable(_)) if renewed.elapsed() < ttl => {}
            Err(Cas::Unreachable(error)) => {
                tracing::error!(%error, "lease: not renewed for a whole TTL; this node steps down");
                break;
            }
        }
    }
    metrics.cluster_leader.store(0, Ordering::Relaxed);
    status.set_active(false);
    lost.cancel();
}
