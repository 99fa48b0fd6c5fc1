//! Binance spot: trades `<symbol>@trade` and the partial book `<symbol>@depth20@100ms`. Its trade
//! mapping is data (`feeds/mappings/binance.toml`, compiled in); its depth stream decoder is
//! `depth.rs`.

mod depth;

use super::Venue;

pub(super) const VENUE: Venue = Venue {
    name: "binance",
    mapping: include_str!("../../../../feeds/mappings/binance.toml"),
    depth: Some(depth::open),
};
