//! The node's role (`cluster.role`): a single node, an ingest node or an edge.

use std::sync::Arc;

use crate::cluster::Nats;

/// This node's place in a cluster (`cluster.role`): where its events come from and go to.
pub(super) enum Node {
    /// Everything in one process, no NATS.
    Single,
    /// Sequences and publishes to the stream (feeds only while it holds the lease).
    Ingest(Arc<Nats>),
    /// Serves sockets and REST from the stream.
    Edge(Arc<Nats>),
}

impl Node {
    pub(super) fn nats(&self) -> Option<&Arc<Nats>> {
        match self {
            Node::Single => None,
            Node::Ingest(n) | Node::Edge(n) => Some(n),
        }
    }

    pub(super) fn is_edge(&self) -> bool {
        matches!(self, Node::Edge(_))
    }
}
