//! Replay from a time on the socket (`"from_ts"`, docs/PROTOCOL.md "Replay from a time"):
//! stored ticks, then the ring, handed over to live by `seq` with no gap and no duplicate, one
//! `replay_done` per channel; continuation with `from` when the budget stops a replay; the
//! other kinds from their rings; and every refusal.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{self, Client, TestServer};

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    tickcast::model::now_ns() / 1_000_000
}

/// Replays two hours of `symbol` (a trade every 30 s, ending 5 minutes ago) from a file into a
/// server whose rings hold 16 events, and waits until every tick is stored. Returns the server
/// and the exchange times (ms) in file (= seq) order.
async fn replayed(symbol: &str, tag: &str, snapshot_max_bytes: usize) -> (TestServer, Vec<i64>) {
    let end = now_ms() - 5 * 60_000;
    let times: Vec<i64> = (0..240).map(|i| end - 2 * HOUR_MS + i * 30_000).collect();
    let mut text = String::from("ts,symbol,price,size,side\n");
    for (i, t) in times.iter().enumerate() {
        text.push_str(&format!("{t},{symbol},{},{},buy\n", 100 + i, 1 + i % 7));
    }
    let dir =
        std::env::temp_dir().join(format!("tickcast-e2e-from-ts-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hours.csv");
    std::fs::write(&path, text).unwrap();
    let mut cfg = util::config();
    cfg.feeds.replay.enabled = true;
    cfg.feeds.replay.path = path;
    cfg.feeds.replay.speed = 0.0;
    cfg.ws.snapshot_max_bytes = snapshot_max_bytes;
    let srv = util::start(cfg).await;
    let store = srv.server().store().clone();
    util::wait_until("every tick stored", util::WAIT, async || {
        store.count_ticks(Some(symbol)).await.unwrap_or(0) == times.len() as i64
    })
    .await;
    (srv, times)
}

/// Reads `tick`s and the one `replay_done` of `ch`: the ticks' seqs and the marker.
async fn read_replay(c: &mut Client, ch: &str) -> (Vec<u64>, Vec<i64>, Value) {
    let (mut seqs, mut xts) = (Vec::new(), Vec::new());
    loop {
        let e = c.event().await;
        match e["type"].as_str() {
            Some("tick") => {
                assert_eq!(e["ch"], ch, "{e}");
                seqs.push(e["seq"].as_u64().unwrap());
                xts.push(e["xts"].as_i64().unwrap() / 1_000_000);
            }
            Some("replay_done") => {
                assert_eq!(e["ch"], ch, "{e}");
                return (seqs, xts, e);
            }
            _ => panic!("unexpected during a replay: {e}"),
        }
    }
}

fn contiguous(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[1] == w[0] + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_ts_an_hour_back_gives_stored_then_live_ticks_contiguous_with_one_marker() {
    let (srv, times) = replayed("RPL", "hour", 1 << 20).await;
    let since = now_ms() - HOUR_MS;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","id":1,"channels":["ticks:RPL"],"from_ts": since}))
        .await;
    let (seqs, xts, done) = read_replay(&mut c, "ticks:RPL").await;
    // Every tick from the time on: the file's, from the first at or after it, to the last.
    let first = times.iter().position(|t| *t >= since).unwrap();
    assert_eq!(xts, times[first..].to_vec());
    assert_eq!(seqs.first(), Some(&(first as u64 + 1)));
    assert!(contiguous(&seqs), "{seqs:?}");
    assert!(seqs.len() > 16, "older than the ring: read from the store");
    assert_eq!(
        done,
        json!({"type":"replay_done","ch":"ticks:RPL","seq":240,"more":false})
    );
    // Then live ticks, right after, and no second marker.
    srv.ingest_n("RPL", 3, 500.0).await;
    for want in 241..=243u64 {
        let e = c.event().await;
        assert_eq!(
            (e["type"].as_str(), e["seq"].as_u64()),
            (Some("tick"), Some(want)),
            "{e}"
        );
    }
    assert!(c.silent_for(Duration::from_millis(300)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_the_budget_stops_continues_with_from_until_it_goes_live() {
    // 4 KiB of held budget: about 25 ticks per round.
    let (srv, times) = replayed("RPM", "budget", 4096).await;
    let since = times[0];
    let mut c = srv.connect().await;
    let mut all = Vec::new();
    let mut from: Option<u64> = None;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 40, "the replay makes progress");
        let mut op = json!({"op":"subscribe","channels":["ticks:RPM"],"from_ts": since});
        if let Some(f) = from {
            op["from"] = json!({"ticks:RPM": f});
        }
        c.subscribe(op).await;
        let (seqs, _, done) = read_replay(&mut c, "ticks:RPM").await;
        all.extend(seqs);
        let seq = done["seq"].as_u64().unwrap();
        if done["more"] == false {
            assert_eq!(seq, 240);
            break;
        }
        // Stopped short: not subscribed (nothing live arrives), continue after `seq`.
        assert!(c.silent_for(Duration::from_millis(100)).await);
        from = Some(seq);
    }
    assert!(rounds > 2, "{rounds} rounds");
    assert_eq!(
        all,
        (1..=240).collect::<Vec<u64>>(),
        "every tick once, in order"
    );
    srv.ingest_n("RPM", 1, 900.0).await;
    assert_eq!(c.event_of("tick").await["seq"], 241);
}

#[tokio::test]
async fn from_ts_replays_bbo_from_the_ring_and_refuses_what_it_cannot_serve() {
    let srv = util::start(util::config()).await;
    let since = now_ms() - 60_000;
    for size in 1..=3 {
        let book =
            json!([{"symbol":"RPB","snapshot":size == 1,"bids":[[10.0, size]],"asks":[[11.0,1]]}]);
        assert_eq!(srv.ingest_at("/api/v1/ingest/book", book).await.0, 202);
    }
    srv.ingest_n("RPB", 1, 10.0).await;
    srv.wait_seq("RPB", 1).await;
    let mut c = srv.connect().await;
    c.subscribe(json!({"op":"subscribe","channels":["bbo:RPB"],"from_ts": since}))
        .await;
    let mut sizes = Vec::new();
    let done = loop {
        let e = c.event().await;
        if e["type"] == "replay_done" {
            break e;
        }
        assert_eq!(e["type"], "bbo", "{e}");
        sizes.push(e["bid_size"].as_u64().unwrap());
    };
    assert_eq!(sizes, vec![1, 2, 3]);
    assert_eq!(
        done,
        json!({"type":"replay_done","ch":"bbo:RPB","seq":3,"more":false})
    );

    // Refusals: the whole subscribe, with a `bad_request` that says why.
    let cases = [
        (json!(["ticks:*"]), json!(since), "concrete"),
        (json!(["book:RPB"]), json!(since), "book:RPB"),
        (json!(["ticker:RPB"]), json!(since), "ticker:RPB"),
        (
            json!(["ticks:RPB"]),
            json!(now_ms() - 2 * 86_400_000),
            "ws.replay_max_age_ms",
        ),
        (json!(["ticks:RPB"]), json!("yesterday"), "from_ts"),
        (json!(["ticks:RPB"]), json!(true), "from_ts"),
    ];
    for (channels, from_ts, says) in cases {
        c.send(json!({"op":"subscribe","id":7,"channels":channels,"from_ts":from_ts}))
            .await;
        let e = c.event().await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{e}"
        );
        assert!(e["message"].as_str().unwrap().contains(says), "{says}: {e}");
        assert!(
            c.silent_for(Duration::from_millis(100)).await,
            "no ack after {e}"
        );
    }
}
