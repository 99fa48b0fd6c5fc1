//! `[ws]`: WebSocket connection limits, buffers and timers.

use serde::Deserialize;

use crate::config_section::{ConfigError, check};

/// Longest `ws.replay_max_age_ms`: 30 days.
const MAX_REPLAY_AGE_MS: u64 = 30 * 86_400_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsConfig {
    pub max_connections: usize,
    /// Open WebSockets per client address (IPv6 by /64); 0 = no per-address cap.
    pub max_connections_per_ip: usize,
    /// Upgrades per second per client address, and the burst above that rate.
    pub upgrades_per_second: u32,
    pub upgrade_burst: u32,
    pub max_frame_bytes: usize,
    pub max_subscriptions: usize,
    pub outbox_max_events: usize,
    pub outbox_max_bytes: usize,
    /// Snapshot and replay data one connection may have queued and not yet written; bounds
    /// what one subscribe (or a burst of them) can make the server hold.
    pub snapshot_max_bytes: usize,
    pub batch_max_bytes: usize,
    /// Adaptive batching: after a write, a connection's next write waits until this much time
    /// has passed, so a busy socket sends fewer, fuller frames; an idle one writes at once.
    /// 0 = write whenever something is queued.
    pub batch_window_us: u64,
    pub slow_consumer_timeout_ms: u64,
    pub close_grace_ms: u64,
    pub ping_interval_ms: u64,
    pub pong_timeout_ms: u64,
    pub ops_per_second: u32,
    pub ops_burst: u32,
    pub abuse_threshold: u32,
    pub max_throttle_ms: u64,
    pub read_buffer_bytes: usize,
    pub socket_send_buffer_bytes: usize,
    /// Oldest `from_ts` a subscribe may replay from, in ms before now.
    pub replay_max_age_ms: u64,
}

impl WsConfig {
    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.max_connections >= 1,
            "ws.max_connections",
            "must be at least 1",
        )?;
        check(
            self.upgrades_per_second >= 1,
            "ws.upgrades_per_second",
            "must be at least 1",
        )?;
        check(
            self.upgrade_burst >= 1,
            "ws.upgrade_burst",
            "must be at least 1",
        )?;
        check(
            self.max_frame_bytes >= 128,
            "ws.max_frame_bytes",
            "must be at least 128",
        )?;
        check(
            self.max_subscriptions >= 1,
            "ws.max_subscriptions",
            "must be at least 1",
        )?;
        check(
            self.outbox_max_events >= 2,
            "ws.outbox_max_events",
            "must be at least 2",
        )?;
        check(
            self.outbox_max_bytes >= 1024,
            "ws.outbox_max_bytes",
            "must be at least 1024",
        )?;
        check(
            self.snapshot_max_bytes >= 1024,
            "ws.snapshot_max_bytes",
            "must be at least 1024",
        )?;
        check(
            self.batch_max_bytes >= 1024,
            "ws.batch_max_bytes",
            "must be at least 1024",
        )?;
        check(
            self.batch_window_us <= 100_000,
            "ws.batch_window_us",
            "must be at most 100000 (100 ms)",
        )?;
        check(
            self.slow_consumer_timeout_ms >= 1,
            "ws.slow_consumer_timeout_ms",
            "must be at least 1",
        )?;
        check(
            self.ping_interval_ms >= 1,
            "ws.ping_interval_ms",
            "must be at least 1",
        )?;
        check(
            self.pong_timeout_ms > self.ping_interval_ms,
            "ws.pong_timeout_ms",
            "must exceed ws.ping_interval_ms",
        )?;
        check(
            self.ops_per_second >= 1,
            "ws.ops_per_second",
            "must be at least 1",
        )?;
        check(self.ops_burst >= 1, "ws.ops_burst", "must be at least 1")?;
        check(
            self.abuse_threshold >= 1,
            "ws.abuse_threshold",
            "must be at least 1",
        )?;
        check(
            self.read_buffer_bytes >= 256,
            "ws.read_buffer_bytes",
            "must be at least 256",
        )?;
        check(
            (1..=MAX_REPLAY_AGE_MS).contains(&self.replay_max_age_ms),
            "ws.replay_max_age_ms",
            "must be between 1 and 2592000000 (30 days)",
        )
    }
}
