//! The venues tickcast knows, registered in one place ([`VENUES`]). Each venue's folder holds
//! all it knows: its trade mapping (data, `feeds/mappings/<venue>.toml`, compiled in and
//! selected by name as `feeds.upstream.mapping`) and, where it has one, its depth stream (a
//! [`DepthStream`] decoder, selected as `feeds.upstream.depth`). Adding a venue is a folder and
//! a line here.
//!
//! | venue | depth stream | snapshot | sequence check |
//! | --- | --- | --- | --- |
//! | `binance` | spot `<symbol>@depth20@100ms` (partial book, REST-free) | every message (top 20) | a `lastUpdateId` below the previous one is stale: dropped, counted |
//! | `coinbase` | Exchange `level2_batch` (`snapshot`, `l2update`) | on subscribe | an `l2update` before its product's snapshot is a gap |
//! | `kraken` | WebSocket v2 `book`, depth 25 | on subscribe | the CRC-32 of the top 10 levels, from the message's own digits |
//! | `bybit` | v5 `orderbook.50.<SYMBOL>` | `snapshot` or `u == 1` | a delta whose `u` is not the previous `u + 1` is a gap |
//! | `okx` | none (trades only) | | |

mod binance;
mod bybit;
mod coinbase;
mod kraken;
mod okx;

use super::depth::{DepthError, DepthStream};

/// Opens a venue's depth stream for `symbols` (the venue's spelling, as configured).
pub type OpenDepth = fn(&[String]) -> Result<Box<dyn DepthStream>, DepthError>;

/// One venue: its name, its trade mapping and its depth stream.
#[derive(Debug, Clone, Copy)]
pub struct Venue {
    /// What `feeds.upstream.mapping` and `feeds.upstream.depth` call it.
    pub name: &'static str,
    /// Its trade mapping, the TOML text of `feeds/mappings/<name>.toml`.
    pub mapping: &'static str,
    /// Its depth stream; `None` where tickcast follows only its trades.
    pub depth: Option<OpenDepth>,
}

/// Every venue, the one registry.
pub const VENUES: &[Venue] = &[
    binance::VENUE,
    coinbase::VENUE,
    kraken::VENUE,
    bybit::VENUE,
    okx::VENUE,
];

/// The venue called `name`.
pub fn find(name: &str) -> Option<&'static Venue> {
    VENUES.iter().find(|v| v.name == name)
}

/// How to open the depth stream of the venue called `name`, if it has one.
pub fn depth_venue(name: &str) -> Option<OpenDepth> {
    find(name).and_then(|v| v.depth)
}

/// The names `feeds.upstream.depth` accepts besides `""` (off).
pub fn depth_names() -> impl Iterator<Item = &'static str> {
    VENUES.iter().filter(|v| v.depth.is_some()).map(|v| v.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venue_names() {
        let depth: Vec<&str> = depth_names().collect();
        assert_eq!(depth, ["binance", "coinbase", "kraken", "bybit"]);
        for name in depth {
            assert_eq!(find(name).map(|v| v.name), Some(name));
            assert!(depth_venue(name).is_some(), "{name}");
        }
        assert!(find("okx").is_some_and(|v| v.depth.is_none()));
        assert!(depth_venue("okx").is_none());
        assert!(find("nyse").is_none());
        assert!(depth_venue("").is_none());
    }
}
