//! The private `portfolio` channel: each authenticated user's positions, valued at live prices,
//! as a sequenced stream of whole states.
//!
//! Every user has one channel in the hub ([`ChannelId::portfolio`]), so subscribe, snapshot,
//! resume (`from`), throttle and flow control are the hub's, exactly as for market channels. Its
//! events are sequenced here, per user, on this node (under the node's epoch), not by ingest,
//! and never leave the node (no recorder, no cluster stream). Each event is the whole portfolio,
//! so a snapshot is the latest event and a conflated or throttled subscriber loses only
//! intermediate states. An event is published:
//! - when a user subscribes and this node holds no state for it (`reason: "snapshot"`);
//! - when one of the user's trades is recorded through this node's REST API (`"trade"`, as soon
//!   as the trade's transaction has committed);
//! - at most every `portfolio.update_ms` while live prices change its valuation (`"prices"`).
//!
//! A user nobody has subscribed to for `portfolio.idle_ms` is forgotten: its ring is dropped and
//! only its last `seq` is kept, so a later resume gets `reset`, never a reused number.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Notify;

use super::{PortfolioOut, value};
use crate::config_section::{ConfigError, check};
use crate::model::{ChannelId, Event, Payload, Symbols, now_ns};
use crate::protocol;
use crate::rooms::{EventSink, Hub};
use crate::store::{PositionRow, Store, StoreError};

/// `[portfolio]`: the `portfolio` channel.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortfolioConfig {
    /// Price-driven updates: a user's valuation is recomputed at most this often, and published
    /// when it changed.
    pub update_ms: u64,
    /// Events kept per user for resume (each is a whole portfolio).
    pub ring_capacity: usize,
    /// A user without subscribers for this long is forgotten (its ring freed).
    pub idle_ms: u64,
}

impl PortfolioConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            (100..=60_000).contains(&self.update_ms),
            "portfolio.update_ms",
            "must be between 100 and 60000",
        )?;
        check(
            (1..=4096).contains(&self.ring_capacity),
            "portfolio.ring_capacity",
            "must be between 1 and 4096",
        )?;
        check(
            self.idle_ms >= self.update_ms,
            "portfolio.idle_ms",
            "must be at least portfolio.update_ms",
        )
    }
}

/// Why an event was published (its `reason` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Snapshot,
    Trade,
    Prices,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Snapshot => "snapshot",
            Reason::Trade => "trade",
            Reason::Prices => "prices",
        }
    }
}

/// Why a user's channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no user {0:?} on this server")]
    NoSuchUser(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every user's portfolio channel on this node.
#[derive(Debug)]
pub struct LivePortfolios {
    hub: Arc<Hub>,
    store: Arc<Store>,
    symbols: Arc<Symbols>,
    config: PortfolioConfig,
    users: Mutex<HashMap<u32, UserState>>,
    /// Users with a trade recorded since the task last looked.
    traded: Mutex<HashSet<u32>>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct UserState {
    /// The last `seq` published (kept when the user is forgotten).
    seq: u64,
    live: Option<Live>,
}

/// What is kept for a user someone subscribes to.
#[derive(Debug)]
struct Live {
    positions: Vec<PositionRow>,
    /// Fills in `positions`: only grows, so a read older than the kept one is not published.
    trades: i64,
    /// The last published body, to publish price updates only when something changed.
    body: Vec<u8>,
    /// Since when the channel has had no subscriber.
    idle_since: Option<Instant>,
}

impl LivePortfolios {
    pub fn new(
        hub: Arc<Hub>,
        store: Arc<Store>,
        symbols: Arc<Symbols>,
        config: PortfolioConfig,
    ) -> Self {
        Self {
            hub,
            store,
            symbols,
            config,
            users: Mutex::new(HashMap::new()),
            traded: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        }
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<u32, UserState>> {
        // Every change leaves the map consistent before it could panic.
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user's channel, with its current state published if this node had none, so that a
    /// subscribe made next finds its snapshot in the ring.
    pub async fn open(&self, user_name: &str) -> Result<ChannelId, OpenError> {
        let id = self
            .store
            .user_id(user_name)
            .await?
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| OpenError::NoSuchUser(user_name.to_owned()))?;
        let ch = ChannelId::portfolio(id);
        {
            let mut users = self.users();
            if let Some(live) = users.get_mut(&id).and_then(|u| u.live.as_mut()) {
                // Touched: not forgotten before the subscribe that follows registers.
                live.idle_since = None;
                return Ok(ch);
            }
        }
        let positions = self.store.positions(i64::from(id), super::fold).await?;
        self.publish(id, positions, Reason::Snapshot);
        Ok(ch)
    }

    /// A trade of `user` was recorded: its subscribers get the new state.
    pub fn trade_recorded(&self, user: i64) {
        let Ok(id) = u32::try_from(user) else { return };
        if self.users().get(&id).is_none_or(|u| u.live.is_none()) {
            return; // nobody here watches it; a later subscribe reads the store
        }
        self.traded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        self.wake.notify_one();
    }

    /// Publishes the user's state from `positions`, unless a newer one was already published
    /// (`Prices`: unless nothing changed).
    fn publish(&self, id: u32, positions: Vec<PositionRow>, reason: Reason) {
        let trades: i64 = positions.iter().map(|p| p.trades).sum();
        let valuation = value(positions.clone(), |s| {
            super::live_price(&self.symbols, &self.hub, s)
        });
        let out = PortfolioOut::from(valuation);
        let body = match serde_json::to_vec(&out) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(user = id, error = %e, "portfolio not encodable");
                return;
            }
        };
        let mut users = self.users();
        let user = users.entry(id).or_default();
        if let Some(live) = &user.live {
            if trades < live.trades {
                return; // read before a trade that is already published
            }
            if reason == Reason::Prices && live.body == body {
                return;
            }
        }
        user.seq += 1;
        let seq = user.seq;
        let idle_since = user.live.as_ref().and_then(|l| l.idle_since);
        user.live = Some(Live {
            positions,
            trades,
            body,
            idle_since,
        });
        let ts = now_ns();
        let event = Event {
            channel: ChannelId::portfolio(id),
            seq,
            ts,
            payload: Payload::Portfolio,
            wire: protocol::encode_portfolio(seq, ts, reason.as_str(), &out),
        };
        // Under the users lock: this user's events reach the hub in `seq` order.
        self.hub.publish(std::slice::from_ref(&event));
    }

    /// Publishes trades as they are recorded and price moves every `update_ms`, and forgets
    /// idle users; until `stop` fires.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.update_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => self.publish_trades().await,
                _ = tick.tick() => self.revalue(Instant::now()),
            }
        }
    }

    async fn publish_trades(&self) {
        let traded: Vec<u32> = self
            .traded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for id in traded {
            match self.store.positions(i64::from(id), super::fold).await {
                Ok(positions) => self.publish(id, positions, Reason::Trade),
                Err(e) => {
                    // Retried at the next trade; the subscriber keeps the last state.
                    tracing::warn!(user = id, error = %e, "portfolio not refreshed after a trade");
                }
            }
        }
    }

    /// Revalues every watched user at the latest prices; forgets those idle past `idle_ms`.
    fn revalue(&self, now: Instant) {
        let idle_after = Duration::from_millis(self.config.idle_ms);
        let mut watched = Vec::new();
        {
            let mut users = self.users();
            for (&id, user) in users.iter_mut() {
                let Some(live) = &mut user.live else { continue };
                let ch = ChannelId::portfolio(id);
                if self.hub.subscriber_count(ch) > 0 {
                    live.idle_since = None;
                    watched.push((id, live.positions.clone()));
                    continue;
                }
                let since = *live.idle_since.get_or_insert(now);
                if now.duration_since(since) >= idle_after && self.hub.retire(ch) {
                    user.live = None;
                }
            }
        }
        for (id, positions) in watched {
            self.publish(id, positions, Reason::Prices);
        }
    }

    /// Users whose state this node keeps (for tests and metrics).
    pub fn live_users(&self) -> usize {
        self.users().values().filter(|u| u.live.is_some()).count()
    }
}
