//! Write-behind persistence of ticks, closed bars and indicator history.
//!
//! [`Recorder`] is an [`EventSink`] beside the hub: ingest hands it every published batch, and it
//! copies the ticks, the pipeline's closed (`final`) bars and, from each `indicators` event, one
//! row of indicator history per 1 s bar that batch closed (`IndicatorValues::closes`) into one
//! bounded in-memory queue without waiting on the database (a short std lock).
//! One writer task ([`writer`]) drains the queue in batches (size- or time-bounded), one
//! transaction per batch. A failed batch is kept and retried with exponential backoff; after
//! `database.breaker_failures` consecutive failures the [`Breaker`] opens and only one probe
//! write per `database.breaker_probe_ms` is tried until the database answers again. Meanwhile
//! the queue absorbs rows up to `database.queue_capacity`; past it `database.on_overload`
//! decides: `journal` appends them to the local [`Journal`] on disk (a buffered append on the
//! ingest thread, no fsync), and from then on every row goes there until the writer has replayed
//! the journal into the database, so rows are stored in the order they came; `block` keeps them
//! (the sources that can wait have waited on [`Recorder::store_backlog`] before sending);
//! `drop` drops them, counted in `tickcast_db_rows_dropped_total` and logged.
//! A replay always waits on [`Recorder::store_backlog`], whatever the mode.
//! [`Recorder::flush_and_stop`] drains everything on graceful shutdown; what the database cannot
//! take in time stays in the journal for the next start.

mod writer;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::journal::{Journal, JournalError, Record};
use super::{BarRecord, IndicatorRecord, OnOverload, Store, TickRow};
use crate::config_section::ms;
use crate::model::{Event, Kind, Payload, Symbols};
use crate::protocol::IndicatorFields;
use crate::rooms::{Backlog, EventSink};
use crate::store::DatabaseConfig;
use crate::telemetry::events::{LogThrottle, TicksNotPersisted, WriteBehindAbandoned};
use crate::telemetry::metrics::Metrics;
use writer::Writer;

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

/// What the queue's lock guards: the rows in memory and the journal.
#[derive(Debug)]
struct Pending {
    rows: VecDeque<Record>,
    /// With `on_overload = "journal"`.
    journal: Option<Journal>,
}

impl Pending {
    /// The journal holds rows: new rows go there too, so the database gets them in order.
    fn spilling(&self) -> bool {
        self.journal.as_ref().is_some_and(|j| !j.is_empty())
    }
}

/// The queue shared by the sink side (ingest thread) and the writer task.
#[derive(Debug)]
struct Queue {
    // A std mutex: held for a push, a journal append or a drain of a few thousand rows, never
    // across an await.
    pending: Mutex<Pending>,
    capacity: usize,
    overload: OnOverload,
    notify: Notify,
    closing: AtomicBool,
    /// Rows the writer has taken out of the queue and not yet committed.
    in_flight: AtomicU64,
    /// Rows not yet committed, for the sources that wait for the store.
    store_backlog: Arc<Backlog>,
    /// The last journal append was refused (full, or failing); cleared by a replayed segment.
    journal_full: AtomicBool,
    /// "Rows dropped" is logged at most once a second.
    drop_log: LogThrottle,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Push and drain leave the deque consistent even if a panic interrupts them.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the backlog gauges (queued plus in-flight rows, journal bytes) and the store's
    /// brake. Every caller holds the queue's lock (`p` is its guard) and changes `in_flight`
    /// only under it, so the last store is never a stale sum that a concurrent writer has
    /// already overtaken. While the journal holds rows the brake reads full: a replay waits
    /// until the database has caught up with the journal.
    fn report_backlog(&self, p: &Pending, metrics: &Metrics) {
        let in_memory = p.rows.len() as u64 + self.in_flight.load(Ordering::Relaxed);
        metrics.db_backlog.store(in_memory, Ordering::Relaxed);
        if let Some(j) = &p.journal {
            metrics.db_journal_bytes.store(j.bytes(), Ordering::Relaxed);
        }
        let spilled = if p.spilling() {
            self.capacity as u64
        } else {
            0
        };
        self.store_backlog.set(in_memory + spilled);
    }

    /// Appends rows the queue cannot take to the journal; returns how many could not be
    /// journaled either (full, or the disk failing: logged).
    fn spill(&self, p: &mut Pending, rows: &[Record], metrics: &Metrics) -> u64 {
        let Some(journal) = p.journal.as_mut() else {
            return rows.len() as u64;
        };
        let appended = match journal.append(rows) {
            Ok(n) => n,
            Err(error) => {
                tracing::error!(target: "tickcast::store", %error, "journal append failed");
                0
            }
        };
        metrics
            .db_rows_journaled
            .fetch_add(appended as u64, Ordering::Relaxed);
        let refused = (rows.len() - appended) as u64;
        self.journal_full.store(refused > 0, Ordering::Relaxed);
        refused
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
    /// Names the fields of the indicator history rows (this run's periods).
    fields: IndicatorFields,
    metrics: Arc<Metrics>,
    pub health: Arc<DbHealth>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

// === impl Recorder ===

impl Recorder {
    /// Opens the journal (with `on_overload = "journal"`: what an earlier run left there is
    /// replayed first) and starts the writer task on the current runtime. `epoch` names this
    /// server run (the one the WebSocket `ack` reports).
    pub fn start(
        store: Arc<Store>,
        cfg: &DatabaseConfig,
        symbols: Arc<Symbols>,
        epoch: i64,
        fields: IndicatorFields,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Recorder>, JournalError> {
        let journal = match cfg.on_overload {
            OnOverload::Journal => {
                let dir = cfg.journal_path();
                let journal = Journal::open(&dir, cfg.journal_max_bytes)?;
                if !journal.is_empty() {
                    tracing::info!(
                        target: "tickcast::store",
                        dir = %dir.display(),
                        bytes = journal.bytes(),
                        "journal left by an earlier run: replaying it into the database"
                    );
                }
                Some(journal)
            }
            OnOverload::Block | OnOverload::Drop => None,
        };
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending {
                rows: VecDeque::new(),
                journal,
            }),
            capacity: cfg.queue_capacity,
            overload: cfg.on_overload,
            notify: Notify::new(),
            closing: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            store_backlog: Arc::new(Backlog::new(cfg.queue_capacity)),
            journal_full: AtomicBool::new(false),
            drop_log: LogThrottle::default(),
        });
        queue.report_backlog(&queue.lock(), &metrics);
        // Sources wait on the store only while a writer drains it.
        let _ = queue.store_backlog.attach();
        let health = Arc::new(DbHealth::default());
        let writer = Writer::new(queue.clone(), store, cfg, metrics.clone(), health.clone());
        let handle = tokio::spawn(writer.run());
        Ok(Arc::new(Recorder {
            queue,
            symbols,
            epoch,
            fields,
            metrics,
            health,
            writer: Mutex::new(Some(handle)),
        }))
    }

    /// Rows waiting in memory (queued, not yet committed).
    pub(crate) fn backlog(&self) -> u64 {
        self.metrics.db_backlog.load(Ordering::Relaxed)
    }

    /// Bytes of rows waiting in the journal.
    pub(crate) fn journal_bytes(&self) -> u64 {
        self.metrics.db_journal_bytes.load(Ordering::Relaxed)
    }

    /// Rows the store has not committed, bounded by `database.queue_capacity`: what a source
    /// that can wait (replay; live feeds with `on_overload = "block"`) waits on.
    pub(crate) fn store_backlog(&self) -> &Arc<Backlog> {
        &self.queue.store_backlog
    }

    /// What `database.on_overload` says.
    pub(crate) fn on_overload(&self) -> OnOverload {
        self.queue.overload
    }

    /// Whether more rows would be stored rather than dropped (or, with `block`, held past the
    /// queue's bound): HTTP ingest answers 503 with Retry-After when not.
    pub(crate) fn accepts_more(&self) -> bool {
        match self.queue.overload {
            OnOverload::Journal => !self.queue.journal_full.load(Ordering::Relaxed),
            OnOverload::Block => self.queue.store_backlog.unread() < self.queue.capacity as u64,
            OnOverload::Drop => true,
        }
    }

    /// Graceful stop: the writer drains the queue and exits; if the database fails meanwhile
    /// the rest goes to the journal (with `on_overload = "journal"`). Whatever is still
    /// unwritten when `grace` runs out is journaled, or counted as dropped and logged.
    pub(crate) async fn flush_and_stop(&self, grace: Duration) {
        self.queue.closing.store(true, Ordering::Release);
        self.queue.notify.notify_one();
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut handle) = handle else { return };
        if tokio::time::timeout(grace, &mut handle).await.is_err() {
            handle.abort();
            let mut p = self.queue.lock();
            let rows: Vec<Record> = p.rows.drain(..).collect();
            let lost = self.queue.spill(&mut p, &rows, &self.metrics)
                + self.queue.in_flight.swap(0, Ordering::Relaxed);
            self.queue.report_backlog(&p, &self.metrics);
            if lost > 0 {
                WriteBehindAbandoned { lost }.emit(&self.metrics);
            }
        } else {
            tracing::info!(
                written = self.metrics.db_rows_written.load(Ordering::Relaxed),
                journal_bytes = self.journal_bytes(),
                "write-behind queue flushed"
            );
        }
        self.queue.store_backlog.detach();
    }
}

impl EventSink for Recorder {
    fn publish(&self, events: &[Event]) {
        let mut rows = Vec::new();
        for e in events {
            self.rows_of(e, &mut rows);
        }
        self.enqueue(rows);
    }
}

impl Recorder {
    /// What one published event stores: a tick, a final bar, or a row of indicator history
    /// per 1 s bar the batch closed.
    fn rows_of(&self, e: &Event, rows: &mut Vec<Record>) {
        let row = match &e.payload {
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
                let Kind::Bars(interval) = e.channel.kind else {
                    return;
                };
                // Bars start at exchange times, which ingest bounds; an absurd start is not
                // stored rather than wrapped.
                BarRecord::from_bar(
                    self.symbols.name(e.channel.symbol),
                    interval.ns(),
                    self.epoch,
                    b,
                )
                .map(Record::Bar)
            }
            Payload::Indicators(v) if !v.closes.is_empty() => {
                let symbol = self.symbols.name(e.channel.symbol);
                for close in &v.closes {
                    // As for bars: an absurd start is not stored rather than wrapped.
                    let Some(start) = close.start_ms.checked_mul(1_000_000) else {
                        continue;
                    };
                    rows.push(Record::Indicators(IndicatorRecord {
                        symbol: symbol.clone(),
                        start,
                        epoch: self.epoch,
                        fields: self.fields.row_json(&close.periodic, v),
                    }));
                }
                None
            }
            _ => None,
        };
        rows.extend(row);
    }

    /// Queues rows for the writer (or the journal, or drops them, as `on_overload` says).
    fn enqueue(&self, rows: Vec<Record>) {
        let mut dropped = 0u64;
        let mut overflow = Vec::new();
        let wake = {
            let mut p = self.queue.lock();
            let spilling = p.spilling();
            for row in rows {
                if !spilling && p.rows.len() < self.queue.capacity {
                    p.rows.push_back(row);
                } else {
                    match self.queue.overload {
                        OnOverload::Journal => overflow.push(row),
                        // The sources that can wait have waited; what comes anyway (bars, a
                        // feed that raced another) is kept.
                        OnOverload::Block => p.rows.push_back(row),
                        OnOverload::Drop => dropped += 1,
                    }
                }
            }
            if !overflow.is_empty() {
                dropped += self.queue.spill(&mut p, &overflow, &self.metrics);
            }
            self.queue.report_backlog(&p, &self.metrics);
            !p.rows.is_empty() || p.spilling()
        };
        if wake {
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
