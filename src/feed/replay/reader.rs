//! The blocking half of the replay feed: a dedicated thread reads the file pass after pass and
//! hands chunks of at most [`BATCH_MAX`] records to the pacer, at most
//! [`READ_AHEAD_CHUNKS`](super::READ_AHEAD_CHUNKS) ahead of it, so memory stays bounded however
//! big the file.
//!
//! With `loop = true` the file restarts at its end and every timestamp of pass `k + 1` is shifted
//! by `max_ts - first_ts + 1 ms` more than pass `k`, so time keeps increasing. A bad record is
//! logged with its line number, counted in `metrics.feed_errors` and skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::Chunk;
use super::ReplayFormat;
use super::records::Records;
use crate::feed::{BATCH_MAX, FeedError};
use crate::telemetry::metrics::Metrics;

/// Gap between the latest record of one pass and the first of the next when looping.
const LOOP_GAP_NS: i64 = 1_000_000;

/// What the reader thread needs.
pub(super) struct Reader {
    pub(super) path: String,
    pub(super) format: ReplayFormat,
    pub(super) looping: bool,
    pub(super) metrics: Arc<Metrics>,
}

// === impl Reader ===

impl Reader {
    /// Runs on the reader thread until the file ends (for good) or the pacer hangs up.
    pub(super) fn run(self, mut file: File, tx: mpsc::Sender<Chunk>) {
        let mut offset = 0i64;
        loop {
            if let Err(error) = file.seek(SeekFrom::Start(0)) {
                tracing::error!(feed = "replay", path = %self.path, %error, "cannot rewind");
                return;
            }
            let records = match Records::new(BufReader::new(&file), self.format) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(FeedError::Format {
                        path: self.path.clone(),
                        message: e.to_string(),
                    }));
                    return;
                }
            };
            let Some(span) = self.pass(records, offset, &tx) else {
                return; // the pacer is gone
            };
            if !self.looping {
                return;
            }
            let Some((first, max)) = span else {
                tracing::warn!(feed = "replay", path = %self.path, "no valid records; not looping");
                return;
            };
            offset = offset.saturating_add(max.saturating_sub(first) + LOOP_GAP_NS);
            tracing::debug!(feed = "replay", path = %self.path, offset, "replay loops");
        }
    }

    /// One pass over the file. `None` when the pacer hung up; else the (first, max) exchange
    /// time of the pass's valid records, if any.
    fn pass<R: BufRead>(
        &self,
        records: Records<R>,
        offset: i64,
        tx: &mpsc::Sender<Chunk>,
    ) -> Option<Option<(i64, i64)>> {
        let mut span: Option<(i64, i64)> = None;
        let mut chunk = Vec::with_capacity(BATCH_MAX);
        for (line, record) in records {
            match record {
                Ok(mut tick) => {
                    let ts = tick.exchange_ts;
                    match &mut span {
                        None => span = Some((ts, ts)),
                        Some((_, max)) => *max = (*max).max(ts),
                    }
                    tick.exchange_ts = tick.exchange_ts.saturating_add(offset);
                    chunk.push(tick);
                    if chunk.len() >= BATCH_MAX
                        && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err()
                    {
                        return None;
                    }
                }
                Err(error) => {
                    self.metrics.feed_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(feed = "replay", path = %self.path, line, %error, "bad record skipped");
                }
            }
        }
        if !chunk.is_empty() && tx.blocking_send(Ok(chunk)).is_err() {
            return None;
        }
        Some(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[tokio::test]
    async fn reader_loops_with_increasing_time_and_counts_bad_lines() {
        let dir = std::env::temp_dir().join(format!("tickcast-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("loop.csv");
        std::fs::write(
            &path,
            "ts,symbol,price,size,side\n1000,A,1,1,buy\nbad\n1500,A,2,1,sell\n",
        )
        .unwrap();
        let metrics = Arc::new(Metrics::default());
        let reader = Reader {
            path: path.display().to_string(),
            format: ReplayFormat::Csv,
            looping: true,
            metrics: metrics.clone(),
        };
        let (tx, mut rx) = mpsc::channel(1);
        let file = File::open(&path).unwrap();
        let thread = std::thread::spawn(move || reader.run(file, tx));
        let mut ts = Vec::new();
        while ts.len() < 6 {
            let chunk = rx.recv().await.expect("reader keeps looping").unwrap();
            ts.extend(chunk.iter().map(|t| t.exchange_ts / MS));
        }
        drop(rx);
        thread.join().unwrap();
        // Each pass is shifted by max - first + 1 ms = 501 ms.
        assert_eq!(ts[..6], [1000, 1500, 1501, 2001, 2002, 2502]);
        assert!(metrics.feed_errors.load(Ordering::Relaxed) >= 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
