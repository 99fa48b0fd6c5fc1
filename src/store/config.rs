//! `[database]`: where ticks, users and trades live, and how the write-behind queue behaves.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config_section::{ConfigError, check};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH?mode=rwc` or `postgres://...`; `DATABASE_URL` overrides it.
    pub url: String,
    /// PostgreSQL: where REST history reads (`/ticks`, `/bars`) go, e.g. a replica; empty: `url`.
    pub read_url: String,
    /// Connections for writes (the recorder, trades, users, retention).
    pub pool_size: u32,
    /// Connections for REST reads, a pool of their own so readers never starve the writer.
    pub read_pool_size: u32,
    /// Bound on every read; PostgreSQL cancels the statement (`statement_timeout`).
    pub query_timeout_ms: u64,
    /// Tick and bar rows held in memory while the database is slow or down; past it
    /// `on_overload` decides.
    pub queue_capacity: usize,
    /// What happens to rows a full queue cannot take.
    pub on_overload: OnOverload,
    /// Where the journal lives; empty: `<sqlite file>.journal` beside a SQLite database,
    /// `tickcast-journal` in the working directory for PostgreSQL.
    pub journal_dir: String,
    /// The journal's bound on disk; past it rows are dropped (counted and logged).
    pub journal_max_bytes: u64,
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
    /// PostgreSQL: days after today whose partitions of `ticks` and `bars` the maintenance task
    /// makes ahead (every `retention_interval_ms`).
    pub partitions_ahead_days: u32,
    pub retention_interval_ms: u64,
    /// Rows one retention `DELETE` removes at most; a run repeats it until the backlog is gone.
    pub retention_batch_rows: u32,
    /// Time allowed for a connection or a query before it counts as a failure.
    pub timeout_ms: u64,
}

/// `database.on_overload`: what a full write-behind queue does with more rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOverload {
    /// Spill to the local journal on disk, replayed into the database in order.
    Journal,
    /// Backpressure: live feeds and HTTP ingest wait (503 + Retry-After) for the store.
    Block,
    /// Drop them, counted in `tickcast_db_rows_dropped_total` and logged.
    Drop,
}

/// The smallest journal bound: room for a few thousand rows.
const MIN_JOURNAL_BYTES: u64 = 1 << 20;

impl DatabaseConfig {
    /// The journal's directory (see `journal_dir`).
    pub fn journal_path(&self) -> PathBuf {
        if !self.journal_dir.is_empty() {
            return PathBuf::from(&self.journal_dir);
        }
        match sqlite_path(&self.url) {
            Some(file) if !file.is_empty() && !file.starts_with(':') => {
                PathBuf::from(format!("{file}.journal"))
            }
            _ => PathBuf::from("tickcast-journal"),
        }
    }

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
            self.read_url.is_empty() || self.url.starts_with("postgres"),
            "database.read_url",
            "must be empty when database.url is a sqlite: URL (replicas are PostgreSQL's)",
        )?;
        check(
            self.read_url.is_empty()
                || self.read_url.starts_with("postgres://")
                || self.read_url.starts_with("postgresql://"),
            "database.read_url",
            "must be empty or a postgres:// URL",
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
            self.journal_max_bytes >= MIN_JOURNAL_BYTES,
            "database.journal_max_bytes",
            "must be at least 1048576 (1 MiB)",
        )?;
        check(
            self.on_overload != OnOverload::Journal
                || sqlite_path(&self.url).is_none_or(|f| !f.is_empty() && !f.starts_with(':'))
                || !self.journal_dir.is_empty(),
            "database.journal_dir",
            "must be set for an in-memory SQLite database when on_overload = \"journal\"",
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
            i64::from(self.partitions_ahead_days) < super::partitions::MAX_DAYS_PER_CALL,
            "database.partitions_ahead_days",
            "must be less than 400",
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

/// The file of a `sqlite:` URL (`sqlite://PATH?...` or `sqlite:PATH`); `None` for others.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Some(rest.split('?').next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_sits_beside_a_sqlite_file_unless_configured() {
        let mut c = crate::config::Config::defaults().unwrap().database;
        c.url = "sqlite://data/ticks.db?mode=rwc".into();
        assert_eq!(c.journal_path(), PathBuf::from("data/ticks.db.journal"));
        c.url = "postgres://root@127.0.0.1/test".into();
        assert_eq!(c.journal_path(), PathBuf::from("tickcast-journal"));
        c.journal_dir = "/var/lib/tickcast/journal".into();
        assert_eq!(c.journal_path(), PathBuf::from("/var/lib/tickcast/journal"));
        c.journal_max_bytes = 1000;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("database.journal_max_bytes"), "{e}");
        c.journal_max_bytes = 1 << 30;
        c.journal_dir = String::new();
        c.url = "sqlite::memory:".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("database.journal_dir"), "{e}");
        c.on_overload = OnOverload::Drop;
        assert!(c.validate().is_ok());
    }
}
