//! Coinbase Exchange: trades `matches` + `heartbeat`, and the level 2 book `level2_batch`. Its
//! trade mapping is data (`feeds/mappings/coinbase.toml`, compiled in); its depth stream decoder is
//! `depth.rs`.

mod depth;

use super::Venue;

pub(super) const VENUE: Venue = Venue {
    name: "coinbase",
    mapping: include_str!("../../../../feeds/mappings/coinbase.toml"),
    depth: Some(depth::open),
};
