//! Coinbase Exchange level 2: on subscribe one `{"type":"snapshot","product_id":"BTC-USD",
//! "bids":[["10101.10","0.45054140"]],"asks":[...]}` per product, then `{"type":"l2update",
//! "product_id":"BTC-USD","time":"...","changes":[["buy","10101.80","0.162567"]]}` (the size is
//! the level's new size; "0" removes it). The feed subscribes to `level2_batch`, the same
//! messages batched every 50 ms, because `level2` itself requires an authenticated
//! subscription since August 2023. These messages carry no sequence number, so the check is
//! the one the stream allows: an `l2update` for a product with no snapshot since the
//! (re)subscribe is a gap, and so is an `l2update` that cannot be used.

use std::collections::HashSet;

use serde::Deserialize;

use crate::book::BookUpdate;
use crate::feed::depth::{Decoded, DepthError, DepthStream, json_list, level, levels, rfc3339_or};

/// The channel subscribed to (see the module docs).
pub const CHANNEL: &str = "level2_batch";

#[derive(Debug)]
pub struct Coinbase {
    products: Vec<String>,
    /// Products whose snapshot arrived on this connection.
    synced: HashSet<String>,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    #[serde(borrow)]
    product_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct Snapshot<'a> {
    #[serde(borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    asks: Vec<[&'a str; 2]>,
    #[serde(borrow, default)]
    time: Option<&'a str>,
}

#[derive(Deserialize)]
struct L2Update<'a> {
    #[serde(borrow)]
    changes: Vec<[&'a str; 3]>,
    #[serde(borrow, default)]
    time: Option<&'a str>,
}

impl Coinbase {
    pub fn new(symbols: &[String]) -> Self {
        Self {
            products: symbols.to_vec(),
            synced: HashSet::new(),
        }
    }

    fn snapshot(msg: &[u8], product: &str, now_ns: i64) -> Result<BookUpdate, DepthError> {
        let s: Snapshot<'_> = serde_json::from_slice(msg).map_err(malformed)?;
        Ok(BookUpdate {
            symbol: product.to_owned(),
            snapshot: true,
            bids: levels(&s.bids)?,
            asks: levels(&s.asks)?,
            exchange_ts: rfc3339_or("time", s.time, now_ns)?,
        })
    }

    fn l2update(msg: &[u8], product: &str, now_ns: i64) -> Result<BookUpdate, DepthError> {
        let u: L2Update<'_> = serde_json::from_slice(msg).map_err(malformed)?;
        let mut update = BookUpdate {
            symbol: product.to_owned(),
            snapshot: false,
            bids: Vec::new(),
            asks: Vec::new(),
            exchange_ts: rfc3339_or("time", u.time, now_ns)?,
        };
        for [side, price, size] in u.changes {
            let l = level(price, size)?;
            match side {
                "buy" => update.bids.push(l),
                "sell" => update.asks.push(l),
                other => {
                    return Err(DepthError::field(
                        "changes",
                        format!("side must be buy or sell, got {other:?}"),
                    ));
                }
            }
        }
        Ok(update)
    }
}

/// Opens Coinbase's depth stream for `symbols` (the venue's spelling).
pub(super) fn open(symbols: &[String]) -> Result<Box<dyn DepthStream>, DepthError> {
    Ok(Box::new(Coinbase::new(symbols)))
}

impl DepthStream for Coinbase {
    fn subscribe_messages(&self) -> Vec<String> {
        vec![format!(
            r#"{{"type":"subscribe","product_ids":{},"channels":["{CHANNEL}"]}}"#,
            json_list(self.products.iter().cloned())
        )]
    }

    /// Unsubscribe and subscribe again to one product's `level2_batch`: Coinbase sends a fresh
    /// snapshot.
    fn resync_messages(&mut self, product: &str) -> Option<Vec<String>> {
        self.synced.remove(product);
        let list = json_list([product.to_owned()]);
        Some(vec![
            format!(r#"{{"type":"unsubscribe","product_ids":{list},"channels":["{CHANNEL}"]}}"#),
            format!(r#"{{"type":"subscribe","product_ids":{list},"channels":["{CHANNEL}"]}}"#),
        ])
    }

    fn reset(&mut self) {
        self.synced.clear();
    }

    fn decode(
        &mut self,
        msg: &[u8],
        now_ns: i64,
        out: &mut Vec<BookUpdate>,
    ) -> Result<Decoded, DepthError> {
        let Ok(probe) = serde_json::from_slice::<Probe<'_>>(msg) else {
            return Ok(Decoded::NotDepth);
        };
        let snapshot = match probe.kind {
            Some("snapshot") => true,
            Some("l2update") => false,
            _ => return Ok(Decoded::NotDepth),
        };
        let Some(product) = probe.product_id else {
            return Err(DepthError::Malformed {
                venue: "coinbase",
                message: "no product_id".to_owned(),
            });
        };
        if !snapshot && !self.synced.contains(product) {
            return Ok(Decoded::Lost {
                symbol: product.to_owned(),
                reason: "l2update before the product's snapshot".to_owned(),
            });
        }
        let decoded = if snapshot {
            Self::snapshot(msg, product, now_ns)
        } else {
            Self::l2update(msg, product, now_ns)
        };
        match decoded {
            Ok(update) => {
                if snapshot {
                    self.synced.insert(product.to_owned());
                }
                out.push(update);
                Ok(Decoded::Book { updates: 1 })
            }
            Err(e) => {
                self.synced.remove(product);
                Ok(Decoded::Lost {
                    symbol: product.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    }
}

fn malformed(e: serde_json::Error) -> DepthError {
    DepthError::Malformed {
        venue: "coinbase",
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::depth::{decode_fixture, describe};

    const FIXTURE: &str = include_str!("../../../../feeds/fixtures/coinbase_level2.jsonl");

    fn outcome(r: Result<Decoded, DepthError>, out: &[BookUpdate]) -> String {
        match r {
            Ok(Decoded::NotDepth) => "-".to_owned(),
            Ok(Decoded::Book { .. }) => describe(&out[0]),
            Ok(Decoded::Stale { .. }) => panic!("no stale on coinbase"),
            Ok(Decoded::Lost { symbol, reason }) => format!("lost {symbol}: {reason}"),
            Err(e) => format!("error {e}"),
        }
    }

    #[test]
    fn subscribe_message() {
        let c = Coinbase::new(&["BTC-USD".to_owned(), "ETH-USD".to_owned()]);
        assert_eq!(
            c.subscribe_messages(),
            [
                r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["level2_batch"]}"#
            ]
        );
    }

    #[test]
    fn the_fixture_decodes_line_by_line() {
        let mut c = Coinbase::new(&["BTC-USD".to_owned()]);
        let got = decode_fixture(FIXTURE, |line, out| c.decode(line, 7, out), outcome);
        let want = [
            "-",                                                    // subscriptions ack
            "lost ETH-USD: l2update before the product's snapshot", // before its snapshot
            "snapshot BTC-USD 5/5",                                 // BTC-USD snapshot
            "-",                                                    // heartbeat
            "delta BTC-USD 1/1",                                    // a bid and an ask
            "delta BTC-USD 1/0",                                    // a bid removed
            "-",                                                    // a match
            "delta BTC-USD 0/2",                                    // two asks
            "-",                                                    // truncated JSON
            "lost BTC-USD: field `changes`: side must be buy or sell, got \"hold\"",
            "lost BTC-USD: l2update before the product's snapshot", // after the loss
            "snapshot BTC-USD 5/5",                                 // a fresh snapshot
            "lost BTC-USD: field `price`: not a number: \"four hundred\"",
            "snapshot BTC-USD 5/5", // again
            "delta BTC-USD 1/0",    // synced
            "-",                    // the refusal
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn times_and_a_new_connection() {
        let mut c = Coinbase::new(&["BTC-USD".to_owned()]);
        let mut out = Vec::new();
        let snap = r#"{"type":"snapshot","product_id":"BTC-USD","bids":[["100.5","1"]],"asks":[]}"#;
        let upd = r#"{"type":"l2update","product_id":"BTC-USD","time":"2025-01-01T00:00:00.5Z","changes":[["sell","101","2"]]}"#;
        c.decode(snap.as_bytes(), 9, &mut out).unwrap();
        c.decode(upd.as_bytes(), 9, &mut out).unwrap();
        assert_eq!(out[0].exchange_ts, 9, "no time: now");
        assert_eq!(out[1].exchange_ts, 1_735_689_600_500_000_000);
        assert_eq!(out[1].asks, [(101.0, 2.0)]);
        c.reset();
        assert!(matches!(
            c.decode(upd.as_bytes(), 9, &mut out),
            Ok(Decoded::Lost { .. })
        ));
        let bad_time = upd.replace("2025-01-01T00:00:00.5Z", "yesterday");
        c.decode(snap.as_bytes(), 9, &mut out).unwrap();
        assert!(matches!(
            c.decode(bad_time.as_bytes(), 9, &mut out),
            Ok(Decoded::Lost { .. })
        ));
        let no_product = r#"{"type":"l2update","changes":[]}"#;
        assert!(c.decode(no_product.as_bytes(), 9, &mut out).is_err());
    }
}
