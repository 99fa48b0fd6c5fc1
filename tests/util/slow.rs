//! The slow-consumer server the WebSocket tests share: a synthetic market fast enough that a
//! client that stops reading fills its queue and its socket within a fraction of a second.

use tickcast::config::Config;

/// [`super::config`] with 20 synthetic symbols at 3,000 ticks/s (ticks only, no books), a
/// connection queue of 256 events and a 16 KiB socket send buffer. The slow-consumer timeout,
/// the close linger and the ping timers are the caller's.
pub fn slow_consumer_config() -> Config {
    let mut cfg = super::config();
    cfg.feeds.synthetic.enabled = true;
    cfg.feeds.synthetic.symbols = 20;
    cfg.feeds.synthetic.rate = 3_000.0;
    // Ticks only, as before the synthetic market had books: this is about the ticks' fan-out.
    cfg.feeds.synthetic.book_levels = 0;
    cfg.ws.outbox_max_events = 256;
    cfg.ws.socket_send_buffer_bytes = 16 * 1024;
    cfg
}
