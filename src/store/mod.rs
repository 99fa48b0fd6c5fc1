//! Storage: ticks, bars, users, API keys and trades in SQLite or PostgreSQL, chosen by
//! `database.url`.
//!
//! [`Store`] is the repository: every query the server runs lives here, written once and run
//! unchanged on both backends (times are integers, placeholders are `$N`, which SQLite accepts
//! too). The schema lives in `migrations/sqlite` and `migrations/postgres`. Ticks and the
//! pipeline's closed bars reach the database write-behind through [`recorder`]; [`retention`]
//! deletes old ones.
//!
//! This file holds the pool and its lifecycle (open, migrate, ping, close) and [`StoreError`];
//! the queries are `impl Store` blocks, one file per concept: `ticks.rs`, `bars.rs`, `users.rs`
//! (users and API keys), `trades.rs`.

mod config;
pub mod journal;
pub mod recorder;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::config_section::ms;
use crate::model::Side;

pub use config::{DatabaseConfig, OnOverload};
pub use recorder::{Breaker, Recorder};

/// Migrations embedded at build time, one set per backend.
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bad database url: {0}")]
    Url(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("no user {0:?}")]
    NoSuchUser(String),
    #[error("idempotency key reused with a different trade")]
    IdempotencyConflict,
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error("partitions: {0}")]
    Partition(String),
}

/// A statement that writes exact decimals, for the backend. Such statements are written for
/// PostgreSQL, each decimal parameter as `CAST($n AS NUMERIC)` (it is bound as its digits);
/// SQLite keeps decimals as TEXT (it has no decimal type, and NUMERIC affinity would turn 0.3
/// into the nearest binary float), so there the cast is to TEXT. Reads use `CAST(col AS TEXT)`,
/// the same on both.
pub(crate) fn exact_sql(db: &Db, sql: &'static str) -> std::borrow::Cow<'static, str> {
    match db {
        Db::Postgres(_) => sql.into(),
        Db::Sqlite(_) => sql.replace(" AS NUMERIC)", " AS TEXT)").into(),
    }
}

impl StoreError {
    /// True when the fault is the database being unreachable or overloaded (worth retrying and
    /// reporting as 503), rather than a bug or a client fault.
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Timeout(_) => true,
            StoreError::Db(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Database(_)
            ),
            _ => false,
        }
    }
}

/// The two backends.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds: the same SQL, typed per backend.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// Writes a folded position (`positions::Folded`) back inside the caller's transaction `$tx`.
/// A macro for the same reason as `on_pool!`: the transaction's type differs per backend.
/// `$sql` is `positions::UPDATE_SQL` for the backend ([`exact_sql`]).
macro_rules! store_position {
    ($tx:expr, $sql:expr, $user:expr, $symbol:expr, $folded:expr) => {
        sqlx::query($sql)
            .bind($user)
            .bind($symbol)
            .bind($crate::store::positions::digits($folded.holding.quantity))
            .bind($crate::store::positions::digits($folded.holding.cost))
            .bind($crate::store::positions::digits($folded.holding.realized))
            .bind($folded.trades)
            .bind($folded.last.0)
            .bind($folded.last.1)
            .execute(&mut *$tx)
            .await
    };
}

// Declared after the macros so the query files can use them.
mod bars;
mod bulk;
mod indicators;
pub mod partitions;
mod pools;
mod positions;
pub mod retention;
mod ticks;
mod trades;
mod users;

pub use bars::{BAR_1M_NS, BAR_1S_NS, BarPage, BarRecord, BarRow, Order};
pub(crate) use bars::{SQLITE_ROWS_PER_INSERT as SQLITE_BARS_PER_INSERT, sqlite_bars_insert};

/// Every query a REST history page runs, by name, with its parameter count: tests check each
/// one's plan is bounded by the page (`EXPLAIN`).
#[doc(hidden)]
pub const HISTORY_QUERIES: [(&str, &str, usize); 9] = [
    ("bars page", bars::PAGE_BARS_SQL, 5),
    ("bars page, newest first", bars::PAGE_BARS_DESC_SQL, 5),
    ("first bar of a range", bars::FIRST_BAR_SQL, 4),
    ("last bar of a range", bars::LAST_BAR_SQL, 4),
    ("bars of a range", bars::SCAN_BARS_SQL, 4),
    ("ticks page", ticks::TICKS_PAGE_SQL, 6),
    ("ticks page, newest first", ticks::TICKS_PAGE_DESC_SQL, 6),
    ("indicators page", indicators::INDICATORS_PAGE_SQL, 4),
    (
        "indicators page, newest first",
        indicators::INDICATORS_PAGE_DESC_SQL,
        4,
    ),
];

/// The queries a replay from a time (`from_ts`) runs on this run's stored ticks, by name, with
/// their parameters in order (`symbol`, `epoch`, then `since`/`start`, `before`, `limit`): tests
/// check each one's plan is an index walk in `seq` order that stops at its limit. They have no
/// time range to prune days by.
#[doc(hidden)]
pub const RUN_QUERIES: [(&str, &str, usize); 2] = [
    ("first seq of a run at a time", ticks::RUN_START_SQL, 4),
    ("a run's ticks by seq", ticks::RUN_PAGE_SQL, 5),
];
pub use indicators::{IndicatorPage, IndicatorRecord, IndicatorRow};
pub use positions::{Fold, Holding, OutOfRange, PositionRow};
pub(crate) use ticks::{SQLITE_ROWS_PER_INSERT as SQLITE_TICKS_PER_INSERT, sqlite_ticks_insert};
pub use ticks::{StoredTick, TickRow};
pub use trades::{NewTrade, Recorded, Trade};
pub use users::{hash_key, new_key};

fn side_code(s: Side) -> i16 {
    match s {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

fn side_of(code: i16) -> Side {
    if code == 0 { Side::Buy } else { Side::Sell }
}

/// A tick's side in the `side` column: 0 buy, 1 sell, 2 none (the source gave no side). The
/// column stays `NOT NULL`, so no migration: earlier rows are all 0 or 1.
pub(crate) fn tick_side_code(s: Option<Side>) -> i16 {
    s.map_or(TICK_SIDE_NONE, side_code)
}

fn tick_side_of(code: i16) -> Option<Side> {
    (code != TICK_SIDE_NONE).then(|| side_of(code))
}

const TICK_SIDE_NONE: i16 = 2;

use pools::WRITE_TIMEOUT_FACTOR;

/// The repository over two pools: writes and reads.
#[derive(Debug)]
pub struct Store {
    /// Writes: the recorder, trades, users, retention, migrations.
    db: Db,
    /// REST reads that must see the writes (positions, trades, API keys), so they can never
    /// take the writer's connections.
    read: Db,
    /// REST history reads (`/ticks`, `/bars`): `database.read_url`'s server, or `read`.
    history: Db,
    timeout: Duration,
    /// The caller's bound on each read.
    read_bound: Duration,
    migrated: AtomicBool,
    /// PostgreSQL: the days whose partitions exist (`partitions.rs`).
    partition_days: partitions::KnownDays,
}

// === impl Store ===

impl Store {
    /// Builds the pools without connecting: a database that is down at start-up delays
    /// persistence, not streaming. SQLite files are created on first use, in WAL mode.
    ///
    /// Writes (the recorder, trades, users, retention, migrations) and REST reads use separate
    /// pools (`database.pool_size`, `database.read_pool_size`), so however many readers wait,
    /// the writer always has its connections; history reads may go to a replica
    /// (`database.read_url`). Every query has a time bound the database enforces itself: on
    /// PostgreSQL each connection sets `statement_timeout` (`database.query_timeout_ms` for
    /// reads, the insert bound for writes); on SQLite a read is interrupted at its deadline
    /// (`pools.rs`). Either way the reader answers 503.
    pub fn open(cfg: &DatabaseConfig) -> Result<Store, StoreError> {
        let pools = pools::Pools::open(cfg)?;
        Ok(Store {
            db: pools.write,
            read: pools.read,
            history: pools.history,
            timeout: ms(cfg.timeout_ms),
            read_bound: pools.read_bound,
            migrated: AtomicBool::new(false),
            partition_days: Default::default(),
        })
    }

    /// Runs a read within `database.query_timeout_ms` (the database stops the statement
    /// itself: PostgreSQL cancels it, SQLite interrupts it; the caller's bound is a backstop).
    async fn bounded<T>(
        &self,
        read: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.read_bound, read)
            .await
            .map_err(|_| StoreError::Timeout(self.read_bound))?
            .map_err(|e| {
                if pools::interrupted(&e) {
                    StoreError::Timeout(self.read_bound)
                } else {
                    e
                }
            })
    }

    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Db::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        self.migrated.store(true, Ordering::Release);
        Ok(())
    }

    /// Migrates unless that already succeeded in this process.
    /// Runs the migrations up to and including `version` only (tests of a later migration
    /// start from the schema before it).
    #[doc(hidden)]
    pub async fn migrate_to(&self, version: i64) -> Result<(), StoreError> {
        let upto = |m: &sqlx::migrate::Migrator| sqlx::migrate::Migrator {
            migrations: m
                .migrations
                .iter()
                .filter(|x| x.version <= version)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        match &self.db {
            Db::Sqlite(p) => upto(&SQLITE_MIGRATIONS).run(p).await?,
            Db::Postgres(p) => upto(&POSTGRES_MIGRATIONS).run(p).await?,
        }
        Ok(())
    }

    pub(crate) async fn ensure_migrated(&self) -> Result<(), StoreError> {
        if self.migrated.load(Ordering::Acquire) {
            return Ok(());
        }
        self.migrate().await
    }

    /// `SELECT 1` within the configured timeout.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let q =
            async { on_pool!(&self.db, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ())) };
        tokio::time::timeout(self.timeout, q)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))??;
        Ok(())
    }

    /// Refreshes the planner's statistics after many rows were written (`ANALYZE` on
    /// PostgreSQL, `PRAGMA optimize` on SQLite), so range reads keep their index plans after a
    /// bulk load instead of being planned for the empty table the last statistics saw.
    pub async fn refresh_statistics(&self) -> Result<(), StoreError> {
        let sql = match self.db {
            Db::Sqlite(_) => "PRAGMA optimize",
            Db::Postgres(_) => "ANALYZE ticks, bars",
        };
        let limit = self.timeout.saturating_mul(WRITE_TIMEOUT_FACTOR);
        let q = async { on_pool!(&self.db, p => sqlx::query(sql).execute(p).await.map(|_| ())) };
        tokio::time::timeout(limit, q)
            .await
            .map_err(|_| StoreError::Timeout(limit))??;
        Ok(())
    }

    /// Closes both pools (waits for checked-out connections).
    pub async fn close(&self) {
        on_pool!(&self.history, p => p.close().await);
        on_pool!(&self.read, p => p.close().await);
        on_pool!(&self.db, p => p.close().await)
    }

    /// The write pool, for tests and tools that need the backend itself.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_codes_round_trip() {
        for s in [Side::Buy, Side::Sell] {
            assert_eq!(side_of(side_code(s)), s);
        }
        for s in [Some(Side::Buy), Some(Side::Sell), None] {
            assert_eq!(tick_side_of(tick_side_code(s)), s);
        }
        // Rows written before ticks could lack a side keep their meaning.
        assert_eq!(
            (tick_side_code(Some(Side::Buy)), tick_side_code(None)),
            (0, 2)
        );
    }
}
