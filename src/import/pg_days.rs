//! PostgreSQL's new-day load: the rows of a UTC day that has no partition yet (history being
//! imported for the first time) are `COPY`ed into a standalone table with no index, whose
//! indexes are built once at the end of the import (a sort each, instead of a B-tree insert per
//! row per index), and which is then attached as that day's partition.
//!
//! - The standalone table (`tickcast_import_<token>_<parent>_<day>`) is made `LIKE` the parent,
//!   its `id` drawn from the parent's identity sequence, with a `CHECK` constraint equal to the
//!   day's bounds, so `ATTACH PARTITION` proves the rows fit from the constraint instead of
//!   scanning them. The parent's indexes are read from the catalog (whatever the migrations
//!   made) and built on it before the attach, so attaching builds nothing.
//! - Nothing of it is visible to readers before the attach; a failed import drops its tables.
//! - The attach takes the lock `tickcast_ensure_partition` takes and renames the table to the
//!   day's partition name in the same transaction, so the recorder or another import making the
//!   same day meanwhile is no race: whoever comes second finds the day made. When the day was
//!   made meanwhile (or the DEFAULT partition holds rows of it), the staged rows are moved into
//!   the parent with `ON CONFLICT`, as a re-import's are, and the table dropped.
//! - Identity still holds: a unique index that cannot be built because the import itself held
//!   the same row twice has its duplicates removed first (the first copy kept), and counted.

use std::collections::BTreeMap;

use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Row};

use super::pg_copy::{BAR_COLUMNS, TICK_COLUMNS};
use crate::store::StoreError;
use crate::store::partitions::DAY_NS;

/// A partitioned table the import writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Parent {
    Ticks,
    Bars,
}

impl Parent {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Parent::Ticks => "ticks",
            Parent::Bars => "bars",
        }
    }

    /// The columns the import writes.
    fn columns(self) -> &'static str {
        match self {
            Parent::Ticks => TICK_COLUMNS,
            Parent::Bars => BAR_COLUMNS,
        }
    }

    /// The row identity its unique index enforces.
    fn identity(self) -> &'static str {
        match self {
            Parent::Ticks => "symbol, epoch, ts, seq",
            Parent::Bars => "symbol, interval_ns, ts, epoch",
        }
    }
}

/// Where one day's rows of one parent go.
#[derive(Debug)]
enum Target {
    /// The day's partition exists: the indexed table, chunk by chunk.
    Existing,
    /// A standalone table, attached at the end; the rows copied into it.
    Staged { table: String, copied: u64 },
}

/// What [`StagedDays::finish`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Finished {
    /// Days attached as new partitions (ticks and bars counted apart).
    pub(crate) attached: u64,
    /// Staged rows that were not stored after all: duplicates within the import, or rows
    /// already in a day made meanwhile.
    pub(crate) ticks_dropped: u64,
    pub(crate) bars_dropped: u64,
}

/// The days of one import and where each one's rows go.
#[derive(Debug)]
pub(crate) struct StagedDays {
    /// Makes this import's table names its own.
    token: String,
    days: BTreeMap<(Parent, i64), Target>,
}

/// The constraint that makes `ATTACH PARTITION` skip its scan.
const DAY_CHECK: &str = "tickcast_import_day";

impl StagedDays {
    pub(crate) fn new() -> StagedDays {
        let token = format!(
            "{:x}",
            crate::model::now_ns() as u64 ^ u64::from(std::process::id()).rotate_left(40)
        );
        StagedDays {
            token,
            days: BTreeMap::new(),
        }
    }

    /// The standalone table for `day`'s rows of `parent`, made on first use; `None` when the
    /// day's partition exists (the rows go to the indexed table).
    pub(crate) async fn table(
        &mut self,
        conn: &mut PoolConnection<Postgres>,
        parent: Parent,
        day: i64,
    ) -> Result<Option<&str>, StoreError> {
        if !self.days.contains_key(&(parent, day)) {
            let target = self.decide(conn, parent, day).await?;
            self.days.insert((parent, day), target);
        }
        Ok(match self.days.get(&(parent, day)) {
            Some(Target::Staged { table, .. }) => Some(table.as_str()),
            _ => None,
        })
    }

    /// Counts rows copied into `day`'s standalone table.
    pub(crate) fn copied(&mut self, parent: Parent, day: i64, rows: u64) {
        if let Some(Target::Staged { copied, .. }) = self.days.get_mut(&(parent, day)) {
            *copied += rows;
        }
    }

    async fn decide(
        &self,
        conn: &mut PoolConnection<Postgres>,
        parent: Parent,
        day: i64,
    ) -> Result<Target, StoreError> {
        let name = parent.name();
        let (exists,): (bool,) = sqlx::query_as(&format!(
            "SELECT to_regclass({}) IS NOT NULL",
            partition_name_sql(name, day)
        ))
        .fetch_one(&mut **conn)
        .await?;
        if exists {
            return Ok(Target::Existing);
        }
        let table = format!("tickcast_import_{}_{name}_{}", self.token, day_label(day));
        let (sequence,): (String,) = sqlx::query_as("SELECT pg_get_serial_sequence($1, 'id')")
            .bind(name)
            .fetch_one(&mut **conn)
            .await?;
        let end = day.saturating_add(DAY_NS);
        for sql in [
            format!("CREATE TABLE {table} (LIKE {name} INCLUDING DEFAULTS)"),
            format!(
                "ALTER TABLE {table} ALTER COLUMN id SET DEFAULT nextval('{}'::regclass)",
                sequence.replace('\'', "''")
            ),
            format!(
                "ALTER TABLE {table} ADD CONSTRAINT {DAY_CHECK} CHECK (ts >= {day} AND ts < {end})"
            ),
        ] {
            sqlx::query(&sql).execute(&mut **conn).await?;
        }
        tracing::debug!(table, "new day: staged without indexes");
        Ok(Target::Staged { table, copied: 0 })
    }

    /// Builds every staged table's indexes and attaches it as its day's partition (or moves its
    /// rows into the day made meanwhile). The connection carries no statement timeout by now:
    /// these statements take as long as the day is large.
    pub(crate) async fn finish(
        &mut self,
        conn: &mut PoolConnection<Postgres>,
    ) -> Result<Finished, StoreError> {
        let mut done = Finished::default();
        let days = std::mem::take(&mut self.days);
        let mut rest = days.into_iter();
        while let Some(((parent, day), target)) = rest.next() {
            let Target::Staged { table, copied } = target else {
                continue;
            };
            // On failure, the tables not attached yet are dropped (this one included).
            let outcome = finish_day(conn, parent, day, &table, copied).await;
            let (attached, dropped) = match outcome {
                Ok(r) => r,
                Err(e) => {
                    self.days
                        .insert((parent, day), Target::Staged { table, copied });
                    self.days.extend(rest);
                    return Err(e);
                }
            };
            done.attached += u64::from(attached);
            match parent {
                Parent::Ticks => done.ticks_dropped += dropped,
                Parent::Bars => done.bars_dropped += dropped,
            }
        }
        Ok(done)
    }

    /// Drops the standalone tables not attached (a failed import leaves nothing behind).
    pub(crate) async fn abandon(&mut self, conn: &mut PoolConnection<Postgres>) {
        for target in std::mem::take(&mut self.days).into_values() {
            if let Target::Staged { table, .. } = target
                && let Err(error) = sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                    .execute(&mut **conn)
                    .await
            {
                tracing::warn!(table, %error, "import: staged table not dropped");
            }
        }
    }
}

/// The SQL expression of `parent`'s partition name for `day`: the one
/// `tickcast_ensure_partition` (migration 0010) gives it, computed as it does.
fn partition_name_sql(parent: &str, day: i64) -> String {
    format!("'{parent}_' || to_char(to_timestamp({day} / 1e9) AT TIME ZONE 'UTC', 'YYYYMMDD')")
}

/// `day` as a name-safe label (days before 1970 are negative).
fn day_label(day: i64) -> String {
    let d = day.div_euclid(DAY_NS);
    if d < 0 {
        format!("m{}", d.unsigned_abs())
    } else {
        d.to_string()
    }
}

/// Builds `table`'s indexes, then attaches it (returns `(true, duplicates removed)`) or, when
/// the day was made meanwhile, moves its rows into the parent (returns `(false, rows not
/// stored)`).
async fn finish_day(
    conn: &mut PoolConnection<Postgres>,
    parent: Parent,
    day: i64,
    table: &str,
    copied: u64,
) -> Result<(bool, u64), StoreError> {
    let removed = build_indexes(conn, parent, table).await?;
    let name = parent.name();
    let end = day.saturating_add(DAY_NS);
    let mut tx = sqlx::Connection::begin(&mut **conn).await?;
    // The lock every maker of a day takes (`tickcast_ensure_partition`).
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tickcast_ensure_partition'))")
        .execute(&mut *tx)
        .await?;
    let (partition, free): (String, bool) = sqlx::query_as(&format!(
        "SELECT {0}, to_regclass({0}) IS NULL",
        partition_name_sql(name, day)
    ))
    .fetch_one(&mut *tx)
    .await?;
    if free {
        sqlx::query("SAVEPOINT attach").execute(&mut *tx).await?;
        let attach = async {
            for sql in [
                format!("ALTER TABLE {table} RENAME TO {partition}"),
                format!(
                    "ALTER TABLE {name} ATTACH PARTITION {partition} FOR VALUES FROM ({day}) TO ({end})"
                ),
                format!("ALTER TABLE {partition} DROP CONSTRAINT {DAY_CHECK}"),
                format!("ALTER TABLE {partition} ALTER COLUMN id DROP DEFAULT"),
            ] {
                sqlx::query(&sql).execute(&mut *tx).await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        match attach.await {
            Ok(()) => {
                tx.commit().await?;
                tracing::debug!(partition, rows = copied - removed, "day attached");
                return Ok((true, removed));
            }
            // The DEFAULT partition holds rows of the day: moved below instead.
            Err(sqlx::Error::Database(e)) => {
                tracing::info!(partition, error = %e, "day not attached; its rows are moved");
                sqlx::query("ROLLBACK TO attach").execute(&mut *tx).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The day's partition exists (made meanwhile), or could not be attached: it is made (its
    // strays moved out of DEFAULT) and the rows go in as a re-import's would.
    sqlx::query("SELECT tickcast_ensure_partition($1, $2)")
        .bind(name)
        .bind(day)
        .execute(&mut *tx)
        .await?;
    let columns = parent.columns();
    let conflict = match parent {
        Parent::Ticks => " ON CONFLICT DO NOTHING".to_owned(),
        Parent::Bars => super::bars::bar_upsert_tail("IS DISTINCT FROM"),
    };
    let moved = sqlx::query(&format!(
        "INSERT INTO {name} ({columns}) SELECT {columns} FROM {table} ORDER BY ts, id{conflict}"
    ))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((false, copied.saturating_sub(moved)))
}

/// Builds on `table` every index `parent` has (the primary key as a constraint, so the attach
/// takes it); returns the duplicates removed before a unique one.
async fn build_indexes(
    conn: &mut PoolConnection<Postgres>,
    parent: Parent,
    table: &str,
) -> Result<u64, StoreError> {
    let defs = sqlx::query(
        "SELECT pg_get_indexdef(indexrelid), indisprimary, indisunique FROM pg_index \
         WHERE indrelid = $1::regclass ORDER BY indisprimary DESC, indexrelid",
    )
    .bind(parent.name())
    .fetch_all(&mut **conn)
    .await?;
    let mut removed = 0;
    for def in defs {
        let (text, primary, unique): (String, bool, bool) =
            (def.try_get(0)?, def.try_get(1)?, def.try_get(2)?);
        let Some(at) = text.find(" USING ") else {
            return Err(StoreError::Corrupt(format!("unexpected index: {text}")));
        };
        let method = &text[at..];
        let sql = if primary {
            let columns = &method[method.find('(').unwrap_or(0)..];
            format!("ALTER TABLE {table} ADD PRIMARY KEY {columns}")
        } else if unique {
            format!("CREATE UNIQUE INDEX ON {table}{method}")
        } else {
            format!("CREATE INDEX ON {table}{method}")
        };
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        match sqlx::query(&sql).execute(&mut *tx).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if unique && e.is_unique_violation() => {
                drop(tx);
                tx = sqlx::Connection::begin(&mut **conn).await?;
                let n = sqlx::query(&format!(
                    "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM (SELECT ctid, \
                     row_number() OVER (PARTITION BY {} ORDER BY id) AS n FROM {table}) d \
                     WHERE n > 1)",
                    parent.identity()
                ))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tracing::info!(table, removed = n, "duplicates of the import removed");
                removed += n;
                sqlx::query(&sql).execute(&mut *tx).await?;
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_labels_are_name_safe_on_both_sides_of_the_epoch() {
        assert_eq!(day_label(0), "0");
        assert_eq!(day_label(20_394 * DAY_NS), "20394");
        assert_eq!(day_label(-DAY_NS), "m1");
    }
}
