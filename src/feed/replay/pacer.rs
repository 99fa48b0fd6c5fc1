//! The async half of the replay feed: releases the reader's chunks to ingest at the configured
//! speed.
//!
//! With speed `s > 0` a record is released `(ts - ts_first) / s` after the first one, measured
//! from one fixed start instant (so sleeps never accumulate drift); records that are already due
//! go out together as one batch. Speed `0` sends each chunk as soon as there is room for it.
//! At every speed the pipeline is the brake ([`send_paced`]): a chunk waits until the ticks the
//! pipeline has not read leave room for it in the rings, so no bar misses a tick.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Chunk;
use crate::feed::{FeedContext, FeedError, send_paced};

/// Longest single wait between two records, whatever the file's gap and speed.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Releases chunks to ingest at `speed`; returns when the reader is done or on shutdown.
pub(super) async fn pace(
    mut rx: mpsc::Receiver<Chunk>,
    speed: f64,
    ctx: &FeedContext,
) -> Result<(), FeedError> {
    // (wall-clock start, exchange time of the first record): the pacing origin.
    let mut origin: Option<(Instant, i64)> = None;
    loop {
        let chunk = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            c = rx.recv() => c,
        };
        let chunk = match chunk {
            None => {
                tracing::info!(feed = "replay", "replay finished");
                return Ok(());
            }
            Some(c) => c?,
        };
        if speed <= 0.0 {
            if !send_paced(ctx, chunk).await? {
                return Ok(());
            }
            continue;
        }
        let mut batch = Vec::with_capacity(chunk.len());
        for tick in chunk {
            let (start, first) = *origin.get_or_insert((Instant::now(), tick.exchange_ts));
            let due = start + due_after(tick.exchange_ts.saturating_sub(first), speed);
            if due > Instant::now() {
                if !send_paced(ctx, std::mem::take(&mut batch)).await? {
                    return Ok(());
                }
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
            batch.push(tick);
        }
        if !send_paced(ctx, batch).await? {
            return Ok(());
        }
    }
}

/// Wall-clock offset of a record `exchange_gap_ns` after the first one, at `speed`.
fn due_after(exchange_gap_ns: i64, speed: f64) -> Duration {
    let secs = exchange_gap_ns.max(0) as f64 / 1e9 / speed;
    if secs.is_finite() && secs < MAX_WAIT.as_secs_f64() {
        Duration::from_secs_f64(secs)
    } else {
        MAX_WAIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_scales_gaps_by_speed() {
        assert_eq!(due_after(1_000_000_000, 1.0), Duration::from_secs(1));
        assert_eq!(due_after(1_000_000_000, 4.0), Duration::from_millis(250));
        assert_eq!(due_after(-5, 1.0), Duration::ZERO);
        assert_eq!(due_after(i64::MAX, 1e-9), MAX_WAIT);
    }
}
