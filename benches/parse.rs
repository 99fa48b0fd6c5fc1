//! Upstream message parsing: Binance `trade` messages through the feed's path (simd-json into a
//! borrowed value, mapped by the `binance` mapping) against a plain `serde_json::from_slice` into
//! a borrowed struct, both ending in a validated `RawTick`; then every built-in venue mapping on
//! the trade messages of its fixture (`feeds/fixtures/`), the generic path each feed runs
//! (`parse_venue_mapping/<venue>`), beside a typed serde_json decode of the same messages
//! (`parse_venue_typed/<venue>`, `parse/typed.rs`). Before anything is timed, every fixture line
//! must give the same ticks through both. Throughput is messages per second.
//!
//! `cargo bench -j 1 --bench parse -- --warm-up-time 1 --measurement-time 3` (numbers in
//! BENCHMARKS.md, "Hot paths").
//!
//! On messages this small, building a generic borrowed DOM (and looking fields up by configured
//! name) costs more than serde's typed, single-pass decode; the mapping path pays for being
//! configurable.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;
use std::collections::BTreeMap;

use tickcast::feed::mapping::{Mapping, MessageParser, Parsed, SymbolCase, SymbolMap};
use tickcast::model::{RawTick, Side};

#[path = "parse/typed.rs"]
mod typed;

/// A realistic stream: distinct symbols, prices, times and sides.
fn messages(n: usize) -> Vec<Vec<u8>> {
    let symbols = ["BTCUSDT", "ETHUSDT", "BNBBTC", "SOLUSDT", "XRPUSDT"];
    (0..n)
        .map(|i| {
            format!(
                r#"{{"e":"trade","E":{e},"s":"{s}","t":{t},"p":"{p:.8}","q":"{q:.8}","T":{tt},"m":{m},"M":true}}"#,
                e = 1_735_689_600_000u64 + i as u64 + 2,
                s = symbols[i % symbols.len()],
                t = 4_412_000_000u64 + i as u64,
                p = 97_000.0 + (i % 997) as f64 * 0.01,
                q = 0.001 + (i % 13) as f64 * 0.01,
                tt = 1_735_689_600_000u64 + i as u64,
                m = i % 3 == 0,
            )
            .into_bytes()
        })
        .collect()
}

/// The straightforward alternative: serde_json into a borrowed struct.
#[derive(Deserialize)]
struct Trade<'a> {
    #[serde(rename = "e")]
    event: &'a str,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "p")]
    price: &'a str,
    #[serde(rename = "q")]
    size: &'a str,
    #[serde(rename = "T")]
    time_ms: i64,
    #[serde(rename = "m")]
    buyer_is_maker: bool,
}

fn serde_json_tick(msg: &[u8]) -> Option<RawTick> {
    let t: Trade<'_> = serde_json::from_slice(msg).ok()?;
    if t.event != "trade" {
        return None;
    }
    let tick = RawTick {
        symbol: t.symbol.to_ascii_uppercase(),
        price: t.price.parse().ok()?,
        size: t.size.parse().ok()?,
        side: if t.buyer_is_maker {
            Some(Side::Sell)
        } else {
            Some(Side::Buy)
        },
        exchange_ts: t.time_ms.checked_mul(1_000_000)?,
    };
    tickcast::ingest::validate(&tick).ok()?;
    Some(tick)
}

fn parse(c: &mut Criterion) {
    let msgs = messages(1000);
    let mut g = c.benchmark_group("parse_binance_trade");
    g.throughput(Throughput::Elements(msgs.len() as u64));

    let mut parser = MessageParser::new(Mapping::load("binance").expect("embedded mapping"));
    // Both paths agree before they are timed.
    let mut out = Vec::with_capacity(8);
    for m in &msgs {
        out.clear();
        let a = match parser.parse(m, &mut out) {
            Ok(Parsed::Trades { count: 1, .. }) => out.pop(),
            _ => None,
        };
        assert_eq!(a, serde_json_tick(m));
        assert!(a.is_some());
    }

    g.bench_function("simd_json_mapping", |b| {
        b.iter(|| {
            for m in &msgs {
                out.clear();
                black_box(parser.parse(black_box(m), &mut out).ok());
            }
        })
    });
    g.bench_function("serde_json_struct", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(serde_json_tick(black_box(m)));
            }
        })
    });
    g.finish();
}

/// The messages of a venue's fixture that carry only usable trades, repeated to `n`.
fn venue_messages(parser: &mut MessageParser, fixture: &str, n: usize) -> Vec<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("feeds/fixtures")
        .join(fixture);
    let text = std::fs::read_to_string(path).expect("fixture");
    let mut out = Vec::new();
    let trades: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| {
            matches!(
                parser.parse(l.as_bytes(), &mut out),
                Ok(Parsed::Trades { count: 1.., ref rejected }) if rejected.is_empty()
            )
        })
        .map(|l| l.as_bytes().to_vec())
        .collect();
    assert!(!trades.is_empty(), "{fixture} has trades");
    trades.iter().cycle().take(n).cloned().collect()
}

/// (mapping, fixture, symbols, aliases)
type VenueCase = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

fn venues(c: &mut Criterion) {
    let cases: [VenueCase; 5] = [
        (
            "binance",
            "binance_trades.jsonl",
            &["BTCUSDT", "ETHUSDT", "BNBBTC"],
            &[],
        ),
        (
            "coinbase",
            "coinbase_matches.jsonl",
            &["BTC-USD", "ETH-USD"],
            &[],
        ),
        (
            "kraken",
            "kraken_trades.jsonl",
            &["BTC/USD", "ETH/USD"],
            &[("BTC/USD", "BTC-USD"), ("ETH/USD", "ETH-USD")],
        ),
        ("bybit", "bybit_trades.jsonl", &["BTCUSDT", "ETHUSDT"], &[]),
        ("okx", "okx_trades.jsonl", &["BTC-USDT", "ETH-USDT"], &[]),
    ];
    struct Venue {
        name: &'static str,
        parser: MessageParser,
        decode: typed::Decode,
        symbols: typed::Symbols,
        msgs: Vec<Vec<u8>>,
    }
    let mut set = Vec::new();
    for (venue, fixture, symbols, aliases) in cases {
        let mapping = Mapping::load(venue).expect("built-in mapping");
        let symbols: Vec<String> = symbols.iter().map(|s| s.to_string()).collect();
        let aliases: BTreeMap<String, String> = aliases
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let upper = mapping.symbol_case == SymbolCase::Upper;
        let map = SymbolMap::only(&mapping, &symbols, &aliases);
        let mut parser = MessageParser::with_symbols(mapping, map);
        let decode = typed::decoder(venue).expect("a typed decoder per venue");
        let typed_symbols = typed::Symbols::new(&symbols, &aliases, upper);
        agree(venue, fixture, &mut parser, decode, &typed_symbols);
        let msgs = venue_messages(&mut parser, fixture, 1000);
        set.push(Venue {
            name: venue,
            parser,
            decode,
            symbols: typed_symbols,
            msgs,
        });
    }
    let mut out = Vec::with_capacity(8);
    let mut g = c.benchmark_group("parse_venue_mapping");
    for v in &mut set {
        g.throughput(Throughput::Elements(v.msgs.len() as u64));
        g.bench_function(v.name, |b| {
            b.iter(|| {
                for m in &v.msgs {
                    out.clear();
                    black_box(v.parser.parse(black_box(m), &mut out).ok());
                }
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("parse_venue_typed");
    for v in &set {
        g.throughput(Throughput::Elements(v.msgs.len() as u64));
        g.bench_function(v.name, |b| {
            b.iter(|| {
                for m in &v.msgs {
                    out.clear();
                    black_box((v.decode)(black_box(m), &v.symbols, &mut out));
                }
            })
        });
    }
    g.finish();
}

/// Every line of the fixture gives the same ticks through the mapping and the typed decoder
/// (none for acks, heartbeats, other channels and broken trades; a batch's usable trades), and
/// the benched messages, the all-good trades, give at least one.
fn agree(
    venue: &str,
    fixture: &str,
    parser: &mut MessageParser,
    decode: typed::Decode,
    symbols: &typed::Symbols,
) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("feeds/fixtures")
        .join(fixture);
    let text = std::fs::read_to_string(path).expect("fixture");
    let (mut mapped, mut decoded, mut ticks) = (Vec::new(), Vec::new(), 0);
    for (n, line) in text.lines().enumerate() {
        mapped.clear();
        decoded.clear();
        let _ = parser.parse(line.as_bytes(), &mut mapped);
        let count = decode(line.as_bytes(), symbols, &mut decoded);
        assert_eq!(count, decoded.len(), "{venue} line {}", n + 1);
        assert_eq!(mapped, decoded, "{venue} line {}: {line}", n + 1);
        ticks += mapped.len();
    }
    assert!(ticks > 0, "{venue}: the fixture has usable trades");
}
criterion_group!(benches, parse, venues);
criterion_main!(benches);
