//! Unit and property tests of the bar rules (`super`), with the event clock.

use super::*;
use proptest::prelude::*;

const SEC: i64 = 1_000;
const MIN: i64 = 60_000;

fn builder(interval_ms: i64) -> BarBuilder {
    BarBuilder::new(interval_ms).expect("positive interval")
}

/// A bar built field by field, for expectations.
#[allow(clippy::too_many_arguments)]
fn bar(start_ms: i64, iv: i64, o: f64, h: f64, l: f64, c: f64, v: f64, n: u64) -> Bar {
    Bar {
        start_ms,
        interval_ms: iv,
        open: o,
        high: h,
        low: l,
        close: c,
        volume: v,
        trades: n,
    }
}

/// From-scratch reference: sort trades by exchange time (stable, so arrival order decides
/// within a window), group consecutive trades by window start, one bar per non-empty group.
fn reference(trades: &[(i64, f64, f64)], iv: i64) -> Vec<Bar> {
    let mut sorted = trades.to_vec();
    sorted.sort_by_key(|t| t.0);
    let mut bars: Vec<Bar> = Vec::new();
    for (ts, p, s) in sorted {
        let start = ts.div_euclid(iv) * iv;
        match bars.last_mut() {
            Some(b) if b.start_ms == start => {
                b.high = b.high.max(p);
                b.low = b.low.min(p);
                b.close = p;
                b.volume += s;
                b.trades += 1;
            }
            _ => bars.push(bar(start, iv, p, p, p, p, s, 1)),
        }
    }
    bars
}

#[test]
fn invalid_interval() {
    assert_eq!(BarBuilder::new(0).err(), Some(InvalidInterval(0)));
    assert_eq!(BarBuilder::new(-5).err(), Some(InvalidInterval(-5)));
    assert!(InvalidInterval(0).to_string().contains("positive"));
}

#[test]
fn window_alignment() {
    let b = builder(SEC);
    for (ts, start) in [
        (0, 0),
        (999, 0),
        (1_000, 1_000),
        (1_764_070_000_123, 1_764_070_000_000),
        (-1, -1_000),
        (-1_000, -1_000),
        (-1_001, -2_000),
        (i64::MIN, i64::MIN), // clamped, no overflow
    ] {
        assert_eq!(b.window_start(ts), start, "ts {ts}");
    }
    assert_eq!(
        builder(MIN).window_start(1_764_070_059_999),
        1_764_070_020_000
    );
}

#[test]
fn hand_worked_one_second_bars() {
    let mut b = builder(SEC);
    // Window [10 000, 11 000): 10 x 1, 12 x 2, 9 x 3, 11 x 4.
    for (ts, p, s) in [
        (10_000, 10.0, 1.0),
        (10_250, 12.0, 2.0),
        (10_500, 9.0, 3.0),
        (10_999, 11.0, 4.0),
    ] {
        assert!(b.on_trade(ts, p, s));
    }
    // Window still open at 10 999 ms wall clock.
    assert_eq!(b.close_until(10_999), []);
    assert_eq!(
        b.current(),
        Some(&bar(10_000, SEC, 10.0, 12.0, 9.0, 11.0, 10.0, 4))
    );
    // Closes exactly at its end: O 10, H 12, L 9, C 11, V 1 + 2 + 3 + 4 = 10, 4 trades.
    assert_eq!(
        b.close_until(11_000),
        [bar(10_000, SEC, 10.0, 12.0, 9.0, 11.0, 10.0, 4)]
    );
    assert_eq!(b.current(), None);
    assert_eq!(b.close_until(20_000), [], "each bar is emitted once");
    assert_eq!(b.late_ticks(), 0);
}

#[test]
fn empty_intervals_are_omitted() {
    let mut b = builder(SEC);
    b.on_trade(1_500, 5.0, 1.0);
    b.on_trade(4_200, 6.0, 2.0); // windows 2 000 and 3 000 have no trades
    assert_eq!(
        b.close_until(10_000),
        [
            bar(1_000, SEC, 5.0, 5.0, 5.0, 5.0, 1.0, 1),
            bar(4_000, SEC, 6.0, 6.0, 6.0, 6.0, 2.0, 1),
        ]
    );
    assert_eq!(b.close_until(20_000), []);
}

#[test]
fn later_trade_closes_bar_before_wall_clock() {
    let mut b = builder(SEC);
    b.on_trade(1_100, 5.0, 1.0);
    b.on_trade(2_100, 7.0, 1.0); // exchange clock moved on
    // Wall clock lags the exchange: bar 1 000 is still handed out, bar 2 000 stays open.
    assert_eq!(
        b.close_until(1_500),
        [bar(1_000, SEC, 5.0, 5.0, 5.0, 5.0, 1.0, 1)]
    );
    assert_eq!(b.current().map(|b| b.start_ms), Some(2_000));
}

#[test]
fn late_tick_folds_into_open_bar() {
    let mut b = builder(SEC);
    b.on_trade(1_100, 10.0, 1.0);
    b.on_trade(2_100, 11.0, 1.0); // closes bar 1 000
    // Late: window 1 000 is closed. Folded into bar 2 000: high 15, close 15, volume 3.
    b.on_trade(1_900, 15.0, 2.0);
    // Late as well, and a new low.
    b.on_trade(500, 3.0, 1.0);
    assert_eq!(b.late_ticks(), 2);
    assert_eq!(
        b.current(),
        Some(&bar(2_000, SEC, 11.0, 15.0, 3.0, 3.0, 4.0, 3))
    );
    assert_eq!(
        b.close_until(3_000),
        [
            bar(1_000, SEC, 10.0, 10.0, 10.0, 10.0, 1.0, 1),
            bar(2_000, SEC, 11.0, 15.0, 3.0, 3.0, 4.0, 3),
        ]
    );
}

#[test]
fn late_tick_with_no_open_bar_opens_the_current_window() {
    let mut b = builder(SEC);
    b.on_trade(1_100, 10.0, 1.0);
    assert_eq!(b.close_until(5_300).len(), 1); // frontier is now window 5 000
    // Exchange time 4 900 is in window 4 000, closed by the wall clock (empty, omitted).
    b.on_trade(4_900, 12.0, 2.0);
    assert_eq!(b.late_ticks(), 1);
    assert_eq!(
        b.current(),
        Some(&bar(5_000, SEC, 12.0, 12.0, 12.0, 12.0, 2.0, 1))
    );
    // A trade in the frontier window itself is on time.
    b.on_trade(5_400, 13.0, 1.0);
    assert_eq!(b.late_ticks(), 1);
    assert_eq!(
        b.close_until(6_000),
        [bar(5_000, SEC, 12.0, 13.0, 12.0, 13.0, 3.0, 2)]
    );
}

#[test]
fn one_minute_bars() {
    let mut b = builder(MIN);
    let t0 = 1_764_070_020_000; // a minute boundary
    b.on_trade(t0 + 1, 100.0, 1.0);
    b.on_trade(t0 + 59_999, 101.0, 1.0);
    assert_eq!(b.close_until(t0 + 59_999), []);
    b.on_trade(t0 + 60_000, 99.0, 1.0);
    assert_eq!(
        b.close_until(t0 + 60_500),
        [bar(t0, MIN, 100.0, 101.0, 100.0, 101.0, 2.0, 2)]
    );
    assert_eq!(b.close_until(i64::MAX).len(), 1, "flush at shutdown");
}

#[test]
fn invalid_trades_are_skipped() {
    let mut b = builder(SEC);
    for (p, s) in [
        (f64::NAN, 1.0),
        (0.0, 1.0),
        (-1.0, 1.0),
        (f64::INFINITY, 1.0),
        (1.0, -1.0),
        (1.0, f64::NAN),
    ] {
        assert!(!b.on_trade(1_000, p, s));
    }
    assert_eq!(b.current(), None);
    assert!(b.on_trade(1_000, 1.0, 0.0), "zero size is a valid trade");
}

#[test]
fn history_closes_by_its_own_clock_not_by_now() {
    const DAY: i64 = 86_400_000;
    let now: i64 = 1_764_070_000_500;
    let base = now - now.rem_euclid(SEC) - 2 * DAY; // a second boundary two days ago
    let mut b = builder(SEC);
    let mut clock = EventClock::default();
    // Played at 400x: trades 400 ms apart in the file arrive 1 ms apart.
    for (i, price) in [10.0, 11.0, 12.0, 13.0, 14.0].into_iter().enumerate() {
        let i = i as i64;
        clock.observe(base + 400 * i, now + i);
        assert!(b.on_trade(base + 400 * i, price, 1.0));
        // A batch after each trade: the clock is the file's, so nothing is late.
        let at = clock.at(now + i).expect("a trade was seen");
        assert!(at < base + 2 * SEC, "{at}");
        b.close_until(at);
    }
    assert_eq!(b.late_ticks(), 0);
    assert_eq!(
        b.current(),
        Some(&bar(base + SEC, SEC, 13.0, 14.0, 13.0, 14.0, 2.0, 2))
    );
    // The last bar closes once a second of wall time has passed, not before.
    assert_eq!(b.close_until(clock.at(now + 4 + 399).unwrap()), []);
    assert_eq!(
        b.close_until(clock.at(now + 4 + 400).unwrap()),
        [bar(base + SEC, SEC, 13.0, 14.0, 13.0, 14.0, 2.0, 2)]
    );
    // What closing on the wall clock did: every trade of the file was late.
    let mut wall = builder(SEC);
    wall.close_until(now);
    for i in 0..5 {
        wall.on_trade(base + 400 * i, 10.0, 1.0);
    }
    assert_eq!(wall.late_ticks(), 5);
}

/// Trades on a millisecond clock spanning a few 1 s windows, with repeated timestamps.
fn trades() -> impl Strategy<Value = Vec<(i64, f64, f64)>> {
    prop::collection::vec((-3_000i64..8_000, 0.01f64..1e4, 0.0f64..1e3), 0..80)
}

proptest! {
    #[test]
    fn in_order_trades_equal_grouping(
        mut trades in trades(),
        iv in prop_oneof![Just(SEC), Just(MIN), 1i64..3_000],
        clock in prop::collection::vec(any::<bool>(), 80),
    ) {
        trades.sort_by_key(|t| t.0);
        let mut b = builder(iv);
        let mut bars = Vec::new();
        for (i, &(ts, p, s)) in trades.iter().enumerate() {
            // Sometimes let the wall clock reach this trade's time first (never past it, so
            // no trade is late).
            if clock[i] {
                bars.extend(b.close_until(ts));
            }
            prop_assert!(b.on_trade(ts, p, s));
        }
        bars.extend(b.close_until(i64::MAX));
        prop_assert_eq!(b.late_ticks(), 0);
        prop_assert_eq!(bars, reference(&trades, iv));
    }

    /// A file in time order, stamped days in the past or the future, played at any speed of
    /// at least 1x (0 = all at once), with batches at arbitrary arrival times: exactly the
    /// reference bars, no late tick.
    #[test]
    fn replay_at_any_speed_equals_grouping(
        mut trades in trades(),
        shift_days in -3i64..=3,
        speed in prop_oneof![Just(0i64), Just(1i64), Just(400i64), 1i64..50],
        iv in prop_oneof![Just(SEC), Just(MIN)],
        batch in prop::collection::vec(any::<bool>(), 80),
    ) {
        trades.sort_by_key(|t| t.0);
        for t in &mut trades {
            t.0 += shift_days * 86_400_000;
        }
        let wall0 = 1_764_070_000_000;
        let first = trades.first().map_or(0, |t| t.0);
        let arrival = |ts: i64| match speed {
            0 => wall0,
            s => wall0 + (ts - first) / s,
        };
        let mut b = builder(iv);
        let mut clock = EventClock::default();
        let mut bars = Vec::new();
        for (i, &(ts, p, s)) in trades.iter().enumerate() {
            // A batch just as this trade arrives, before the pipeline has read it.
            if batch[i] && let Some(at) = clock.at(arrival(ts)) {
                bars.extend(b.close_until(at));
            }
            clock.observe(ts, arrival(ts));
            prop_assert!(b.on_trade(ts, p, s));
        }
        if let Some(&(ts, _, _)) = trades.last() {
            let at = clock.at(arrival(ts) + iv).expect("a trade was seen");
            bars.extend(b.close_until(at));
        }
        prop_assert_eq!(b.late_ticks(), 0);
        prop_assert_eq!(bars, reference(&trades, iv));
    }

    #[test]
    fn out_of_order_trades_conserve_and_count_late(trades in trades(), iv in 1i64..3_000) {
        let mut b = builder(iv);
        let mut late = 0;
        let mut newest_start: Option<i64> = None;
        for &(ts, p, s) in &trades {
            // Without wall-clock closes, a trade is late exactly when an earlier arrival was
            // in a later window.
            let start = ts.div_euclid(iv) * iv;
            if newest_start.is_some_and(|n| start < n) {
                late += 1;
            }
            newest_start = newest_start.max(Some(start));
            b.on_trade(ts, p, s);
        }
        let open_start = b.current().map(|bar| bar.start_ms);
        let bars = b.close_until(i64::MAX);
        prop_assert_eq!(b.late_ticks(), late);
        prop_assert_eq!(open_start, newest_start);
        // Bars come out in strictly increasing, aligned windows.
        for w in bars.windows(2) {
            prop_assert!(w[0].start_ms < w[1].start_ms);
        }
        for bar in &bars {
            prop_assert_eq!(bar.start_ms.rem_euclid(iv), 0);
            prop_assert!(bar.low <= bar.open.min(bar.close) && bar.high >= bar.open.max(bar.close));
        }
        // Nothing is lost: every trade, its size and its price extremes end up in some bar.
        prop_assert_eq!(bars.iter().map(|b| b.trades).sum::<u64>(), trades.len() as u64);
        let vol_bars: f64 = bars.iter().map(|b| b.volume).sum();
        let vol_trades: f64 = trades.iter().map(|t| t.2).sum();
        prop_assert!((vol_bars - vol_trades).abs() <= 1e-9 * vol_trades.max(1.0));
        let hi = trades.iter().map(|t| t.1).fold(f64::MIN, f64::max);
        let lo = trades.iter().map(|t| t.1).fold(f64::MAX, f64::min);
        if !trades.is_empty() {
            prop_assert_eq!(bars.iter().map(|b| b.high).fold(f64::MIN, f64::max), hi);
            prop_assert_eq!(bars.iter().map(|b| b.low).fold(f64::MAX, f64::min), lo);
        }
    }
}
