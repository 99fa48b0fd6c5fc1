//! SQLite's fresh-store load: an import into a store whose `ticks` and `bars` are empty loads
//! them without their secondary indexes and builds each index once at the end (a sort, instead
//! of a B-tree insert per row per index), all in one write transaction.
//!
//! - The transaction is `BEGIN IMMEDIATE`, taken before the tables are looked at, so the
//!   emptiness it sees holds until the commit: no other writer can add a row meanwhile (a server
//!   recording into the same file waits, then spills to its journal, as for any long write).
//!   Readers keep seeing the store as it was (WAL) until the commit, never a table without its
//!   indexes; a failed or killed import leaves nothing behind.
//! - The indexes are read from `sqlite_master` (whatever the migrations made), dropped, and made
//!   again from their own `CREATE INDEX` text, so the schema after the import is the schema
//!   before it.
//! - Identity still holds: a unique index that cannot be built because the import itself held
//!   the same tick twice (the same file named twice, or overlapping files) has its duplicates
//!   removed (the first copy kept), and is then built. [`FreshLoad::finish`] returns how many
//!   rows went, so the summary counts them as already present.

use sqlx::pool::PoolConnection;
use sqlx::{Row, Sqlite};

use crate::store::StoreError;

/// The tables whose indexes are built after the load, with the identity each one's unique
/// index enforces (its duplicates are removed before that index is built).
const TABLES: [(&str, &str); 2] = [
    ("ticks", "symbol, epoch, ts, seq"),
    ("bars", "symbol, interval_ns, ts, epoch"),
];

/// One index taken off for the load.
#[derive(Debug, Clone)]
struct Dropped {
    table: String,
    sql: String,
    unique: bool,
}

/// A fresh-store load in progress: the transaction is open, the indexes are off.
#[derive(Debug)]
pub(crate) struct FreshLoad {
    indexes: Vec<Dropped>,
}

/// Rows removed as duplicates when the unique indexes were built.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Removed {
    pub(crate) ticks: u64,
    pub(crate) bars: u64,
}

impl FreshLoad {
    /// Opens the import's write transaction; when `ticks` and `bars` are empty, takes their
    /// indexes off and returns the load. Otherwise commits the (empty) transaction at once and
    /// returns `None`: the import writes chunk by chunk into the indexed tables.
    pub(crate) async fn begin(
        conn: &mut PoolConnection<Sqlite>,
    ) -> Result<Option<FreshLoad>, StoreError> {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut **conn).await?;
        match Self::take_indexes(conn).await {
            Ok(Some(load)) => Ok(Some(load)),
            Ok(None) => {
                sqlx::query("COMMIT").execute(&mut **conn).await?;
                Ok(None)
            }
            Err(e) => {
                rollback(conn).await;
                Err(e)
            }
        }
    }

    async fn take_indexes(
        conn: &mut PoolConnection<Sqlite>,
    ) -> Result<Option<FreshLoad>, StoreError> {
        let (stored,): (bool,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM ticks) OR EXISTS (SELECT 1 FROM bars)")
                .fetch_one(&mut **conn)
                .await?;
        if stored {
            return Ok(None);
        }
        // Automatic indexes (a UNIQUE column's) have no SQL and cannot be dropped; ours all
        // have. In creation order, so they are made again in it.
        let rows = sqlx::query(
            "SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'index' \
             AND tbl_name IN ('ticks', 'bars') AND sql IS NOT NULL ORDER BY rowid",
        )
        .fetch_all(&mut **conn)
        .await?;
        let mut indexes = Vec::with_capacity(rows.len());
        for row in rows {
            let (table, name, sql): (String, String, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let unique = sql
                .trim_start()
                .get(..13)
                .is_some_and(|head| head.eq_ignore_ascii_case("CREATE UNIQUE"));
            sqlx::query(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))
                .execute(&mut **conn)
                .await?;
            indexes.push(Dropped { table, sql, unique });
        }
        tracing::info!(
            indexes = indexes.len(),
            "empty store: loading without indexes, built after the load"
        );
        Ok(Some(FreshLoad { indexes }))
    }

    /// Builds the indexes again (removing the import's own duplicates before a unique one),
    /// still inside the transaction; the caller then reads edge windows and commits.
    pub(crate) async fn build_indexes(
        &self,
        conn: &mut PoolConnection<Sqlite>,
    ) -> Result<Removed, StoreError> {
        let mut removed = Removed::default();
        for index in &self.indexes {
            if !index.unique {
                sqlx::query(&index.sql).execute(&mut **conn).await?;
                continue;
            }
            sqlx::query("SAVEPOINT unique_index")
                .execute(&mut **conn)
                .await?;
            match sqlx::query(&index.sql).execute(&mut **conn).await {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    sqlx::query("ROLLBACK TO unique_index")
                        .execute(&mut **conn)
                        .await?;
                    let n = remove_duplicates(conn, &index.table).await?;
                    tracing::info!(table = %index.table, removed = n, "duplicates of the import removed");
                    match index.table.as_str() {
                        "ticks" => removed.ticks += n,
                        _ => removed.bars += n,
                    }
                    sqlx::query(&index.sql).execute(&mut **conn).await?;
                }
                Err(e) => return Err(e.into()),
            }
            sqlx::query("RELEASE unique_index")
                .execute(&mut **conn)
                .await?;
        }
        Ok(removed)
    }

    /// Commits the load.
    pub(crate) async fn commit(conn: &mut PoolConnection<Sqlite>) -> Result<(), StoreError> {
        sqlx::query("COMMIT").execute(&mut **conn).await?;
        Ok(())
    }
}

/// Rolls the import's transaction back (a failed import stores nothing); a failure to do so
/// is logged, the connection's close rolls it back anyway.
pub(crate) async fn rollback(conn: &mut PoolConnection<Sqlite>) {
    if let Err(error) = sqlx::query("ROLLBACK").execute(&mut **conn).await {
        tracing::warn!(%error, "import: rollback failed");
    }
}

/// Deletes every row of `table` whose identity an earlier row (lower `id`) has; returns how
/// many.
async fn remove_duplicates(
    conn: &mut PoolConnection<Sqlite>,
    table: &str,
) -> Result<u64, StoreError> {
    let Some((_, identity)) = TABLES.iter().find(|(t, _)| *t == table) else {
        return Err(StoreError::Corrupt(format!(
            "a unique index of {table} has duplicates after the import"
        )));
    };
    let sql = format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER \
         (PARTITION BY {identity} ORDER BY id) AS n FROM {table}) WHERE n > 1)"
    );
    Ok(sqlx::query(&sql)
        .execute(&mut **conn)
        .await?
        .rows_affected())
}
