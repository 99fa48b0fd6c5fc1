//! The imported ticks' bars, built by the pipeline's own [`BarBuilder`] (same windows, same
//! late-tick rule, trades in file order as the live pipeline takes them in arrival order), at
//! every stored interval, and closed at the end of the import.
//!
//! The first and the last window of each symbol and interval are the import's *edges*: another
//! import (the history before or after this file) may hold trades of them too. Their bars are
//! not built from this run's trades alone but, once every tick is stored, from every imported
//! tick of the window ([`window_bar`], in (time, insertion) order), so history imported in
//! pieces gets the bars it would have had in one piece.

use std::collections::HashMap;
use std::sync::Arc;

use super::identity::IMPORT_EPOCH;
use crate::bars::{Bar, BarBuilder};
use crate::model::BarIntervals;
use crate::store::BarRecord;

/// One symbol's builders, one per stored interval (the configured ones, shortest first).
struct SymbolBars {
    name: Arc<str>,
    /// (interval length in ns, its builder, whether its first bar (an edge) was seen).
    builders: Vec<(i64, BarBuilder, bool)>,
}

/// A window whose bar is built from the store (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Edge {
    pub(crate) symbol: Arc<str>,
    pub(crate) interval_ns: i64,
    pub(crate) start: i64,
}

/// Bars of every symbol of an import.
pub(crate) struct ImportBars {
    /// The intervals the store keeps (what the live pipeline builds and the recorder stores).
    intervals: BarIntervals,
    symbols: HashMap<Box<str>, SymbolBars>,
}

impl ImportBars {
    pub(crate) fn new(intervals: BarIntervals) -> Self {
        Self {
            intervals,
            symbols: HashMap::new(),
        }
    }

    /// Folds a trade in; returns the symbol's shared name (one allocation per symbol).
    pub(crate) fn on_trade(&mut self, symbol: &str, ts_ns: i64, price: f64, size: f64) -> Arc<str> {
        let intervals = self.intervals;
        let state = match self.symbols.get_mut(symbol) {
            Some(s) => s,
            None => self
                .symbols
                .entry(symbol.into())
                .or_insert_with(|| SymbolBars {
                    name: Arc::from(symbol),
                    builders: intervals
                        .iter()
                        .map(|iv| (iv.ns(), builder(iv.ns()), false))
                        .collect(),
                }),
        };
        // The pipeline's conversion: exchange time in ms, floored.
        let ts_ms = ts_ns.div_euclid(1_000_000);
        for (_, b, _) in &mut state.builders {
            b.on_trade(ts_ms, price, size);
        }
        state.name.clone()
    }

    /// Moves the bars closed so far (by a later trade) into `out`, the edges into `edges`.
    pub(crate) fn drain(&mut self, out: &mut Vec<BarRecord>, edges: &mut Vec<Edge>) {
        // `i64::MIN` closes nothing by the clock: only what later trades already closed.
        self.close(i64::MIN, out, edges);
    }

    /// Closes every bar (the files are over: nothing later will come) into `out`, the edges
    /// into `edges`.
    pub(crate) fn finish(&mut self, out: &mut Vec<BarRecord>, edges: &mut Vec<Edge>) {
        self.close(i64::MAX, out, edges);
    }

    /// Trades that arrived for an already-closed window, over all symbols: counted by the
    /// shortest interval's builder (a trade late for any interval is late for it), as the
    /// pipeline counts them.
    pub(crate) fn late_ticks(&self) -> u64 {
        self.symbols
            .values()
            .filter_map(|s| s.builders.first().map(|(_, b, _)| b.late_ticks()))
            .sum()
    }

    fn close(&mut self, clock_ms: i64, out: &mut Vec<BarRecord>, edges: &mut Vec<Edge>) {
        for s in self.symbols.values_mut() {
            for (interval_ns, builder, first_seen) in &mut s.builders {
                let interval_ns = *interval_ns;
                let closed = builder.close_until(clock_ms);
                let last = closed.len();
                for (n, bar) in closed.iter().enumerate() {
                    // The very first bar, and at the end the open one (closed last), are edges.
                    let first = !std::mem::replace(first_seen, true);
                    if first || (clock_ms == i64::MAX && n + 1 == last) {
                        edges.push(Edge {
                            symbol: s.name.clone(),
                            interval_ns,
                            start: bar.start_ms.saturating_mul(1_000_000),
                        });
                    } else {
                        out.extend(record(&s.name, interval_ns, bar));
                    }
                }
            }
        }
    }
}

/// The upsert's tail: replace a stored bar of the same identity only where a value differs.
pub(crate) fn bar_upsert_tail(distinct: &str) -> String {
    let fields = ["open", "high", "low", "close", "volume", "trades"];
    let set: Vec<String> = fields
        .iter()
        .map(|f| format!("{f} = excluded.{f}"))
        .collect();
    let differs: Vec<String> = fields
        .iter()
        .map(|f| format!("bars.{f} {distinct} excluded.{f}"))
        .collect();
    format!(
        " ON CONFLICT (symbol, interval_ns, ts, epoch) DO UPDATE SET {} WHERE {}",
        set.join(", "),
        differs.join(" OR ")
    )
}

fn builder(interval_ns: i64) -> BarBuilder {
    BarBuilder::new(interval_ns / 1_000_000).expect("stored intervals are positive")
}

/// The bar of an edge window from its stored ticks, `(ts, price, size)` in (time, insertion)
/// order: what the pipeline's builder makes of them.
pub(crate) fn window_bar(edge: &Edge, ticks: &[(i64, f64, f64)]) -> Option<BarRecord> {
    let mut b = builder(edge.interval_ns);
    for &(ts, price, size) in ticks {
        b.on_trade(ts.div_euclid(1_000_000), price, size);
    }
    let bars = b.close_until(i64::MAX);
    record(&edge.symbol, edge.interval_ns, bars.first()?)
}

/// A closed bar as the store keeps it, under the import epoch.
fn record(symbol: &Arc<str>, interval_ns: i64, b: &Bar) -> Option<BarRecord> {
    BarRecord::from_bar(symbol.clone(), interval_ns, IMPORT_EPOCH, &b.event(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BAR_1M_NS, BAR_1S_NS};

    #[test]
    fn bars_close_by_later_trades_and_edges_are_set_aside() {
        let mut bars = ImportBars::new(BarIntervals::V1);
        let s = 1_000_000_000;
        bars.on_trade("A", 10 * s, 5.0, 1.0);
        bars.on_trade("A", 10 * s + 1, 7.0, 2.0);
        bars.on_trade("A", 11 * s, 6.0, 1.0);
        bars.on_trade("A", 12 * s, 6.5, 1.0);
        let (mut out, mut edges) = (Vec::new(), Vec::new());
        bars.drain(&mut out, &mut edges);
        let edge = |interval_ns, start| Edge {
            symbol: "A".into(),
            interval_ns,
            start,
        };
        // The first 1 s bar (10 s) is an edge; 11 s was closed by the trade at 12 s.
        assert_eq!(edges, [edge(BAR_1S_NS, 10 * s)]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].start, out[0].interval_ns), (11 * s, BAR_1S_NS));
        assert_eq!(
            (out[0].open, out[0].volume, out[0].trades, out[0].epoch),
            (6.0, 1.0, 1, IMPORT_EPOCH)
        );
        out.clear();
        bars.finish(&mut out, &mut edges);
        assert!(out.is_empty(), "{out:?}");
        // The last 1 s bar, and the only 1 m bar (first and last at once, set aside once).
        let mut rest = edges[1..].to_vec();
        rest.sort_by_key(|e| (e.interval_ns, e.start));
        assert_eq!(rest, [edge(BAR_1S_NS, 12 * s), edge(BAR_1M_NS, 0)]);
        // An edge's bar from its stored ticks.
        let b = window_bar(&edges[0], &[(10 * s, 5.0, 1.0), (10 * s + 1, 7.0, 2.0)]).unwrap();
        assert_eq!(
            (b.start, b.open, b.high, b.low, b.close, b.volume, b.trades),
            (10 * s, 5.0, 7.0, 5.0, 7.0, 3.0, 2)
        );
    }
}
