//! Who a room holds: a connection's identity inside the hub and its registration in a channel.
//! A leaf of `rooms`, so the hub and its rooms both use it without importing each other.

use std::sync::Arc;
use std::time::Duration;

use super::Outbox;

/// A connection's identity inside the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// One connection registered in a channel (or a kind's wildcard room).
#[derive(Debug, Clone)]
pub(super) struct Subscriber {
    pub(super) conn: ConnId,
    pub(super) outbox: Arc<Outbox>,
    pub(super) throttle: Option<Duration>,
}
