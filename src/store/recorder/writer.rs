//! The writer task: the only code that writes ticks, bars and indicator rows to the database. It drains the
//! in-memory queue first (its rows are older than any journaled one: once a row is journaled,
//! every later row is too), then the journal, segment by segment, oldest first; a segment is
//! deleted only when every row in it is committed, so a crash or stop in between replays it
//! again at the next start (the rows' identities make that a no-op).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Breaker, DbHealth, Queue, Record};
use crate::config_section::ms;
use crate::model::now_ms;
use crate::store::journal::{Segment, read_segment};
use crate::store::{BarRecord, DatabaseConfig, IndicatorRecord, Store, StoreError, TickRow};
use crate::telemetry::events::{AfterWriteFailure, TickBatchWriteFailed, TickBatchWritten};
use crate::telemetry::metrics::Metrics;

/// Wait before trying a journal that failed to seal or read again.
const JOURNAL_RETRY: Duration = Duration::from_secs(1);

/// Rows committed between two refreshes of the planner's statistics.
const STATISTICS_EVERY_ROWS: u64 = 1_000_000;

/// Rows taken from the queue or the journal and not yet committed.
#[derive(Debug, Default)]
struct Batch {
    ticks: Vec<TickRow>,
    bars: Vec<BarRecord>,
    indicators: Vec<IndicatorRecord>,
    /// Taken from the journal segment being replayed (not from the queue).
    from_journal: bool,
}

impl Batch {
    fn len(&self) -> usize {
        self.ticks.len() + self.bars.len() + self.indicators.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, record: Record) {
        match record {
            Record::Tick(t) => self.ticks.push(t),
            Record::Bar(b) => self.bars.push(b),
            Record::Indicators(i) => self.indicators.push(i),
        }
    }

    fn clear(&mut self) {
        self.ticks.clear();
        self.bars.clear();
        self.indicators.clear();
        self.from_journal = false;
    }

    fn into_records(self) -> Vec<Record> {
        let ticks = self.ticks.into_iter().map(Record::Tick);
        ticks
            .chain(self.bars.into_iter().map(Record::Bar))
            .chain(self.indicators.into_iter().map(Record::Indicators))
            .collect()
    }
}

/// The journal segment being replayed: its rows not yet taken into a batch.
struct Replay {
    segment: Segment,
    rows: VecDeque<Record>,
}

/// The task that owns database writes.
pub(super) struct Writer {
    queue: Arc<Queue>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    health: Arc<DbHealth>,
    breaker: Breaker,
    batch_size: usize,
    flush_interval: Duration,
    replay: Option<Replay>,
    /// Rows committed since the planner's statistics were last refreshed.
    since_statistics: u64,
}

impl Writer {
    pub(super) fn new(
        queue: Arc<Queue>,
        store: Arc<Store>,
        cfg: &DatabaseConfig,
        metrics: Arc<Metrics>,
        health: Arc<DbHealth>,
    ) -> Writer {
        Writer {
            queue,
            store,
            metrics,
            health,
            breaker: Breaker::new(cfg),
            batch_size: cfg.batch_size,
            flush_interval: ms(cfg.flush_interval_ms),
            replay: None,
            since_statistics: 0,
        }
    }

    pub(super) async fn run(mut self) {
        let mut batch = Batch::default();
        loop {
            if batch.is_empty() {
                self.wait_for_batch().await;
                self.fill(&mut batch).await;
            }
            let closing = self.queue.closing.load(Ordering::Acquire);
            if batch.is_empty() {
                if closing {
                    break;
                }
                continue;
            }
            let started = Instant::now();
            match self.write(&batch).await {
                Ok((inserted, bars, indicators)) => {
                    // The backlog gauge drops before the written counter rises: whoever sees
                    // the rows counted as written also sees them gone from the backlog.
                    self.committed(&batch);
                    TickBatchWritten {
                        rows: inserted,
                        duplicates: (batch.ticks.len() as u64).saturating_sub(inserted),
                        bars,
                        indicators,
                        elapsed: started.elapsed(),
                        recovered_after: self.breaker.is_open().then(|| self.breaker.failures()),
                    }
                    .emit(&self.metrics);
                    self.breaker.on_success();
                    self.health.breaker_open.store(false, Ordering::Relaxed);
                    self.health.consecutive_failures.store(0, Ordering::Relaxed);
                    self.health.last_write_ms.store(now_ms(), Ordering::Relaxed);
                    batch.clear();
                    self.refresh_statistics_when_due().await;
                }
                Err(error) => {
                    let delay = self.failed(&error, batch.len());
                    if closing && self.queue.overload == crate::store::OnOverload::Journal {
                        // Shutdown is waiting and the database is not taking rows: keep them
                        // for the next start instead of retrying until the grace runs out.
                        self.journal_the_rest(batch);
                        break;
                    }
                    let mut delay = delay;
                    if closing {
                        // Shutdown is waiting: retry sooner; the caller's grace bounds it.
                        delay = delay.min(Duration::from_millis(200));
                    }
                    self.sleep_unless_closing(delay, closing).await;
                }
            }
        }
        let p = self.queue.lock();
        self.queue.report_backlog(&p, &self.metrics);
        tracing::debug!("tick writer stopped");
    }

    /// Takes the next batch: queued rows first, then the journal's oldest rows.
    async fn fill(&mut self, batch: &mut Batch) {
        {
            let mut p = self.queue.lock();
            let n = p.rows.len().min(self.batch_size);
            for record in p.rows.drain(..n) {
                batch.push(record);
            }
            if n > 0 {
                self.queue.in_flight.store(n as u64, Ordering::Relaxed);
                self.queue.report_backlog(&p, &self.metrics);
                return;
            }
        }
        if self.replay.is_none() {
            self.replay = self.next_segment().await;
        }
        if let Some(replay) = self.replay.as_mut() {
            let n = replay.rows.len().min(self.batch_size);
            for record in replay.rows.drain(..n) {
                batch.push(record);
            }
            batch.from_journal = true;
            if batch.is_empty() {
                // A segment with no readable row: done with it.
                self.segment_done();
            }
        }
    }

    /// Reads the journal's oldest segment (off the runtime's threads).
    async fn next_segment(&mut self) -> Option<Replay> {
        let segment = {
            let mut p = self.queue.lock();
            let journal = p.journal.as_mut()?;
            journal.oldest()
        };
        let segment = match segment {
            Ok(s) => s?,
            Err(error) => {
                tracing::error!(target: "tickcast::store", %error, "journal seal failed");
                // The disk is failing; do not spin on it.
                tokio::time::sleep(JOURNAL_RETRY).await;
                return None;
            }
        };
        let path = segment.path.clone();
        let read = tokio::task::spawn_blocking(move || read_segment(&path)).await;
        let read = match read {
            Ok(Ok(read)) => read,
            Ok(Err(error)) => {
                // Unreadable as a whole (not a journal file): left on disk for the operator,
                // out of the replay so it cannot block the rest.
                tracing::error!(target: "tickcast::store", %error, "journal segment skipped");
                if let Some(journal) = self.queue.lock().journal.as_mut() {
                    journal.set_aside(&segment);
                }
                return None;
            }
            Err(_) => {
                tokio::time::sleep(JOURNAL_RETRY).await;
                return None;
            }
        };
        if read.skipped_bytes > 0 {
            self.metrics
                .db_journal_skipped_bytes
                .fetch_add(read.skipped_bytes, Ordering::Relaxed);
            tracing::warn!(
                target: "tickcast::store",
                segment = %segment.path.display(),
                rows = read.rows.len(),
                skipped_bytes = read.skipped_bytes,
                checksum_mismatch = read.checksum_mismatch,
                "journal segment ends in a torn or corrupt record; the rest of it is skipped"
            );
        }
        Some(Replay {
            segment,
            rows: read.rows.into(),
        })
    }

    /// A batch is committed: count it, and delete its journal segment once all of it is.
    fn committed(&mut self, batch: &Batch) {
        self.since_statistics += batch.len() as u64;
        if batch.from_journal {
            self.metrics
                .db_rows_replayed
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            if self.replay.as_ref().is_some_and(|r| r.rows.is_empty()) {
                self.segment_done();
            }
        } else {
            let p = self.queue.lock();
            self.queue.in_flight.store(0, Ordering::Relaxed);
            self.queue.report_backlog(&p, &self.metrics);
        }
    }

    /// Every row of the segment being replayed is committed: delete it.
    fn segment_done(&mut self) {
        let Some(replay) = self.replay.take() else {
            return;
        };
        let mut p = self.queue.lock();
        if let Some(journal) = p.journal.as_mut() {
            if let Err(error) = journal.remove(&replay.segment) {
                tracing::error!(target: "tickcast::store", %error, "journal segment not removed");
            }
            self.queue.journal_full.store(false, Ordering::Relaxed);
        }
        if !p.spilling() {
            tracing::info!(target: "tickcast::store", "journal replayed into the database");
        }
        self.queue.report_backlog(&p, &self.metrics);
    }

    /// On shutdown with the database failing: the batch and the queue go to the journal.
    fn journal_the_rest(&mut self, batch: Batch) {
        let from_journal = batch.from_journal;
        let mut p = self.queue.lock();
        let mut rows = if from_journal {
            // Still in its segment, which stays on disk.
            Vec::new()
        } else {
            batch.into_records()
        };
        rows.extend(p.rows.drain(..));
        let lost = self.queue.spill(&mut p, &rows, &self.metrics);
        self.queue.in_flight.store(0, Ordering::Relaxed);
        self.queue.report_backlog(&p, &self.metrics);
        drop(p);
        if lost > 0 {
            crate::telemetry::events::WriteBehindAbandoned { lost }.emit(&self.metrics);
        } else {
            tracing::info!(
                target: "tickcast::store",
                rows = rows.len(),
                "database unavailable at shutdown: unwritten rows kept in the journal"
            );
        }
    }

    /// After many rows, once caught up: the planner's statistics, so reads keep their plans.
    async fn refresh_statistics_when_due(&mut self) {
        if self.since_statistics < STATISTICS_EVERY_ROWS || !self.queue.lock().rows.is_empty() {
            return;
        }
        self.since_statistics = 0;
        if let Err(error) = self.store.refresh_statistics().await {
            tracing::warn!(target: "tickcast::store", %error, "statistics refresh failed");
        }
    }

    /// Counts a failed write; returns how long to wait before the next attempt.
    fn failed(&mut self, error: &StoreError, batch_len: usize) -> Duration {
        let was_open = self.breaker.is_open();
        let delay = self.breaker.on_failure();
        self.health
            .consecutive_failures
            .store(self.breaker.failures() as u64, Ordering::Relaxed);
        let then = if !self.breaker.is_open() {
            AfterWriteFailure::Retry { delay }
        } else if was_open {
            AfterWriteFailure::StillOpen
        } else {
            AfterWriteFailure::BreakerOpened {
                backlog: (self.queue.lock().rows.len() + batch_len) as u64,
            }
        };
        if self.breaker.is_open() {
            self.health.breaker_open.store(true, Ordering::Relaxed);
        }
        TickBatchWriteFailed {
            error,
            failures: self.breaker.failures(),
            then,
        }
        .emit(&self.metrics);
        delay
    }

    /// Writes the ticks, then the bars, then the indicator rows (three transactions: a retry
    /// after a later one failed writes the earlier again, and their identities make that a
    /// no-op). Returns (new ticks, new bars, new indicator rows).
    async fn write(&self, batch: &Batch) -> Result<(u64, u64, u64), StoreError> {
        self.store.ensure_migrated().await?;
        // A day not made ahead (a replay of history, a late tick) gets its partitions first.
        let times = batch.ticks.iter().map(|t| t.ts);
        let starts = batch.bars.iter().map(|b| b.start);
        let rows = batch.indicators.iter().map(|i| i.start);
        self.store
            .ensure_partitions_for(times.chain(starts).chain(rows))
            .await?;
        let ticks = self.store.insert_ticks(&batch.ticks).await?;
        let bars = self.store.insert_bars(&batch.bars).await?;
        let indicators = self.store.insert_indicators(&batch.indicators).await?;
        Ok((ticks, bars, indicators))
    }

    /// Waits until a full batch is queued, the flush interval has passed with rows queued, the
    /// journal has rows to replay, or shutdown asks for a drain.
    async fn wait_for_batch(&self) {
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if self.queue.closing.load(Ordering::Acquire) {
                return;
            }
            let (len, journaled) = {
                let p = self.queue.lock();
                (p.rows.len(), p.spilling())
            };
            if len >= self.batch_size || journaled || self.replay.is_some() {
                return;
            }
            if len > 0 && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + self.flush_interval);
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, self.queue.notify.notified())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                None => self.queue.notify.notified().await,
            }
        }
    }

    async fn sleep_unless_closing(&self, delay: Duration, closing: bool) {
        if closing {
            tokio::time::sleep(delay).await;
            return;
        }
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                () = self.queue.notify.notified() => {
                    if self.queue.closing.load(Ordering::Acquire) {
                        return;
                    }
                }
            }
        }
    }
}
