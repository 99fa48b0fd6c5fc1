//! Graceful shutdown: queued events are flushed, then every socket gets 1001.

use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::util::{self, Got};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_then_closes_every_socket_with_1001() {
    let mut srv = util::start(util::config()).await;
    srv.ingest_n("AAPL", 1, 0.0).await;
    srv.wait_seq("AAPL", 1).await;
    let mut a = srv.connect().await;
    a.subscribe(json!({"op":"subscribe","channels":["ticks:AAPL"]}))
        .await;
    a.event_of("snapshot").await;
    let mut b = srv.connect().await;

    // Ingested just before the stop: must still reach the subscriber.
    srv.ingest_n("AAPL", 50, 0.0).await;
    srv.shutdown().await;

    let mut seqs = Vec::new();
    let code = loop {
        match a.next().await {
            Got::Event(e) => seqs.push(e["seq"].as_u64().unwrap()),
            Got::Closed(code, _) => break code,
        }
    };
    assert_eq!(seqs, (2..=51).collect::<Vec<_>>());
    assert_eq!(code, Some(CloseCode::Away));
    assert_eq!(b.closed().await, Some(CloseCode::Away));
}
