//! The event clock of one symbol: how far the exchange time of its data has got, which is what
//! closes its bars (see the rules in [`super`]).
//!
//! # Rule
//! `clock(now) = latest exchange time seen + max(0, now - arrival of the latest tick)`
//!
//! The clock is the feed's own clock (the newest exchange time of the symbol's trades), moved on
//! by the wall clock only by the time that has passed since the feed last spoke, at 1x. So:
//! - a **live** feed, whose trades are stamped about when they arrive, closes a quiet symbol's bar
//!   about when the wall clock passes its end (plus the feed's own latency: a feed 200 ms behind
//!   is waited for 200 ms longer, so its trades in transit are not late);
//! - a **replayed** file (stamped in the past or the future, played at any speed >= 1x) closes a
//!   bar only once the file's own time has passed its end: a trade of a later window, or, after
//!   the last trade, the wall time it would take the file at 1x. Its bars are exactly those its
//!   timestamps define, whatever "now" is.
//!
//! `now` is the wall clock when the pipeline runs a batch; batches run `pipeline.close_delay_ms`
//! after each interval boundary, so a live trade that reaches the server within that delay of its
//! exchange time is read before its bar can close (as it was when bars closed on the wall clock).
//! A replayed trade is late on the same terms only: when it reaches the pipeline more than the
//! delay behind the pace of the file. All times are ms since the Unix epoch. Pure: the caller
//! supplies both clocks, so tests need no real time.

/// The event clock of one symbol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EventClock {
    /// (newest exchange time seen, latest arrival time), once a trade was seen.
    latest: Option<(i64, i64)>,
}

// === impl EventClock ===

impl EventClock {
    /// Records one trade: its exchange time and the wall time it arrived (ingest time).
    pub(crate) fn observe(&mut self, exchange_ms: i64, arrived_ms: i64) {
        self.latest = Some(match self.latest {
            None => (exchange_ms, arrived_ms),
            Some((e, a)) => (e.max(exchange_ms), a.max(arrived_ms)),
        });
    }

    /// The symbol's exchange time at wall time `now_ms`, by the rule above; `None` before the
    /// first trade (nothing to close).
    pub(crate) fn at(&self, now_ms: i64) -> Option<i64> {
        let (exchange, arrived) = self.latest?;
        Some(exchange.saturating_add(now_ms.saturating_sub(arrived).max(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_trade_no_clock() {
        assert_eq!(EventClock::default().at(1_000), None);
    }

    #[test]
    fn live_feed_follows_the_wall_clock_behind_its_own_latency() {
        let mut c = EventClock::default();
        // Stamped 30 ms before it arrived.
        c.observe(10_970, 11_000);
        assert_eq!(c.at(11_000), Some(10_970));
        assert_eq!(c.at(12_000), Some(11_970), "a quiet second later");
    }

    #[test]
    fn a_file_two_days_old_keeps_its_own_time() {
        const DAY: i64 = 86_400_000;
        let now = 1_764_070_000_000;
        let mut c = EventClock::default();
        c.observe(now - 2 * DAY, now);
        // Played at 400x: the next trade, 1 s later in the file, arrives 2.5 ms later.
        c.observe(now - 2 * DAY + 1_000, now + 2);
        assert_eq!(c.at(now + 2), Some(now - 2 * DAY + 1_000));
        // The wall clock moves the file's clock at 1x only, never to "now".
        assert_eq!(c.at(now + 502), Some(now - 2 * DAY + 1_500));
    }

    #[test]
    fn a_file_stamped_in_the_future_is_not_held_back() {
        let mut c = EventClock::default();
        c.observe(50_000, 1_000);
        assert_eq!(c.at(1_250), Some(50_250));
    }

    #[test]
    fn out_of_order_trades_do_not_move_the_clock_back() {
        let mut c = EventClock::default();
        c.observe(5_000, 100);
        c.observe(4_000, 110); // older in exchange time, newer arrival
        assert_eq!(c.at(110), Some(5_000));
        assert_eq!(
            c.at(210),
            Some(5_100),
            "elapsed counts from the latest arrival"
        );
        // A wall clock behind the latest arrival (a delayed batch) never moves it back.
        assert_eq!(c.at(0), Some(5_000));
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let mut c = EventClock::default();
        c.observe(i64::MAX - 1, i64::MIN);
        assert_eq!(c.at(i64::MAX), Some(i64::MAX));
    }
}
