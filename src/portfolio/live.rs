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
//! On a cluster node trades may be recorded through another node's REST API, which this node
//! never hears of: there the watched users' positions are also read again every
//! `portfolio.reload_ms` and published (`"trade"`) when they changed.
//!
//! A user nobody has subscribed to for `portfolio.idle_ms` is forgotten: its ring is dropped and
//! only its last `seq` is kept, so a later resume gets `reset`, never a reused number.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Notify;

use super::{PortfolioOut, Valuation, value};
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
    /// On cluster nodes only: watched users' positions are read again this often, for trades
    /// recorded through other nodes.
    pub reload_ms: u64,
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
        )?;
        check(
            (100..=600_000).contains(&self.reload_ms),
            "portfolio.reload_ms",
            "must be between 100 and 600000",
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
    /// Trades may be recorded through other nodes (a cluster): reload every `reload_ms`.
    reload: bool,
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
    /// The last published valuation, to publish price updates only when something changed.
    valuation: Valuation,
    /// Since when the channel has had no subscriber.
    idle_since: Option<Instant>,
}

impl LivePortfolios {
    /// `reload`: this node is one of several serving REST over the same database.
    pub fn new(
        hub: Arc<Hub>,
        store: Arc<Store>,
        symbols: Arc<Symbols>,
        config: PortfolioConfig,
        reload: bool,
    ) -> Self {
        Self {
            hub,
            store,
            symbols,
            config,
            reload,
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
        self.publish(id, positions, Reason::Snapshot, false);
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
    /// (`if_changed`: unless nothing changed).
    fn publish(&self, id: u32, positions: Vec<PositionRow>, reason: Reason, if_changed: bool) {
        let trades: i64 = positions.iter().map(|p| p.trades).sum();
        let valuation = value(&positions, |s| {
            super::live_price(&self.symbols, &self.hub, s)
        });
        let mut users = self.users();
        let user = users.entry(id).or_default();
        if let Some(live) = &user.live {
            if trades < live.trades {
                return; // read before a trade that is already published
            }
            if if_changed && live.valuation == valuation {
                return;
            }
        }
        user.seq += 1;
        let seq = user.seq;
        let idle_since = user.live.as_ref().and_then(|l| l.idle_since);
        let out = PortfolioOut::from(valuation.clone());
        user.live = Some(Live {
            positions,
            trades,
            valuation,
            idle_since,
        });
        let ts = now_ns();
        let event = Event {
            channel: ChannelId::portfolio(id),
            seq,
            ts,
            payload: Payload::Portfolio,
            wire: protocol::encode_portfolio(seq, ts, reason.as_str(), &out),
            book: None,
        };
        // Under the users lock: this user's events reach the hub in `seq` order.
        self.hub.publish(std::slice::from_ref(&event));
    }

    /// Publishes trades as they are recorded and price moves every `update_ms`, and forgets
    /// idle users; until `stop` fires.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.update_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reload = tokio::time::interval(Duration::from_millis(self.config.reload_ms));
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {
                    let traded = std::mem::take(&mut *self.traded.lock().unwrap_or_else(|e| e.into_inner()));
                    self.publish_from_store(traded, false).await;
                }
                _ = tick.tick() => self.revalue(Instant::now()),
                _ = reload.tick(), if self.reload => {
                    let watched: HashSet<u32> = self
                        .users()
                        .iter()
                        .filter(|(_, u)| u.live.as_ref().is_some_and(|l| l.idle_since.is_none()))
                        .map(|(&id, _)| id)
                        .collect();
                    self.publish_from_store(watched, true).await;
                }
            }
        }
    }

    /// Reads each user's positions from the store and publishes them (`if_changed`: only
    /// what changed).
    async fn publish_from_store(&self, users: HashSet<u32>, if_changed: bool) {
        for id in users {
            match self.store.positions(i64::from(id), super::fold).await {
                Ok(positions) => self.publish(id, positions, Reason::Trade, if_changed),
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
            self.publish(id, positions, Reason::Prices, true);
        }
    }

    /// Users whose state this node keeps (for tests and metrics).
    pub fn live_users(&self) -> usize {
        self.users().values().filter(|u| u.live.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::model::Side;
    use crate::rooms::{HubConfig, Item, Outbox, OutboxLimits, Subscribe, Target};
    use crate::store::NewTrade;
    use crate::telemetry::metrics::Metrics;

    struct Rig {
        live: Arc<LivePortfolios>,
        hub: Arc<Hub>,
        store: Arc<Store>,
        path: std::path::PathBuf,
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", self.path.display()));
            }
        }
    }

    async fn rig(reload: bool) -> Rig {
        let mut config = crate::config::Config::defaults().expect("defaults");
        let path = std::env::temp_dir().join(format!(
            "tickcast-live-{}-{}.db",
            std::process::id(),
            now_ns()
        ));
        config.database.url = format!("sqlite://{}?mode=rwc", path.display());
        let store = Arc::new(Store::open(&config.database).expect("store"));
        store.migrate().await.expect("migrations");
        let hub = Arc::new(Hub::new(
            HubConfig {
                ring_capacity: 8,
                long_bar_ring_capacity: 8,
                snapshot_depth: 2,
                portfolio_ring_capacity: 4,
            },
            Arc::new(Metrics::default()),
        ));
        let portfolio = PortfolioConfig {
            update_ms: 100,
            ring_capacity: 4,
            idle_ms: 300,
            reload_ms: 100,
        };
        portfolio.validate().expect("valid");
        let symbols = Arc::new(Symbols::new(8));
        let live = Arc::new(LivePortfolios::new(
            hub.clone(),
            store.clone(),
            symbols,
            portfolio,
            reload,
        ));
        Rig {
            live,
            hub,
            store,
            path,
        }
    }

    impl Rig {
        fn run(
            &self,
        ) -> (
            tokio_util::sync::CancellationToken,
            tokio::task::JoinHandle<()>,
        ) {
            let stop = tokio_util::sync::CancellationToken::new();
            (stop.clone(), tokio::spawn(self.live.clone().run(stop)))
        }

        /// Opens `user`'s channel and subscribes a connection: (channel, connection, its
        /// outbox, the snapshot's seq).
        async fn watch(&self, user: &str) -> (ChannelId, crate::rooms::ConnId, Arc<Outbox>, u64) {
            let ch = self.live.open(user).await.expect("opens");
            let (conn, out) = (self.hub.next_conn_id(), outbox());
            let sub = Subscribe {
                targets: vec![Target::Channel(ch)],
                ..Default::default()
            };
            self.hub.subscribe(conn, &out, &sub);
            let first = wait_for(&out, |e| e["reason"] == "snapshot").await;
            (ch, conn, out, first)
        }
    }

    fn outbox() -> Arc<Outbox> {
        Arc::new(Outbox::new(OutboxLimits {
            max_events: 64,
            max_bytes: 1 << 20,
            max_held_bytes: 1 << 20,
        }))
    }

    /// The JSON of every event and snapshot event queued in `outbox`.
    fn drained(outbox: &Outbox) -> Vec<serde_json::Value> {
        let mut items = VecDeque::new();
        outbox.drain(std::time::Instant::now(), &mut items);
        let json = |w: &crate::model::Wire| serde_json::from_slice(w.json()).expect("json");
        items
            .iter()
            .flat_map(|item| match item {
                Item::Event { wire, .. } | Item::Replay { wire, .. } => vec![json(wire)],
                Item::Snapshot(s) => s.events.iter().map(json).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Polls `outbox` until an event matches `want` (bounded: 5 s).
    async fn wait_for(outbox: &Outbox, want: impl Fn(&serde_json::Value) -> bool) -> u64 {
        for _ in 0..100 {
            if let Some(e) = drained(outbox).into_iter().find(|e| want(e)) {
                return e["seq"].as_u64().expect("seq");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no such portfolio event within 5 s");
    }

    fn fill(quantity: i64) -> NewTrade {
        NewTrade {
            symbol: "AAPL".into(),
            side: Side::Buy,
            quantity: quantity.into(),
            price: 10.into(),
            ts: 1,
            time_sent: true,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cluster_node_picks_up_trades_recorded_elsewhere_and_idle_users_are_forgotten() {
        let r = rig(true).await;
        let (user, _) = r.store.create_user("ida").await.expect("user");
        let (stop, task) = r.run();
        let (ch, conn, out, first) = r.watch("ida").await;

        // Recorded through "another node": straight into the store, nobody told this one.
        r.store
            .record_trade(user, &fill(3), None, super::super::fold)
            .await
            .expect("trade");
        let seq = wait_for(&out, |e| e["trades"] == 1 && e["reason"] == "trade").await;
        assert!(seq > first);
        // Nothing changed since: reloads publish nothing more.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(drained(&out), Vec::<serde_json::Value>::new());

        // Unwatched for idle_ms: forgotten, ring freed; reopened, its seq continues.
        r.hub.unsubscribe(conn, &[Target::Channel(ch)]);
        for _ in 0..100 {
            if r.live.live_users() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(r.live.live_users(), 0);
        assert_eq!(r.hub.last_seq(ch), 0, "the ring is gone");
        r.live.open("ida").await.expect("opens again");
        assert_eq!(r.hub.last_seq(ch), seq + 1, "no seq is reused");
        stop.cancel();
        task.await.expect("stops");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_node_publishes_on_the_trades_it_is_told_of_only() {
        let r = rig(false).await;
        let (user, _) = r.store.create_user("jo").await.expect("user");
        let (stop, task) = r.run();
        let (_, _, out, _) = r.watch("jo").await;
        r.store
            .record_trade(user, &fill(1), None, super::super::fold)
            .await
            .expect("trade");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(drained(&out), Vec::<serde_json::Value>::new(), "not told");
        r.live.trade_recorded(user);
        wait_for(&out, |e| e["trades"] == 1).await;
        assert_eq!(
            r.live.open("nobody").await.map_err(|e| e.to_string()).err(),
            Some("no user \"nobody\" on this server".to_owned())
        );
        stop.cancel();
        task.await.expect("stops");
    }
}
