//! Ingest: the single point where ticks and computed events are validated, given their
//! per-channel `seq`, encoded once, and handed to the [`EventSink`].
//!
//! Feeds and the pipeline send batches through an [`IngestHandle`]; one dedicated thread drains
//! them in order, so `seq` is assigned exactly once per channel with no lock, and fan-out never
//! runs on the async runtime's workers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use crate::book::{BookConfig, BookUpdate};
use crate::model::{
    BarEvent, ChannelId, Event, IndicatorPeriods, IndicatorValues, Kind, Payload, RawTick,
    SymbolId, SymbolLimit, Symbols, Tick, TickerStats, is_valid_symbol, now_ns,
};
use crate::predict::PredictionSet;
use crate::protocol::{self, IndicatorFields};
use crate::rooms::EventSink;
use crate::telemetry::events::{FutureTicksRejected, LogThrottle};
use crate::telemetry::metrics::Metrics;

mod books;
mod handle;

pub(crate) use books::run_book_checkpoints;
use books::{Books, PendingBook};
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

/// A value the pipeline computed, not yet sequenced.
#[derive(Debug, Clone, PartialEq)]
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
    /// A symbol's rolling 24 h statistics (`ticker:SYM`).
    Ticker {
        symbol: SymbolId,
        stats: TickerStats,
    },
    /// Every model's forecast of a symbol at its newest 1 s bar (`predictions:SYM`).
    Prediction {
        symbol: SymbolId,
        set: Arc<PredictionSet>,
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
    Derived {
        values: Vec<Derived>,
        /// Told once they are published (in the rings): the predictor reads the 1 s bars
        /// back from there.
        published: Option<tokio::sync::oneshot::Sender<()>>,
    },
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
    books: Books,
}

impl Ingest {
    /// `books`: how much of each order book is kept and published (`[book]`).
    pub fn new(
        symbols: Arc<Symbols>,
        sink: Arc<dyn EventSink>,
        metrics: Arc<Metrics>,
        periods: IndicatorPeriods,
        books: BookConfig,
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
            books: Books::new(books, metrics.clone()),
            symbols,
            sink,
            metrics,
            indicator_fields: IndicatorFields::new(&periods),
            seq: Default::default(),
            names: Default::default(),
            future_log: LogThrottle::default(),
        };
        (ingest, handle)
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
            Msg::Derived { values, published } => {
                acks.extend(published);
                for d in values {
                    out.push(self.derived_event(d, ts));
                }
            }
            Msg::Books { source, updates } => {
                for u in updates {
                    if let Some(pending) = self.books.update(&source, &u, &self.symbols, ts) {
                        self.book_events(pending, ts, out);
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
            Msg::CheckpointBooks => {
                for pending in self.books.checkpoints_due(ts) {
                    self.book_events(pending, ts, out);
                }
            }
        }
        false
    }

    /// Sequences a book view on its symbol's `book` channel, and a `bbo` event after it when
    /// the view's touch changed.
    fn book_events(&mut self, pending: PendingBook, ts: i64, out: &mut Vec<Event>) {
        let symbol = pending.symbol;
        let (seq, name) = self.next_seq(ChannelId {
            kind: Kind::Book,
            symbol,
        });
        out.push(self.books.publish(pending, seq, name, ts));
        if let Some(bbo) = self.books.touch_changed(symbol) {
            let channel = ChannelId {
                kind: Kind::Bbo,
                symbol,
            };
            let (seq, name) = self.next_seq(channel);
            out.push(Event {
                channel,
                seq,
                ts,
                payload: Payload::Bbo(bbo),
                wire: protocol::encode_bbo(&name, seq, ts, &bbo),
                book: None,
            });
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
                let wire =
                    protocol::encode_indicators(&name, seq, ts, &values, &self.indicator_fields);
                Event {
                    channel,
                    seq,
                    ts,
                    payload: Payload::Indicators(values.into()),
                    wire,
                    book: None,
                }
            }
            Derived::Ticker { symbol, stats } => {
                let channel = ChannelId {
                    kind: Kind::Ticker,
                    symbol,
                };
                let (seq, name) = self.next_seq(channel);
                Event {
                    channel,
                    seq,
                    ts,
                    payload: Payload::Ticker(stats.into()),
                    wire: protocol::encode_ticker(&name, seq, ts, &stats),
                    book: None,
                }
            }
            Derived::Prediction { symbol, set } => {
                let channel = ChannelId {
                    kind: Kind::Predictions,
                    symbol,
                };
                let (seq, name) = self.next_seq(channel);
                Event {
                    channel,
                    seq,
                    ts,
                    payload: Payload::Prediction,
                    wire: protocol::encode_prediction(&name, seq, ts, &set),
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
mod tests;
