//! The store's connection pools and the bound on each read.
//!
//! Three pools: writes (`database.url`, `database.pool_size`), reads that must see the writes
//! (`database.url`, `database.read_pool_size`: positions, trades by idempotency key, API keys),
//! and history reads (`/ticks`, `/bars`), which go to `database.read_url` when it is set (a
//! replica; its lag is invisible to a history page) and are the read pool otherwise.
//!
//! Every read is bounded by `database.query_timeout_ms`, and the database itself stops it, not
//! only the caller: PostgreSQL connections carry a `statement_timeout`; SQLite read connections
//! carry a progress handler armed with a deadline each time the pool hands one out, which
//! interrupts the statement (`SQLITE_INTERRUPT`) once the deadline has passed, so a runaway read
//! never keeps its connection (or the CPU) after the client got its 503.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

use super::{DatabaseConfig, Db, StoreError};
use crate::config_section::ms;

/// A write may take this many `database.timeout_ms` (a batch of thousands of rows).
pub(super) const WRITE_TIMEOUT_FACTOR: u32 = 10;

/// How long past the database's own stop a read is still waited for, so the database's answer
/// (PostgreSQL's cancel, SQLite's interrupt) comes before the caller gives up.
const CANCEL_GRACE: Duration = Duration::from_millis(250);

/// SQLite VM instructions between two looks at a read's deadline (microseconds of work).
const SQLITE_PROGRESS_OPS: i32 = 10_000;

/// SQLite's result code for a statement stopped by `sqlite3_interrupt` or a progress handler.
const SQLITE_INTERRUPT: &str = "9";

/// The pools of one store.
pub(super) struct Pools {
    pub write: Db,
    pub read: Db,
    pub history: Db,
    /// The caller's bound on each read: the database's own plus [`CANCEL_GRACE`].
    pub read_bound: Duration,
}

impl Pools {
    /// Builds the pools without connecting.
    pub(super) fn open(cfg: &DatabaseConfig) -> Result<Pools, StoreError> {
        let timeout = ms(cfg.timeout_ms);
        let query_timeout = ms(cfg.query_timeout_ms);
        let read_bound = query_timeout.saturating_add(CANCEL_GRACE);
        if cfg.url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(&cfg.url)
                .map_err(|e| StoreError::Url(format!("database.url: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(timeout);
            let write = SqlitePoolOptions::new()
                .max_connections(cfg.pool_size)
                .acquire_timeout(timeout)
                .connect_lazy_with(opts.clone());
            let read = SqlitePoolOptions::new()
                .max_connections(cfg.read_pool_size)
                .acquire_timeout(timeout)
                .after_connect(move |conn, _| Box::pin(arm_deadline(conn, query_timeout)))
                .before_acquire(move |conn, _| {
                    Box::pin(async move { arm_deadline(conn, query_timeout).await.map(|()| true) })
                })
                .connect_lazy_with(opts);
            return Ok(Pools {
                write: Db::Sqlite(write),
                read: Db::Sqlite(read.clone()),
                history: Db::Sqlite(read),
                read_bound,
            });
        }
        let pool = |url: &str, key: &str, size: u32, statement: Duration| {
            let opts = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::Url(format!("{key}: {e}")))?
                .options([("statement_timeout", statement.as_millis().to_string())]);
            Ok::<_, StoreError>(Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(size)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(opts),
            ))
        };
        let write_limit = timeout.saturating_mul(WRITE_TIMEOUT_FACTOR);
        let read = pool(&cfg.url, "database.url", cfg.read_pool_size, query_timeout)?;
        let history = if cfg.read_url.is_empty() {
            read.clone()
        } else {
            pool(
                &cfg.read_url,
                "database.read_url",
                cfg.read_pool_size,
                query_timeout,
            )?
        };
        Ok(Pools {
            write: pool(&cfg.url, "database.url", cfg.pool_size, write_limit)?,
            read,
            history,
            read_bound,
        })
    }
}

/// Arms this SQLite connection for one read: past `bound` from now, whatever it runs is
/// interrupted. The pool arms each connection as it hands it out, so the deadline is the
/// read's own.
async fn arm_deadline(conn: &mut SqliteConnection, bound: Duration) -> Result<(), sqlx::Error> {
    let deadline = Instant::now() + bound;
    conn.lock_handle()
        .await?
        .set_progress_handler(SQLITE_PROGRESS_OPS, move || Instant::now() < deadline);
    Ok(())
}

/// Whether `e` is a SQLite statement stopped at its deadline (see [`arm_deadline`]).
pub(super) fn interrupted(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::Database(d)) if d.code().as_deref() == Some(SQLITE_INTERRUPT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// A read that would run for hours stops at its bound, and its connection (the only one)
    /// serves the next read.
    #[tokio::test]
    async fn a_sqlite_read_is_interrupted_at_its_bound_and_its_connection_reused() {
        let dir = std::env::temp_dir().join(format!("tc-pools-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = crate::config::Config::defaults().unwrap().database;
        cfg.url = format!("sqlite://{}/t.db?mode=rwc", dir.display());
        cfg.query_timeout_ms = 100;
        cfg.read_pool_size = 1;
        let store = Store::open(&cfg).unwrap();
        let slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                    WHERE i < 1000000000000) SELECT COUNT(*) FROM n";
        let Db::Sqlite(pool) = &store.history else {
            unreachable!()
        };
        let e = store
            .bounded(async { Ok(sqlx::query_as::<_, (i64,)>(slow).fetch_one(pool).await?) })
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Timeout(_)), "{e:?}");
        let one: (i64,) = store
            .bounded(async { Ok(sqlx::query_as("SELECT 1").fetch_one(pool).await?) })
            .await
            .unwrap();
        assert_eq!(one.0, 1);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
