use super::*;

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
