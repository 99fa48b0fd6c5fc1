//! The pipeline's worker pool: N OS threads fed by `crossbeam-channel`, each owning the bar and
//! indicator state of the symbols sharded to it (`symbol id % N`), so no state is shared or
//! locked. No rayon: the pool is small, long-lived and its threads are named.

use std::collections::HashMap;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use super::indicators::{IndicatorPeriods, IndicatorSet};
use super::ticker::RollingTicker;
use crate::bars::{BarBuilder, EventClock};
use crate::ingest::Derived;
use crate::model::{BarClose, BarInterval, BarIntervals, IndicatorValues, Kind, SymbolId, Tick};

/// One symbol's new ticks for a batch.
#[derive(Debug, Clone)]
pub struct SymbolTicks {
    pub symbol: SymbolId,
    pub ticks: Vec<Tick>,
}

/// What a batch produced.
#[derive(Debug, Default)]
pub struct BatchOutput {
    /// Bars and indicators in publish order per symbol.
    pub derived: Vec<Derived>,
    /// Latest indicator values of every symbol the batch touched.
    pub latest: Vec<(SymbolId, IndicatorValues)>,
    /// Ticks whose exchange time fell in an already closed bar.
    pub late_ticks: u64,
}

/// Per-batch parameters.
#[derive(Debug, Clone, Copy)]
pub struct BatchClock {
    /// Wall-clock time of the batch (ms); each symbol's bars close by its event clock at this
    /// time ([`EventClock`]).
    pub now_ms: i64,
    /// Send the bar in progress of each interval above 1 s as `"final": false` (at most once a
    /// second per symbol; never on an early batch, whose `now_ms` is `i64::MIN`).
    pub partial_bars: bool,
    /// The server's wall clock (ms) at the batch, whatever `now_ms` is: tickers are published
    /// at most once per wall-clock second.
    pub wall_ms: i64,
    /// Compute and publish the rolling 24 h ticker (`pipeline.ticker`).
    pub ticker: bool,
}

/// All pipeline state of one symbol.
#[derive(Debug)]
pub(crate) struct SymbolState {
    /// One builder per configured interval, shortest first; the first is 1 s (required), whose
    /// closes feed the indicators. Every builder takes the ticks themselves, so a 1 h bar is
    /// exactly the bar of its trades (what `tickcast import` builds), late-tick rule included.
    bars: Vec<(BarInterval, BarBuilder)>,
    /// The symbol's exchange clock, which closes its bars (see `bars`).
    clock: EventClock,
    indicators: IndicatorSet,
    ticker: RollingTicker,
    /// Trades folded into the ticker since it was last published.
    ticker_dirty: bool,
    /// Wall-clock second (ms / 1000) of the ticker last published.
    ticker_second: i64,
    /// UTC day (days since the epoch) of the VWAP session.
    session_day: i64,
    late_seen: u64,
    /// Wall-clock second of the latest `"final": false` bars sent (at most one round a second).
    partial_second: i64,
}

const MS_PER_DAY: i64 = 86_400_000;

impl SymbolState {
    pub fn new(
        config: &IndicatorPeriods,
        intervals: BarIntervals,
    ) -> Result<Self, super::indicators::InvalidPeriod> {
        let bars = intervals
            .iter()
            .map(|iv| {
                BarBuilder::new(iv.ms()).map(|b| (iv, b)).map_err(|_| {
                    super::indicators::InvalidPeriod::TooSmall {
                        indicator: "bars",
                        period: iv.ms().unsigned_abs() as usize,
                        min: 1,
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            bars,
            clock: EventClock::default(),
            indicators: IndicatorSet::new(config)?,
            ticker: RollingTicker::default(),
            ticker_dirty: false,
            ticker_second: i64::MIN,
            session_day: i64::MIN,
            late_seen: 0,
            partial_second: i64::MIN,
        })
    }

    /// Folds a batch of ticks in and emits what closed, plus the indicators.
    pub(crate) fn apply(
        &mut self,
        symbol: SymbolId,
        ticks: &[Tick],
        clock: BatchClock,
        out: &mut BatchOutput,
    ) {
        for t in ticks {
            let ts_ms = t.exchange_ts.div_euclid(1_000_000);
            self.clock.observe(ts_ms, t.ts.div_euclid(1_000_000));
            // VWAP is a session indicator: the session is the UTC day of the exchange time.
            let day = ts_ms.div_euclid(MS_PER_DAY);
            if day > self.session_day {
                if self.session_day != i64::MIN {
                    self.indicators.reset_session();
                }
                self.session_day = day;
            }
            for (_, b) in &mut self.bars {
                b.on_trade(ts_ms, t.price, t.size);
            }
            self.indicators.on_tick(t.price, t.size);
            if clock.ticker {
                self.ticker.on_trade(ts_ms, t.price, t.size);
                self.ticker_dirty = true;
            }
        }
        // No trade yet means no bar to close: the clock starts with the symbol's first trade.
        let event_ms = self.clock.at(clock.now_ms).unwrap_or(i64::MIN);
        let second = clock.now_ms.div_euclid(1_000);
        let partials = clock.partial_bars
            && !ticks.is_empty()
            && clock.now_ms != i64::MIN
            && second > self.partial_second;
        if partials {
            self.partial_second = second;
        }
        let mut closes = Vec::new();
        for (interval, b) in &mut self.bars {
            let kind = Kind::Bars(*interval);
            for bar in b.close_until(event_ms) {
                if *interval == BarInterval::S1 && self.indicators.on_bar_close(bar.close) {
                    closes.push(BarClose {
                        start_ms: bar.start_ms,
                        periodic: self.indicators.periodic(),
                    });
                }
                out.derived.push(Derived::Bar {
                    kind,
                    symbol,
                    bar: bar.event(true),
                });
            }
            if partials
                && *interval != BarInterval::S1
                && let Some(bar) = b.current()
            {
                out.derived.push(Derived::Bar {
                    kind,
                    symbol,
                    bar: bar.event(false),
                });
            }
        }
        // At most one ticker per wall-clock second; one held back is sent by a later batch.
        let second = clock.wall_ms.div_euclid(1_000);
        if self.ticker_dirty
            && second > self.ticker_second
            && let Some(stats) = self.ticker.stats()
        {
            self.ticker_dirty = false;
            self.ticker_second = second;
            out.derived.push(Derived::Ticker { symbol, stats });
        }
        let mut values = self.indicators.snapshot();
        out.latest.push((symbol, values.clone()));
        values.closes = closes;
        out.derived.push(Derived::Indicators { symbol, values });
        // A trade late for any interval is late for the 1 s bars (the finest windows), so the
        // 1 s builder counts each late trade once.
        let late = self.bars.first().map_or(0, |(_, b)| b.late_ticks());
        out.late_ticks += late - self.late_seen;
        self.late_seen = late;
    }
}

enum Job {
    Batch {
        clock: BatchClock,
        work: Vec<SymbolTicks>,
        /// Symbols with state but no new ticks still get their indicators once a batch.
        reply: Sender<BatchOutput>,
    },
}

/// N worker threads with sharded per-symbol state.
pub struct WorkerPool {
    senders: Vec<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    pub fn new(
        workers: usize,
        config: IndicatorPeriods,
        intervals: BarIntervals,
    ) -> std::io::Result<WorkerPool> {
        let workers = workers.max(1);
        let mut senders = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            // Two batches in flight at most: the coordinator never runs far ahead.
            let (tx, rx) = bounded::<Job>(2);
            senders.push(tx);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tickcast-pipeline-{i}"))
                    .spawn({
                        let config = config.clone();
                        move || worker(rx, config, intervals)
                    })?,
            );
        }
        Ok(WorkerPool { senders, threads })
    }

    pub(crate) fn workers(&self) -> usize {
        self.senders.len()
    }

    /// Runs one batch across the pool and returns the merged output, in symbol-id order.
    pub fn run_batch(&self, work: Vec<SymbolTicks>, clock: BatchClock) -> BatchOutput {
        let n = self.senders.len();
        let mut shards: Vec<Vec<SymbolTicks>> = (0..n).map(|_| Vec::new()).collect();
        for w in work {
            shards[w.symbol.0 as usize % n].push(w);
        }
        let (reply, results) = unbounded();
        let mut sent = 0;
        for (tx, work) in self.senders.iter().zip(shards) {
            let job = Job::Batch {
                clock,
                work,
                reply: reply.clone(),
            };
            if tx.send(job).is_ok() {
                sent += 1;
            }
        }
        drop(reply);
        let mut merged = BatchOutput::default();
        for out in results.iter().take(sent) {
            merged.derived.extend(out.derived);
            merged.latest.extend(out.latest);
            merged.late_ticks += out.late_ticks;
        }
        merged
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.senders.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(rx: Receiver<Job>, config: IndicatorPeriods, intervals: BarIntervals) {
    let mut states: HashMap<SymbolId, SymbolState> = HashMap::new();
    for job in rx.iter() {
        let Job::Batch { clock, work, reply } = job;
        let mut out = BatchOutput::default();
        let mut touched = std::collections::HashSet::with_capacity(work.len());
        for w in &work {
            touched.insert(w.symbol);
            let state = match states.entry(w.symbol) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    match SymbolState::new(&config, intervals) {
                        Ok(s) => v.insert(s),
                        Err(error) => {
                            tracing::error!(%error, "invalid indicator config");
                            continue;
                        }
                    }
                }
            };
            state.apply(w.symbol, &w.ticks, clock, &mut out);
        }
        // Quiet symbols still close their bars by the clock and report indicators.
        for (symbol, state) in states.iter_mut() {
            if !touched.contains(symbol) {
                state.apply(*symbol, &[], clock, &mut out);
            }
        }
        let _ = reply.send(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Side;

    fn tick(sym: u32, ts_ms: i64, price: f64) -> Tick {
        Tick {
            symbol: SymbolId(sym),
            price,
            size: 2.0,
            side: Some(Side::Buy),
            exchange_ts: ts_ms * 1_000_000,
            // Arrives when it is stamped, like a live trade.
            ts: ts_ms * 1_000_000,
        }
    }

    fn clock(ms: i64) -> BatchClock {
        BatchClock {
            now_ms: ms,
            partial_bars: false,
            wall_ms: ms,
            ticker: true,
        }
    }

    fn tickers(out: &BatchOutput) -> Vec<(u32, u64, f64)> {
        out.derived
            .iter()
            .filter_map(|d| match d {
                Derived::Ticker { symbol, stats } => Some((symbol.0, stats.trades, stats.last)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_ticker_is_published_at_most_once_per_wall_second_while_the_symbol_trades() {
        let pool = WorkerPool::new(1, IndicatorPeriods::default(), BarIntervals::V1).unwrap();
        let batch = |ticks: Vec<Tick>, wall_ms: i64| {
            let work = if ticks.is_empty() {
                vec![]
            } else {
                vec![SymbolTicks {
                    symbol: SymbolId(0),
                    ticks,
                }]
            };
            let c = BatchClock {
                wall_ms,
                ..clock(wall_ms)
            };
            tickers(&pool.run_batch(work, c))
        };
        assert_eq!(batch(vec![tick(0, 1_000, 10.0)], 1_100), vec![(0, 1, 10.0)]);
        // The same wall second: held back, then sent by the next second's batch (no new trade).
        assert!(batch(vec![tick(0, 1_200, 11.0)], 1_600).is_empty());
        assert_eq!(batch(vec![], 2_050), vec![(0, 2, 11.0)]);
        // Quiet: nothing more.
        assert!(batch(vec![], 3_050).is_empty());
    }

    #[test]
    fn closes_bars_by_the_clock_and_feeds_indicators() {
        let pool = WorkerPool::new(2, IndicatorPeriods::default(), BarIntervals::V1).unwrap();
        let work = vec![
            SymbolTicks {
                symbol: SymbolId(0),
                ticks: vec![
                    tick(0, 1_000, 10.0),
                    tick(0, 1_500, 12.0),
                    tick(0, 2_100, 11.0),
                ],
            },
            SymbolTicks {
                symbol: SymbolId(1),
                ticks: vec![tick(1, 1_200, 5.0)],
            },
        ];
        let out = pool.run_batch(work, clock(2_000));
        let bars: Vec<(u32, i64, f64, f64, u64)> = out
            .derived
            .iter()
            .filter_map(|d| match d {
                Derived::Bar {
                    kind: Kind::Bars(BarInterval::S1),
                    symbol,
                    bar,
                } => Some((symbol.0, bar.start_ms, bar.open, bar.close, bar.trades)),
                _ => None,
            })
            .collect();
        let mut bars = bars;
        bars.sort_by_key(|b| b.0);
        assert_eq!(
            bars,
            vec![(0, 1_000, 10.0, 12.0, 2), (1, 1_000, 5.0, 5.0, 1)]
        );
        let vwap0 = out
            .latest
            .iter()
            .find(|(s, _)| s.0 == 0)
            .and_then(|(_, v)| v.vwap);
        assert_eq!(vwap0, Some(11.0), "(10*2 + 12*2 + 11*2) / 6");
        // Next batch with no ticks: the 2 s bar of symbol 0 closes by the clock.
        let out = pool.run_batch(vec![], clock(3_000));
        let closed: Vec<i64> = out
            .derived
            .iter()
            .filter_map(|d| match d {
                Derived::Bar {
                    kind: Kind::Bars(BarInterval::S1),
                    bar,
                    ..
                } => Some(bar.start_ms),
                _ => None,
            })
            .collect();
        assert_eq!(closed, vec![2_000]);
        assert_eq!(
            out.latest.len(),
            2,
            "indicators once per batch for every known symbol"
        );
    }

    /// The kinds of the bars of `out`, final or in progress.
    fn bar_kinds(out: &BatchOutput, is_final: bool) -> Vec<String> {
        out.derived
            .iter()
            .filter_map(|d| match d {
                Derived::Bar { kind, bar, .. } if bar.is_final == is_final => {
                    Some(kind.to_string())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_interval_closes_and_partials_come_at_most_once_a_second() {
        const DAY: i64 = 86_400_000;
        let pool = WorkerPool::new(1, IndicatorPeriods::default(), BarIntervals::ALL).unwrap();
        let batch = |ts_ms: i64, price: f64, now_ms: i64| {
            let work = vec![SymbolTicks {
                symbol: SymbolId(0),
                ticks: vec![tick(0, ts_ms, price)],
            }];
            let clock = BatchClock {
                now_ms,
                partial_bars: true,
                wall_ms: now_ms,
                ticker: false,
            };
            pool.run_batch(work, clock)
        };
        let above_1s = [
            "bars.1m", "bars.5m", "bars.15m", "bars.1h", "bars.4h", "bars.1d",
        ];
        assert_eq!(
            bar_kinds(&batch(DAY + 100, 10.0, DAY + 500), false),
            above_1s
        );
        // The same wall second: no second round; an early batch (no wall time): none.
        assert!(bar_kinds(&batch(DAY + 200, 12.0, DAY + 900), false).is_empty());
        assert!(bar_kinds(&batch(DAY + 1_200, 9.0, i64::MIN), false).is_empty());
        assert_eq!(
            bar_kinds(&batch(DAY + 1_300, 11.0, DAY + 1_500), false),
            above_1s
        );
        // A trade of the next day closes the bar of every interval, each once.
        let out = batch(2 * DAY + 5, 20.0, 2 * DAY + 10);
        let mut closed = bar_kinds(&out, true);
        closed.dedup();
        assert_eq!(
            closed,
            [
                "bars.1s", "bars.1m", "bars.5m", "bars.15m", "bars.1h", "bars.4h", "bars.1d"
            ]
        );
        let day = out.derived.iter().find_map(|d| match d {
            Derived::Bar { kind, bar, .. } if kind.to_string() == "bars.1d" => Some(*bar),
            _ => None,
        });
        let day = day.expect("a 1 d bar");
        assert_eq!(
            (
                day.start_ms,
                day.open,
                day.high,
                day.low,
                day.close,
                day.trades
            ),
            (DAY, 10.0, 12.0, 9.0, 11.0, 4)
        );
    }

    #[test]
    fn late_ticks_are_counted() {
        let pool = WorkerPool::new(1, IndicatorPeriods::default(), BarIntervals::V1).unwrap();
        pool.run_batch(
            vec![SymbolTicks {
                symbol: SymbolId(0),
                ticks: vec![tick(0, 5_000, 1.0)],
            }],
            clock(6_000),
        );
        let out = pool.run_batch(
            vec![SymbolTicks {
                symbol: SymbolId(0),
                ticks: vec![tick(0, 4_000, 1.0)],
            }],
            clock(7_000),
        );
        assert!(out.late_ticks >= 1, "{}", out.late_ticks);
    }
}
