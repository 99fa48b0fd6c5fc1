//! `[database]`: where ticks, users and trades live, and how the write-behind queue behaves.

use serde::Deserialize;

use crate::config_section::{ConfigError, check};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH?mode=rwc` or `postgres://...`; `DATABASE_URL` overrides it.
    pub url: String,
    /// Connections for writes (the recorder, trades, users, retention).
    pub pool_size: u32,
    /// Connections for REST reads, a pool of their own so readers never starve the writer.
    pub read_pool_size: u32,
    /// Bound on every read; PostgreSQL cancels the statement (`statement_timeout`).
    pub query_timeout_ms: u64,
    /// Tick rows held in memory while the database is slow or down; past it rows are dropped
    /// (counted and logged).
    pub queue_capacity: usize,
    /// Rows per insert transaction.
    pub batch_size: usize,
    /// A partial batch waits at most this long before it is written.
    pub flush_interval_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failed writes that open the circuit breaker.
    pub breaker_failures: u32,
    /// While the breaker is open, one probe write per this interval.
    pub breaker_probe_ms: u64,
    /// Ticks older than this are deleted; 0 keeps them forever.
    pub retention_days: u64,
    pub retention_interval_ms: u64,
    /// Rows one retention `DELETE` removes at most; a run repeats it until the backlog is gone.
    pub retention_batch_rows: u32,
    /// Time allowed for a connection or a query before it counts as a failure.
    pub timeout_ms: u64,
}

impl DatabaseConfig {
    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.url.starts_with("sqlite:")
                || self.url.starts_with("postgres://")
                || self.url.starts_with("postgresql://"),
            "database.url",
            "must be a sqlite: or postgres:// URL",
        )?;
        check(
            self.pool_size >= 1,
            "database.pool_size",
            "must be at least 1",
        )?;
        check(
            self.read_pool_size >= 1,
            "database.read_pool_size",
            "must be at least 1",
        )?;
        check(
            self.query_timeout_ms >= 10,
            "database.query_timeout_ms",
            "must be at least 10",
        )?;
        check(
            self.batch_size >= 1,
            "database.batch_size",
            "must be at least 1",
        )?;
        check(
            self.queue_capacity >= self.batch_size,
            "database.queue_capacity",
            "must be at least database.batch_size",
        )?;
        check(
            self.flush_interval_ms >= 1,
            "database.flush_interval_ms",
            "must be at least 1",
        )?;
        check(
            self.backoff_initial_ms >= 1 && self.backoff_max_ms >= self.backoff_initial_ms,
            "database.backoff_max_ms",
            "must be >= backoff_initial_ms >= 1",
        )?;
        check(
            self.breaker_failures >= 1,
            "database.breaker_failures",
            "must be at least 1",
        )?;
        check(
            self.breaker_probe_ms >= 1,
            "database.breaker_probe_ms",
            "must be at least 1",
        )?;
        check(
            self.retention_interval_ms >= 1000,
            "database.retention_interval_ms",
            "must be at least 1000",
        )?;
        check(
            self.retention_batch_rows >= 1,
            "database.retention_batch_rows",
            "must be at least 1",
        )?;
        check(
            self.timeout_ms >= 10,
            "database.timeout_ms",
            "must be at least 10",
        )
    }
}
