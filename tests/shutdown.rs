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

/// The real binary: SIGTERM drains (a `notice` to every socket, then 1001 after
/// `server.drain_grace_ms`) and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001_and_exits_cleanly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A database and journal of its own (not ./tickcast.db, which every run would grow and
    // concurrent runs in one checkout would share).
    let dir = util::temp_journal_dir();
    std::fs::create_dir_all(&dir).expect("dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .arg("serve")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("t.db").display()),
        )
        .env("TICKCAST_DATABASE__JOURNAL_DIR", dir.join("journal"))
        .env("TICKCAST_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("TICKCAST_FEEDS__SYNTHETIC__SYMBOLS", "5")
        .env("TICKCAST_SERVER__DRAIN_GRACE_MS", "1000")
        .env("TICKCAST_LOG__LEVEL", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut client = None;
    for _ in 0..200 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await {
            client = Some(ws);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let ws = client.expect("server came up");
    let mut c = util::Client::from_stream(ws);
    c.subscribe(json!({"op":"subscribe","channels":["ticks:*"]}))
        .await;
    // Live synthetic ticks flow.
    c.event_of("tick").await;
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let notice = c.event_of("notice").await;
    assert_eq!(notice["code"], "draining", "{notice}");
    assert_eq!(c.closed().await, Some(CloseCode::Away));
    let exit = tokio::time::timeout(util::WAIT, child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
