//! Ingest: the single point where ticks and computed events are validated, given their
//! per-channel `seq`, encoded once, and handed to the [`EventSink`].
//!
//! Feeds and the pipeline send batches through an [`IngestHandle`]; one dedicated thread drains
//! them in order, so `seq` is assigned exactly once per channel with no lock, and fan-out never
//! runs on the async runtime's workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use crate::book::{Book, BookConfig, BookError, BookUpdate, BookView, PublishedView};
use crate::model::{
    BarEvent, ChannelId, Event, IndicatorPeriods, IndicatorValues, Kind, Payload, RawTick,
    SymbolId, SymbolLimit, Symbols, Tick, is_valid_symbol, now_ns,
};
use crate::protocol::{self, IndicatorFields};
use crate::rooms::EventSink;
use crate::telemetry::events::{FutureTicksRejected, LogThrottle};
use crate::telemetry::metrics::Metrics;

mod handle;

pub(crate) use handle::TrySubmitError;
pub use handle::{IngestClosed, IngestHandle};

/// Batches waiting for the ingest thread; feeds wait (backpressure) when it is full.
pub(crate) const INGEST_QUEUE_BATCHES: usize = 1024;

/// Why a tick was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TickError {
    #[error("invalid symbol {0:?}: must match [A-Z0-9._-]{{1,32}}")]
    Symbol(String),
    #[error("price must be a finite number > 0, got {0}")]
    Price(f64),
    #[error("size must be a finite number > 0, got {0}")]
    Size(f64),
    #[error("exchange time must be > 0 ns since the epoch, got {0}")]
    Time(i64),
    #[error(
        "exchange time is {ahead_ms} ms ahead of the server clock; a live feed allows at most \
         {max_ms} ms (feeds.max_future_skew_ms)"
    )]
    Future { ahead_ms: i64, max_ms: i64 },
    #[error(transparent)]
    SymbolLimit(#[from] SymbolLimit),
}

/// Checks a tick against the contract's rules.
pub fn validate(t: &RawTick) -> Result<(), TickError> {
    if !is_valid_symbol(&t.symbol) {
        return Err(TickError::Symbol(t.symbol.clone()));
    }
    if !(t.price.is_finite() && t.price > 0.0) {
        return Err(TickError::Price(t.price));
    }
    if !(t.size.is_finite() && t.size > 0.0) {
        return Err(TickError::Size(t.size));
    }
    if t.exchange_ts <= 0 {
        return Err(TickError::Time(t.exchange_ts));
    }
    Ok(())
}

/// `feeds.max_future_skew_ms` in ns, saturating (the config bounds it to a year).
pub(crate) fn skew_ns(max_future_skew_ms: u64) -> i64 {
    i64::try_from(max_future_skew_ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

/// Refuses a tick dated more than `max_skew_ns` ahead of `now_ns` (both ns since the epoch).
pub(crate) fn check_future(t: &RawTick, now_ns: i64, max_skew_ns: i64) -> Result<(), TickError> {
    check_future_ts(t.exchange_ts, now_ns, max_skew_ns)
}

/// [`check_future`] for any record's exchange time (a depth update's too).
pub(crate) fn check_future_ts(
    exchange_ts: i64,
    now_ns: i64,
    max_skew_ns: i64,
) -> Result<(), TickError> {
    let ahead = exchange_ts.saturating_sub(now_ns);
    if ahead > max_skew_ns {
        return Err(TickError::Future {
            ahead_ms: ahead / 1_000_000,
            max_ms: max_skew_ns / 1_000_000,
        });
    }
    Ok(())
}

/// Why a depth update was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BookUpdateError {
    #[error(transparent)]
    Book(#[from] BookError),
    #[error("the book of {symbol} comes from {owner}; another source's updates are dropped")]
    Owned { symbol: String, owner: String },
    #[error(transparent)]
    SymbolLimit(#[from] SymbolLimit),
}

/// A value the pipeline computed, not yet sequenced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Derived {
    Bar {
        kind: Kind,
        symbol: SymbolId,
        bar: BarEvent,
    },
    Indicators {
        symbol: SymbolId,
        values: IndicatorValues,
    },
}

#[derive(Debug)]
enum Msg {
    Ticks {
        ticks: Vec<RawTick>,
        /// Set for live feeds: refuse ticks dated more than this (ns) ahead of ingest's clock.
        max_future_skew_ns: Option<i64>,
        /// Told once the batch is published (in the rings), for senders that pace themselves
        /// by what downstream has read ([`IngestHandle::send_published`]).
        published: Option<tokio::sync::oneshot::Sender<()>>,
    },
    Derived(Vec<Derived>),
    /// Order book depth updates from one source (a feed's name), applied to each symbol's book
    /// in order.
    Books {
        source: Arc<str>,
        updates: Vec<BookUpdate>,
    },
    /// Continue these channels after the given `seq`s (a new cluster leader taking over the
    /// stream); told once applied.
    Seed(Vec<(ChannelId, u64)>, tokio::sync::oneshot::Sender<()>),
    /// Publish whole every book not published whole for `book.checkpoint_ms`, changed or not
    /// (a cluster leader's timer: an edge that joins late needs one reset of each book).
    CheckpointBooks,
    /// Everything queued before this is published, then ingest stops.
    Stop,
}

/// A cluster leader's book checkpoints: every `checkpoint_ms`, ingest publishes whole the books
/// that were not (a changing book is published whole at its next update by itself), so an edge
/// that joins late has every book, quiet ones too, within that time. Runs until `stop`.
pub(crate) async fn run_book_checkpoints(
    ingest: IngestHandle,
    checkpoint_ms: u64,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut timer = tokio::time::interval(std::time::Duration::from_millis(checkpoint_ms.max(1)));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = timer.tick() => {}
        }
        if ingest.checkpoint_books().await.is_err() {
            return;
        }
    }
}

/// One symbol's book at ingest.
struct SymbolBook {
    /// The source that owns it: the first to send one.
    owner: Arc<str>,
    book: Book,
    /// The view last published from it (the next delta is the difference from it).
    published: Arc<PublishedView>,
    /// When it was last published whole.
    whole_at: i64,
}

impl SymbolBook {
    /// True when it is `checkpoint_ms` or more since it was published whole at `ts`.
    fn checkpoint_due(&self, ts: i64, checkpoint_ms: u64) -> bool {
        let every = i64::try_from(checkpoint_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        ts.saturating_sub(self.whole_at) >= every
    }
}

/// The ingest stage: owns the sequencer and the sink.
pub(crate) struct Ingest {
    rx: mpsc::Receiver<Msg>,
    symbols: Arc<Symbols>,
    sink: Arc<dyn EventSink>,
    metrics: Arc<Metrics>,
    /// Wire names of the indicator fields, made once for every `indicators` event.
    indicator_fields: IndicatorFields,
    /// Last `seq` per channel, indexed by kind then symbol id.
    seq: [Vec<u64>; Kind::COUNT],
    /// Cached `kind:SYMBOL` strings, same indexing.
    names: [Vec<Arc<str>>; Kind::COUNT],
    /// One log line per second at most for refused future ticks.
    future_log: LogThrottle,
    /// Each symbol's book, as ingest keeps it.
    books: HashMap<SymbolId, SymbolBook>,
    book_config: BookConfig,
}

impl Ingest {
    pub fn new(
        symbols: Arc<Symbols>,
        sink: Arc<dyn EventSink>,
        metrics: Arc<Metrics>,
        periods: IndicatorPeriods,
    ) -> (Ingest, IngestHandle) {
        let (tx, rx) = mpsc::channel(INGEST_QUEUE_BATCHES);
        let handle = IngestHandle {
            tx,
            metrics: metrics.clone(),
            symbols: symbols.clone(),
            max_future_skew_ns: None,
        };
        let ingest = Ingest {
            rx,
            symbols,
            sink,
            metrics,
            indicator_fields: IndicatorFields::new(&periods),
            seq: Default::default(),
            names: Default::default(),
            future_log: LogThrottle::default(),
            books: HashMap::new(),
            book_config: BookConfig {
                depth: 25,
                max_levels: 1000,
                checkpoint_ms: 10_000,
            },
        };
        (ingest, handle)
    }

    /// How much of each order book is kept and published (`[book]`).
    pub(crate) fn with_books(mut self, config: BookConfig) -> Self {
        self.book_config = config;
        self
    }

    /// Runs on its own thread until every [`IngestHandle`] is dropped.
    pub(crate) fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("tickcast-ingest".into())
            .spawn(move || self.run())
    }

    fn run(mut self) {
        let mut events = Vec::with_capacity(1024);
        let mut acks = Vec::new();
        let mut stopping = false;
        while let Some(msg) = self.rx.blocking_recv() {
            stopping |= self.apply(msg, &mut events, &mut acks);
            // Coalesce whatever else is already queued into one publish: fewer writer wake-ups.
            while events.len() < 4096 {
                match self.rx.try_recv() {
                    Ok(msg) => stopping |= self.apply(msg, &mut events, &mut acks),
                    Err(_) => break,
                }
            }
            self.sink.publish(&events);
            events.clear();
            for ack in acks.drain(..) {
                // The sender may have gone (shutdown); nothing to tell then.
                let _ = ack.send(());
            }
            if stopping {
                // Refuse new batches; publish the ones that raced with the stop.
                self.rx.close();
            }
        }
        tracing::debug!("ingest drained and stopped");
    }

    /// Turns one message into events; true when it asks ingest to stop.
    fn apply(
        &mut self,
        msg: Msg,
        out: &mut Vec<Event>,
        acks: &mut Vec<tokio::sync::oneshot::Sender<()>>,
    ) -> bool {
        let ts = now_ns();
        if !matches!(msg, Msg::Stop) {
            self.metrics
                .ingest_queue_depth
                .fetch_sub(1, Ordering::Relaxed);
        }
        match msg {
            Msg::Stop => return true,
            Msg::Ticks {
                ticks,
                max_future_skew_ns,
                published,
            } => {
                acks.extend(published);
                let mut future: Option<(u64, String, i64, i64)> = None;
                for raw in ticks {
                    if let Some(max) = max_future_skew_ns
                        && let Err(TickError::Future { ahead_ms, max_ms }) =
                            check_future(&raw, ts, max)
                    {
                        let n = future.as_ref().map_or(0, |f| f.0) + 1;
                        future = Some((n, raw.symbol, ahead_ms, max_ms));
                        continue;
                    }
                    match self.tick_event(&raw, ts) {
                        Ok(e) => out.push(e),
                        Err(error) => {
                            self.metrics.ticks_rejected.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(symbol = %raw.symbol, %error, "tick rejected at ingest");
                        }
                    }
                }
                if let Some((rejected, symbol, ahead_ms, max_ms)) = future {
                    FutureTicksRejected {
                        rejected,
                        symbol: &symbol,
                        ahead_ms,
                        max_ms,
                        throttle: &self.future_log,
                    }
                    .emit(&self.metrics);
                }
            }
            Msg::Derived(values) => {
                for d in values {
                    out.push(self.derived_event(d, ts));
                }
            }
            Msg::Books { source, updates } => {
                for u in updates {
                    match self.book_event(&source, &u, ts) {
                        Ok(Some(e)) => out.push(e),
                        Ok(None) => {}
                        Err(error) => {
                            self.metrics
                                .book_updates_rejected
                                .fetch_add(1, Ordering::Relaxed);
                            if matches!(error, BookUpdateError::Owned { .. }) {
                                // A configuration choice, at the source's rate: not a warning.
                                tracing::debug!(symbol = %u.symbol, %source, %error, "book update dropped");
                            } else {
                                tracing::warn!(symbol = %u.symbol, %source, %error, "book update rejected at ingest");
                            }
                        }
                    }
                }
            }
            Msg::Seed(seqs, done) => {
                for (ch, seq) in seqs {
                    let (k, i) = self.slot(ch);
                    self.seq[k][i] = self.seq[k][i].max(seq);
                }
                acks.push(done);
            }
            Msg::CheckpointBooks => self.checkpoint_books(ts, out),
        }
        false
    }

    /// Applies a depth update to its symbol's book; the event publishing what changed in the
    /// view (the whole view, `reset`, for a snapshot or the book's first update), or `None`
    /// when the view did not change (a level deeper than `book.depth`).
    fn book_event(
        &mut self,
        source: &Arc<str>,
        u: &BookUpdate,
        ts: i64,
    ) -> Result<Option<Event>, BookUpdateError> {
        u.validate()?;
        let symbol = self.symbols.intern(&u.symbol)?;
        let cfg = self.book_config;
        let first = !self.books.contains_key(&symbol);
        let entry = self.books.entry(symbol).or_insert_with(|| SymbolBook {
            owner: source.clone(),
            book: Book::default(),
            published: Default::default(),
            whole_at: ts,
        });
        if entry.owner != *source {
            // Two sources' levels in one book would be neither's book: the first one keeps it.
            return Err(BookUpdateError::Owned {
                symbol: u.symbol.clone(),
                owner: entry.owner.to_string(),
            });
        }
        let dropped = entry.book.apply(u, cfg.max_levels);
        if dropped > 0 {
            self.metrics
                .book_levels_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        let view = entry.book.view(cfg.depth);
        let delta = if first || u.snapshot || entry.checkpoint_due(ts, cfg.checkpoint_ms) {
            None
        } else {
            let delta = entry.published.view.diff(&view);
            if delta.is_empty() {
                return Ok(None);
            }
            Some(delta)
        };
        Ok(Some(self.publish_book(symbol, ts, view, delta)))
    }

    /// The event publishing `view` as `symbol`'s book: `delta` (the levels that changed since
    /// the last one), or with none the whole view as a `reset`.
    fn publish_book(
        &mut self,
        symbol: SymbolId,
        ts: i64,
        view: BookView,
        delta: Option<BookView>,
    ) -> Event {
        let checksum = view.checksum();
        let channel = ChannelId {
            kind: Kind::Book,
            symbol,
        };
        let (seq, name) = self.next_seq(channel);
        self.metrics.book_updates.fetch_add(1, Ordering::Relaxed);
        let wire = protocol::BookMessage {
            ch: &name,
            seq,
            ts,
            reset: delta.is_none(),
            levels: delta.as_ref().unwrap_or(&view),
            checksum,
        }
        .wire();
        // One view, shared by the hub (snapshots, repairs) and the next diff.
        let view = Arc::new(PublishedView::new(name, seq, ts, view, checksum));
        if let Some(entry) = self.books.get_mut(&symbol) {
            entry.published = view.clone();
            if delta.is_none() {
                entry.whole_at = ts;
            }
        }
        Event {
            channel,
            seq,
            ts,
            payload: Payload::Book,
            wire,
            book: Some(view),
        }
    }

    /// Publishes whole every book not published whole for `book.checkpoint_ms` (a changing
    /// book is, at its next update; this reaches the ones that stopped changing).
    fn checkpoint_books(&mut self, ts: i64, out: &mut Vec<Event>) {
        let every = self.book_config.checkpoint_ms;
        let stale: Vec<(SymbolId, BookView)> = self
            .books
            .iter()
            .filter(|(_, b)| b.checkpoint_due(ts, every))
            .map(|(symbol, b)| (*symbol, (*b.published.view).clone()))
            .collect();
        for (symbol, view) in stale {
            out.push(self.publish_book(symbol, ts, view, None));
        }
    }

    fn tick_event(&mut self, raw: &RawTick, ts: i64) -> Result<Event, TickError> {
        validate(raw)?;
        let symbol = self.symbols.intern(&raw.symbol)?;
        let tick = Tick {
            symbol,
            price: raw.price,
            size: raw.size,
            side: raw.side,
            exchange_ts: raw.exchange_ts,
            ts,
        };
        let channel = ChannelId {
            kind: Kind::Ticks,
            symbol,
        };
        let (seq, name) = self.next_seq(channel);
        self.metrics.ticks_ingested.fetch_add(1, Ordering::Relaxed);
        Ok(Event {
            channel,
            seq,
            ts,
            payload: Payload::Tick(tick),
            wire: protocol::encode_tick(&name, seq, &tick),
            book: None,
        })
    }

    fn derived_event(&mut self, d: Derived, ts: i64) -> Event {
        match d {
            Derived::Bar { kind, symbol, bar } => {
                let channel = ChannelId { kind, symbol };
                let (seq, name) = self.next_seq(channel);
                Event {
                    channel,
                    seq,
                    ts,
                    payload: Payload::Bar(bar),
                    wire: protocol::encode_bar(&name, seq, ts, &bar),
                    book: None,
                }
            }
            Derived::Indicators { symbol, values } => {
                let channel = ChannelId {
                    kind: Kind::Indicators,
                    symbol,
                };
                let (seq, name) = self.next_seq(channel);
                Event {
                    channel,
                    seq,
                    ts,
                    payload: Payload::Indicators(values),
                    wire: protocol::encode_indicators(
                        &name,
                        seq,
                        ts,
                        &values,
                        &self.indicator_fields,
                    ),
                    book: None,
                }
            }
        }
    }

    /// The (kind, symbol) indexes of a channel's counter and name, grown to hold it.
    fn slot(&mut self, ch: ChannelId) -> (usize, usize) {
        let (k, i) = (ch.kind.index(), ch.symbol.0 as usize);
        if self.seq[k].len() <= i {
            self.seq[k].resize(i + 1, 0);
            self.names[k].resize(i + 1, Arc::from(""));
        }
        (k, i)
    }

    /// The next `seq` of a channel and its wire name.
    fn next_seq(&mut self, ch: ChannelId) -> (u64, Arc<str>) {
        let (k, i) = self.slot(ch);
        if self.names[k][i].is_empty() {
            self.names[k][i] = Arc::from(self.symbols.channel_name(ch));
        }
        self.seq[k][i] += 1;
        (self.seq[k][i], self.names[k][i].clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::model::Side;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Event>>);
    impl EventSink for Collect {
        fn publish(&self, events: &[Event]) {
            self.0.lock().unwrap().extend_from_slice(events);
        }
    }

    fn raw(sym: &str, price: f64) -> RawTick {
        RawTick {
            symbol: sym.into(),
            price,
            size: 1.0,
            side: Some(Side::Buy),
            exchange_ts: 1,
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let cases = [
            (raw("aapl", 1.0), "invalid symbol"),
            (raw("A", 0.0), "price"),
            (raw("A", f64::NAN), "price"),
            (
                RawTick {
                    size: -1.0,
                    ..raw("A", 1.0)
                },
                "size",
            ),
            (
                RawTick {
                    exchange_ts: 0,
                    ..raw("A", 1.0)
                },
                "exchange time",
            ),
        ];
        for (t, needle) in cases {
            let e = validate(&t).unwrap_err().to_string();
            assert!(e.contains(needle), "{t:?}: {e}");
        }
        assert_eq!(validate(&raw("A", 1.0)), Ok(()));
    }

    #[test]
    fn a_symbols_book_belongs_to_the_first_source_that_sends_one() {
        let sink = Arc::new(Collect::default());
        let metrics = Arc::new(Metrics::default());
        let (ingest, handle) = Ingest::new(
            Arc::new(Symbols::new(10)),
            sink.clone(),
            metrics.clone(),
            IndicatorPeriods::default(),
        );
        let thread = ingest.spawn().unwrap();
        let update = |bid: f64| BookUpdate {
            symbol: "BTC-USD".into(),
            snapshot: false,
            bids: vec![(bid, 1.0)],
            asks: vec![(200.0, 1.0)],
            exchange_ts: 1,
        };
        let (a, b): (Arc<str>, Arc<str>) = ("coinbase".into(), "kraken".into());
        handle.try_send_books(&a, vec![update(100.0)]).unwrap();
        handle.try_send_books(&b, vec![update(150.0)]).unwrap();
        handle.try_send_books(&a, vec![update(101.0)]).unwrap();
        drop(handle);
        thread.join().unwrap();
        let events = sink.0.lock().unwrap();
        let bids: Vec<f64> = events
            .iter()
            .filter_map(|e| e.book.as_ref().map(|v| v.view.bids[0].0))
            .collect();
        assert_eq!(
            bids,
            [100.0, 101.0],
            "kraken's level never entered coinbase's book"
        );
        assert_eq!(metrics.book_updates_rejected.load(Ordering::Relaxed), 1);
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_checkpoint_publishes_whole_the_books_that_stopped_changing() {
        let sink = Arc::new(Collect::default());
        let (ingest, handle) = Ingest::new(
            Arc::new(Symbols::new(10)),
            sink.clone(),
            Arc::new(Metrics::default()),
            IndicatorPeriods::default(),
        );
        let ingest = ingest.with_books(BookConfig {
            depth: 25,
            max_levels: 1000,
            checkpoint_ms: 200,
        });
        let thread = ingest.spawn().unwrap();
        let source: Arc<str> = "http".into();
        let book = |symbol: &str| BookUpdate {
            symbol: symbol.into(),
            snapshot: true,
            bids: vec![(100.0, 1.0)],
            asks: vec![(101.0, 2.0)],
            exchange_ts: 1,
        };
        handle
            .send_books(&source, vec![book("QUIET")])
            .await
            .unwrap();
        // Not yet due: nothing is published.
        handle.checkpoint_books().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        handle
            .send_books(&source, vec![book("FRESH")])
            .await
            .unwrap();
        // QUIET is due (published whole 300 ms ago), FRESH is not.
        handle.checkpoint_books().await.unwrap();
        drop(handle);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        let events = sink.0.lock().unwrap();
        let got: Vec<(u64, bool)> = events.iter().filter_map(|e| e.wire.book_seq()).collect();
        assert_eq!(
            got,
            [(1, true), (1, true), (2, true)],
            "QUIET, FRESH, QUIET again"
        );
        let (first, again) = (&events[0], &events[2]);
        assert_eq!(first.channel, again.channel);
        let (a, b) = (first.book.as_ref().unwrap(), again.book.as_ref().unwrap());
        assert_eq!(
            (&a.view, a.checksum),
            (&b.view, b.checksum),
            "the same book"
        );
    }

    #[test]
    fn live_feeds_refuse_ticks_dated_too_far_ahead() {
        let sink = Arc::new(Collect::default());
        let symbols = Arc::new(Symbols::new(10));
        let metrics = Arc::new(Metrics::default());
        let (ingest, handle) = Ingest::new(
            symbols,
            sink.clone(),
            metrics.clone(),
            IndicatorPeriods::default(),
        );
        let thread = ingest.spawn().unwrap();
        let now = now_ns();
        let at = |sym: &str, ahead_ms: i64| RawTick {
            exchange_ts: now + ahead_ms * 1_000_000,
            ..raw(sym, 1.0)
        };
        let live = handle.live(5_000);
        let day = 86_400_000;
        // The handle's own check names the limit and its key (HTTP ingest reports it).
        let err = live.check_future(&at("A", day), now).unwrap_err();
        assert!(
            matches!(err, TickError::Future { ahead_ms, max_ms: 5_000 } if ahead_ms >= day - 1),
            "{err}"
        );
        assert!(
            err.to_string().contains("feeds.max_future_skew_ms"),
            "{err}"
        );
        assert_eq!(live.check_future(&at("A", 1_000), now), Ok(()));
        assert_eq!(handle.check_future(&at("A", day), now), Ok(()), "not live");
        live.try_send(vec![at("LIVE", 1_000), at("LIVE", day), at("LIVE", -day)])
            .unwrap();
        // Replay's handle is not live: history from any date goes through.
        handle.try_send(vec![at("HIST", day)]).unwrap();
        drop((live, handle));
        thread.join().unwrap();
        let got: Vec<u64> = sink.0.lock().unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(got, vec![1, 2, 1], "LIVE 1 and 2, then HIST 1");
        assert_eq!(metrics.ticks_future.load(Ordering::Relaxed), 2);
        assert_eq!(metrics.ticks_rejected.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.ticks_ingested.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn assigns_contiguous_seq_per_channel_and_encodes_once() {
        let sink = Arc::new(Collect::default());
        let symbols = Arc::new(Symbols::new(10));
        let (ingest, handle) = Ingest::new(
            symbols.clone(),
            sink.clone(),
            Arc::new(Metrics::default()),
            IndicatorPeriods::default(),
        );
        let thread = ingest.spawn().unwrap();
        handle
            .try_send(vec![
                raw("A", 1.0),
                raw("B", 2.0),
                raw("A", 3.0),
                raw("bad", 1.0),
            ])
            .unwrap();
        handle
            .send_derived_blocking(vec![Derived::Indicators {
                symbol: SymbolId(0),
                values: IndicatorValues::default(),
            }])
            .unwrap();
        drop(handle);
        thread.join().unwrap();
        let events = sink.0.lock().unwrap();
        let got: Vec<(String, u64)> = events
            .iter()
            .map(|e| (symbols.channel_name(e.channel), e.seq))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ticks:A".into(), 1),
                ("ticks:B".into(), 1),
                ("ticks:A".into(), 2),
                ("indicators:A".into(), 1)
            ]
        );
        assert_eq!(symbols.get("A"), Some(SymbolId(0)));
        let v: serde_json::Value = serde_json::from_slice(events[2].wire.json()).unwrap();
        assert_eq!(
            (v["ch"].as_str(), v["seq"].as_u64(), v["price"].as_f64()),
            (Some("ticks:A"), Some(2), Some(3.0))
        );
    }
}
