//! Several nodes over NATS JetStream (`[cluster]`, `tickcast serve --role`).
//!
//! - `ingest` nodes run feeds, the sequencer, the pipeline and the recorder, and publish every
//!   sequenced, already-encoded event to one JetStream stream, one subject per channel
//!   (`publish.rs`). Only the node holding the lease in a KV bucket runs its feeds; another
//!   stands by and, when the lease expires, fences the stream and continues each channel's
//!   `seq` from the stream's last message (`lease.rs`, `takeover.rs`).
//! - `edge` nodes fill their rings from the stream and fan out to their sockets exactly as a
//!   single node does (`edge.rs`); a resume older than the ring is served from the stream
//!   (`history.rs`).
//!
//! The stream is the one sequence: `seq` is assigned once, at ingest, and the epoch every node
//! reports is the stream's creation time, so a client resumes on any edge and across an ingest
//! failover. `subject.rs` maps channels to subjects; the message body is the event's wire JSON,
//! with its `seq` in a header.

pub mod config;
mod edge;
mod history;
mod lease;
mod publish;
mod subject;
mod takeover;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};

pub use config::{ClusterConfig, Role};
pub(crate) use edge::{EdgeIntake, run_edge};
pub(crate) use history::StreamHistory;
pub(crate) use lease::{Leadership, LeaseClock, run_lease};
pub(crate) use publish::StreamPublisher;

/// The header carrying an event's channel `seq` (the body is the event's JSON).
pub(crate) const SEQ_HEADER: &str = "Tickcast-Seq";

/// The channel `seq` a stream message carries in [`SEQ_HEADER`], if it is one of ours.
pub(crate) fn header_seq(headers: Option<&async_nats::HeaderMap>) -> Option<u64> {
    headers?.get(SEQ_HEADER)?.as_str().parse().ok()
}

/// What can go wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {url} (cluster.nats_url) within {waited_ms} ms: {message}")]
    Connect {
        url: String,
        waited_ms: u64,
        message: String,
    },
    #[error("JetStream stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error("JetStream: {0}")]
    JetStream(String),
}

impl ClusterError {
    fn js(e: impl std::fmt::Display) -> Self {
        ClusterError::JetStream(e.to_string())
    }
}

/// Where this node stands, for `/readyz` and the metrics.
#[derive(Debug)]
pub struct ClusterStatus {
    pub role: Role,
    connected: AtomicBool,
    /// Ingest: standby (0) or leader (1). Edge: catching up (0) or live (1).
    state: AtomicU8,
}

impl ClusterStatus {
    pub fn new(role: Role) -> Self {
        Self {
            role,
            connected: AtomicBool::new(role == Role::All),
            state: AtomicU8::new(u8::from(role == Role::All)),
        }
    }

    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn set_active(&self, active: bool) {
        self.state.store(u8::from(active), Ordering::Release);
    }

    /// Ingest: holds the lease. Edge: caught up with the stream.
    pub fn active(&self) -> bool {
        self.state.load(Ordering::Acquire) == 1
    }

    /// Whether this node sequences ticks: a single node, or the ingest leader.
    pub fn leads_ingest(&self) -> bool {
        self.role == Role::All || (self.role == Role::Ingest && self.active())
    }

    /// The `/readyz` check: ready when NATS is up and the node does its job (an ingest
    /// standby is ready: it stands by as asked).
    pub fn check(&self) -> Value {
        let state = match (self.role, self.active()) {
            (Role::All, _) => "single",
            (Role::Ingest, true) => "leader",
            (Role::Ingest, false) => "standby",
            (Role::Edge, true) => "live",
            (Role::Edge, false) => "catching_up",
        };
        let ok = self.role == Role::All
            || (self.connected() && (self.role == Role::Ingest || self.active()));
        json!({"ok": ok, "role": self.role.as_str(), "state": state,
               "nats": if self.role == Role::All { "unused" }
                       else if self.connected() { "connected" } else { "disconnected" }})
    }
}

/// A JetStream connection and the stream of events.
pub(crate) struct Nats {
    pub js: jetstream::Context,
    pub stream: jetstream::stream::Stream,
    pub prefix: String,
    /// The stream's creation time in µs: the epoch of every `seq` in it.
    pub epoch: i64,
}

impl Nats {
    /// Connects (waiting up to `cluster.connect_timeout_ms`) and opens the stream; ingest
    /// creates it when missing, an edge waits for it within the same time.
    pub async fn connect(
        cfg: &ClusterConfig,
        status: Arc<ClusterStatus>,
    ) -> Result<Nats, ClusterError> {
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_millis(cfg.connect_timeout_ms);
        let waited = || started.elapsed().as_millis() as u64;
        // The URL may carry a user's password or a token: only its redacted form is logged.
        let log_url = crate::redact::url(&cfg.nats_url);
        let client = loop {
            let status = status.clone();
            let options = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_millis(cfg.connect_timeout_ms.min(2_000)))
                .event_callback(move |event| {
                    let status = status.clone();
                    async move {
                        match event {
                            async_nats::Event::Connected => {
                                tracing::info!("nats connected");
                                status.set_connected(true);
                            }
                            async_nats::Event::Disconnected => {
                                tracing::warn!("nats disconnected; reconnecting");
                                status.set_connected(false);
                            }
                            other => tracing::debug!(event = %other, "nats event"),
                        }
                    }
                });
            match options.connect(cfg.nats_url.as_str()).await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(ClusterError::Connect {
                        url: crate::redact::url(&cfg.nats_url),
                        waited_ms: waited(),
                        message: e.to_string(),
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, url = %log_url, "nats not reachable yet");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        status.set_connected(true);
        let js = jetstream::new(client);
        let prefix = cfg.subject_prefix.clone();
        let stream = loop {
            let got = if cfg.role == Role::Ingest {
                js.get_or_create_stream(stream_config(cfg))
                    .await
                    .map_err(|e| e.to_string())
            } else {
                js.get_stream(&cfg.stream).await.map_err(|e| e.to_string())
            };
            match got {
                Ok(s) => break s,
                Err(message) if tokio::time::Instant::now() >= deadline => {
                    return Err(ClusterError::Stream {
                        stream: cfg.stream.clone(),
                        message: format!(
                            "{message} (an edge waits for an ingest node to create it)"
                        ),
                    });
                }
                Err(message) => {
                    tracing::warn!(stream = %cfg.stream, %message, "stream not available yet");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        let created = stream.cached_info().created;
        let epoch = (created.unix_timestamp_nanos() / 1_000) as i64;
        tracing::info!(stream = %cfg.stream, epoch, role = cfg.role.as_str(), "cluster stream open");
        Ok(Nats {
            js,
            stream,
            prefix,
            epoch,
        })
    }
}

impl Nats {
    /// The last `seq` of every channel the stream holds, for a new leader to continue from.
    pub async fn last_seqs(
        &self,
        symbols: &crate::model::Symbols,
    ) -> Result<Vec<(crate::model::ChannelId, u64)>, ClusterError> {
        use futures_util::StreamExt;
        let mut subjects = self
            .stream
            .info_with_subjects(subject::all(&self.prefix))
            .await
            .map_err(ClusterError::js)?;
        let mut names = Vec::new();
        while let Some(entry) = subjects.next().await {
            names.push(entry.map_err(ClusterError::js)?.0);
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let Some((kind, symbol)) = subject::parse(&self.prefix, &name) else {
                continue;
            };
            let last = self
                .stream
                .get_last_raw_message_by_subject(&name)
                .await
                .map_err(ClusterError::js)?;
            let Some(seq) = header_seq(Some(&last.headers)) else {
                continue;
            };
            match symbols.intern(&symbol) {
                Ok(id) => out.push((crate::model::ChannelId { kind, symbol: id }, seq)),
                Err(error) => tracing::warn!(%error, %symbol, "takeover: channel not continued"),
            }
        }
        Ok(out)
    }
}

fn stream_config(cfg: &ClusterConfig) -> jetstream::stream::Config {
    let max_age = Duration::from_millis(cfg.max_age_ms);
    jetstream::stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![subject::all(&cfg.subject_prefix)],
        max_age,
        max_bytes: i64::try_from(cfg.max_bytes).unwrap_or(i64::MAX),
        storage: jetstream::stream::StorageType::File,
        num_replicas: cfg.replicas,
        // Ingest sets a message id per (epoch, leadership, channel, seq): a retried publish is
        // dropped by the server within this window. A deposed leader's is refused by the
        // fence (`takeover.rs`).
        duplicate_window: max_age.min(Duration::from_secs(120)),
        discard: jetstream::stream::DiscardPolicy::Old,
        allow_direct: true,
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The machine's NATS server (tests use the real one, on its standard port).
    pub(crate) async fn nats() -> jetstream::Context {
        let client = async_nats::connect("nats://127.0.0.1:4222")
            .await
            .expect("NATS with JetStream at 127.0.0.1:4222");
        jetstream::new(client)
    }

    /// An ingest node's settings with a stream, prefix and lease bucket of this test's own.
    pub(crate) fn config(tag: &str) -> ClusterConfig {
        let id = format!("{tag}{}x{}", std::process::id(), crate::model::now_ns());
        ClusterConfig {
            role: Role::Ingest,
            nats_url: "nats://127.0.0.1:4222".into(),
            connect_timeout_ms: 5_000,
            stream: format!("T{id}"),
            subject_prefix: format!("t{id}"),
            max_age_ms: 600_000,
            max_bytes: 1 << 24,
            replicas: 1,
            lease_bucket: format!("L{id}"),
            lease_ttl_ms: 2_000,
            lease_margin_ms: 500,
            publish_buffer_bytes: 1 << 20,
            warm_ms: 0,
            resume_max_events: 1_000,
            resume_max_reads: 16,
        }
    }
}
