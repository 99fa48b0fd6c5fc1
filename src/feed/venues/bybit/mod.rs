//! Bybit v5 spot: trades `publicTrade.<symbol>` and the book `orderbook.50.<symbol>`. Its trade
//! mapping is data (`feeds/mappings/bybit.toml`, compiled in); its depth stream decoder is
//! `depth.rs`.

mod depth;

use super::Venue;

pub(super) const VENUE: Venue = Venue {
    name: "bybit",
    mapping: include_str!("../../../../feeds/mappings/bybit.toml"),
    depth: Some(depth::open),
};
