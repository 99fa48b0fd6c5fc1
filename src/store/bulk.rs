//! The write-behind bulk insert, written once for ticks and bars: a multi-row `INSERT` per chunk
//! on SQLite, one `UNNEST` of column arrays on PostgreSQL (one statement, one round trip), both
//! in one transaction. A row whose identity is already stored is skipped
//! (`ON CONFLICT DO NOTHING`), so a batch retried after a commit whose acknowledgement was lost
//! stores nothing twice.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, QueryBuilder, Sqlite};

use super::{Db, Store, StoreError};

/// What ends a bulk insert: a row already stored is skipped.
pub(crate) const SKIP_STORED: &str = " ON CONFLICT DO NOTHING";

/// A kind of row the store inserts in bulk: its two statements.
pub(crate) trait BulkRow: Sized + Sync {
    /// Rows per SQLite statement: SQLite allows 32,766 bound parameters per statement.
    const SQLITE_ROWS_PER_INSERT: usize;

    /// One multi-row SQLite `INSERT` of `rows` (at most [`Self::SQLITE_ROWS_PER_INSERT`]),
    /// ending with `conflict`.
    fn sqlite_insert<'a>(rows: &'a [Self], conflict: &str) -> QueryBuilder<'a, Sqlite>;

    /// One PostgreSQL `INSERT .. SELECT * FROM UNNEST(..)` of `rows`' columns (one statement,
    /// one round trip) that skips a row already stored.
    fn postgres_insert(rows: &[Self]) -> Query<'_, Postgres, PgArguments>;
}

impl Store {
    /// Inserts `rows` in one transaction; returns how many were new. A write stuck on a dead
    /// connection fails after the write timeout rather than stalling the writer forever.
    pub(super) async fn insert_bulk<R: BulkRow>(&self, rows: &[R]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let write = async {
            match &self.db {
                Db::Sqlite(p) => {
                    let mut tx = p.begin().await?;
                    let mut inserted = 0;
                    for chunk in rows.chunks(R::SQLITE_ROWS_PER_INSERT) {
                        let mut qb = R::sqlite_insert(chunk, SKIP_STORED);
                        inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                    }
                    tx.commit().await.map(|()| inserted)
                }
                Db::Postgres(p) => {
                    let mut tx = p.begin().await?;
                    let inserted = R::postgres_insert(rows)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await.map(|()| inserted)
                }
            }
        };
        let limit = self.timeout.saturating_mul(super::WRITE_TIMEOUT_FACTOR);
        let inserted = tokio::time::timeout(limit, write)
            .await
            .map_err(|_| StoreError::Timeout(limit))??;
        Ok(inserted)
    }
}
