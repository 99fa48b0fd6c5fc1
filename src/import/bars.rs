//! The imported ticks' bars, built by the pipeline's own [`BarBuilder`] (same windows, same
//! late-tick rule, trades in file order as the live pipeline takes them in arrival order), at
//! every stored interval, and closed at the end of the import.

use std::collections::HashMap;
use std::sync::Arc;

use super::identity::IMPORT_EPOCH;
use crate::bars::{Bar, BarBuilder};
use crate::store::{BAR_1M_NS, BAR_1S_NS, BarRecord};

/// The intervals the store keeps, ns (what the recorder stores from the pipeline).
const STORED_INTERVALS_NS: [i64; 2] = [BAR_1S_NS, BAR_1M_NS];

/// One symbol's builders, one per stored interval.
struct SymbolBars {
    name: Arc<str>,
    builders: [BarBuilder; 2],
}

/// Bars of every symbol of an import.
#[derive(Default)]
pub(crate) struct ImportBars {
    symbols: HashMap<Box<str>, SymbolBars>,
}

impl ImportBars {
    /// Folds a trade in; returns the symbol's shared name (one allocation per symbol).
    pub(crate) fn on_trade(&mut self, symbol: &str, ts_ns: i64, price: f64, size: f64) -> Arc<str> {
        let state = match self.symbols.get_mut(symbol) {
            Some(s) => s,
            None => self
                .symbols
                .entry(symbol.into())
                .or_insert_with(|| SymbolBars {
                    name: Arc::from(symbol),
                    builders: STORED_INTERVALS_NS.map(|ns| {
                        BarBuilder::new(ns / 1_000_000).expect("stored intervals are positive")
                    }),
                }),
        };
        // The pipeline's conversion: exchange time in ms, floored.
        let ts_ms = ts_ns.div_euclid(1_000_000);
        for b in &mut state.builders {
            b.on_trade(ts_ms, price, size);
        }
        state.name.clone()
    }

    /// Moves the bars closed so far (by a later trade) into `out`.
    pub(crate) fn drain(&mut self, out: &mut Vec<BarRecord>) {
        // `i64::MIN` closes nothing by the clock: only what later trades already closed.
        self.close(i64::MIN, out);
    }

    /// Closes every bar (the file is over: nothing later will come) into `out`.
    pub(crate) fn finish(&mut self, out: &mut Vec<BarRecord>) {
        self.close(i64::MAX, out);
    }

    /// Trades that arrived for an already-closed window, over all symbols and intervals.
    pub(crate) fn late_ticks(&self) -> u64 {
        self.symbols
            .values()
            .flat_map(|s| s.builders.iter().map(BarBuilder::late_ticks))
            .sum()
    }

    fn close(&mut self, clock_ms: i64, out: &mut Vec<BarRecord>) {
        for s in self.symbols.values_mut() {
            for (b, interval_ns) in s.builders.iter_mut().zip(STORED_INTERVALS_NS) {
                out.extend(
                    b.close_until(clock_ms)
                        .iter()
                        .filter_map(|bar| record(&s.name, interval_ns, bar)),
                );
            }
        }
    }
}

/// A closed bar as the store keeps it (the recorder's conversion of the pipeline's bars).
fn record(symbol: &Arc<str>, interval_ns: i64, b: &Bar) -> Option<BarRecord> {
    Some(BarRecord {
        symbol: symbol.clone(),
        interval_ns,
        start: b.start_ms.checked_mul(1_000_000)?,
        epoch: IMPORT_EPOCH,
        open: b.open,
        high: b.high,
        low: b.low,
        close: b.close,
        volume: b.volume,
        trades: i64::try_from(b.trades).unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_close_by_later_trades_and_at_the_end() {
        let mut bars = ImportBars::default();
        let s = 1_000_000_000;
        bars.on_trade("A", 10 * s, 5.0, 1.0);
        bars.on_trade("A", 10 * s + 1, 7.0, 2.0);
        bars.on_trade("A", 11 * s, 6.0, 1.0);
        let mut out = Vec::new();
        bars.drain(&mut out);
        assert_eq!(
            out.len(),
            1,
            "the 1 s bar at 10 s closed by the trade at 11 s"
        );
        assert_eq!(
            (
                out[0].start,
                out[0].interval_ns,
                out[0].open,
                out[0].high,
                out[0].close
            ),
            (10 * s, BAR_1S_NS, 5.0, 7.0, 7.0)
        );
        assert_eq!(
            (out[0].volume, out[0].trades, out[0].epoch),
            (3.0, 2, IMPORT_EPOCH)
        );
        out.clear();
        bars.finish(&mut out);
        let mut got: Vec<_> = out.iter().map(|b| (b.interval_ns, b.start)).collect();
        got.sort();
        assert_eq!(got, [(BAR_1S_NS, 11 * s), (BAR_1M_NS, 0)]);
    }
}
