//! Which ingest node runs the feeds: a lease, the key `leader` in the JetStream KV bucket
//! `cluster.lease_bucket`, whose entries expire after `cluster.lease_ttl_ms` (the bucket's
//! `max_age`).
//!
//! A standby tries to create the key every third of the TTL; creation succeeds only when the
//! key does not exist, that is when no leader renewed it for a whole TTL (or the leader deleted
//! it on a clean stop). The leader renews it every third of the TTL with the revision it last
//! wrote (compare-and-set). A leader that finds another node's lease, or cannot renew for a
//! whole TTL, is deposed: it must stop publishing at once, so [`Leadership::lost`] fires and
//! the process stops (a supervisor restarts it as a standby).
//!
//! The bucket's stream is created here with the KV conventions (`KV_<bucket>`, subjects
//! `$KV.<bucket>.>`, one message per key), because the client's `create_key_value` asks for
//! account information in a shape NATS 2.9 does not send; every operation on it is the
//! client's KV API. A leader whose key merely expired while NATS was away takes it again if it can.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{ClusterConfig, ClusterError, ClusterStatus};
use crate::telemetry::metrics::Metrics;

const KEY: &str = "leader";

/// The lease key in its bucket.
struct Entry {
    kv: kv::Store,
}

/// Why a compare-and-set did not land.
enum Cas {
    /// The key is not at the expected revision: someone else wrote it (or it expired).
    Conflict,
    /// NATS did not answer.
    Unreachable(String),
}

impl Entry {
    /// Writes `value` if the key is at revision `expected` (0: absent); its new revision.
    async fn put_if(&self, value: &Bytes, expected: u64) -> Result<u64, Cas> {
        if expected == 0 {
            return self.kv.create(KEY, value.clone()).await.map_err(|e| {
                if e.kind() == kv::CreateErrorKind::AlreadyExists {
                    Cas::Conflict
                } else {
                    Cas::Unreachable(e.to_string())
                }
            });
        }
        self.kv
            .update(KEY, value.clone(), expected)
            .await
            .map_err(|e| {
                if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                    Cas::Conflict
                } else {
                    Cas::Unreachable(e.to_string())
                }
            })
    }

    /// Hands the lease over now (a delete marker at our revision) instead of after a TTL.
    async fn release(&self, revision: u64) {
        let _ = self.kv.delete_expect_revision(KEY, Some(revision)).await;
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
    let bucket = &cfg.lease_bucket;
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: cfg.lease_ttl(),
        storage: stream::StorageType::File,
        num_replicas: cfg.replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(ClusterError::js)?;
    let store = Entry {
        kv: js.get_key_value(bucket).await.map_err(ClusterError::js)?,
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
    let deposed = loop {
        tokio::select! {
            _ = stop.cancelled() => {
                // A clean stop hands the lease over at once instead of after a TTL.
                store.release(revision).await;
                break false;
            }
            _ = tokio::time::sleep(tick) => {}
        }
        let renewal = match store.put_if(&value, revision).await {
            // Our entry is gone (it expired while NATS was away): take it again if nobody has.
            Err(Cas::Conflict) => {
                tracing::warn!("lease: our entry is gone; taking it again if it is free");
                store.put_if(&value, 0).await
            }
            other => other,
        };
        match renewal {
            Ok(rev) => {
                revision = rev;
                renewed = tokio::time::Instant::now();
            }
            Err(Cas::Unreachable(_)) if renewed.elapsed() < ttl => {}
            Err(Cas::Unreachable(error)) => {
                tracing::error!(%error, "lease: not renewed for a whole TTL; this node steps down");
                break true;
            }
            Err(Cas::Conflict) => {
                tracing::error!("lease: another node holds the lease; this node steps down");
                break true;
            }
        }
    };
    metrics.cluster_leader.store(0, Ordering::Relaxed);
    status.set_active(false);
    if deposed {
        lost.cancel();
    }
}
