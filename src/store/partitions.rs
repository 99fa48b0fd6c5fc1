//! PostgreSQL's partitions of `ticks`, `bars` and `indicators`: one per UTC day of exchange time
//! (RANGE on `ts`, migrations 0010 and 0012), plus a DEFAULT partition that takes any row whose day has none yet, so
//! no insert ever fails for want of a partition.
//!
//! Days are made ahead by the maintenance task (`database.partitions_ahead_days`), and before
//! any write of another day by whoever writes it (the recorder, `tickcast import`): both call
//! [`Store::ensure_partitions`] / [`Store::ensure_partitions_for`], which remember the days made
//! so a write of a known day costs no round trip. The SQL function `tickcast_ensure_partition`
//! (migration 0010) makes one: the name, the bounds, and moving that day's rows out of the
//! DEFAULT partition. Retention drops whole expired days ([`Store::drop_partitions_before`]).
//!
//! SQLite has no partitions: every function here is a no-op there.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use sqlx::PgConnection;

use super::{Db, Store, StoreError};

/// One partition's width: a UTC day, ns.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The partitioned tables.
const PARENTS: [&str; 3] = ["ticks", "bars", "indicators"];

/// Days [`Store::ensure_partitions`] makes at most in one call; a wider range is refused (its
/// rows would still be stored, in the DEFAULT partition).
pub const MAX_DAYS_PER_CALL: i64 = 400;

/// Start (ns) of the UTC day holding `ts`.
pub fn day_of(ts: i64) -> i64 {
    ts.div_euclid(DAY_NS).saturating_mul(DAY_NS)
}

/// The days whose partitions this process made or found, so a write of a known day costs no
/// round trip.
#[derive(Debug, Default)]
pub(crate) struct KnownDays(Mutex<BTreeSet<i64>>);

impl KnownDays {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<i64>> {
        // A set of integers cannot be left half-updated: a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One partition of a partitioned table, as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub table: String,
    /// `[from, to)` in ns; `None` for the DEFAULT partition.
    pub range: Option<(i64, i64)>,
}

/// The bounds of `FOR VALUES FROM ('a') TO ('b')` (`pg_get_expr` of a partition bound); `None`
/// for `DEFAULT` or anything else.
fn parse_bound(expr: &str) -> Option<(i64, i64)> {
    let rest = expr.strip_prefix("FOR VALUES FROM ('")?;
    let (from, rest) = rest.split_once("') TO ('")?;
    let to = rest.strip_suffix("')")?;
    Some((from.parse().ok()?, to.parse().ok()?))
}

// === impl Store: partitions ===

impl Store {
    /// Makes sure `ticks` and `bars` have a partition for every UTC day in `[from, to]` (both
    /// included), at most [`MAX_DAYS_PER_CALL`] days. A no-op on SQLite.
    pub async fn ensure_partitions(&self, from: i64, to: i64) -> Result<(), StoreError> {
        if matches!(self.db, Db::Sqlite(_)) {
            return Ok(());
        }
        let (first, last) = (day_of(from), day_of(to));
        let span = last.saturating_sub(first) / DAY_NS;
        if !(0..MAX_DAYS_PER_CALL).contains(&span) {
            return Err(StoreError::Partition(format!(
                "{span} days from {from} to {to}: more than {MAX_DAYS_PER_CALL} at once"
            )));
        }
        let days = (0..=span).map(|d| first + d * DAY_NS).collect();
        self.ensure_days(days).await
    }

    /// Makes sure the days of these exchange times (a batch's ticks and bar starts) have their
    /// partitions. A no-op on SQLite, and without a round trip for days already made.
    pub async fn ensure_partitions_for(
        &self,
        times: impl IntoIterator<Item = i64>,
    ) -> Result<(), StoreError> {
        if matches!(self.db, Db::Sqlite(_)) {
            return Ok(());
        }
        self.ensure_days(times.into_iter().map(day_of).collect())
            .await
    }

    /// [`Store::ensure_partitions_for`] on a connection the caller holds (`tickcast import`'s).
    pub(crate) async fn ensure_partitions_on(
        &self,
        conn: &mut PgConnection,
        times: impl IntoIterator<Item = i64>,
    ) -> Result<(), StoreError> {
        let days = self.unknown_days(times.into_iter().map(day_of).collect());
        self.make_days(conn, days).await
    }

    async fn ensure_days(&self, days: BTreeSet<i64>) -> Result<(), StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(());
        };
        let days = self.unknown_days(days);
        if days.is_empty() {
            return Ok(());
        }
        let mut conn = pool.acquire().await?;
        self.make_days(&mut conn, days).await
    }

    fn unknown_days(&self, mut days: BTreeSet<i64>) -> BTreeSet<i64> {
        let known = self.partition_days.lock();
        days.retain(|d| !known.contains(d));
        days
    }

    async fn make_days(
        &self,
        conn: &mut PgConnection,
        days: BTreeSet<i64>,
    ) -> Result<(), StoreError> {
        for day in days {
            for parent in PARENTS {
                make_day(conn, parent, day).await?;
            }
            self.partition_days.lock().insert(day);
        }
        Ok(())
    }

    /// The partitions of `table` (`ticks` or `bars`), oldest first, the DEFAULT one last; none
    /// on SQLite.
    pub async fn partitions(&self, table: &str) -> Result<Vec<Partition>, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(Vec::new());
        };
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1)",
        )
        .bind(table)
        .fetch_all(pool)
        .await?;
        let mut parts: Vec<Partition> = rows
            .into_iter()
            .map(|(table, bound)| Partition {
                range: parse_bound(&bound),
                table,
            })
            .collect();
        parts.sort_by_key(|p| p.range.map_or((1, 0), |(from, _)| (0, from)));
        Ok(parts)
    }

    /// Drops the partitions of `table` that hold only rows before `ts` (whole expired days);
    /// returns their names. Rows of a day that expires in part are left to a bounded `DELETE`.
    pub async fn drop_partitions_before(
        &self,
        table: &str,
        ts: i64,
    ) -> Result<Vec<String>, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(Vec::new());
        };
        let mut dropped = Vec::new();
        for p in self.partitions(table).await? {
            let Some((from, to)) = p.range else { continue };
            if to > ts {
                continue;
            }
            // The name comes from the catalog, quoted all the same.
            let sql = format!("DROP TABLE IF EXISTS \"{}\"", p.table.replace('"', "\"\""));
            sqlx::query(&sql).execute(pool).await?;
            // Forgotten, so a late write of that day makes it again rather than filling DEFAULT.
            self.partition_days.lock().remove(&day_of(from));
            dropped.push(p.table);
        }
        Ok(dropped)
    }
}

/// Makes one day's partition of `parent`. Two writers (two imports, or an import and the
/// recorder) may make the same day at once: the loser's CREATE fails with "already exists"
/// (42P07, or 23505 on the catalog) once the winner commits, and is tried again, when the
/// function finds the day made. Each try runs in its own transaction, or savepoint inside the
/// caller's, so a failed one leaves the caller's transaction usable.
async fn make_day(conn: &mut PgConnection, parent: &str, day: i64) -> Result<(), StoreError> {
    const TRIES: usize = 3;
    for attempt in 1..=TRIES {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let made = sqlx::query("SELECT tickcast_ensure_partition($1, $2)")
            .bind(parent)
            .bind(day)
            .execute(&mut *tx)
            .await;
        match made {
            Ok(_) => return Ok(tx.commit().await?),
            Err(sqlx::Error::Database(e))
                if attempt < TRIES && matches!(e.code().as_deref(), Some("42P07" | "23505")) =>
            {
                drop(tx);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_start_at_utc_midnight_on_both_sides_of_the_epoch() {
        // 2025-12-06T07:46:40Z
        let ts = 1_765_007_200_000_000_000;
        assert_eq!(day_of(ts), 1_764_979_200_000_000_000);
        assert_eq!(day_of(day_of(ts)), day_of(ts));
        assert_eq!(day_of(-5), -DAY_NS);
        assert_eq!(day_of(0), 0);
        // The first day before the oldest time ns can hold saturates instead of wrapping.
        assert_eq!(day_of(i64::MIN), i64::MIN);
    }

    #[test]
    fn partition_bounds_are_read_from_the_catalog_text() {
        assert_eq!(
            parse_bound("FOR VALUES FROM ('-86400000000000') TO ('0')"),
            Some((-DAY_NS, 0))
        );
        assert_eq!(parse_bound("DEFAULT"), None);
        assert_eq!(parse_bound("FOR VALUES FROM (MINVALUE) TO ('0')"), None);
    }
}
