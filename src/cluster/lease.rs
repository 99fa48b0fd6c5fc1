//! Which ingest node runs the feeds: a lease, the key `leader` in the JetStream KV bucket
//! `cluster.lease_bucket`, whose entries expire after `cluster.lease_ttl_ms` (the bucket's
//! `max_age`).
//!
//! A standby tries to create the key every third of the time it may count on a write; creation
//! succeeds only when the key does not exist, that is when no leader renewed it for a whole TTL
//! (or the leader deleted it on a clean stop). The leader renews it with the revision it last
//! wrote (compare-and-set). When that fails on the revision, the stored entry is read: if it is
//! still ours (a renewal that landed but whose acknowledgement was lost), its revision is
//! adopted; another node's entry deposes this one.
//!
//! Fencing, the node's side: the [`LeaseClock`] holds a local deadline, the time the last
//! confirmed renewal was *sent* plus the TTL minus `cluster.lease_margin_ms`. The entry cannot
//! have expired before it (the server counts the TTL from when the write landed, which is after
//! it was sent), so no standby can have taken over. Nothing is published once it passes, and a
//! renewal still unanswered then deposes the node: [`Leadership::lost`] fires and the process
//! stops (a supervisor restarts it as a standby). The stream's side is in `takeover.rs`.
//!
//! The bucket's stream is created here with the KV conventions (`KV_<bucket>`, subjects
//! `$KV.<bucket>.>`, one message per key), because the client's `create_key_value` asks for
//! account information in a shape NATS 2.9 does not send; every operation on it is the
//! client's KV API.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ClusterConfig, ClusterError, ClusterStatus};
use crate::telemetry::metrics::Metrics;

const KEY: &str = "leader";

/// How long this node may still act as the ingest leader, shared by the lease task (which
/// extends it on each confirmed renewal) and the stream publisher (which sends nothing past it).
#[derive(Debug)]
pub(crate) struct LeaseClock {
    base: Instant,
    /// Nanoseconds after `base` until which the lease is surely ours; 0 while not held.
    until_ns: AtomicU64,
    /// Cancelled when this node must stop leading: lost, expired locally, or fenced by the stream.
    deposed: CancellationToken,
}

impl LeaseClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            until_ns: AtomicU64::new(0),
            deposed: CancellationToken::new(),
        })
    }

    pub(super) fn hold_until(&self, until: Instant) {
        let ns = until.saturating_duration_since(self.base).as_nanos();
        self.until_ns.store(
            u64::try_from(ns).unwrap_or(u64::MAX).max(1),
            Ordering::Release,
        );
    }

    /// The local deadline (`base` while the lease is not held).
    fn deadline(&self) -> Instant {
        self.base + Duration::from_nanos(self.until_ns.load(Ordering::Acquire))
    }

    /// Whether this node surely holds the lease now: held, not deposed, before the deadline.
    pub fn valid(&self) -> bool {
        self.until_ns.load(Ordering::Acquire) != 0
            && !self.deposed.is_cancelled()
            && Instant::now() < self.deadline()
    }

    /// Stops this node's leadership for good (idempotent).
    pub fn depose(&self) {
        self.until_ns.store(0, Ordering::Release);
        self.deposed.cancel();
    }

    pub fn deposed(&self) -> &CancellationToken {
        &self.deposed
    }
}

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

    /// Renews our entry at `revision`. A revision that moved on may be our own earlier renewal
    /// whose acknowledgement was lost: if the stored entry still holds `value` (this node's
    /// unique name), its revision is adopted and the renewal made on it.
    async fn renew(&self, value: &Bytes, revision: u64) -> Result<u64, Cas> {
        match self.put_if(value, revision).await {
            Err(Cas::Conflict) => match self.kv.entry(KEY).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put && e.value == *value => {
                    tracing::warn!(
                        expected = revision,
                        stored = e.revision,
                        "lease: our entry moved on (a renewal whose acknowledgement was lost); adopting it"
                    );
                    self.put_if(value, e.revision).await
                }
                Ok(_) => Err(Cas::Conflict),
                Err(e) => Err(Cas::Unreachable(e.to_string())),
            },
            other => other,
        }
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
    /// Cancelled when this node lost the lease it held (the clock's `deposed`).
    pub lost: CancellationToken,
}

/// The lease's timing: a write is counted on for `ttl - margin` after it was sent.
#[derive(Debug, Clone, Copy)]
struct Timing {
    ttl: Duration,
    margin: Duration,
}

impl Timing {
    fn held_for(self) -> Duration {
        self.ttl.saturating_sub(self.margin)
    }

    /// Renewals come three times per `held_for`: two in a row may go unanswered.
    fn tick(self) -> Duration {
        self.held_for() / 3
    }
}

/// Opens the lease bucket and starts competing for the lease; `node` must be unique to this
/// process (an entry holding it is taken as this node's own).
pub(crate) async fn run_lease(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
    node: String,
    clock: Arc<LeaseClock>,
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
    let lost = clock.deposed().clone();
    let timing = Timing {
        ttl: cfg.lease_ttl(),
        margin: cfg.lease_margin(),
    };
    tokio::spawn(compete(
        store,
        Bytes::from(node),
        timing,
        tx,
        clock,
        Node { status, metrics },
        stop,
    ));
    Ok(Leadership { acquired, lost })
}

/// Where the lease task reports.
struct Node {
    status: Arc<ClusterStatus>,
    metrics: Arc<Metrics>,
}

async fn compete(
    store: Entry,
    value: Bytes,
    timing: Timing,
    acquired: watch::Sender<bool>,
    clock: Arc<LeaseClock>,
    node: Node,
    stop: CancellationToken,
) {
    let tick = timing.tick();
    let name = String::from_utf8_lossy(&value).into_owned();
    // Standby: try to take the lease until it is free.
    let mut revision = loop {
        let sent = Instant::now();
        match store.put_if(&value, 0).await {
            Ok(rev) => {
                clock.hold_until(sent + timing.held_for());
                break rev;
            }
            Err(Cas::Conflict) => {}
            Err(Cas::Unreachable(error)) => tracing::warn!(%error, "lease: NATS did not answer"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    };
    tracing::info!(node = %name, revision, "lease acquired: this node leads ingest");
    node.metrics
        .cluster_leadership_changes
        .fetch_add(1, Ordering::Relaxed);
    node.metrics.cluster_leader.store(1, Ordering::Relaxed);
    // The node reports itself leader (and takes HTTP ingest) once its takeover is done.
    let _ = acquired.send(true);
    let deposed = loop {
        tokio::select! {
            _ = stop.cancelled() => {
                // A clean stop hands the lease over at once instead of after a TTL.
                store.release(revision).await;
                clock.until_ns.store(0, Ordering::Release);
                break false;
            }
            // The stream refused our write: another leader has published.
            _ = clock.deposed().cancelled() => break true,
            _ = tokio::time::sleep(tick) => {}
        }
        let sent = Instant::now();
        let deadline = clock.deadline();
        // A renewal still unanswered at the deadline is as good as lost: the entry may expire
        // any time after it, so this node steps down rather than wait for the client's timeout.
        match tokio::time::timeout_at(deadline, store.renew(&value, revision)).await {
            Ok(Ok(rev)) => {
                revision = rev;
                clock.hold_until(sent + timing.held_for());
            }
            Ok(Err(Cas::Unreachable(error))) if Instant::now() < deadline => {
                tracing::warn!(%error, "lease: renewal not answered; retrying before the deadline");
            }
            Ok(Err(Cas::Unreachable(_))) | Err(_) => {
                tracing::error!(
                    "lease: not renewed within cluster.lease_ttl_ms - cluster.lease_margin_ms; this node steps down"
                );
                break true;
            }
            Ok(Err(Cas::Conflict)) => {
                tracing::error!("lease: another node holds the lease; this node steps down");
                break true;
            }
        }
    };
    node.metrics.cluster_leader.store(0, Ordering::Relaxed);
    node.status.set_active(false);
    if deposed {
        clock.depose();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Role;
    use crate::cluster::tests::{config, nats};

    #[tokio::test]
    async fn a_renewal_whose_acknowledgement_was_lost_keeps_the_lease() {
        let js = nats().await;
        let cfg = ClusterConfig {
            lease_ttl_ms: 1_500,
            lease_margin_ms: 300,
            ..config("lease")
        };
        let bucket = cfg.lease_bucket.clone();
        let clock = LeaseClock::new();
        let stop = CancellationToken::new();
        let mut leadership = run_lease(
            &js,
            &cfg,
            "node-a".into(),
            clock.clone(),
            Arc::new(ClusterStatus::new(Role::Ingest)),
            Arc::new(Metrics::default()),
            stop.clone(),
        )
        .await
        .expect("lease bucket");
        tokio::time::timeout(Duration::from_secs(5), leadership.acquired.wait_for(|h| *h))
            .await
            .expect("acquired in time")
            .expect("lease task");
        assert!(clock.valid());

        // A renewal of ours landed but its acknowledgement was lost: the entry moved to a
        // revision the leader never heard of, still holding its name.
        let kv = js.get_key_value(&bucket).await.expect("bucket");
        let behind = kv.put(KEY, Bytes::from("node-a")).await.expect("put");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(
                !leadership.lost.is_cancelled(),
                "the leader gave up on its own entry"
            );
            let entry = kv.entry(KEY).await.expect("entry").expect("held");
            if entry.revision > behind && entry.value == "node-a" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never renewed on top of {behind}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(clock.valid(), "the lease holds on");

        // Another node's entry deposes it.
        kv.put(KEY, Bytes::from("node-b")).await.expect("put");
        tokio::time::timeout(Duration::from_secs(5), leadership.lost.cancelled())
            .await
            .expect("deposed in time");
        assert!(!clock.valid());
        stop.cancel();
        let _ = js.delete_stream(format!("KV_{bucket}")).await;
    }
}
