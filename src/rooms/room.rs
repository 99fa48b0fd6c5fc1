//! The subscribers of one channel, or of one wildcard kind: a dense list that fan-out walks, and
//! an index by connection, so joining and leaving cost O(1) instead of a walk over every
//! subscriber (a mass reconnect of n sockets would otherwise be O(n²) under the hub lock).

use std::collections::HashMap;

use super::conn::{ConnId, Subscriber};

#[derive(Debug, Default)]
pub(super) struct Room {
    subscribers: Vec<Subscriber>,
    /// Position of each connection in `subscribers`.
    at: HashMap<ConnId, usize>,
}

impl Room {
    /// Adds `sub`, replacing that connection's earlier entry (a new throttle, say).
    pub(super) fn insert(&mut self, sub: Subscriber) {
        match self.at.get(&sub.conn) {
            Some(&i) => self.subscribers[i] = sub,
            None => {
                self.at.insert(sub.conn, self.subscribers.len());
                self.subscribers.push(sub);
            }
        }
    }

    /// Removes the connection; false when it was not here. Order is not kept: fan-out order
    /// among subscribers means nothing.
    pub(super) fn remove(&mut self, conn: ConnId) -> bool {
        let Some(i) = self.at.remove(&conn) else {
            return false;
        };
        self.subscribers.swap_remove(i);
        if let Some(moved) = self.subscribers.get(i) {
            self.at.insert(moved.conn, i);
        }
        true
    }

    pub(super) fn len(&self) -> usize {
        self.subscribers.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }
}

impl<'a> IntoIterator for &'a Room {
    type Item = &'a Subscriber;
    type IntoIter = std::slice::Iter<'a, Subscriber>;

    fn into_iter(self) -> Self::IntoIter {
        self.subscribers.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::rooms::{Outbox, OutboxLimits};

    fn sub(conn: u64) -> Subscriber {
        Subscriber {
            conn: ConnId(conn),
            outbox: Arc::new(Outbox::new(OutboxLimits {
                max_events: 4,
                max_bytes: 1024,
                max_held_bytes: 1024,
            })),
            throttle: None,
        }
    }

    fn conns(room: &Room) -> Vec<u64> {
        let mut v: Vec<u64> = room.into_iter().map(|s| s.conn.0).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn insert_replaces_and_remove_keeps_the_index_true() {
        let mut room = Room::default();
        for c in 0..5 {
            room.insert(sub(c));
        }
        room.insert(sub(2));
        assert_eq!(room.len(), 5);
        assert!(
            room.remove(ConnId(0)),
            "the first, so the last moves into its place"
        );
        assert!(!room.remove(ConnId(0)));
        assert!(room.remove(ConnId(4)));
        assert!(room.remove(ConnId(2)));
        assert_eq!(conns(&room), vec![1, 3]);
        for (conn, &i) in &room.at {
            assert_eq!(
                room.subscribers[i].conn, *conn,
                "index points at its connection"
            );
        }
        assert!(room.remove(ConnId(1)) && room.remove(ConnId(3)));
        assert!(room.is_empty() && room.at.is_empty());
    }
}
