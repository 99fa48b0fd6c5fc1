//! Storage: ticks, users, API keys and trades in SQLite or PostgreSQL, chosen by `database.url`.
//!
//! [`Store`] is the repository: every query the server runs lives here, written once and run
//! unchanged on both backends (times are integers, placeholders are `$N`, which SQLite accepts
//! too). The schema lives in `migrations/sqlite` and `migrations/postgres`. Ticks reach the
//! database write-behind through [`recorder`]; [`retention`] deletes old ones.

pub mod recorder;
pub mod retention;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{QueryBuilder, Sqlite};

use crate::config::{DatabaseConfig, ms};
use crate::model::Side;

pub use recorder::{Breaker, Recorder};

/// Migrations embedded at build time, one set per backend.
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// SQLite allows 32,766 bound parameters per statement; 7 per tick row.
const SQLITE_ROWS_PER_INSERT: usize = 4000;

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
    #[error("idempotency key reused with a different trade")]
    IdempotencyConflict,
}

impl StoreError {
    /// True when the fault is the database being unreachable or overloaded (worth retrying and
    /// reporting as 503), rather than a bug or a client fault.
    pub fn is_unavailable(&self) -> bool {
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
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// One stored tick.
#[derive(Debug, Clone, PartialEq)]
pub struct TickRow {
    pub symbol: Arc<str>,
    /// Exchange time, ns since the epoch.
    pub ts: i64,
    /// Server ingest time, ns since the epoch.
    pub ingest_ts: i64,
    pub seq: i64,
    pub price: f64,
    pub size: f64,
    pub side: Side,
}

/// A tick read back, with its row id (the cursor's tie-break).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTick {
    pub id: i64,
    pub row: TickRow,
}

/// One OHLCV bar aggregated from stored ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarRow {
    /// Bucket start, ns since the epoch.
    pub start: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub trades: i64,
}

/// A fill as a client reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTrade {
    pub symbol: String,
    pub side: Side,
    pub quantity: f64,
    pub price: f64,
    /// Fill time, ns since the epoch.
    pub ts: i64,
}

/// A stored fill.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub id: i64,
    pub trade: NewTrade,
}

/// Whether a trade insert created a row or found the one its idempotency key names.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Created(Trade),
    Replayed(Trade),
}

fn side_code(s: Side) -> i16 {
    match s {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

fn side_of(code: i16) -> Side {
    if code == 0 { Side::Buy } else { Side::Sell }
}

/// SHA-256 hex of an API key: what the database holds instead of the key.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random API key: 32 bytes from the OS, hex.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn now_ms() -> i64 {
    crate::model::now_ms()
}

/// The repository over one pool.
#[derive(Debug)]
pub struct Store {
    db: Db,
    timeout: Duration,
    migrated: AtomicBool,
}

// === impl Store ===

impl Store {
    /// Builds the pool without connecting: a database that is down at start-up delays
    /// persistence, not streaming. SQLite files are created on first use, in WAL mode.
    pub fn open(cfg: &DatabaseConfig) -> Result<Store, StoreError> {
        let timeout = ms(cfg.timeout_ms);
        let db = if cfg.url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(&cfg.url)
                .map_err(|e| StoreError::Url(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(timeout);
            Db::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(cfg.pool_size)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(opts),
            )
        } else {
            Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(cfg.pool_size)
                    .acquire_timeout(timeout)
                    .connect_lazy(&cfg.url)
                    .map_err(|e| StoreError::Url(e.to_string()))?,
            )
        };
        Ok(Store {
            db,
            timeout,
            migrated: AtomicBool::new(false),
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
    pub async fn ensure_migrated(&self) -> Result<(), StoreError> {
        if self.migrated.load(Ordering::Acquire) {
            return Ok(());
        }
        self.migrate().await
    }

    /// `SELECT 1` within the configured timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let q =
            async { on_pool!(&self.db, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ())) };
        tokio::time::timeout(self.timeout, q)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))??;
        Ok(())
    }

    /// Closes the pool (waits for checked-out connections).
    pub async fn close(&self) {
        on_pool!(&self.db, p => p.close().await)
    }

    /// The pool, for tests and tools that need the backend itself.
    pub fn db(&self) -> &Db {
        &self.db
    }

    // --- ticks ---

    /// Inserts rows in one transaction: multi-row `INSERT` on SQLite, `UNNEST` of column
    /// arrays on PostgreSQL (one statement, one round trip).
    pub async fn insert_ticks(&self, rows: &[TickRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let write = async {
            match &self.db {
                Db::Sqlite(p) => {
                    let mut tx = p.begin().await?;
                    for chunk in rows.chunks(SQLITE_ROWS_PER_INSERT) {
                        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                            "INSERT INTO ticks (symbol, ts, ingest_ts, seq, price, size, side) ",
                        );
                        qb.push_values(chunk, |mut b, r| {
                            b.push_bind(&*r.symbol)
                                .push_bind(r.ts)
                                .push_bind(r.ingest_ts)
                                .push_bind(r.seq)
                                .push_bind(r.price)
                                .push_bind(r.size)
                                .push_bind(side_code(r.side));
                        });
                        qb.build().execute(&mut *tx).await?;
                    }
                    tx.commit().await
                }
                Db::Postgres(p) => {
                    let mut tx = p.begin().await?;
                    let symbols: Vec<&str> = rows.iter().map(|r| &*r.symbol).collect();
                    let ts: Vec<i64> = rows.iter().map(|r| r.ts).collect();
                    let ingest: Vec<i64> = rows.iter().map(|r| r.ingest_ts).collect();
                    let seq: Vec<i64> = rows.iter().map(|r| r.seq).collect();
                    let price: Vec<f64> = rows.iter().map(|r| r.price).collect();
                    let size: Vec<f64> = rows.iter().map(|r| r.size).collect();
                    let side: Vec<i16> = rows.iter().map(|r| side_code(r.side)).collect();
                    sqlx::query(
                        "INSERT INTO ticks (symbol, ts, ingest_ts, seq, price, size, side) \
                         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], \
                         $5::float8[], $6::float8[], $7::int2[])",
                    )
                    .bind(symbols)
                    .bind(ts)
                    .bind(ingest)
                    .bind(seq)
                    .bind(price)
                    .bind(size)
                    .bind(side)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await
                }
            }
        };
        // A write stuck on a dead connection must not stall the writer forever.
        let limit = self.timeout * 10;
        tokio::time::timeout(limit, write)
            .await
            .map_err(|_| StoreError::Timeout(limit))??;
        Ok(())
    }

    /// Ticks of `symbol` with `from <= ts < to`, ordered by (ts, id), strictly after `after`.
    pub async fn ticks(
        &self,
        symbol: &str,
        from: i64,
        to: i64,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<StoredTick>, StoreError> {
        let (after_ts, after_id) = after.unwrap_or((i64::MIN, i64::MIN));
        type Row = (i64, i64, i64, i64, f64, f64, i16);
        let rows: Vec<Row> = on_pool!(&self.db, p => {
            sqlx::query_as(
                "SELECT id, ts, ingest_ts, seq, price, size, side FROM ticks \
                 WHERE symbol = $1 AND ts >= $2 AND ts < $3 \
                 AND (ts > $4 OR (ts = $4 AND id > $5)) \
                 ORDER BY ts, id LIMIT $6",
            )
            .bind(symbol)
            .bind(from)
            .bind(to)
            .bind(after_ts)
            .bind(after_id)
            .bind(limit as i64)
            .fetch_all(p)
            .await?
        });
        let symbol: Arc<str> = Arc::from(symbol);
        Ok(rows
            .into_iter()
            .map(|(id, ts, ingest_ts, seq, price, size, side)| StoredTick {
                id,
                row: TickRow {
                    symbol: symbol.clone(),
                    ts,
                    ingest_ts,
                    seq,
                    price,
                    size,
                    side: side_of(side),
                },
            })
            .collect())
    }

    /// OHLCV bars of `interval_ns` over `from <= ts < to`, oldest first, at most `limit`.
    ///
    /// Open and close are the first and last tick by exchange time (then by row id), not by
    /// arrival, so ticks stored out of order still give the right bar.
    pub async fn bars(
        &self,
        symbol: &str,
        interval_ns: i64,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<BarRow>, StoreError> {
        type Row = (i64, f64, f64, f64, f64, f64, i64);
        let rows: Vec<Row> = on_pool!(&self.db, p => {
            sqlx::query_as(
                "SELECT bucket, MIN(o), MAX(price), MIN(price), MIN(c), SUM(size), COUNT(*) FROM ( \
                   SELECT ts / $2 AS bucket, price, size, \
                     FIRST_VALUE(price) OVER w AS o, LAST_VALUE(price) OVER w AS c \
                   FROM ticks WHERE symbol = $1 AND ts >= $3 AND ts < $4 \
                   WINDOW w AS (PARTITION BY ts / $2 ORDER BY ts, id \
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) \
                 ) t GROUP BY bucket ORDER BY bucket LIMIT $5",
            )
            .bind(symbol)
            .bind(interval_ns)
            .bind(from)
            .bind(to)
            .bind(limit as i64)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(bucket, open, high, low, close, volume, trades)| BarRow {
                start: bucket.saturating_mul(interval_ns),
                open,
                high,
                low,
                close,
                volume,
                trades,
            })
            .collect())
    }

    /// Number of stored ticks (all symbols, or one).
    pub async fn count_ticks(&self, symbol: Option<&str>) -> Result<i64, StoreError> {
        let n: (i64,) = on_pool!(&self.db, p => match symbol {
            Some(s) => sqlx::query_as("SELECT COUNT(*) FROM ticks WHERE symbol = $1")
                .bind(s)
                .fetch_one(p)
                .await?,
            None => sqlx::query_as("SELECT COUNT(*) FROM ticks").fetch_one(p).await?,
        });
        Ok(n.0)
    }

    /// Deletes ticks with exchange time before `ts`; returns how many.
    pub async fn delete_ticks_before(&self, ts: i64) -> Result<u64, StoreError> {
        let n = on_pool!(&self.db, p => sqlx::query("DELETE FROM ticks WHERE ts < $1")
            .bind(ts)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n)
    }

    // --- users and keys ---

    /// Creates a user with a fresh API key; returns (user id, key). Only the key's hash is
    /// stored: the key is shown to the caller once.
    pub async fn create_user(&self, name: &str) -> Result<(i64, String), StoreError> {
        let key = new_key().map_err(|e| StoreError::Url(format!("no OS randomness: {e}")))?;
        let hash = hash_key(&key);
        let now = now_ms();
        let id = on_pool!(&self.db, p => {
            let mut tx = p.begin().await?;
            let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                return Err(StoreError::UserExists(name.to_owned()));
            }
            let (id,): (i64,) =
                sqlx::query_as("INSERT INTO users (name, created_ms) VALUES ($1, $2) RETURNING id")
                    .bind(name)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
            sqlx::query("INSERT INTO api_keys (user_id, key_hash, created_ms) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(&hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            id
        });
        Ok((id, key))
    }

    /// The user an API key belongs to.
    pub async fn user_for_key(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let hash = hash_key(key);
        let row: Option<(i64,)> = on_pool!(&self.db, p => {
            sqlx::query_as("SELECT user_id FROM api_keys WHERE key_hash = $1")
                .bind(&hash)
                .fetch_optional(p)
                .await?
        });
        Ok(row.map(|r| r.0))
    }

    // --- trades ---

    /// Records a fill. With an idempotency key, a second request with the same key returns the
    /// first trade (if it is the same trade) instead of recording another.
    pub async fn record_trade(
        &self,
        user: i64,
        t: &NewTrade,
        idempotency_key: Option<&str>,
    ) -> Result<Recorded, StoreError> {
        if let Some(key) = idempotency_key
            && let Some(existing) = self.trade_by_key(user, key).await?
        {
            return Self::replay(existing, t);
        }
        let inserted: Result<(i64,), sqlx::Error> = on_pool!(&self.db, p => {
            sqlx::query_as(
                "INSERT INTO trades (user_id, symbol, side, quantity, price, ts, idempotency_key, \
                 created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(user)
            .bind(&t.symbol)
            .bind(side_code(t.side))
            .bind(t.quantity)
            .bind(t.price)
            .bind(t.ts)
            .bind(idempotency_key)
            .bind(now_ms())
            .fetch_one(p)
            .await
        });
        match inserted {
            Ok((id,)) => Ok(Recorded::Created(Trade {
                id,
                trade: t.clone(),
            })),
            // Two concurrent requests with one key: the loser reads the winner's row.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => match idempotency_key {
                Some(key) => match self.trade_by_key(user, key).await? {
                    Some(existing) => Self::replay(existing, t),
                    None => Err(StoreError::Db(sqlx::Error::Database(e))),
                },
                None => Err(StoreError::Db(sqlx::Error::Database(e))),
            },
            Err(e) => Err(e.into()),
        }
    }

    fn replay(existing: Trade, t: &NewTrade) -> Result<Recorded, StoreError> {
        if existing.trade == *t {
            Ok(Recorded::Replayed(existing))
        } else {
            Err(StoreError::IdempotencyConflict)
        }
    }

    async fn trade_by_key(&self, user: i64, key: &str) -> Result<Option<Trade>, StoreError> {
        type Row = (i64, String, i16, f64, f64, i64);
        let row: Option<Row> = on_pool!(&self.db, p => {
            sqlx::query_as(
                "SELECT id, symbol, side, quantity, price, ts FROM trades \
                 WHERE user_id = $1 AND idempotency_key = $2",
            )
            .bind(user)
            .bind(key)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(Self::trade_of))
    }

    /// Every fill of a user, in (time, id) order.
    pub async fn trades(&self, user: i64) -> Result<Vec<Trade>, StoreError> {
        type Row = (i64, String, i16, f64, f64, i64);
        let rows: Vec<Row> = on_pool!(&self.db, p => {
            sqlx::query_as(
                "SELECT id, symbol, side, quantity, price, ts FROM trades \
                 WHERE user_id = $1 ORDER BY ts, id",
            )
            .bind(user)
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(Self::trade_of).collect())
    }

    fn trade_of(
        (id, symbol, side, quantity, price, ts): (i64, String, i16, f64, f64, i64),
    ) -> Trade {
        Trade {
            id,
            trade: NewTrade {
                symbol,
                side: side_of(side),
                quantity,
                price,
                ts,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let k = new_key().unwrap();
        assert_eq!(k.len(), 64);
        assert_ne!(k, new_key().unwrap());
    }

    #[test]
    fn side_codes_round_trip() {
        for s in [Side::Buy, Side::Sell] {
            assert_eq!(side_of(side_code(s)), s);
        }
    }
}
