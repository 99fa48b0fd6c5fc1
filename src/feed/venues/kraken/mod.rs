//! Kraken Spot WebSocket v2: trades `trade` + `heartbeat`, and the book `book` (depth 25, CRC-32
//! checked). Its trade mapping is data (`feeds/mappings/kraken.toml`, compiled in); its depth
//! stream decoder is `depth.rs`.

mod depth;

use super::Venue;

pub(super) const VENUE: Venue = Venue {
    name: "kraken",
    mapping: include_str!("../../../../feeds/mappings/kraken.toml"),
    depth: Some(depth::open),
};
