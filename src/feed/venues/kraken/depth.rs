//! Kraken Spot WebSocket v2 `book`, subscribed at depth 25: `{"channel":"book","type":
//! "snapshot"|"update","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,"qty":0.1}],
//! "asks":[...],"checksum":3310070434,"timestamp":"..."}]}`. A qty of 0 removes a level, and
//! the copy keeps the subscribed depth per side (Kraken sends no removal for a level pushed
//! out of it; the decoder sends ingest one, so ingest's book is the copy).
//!
//! Every message carries Kraken's CRC-32 of the top 10 levels after it: for the asks from the
//! lowest, then the bids from the highest, each level's price then qty, each written as the
//! number's text with the `.` and the leading zeros removed, all concatenated. The text must be
//! the venue's own digits (`0.10000000` and `0.1` differ), which a float cannot give back, so
//! the decoder keeps each level's digits from the message text (serde_json `RawValue`, JSON
//! numbers or strings alike). That makes the verification exact; a number in exponent notation
//! (which Kraken does not send) cannot be turned back into the venue's digits and is refused as
//! unusable, which loses the symbol's sync like a mismatch. A mismatch, an update before the
//! symbol's snapshot or an unusable entry is a resync.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::book::{BookUpdate, CHECKSUM_LEVELS};
use crate::feed::depth::{Decoded, DepthError, DepthStream, json_list, rfc3339_or};

/// The depth subscribed to, and kept per side.
pub const DEPTH: usize = 25;

#[derive(Debug)]
pub struct Kraken {
    symbols: Vec<String>,
    /// Each symbol's copy on this connection, from its snapshot.
    books: HashMap<String, Local>,
}

/// One level of the copy: its value and its checksum text (price digits then qty digits).
#[derive(Debug, Clone)]
struct Kept {
    price: f64,
    qty: f64,
    digits: String,
}

/// A symbol's book as Kraken's checksum sees it; keyed by the price's bits (positive floats
/// order as their bits do).
#[derive(Debug, Clone, Default)]
struct Local {
    bids: BTreeMap<u64, Kept>,
    asks: BTreeMap<u64, Kept>,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    channel: Option<&'a str>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    data: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    symbol: &'a str,
    #[serde(borrow, default)]
    bids: Vec<RawLevel<'a>>,
    #[serde(borrow, default)]
    asks: Vec<RawLevel<'a>>,
    checksum: u32,
    #[serde(borrow, default)]
    timestamp: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawLevel<'a> {
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
}

impl Kraken {
    pub fn new(symbols: &[String]) -> Self {
        Self {
            symbols: symbols.to_vec(),
            books: HashMap::new(),
        }
    }

    /// Applies one entry to its symbol's copy and checks the checksum; the update for ingest,
    /// or why the symbol lost sync.
    fn entry(&mut self, e: &Entry<'_>, snapshot: bool, now_ns: i64) -> Result<BookUpdate, String> {
        let exchange_ts =
            rfc3339_or("timestamp", e.timestamp, now_ns).map_err(|e| e.to_string())?;
        let bids = kept_levels(&e.bids).map_err(|e| e.to_string())?;
        let asks = kept_levels(&e.asks).map_err(|e| e.to_string())?;
        let book = if snapshot {
            self.books.insert(e.symbol.to_owned(), Local::default());
            self.books.get_mut(e.symbol)
        } else {
            self.books.get_mut(e.symbol)
        };
        let Some(book) = book else {
            return Err("update before the symbol's snapshot".to_owned());
        };
        let mut update = BookUpdate {
            symbol: e.symbol.to_owned(),
            snapshot,
            bids: bids.iter().map(|k| (k.price, k.qty)).collect(),
            asks: asks.iter().map(|k| (k.price, k.qty)).collect(),
            exchange_ts,
        };
        for k in bids {
            set(&mut book.bids, k);
        }
        for k in asks {
            set(&mut book.asks, k);
        }
        // Keep the subscribed depth, telling ingest of each level that left it.
        while book.bids.len() > DEPTH {
            if let Some((_, k)) = book.bids.pop_first() {
                update.bids.push((k.price, 0.0));
            }
        }
        while book.asks.len() > DEPTH {
            if let Some((_, k)) = book.asks.pop_last() {
                update.asks.push((k.price, 0.0));
            }
        }
        let ours = book.checksum();
        if ours != e.checksum {
            return Err(format!(
                "checksum mismatch: venue {}, copy {ours}",
                e.checksum
            ));
        }
        if snapshot {
            // A snapshot's removals (qty 0) mean nothing: send the copy as it is.
            update.bids = book.bids.values().rev().map(|k| (k.price, k.qty)).collect();
            update.asks = book.asks.values().map(|k| (k.price, k.qty)).collect();
        }
        Ok(update)
    }
}

/// Opens Kraken's depth stream for `symbols` (the venue's spelling).
pub(super) fn open(symbols: &[String]) -> Result<Box<dyn DepthStream>, DepthError> {
    Ok(Box::new(Kraken::new(symbols)))
}

impl DepthStream for Kraken {
    fn subscribe_messages(&self) -> Vec<String> {
        vec![format!(
            r#"{{"method":"subscribe","params":{{"channel":"book","symbol":{},"depth":{DEPTH},"snapshot":true}}}}"#,
            json_list(self.symbols.iter().cloned())
        )]
    }

    /// Unsubscribe and subscribe again to one symbol's book: Kraken answers with a fresh
    /// snapshot (a subscribe to a symbol already subscribed is refused, hence both).
    fn resync_messages(&mut self, symbol: &str) -> Option<Vec<String>> {
        self.books.remove(symbol);
        let list = json_list([symbol.to_owned()]);
        Some(vec![
            format!(
                r#"{{"method":"unsubscribe","params":{{"channel":"book","symbol":{list},"depth":{DEPTH}}}}}"#
            ),
            format!(
                r#"{{"method":"subscribe","params":{{"channel":"book","symbol":{list},"depth":{DEPTH},"snapshot":true}}}}"#
            ),
        ])
    }

    fn reset(&mut self) {
        self.books.clear();
    }

    fn decode(
        &mut self,
        msg: &[u8],
        now_ns: i64,
        out: &mut Vec<BookUpdate>,
    ) -> Result<Decoded, DepthError> {
        match serde_json::from_slice::<Probe<'_>>(msg) {
            Ok(Probe {
                channel: Some("book"),
            }) => {}
            _ => return Ok(Decoded::NotDepth),
        }
        let m: Message<'_> = serde_json::from_slice(msg).map_err(|e| DepthError::Malformed {
            venue: "kraken",
            message: e.to_string(),
        })?;
        let snapshot = match m.kind {
            "snapshot" => true,
            "update" => false,
            other => {
                return Err(DepthError::field(
                    "type",
                    format!("expected snapshot or update, got {other:?}"),
                ));
            }
        };
        let mut updates = 0;
        for entry in &m.data {
            let symbol = entry.symbol;
            match self.entry(entry, snapshot, now_ns) {
                Ok(update) => {
                    out.push(update);
                    updates += 1;
                }
                Err(reason) => {
                    self.books.remove(symbol);
                    return Ok(Decoded::Lost {
                        symbol: symbol.to_owned(),
                        reason,
                    });
                }
            }
        }
        Ok(Decoded::Book { updates })
    }
}

impl Local {
    /// Kraken's CRC-32 (see the module docs).
    fn checksum(&self) -> u32 {
        let mut s = String::with_capacity(CHECKSUM_LEVELS * 2 * 24);
        for k in self.asks.values().take(CHECKSUM_LEVELS) {
            s.push_str(&k.digits);
        }
        for k in self.bids.values().rev().take(CHECKSUM_LEVELS) {
            s.push_str(&k.digits);
        }
        CRC32.checksum(s.as_bytes())
    }
}

static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

fn set(side: &mut BTreeMap<u64, Kept>, k: Kept) {
    if k.qty == 0.0 {
        side.remove(&k.price.to_bits());
    } else {
        side.insert(k.price.to_bits(), k);
    }
}

fn kept_levels(raw: &[RawLevel<'_>]) -> Result<Vec<Kept>, DepthError> {
    raw.iter()
        .map(|l| {
            let (price, p) = digits("price", l.price.get())?;
            let (qty, q) = digits("qty", l.qty.get())?;
            if price <= 0.0 {
                return Err(DepthError::field("price", "must be > 0"));
            }
            Ok(Kept {
                price,
                qty,
                digits: p + &q,
            })
        })
        .collect()
}

/// A number's value and its checksum text, from its JSON text (a number, or a string holding
/// one): only plain decimals (digits and at most one `.`) can give the venue's digits back.
fn digits(field: &'static str, raw: &str) -> Result<(f64, String), DepthError> {
    let raw = raw.trim();
    let text = raw
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(raw);
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|&b| b == b'.').count() <= 1
        && text != ".";
    if !plain {
        return Err(DepthError::field(
            field,
            format!("{raw} is not a plain decimal >= 0 (the checksum needs the venue's digits)"),
        ));
    }
    let value: f64 = text
        .parse()
        .map_err(|_| DepthError::field(field, format!("not a number: {raw}")))?;
    if !value.is_finite() {
        return Err(DepthError::field(field, format!("out of range: {raw}")));
    }
    let digits: String = text.chars().filter(|&c| c != '.').collect();
    Ok((value, digits.trim_start_matches('0').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::depth::{decode_fixture, describe};

    const FIXTURE: &str = include_str!("../../../../feeds/fixtures/kraken_book.jsonl");

    fn outcome(r: Result<Decoded, DepthError>, out: &[BookUpdate]) -> String {
        match r {
            Ok(Decoded::NotDepth) => "-".to_owned(),
            Ok(Decoded::Book { updates }) => {
                assert_eq!(updates, out.len());
                describe(&out[0])
            }
            Ok(Decoded::Stale { .. }) => panic!("no stale on kraken"),
            Ok(Decoded::Lost { symbol, reason }) => {
                format!("lost {symbol}: {}", reason.split(':').next().unwrap_or(""))
            }
            Err(DepthError::Malformed { .. }) => "malformed".to_owned(),
            Err(e) => format!("error {e}"),
        }
    }

    #[test]
    fn the_documented_example_digits() {
        // Kraken's guide: "45285.2" -> "452852", "0.00100000" -> "100000".
        assert_eq!(digits("price", "45285.2").unwrap().1, "452852");
        assert_eq!(digits("qty", "0.00100000").unwrap().1, "100000");
        assert_eq!(digits("qty", "\"0.05\"").unwrap(), (0.05, "5".to_owned()));
        for bad in ["1e-8", "-1", "", "1.2.3", ".", "\"x\"", "null"] {
            assert!(digits("qty", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subscribe_message() {
        let k = Kraken::new(&["BTC/USD".to_owned()]);
        assert_eq!(
            k.subscribe_messages(),
            [
                r#"{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":25,"snapshot":true}}"#
            ]
        );
    }

    #[test]
    fn the_fixture_decodes_line_by_line() {
        let mut k = Kraken::new(&["BTC/USD".to_owned()]);
        let got = decode_fixture(FIXTURE, |line, out| k.decode(line, 7, out), outcome);
        let want = [
            "-",                      // status
            "-",                      // subscribe ack
            "snapshot BTC/USD 12/12", // checksum verified
            "-",                      // heartbeat
            "delta BTC/USD 1/1",      // checksum verified
            "delta BTC/USD 1/0",      // a removal
            "-",                      // a trade
            "delta BTC/USD 2/1",      // a batch
            "-",                      // truncated JSON: the trade mapping counts it
            "lost BTC/USD: checksum mismatch",
            "lost BTC/USD: update before the symbol's snapshot",
            "snapshot BTC/USD 12/12",      // the resync
            "lost BTC/USD: field `price`", // a negative price
            "snapshot BTC/USD 12/12",
            "malformed",         // no checksum
            "delta BTC/USD 1/1", // still in sync
            "-",                 // the refusal
        ];
        assert_eq!(got, want);
    }

    fn kept(price: &str, qty: &str) -> Kept {
        let (price, p) = digits("price", price).unwrap();
        let (qty, q) = digits("qty", qty).unwrap();
        Kept {
            price,
            qty,
            digits: p + &q,
        }
    }

    #[test]
    fn the_copy_keeps_the_subscribed_depth_and_tells_ingest() {
        let mut k = Kraken::new(&["BTC/USD".to_owned()]);
        let bids: Vec<String> = (0..DEPTH)
            .map(|i| format!(r#"{{"price":{}.5,"qty":1.0}}"#, 100 - i))
            .collect();
        let mut copy = Local::default();
        for i in 0..DEPTH {
            set(&mut copy.bids, kept(&format!("{}.5", 100 - i), "1.0"));
        }
        let snap = format!(
            r#"{{"channel":"book","type":"snapshot","data":[{{"symbol":"BTC/USD","bids":[{}],"asks":[],"checksum":{}}}]}}"#,
            bids.join(","),
            copy.checksum()
        );
        let mut out = Vec::new();
        assert_eq!(
            k.decode(snap.as_bytes(), 1, &mut out),
            Ok(Decoded::Book { updates: 1 })
        );
        assert_eq!(out[0].bids.len(), DEPTH);
        // A new best bid pushes the worst (76.5) out of the 25.
        set(&mut copy.bids, kept("101.5", "2.0"));
        copy.bids.pop_first();
        let upd = format!(
            r#"{{"channel":"book","type":"update","data":[{{"symbol":"BTC/USD","bids":[{{"price":101.5,"qty":2.0}}],"asks":[],"checksum":{},"timestamp":"2025-01-01T00:00:01Z"}}]}}"#,
            copy.checksum()
        );
        out.clear();
        assert_eq!(
            k.decode(upd.as_bytes(), 1, &mut out),
            Ok(Decoded::Book { updates: 1 })
        );
        assert_eq!(out[0].bids, [(101.5, 2.0), (76.5, 0.0)]);
        assert_eq!(out[0].exchange_ts, 1_735_689_601_000_000_000);
        // The same update again: the copy's digits no longer match the venue's.
        out.clear();
        let again = upd.replace("\"qty\":2.0", "\"qty\":2.00");
        assert!(matches!(
            k.decode(again.as_bytes(), 1, &mut out),
            Ok(Decoded::Lost { .. })
        ));
    }
}
