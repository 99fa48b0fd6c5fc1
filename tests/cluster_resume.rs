//! Resumes on an edge whose gaps are older than its ring (docs/PROTOCOL.md "Server → client",
//! `cluster.resume_max_reads`): what one subscribe may make the edge read from the stream.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::cluster::{ClusterEnv, NATS, Node, SLOW, state};
use crate::util::{Client, Got, TestDb};

/// One subscribe with a stale `from` for each of 24 channels makes the edge read at most
/// `cluster.resume_max_reads` (4 here) gaps from the stream; every channel is still answered
/// (replayed, or a `reset` snapshot). A `from` of u64::MAX is answered with a reset snapshot
/// and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_with_many_stale_resumes_reads_a_bounded_number_of_gaps() {
    let db = TestDb::postgres().await;
    let env = ClusterEnv::new(&db, NATS, 2_000);
    let symbols = [("TICKCAST_FEEDS__SYNTHETIC__SYMBOLS", "24")];
    let ingest = Node::start("ingest", &env, &symbols).await;
    ingest
        .wait_ready(200, "the ingest leader", |b| state(b) == "leader")
        .await;
    let tight = [
        ("TICKCAST_RING__CAPACITY", "4"),
        ("TICKCAST_RING__SNAPSHOT_DEPTH", "4"),
        ("TICKCAST_CLUSTER__RESUME_MAX_READS", "4"),
    ];
    let edge = Node::start("edge", &env, &tight).await;
    edge.wait_ready(200, "live", |b| state(b) == "live").await;

    // Wait until the edge knows every symbol and each has outgrown the ring (seq > 5), so a
    // `from` of 1 is a gap only the stream holds.
    let mut watch = Client::connect(&edge.ws_url()).await;
    let ack = watch
        .subscribe(json!({"op":"subscribe","id":1,"channels":["ticks:*"],"snapshot":0}))
        .await;
    let epoch = ack["epoch"].clone();
    let mut past_ring = HashSet::new();
    let deadline = tokio::time::Instant::now() + SLOW;
    while past_ring.len() < 24 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match watch.next_within(left).await {
            Some(Got::Event(e)) if e["type"] == "tick" && e["seq"].as_u64() > Some(5) => {
                past_ring.insert(e["ch"].as_str().unwrap_or_default().to_owned());
            }
            Some(Got::Event(_)) => {}
            other => panic!(
                "{} of 24 channels past the ring: {other:?}",
                past_ring.len()
            ),
        }
    }
    drop(watch);

    let from: Map<String, Value> = past_ring.iter().map(|ch| (ch.clone(), json!(1))).collect();
    let mut c = Client::connect(&edge.ws_url()).await;
    c.subscribe(json!({"op":"subscribe","id":2,"channels":["ticks:*"],
                       "from":from,"epoch":epoch}))
        .await;
    let mut answered = HashSet::new();
    let mut resets = 0;
    while answered.len() < 24 {
        let e = c.event().await;
        let ch = e["ch"].as_str().unwrap_or_default().to_owned();
        match e["type"].as_str() {
            Some("snapshot") => {
                assert_eq!(e["reset"], true, "a stale `from` gets a reset: {e}");
                resets += 1;
                answered.insert(ch);
            }
            // A replay from the stream starts right after the client's `from`.
            Some("tick") if !answered.contains(&ch) => {
                assert_eq!(e["seq"], 2, "{e}");
                answered.insert(ch);
            }
            _ => {}
        }
    }
    let reads = edge.metric("tickcast_ws_history_reads_total").await;
    let replayed = edge
        .metric("tickcast_cluster_resumes_from_stream_total")
        .await;
    assert_eq!(reads, 4, "at most cluster.resume_max_reads gaps are read");
    assert!(replayed <= 4, "{replayed} gaps replayed from the stream");
    assert!(24 - resets <= replayed, "only gaps read whole are replayed");

    // The largest `from` there is: ahead of every ring, answered with a reset snapshot.
    let ch = past_ring.iter().next().cloned().unwrap_or_default();
    let mut far = Client::connect(&edge.ws_url()).await;
    far.subscribe(json!({"op":"subscribe","id":3,"channels":[ch],
                         "from":{ch.as_str(): u64::MAX},"epoch":epoch}))
        .await;
    let snap = far.event_of("snapshot").await;
    assert_eq!(
        (snap["ch"].as_str(), &snap["reset"]),
        (Some(ch.as_str()), &json!(true)),
        "{snap}"
    );
    far.send(json!({"op":"ping","id":4})).await;
    let pong = tokio::time::timeout(Duration::from_secs(10), far.event_of("pong")).await;
    assert!(pong.is_ok(), "the connection is still served");
    assert_eq!(
        edge.metric("tickcast_ws_history_reads_total").await,
        4,
        "nothing read for it"
    );
}
