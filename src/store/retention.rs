//! Retention: a task that deletes ticks and stored bars older than `database.retention_days`,
//! every `database.retention_interval_ms`, by exchange time (the `ticks_ts` and `bars_ts`
//! indexes).
//!
//! Each `DELETE` removes at most `database.retention_batch_rows` rows (`WHERE id IN (SELECT id
//! ... LIMIT n)`, the same SQL on both backends), and the task yields between batches: a backlog
//! of millions of rows (retention shortened, or a long stop) never becomes one transaction that
//! holds locks, bloats the WAL or outlasts the query timeout.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Store, StoreError};
use crate::config_section::ms;
use crate::model::now_ns;
use crate::store::DatabaseConfig;

const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// What retention deletes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    Ticks,
    Bars,
}

impl Retained {
    const ALL: [Retained; 2] = [Retained::Ticks, Retained::Bars];

    fn name(self) -> &'static str {
        match self {
            Retained::Ticks => "ticks",
            Retained::Bars => "bars",
        }
    }

    fn delete_sql(self) -> &'static str {
        match self {
            Retained::Ticks => {
                "DELETE FROM ticks WHERE id IN (SELECT id FROM ticks WHERE ts < $1 LIMIT $2)"
            }
            Retained::Bars => {
                "DELETE FROM bars WHERE id IN (SELECT id FROM bars WHERE ts < $1 LIMIT $2)"
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

/// Runs until `stop` is cancelled; does nothing when retention is 0 (keep forever).
pub(crate) async fn run(store: Arc<Store>, cfg: DatabaseConfig, stop: CancellationToken) {
    if cfg.retention_days == 0 {
        return;
    }
    let mut every = tokio::time::interval(ms(cfg.retention_interval_ms));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let before = cutoff(now_ns(), cfg.retention_days);
        for what in Retained::ALL {
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
