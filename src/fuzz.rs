//! Property-based fuzz targets for every decoder that a client, a file or a venue controls: the
//! WebSocket op decoder, the time parsers, each built-in upstream mapping, each venue depth
//! decoder and the replay record reader. Each target feeds arbitrary input, and mutations of valid input, and holds the same
//! contract: no panic, and whatever is accepted is a valid value (ticks pass ingest's checks).
//!
//! The test run takes proptest's default case count (fast, in CI). For a long local run, raise
//! it: `PROPTEST_CASES=200000 cargo test --lib fuzz::`. Proptest saves the inputs of any failure
//! under `proptest-regressions/` and replays them first on later runs.

use std::path::Path;

use proptest::prelude::*;

use crate::feed::mapping::{Mapping, MessageParser};
use crate::feed::replay::{Records, ReplayFormat};
use crate::ingest::validate;
use crate::model::RawTick;
use crate::protocol::{ClientOp, parse_channel, parse_op};
use crate::timestamp;

/// Valid messages to mutate: every line of every venue fixture, and a few valid ops.
fn fixture_lines(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("feeds/fixtures")
        .join(name);
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

const VENUES: [(&str, &str); 5] = [
    ("binance", "binance_trades.jsonl"),
    ("coinbase", "coinbase_matches.jsonl"),
    ("kraken", "kraken_trades.jsonl"),
    ("bybit", "bybit_trades.jsonl"),
    ("okx", "okx_trades.jsonl"),
];

const DEPTH: [(&str, &str, &str); 4] = [
    ("binance", "BTCUSDT", "binance_depth.jsonl"),
    ("coinbase", "BTC-USD", "coinbase_level2.jsonl"),
    ("kraken", "BTC/USD", "kraken_book.jsonl"),
    ("bybit", "BTCUSDT", "bybit_orderbook.jsonl"),
];

const OPS: [&str; 5] = [
    r#"{"op":"subscribe","id":1,"channels":["ticks:AAPL","indicators:*"],"from":{"ticks:AAPL":95},"throttle_ms":250,"snapshot":5,"epoch":7}"#,
    r#"{"op":"unsubscribe","id":2,"channels":["ticks:AAPL"]}"#,
    r#"{"op":"ping","id":3}"#,
    r#"{"op":"list"}"#,
    r#"{"op":"subscribe","channels":["bars.1m:BTC-USD"]}"#,
];

/// `s` with one byte at `at` replaced, one byte removed, or one inserted (by `how`).
fn mutate(s: &str, at: usize, byte: u8, how: u8) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    if b.is_empty() {
        return vec![byte];
    }
    let i = at % b.len();
    match how % 3 {
        0 => b[i] = byte,
        1 => {
            b.remove(i);
        }
        _ => b.insert(i, byte),
    }
    b
}

fn accepted_tick_is_valid(t: &RawTick) -> Result<(), TestCaseError> {
    prop_assert!(validate(t).is_ok(), "accepted an invalid tick: {t:?}");
    Ok(())
}

proptest! {
    #[test]
    fn op_decoder_never_panics(text in "\\PC{0,200}") {
        if let Ok(op) = parse_op(&text)
            && let ClientOp::Subscribe { channels, .. } = op
        {
            for c in &channels {
                let _ = parse_channel(c);
            }
        }
    }

    #[test]
    fn op_decoder_survives_mutated_ops(which in 0usize..OPS.len(), at in any::<usize>(), byte in any::<u8>(), how in any::<u8>()) {
        let bytes = mutate(OPS[which], at, byte, how);
        let text = String::from_utf8_lossy(&bytes);
        match parse_op(&text) {
            Ok(op) => prop_assert!(op.id().is_none_or(|_| text.contains("\"id\""))),
            Err(bad) => prop_assert!(!bad.message.is_empty()),
        }
    }

    #[test]
    fn channel_names_never_panic(name in "\\PC{0,64}") {
        let _ = parse_channel(&name);
    }

    #[test]
    fn time_parsers_never_panic(text in "\\PC{0,48}", n in any::<i64>()) {
        if let Ok(ns) = timestamp::parse(&text) {
            prop_assert!(ns > 0, "{text:?} -> {ns}");
        }
        let _ = timestamp::parse_range_bound(&text);
        if let Ok(ns) = timestamp::from_integer(n) {
            prop_assert!(ns > 0);
        }
    }

    #[test]
    fn time_parsers_survive_mutated_times(
        which in 0usize..4, at in any::<usize>(), byte in any::<u8>(), how in any::<u8>()
    ) {
        let valid = ["2024-01-02T14:30:00.097Z", "2024-02-29T23:59:60+05:30", "1704205800097", "1704205800097000000"];
        let bytes = mutate(valid[which], at, byte, how);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(ns) = timestamp::parse(&text) {
            prop_assert!(ns > 0);
        }
    }

    #[test]
    fn venue_mappings_never_panic_and_accept_only_valid_ticks(
        venue in 0usize..VENUES.len(), line in any::<usize>(),
        at in any::<usize>(), byte in any::<u8>(), how in any::<u8>(), noise in proptest::collection::vec(any::<u8>(), 0..64)
    ) {
        let (mapping, fixture) = VENUES[venue];
        let lines = fixture_lines(fixture);
        prop_assume!(!lines.is_empty());
        let mut parser = MessageParser::new(Mapping::load(mapping).expect("built-in mapping"));
        let mut out = Vec::new();
        let mutated = mutate(&lines[line % lines.len()], at, byte, how);
        let _ = parser.parse(&mutated, &mut out);
        let _ = parser.parse(&noise, &mut out);
        for t in &out {
            accepted_tick_is_valid(t)?;
        }
    }

    #[test]
    fn depth_decoders_never_panic_and_accept_only_valid_levels(
        venue in 0usize..DEPTH.len(), line in any::<usize>(),
        at in any::<usize>(), byte in any::<u8>(), how in any::<u8>(), noise in proptest::collection::vec(any::<u8>(), 0..64)
    ) {
        let (name, symbol, fixture) = DEPTH[venue];
        let lines = fixture_lines(fixture);
        prop_assume!(!lines.is_empty());
        let open = crate::feed::venues::depth_venue(name).expect("a depth venue");
        let mut d = open(&[symbol.to_owned()]).expect("one symbol");
        let mut out = Vec::new();
        // The fixture up to the line, so the mutation meets a synced book.
        let n = line % lines.len();
        for l in &lines[..n] {
            let _ = d.decode(l.as_bytes(), 1, &mut out);
        }
        let mutated = mutate(&lines[n], at, byte, how);
        let _ = d.decode(&mutated, 1, &mut out);
        let _ = d.decode(&noise, 1, &mut out);
        for u in &out {
            for &(price, size) in u.bids.iter().chain(&u.asks) {
                prop_assert!(price.is_finite() && price > 0.0 && size.is_finite() && size >= 0.0, "{u:?}");
            }
            prop_assert!(u.exchange_ts > 0, "{u:?}");
        }
    }

    #[test]
    fn replay_records_never_panic_and_accept_only_valid_ticks(
        body in "\\PC{0,300}", jsonl in any::<bool>()
    ) {
        let (format, text) = if jsonl {
            (ReplayFormat::Jsonl, body)
        } else {
            (ReplayFormat::Csv, format!("timestamp,symbol,price,size,side\n{body}"))
        };
        if let Ok(records) = Records::new(text.as_bytes(), format) {
            for (_, record) in records {
                if let Ok(t) = record {
                    accepted_tick_is_valid(&t)?;
                }
            }
        }
    }

    #[test]
    fn replay_records_survive_mutated_lines(
        at in any::<usize>(), byte in any::<u8>(), how in any::<u8>(), jsonl in any::<bool>()
    ) {
        let (format, line) = if jsonl {
            (ReplayFormat::Jsonl, r#"{"ts":1704205800097,"symbol":"AAPL","price":187.15,"size":100,"side":"buy"}"#)
        } else {
            (ReplayFormat::Csv, "1704205800097,AAPL,187.15,100,buy")
        };
        let mutated = mutate(line, at, byte, how);
        let mut text = if jsonl { Vec::new() } else { b"ts,symbol,price,size,side\n".to_vec() };
        text.extend_from_slice(&mutated);
        if let Ok(records) = Records::new(&text[..], format) {
            for (_, record) in records {
                if let Ok(t) = record {
                    accepted_tick_is_valid(&t)?;
                }
            }
        }
    }
}
