//! Open connections per user on this node, for the token's `limits.connections`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Principal;

/// A user already holds every connection its token allows.
#[derive(Debug, thiserror::Error)]
#[error("{user} already holds the {limit} connections its token allows")]
pub struct ConnectionsExhausted {
    user: String,
    limit: usize,
}

/// Every authenticated connection holds a [`UserSlot`]; the count is what `limits.connections`
/// bounds.
#[derive(Debug, Default, Clone)]
pub struct UserConnections(Arc<Mutex<HashMap<String, usize>>>);

/// One authenticated connection of a user; dropping it frees the slot.
#[derive(Debug)]
pub struct UserSlot {
    users: UserConnections,
    user: String,
}

impl UserConnections {
    /// A slot for the token's user, unless it already holds `limits.connections`.
    pub fn acquire(&self, p: &Principal) -> Result<UserSlot, ConnectionsExhausted> {
        self.try_acquire(&p.user, p.limits.connections)
            .ok_or_else(|| ConnectionsExhausted {
                user: p.user.clone(),
                limit: p.limits.connections.unwrap_or_default(),
            })
    }

    /// A slot for `user`, unless it already holds `limit` connections.
    fn try_acquire(&self, user: &str, limit: Option<usize>) -> Option<UserSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(user.to_owned()).or_insert(0);
        if limit.is_some_and(|l| *n >= l) {
            return None;
        }
        *n += 1;
        Some(UserSlot {
            users: self.clone(),
            user: user.to_owned(),
        })
    }

    #[cfg(test)]
    fn held(&self, user: &str) -> usize {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(user).copied().unwrap_or(0)
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut map = self.users.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_user_and_free_on_drop() {
        let users = UserConnections::default();
        let a = users.try_acquire("alice", Some(2)).unwrap();
        let b = users.try_acquire("alice", Some(2)).unwrap();
        assert!(users.try_acquire("alice", Some(2)).is_none());
        // Another user, or no limit, is not affected.
        let _c = users.try_acquire("bob", Some(1)).unwrap();
        let d = users.try_acquire("alice", None).unwrap();
        drop((a, b, d));
        assert_eq!(users.held("alice"), 0);
        assert!(users.try_acquire("alice", Some(1)).is_some());
    }
}
