use super::*;
use crate::feed::depth::Decoded;
use crate::feed::mapping::Parsed;

fn cfg(url: &str, mapping: &str) -> UpstreamConfig {
    UpstreamConfig {
        url: url.into(),
        mapping: mapping.into(),
        ..UpstreamConfig::example()
    }
}

#[test]
fn only_a_lasting_lively_unrefused_connection_resets_the_backoff() {
    let after = Duration::from_secs(10);
    let long = Duration::from_secs(11);
    let lively = Signs {
        lives: 1,
        refused: false,
        trades: 1,
    };
    assert!(was_healthy(long, after, lively));
    assert!(was_healthy(after, after, lively));
    // One trade, then dropped at once: no reset (no reconnect storm).
    assert!(!was_healthy(Duration::from_millis(50), after, lively));
    // Long, but silent, or refused and only heartbeats since.
    assert!(!was_healthy(long, after, Signs::default()));
    assert!(!was_healthy(
        long,
        after,
        Signs {
            refused: true,
            ..lively
        }
    ));
}

#[test]
fn construction_refuses_bad_mappings_and_ca_files() {
    assert!(UpstreamFeed::new(&cfg("wss://x/ws", "binance")).is_ok());
    let err = UpstreamFeed::new(&UpstreamConfig {
        ca_file: "/no/such/ca.pem".into(),
        ..cfg("wss://x/ws", "binance")
    })
    .unwrap_err();
    assert!(err.to_string().contains("/no/such/ca.pem"), "{err}");
    let err = UpstreamFeed::new(&cfg("ws://x/ws", "/no/such.toml")).unwrap_err();
    assert!(err.to_string().contains("/no/such.toml"), "{err}");
    assert!(UpstreamFeed::new(&cfg("ws://x/ws", "coinbase")).is_ok());
}

/// Depth subscriptions are refused in the venues' usual error forms, which the trade
/// mappings already report: the decoders leave them (and the acks) to the mapping.
#[test]
fn depth_acks_and_refusals_are_left_to_the_trade_mapping() {
    let cases = [
        (
            "binance",
            r#"{"result":null,"id":2}"#,
            r#"{"error":{"code":2,"msg":"Invalid request: unknown stream xyzusdt@depth20@100ms"},"id":2}"#,
        ),
        (
            "coinbase",
            r#"{"type":"subscriptions","channels":[{"name":"level2_batch","product_ids":["BTC-USD"]}]}"#,
            r#"{"type":"error","message":"Failed to subscribe","reason":"XYZ-USD is not a valid product"}"#,
        ),
        (
            "kraken",
            r#"{"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2025-01-01T00:00:00.000000Z","time_out":"2025-01-01T00:00:00.000100Z"}"#,
            r#"{"error":"Currency pair not supported XYZ/USD","method":"subscribe","success":false,"symbol":"XYZ/USD","time_in":"2025-01-01T00:00:00.000000Z","time_out":"2025-01-01T00:00:00.000100Z"}"#,
        ),
        (
            "bybit",
            r#"{"success":true,"ret_msg":"","conn_id":"c1","req_id":"","op":"subscribe"}"#,
            r#"{"success":false,"ret_msg":"error:handler not found","conn_id":"c1","req_id":"","op":"subscribe"}"#,
        ),
    ];
    for (mapping, ack, refusal) in cases {
        let open = crate::feed::venues::depth_venue(mapping).expect("a depth venue");
        let mut d = open(&["BTCUSDT".to_owned()]).unwrap();
        let mut parser = MessageParser::new(Mapping::load(mapping).unwrap());
        let mut out = Vec::new();
        let mut ticks = Vec::new();
        for msg in [ack, refusal] {
            assert_eq!(
                d.decode(msg.as_bytes(), 1, &mut out),
                Ok(Decoded::NotDepth),
                "{msg}"
            );
        }
        assert!(
            matches!(
                parser.parse(ack.as_bytes(), &mut ticks),
                Ok(Parsed::Ignored { .. })
            ),
            "{mapping} ack"
        );
        assert!(
            matches!(
                parser.parse(refusal.as_bytes(), &mut ticks),
                Ok(Parsed::SubscribeError { .. })
            ),
            "{mapping} refusal"
        );
        assert!(out.is_empty() && ticks.is_empty());
    }
}
