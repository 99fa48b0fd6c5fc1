//! The node's role (`cluster.role`): a single node, an ingest node or an edge, and every
//! difference the role makes to the server, in one place: where ingest's events go (its sink),
//! which feeds and stages run, where history older than the rings comes from, and the cluster's
//! own tasks (the stream publisher, the lease, the edge's intake).

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::feeds::{FeedStart, Takeover, build_feeds, lead_feeds};
use super::{Core, ServerError};
use crate::cluster::{self, ClusterError, ClusterStatus, LeaseClock, Nats, Role, StreamPublisher};
use crate::config::Config;
use crate::config_section::ms;
use crate::feed::Feed;
use crate::model::now_ns;
use crate::pipeline::LatestIndicators;
use crate::protocol::IndicatorFields;
use crate::rooms::{EventSink, Fanout};
use crate::ws::History;

/// This node's place in a cluster (`cluster.role`): where its events come from and go to.
pub(super) enum Node {
    /// Everything in one process, no NATS.
    Single,
    /// Sequences and publishes to the stream (feeds only while it holds the lease).
    Ingest(Arc<Nats>),
    /// Serves sockets and REST from the stream.
    Edge(Arc<Nats>),
}

/// An ingest node's stream publisher, and what stops its task.
pub(super) struct Publishing {
    pub(super) publisher: Arc<StreamPublisher>,
    pub(super) stop: CancellationToken,
    pub(super) task: JoinHandle<()>,
}

/// A node's cluster parts: the lease's clock, an ingest node's stream publisher, and what
/// stops the lease task and the edge's intake.
pub(super) struct ClusterParts {
    pub(super) lease_clock: Arc<LeaseClock>,
    pub(super) publishing: Option<Publishing>,
    /// Cancelled at shutdown once the stream has what ingest published.
    pub(super) stop: CancellationToken,
}

/// The feed tasks a node started, and what cancels when the node must stop by itself.
pub(super) struct StartedFeeds {
    pub(super) tasks: Vec<(&'static str, JoinHandle<()>)>,
    /// Cancelled when this node must stop by itself: an ingest node that lost its lease.
    pub(super) fatal: CancellationToken,
}

impl Node {
    /// The role `cluster.role` names, connected to NATS when it is a cluster's.
    pub(super) async fn connect(
        config: &Config,
        status: &Arc<ClusterStatus>,
    ) -> Result<Node, ClusterError> {
        Ok(match config.cluster.role {
            Role::All => Node::Single,
            Role::Ingest => Node::Ingest(Arc::new(
                Nats::connect(&config.cluster, status.clone()).await?,
            )),
            Role::Edge => Node::Edge(Arc::new(
                Nats::connect(&config.cluster, status.clone()).await?,
            )),
        })
    }

    /// Names the sequence: the WebSocket `ack` reports it, and stored ticks carry it so that
    /// (symbol, epoch, seq) identifies a tick although `seq` restarts with every run. A single
    /// node's run is its own sequence; a cluster's is its stream's.
    pub(super) fn epoch(&self) -> i64 {
        match self {
            Node::Single => now_ns() / 1_000,
            Node::Ingest(n) | Node::Edge(n) => n.epoch,
        }
    }

    /// An edge only serves what the stream brings: it runs no feeds, no pipeline and no
    /// retention (ingest deletes old rows), and sequences and records nothing.
    fn is_edge(&self) -> bool {
        matches!(self, Node::Edge(_))
    }

    /// The cluster's parts of this node. Ingest publishes to the stream as well; its task
    /// drains what ingest queues, while the lease (its clock, shared with the lease task) is
    /// surely this node's.
    pub(super) fn cluster_parts(&self, config: &Config, core: &Core, epoch: i64) -> ClusterParts {
        let lease_clock = LeaseClock::new();
        let publishing = match self {
            Node::Ingest(n) => {
                let publisher = StreamPublisher::new(
                    n.prefix.clone(),
                    epoch,
                    config.cluster.publish_buffer_bytes,
                    core.symbols.clone(),
                    core.metrics.clone(),
                    lease_clock.clone(),
                );
                let stop = CancellationToken::new();
                let task = tokio::spawn(publisher.clone().run(n.js.clone(), stop.clone()));
                Some(Publishing {
                    publisher,
                    stop,
                    task,
                })
            }
            Node::Single | Node::Edge(_) => None,
        };
        ClusterParts {
            lease_clock,
            publishing,
            stop: CancellationToken::new(),
        }
    }

    /// Where ingest's events go: the hub and the recorder, and the stream on an ingest node.
    /// An edge's hub is fed by the stream; nothing is sequenced or recorded there.
    pub(super) fn event_sink(&self, core: &Core, cluster: &ClusterParts) -> Arc<dyn EventSink> {
        match (self, &cluster.publishing) {
            (Node::Edge(_), _) => core.hub.clone(),
            (_, Some(p)) => Arc::new(Fanout(vec![
                core.hub.clone(),
                core.recorder.clone(),
                p.publisher.clone(),
            ])),
            (_, None) => Arc::new(Fanout(vec![core.hub.clone(), core.recorder.clone()])),
        }
    }

    /// The feeds `[feeds]` enables; none on an edge (its events come from the stream).
    pub(super) fn build_feeds(
        &self,
        config: &Config,
        core: &Core,
    ) -> Result<Vec<Box<dyn Feed>>, ServerError> {
        if self.is_edge() {
            return Ok(Vec::new());
        }
        build_feeds(config, &core.symbols)
    }

    /// Whether this node computes bars and indicators (`pipeline.enabled`, never on an edge).
    pub(super) fn runs_pipeline(&self, config: &Config) -> bool {
        config.pipeline.enabled && !self.is_edge()
    }

    /// History older than the rings: an edge reads the stream; other nodes have none.
    pub(super) fn history(&self, config: &Config, core: &Core) -> Option<Arc<dyn History>> {
        let Node::Edge(n) = self else { return None };
        Some(Arc::new(cluster::StreamHistory {
            nats: n.clone(),
            symbols: core.symbols.clone(),
            max_events: config.cluster.resume_max_events,
            max_reads: config.cluster.resume_max_reads,
            fields: IndicatorFields::new(&config.pipeline.periods()),
        }))
    }

    /// Deletes old rows until `stop`; edges read the shared database and leave that to ingest.
    pub(super) fn start_retention(
        &self,
        config: &Config,
        core: &Core,
        stop: &CancellationToken,
    ) -> Option<JoinHandle<()>> {
        (!self.is_edge()).then(|| {
            tokio::spawn(crate::store::retention::run(
                core.store.clone(),
                config.database.clone(),
                stop.clone(),
            ))
        })
    }

    /// Starts the feeds: at once on a single node; on an ingest node, behind the lease (they
    /// start once it holds the lease and fenced the stream); none on an edge.
    pub(super) async fn start_feeds(
        &self,
        config: &Config,
        core: &Core,
        start: FeedStart,
        feeds: Vec<Box<dyn Feed>>,
        addr: std::net::SocketAddr,
        cluster: &ClusterParts,
    ) -> Result<StartedFeeds, ServerError> {
        let n = match self {
            Node::Single => {
                return Ok(StartedFeeds {
                    tasks: start.spawn(feeds),
                    fatal: CancellationToken::new(),
                });
            }
            Node::Edge(_) => {
                return Ok(StartedFeeds {
                    tasks: Vec::new(),
                    fatal: CancellationToken::new(),
                });
            }
            Node::Ingest(n) => n,
        };
        // Unique to this process (containers share addresses and pids): the lease takes an
        // entry holding it for this node's own.
        let nonce = getrandom::u64().unwrap_or_else(|_| now_ns() as u64);
        let node = format!("{}:{}:{nonce:016x}", addr, std::process::id());
        let leadership = cluster::run_lease(
            &n.js,
            &config.cluster,
            node.clone(),
            cluster.lease_clock.clone(),
            core.status.clone(),
            core.metrics.clone(),
            cluster.stop.clone(),
        )
        .await?;
        let fatal = leadership.lost.clone();
        let task = tokio::spawn(lead_feeds(
            leadership,
            Takeover {
                nats: n.clone(),
                node,
                publisher: cluster.publishing.as_ref().map(|p| p.publisher.clone()),
                status: core.status.clone(),
            },
            core.symbols.clone(),
            start,
            feeds,
            config.book.checkpoint_ms,
        ));
        Ok(StartedFeeds {
            tasks: vec![("feeds (ingest leader)", task)],
            fatal,
        })
    }

    /// An edge's intake: the stream's events into the hub, the indicators and the books, until
    /// the cluster's stop. Nothing on other nodes.
    pub(super) fn start_edge_intake(
        &self,
        config: &Config,
        core: &Core,
        indicators: &Arc<LatestIndicators>,
        cluster: &ClusterParts,
    ) {
        let Node::Edge(n) = self else { return };
        tokio::spawn(cluster::run_edge(
            n.clone(),
            cluster::EdgeIntake {
                hub: core.hub.clone(),
                symbols: core.symbols.clone(),
                indicators: indicators.clone(),
                fields: IndicatorFields::new(&config.pipeline.periods()),
                status: core.status.clone(),
                metrics: core.metrics.clone(),
                warm: ms(config.cluster.warm_ms),
                book_depth: config.book.depth,
                books: Default::default(),
            },
            cluster.stop.clone(),
        ));
    }
}
