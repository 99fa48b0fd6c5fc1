//! Maintenance of the history tables: a task that, every `database.retention_interval_ms`,
//! makes the partitions of the days ahead (PostgreSQL, `database.partitions_ahead_days`) and
//! removes ticks, stored bars and indicator history older than `database.retention_days`, by
//! exchange time.
//!
//! On PostgreSQL a day wholly expired is one partition, dropped whole (no row is read, no dead
//! tuple is left to vacuum). The rows left before the cut-off (the day it falls in, the DEFAULT
//! partition; every row on SQLite) are deleted by a bounded `DELETE` of at most
//! `database.retention_batch_rows` rows (`WHERE (ts, id) IN (SELECT ts, id ... LIMIT n)`, the
//! same SQL on both backends, by the `(ts, id)` key), and the task yields between batches: a
//! backlog of millions of rows (retention shortened, or a long stop) never becomes one
//! transaction that holds locks, bloats the WAL or outlasts the query timeout.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::partitions::DAY_NS as NS_PER_DAY;
use super::{Store, StoreError};
use crate::config_section::ms;
use crate::model::now_ns;
use crate::store::DatabaseConfig;

/// What retention deletes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    Ticks,
    Bars,
    /// Indicator history (one row per symbol per 1 s close).
    Indicators,
}

impl Retained {
    const ALL: [Retained; 3] = [Retained::Ticks, Retained::Bars, Retained::Indicators];

    fn name(self) -> &'static str {
        match self {
            Retained::Ticks => "ticks",
            Retained::Bars => "bars",
            Retained::Indicators => "indicators",
        }
    }

    fn delete_sql(self) -> &'static str {
        match self {
            // `ts < $1` outside too: PostgreSQL then plans the delete on the expired days only.
            Retained::Ticks => {
                "DELETE FROM ticks WHERE ts < $1 \
                 AND (ts, id) IN (SELECT ts, id FROM ticks WHERE ts < $1 LIMIT $2)"
            }
            Retained::Bars => {
                "DELETE FROM bars WHERE ts < $1 \
                 AND (ts, id) IN (SELECT ts, id FROM bars WHERE ts < $1 LIMIT $2)"
            }
            Retained::Indicators => {
                "DELETE FROM indicators WHERE ts < $1 \
                 AND (ts, id) IN (SELECT ts, id FROM indicators WHERE ts < $1 LIMIT $2)"
            }
        }
    }
}

/// The cut-off (ns since the epoch) for `days` of retention at `now_ns`.
pub fn cutoff(now_ns: i64, days: u64) -> i64 {
    let days = i64::try_from(days).unwrap_or(i64::MAX);
    now_ns.saturating_sub(days.saturating_mul(NS_PER_DAY))
}

// === impl Store: retention ===

impl Store {
    /// Deletes at most `max_rows` rows of `what` with exchange time (bar start) before `ts`;
    /// returns how many.
    pub async fn delete_before(
        &self,
        what: Retained,
        ts: i64,
        max_rows: u32,
    ) -> Result<u64, StoreError> {
        let n = on_pool!(&self.db, p => sqlx::query(what.delete_sql())
            .bind(ts)
            .bind(i64::from(max_rows))
            .execute(p)
            .await?
            .rows_affected());
        Ok(n)
    }
}

/// Runs until `stop` is cancelled: one [`sweep`] every `retention_interval_ms`.
pub(crate) async fn run(store: Arc<Store>, cfg: DatabaseConfig, stop: CancellationToken) {
    let mut every = tokio::time::interval(ms(cfg.retention_interval_ms));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        sweep(&store, &cfg, now_ns(), &stop).await;
    }
}

/// One maintenance run at `now` (ns): the partitions of today and the `partitions_ahead_days`
/// after it, then retention (none when `retention_days` is 0: kept forever). Failures are
/// logged and left to the next run; `stop` ends it between batches.
pub async fn sweep(store: &Store, cfg: &DatabaseConfig, now: i64, stop: &CancellationToken) {
    let ahead = i64::from(cfg.partitions_ahead_days).saturating_mul(NS_PER_DAY);
    let made = match store.ensure_migrated().await {
        Ok(()) => {
            store
                .ensure_partitions(now, now.saturating_add(ahead))
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(error) = made {
        tracing::warn!(%error, "making partitions ahead failed; will retry");
    }
    if cfg.retention_days == 0 {
        return;
    }
    let before = cutoff(now, cfg.retention_days);
    for what in Retained::ALL {
        match store.drop_partitions_before(what.name(), before).await {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::info!(
                    ?dropped,
                    before,
                    table = what.name(),
                    "retention dropped expired days"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, table = what.name(), "dropping expired partitions failed; will retry");
            }
        }
        let mut deleted = 0u64;
        loop {
            if stop.is_cancelled() {
                return;
            }
            match store
                .delete_before(what, before, cfg.retention_batch_rows)
                .await
            {
                Ok(n) => {
                    deleted += n;
                    if n < u64::from(cfg.retention_batch_rows) {
                        break;
                    }
                    // Let the writer and readers in between batches.
                    tokio::task::yield_now().await;
                }
                Err(error) => {
                    tracing::warn!(%error, table = what.name(), "retention run failed; will retry");
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(
                deleted,
                before,
                table = what.name(),
                "retention deleted old rows"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cutoff_is_days_before_now() {
        assert_eq!(
            super::cutoff(10 * super::NS_PER_DAY, 7),
            3 * super::NS_PER_DAY
        );
        assert_eq!(super::cutoff(0, 7), -7 * super::NS_PER_DAY);
        // Absurd retention saturates instead of wrapping.
        assert_eq!(super::cutoff(0, u64::MAX), -i64::MAX);
    }
}
