//! A client's copy of one order book, written from the protocol text (docs/PROTOCOL.md "Order
//! books"), not from the server's code: a map of levels per side, deltas applied as documented,
//! and the documented CRC-32 over its own copy.

use std::collections::BTreeMap;

use serde_json::Value;

/// A client's copy of one book.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Copy {
    /// price bits → (price, size); bids are read from the highest.
    bids: BTreeMap<u64, (f64, f64)>,
    asks: BTreeMap<u64, (f64, f64)>,
    depth: usize,
}

pub fn levels(v: &Value) -> Vec<(f64, f64)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l[0].as_f64().unwrap_or(f64::NAN),
                        l[1].as_f64().unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Copy {
    pub fn new(depth: usize) -> Self {
        Copy {
            depth,
            ..Default::default()
        }
    }

    /// Applies a `book` event as the protocol says: `reset` replaces the copy, size 0 removes,
    /// and the copy keeps its `depth` best levels per side.
    pub fn apply(&mut self, e: &Value) {
        assert_eq!(e["type"], "book", "{e}");
        if e["reset"] == true {
            self.bids.clear();
            self.asks.clear();
        }
        for (side, key) in [(&mut self.bids, "bids"), (&mut self.asks, "asks")] {
            for (p, s) in levels(&e[key]) {
                if s == 0.0 {
                    side.remove(&p.to_bits());
                } else {
                    side.insert(p.to_bits(), (p, s));
                }
            }
        }
        while self.bids.len() > self.depth {
            self.bids.pop_first();
        }
        while self.asks.len() > self.depth {
            self.asks.pop_last();
        }
    }

    pub fn bids(&self) -> Vec<(f64, f64)> {
        self.bids.values().rev().copied().collect()
    }

    pub fn asks(&self) -> Vec<(f64, f64)> {
        self.asks.values().copied().collect()
    }

    /// The documented checksum: CRC-32 of "bid0:ask0:bid1:ask1:..." over the top ten, each
    /// level `price:size` in shortest plain decimal.
    pub fn checksum(&self) -> u64 {
        let (bids, asks) = (self.bids(), self.asks());
        let mut parts = Vec::new();
        for i in 0..10 {
            for level in [bids.get(i), asks.get(i)].into_iter().flatten() {
                parts.push(format!("{}:{}", level.0, level.1));
            }
        }
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
        u64::from(crc.checksum(parts.join(":").as_bytes()))
    }

    /// Applies `e` and checks its checksum against the copy.
    pub fn apply_checked(&mut self, e: &Value) {
        self.apply(e);
        assert_eq!(
            Some(self.checksum()),
            e["checksum"].as_u64(),
            "after {e}: {self:?}"
        );
    }
}
