//! OKX v5: trades `trades` (no depth stream yet). Its trade mapping is data
//! (`feeds/mappings/okx.toml`, compiled in).

use super::Venue;

pub(super) const VENUE: Venue = Venue {
    name: "okx",
    mapping: include_str!("../../../../feeds/mappings/okx.toml"),
    depth: None,
};
