//! The parser against each venue's fixture and hand-written edge cases.

use std::path::Path;

use super::*;

fn fixture(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("feeds/fixtures")
        .join(name);
    std::fs::read_to_string(path)
        .expect("fixture exists")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn tick(sym: &str, price: f64, size: f64, side: Side, ts: i64) -> RawTick {
    RawTick::new(sym, price, size, side, ts)
}

/// Everything a fixture maps to, message by message.
#[derive(Debug, Default)]
struct Outcome {
    trades: Vec<RawTick>,
    ignored: Vec<Option<String>>,
    heartbeats: usize,
    refused: Vec<String>,
    /// Unusable messages plus unusable elements of batches.
    errors: usize,
    not_subscribed: usize,
}

/// Configured symbols and their aliases.
type Symbols<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

fn check_with(mapping: &str, fixture_name: &str, symbols: Option<Symbols<'_>>) -> Outcome {
    let m = Mapping::load(mapping).expect("mapping loads");
    let symbols = match symbols {
        None => SymbolMap::any(),
        Some((names, aliases)) => {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            let aliases = aliases
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            SymbolMap::only(&m, &names, &aliases)
        }
    };
    let mut p = MessageParser::with_symbols(m, symbols);
    let mut o = Outcome::default();
    let count = |e: &MessageError, o: &mut Outcome| {
        if e.is_not_subscribed() {
            o.not_subscribed += 1;
        } else {
            o.errors += 1;
        }
    };
    for line in fixture(fixture_name) {
        match p.parse(line.as_bytes(), &mut o.trades) {
            Ok(Parsed::Trades { rejected, .. }) => {
                rejected.iter().for_each(|e| count(e, &mut o));
            }
            Ok(Parsed::Ignored { kind }) => o.ignored.push(kind),
            Ok(Parsed::Heartbeat) => o.heartbeats += 1,
            Ok(Parsed::SubscribeError { message }) => o.refused.push(message),
            Err(e) => count(&e, &mut o),
        }
    }
    o
}

fn check(mapping: &str, fixture_name: &str) -> (Vec<RawTick>, Vec<Option<String>>, usize) {
    let o = check_with(mapping, fixture_name, None);
    (o.trades, o.ignored, o.errors)
}

#[test]
fn binance_fixture_maps_exactly() {
    let (trades, ignored, errors) = check("binance", "binance_trades.jsonl");
    let ms = 1_000_000;
    assert_eq!(
        trades,
        vec![
            tick("BNBBTC", 0.001, 100.0, Side::Sell, 123_456_785 * ms),
            tick(
                "BTCUSDT",
                97250.01,
                0.0015,
                Side::Buy,
                1_735_689_600_123 * ms
            ),
            tick("BTCUSDT", 97250.5, 0.25, Side::Sell, 1_735_689_600_250 * ms),
            tick("ETHUSDT", 3401.27, 1.2, Side::Buy, 1_735_689_600_301 * ms),
            tick("BTCUSDT", 97249.99, 0.01, Side::Buy, 1_735_689_601_002 * ms),
            tick("ETHUSDT", 3401.3, 0.5, Side::Sell, 1_735_689_601_480 * ms),
        ]
    );
    assert_eq!(
        ignored,
        vec![
            None,
            Some("aggTrade".to_owned()),
            Some("24hrTicker".to_owned())
        ]
    );
    assert_eq!(errors, 3, "malformed JSON, bad price, missing quantity");
    let o = check_with(
        "binance",
        "binance_trades.jsonl",
        Some((&["btcusdt", "ETHUSDT"], &[])),
    );
    assert_eq!(o.trades.len(), 5, "BNBBTC is not subscribed");
    assert_eq!(o.not_subscribed, 1);
    assert_eq!(
        o.refused,
        vec!["Invalid request: unknown stream xyzusdt@trade".to_owned()]
    );
}

#[test]
fn kraken_fixture_maps_exactly_with_aliases() {
    let o = check_with(
        "kraken",
        "kraken_trades.jsonl",
        Some((
            &["BTC/USD", "ETH/USD"],
            &[("BTC/USD", "BTC-USD"), ("ETH/USD", "ETH-USD")],
        )),
    );
    let t0 = 1_735_689_600_000_000_000;
    assert_eq!(
        o.trades,
        vec![
            tick("BTC-USD", 97250.1, 0.0015, Side::Buy, t0 + 123_456_000),
            tick("BTC-USD", 97250.0, 0.25, Side::Sell, t0 + 123_456_000),
            tick("ETH-USD", 3401.27, 1.2, Side::Sell, t0 + 301_000_000),
            tick("BTC-USD", 97251.5, 0.01, Side::Buy, t0 + 1_000_000_000),
            tick("ETH-USD", 3401.3, 0.5, Side::Buy, t0 + 1_480_000_000),
        ]
    );
    assert_eq!(
        o.ignored,
        vec![Some("status".to_owned()), None, Some("ticker".to_owned())]
    );
    assert_eq!(o.heartbeats, 2);
    assert_eq!(o.not_subscribed, 1, "XRP/USD");
    assert_eq!(
        o.errors, 4,
        "price as a string, a negative price in a batch, malformed JSON, data not an array"
    );
    assert_eq!(
        o.refused,
        vec!["Currency pair not supported XYZ/USD".to_owned()]
    );
    // Without an alias, "BTC/USD" is not a valid tickcast symbol: every trade is refused.
    let o = check_with("kraken", "kraken_trades.jsonl", None);
    assert!(o.trades.is_empty(), "{:?}", o.trades);
}

#[test]
fn bybit_fixture_maps_exactly() {
    let o = check_with(
        "bybit",
        "bybit_trades.jsonl",
        Some((&["BTCUSDT", "ETHUSDT"], &[])),
    );
    let ms = 1_000_000;
    assert_eq!(
        o.trades,
        vec![
            tick(
                "BTCUSDT",
                97250.01,
                0.0015,
                Side::Buy,
                1_735_689_600_123 * ms
            ),
            tick("ETHUSDT", 3401.27, 1.2, Side::Buy, 1_735_689_600_301 * ms),
            tick("ETHUSDT", 3401.26, 0.8, Side::Sell, 1_735_689_600_301 * ms),
            tick(
                "BTCUSDT",
                97249.99,
                0.01,
                Side::Sell,
                1_735_689_601_002 * ms
            ),
            tick("ETHUSDT", 3401.3, 0.5, Side::Sell, 1_735_689_601_480 * ms),
        ]
    );
    assert_eq!(
        o.ignored,
        vec![None, Some("orderbook.1.BTCUSDT".to_owned())]
    );
    assert_eq!(o.heartbeats, 2, "spot and derivatives pong");
    assert_eq!(o.not_subscribed, 1, "SOLUSDT");
    assert_eq!(o.errors, 3, "side Hold, malformed JSON, size 0 in a batch");
    assert_eq!(o.refused, vec!["error:handler not found".to_owned()]);
}

#[test]
fn okx_fixture_maps_exactly() {
    let o = check_with(
        "okx",
        "okx_trades.jsonl",
        Some((&["BTC-USDT", "ETH-USDT"], &[])),
    );
    let ms = 1_000_000;
    assert_eq!(
        o.trades,
        vec![
            tick(
                "BTC-USDT",
                97250.1,
                0.0015,
                Side::Buy,
                1_735_689_600_123 * ms
            ),
            tick("ETH-USDT", 3401.27, 1.2, Side::Sell, 1_735_689_600_301 * ms),
            tick(
                "BTC-USDT",
                97249.99,
                0.01,
                Side::Sell,
                1_735_689_601_002 * ms
            ),
            tick("ETH-USDT", 3401.3, 0.5, Side::Buy, 1_735_689_601_480 * ms),
        ]
    );
    assert_eq!(
        o.ignored,
        vec![
            Some("subscribe".to_owned()),
            Some("subscribe".to_owned()),
            Some("tickers".to_owned())
        ]
    );
    assert_eq!(o.heartbeats, 2, "the text pong");
    assert_eq!(o.errors, 3, "ts 1.7e12, malformed JSON, missing sz");
    assert_eq!(o.refused.len(), 1);
    assert!(
        o.refused[0].starts_with("Wrong URL or channel"),
        "{:?}",
        o.refused
    );
}

fn custom(side_rule: &str, numbers: &str, time_format: &str) -> Mapping {
    let text = format!(
        r#"
type_field = "t"
type_value = "x"
symbol_field = "s"
price_field = "p"
size_field = "q"
side_field = "d"
side_rule = "{side_rule}"
time_field = "ts"
time_format = "{time_format}"
numbers = "{numbers}"
symbol_case = "keep"
subscribe = '{{"sub":{{symbols}}}}'
subscribe_symbol = "{{symbol}}"
"#
    );
    Mapping::from_toml("custom", &text).expect("valid mapping")
}

/// One message: its single trade, or what else it was.
fn one(m: &Mapping, msg: &str) -> Result<Result<RawTick, Parsed>, MessageError> {
    let mut out = Vec::new();
    let parsed = MessageParser::new(m.clone()).parse(msg.as_bytes(), &mut out)?;
    Ok(match (parsed, out.pop()) {
        (Parsed::Trades { count: 1, .. }, Some(t)) => Ok(t),
        (other, _) => Err(other),
    })
}

#[test]
fn side_rules() {
    let cases = [
        ("taker", r#""buy""#, Ok(Side::Buy)),
        ("taker", r#""sell""#, Ok(Side::Sell)),
        ("maker", r#""buy""#, Ok(Side::Sell)),
        ("maker", r#""sell""#, Ok(Side::Buy)),
        ("buyer_is_maker", "true", Ok(Side::Sell)),
        ("buyer_is_maker", "false", Ok(Side::Buy)),
        ("buyer_is_maker", r#""true""#, Err(())),
        ("taker", r#""hold""#, Err(())),
        ("maker", "1", Err(())),
    ];
    for (rule, value, want) in cases {
        let m = custom(rule, "any", "ms");
        let msg = format!(r#"{{"t":"x","s":"A","p":1,"q":1,"d":{value},"ts":5}}"#);
        let got = match one(&m, &msg) {
            Ok(Ok(t)) => t.side.ok_or(()),
            Ok(Err(other)) => panic!("{rule} {value}: {other:?}"),
            Err(_) => Err(()),
        };
        assert_eq!(got, want, "{rule} {value}");
    }
}

#[test]
fn numbers_and_times_follow_the_mapping() {
    let ok = |numbers, fmt, p: &str, ts: &str| -> Result<(f64, i64), String> {
        let m = custom("taker", numbers, fmt);
        let msg = format!(r#"{{"t":"x","s":"A","p":{p},"q":"2","d":"buy","ts":{ts}}}"#);
        match one(&m, &msg) {
            Ok(Ok(t)) => Ok((t.price, t.exchange_ts)),
            Ok(Err(other)) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    };
    assert_eq!(ok("string", "ms", r#""1.5""#, "7"), Ok((1.5, 7_000_000)));
    assert_eq!(ok("any", "us", "2", r#""7""#), Ok((2.0, 7_000)));
    assert_eq!(ok("any", "ns", "2.25", "7"), Ok((2.25, 7)));
    assert_eq!(
        ok("any", "rfc3339", "3", r#""1970-01-01T00:00:01.5Z""#),
        Ok((3.0, 1_500_000_000))
    );
    // "number" mapping refuses the string size "2".
    assert!(ok("number", "ms", "1", "7").unwrap_err().contains("`q`"));
    assert!(ok("string", "ms", "1", "7").unwrap_err().contains("`p`"));
    assert!(
        ok("string", "ms", r#""x1""#, "7")
            .unwrap_err()
            .contains("not a number")
    );
    assert!(ok("any", "ms", "0", "7").unwrap_err().contains("price"));
    assert!(ok("any", "ms", "1", "-7").unwrap_err().contains("`ts`"));
    assert!(
        ok("any", "ms", "1", "9999999999999999")
            .unwrap_err()
            .contains("range")
    );
    assert!(ok("any", "rfc3339", "1", "7").unwrap_err().contains("`ts`"));
    assert!(ok("any", "ms", "1", "1.5").unwrap_err().contains("`ts`"));
}

#[test]
fn non_objects_and_other_types_are_ignored() {
    let m = Mapping::load("binance").unwrap();
    for msg in ["[]", "42", r#"{"result":null,"id":1}"#, r#"{"e":7}"#] {
        assert!(
            matches!(one(&m, msg), Ok(Err(Parsed::Ignored { .. }))),
            "{msg}"
        );
    }
    assert!(matches!(one(&m, "{"), Err(MessageError::Json(_))));
}
