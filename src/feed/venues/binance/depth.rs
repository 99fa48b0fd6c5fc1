//! Binance spot partial book depth, `<symbol>@depth20@100ms`: every message is the top 20
//! levels per side, `{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}`,
//! so each one is the whole top of the book and no REST snapshot is needed. The first message
//! of a connection is sent to ingest as a snapshot; each later one as the difference from the
//! last one applied (its new or changed levels, and size 0 for the prices it no longer has),
//! which leaves ingest's book exactly the latest top 20 while clients get deltas rather than a
//! reset every 100 ms. On the raw `/ws` endpoint the trade mapping uses, these messages do not
//! name their symbol, so a depth feed follows one symbol (configuration refuses more). A
//! `lastUpdateId` below the previous one is stale: dropped and counted.

use serde::Deserialize;

use crate::book::{BookUpdate, BookView};
use crate::feed::depth::{Decoded, DepthError, DepthStream, json_list, levels};

/// The subscribe request's id (the trade subscribe uses 1).
const SUBSCRIBE_ID: u32 = 2;

#[derive(Debug)]
pub struct Binance {
    symbol: String,
    last_update_id: Option<u64>,
    /// The last book applied on this connection (bids, asks).
    last: Option<BookView>,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "lastUpdateId")]
    last_update_id: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Depth<'a> {
    #[serde(rename = "lastUpdateId")]
    last_update_id: u64,
    #[serde(borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    asks: Vec<[&'a str; 2]>,
}

impl Binance {
    pub fn new(symbols: &[String]) -> Result<Self, DepthError> {
        match symbols {
            [one] => Ok(Self {
                symbol: one.clone(),
                last_update_id: None,
                last: None,
            }),
            _ => Err(DepthError::BinanceSymbols(symbols.len())),
        }
    }
}

/// Opens Binance's depth stream for `symbols` (the venue's spelling).
pub(super) fn open(symbols: &[String]) -> Result<Box<dyn DepthStream>, DepthError> {
    Ok(Box::new(Binance::new(symbols)?))
}

impl DepthStream for Binance {
    fn subscribe_messages(&self) -> Vec<String> {
        let stream = format!("{}@depth20@100ms", self.symbol.to_ascii_lowercase());
        vec![format!(
            r#"{{"method":"SUBSCRIBE","params":{},"id":{SUBSCRIBE_ID}}}"#,
            json_list([stream])
        )]
    }

    fn reset(&mut self) {
        self.last_update_id = None;
        self.last = None;
    }

    fn decode(
        &mut self,
        msg: &[u8],
        now_ns: i64,
        out: &mut Vec<BookUpdate>,
    ) -> Result<Decoded, DepthError> {
        match serde_json::from_slice::<Probe>(msg) {
            Ok(Probe {
                last_update_id: Some(_),
            }) => {}
            _ => return Ok(Decoded::NotDepth),
        }
        let d: Depth<'_> = serde_json::from_slice(msg).map_err(|e| DepthError::Malformed {
            venue: "binance",
            message: e.to_string(),
        })?;
        if self
            .last_update_id
            .is_some_and(|last| d.last_update_id < last)
        {
            return Ok(Decoded::Stale {
                symbol: self.symbol.clone(),
            });
        }
        let book = BookView {
            bids: levels(&d.bids)?,
            asks: levels(&d.asks)?,
        };
        // Each message is the whole top 20; after the first, what changed is sent, so clients
        // get deltas rather than a reset every 100 ms.
        let (snapshot, changed) = match &self.last {
            None => (true, book.clone()),
            Some(old) => (false, old.diff(&book)),
        };
        let update = BookUpdate {
            symbol: self.symbol.clone(),
            snapshot,
            bids: changed.bids,
            asks: changed.asks,
            exchange_ts: now_ns,
        };
        self.last_update_id = Some(d.last_update_id);
        self.last = Some(book);
        out.push(update);
        Ok(Decoded::Book { updates: 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::depth::decode_fixture;

    const FIXTURE: &str = include_str!("../../../../feeds/fixtures/binance_depth.jsonl");

    #[test]
    fn subscribe_message() {
        let b = Binance::new(&["BTCUSDT".to_owned()]).unwrap();
        assert_eq!(
            b.subscribe_messages(),
            [r#"{"method":"SUBSCRIBE","params":["btcusdt@depth20@100ms"],"id":2}"#]
        );
        assert_eq!(
            Binance::new(&["A".to_owned(), "B".to_owned()]).unwrap_err(),
            DepthError::BinanceSymbols(2)
        );
    }

    /// One word per fixture line: what the decoder made of it.
    fn outcome(r: Result<Decoded, DepthError>, out: &[BookUpdate]) -> String {
        match r {
            Ok(Decoded::NotDepth) => "-".to_owned(),
            Ok(Decoded::Book { updates }) => {
                assert_eq!(updates, out.len());
                let u = &out[0];
                assert_eq!((u.symbol.as_str(), u.exchange_ts), ("BTCUSDT", 7));
                let kind = if u.snapshot { "snapshot" } else { "delta" };
                format!("{kind} {}/{}", u.bids.len(), u.asks.len())
            }
            Ok(Decoded::Stale { symbol }) => format!("stale {symbol}"),
            Ok(Decoded::Lost { .. }) => panic!("binance never loses sync"),
            Err(DepthError::Malformed { .. }) => "malformed".to_owned(),
            Err(DepthError::Field { field, .. }) => format!("bad {field}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_fixture_decodes_line_by_line() {
        let mut b = Binance::new(&["BTCUSDT".to_owned()]).unwrap();
        let got = decode_fixture(FIXTURE, |line, out| b.decode(line, 7, out), outcome);
        let want = [
            "-",             // the subscribe ack: the trade mapping's
            "snapshot 5/5",  // lastUpdateId 1027024, the connection's first
            "-",             // a trade
            "delta 3/1",     // 1027030: 97250.00 changed, 97247.50 new, 97248.00 and 97250.01 gone
            "stale BTCUSDT", // 1027025 < 1027030
            "delta 2/1",     // 1027031: a new best bid, 97247.50 gone; a new best ask
            "-",             // truncated JSON: the trade mapping counts it
            "bad price",     // a price of 0
            "bad size",      // a size "abc"
            "malformed",     // lastUpdateId as a string
            "delta 1/0",     // 1027040: the best bid's size
            "-",             // the refusal: the trade mapping reports it
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn levels_are_exact_and_a_new_connection_accepts_any_id() {
        let mut b = Binance::new(&["BTCUSDT".to_owned()]).unwrap();
        let mut out = Vec::new();
        let msg = r#"{"lastUpdateId":10,"bids":[["97250.00","1.5"],["97249.50","0.25"]],"asks":[["97250.01","0.2"]]}"#;
        assert_eq!(
            b.decode(msg.as_bytes(), 5, &mut out),
            Ok(Decoded::Book { updates: 1 })
        );
        assert_eq!(out[0].bids, [(97250.0, 1.5), (97249.5, 0.25)]);
        assert_eq!(out[0].asks, [(97250.01, 0.2)]);
        let older = r#"{"lastUpdateId":9,"bids":[],"asks":[]}"#;
        assert!(matches!(
            b.decode(older.as_bytes(), 5, &mut out),
            Ok(Decoded::Stale { .. })
        ));
        b.reset();
        assert_eq!(
            b.decode(older.as_bytes(), 5, &mut out),
            Ok(Decoded::Book { updates: 1 })
        );
    }
}
