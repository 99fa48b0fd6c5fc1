//! Write-behind persistence of ticks and closed bars.
//!
//! [`Recorder`] is an [`EventSink`] beside the hub: ingest hands it every published batch, and it
//! copies the ticks and the pipeline's closed (`final`) 1 s and 1 m bars into one bounded
//! in-memory queue without waiting (a short std lock, no I/O).
//! One writer task drains the queue in batches (size- or time-bounded), one transaction per
//! batch. A failed batch is kept and retried with exponential backoff; after
//! `database.breaker_failures` consecutive failures the [`Breaker`] opens and only one probe
//! write per `database.breaker_probe_ms` is tried until the database answers again. Meanwhile
//! the queue absorbs ticks up to `database.queue_capacity`; past it, ticks are dropped, counted in
//! `tickcast_db_rows_dropped_total` and logged. [`Recorder::flush_and_stop`] drains everything
//! on graceful shutdown.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{BAR_1M_NS, BAR_1S_NS, BarRecord, Store, StoreError, TickRow};
use crate::config_section::ms;
use crate::model::{Event, Kind, Payload, Symbols, now_ms};
use crate::rooms::EventSink;
use crate::store::DatabaseConfig;
use crate::telemetry::events::{
    AfterWriteFailure, LogThrottle, TickBatchWriteFailed, TickBatchWritten, TicksNotPersisted,
    WriteBehindAbandoned,
};
use crate::telemetry::metrics::Metrics;

/// Consecutive-failure circuit breaker with exponential backoff below the threshold.
#[derive(Debug, Clone)]
pub struct Breaker {
    failures: u32,
    threshold: u32,
    backoff_initial: Duration,
    backoff_max: Duration,
    probe: Duration,
}

// === impl Breaker ===

impl Breaker {
    pub fn new(cfg: &DatabaseConfig) -> Self {
        Self {
            failures: 0,
            threshold: cfg.breaker_failures,
            backoff_initial: ms(cfg.backoff_initial_ms),
            backoff_max: ms(cfg.backoff_max_ms),
            probe: ms(cfg.breaker_probe_ms),
        }
    }

    pub(crate) fn on_success(&mut self) {
        self.failures = 0;
    }

    /// Records a failure; returns how long to wait before the next attempt.
    pub(crate) fn on_failure(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if self.is_open() {
            return self.probe;
        }
        let exp = self.failures.saturating_sub(1).min(20);
        self.backoff_initial
            .saturating_mul(1 << exp)
            .min(self.backoff_max)
    }

    /// Open: the database is considered down; writes are only probes.
    pub(crate) fn is_open(&self) -> bool {
        self.failures >= self.threshold
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

/// What `/readyz` needs to know about persistence.
#[derive(Debug, Default)]
pub struct DbHealth {
    pub breaker_open: AtomicBool,
    pub consecutive_failures: AtomicU64,
    /// Wall-clock ms of the last successful write (0 = none yet).
    pub last_write_ms: AtomicI64,
}

/// One row waiting in the write-behind queue.
#[derive(Debug, Clone)]
enum Record {
    Tick(TickRow),
    Bar(BarRecord),
}

/// The queue shared by the sink side (ingest thread) and the writer task.
#[derive(Debug)]
struct Queue {
    // A std mutex: held for a push or a drain of a few thousand rows, never across an await.
    rows: Mutex<VecDeque<Record>>,
    capacity: usize,
    notify: Notify,
    closing: AtomicBool,
    /// Rows the writer has taken out of the queue and not yet committed.
    in_flight: AtomicU64,
    /// "Rows dropped" is logged at most once a second.
    drop_log: LogThrottle,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Record>> {
        // Push and drain leave the deque consistent even if a panic interrupts them.
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the backlog gauge to the queued plus in-flight rows. Every caller holds the queue's
    /// lock (`rows` is its guard) and changes `in_flight` only under it, so the last store is
    /// never a stale sum that a concurrent writer has already overtaken.
    fn report_backlog(&self, rows: &VecDeque<Record>, metrics: &Metrics) {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        metrics
            .db_backlog
            .store(rows.len() as u64 + in_flight, Ordering::Relaxed);
    }
}

/// The sink side of write-behind persistence, plus the handle on its writer task.
#[derive(Debug)]
pub struct Recorder {
    queue: Arc<Queue>,
    symbols: Arc<Symbols>,
    /// This server run's ingest epoch: stored with each tick, it makes (symbol, epoch, seq) a
    /// unique identity although `seq` restarts with every run.
    epoch: i64,
    metrics: Arc<Metrics>,
    pub health: Arc<DbHealth>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

// === impl Recorder ===

impl Recorder {
    /// Starts the writer task on the current runtime. `epoch` names this server run (the one
    /// the WebSocket `ack` reports).
    pub fn start(
        store: Arc<Store>,
        cfg: &DatabaseConfig,
        symbols: Arc<Symbols>,
        epoch: i64,
        metrics: Arc<Metrics>,
    ) -> Arc<Recorder> {
        let queue = Arc::new(Queue {
            rows: Mutex::new(VecDeque::new()),
            capacity: cfg.queue_capacity,
            notify: Notify::new(),
            closing: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            drop_log: LogThrottle::default(),
        });
        let health = Arc::new(DbHealth::default());
        let writer = Writer {
            queue: queue.clone(),
            store,
            metrics: metrics.clone(),
            health: health.clone(),
            breaker: Breaker::new(cfg),
            batch_size: cfg.batch_size,
            flush_interval: ms(cfg.flush_interval_ms),
        };
        let handle = tokio::spawn(writer.run());
        Arc::new(Recorder {
            queue,
            symbols,
            epoch,
            metrics,
            health,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Rows waiting (queued, not yet committed).
    pub(crate) fn backlog(&self) -> u64 {
        self.metrics.db_backlog.load(Ordering::Relaxed)
    }

    /// Graceful stop: the writer drains the queue and exits. Whatever is still unwritten when
    /// `grace` runs out is counted as dropped and logged.
    pub(crate) async fn flush_and_stop(&self, grace: Duration) {
        self.queue.closing.store(true, Ordering::Release);
        self.queue.notify.notify_one();
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut handle) = handle else { return };
        if tokio::time::timeout(grace, &mut handle).await.is_err() {
            handle.abort();
            let lost =
                self.queue.lock().len() as u64 + self.queue.in_flight.load(Ordering::Relaxed);
            self.metrics.db_backlog.store(0, Ordering::Relaxed);
            WriteBehindAbandoned { lost }.emit(&self.metrics);
        } else {
            tracing::info!(
                written = self.metrics.db_rows_written.load(Ordering::Relaxed),
                "write-behind queue flushed"
            );
        }
    }
}

impl EventSink for Recorder {
    fn publish(&self, events: &[Event]) {
        let mut rows = events.iter().filter_map(|e| match e.payload {
            Payload::Tick(t) => Some(Record::Tick(TickRow {
                symbol: self.symbols.name(t.symbol),
                ts: t.exchange_ts,
                ingest_ts: t.ts,
                epoch: self.epoch,
                seq: e.seq as i64,
                price: t.price,
                size: t.size,
                side: t.side,
            })),
            Payload::Bar(b) if b.is_final => {
                let interval_ns = match e.channel.kind {
                    Kind::Bars1s => BAR_1S_NS,
                    Kind::Bars1m => BAR_1M_NS,
                    _ => return None,
                };
                Some(Record::Bar(BarRecord {
                    symbol: self.symbols.name(e.channel.symbol),
                    interval_ns,
                    // Bars start at exchange times, which ingest bounds; an absurd start is not
                    // stored rather than wrapped.
                    start: b.start_ms.checked_mul(1_000_000)?,
                    epoch: self.epoch,
                    open: b.open,
                    high: b.high,
                    low: b.low,
                    close: b.close,
                    volume: b.volume,
                    trades: i64::try_from(b.trades).unwrap_or(i64::MAX),
                }))
            }
            _ => None,
        });
        let mut dropped = 0u64;
        let queued = {
            let mut q = self.queue.lock();
            for row in rows.by_ref() {
                if q.len() < self.queue.capacity {
                    q.push_back(row);
                } else {
                    dropped += 1;
                }
            }
            if !q.is_empty() {
                self.queue.report_backlog(&q, &self.metrics);
            }
            !q.is_empty()
        };
        if queued {
            self.queue.notify.notify_one();
        }
        if dropped > 0 {
            TicksNotPersisted {
                rows: dropped,
                capacity: self.queue.capacity,
                throttle: &self.queue.drop_log,
            }
            .emit(&self.metrics);
        }
    }
}

/// Rows taken from the queue and not yet committed.
#[derive(Debug, Default)]
struct Batch {
    ticks: Vec<TickRow>,
    bars: Vec<BarRecord>,
}

impl Batch {
    fn len(&self) -> usize {
        self.ticks.len() + self.bars.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn clear(&mut self) {
        self.ticks.clear();
        self.bars.clear();
    }
}

/// The task that owns database writes.
struct Writer {
    queue: Arc<Queue>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    health: Arc<DbHealth>,
    breaker: Breaker,
    batch_size: usize,
    flush_interval: Duration,
}

impl Writer {
    async fn run(mut self) {
        let mut batch = Batch::default();
        loop {
            if batch.is_empty() {
                self.wait_for_batch().await;
                let mut q = self.queue.lock();
                let n = q.len().min(self.batch_size);
                for record in q.drain(..n) {
                    match record {
                        Record::Tick(t) => batch.ticks.push(t),
                        Record::Bar(b) => batch.bars.push(b),
                    }
                }
                self.queue.in_flight.store(n as u64, Ordering::Relaxed);
                self.queue.report_backlog(&q, &self.metrics);
            }
            let closing = self.queue.closing.load(Ordering::Acquire);
            if batch.is_empty() {
                if closing {
                    break;
                }
                continue;
            }
            let started = Instant::now();
            let result = self.write(&batch).await;
            match result {
                Ok((inserted, bars)) => {
                    TickBatchWritten {
                        rows: inserted,
                        duplicates: (batch.ticks.len() as u64).saturating_sub(inserted),
                        bars,
                        elapsed: started.elapsed(),
                        recovered_after: self.breaker.is_open().then(|| self.breaker.failures()),
                    }
                    .emit(&self.metrics);
                    self.breaker.on_success();
                    self.health.breaker_open.store(false, Ordering::Relaxed);
                    self.health.consecutive_failures.store(0, Ordering::Relaxed);
                    self.health.last_write_ms.store(now_ms(), Ordering::Relaxed);
                    batch.clear();
                    let q = self.queue.lock();
                    self.queue.in_flight.store(0, Ordering::Relaxed);
                    self.queue.report_backlog(&q, &self.metrics);
                }
                Err(error) => {
                    let was_open = self.breaker.is_open();
                    let mut delay = self.breaker.on_failure();
                    self.health
                        .consecutive_failures
                        .store(self.breaker.failures() as u64, Ordering::Relaxed);
                    let then = if !self.breaker.is_open() {
                        AfterWriteFailure::Retry { delay }
                    } else if was_open {
                        AfterWriteFailure::StillOpen
                    } else {
                        AfterWriteFailure::BreakerOpened {
                            backlog: self.backlog(batch.len()),
                        }
                    };
                    if self.breaker.is_open() {
                        self.health.breaker_open.store(true, Ordering::Relaxed);
                    }
                    TickBatchWriteFailed {
                        error: &error,
                        failures: self.breaker.failures(),
                        then,
                    }
                    .emit(&self.metrics);
                    if closing {
                        // Shutdown is waiting: retry sooner; the caller's grace bounds it.
                        delay = delay.min(Duration::from_millis(200));
                    }
                    self.sleep_unless_closing(delay, closing).await;
                }
            }
        }
        self.metrics.db_backlog.store(0, Ordering::Relaxed);
        tracing::debug!("tick writer stopped");
    }

    /// Writes the ticks, then the bars (two transactions: a retry after the bars failed writes
    /// the ticks again, and their identities make that a no-op). Returns (new ticks, new bars).
    async fn write(&self, batch: &Batch) -> Result<(u64, u64), StoreError> {
        self.store.ensure_migrated().await?;
        let ticks = self.store.insert_ticks(&batch.ticks).await?;
        let bars = self.store.insert_bars(&batch.bars).await?;
        Ok((ticks, bars))
    }

    fn backlog(&self, in_flight: usize) -> u64 {
        (self.queue.lock().len() + in_flight) as u64
    }

    /// Waits until a full batch is queued, the flush interval has passed with rows queued, or
    /// shutdown asks for a drain.
    async fn wait_for_batch(&self) {
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if self.queue.closing.load(Ordering::Acquire) {
                return;
            }
            let len = self.queue.lock().len();
            if len >= self.batch_size {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DatabaseConfig {
        crate::config::Config::defaults().unwrap().database
    }

    #[test]
    fn breaker_backs_off_then_opens_and_probes() {
        let mut c = cfg();
        c.backoff_initial_ms = 100;
        c.backoff_max_ms = 300;
        c.breaker_failures = 4;
        c.breaker_probe_ms = 2000;
        let mut b = Breaker::new(&c);
        let delays: Vec<u64> = (0..6).map(|_| b.on_failure().as_millis() as u64).collect();
        assert_eq!(delays, vec![100, 200, 300, 2000, 2000, 2000]);
        assert!(b.is_open());
        b.on_success();
        assert!(!b.is_open());
        assert_eq!(b.on_failure(), Duration::from_millis(100));
    }
}
