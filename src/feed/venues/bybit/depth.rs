//! Bybit v5 `orderbook.50.<SYMBOL>`: `{"topic":"orderbook.50.BTCUSDT","type":"snapshot"|"delta",
//! "ts":1672304484978,"data":{"s":"BTCUSDT","b":[["16493.50","0.006"]],"a":[...],"u":18521288,
//! "seq":7961638724}}`. A `snapshot`, or any message with `u == 1` (Bybit restarted its
//! service), replaces the book; a delta's `u` must be the previous `u + 1`, otherwise updates
//! were lost: a gap, and so is a delta before the symbol's snapshot or one that cannot be used.

use std::collections::HashMap;

use serde::Deserialize;

use crate::book::BookUpdate;
use crate::feed::depth::{Decoded, DepthError, DepthStream, json_list, levels, ms_to_ns};

/// The topic prefix; 50 levels per side.
const TOPIC: &str = "orderbook.50.";

#[derive(Debug)]
pub struct Bybit {
    symbols: Vec<String>,
    /// Each symbol's last `u` on this connection, from its snapshot on.
    last_u: HashMap<String, u64>,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    topic: Option<&'a str>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    ts: i64,
    #[serde(borrow)]
    data: Data<'a>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow)]
    s: &'a str,
    #[serde(borrow)]
    b: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    a: Vec<[&'a str; 2]>,
    u: u64,
}

impl Bybit {
    pub fn new(symbols: &[String]) -> Self {
        Self {
            symbols: symbols.to_vec(),
            last_u: HashMap::new(),
        }
    }

    fn message(&mut self, msg: &[u8], topic_symbol: &str) -> Result<BookUpdate, String> {
        let m: Message<'_> = serde_json::from_slice(msg).map_err(|e| {
            DepthError::Malformed {
                venue: "bybit",
                message: e.to_string(),
            }
            .to_string()
        })?;
        if m.data.s != topic_symbol {
            return Err(format!(
                "data.s {:?} is not the topic's symbol {topic_symbol:?}",
                m.data.s
            ));
        }
        let snapshot = match m.kind {
            "snapshot" => true,
            "delta" => m.data.u == 1,
            other => return Err(format!("type must be snapshot or delta, got {other:?}")),
        };
        if !snapshot {
            match self.last_u.get(topic_symbol) {
                None => return Err("delta before the symbol's snapshot".to_owned()),
                Some(&last) if last.checked_add(1) != Some(m.data.u) => {
                    return Err(format!("gap: u {} after {last}", m.data.u));
                }
                Some(_) => {}
            }
        }
        let update = BookUpdate {
            symbol: topic_symbol.to_owned(),
            snapshot,
            bids: levels(&m.data.b).map_err(|e| e.to_string())?,
            asks: levels(&m.data.a).map_err(|e| e.to_string())?,
            exchange_ts: ms_to_ns("ts", m.ts).map_err(|e| e.to_string())?,
        };
        self.last_u.insert(topic_symbol.to_owned(), m.data.u);
        Ok(update)
    }
}

/// Opens Bybit's depth stream for `symbols` (the venue's spelling).
pub(super) fn open(symbols: &[String]) -> Result<Box<dyn DepthStream>, DepthError> {
    Ok(Box::new(Bybit::new(symbols)))
}

impl DepthStream for Bybit {
    fn subscribe_messages(&self) -> Vec<String> {
        vec![format!(
            r#"{{"op":"subscribe","args":{}}}"#,
            json_list(self.symbols.iter().map(|s| format!("{TOPIC}{s}")))
        )]
    }

    /// Unsubscribe and subscribe again to one symbol's topic: Bybit sends a fresh snapshot.
    fn resync_messages(&mut self, symbol: &str) -> Option<Vec<String>> {
        self.last_u.remove(symbol);
        let topic = json_list([format!("{TOPIC}{symbol}")]);
        Some(vec![
            format!(r#"{{"op":"unsubscribe","args":{topic}}}"#),
            format!(r#"{{"op":"subscribe","args":{topic}}}"#),
        ])
    }

    fn reset(&mut self) {
        self.last_u.clear();
    }

    fn decode(
        &mut self,
        msg: &[u8],
        _now_ns: i64,
        out: &mut Vec<BookUpdate>,
    ) -> Result<Decoded, DepthError> {
        let symbol = match serde_json::from_slice::<Probe<'_>>(msg) {
            Ok(Probe { topic: Some(t) }) => match t.strip_prefix(TOPIC) {
                Some(symbol) => symbol.to_owned(),
                None => return Ok(Decoded::NotDepth),
            },
            _ => return Ok(Decoded::NotDepth),
        };
        match self.message(msg, &symbol) {
            Ok(update) => {
                out.push(update);
                Ok(Decoded::Book { updates: 1 })
            }
            Err(reason) => {
                self.last_u.remove(&symbol);
                Ok(Decoded::Lost { symbol, reason })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::depth::{decode_fixture, describe};

    const FIXTURE: &str = include_str!("../../../../feeds/fixtures/bybit_orderbook.jsonl");

    fn outcome(r: Result<Decoded, DepthError>, out: &[BookUpdate]) -> String {
        match r {
            Ok(Decoded::NotDepth) => "-".to_owned(),
            Ok(Decoded::Book { .. }) => describe(&out[0]),
            Ok(Decoded::Stale { .. }) => panic!("no stale on bybit"),
            Ok(Decoded::Lost { symbol, reason }) => {
                format!("lost {symbol}: {}", reason.split(':').next().unwrap_or(""))
            }
            Err(e) => format!("error {e}"),
        }
    }

    #[test]
    fn subscribe_message() {
        let b = Bybit::new(&["BTCUSDT".to_owned(), "ETHUSDT".to_owned()]);
        assert_eq!(
            b.subscribe_messages(),
            [r#"{"op":"subscribe","args":["orderbook.50.BTCUSDT","orderbook.50.ETHUSDT"]}"#]
        );
    }

    #[test]
    fn the_fixture_decodes_line_by_line() {
        let mut b = Bybit::new(&["BTCUSDT".to_owned()]);
        let got = decode_fixture(FIXTURE, |line, out| b.decode(line, 0, out), outcome);
        let want = [
            "-",                    // subscribe ack
            "snapshot BTCUSDT 5/5", // u 1000
            "delta BTCUSDT 1/1",    // u 1001
            "-",                    // pong
            "delta BTCUSDT 0/1",    // u 1002
            "-",                    // a trade
            "-",                    // orderbook.1: another depth, not subscribed
            "lost BTCUSDT: gap",    // u 1004 after 1002
            "lost BTCUSDT: delta before the symbol's snapshot",
            "snapshot BTCUSDT 5/5",       // u 2000: the resync
            "delta BTCUSDT 1/0",          // u 2001
            "-",                          // truncated JSON
            "lost BTCUSDT: field `size`", // "abc"
            "snapshot BTCUSDT 5/5",       // u 1: a service restart, as a delta
            "delta BTCUSDT 1/1",          // u 2
            "-",                          // the refusal
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn out_of_range_and_mismatched_messages_lose_sync() {
        let mut b = Bybit::new(&["BTCUSDT".to_owned()]);
        let mut out = Vec::new();
        let snap = r#"{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":5,"seq":1}}"#;
        assert!(matches!(
            b.decode(snap.as_bytes(), 0, &mut out),
            Ok(Decoded::Book { .. })
        ));
        for bad in [
            snap.replace("\"ts\":1", "\"ts\":-1"),
            snap.replace("\"s\":\"BTCUSDT\"", "\"s\":\"ETHUSDT\""),
            snap.replace("\"snapshot\"", "\"other\""),
            snap.replace("\"u\":5", "\"u\":\"5\""),
        ] {
            assert!(
                matches!(
                    b.decode(bad.as_bytes(), 0, &mut out),
                    Ok(Decoded::Lost { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(out.len(), 1);
    }
}
