//! The op handlers of one connection: `subscribe`, `unsubscribe`, `ping` and `list`, each
//! answered by pushing replies into the connection's outbox (the session's loop writes them).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::books::{BookSub, BookSubs};
use super::{Channels, WsAuth, WsConfig, replay, resume};
use crate::auth::{Principal, UserSlot};
use crate::model::{ChannelId, Encoding, Kind, Wire, now_ns};
use crate::portfolio::OpenError;
use crate::protocol::{self, ChannelName, ClientOp, ErrorCode};
use crate::rooms::{ConnId, Hub, Outbox, Subscribe, Target};
use crate::telemetry::metrics::Metrics;

/// A subscribe's options besides its channels and `from`.
struct SubscribeOpts {
    throttle_ms: Option<u64>,
    snapshot: Option<usize>,
    depth: Option<usize>,
    stale_from: bool,
    /// The op's fields this server does not read, named in the `ack`.
    ignored: Vec<String>,
    /// `from_ts` as sent (checked by `replay.rs`).
    from_ts: Option<serde_json::Value>,
}

/// The op handlers of one connection.
pub(super) struct Ops<'a> {
    pub(super) conn: ConnId,
    pub(super) outbox: &'a Arc<Outbox>,
    /// Where the channels come from.
    pub(super) channels: &'a Channels,
    /// Checks `auth` ops' tokens.
    pub(super) auth: &'a WsAuth,
    pub(super) config: &'a WsConfig,
    pub(super) metrics: &'a Metrics,
    /// The connection's frame encoding: replies are encoded in it.
    pub(super) encoding: Encoding,
    /// Who the connection's token says it is; `None` while anonymous.
    pub(super) principal: Option<Principal>,
    /// Counts this connection against its user's `limits.connections` while it lives.
    pub(super) slot: Option<UserSlot>,
    /// The token's expiry, which the connection's loop watches.
    pub(super) expires_s: &'a AtomicU64,
    /// The user's `portfolio` channel, once a subscribe opened it.
    pub(super) portfolio: Option<ChannelId>,
    /// The connection's book subscriptions, as its writer serves them.
    pub(super) books: BookSubs,
}

/// The names of `channels` in their first order, each once.
fn distinct(channels: &[String]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::with_capacity(channels.len());
    channels
        .iter()
        .map(String::as_str)
        .filter(|n| seen.insert(*n))
        .collect()
}

impl Ops<'_> {
    fn hub(&self) -> &Hub {
        &self.channels.hub
    }

    fn reply(&self, bytes: Bytes) {
        self.outbox.push_control(bytes);
    }

    pub(super) fn error(&self, id: Option<i64>, code: ErrorCode, message: &str) {
        self.reply(protocol::encode_error(self.encoding, id, code, message));
    }

    pub(super) async fn handle(&mut self, text: &str) {
        let (op, ignored) = match protocol::parse_op_ignoring(text) {
            Ok(parsed) => parsed,
            Err(bad) => return self.error(bad.id, ErrorCode::BadRequest, &bad.message),
        };
        let needs_auth = !matches!(op, ClientOp::Auth { .. } | ClientOp::Ping { .. });
        if needs_auth && !self.auth.anonymous && self.principal.is_none() {
            return self.error(
                op.id(),
                ErrorCode::Unauthorized,
                "authenticate first: send an `auth` op with a token, or connect with ?token=",
            );
        }
        match op {
            ClientOp::Auth { id, token } => self.auth(id, &token),
            ClientOp::Subscribe {
                id,
                channels,
                from,
                throttle_ms,
                snapshot,
                epoch,
                depth,
                from_ts,
            } => {
                let stale = epoch.is_some_and(|e| e != self.channels.epoch);
                let from = from.unwrap_or_default();
                let opts = SubscribeOpts {
                    throttle_ms,
                    snapshot,
                    depth,
                    stale_from: stale,
                    ignored,
                    from_ts,
                };
                self.subscribe(id, &channels, from, opts).await
            }
            ClientOp::Unsubscribe { id, channels } => self.unsubscribe(id, &channels, &ignored),
            ClientOp::Ping { id } => self.reply(protocol::encode_pong(self.encoding, id, now_ns())),
            ClientOp::List { id } => {
                let all = self.channels.symbols.all();
                let names: Vec<&str> = all.iter().map(|(_, n)| &**n).collect();
                let intervals = self.channels.bar_intervals;
                self.reply(protocol::encode_list(self.encoding, id, &names, intervals));
            }
        }
    }

    /// Authenticates the connection, or refreshes its token (same user only).
    fn auth(&mut self, id: Option<i64>, token: &str) {
        let p = match self.auth.verify(token, self.metrics) {
            Ok(p) => p,
            Err(e) => return self.error(id, ErrorCode::Unauthorized, &e.to_string()),
        };
        if let Some(current) = &self.principal
            && current.user != p.user
        {
            let msg = format!(
                "this connection is {}'s; a token of {} cannot refresh it",
                current.user, p.user
            );
            return self.error(id, ErrorCode::Forbidden, &msg);
        }
        if self.slot.is_none() {
            match self.auth.users.acquire(&p) {
                Ok(slot) => self.slot = Some(slot),
                Err(e) => return self.error(id, ErrorCode::Forbidden, &e.to_string()),
            }
        }
        self.expires_s.store(p.expires_s, Ordering::Relaxed);
        let ack =
            protocol::encode_auth_ack(self.encoding, id, self.channels.epoch, &p.user, p.expires_s);
        self.principal = Some(p);
        // The reply-order rule (docs/PROTOCOL.md): per-channel errors first, the ack last.
        self.revoke_unpermitted(id);
        self.reply(ack);
    }

    /// Drops what the connection holds that its (new) token does not permit, with a
    /// `forbidden` error naming each: a refresh with narrower `channels` narrows what it gets.
    fn revoke_unpermitted(&mut self, id: Option<i64>) {
        let Some(p) = &self.principal else { return };
        if p.channels.is_none() {
            return;
        }
        let mut revoked = Vec::new();
        for target in self.hub().subscriptions_of(self.conn) {
            let (permitted, name) = match target {
                Target::Wildcard(kind) => (p.may_subscribe(kind, None), format!("{kind}:*")),
                Target::Channel(ch) if ch.kind == Kind::Portfolio => continue,
                Target::Channel(ch) => {
                    let symbol = self.channels.symbols.name(ch.symbol);
                    (
                        p.may_subscribe(ch.kind, Some(&symbol)),
                        self.channels.symbols.channel_name(ch),
                    )
                }
            };
            if !permitted {
                revoked.push((target, name));
            }
        }
        if revoked.is_empty() {
            return;
        }
        let targets: Vec<Target> = revoked.iter().map(|(t, _)| *t).collect();
        for t in self.hub().unsubscribe(self.conn, &targets) {
            self.books.unsubscribe(t);
        }
        for (_, name) in revoked {
            let msg =
                format!("{name} is not among the channels your new token permits: unsubscribed");
            self.error(id, ErrorCode::Forbidden, &msg);
        }
    }

    /// Resolves a channel name to a target the connection may subscribe, or says why not.
    /// `portfolio` is the connection's user's own, open to every authenticated connection.
    async fn resolve_permitted(&mut self, name: &str) -> Result<Target, (ErrorCode, String)> {
        let parsed = protocol::parse_channel(name).map_err(|e| (e.code, e.message))?;
        if parsed == ChannelName::Portfolio {
            return self.open_portfolio().await;
        }
        let allowed = self.principal.as_ref().is_none_or(|p| match &parsed {
            ChannelName::Wildcard(kind) => p.may_subscribe(*kind, None),
            ChannelName::Concrete(kind, sym) => p.may_subscribe(*kind, Some(sym)),
            ChannelName::Portfolio => true,
        });
        if !allowed {
            let msg = format!("{name} is not among the channels your token permits");
            return Err((ErrorCode::Forbidden, msg));
        }
        self.target(parsed)
    }

    /// Resolves a channel name to a target, or says why not.
    fn resolve(&self, name: &str) -> Result<Target, (ErrorCode, String)> {
        let parsed = protocol::parse_channel(name).map_err(|e| (e.code, e.message))?;
        self.target(parsed)
    }

    /// The user's `portfolio` channel, its current state published if this node had none.
    async fn open_portfolio(&mut self) -> Result<Target, (ErrorCode, String)> {
        let Some(p) = &self.principal else {
            return Err((
                ErrorCode::Unauthorized,
                "portfolio needs an authenticated connection: connect with ?token= or send `auth`"
                    .to_owned(),
            ));
        };
        self.metrics.portfolio_opens.fetch_add(1, Ordering::Relaxed);
        match self.channels.portfolios.open(&p.user).await {
            Ok(ch) => {
                self.portfolio = Some(ch);
                Ok(Target::Channel(ch))
            }
            Err(e @ OpenError::NoSuchUser(_)) => Err((ErrorCode::Forbidden, e.to_string())),
            Err(OpenError::Store(e)) => {
                tracing::warn!(error = %e, "portfolio not opened");
                Err((
                    ErrorCode::Unavailable,
                    "portfolio is unavailable (database); retry shortly".to_owned(),
                ))
            }
        }
    }

    fn target(&self, parsed: ChannelName<'_>) -> Result<Target, (ErrorCode, String)> {
        if let ChannelName::Wildcard(Kind::Bars(iv)) | ChannelName::Concrete(Kind::Bars(iv), _) =
            parsed
            && !self.channels.bar_intervals.contains(iv)
        {
            return Err((
                ErrorCode::UnknownChannel,
                format!("bars.{iv} is not streamed here (pipeline.bar_intervals)"),
            ));
        }
        match parsed {
            // Only a channel this connection opened (unsubscribe, `from` of the same subscribe).
            ChannelName::Portfolio => match self.portfolio {
                Some(ch) => Ok(Target::Channel(ch)),
                None => Err((
                    ErrorCode::NotSubscribed,
                    "not subscribed to portfolio".to_owned(),
                )),
            },
            ChannelName::Wildcard(kind) => Ok(Target::Wildcard(kind)),
            ChannelName::Concrete(kind, sym) => match self.channels.symbols.get(sym) {
                Some(symbol) => Ok(Target::Channel(ChannelId { kind, symbol })),
                None => Err((ErrorCode::UnknownChannel, format!("no such symbol: {sym}"))),
            },
        }
    }

    async fn subscribe(
        &mut self,
        id: Option<i64>,
        channels: &[String],
        from: HashMap<String, u64>,
        opts: SubscribeOpts,
    ) {
        let SubscribeOpts {
            throttle_ms,
            snapshot,
            depth,
            stale_from,
            ignored,
            from_ts,
        } = opts;
        let from_ts = match from_ts.as_ref().map(replay::parse_from_ts).transpose() {
            Ok(t) => t,
            Err(msg) => return self.error(id, ErrorCode::BadRequest, &msg),
        };
        let cfg = &self.config;
        let ring_capacity = self.channels.ring_capacity;
        if channels.is_empty() {
            return self.error(id, ErrorCode::BadRequest, "`channels` must not be empty");
        }
        if let Some(t) = throttle_ms.filter(|t| *t > cfg.max_throttle_ms) {
            let msg = format!(
                "throttle_ms {t} exceeds the maximum of {}",
                cfg.max_throttle_ms
            );
            return self.error(id, ErrorCode::BadRequest, &msg);
        }
        if let Some(n) = snapshot.filter(|n| *n > ring_capacity) {
            let msg = format!("snapshot depth {n} exceeds the ring capacity of {ring_capacity}");
            return self.error(id, ErrorCode::BadRequest, &msg);
        }
        let book_depth = self.channels.book_depth;
        if let Some(n) = depth.filter(|n| !(1..=book_depth).contains(n)) {
            let msg = format!("depth {n} is outside 1..={book_depth} (book.depth)");
            return self.error(id, ErrorCode::BadRequest, &msg);
        }
        let limits = self
            .principal
            .as_ref()
            .map(|p| p.limits)
            .unwrap_or_default();
        let max_subscriptions = limits.subscriptions.unwrap_or(cfg.max_subscriptions);
        // Repeated names are resolved once (`portfolio` reads the store), and an op naming more
        // distinct channels than any connection may hold is refused before any is resolved. A
        // token's smaller limit is applied to what is held (names it refuses are not held).
        let names = distinct(channels);
        let max_names = max_subscriptions.max(cfg.max_subscriptions);
        if names.len() > max_names {
            let msg = format!(
                "this subscribe names {} distinct channels; at most {max_names} may be held",
                names.len()
            );
            return self.error(id, ErrorCode::TooManySubscriptions, &msg);
        }
        let mut targets = Vec::new();
        let mut accepted = Vec::new();
        for name in names {
            match self.resolve_permitted(name).await {
                Ok(t) if targets.contains(&t) => {}
                Ok(t) => {
                    targets.push(t);
                    accepted.push(name.to_owned());
                }
                Err((code, msg)) => self.error(id, code, &msg),
            }
        }
        // A resume point that cannot be honoured refuses the whole op: subscribing without it
        // would silently skip or repeat events.
        let mut resume = HashMap::new();
        let mut bad_from = false;
        for (name, seq) in from {
            match self.resolve(&name) {
                Ok(Target::Channel(ch))
                    if targets.contains(&Target::Channel(ch))
                        || targets.contains(&Target::Wildcard(ch.kind)) =>
                {
                    resume.insert(ch, seq);
                }
                Ok(Target::Channel(_)) => {
                    bad_from = true;
                    let msg = format!("`from` names {name}, which this subscribe does not cover");
                    self.error(id, ErrorCode::BadRequest, &msg);
                }
                Ok(Target::Wildcard(_)) => {
                    bad_from = true;
                    let msg = format!("`from` keys are concrete channels, not {name}");
                    self.error(id, ErrorCode::BadRequest, &msg);
                }
                Err((code, msg)) => {
                    bad_from = true;
                    self.error(id, code, &msg);
                }
            }
        }
        if targets.is_empty() || bad_from {
            return;
        }
        if let Some(t) = from_ts
            && let Err(msg) = replay::check(
                &targets,
                &accepted,
                t,
                now_ns(),
                self.config.replay_max_age_ms,
            )
        {
            return self.error(id, ErrorCode::BadRequest, &msg);
        }
        let would_hold = self.hub().count_after(self.conn, &targets);
        if would_hold > max_subscriptions {
            let msg = format!(
                "this subscribe would hold {would_hold} subscriptions; the limit is {max_subscriptions}"
            );
            return self.error(id, ErrorCode::TooManySubscriptions, &msg);
        }
        self.reply(protocol::encode_ack_ignoring(
            self.encoding,
            id,
            "subscribe",
            &accepted,
            self.channels.epoch,
            &ignored,
        ));
        let prefetched = match from_ts {
            _ if stale_from => HashMap::new(),
            Some(t) => self.prefetch_stored(&targets, &resume, t).await,
            None => self.prefetch(&resume).await,
        };
        // A token's minimum throttle applies to every subscription it makes.
        let throttle = throttle_ms
            .max(limits.min_throttle_ms)
            .filter(|t| *t > 0)
            .map(Duration::from_millis);
        // Before the hub queues the snapshots: the writer serves them by these settings.
        let book = BookSub {
            depth: depth.unwrap_or(book_depth),
            throttled: throttle.is_some(),
        };
        let req = Subscribe {
            targets,
            from: resume,
            throttle,
            snapshot,
            stale_from,
            book_from_view: self.books.tracked(book),
            prefetched,
            from_ts,
        };
        for &t in &req.targets {
            self.books.subscribe(t, book);
        }
        self.hub().subscribe(self.conn, self.outbox, &req);
    }

    /// For each resume point whose gap has left the ring, the missed events from older history
    /// (an edge's stream) up to the ring's newest, so the ring replays the rest. Without
    /// history, or when it no longer holds them, the hub answers `reset` as on a single node.
    /// What is read is planned first ([`resume::plan`]): at most `cluster.resume_max_reads`
    /// gaps, each within its share of the connection's held budget.
    async fn prefetch(
        &self,
        resume: &HashMap<ChannelId, u64>,
    ) -> HashMap<ChannelId, (u64, Vec<Wire>)> {
        let mut out = HashMap::new();
        let Some(history) = &self.channels.history else {
            return out;
        };
        let room = self.outbox.held_room();
        let gaps = resume::plan(
            resume,
            |ch| self.hub().held_range(ch),
            room,
            history.max_reads(),
        );
        for gap in gaps {
            let metrics = &self.metrics;
            metrics.history_reads.fetch_add(1, Ordering::Relaxed);
            if let Some(events) = history
                .range(gap.ch, gap.from, gap.until, gap.max_bytes)
                .await
            {
                metrics
                    .cluster_resumes_from_stream
                    .fetch_add(1, Ordering::Relaxed);
                out.insert(gap.ch, (gap.until, events));
            }
        }
        out
    }

    /// For a replay from time `since`, this run's ticks that left the ring, read from the
    /// store by `seq` (`replay.rs`), each channel within its share of the held budget; the
    /// hub's ring replay takes over after them.
    async fn prefetch_stored(
        &self,
        targets: &[Target],
        from: &HashMap<ChannelId, u64>,
        since: i64,
    ) -> HashMap<ChannelId, (u64, Vec<Wire>)> {
        let mut out = HashMap::new();
        let Some(store) = &self.channels.stored_ticks else {
            return out;
        };
        let share = replay::share(self.outbox.held_room(), targets.len());
        for read in replay::store_reads(targets, from, |ch| self.hub().held_range(ch)) {
            let name = self.channels.symbols.channel_name(read.ch);
            let rows = store
                .run(read.ch, &name, since, read.after, read.before, share)
                .await;
            if let Some(run) = replay::contiguous(rows) {
                out.insert(read.ch, run);
            }
        }
        out
    }

    fn unsubscribe(&mut self, id: Option<i64>, channels: &[String], ignored: &[String]) {
        let mut targets = Vec::new();
        let mut names = Vec::new();
        for name in channels {
            match self.resolve(name) {
                Ok(t) => {
                    targets.push(t);
                    names.push(name.clone());
                }
                Err((code, msg)) => self.error(id, code, &msg),
            }
        }
        let removed = self.hub().unsubscribe(self.conn, &targets);
        for &t in &removed {
            self.books.unsubscribe(t);
        }
        let mut acked = Vec::new();
        for (t, name) in targets.iter().zip(names) {
            if removed.contains(t) {
                acked.push(name);
            } else {
                self.error(
                    id,
                    ErrorCode::NotSubscribed,
                    &format!("not subscribed to {name}"),
                );
            }
        }
        if acked.is_empty() && !channels.is_empty() {
            return;
        }
        self.reply(protocol::encode_ack_ignoring(
            self.encoding,
            id,
            "unsubscribe",
            &acked,
            self.channels.epoch,
            ignored,
        ));
    }
}
