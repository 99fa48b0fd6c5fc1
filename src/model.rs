//! Typed values that move between stages: symbols, channels, ticks and sequenced events.
//!
//! Nothing here knows JSON: an [`Event`] carries its wire encodings as opaque `Bytes` ([`Wire`]),
//! made once by `protocol` at ingest, so every stage downstream shares the same allocations.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

pub use crate::bar_interval::{BarInterval, BarIntervals};
pub use crate::encoding::{Encoding, Transcode, Wire, msgpack_made_bytes};
pub(crate) use crate::symbol_name::is_valid_symbol;

/// Index of a symbol in the [`Symbols`] table; stable for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolId(pub u32);

/// The channel kinds of the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Ticks,
    /// OHLCV bars of one interval (`bars.1s:SYM` ... `bars.1d:SYM`): the interval is data, one
    /// row of `bar_interval`'s table, not a variant per interval.
    Bars(BarInterval),
    Indicators,
    /// A symbol's order book view (`book:SYM`): deltas of its top levels.
    Book,
    /// A user's private portfolio (`portfolio`): one channel per user, whose [`ChannelId`]
    /// holds the user's id where market channels hold a symbol ([`ChannelId::portfolio`]).
    Portfolio,
    /// A symbol's rolling 24 h statistics (`ticker:SYM`), from the pipeline.
    Ticker,
    /// A symbol's best bid and offer (`bbo:SYM`), on every change of its book's touch.
    Bbo,
    /// Every model's forecast of a symbol (`predictions:SYM`), when its 1 s bar closes.
    Predictions,
}

impl Kind {
    /// Every kind: arrays indexed by [`Kind::index`] have [`Kind::COUNT`] slots.
    pub(crate) const ALL: [Kind; 7 + BarInterval::COUNT] = {
        let mut all = [Kind::Ticks; 7 + BarInterval::COUNT];
        let mut i = 0;
        while i < BarInterval::COUNT {
            all[1 + i] = Kind::Bars(BarInterval::ALL[i]);
            i += 1;
        }
        all[1 + BarInterval::COUNT] = Kind::Indicators;
        all[2 + BarInterval::COUNT] = Kind::Book;
        all[3 + BarInterval::COUNT] = Kind::Portfolio;
        all[4 + BarInterval::COUNT] = Kind::Ticker;
        all[5 + BarInterval::COUNT] = Kind::Bbo;
        all[6 + BarInterval::COUNT] = Kind::Predictions;
        all
    };
    pub(crate) const COUNT: usize = Self::ALL.len();
    /// The market-data kinds: public, one channel per symbol (`kind:SYMBOL`, `kind:*`), made by
    /// ingest and carried by the cluster stream (every bar interval; a server streams the ones
    /// in `pipeline.bar_intervals`): every kind but the portfolio.
    pub(crate) const MARKET: [Kind; 6 + BarInterval::COUNT] = {
        let mut market = [Kind::Ticks; 6 + BarInterval::COUNT];
        let mut i = 0;
        let mut j = 0;
        while i < Self::ALL.len() {
            if !matches!(Self::ALL[i], Kind::Portfolio) {
                market[j] = Self::ALL[i];
                j += 1;
            }
            i += 1;
        }
        market
    };

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Ticks => "ticks",
            Kind::Bars(iv) => iv.channel_kind(),
            Kind::Indicators => "indicators",
            Kind::Book => "book",
            Kind::Portfolio => "portfolio",
            Kind::Ticker => "ticker",
            Kind::Bbo => "bbo",
            Kind::Predictions => "predictions",
        }
    }

    /// True for kinds whose every event is the channel's whole state (a portfolio, a ticker, a
    /// best bid/offer, a forecast): their snapshot holds the latest event unless a subscribe
    /// asks for more.
    pub(crate) fn is_whole_state(self) -> bool {
        matches!(
            self,
            Kind::Portfolio | Kind::Ticker | Kind::Bbo | Kind::Predictions
        )
    }

    /// A market kind by name (`portfolio` is a channel name of its own, not a `kind:` prefix).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::MARKET.into_iter().find(|k| k.as_str() == s)
    }

    /// True for kinds a subscribe's `from_ts` replays (a time selects their events); a book's
    /// deltas, a ticker and a portfolio are whole states or need their view instead.
    pub(crate) fn replays_from_time(self) -> bool {
        matches!(
            self,
            Kind::Ticks | Kind::Bars(_) | Kind::Indicators | Kind::Bbo
        )
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Kind::Ticks => 0,
            Kind::Bars(iv) => 1 + iv.index(),
            Kind::Indicators => 1 + BarInterval::COUNT,
            Kind::Book => 2 + BarInterval::COUNT,
            Kind::Portfolio => 3 + BarInterval::COUNT,
            Kind::Ticker => 4 + BarInterval::COUNT,
            Kind::Bbo => 5 + BarInterval::COUNT,
            Kind::Predictions => 6 + BarInterval::COUNT,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One concrete channel: a kind and a symbol (`ticks:AAPL`), or a user's `portfolio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    pub kind: Kind,
    /// For [`Kind::Portfolio`], the user's id (not an index of [`Symbols`]).
    pub symbol: SymbolId,
}

impl ChannelId {
    /// The `portfolio` channel of user `user`.
    pub fn portfolio(user: u32) -> Self {
        Self {
            kind: Kind::Portfolio,
            symbol: SymbolId(user),
        }
    }
}

/// Taker side of a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// The API spelling only, `buy` or `sell`: what REST bodies must send (and what every
    /// response writes).
    pub(crate) fn parse_strict(s: &str) -> Option<Side> {
        match s {
            "buy" => Some(Side::Buy),
            "sell" => Some(Side::Sell),
            _ => None,
        }
    }

    /// Venue data (feeds, HTTP ingest): also the capitalised and one-letter spellings exchanges
    /// and files use (`BUY`, `Buy`, `b`, `B`, ...). No trimming: callers whose format trims do so.
    pub(crate) fn parse_lenient(s: &str) -> Option<Side> {
        match s {
            "buy" | "BUY" | "Buy" | "b" | "B" => Some(Side::Buy),
            "sell" | "SELL" | "Sell" | "s" | "S" => Some(Side::Sell),
            _ => None,
        }
    }
}

/// A validated trade as a feed reports it, before ingest gives it a symbol id and a `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTick {
    pub symbol: String,
    pub price: f64,
    pub size: f64,
    /// Taker side; `None` when the source does not say (a replay file without a `side` column).
    pub side: Option<Side>,
    /// Exchange time, nanoseconds since the Unix epoch.
    pub exchange_ts: i64,
}

impl RawTick {
    pub fn new(
        symbol: impl Into<String>,
        price: f64,
        size: f64,
        side: Side,
        exchange_ts: i64,
    ) -> Self {
        Self {
            symbol: symbol.into(),
            price,
            size,
            side: Some(side),
            exchange_ts,
        }
    }
}

/// A trade tick once ingested.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    pub symbol: SymbolId,
    pub price: f64,
    pub size: f64,
    /// Taker side, if the source gave one (`"side": null` on the wire otherwise).
    pub side: Option<Side>,
    /// Exchange time, nanoseconds since the Unix epoch.
    pub exchange_ts: i64,
    /// Server ingest time, nanoseconds since the Unix epoch (the wire `ts`).
    pub ts: i64,
}

/// A closed (or in-progress) OHLCV bar as published on `bars.*` channels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarEvent {
    pub start_ms: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub trades: u64,
    pub is_final: bool,
}

/// A symbol's rolling 24 h statistics (`ticker` events, `GET /api/v1/ticker`), over the trades
/// whose exchange time falls in the window: the minute of the symbol's newest trade and the
/// 1,440 minutes before it (`pipeline::ticker` keeps them in per-minute buckets).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickerStats {
    /// Price of the window's first trade (by exchange time).
    pub open: f64,
    pub high: f64,
    pub low: f64,
    /// Price of the window's newest trade (by exchange time).
    pub last: f64,
    /// Sum of sizes.
    pub volume: f64,
    /// Sum of price × size.
    pub quote_volume: f64,
    /// `last - open`.
    pub change: f64,
    /// `(last - open) / open * 100`.
    pub change_pct: f64,
    pub trades: u64,
    /// Start of the window, ms since the epoch (a minute boundary).
    pub open_time_ms: i64,
    /// Exchange time of the newest trade, ms since the epoch.
    pub close_time_ms: i64,
}

/// A symbol's best bid and offer, `(price, size)` per side; `None` for an empty side.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bbo {
    pub bid: Option<(f64, f64)>,
    pub ask: Option<(f64, f64)>,
}

/// The latest value of every indicator of one symbol; `None` means "still warming up".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IndicatorValues {
    /// The bar-close indicators, one per configured period in [`IndicatorPeriods`]' order:
    /// every SMA, then every EMA (SMA-seeded), every Wilder RSI (in `[0, 100]`), every
    /// volatility (sample standard deviation of the log returns between the last n closes, per
    /// bar, not annualised). Shorter than the periods (a default value) reads as warming up.
    pub periodic: Vec<Option<f64>>,
    /// Session VWAP over ticks.
    pub vwap: Option<f64>,
    /// The order book at the batch: mid, spread and top-of-book imbalance (`None` without a
    /// two-sided book).
    pub book: crate::book::TopOfBook,
    /// The 1 s bars this batch closed, oldest first, each with the bar-close indicators right
    /// after its close: what the indicator history stores (never on the wire).
    pub closes: Vec<BarClose>,
}

/// The bar-close indicators right after one 1 s bar closed (a row of indicator history).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BarClose {
    /// Start of the closed 1 s bar, ms since the epoch (exchange time).
    pub start_ms: i64,
    /// As [`IndicatorValues::periodic`].
    pub periodic: Vec<Option<f64>>,
}

/// Default SMA period (`sma_20` on the wire).
pub(crate) const DEFAULT_SMA_PERIOD: usize = 20;
/// Default EMA period (`ema_20` on the wire).
pub(crate) const DEFAULT_EMA_PERIOD: usize = 20;
/// Default RSI period (`rsi_14` on the wire).
pub(crate) const DEFAULT_RSI_PERIOD: usize = 14;
/// Default volatility window, in prices (`volatility` on the wire).
pub(crate) const DEFAULT_VOLATILITY_PERIOD: usize = 20;

/// The indicator periods (`pipeline.indicators`): what the pipeline computes with, and what
/// names the wire fields (`sma_20`, `sma_50`, `ema_20`, `rsi_14`, `volatility`). The pipeline
/// checks them (each list non-empty, no duplicates, each period within its indicator's bounds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndicatorPeriods {
    /// SMA windows, in bar closes (min 1).
    pub sma: Vec<usize>,
    /// EMA periods, in bar closes (min 1).
    pub ema: Vec<usize>,
    /// RSI periods, in price changes (min 1).
    pub rsi: Vec<usize>,
    /// Volatility windows, in bar closes (min 3: two returns are the least a sample std needs).
    pub volatility: Vec<usize>,
}

impl IndicatorPeriods {
    /// The number of bar-close values ([`IndicatorValues::periodic`]'s length).
    pub fn len(&self) -> usize {
        self.sma.len() + self.ema.len() + self.rsi.len() + self.volatility.len()
    }

    /// No period at all (never valid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for IndicatorPeriods {
    fn default() -> Self {
        Self {
            sma: vec![DEFAULT_SMA_PERIOD],
            ema: vec![DEFAULT_EMA_PERIOD],
            rsi: vec![DEFAULT_RSI_PERIOD],
            volatility: vec![DEFAULT_VOLATILITY_PERIOD],
        }
    }
}

/// The typed content of an event. Every ring slot is as large as the largest variant, so the two
/// large ones (128 and 88 bytes, one event a second per symbol each) are behind a pointer: a
/// slot is 112 bytes instead of 176 for every event of every ring.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Tick(Tick),
    Bar(BarEvent),
    Indicators(Arc<IndicatorValues>),
    /// A user's whole portfolio; its content lives only in the wire forms.
    Portfolio,
    /// An order book delta; its levels live in the wire forms, the view it leads to in
    /// [`Event::book`].
    Book,
    Ticker(Arc<TickerStats>),
    Bbo(Bbo),
    /// Every model's forecast at one 1 s bar; its content lives only in the wire forms.
    Prediction,
}

/// A sequenced event: typed payload plus its wire encodings, made once.
#[derive(Debug, Clone)]
pub struct Event {
    pub channel: ChannelId,
    /// Per-channel sequence number, assigned once by ingest.
    pub seq: u64,
    /// Nanoseconds since the Unix epoch when the server ingested or computed it.
    pub ts: i64,
    pub payload: Payload,
    /// The encoded wire forms, shared by every subscriber and every snapshot.
    pub wire: Wire,
    /// A `book` event's resulting view (the top levels after it), for snapshots and repairs:
    /// the hub keeps the latest per channel and never stores it in the ring.
    pub book: Option<Arc<crate::book::PublishedView>>,
}

impl Event {
    /// Heap bytes this event keeps alive beyond its own size: its wire forms
    /// ([`Wire::heap_bytes`]) and a payload kept behind a pointer. A ring never holds a `book`
    /// view, so it is not counted.
    pub fn heap_bytes(&self) -> usize {
        // An `Arc`'s block: two counts and the value.
        let arc = |value: usize| 2 * std::mem::size_of::<usize>() + value;
        let payload = match self.payload {
            Payload::Indicators(_) => arc(std::mem::size_of::<IndicatorValues>()),
            Payload::Ticker(_) => arc(std::mem::size_of::<TickerStats>()),
            _ => 0,
        };
        self.wire.heap_bytes() + payload
    }
}

/// Interned symbol names. Append-only: an id, once handed out, names the same symbol forever.
#[derive(Debug)]
pub struct Symbols {
    inner: RwLock<SymbolsInner>,
    limit: usize,
}

#[derive(Debug, Default)]
struct SymbolsInner {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, SymbolId>,
}

/// The symbol table is full; the configured `ring.max_symbols` bounds memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("symbol table is full ({limit} symbols)")]
pub struct SymbolLimit {
    pub limit: usize,
}

impl Symbols {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: RwLock::new(SymbolsInner::default()),
            limit,
        }
    }

    pub fn get(&self, name: &str) -> Option<SymbolId> {
        self.read().ids.get(name).copied()
    }

    /// Returns the id of `name`, adding it if it is new. The caller validated the name.
    pub fn intern(&self, name: &str) -> Result<SymbolId, SymbolLimit> {
        if let Some(id) = self.get(name) {
            return Ok(id);
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = inner.ids.get(name) {
            return Ok(*id);
        }
        if inner.names.len() >= self.limit {
            return Err(SymbolLimit { limit: self.limit });
        }
        let id = SymbolId(inner.names.len() as u32);
        let name: Arc<str> = Arc::from(name);
        inner.names.push(name.clone());
        inner.ids.insert(name, id);
        Ok(id)
    }

    pub(crate) fn name(&self, id: SymbolId) -> Arc<str> {
        self.read()
            .names
            .get(id.0 as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    /// All symbols, in the order they were first seen.
    pub(crate) fn all(&self) -> Vec<(SymbolId, Arc<str>)> {
        self.read()
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (SymbolId(i as u32), n.clone()))
            .collect()
    }

    /// `kind:SYMBOL` for a concrete channel; `portfolio` for a user's.
    pub(crate) fn channel_name(&self, ch: ChannelId) -> String {
        if ch.kind == Kind::Portfolio {
            return Kind::Portfolio.as_str().to_owned();
        }
        format!("{}:{}", ch.kind, self.name(ch.symbol))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, SymbolsInner> {
        // A panic while holding the lock cannot leave the append-only table inconsistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now (bar starts, health ages and timers count in ms).
pub(crate) fn now_ms() -> i64 {
    now_ns() / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_interned_once_and_bounded() {
        let s = Symbols::new(2);
        let a = s.intern("A").unwrap();
        assert_eq!(s.intern("A").unwrap(), a);
        let b = s.intern("B").unwrap();
        assert_ne!(a, b);
        assert_eq!(s.intern("C"), Err(SymbolLimit { limit: 2 }));
        assert_eq!(&*s.name(b), "B");
        assert_eq!(
            s.channel_name(ChannelId {
                kind: Kind::Bars(BarInterval::S1),
                symbol: a
            }),
            "bars.1s:A"
        );
    }

    #[test]
    fn sides_parse_strictly_for_the_api_and_leniently_for_venues() {
        let cases: &[(&str, Option<Side>, Option<Side>)] = &[
            ("buy", Some(Side::Buy), Some(Side::Buy)),
            ("sell", Some(Side::Sell), Some(Side::Sell)),
            ("BUY", None, Some(Side::Buy)),
            ("Buy", None, Some(Side::Buy)),
            ("b", None, Some(Side::Buy)),
            ("B", None, Some(Side::Buy)),
            ("SELL", None, Some(Side::Sell)),
            ("Sell", None, Some(Side::Sell)),
            ("s", None, Some(Side::Sell)),
            ("S", None, Some(Side::Sell)),
            ("bUY", None, None),
            (" buy", None, None),
            ("hold", None, None),
            ("", None, None),
        ];
        for &(input, strict, lenient) in cases {
            assert_eq!(Side::parse_strict(input), strict, "strict {input:?}");
            assert_eq!(Side::parse_lenient(input), lenient, "lenient {input:?}");
        }
        for side in [Side::Buy, Side::Sell] {
            assert_eq!(Side::parse_strict(side.as_str()), Some(side));
        }
    }

    #[test]
    fn kinds_round_trip() {
        for k in Kind::MARKET {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        for (i, k) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i, "{k}");
        }
        assert_eq!(
            Kind::parse("bars.4h"),
            Some(Kind::Bars(BarInterval::parse("4h").unwrap()))
        );
        assert_eq!(Kind::parse("trades"), None);
        assert_eq!(Kind::parse("portfolio"), None);
    }
}
