//! Retention: a task that deletes ticks older than `database.retention_days`, every
//! `database.retention_interval_ms`. Deleting by exchange time uses the `ticks_ts` index.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Store;
use crate::config_section::ms;
use crate::model::now_ns;
use crate::store::DatabaseConfig;

const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The cut-off (ns since the epoch) for `days` of retention at `now_ns`.
pub fn cutoff(now_ns: i64, days: u64) -> i64 {
    now_ns.saturating_sub((days as i64).saturating_mul(NS_PER_DAY))
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
        match store.delete_ticks_before(before).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, before, "retention deleted old ticks"),
            Err(error) => tracing::warn!(%error, "retention run failed; will retry"),
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
    }
}
