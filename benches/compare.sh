#!/usr/bin/env bash
# Compare tickcast with two reference peers under identical, bounded loadgen scenarios, in one
# run, on loopback only. Not run by tests. The peers: `peer`, the Node.js `ws` server
# (benches/peers/node-ws), and `rust`, the simplest batched fan-out in Rust
# (benches/peers/rust-broadcast: one broadcast channel, one JSON array per batch, small buffers).
# And `floor` (benches/floor, `bots` only): each feed batch framed once, padded to tickcast's
# tick size (FLOOR_EVENT_BYTES), and written to every socket with one blocking write per socket
# from one thread: the least any server can spend per delivered event here.
#
# Usage: benches/compare.sh            (defaults below; override with env)
#   CONNS=1000 DURATION=10 SCENARIOS="bots dashboards" benches/compare.sh
#   SKIP_TICKCAST=1 benches/compare.sh   (peer half only, e.g. before the server exists)
#   SERVER_BIN=/path/to/tickcast benches/compare.sh   (a prebuilt server; no cargo build)
#   FEED_BATCH_MS=1 CONNS=150 benches/compare.sh        (a 1 ms feed for every server)
#   PEERS="peer" benches/compare.sh                      (leave the Rust peer and the floor out)
#   BASELINE_BIN=/path/to/old/tickcast benches/compare.sh (a second tickcast, `base`, in the
#                               same run: before/after ratios from one run)
#   PIN=1 benches/compare.sh   (servers on CPU 0, the loadgen on CPU 1, with taskset: their
#                               numbers stop disturbing each other; needs 2+ CPUs)
#   ENCODING=msgpack benches/compare.sh   (tickcast's sockets ask for MessagePack
#                               frames; the peers speak JSON only)
#
# Both servers get the same synthetic feed: FEED_SYMBOLS symbols at FEED_RATE ticks/s. The
# tickcast side receives it through FEED_ENV (see below); check the "ev/s/conn" column
# of the bots rows: it is the feed rate each server really delivered, and must match.
set -euo pipefail

CONNS=${CONNS:-1000}
RAMP=${RAMP:-3}
WARMUP=${WARMUP:-2}
DURATION=${DURATION:-10}
SCENARIOS=${SCENARIOS:-"bots dashboards"}
SYMBOLS_PER_SOCKET=${SYMBOLS_PER_SOCKET:-5}
THROTTLE_MS=${THROTTLE_MS:-250}
LOADGEN_THREADS=${LOADGEN_THREADS:-2}
FEED_SYMBOLS=${FEED_SYMBOLS:-100}
FEED_RATE=${FEED_RATE:-1000}
TICKCAST_PORT=${TICKCAST_PORT:-18080}
PEER_PORT=${PEER_PORT:-18090}
RUST_PORT=${RUST_PORT:-18091}
FLOOR_PORT=${FLOOR_PORT:-18092}
BASELINE_PORT=${BASELINE_PORT:-18081}
PEERS=${PEERS:-"peer rust floor"}
# The floor's tick object size: with its comma, about the 131 B per event tickcast's JSON ticks (with
# `xts`) measured on the wire (issue 25); the table's B/event column shows both.
FLOOR_EVENT_BYTES=${FLOOR_EVENT_BYTES:-130}
BASELINE_BIN=${BASELINE_BIN:-}
FEED_BATCH_MS=${FEED_BATCH_MS:-10}
PIN=${PIN:-0}
ENCODING=${ENCODING:-json}
SERVER_CPU=()
LOADGEN_CPU=()
if [[ $PIN == 1 ]]; then
  SERVER_CPU=(taskset -c 0)
  LOADGEN_CPU=(taskset -c 1)
fi
SKIP_TICKCAST=${SKIP_TICKCAST:-0}
# tickcast config names (double underscore = nesting), see config/default.toml. Every socket of a
# load test comes from one address, so the per-address WebSocket limits are lifted.
TICKCAST_LOAD_ENV="TICKCAST_WS__MAX_CONNECTIONS_PER_IP=0 TICKCAST_SERVER__MAX_HTTP_CONNECTIONS_PER_IP=0 TICKCAST_WS__UPGRADES_PER_SECOND=100000 TICKCAST_WS__UPGRADE_BURST=100000"
# Not named TICKCAST_*: the server would read an exported one as a config key.
FEED_ENV=${FEED_ENV:-"TICKCAST_FEEDS__SYNTHETIC__SYMBOLS=$FEED_SYMBOLS TICKCAST_FEEDS__SYNTHETIC__RATE=$FEED_RATE TICKCAST_FEEDS__SYNTHETIC__INTERVAL_MS=$FEED_BATCH_MS TICKCAST_LOG__LEVEL=warn"}
# More tickcast settings for one run, e.g. EXTRA_ENV="TICKCAST_WS__OUTBOX_MAX_EVENTS=256".
EXTRA_ENV=${EXTRA_ENV:-}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PEER_DIR=$ROOT/benches/peers/node-ws
RUST_DIR=$ROOT/benches/peers/rust-broadcast
FLOOR_DIR=$ROOT/benches/floor
OUT=$(mktemp -d -t tickcast-compare.XXXXXX)
LOADGEN=$TARGET_DIR/release/tickcast-loadgen
SERVER_BIN=${SERVER_BIN:-}
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.3
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  echo "logs and raw JSON: $OUT" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }

wait_port() { # port pid name
  local i
  for i in $(seq 1 100); do
    if ! kill -0 "$2" 2>/dev/null; then log "$3 exited early; see $OUT/$3.log"; tail -20 "$OUT/$3.log" >&2; exit 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  log "$3 did not listen on 127.0.0.1:$1 within 20s"; exit 1
}

log "building (release)"
if [[ $SKIP_TICKCAST != 1 && -z $SERVER_BIN ]]; then
  (cd "$ROOT" && cargo build --release --quiet)
  SERVER_BIN=$TARGET_DIR/release/tickcast
fi
(cd "$ROOT" && cargo build --release --quiet -p tickcast-loadgen)
# The peers have their own lock files and target dirs (an exported CARGO_TARGET_DIR would
# otherwise move their binaries away from where this script runs them).
if [[ " $PEERS " == *" rust "* ]]; then
  (cd "$RUST_DIR" && cargo build --release --quiet --target-dir "$RUST_DIR/target")
fi
if [[ " $PEERS " == *" floor "* ]]; then
  (cd "$FLOOR_DIR" && cargo build --release --quiet --target-dir "$FLOOR_DIR/target")
fi
if [[ ! -d $PEER_DIR/node_modules ]]; then
  log "installing the node peer's packages"
  (cd "$PEER_DIR" && npm ci --no-audit --no-fund --silent)
fi

# Raise our own open-file limit for the servers we start (the loadgen raises its own).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SERVERS=()
if [[ $SKIP_TICKCAST != 1 ]]; then
  log "starting tickcast on 127.0.0.1:$TICKCAST_PORT"
  # shellcheck disable=SC2086 # FEED_ENV and EXTRA_ENV are lists of NAME=VALUE words
  env TICKCAST_SERVER__LISTEN="127.0.0.1:$TICKCAST_PORT" $TICKCAST_LOAD_ENV $FEED_ENV $EXTRA_ENV \
    "${SERVER_CPU[@]}" "$SERVER_BIN" serve >"$OUT/tickcast.log" 2>&1 &
  TICKCAST_PID=$!
  PIDS+=("$TICKCAST_PID")
  wait_port "$TICKCAST_PORT" "$TICKCAST_PID" tickcast
  SERVERS+=("tickcast:$TICKCAST_PORT:$TICKCAST_PID")
fi
if [[ -n $BASELINE_BIN ]]; then
  log "starting the baseline tickcast ($BASELINE_BIN) on 127.0.0.1:$BASELINE_PORT"
  # shellcheck disable=SC2086 # FEED_ENV and EXTRA_ENV are lists of NAME=VALUE words
  env TICKCAST_SERVER__LISTEN="127.0.0.1:$BASELINE_PORT" $TICKCAST_LOAD_ENV $FEED_ENV $EXTRA_ENV \
    "${SERVER_CPU[@]}" "$BASELINE_BIN" serve >"$OUT/base.log" 2>&1 &
  BASE_PID=$!
  PIDS+=("$BASE_PID")
  wait_port "$BASELINE_PORT" "$BASE_PID" base
  SERVERS+=("base:$BASELINE_PORT:$BASE_PID")
fi
if [[ " $PEERS " == *" peer "* ]]; then
  log "starting node-ws peer on 127.0.0.1:$PEER_PORT"
  "${SERVER_CPU[@]}" node "$PEER_DIR/server.js" --port "$PEER_PORT" --symbols "$FEED_SYMBOLS" --rate "$FEED_RATE" \
    --batch-ms "$FEED_BATCH_MS" >"$OUT/peer.log" 2>&1 &
  PEER_PID=$!
  PIDS+=("$PEER_PID")
  wait_port "$PEER_PORT" "$PEER_PID" peer
  SERVERS+=("peer:$PEER_PORT:$PEER_PID")
fi
if [[ " $PEERS " == *" rust "* ]]; then
  log "starting rust-broadcast peer on 127.0.0.1:$RUST_PORT"
  "${SERVER_CPU[@]}" "$RUST_DIR/target/release/rust-broadcast-peer" --port "$RUST_PORT" --symbols "$FEED_SYMBOLS" \
    --rate "$FEED_RATE" --batch-ms "$FEED_BATCH_MS" >"$OUT/rust.log" 2>&1 &
  RUST_PID=$!
  PIDS+=("$RUST_PID")
  wait_port "$RUST_PORT" "$RUST_PID" rust
  SERVERS+=("rust:$RUST_PORT:$RUST_PID")
fi
if [[ " $PEERS " == *" floor "* ]]; then
  log "starting the floor on 127.0.0.1:$FLOOR_PORT"
  "${SERVER_CPU[@]}" "$FLOOR_DIR/target/release/tickcast-floor" --port "$FLOOR_PORT" --symbols "$FEED_SYMBOLS" \
    --rate "$FEED_RATE" --batch-ms "$FEED_BATCH_MS" --event-bytes "$FLOOR_EVENT_BYTES" >"$OUT/floor.log" 2>&1 &
  FLOOR_PID=$!
  PIDS+=("$FLOOR_PID")
  wait_port "$FLOOR_PORT" "$FLOOR_PID" floor
  SERVERS+=("floor:$FLOOR_PORT:$FLOOR_PID")
fi

BUDGET=$(awk -v r="$RAMP" -v w="$WARMUP" -v d="$DURATION" 'BEGIN { printf "%d", r + w + d + 30 }')
for scenario in $SCENARIOS; do
  for s in "${SERVERS[@]}"; do
    IFS=: read -r name port pid <<<"$s"
    # The floor speaks only what `bots` needs.
    [[ $name == floor && $scenario != bots ]] && continue
    log "$scenario x$CONNS against $name"
    encoding=json
    [[ $name == tickcast || $name == base ]] && encoding=$ENCODING
    # The server's RSS before the sockets connect: the table's KiB/conn is what they added.
    awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" >"$OUT/$scenario-$name.rss0" 2>/dev/null || true
    timeout "$BUDGET" "${LOADGEN_CPU[@]}" "$LOADGEN" --scenario "$scenario" --url "ws://127.0.0.1:$port/ws" \
      --encoding "$encoding" \
      --connections "$CONNS" --ramp "$RAMP" --warmup "$WARMUP" --duration "$DURATION" \
      --symbols-per-socket "$SYMBOLS_PER_SOCKET" --throttle-ms "$THROTTLE_MS" \
      --threads "$LOADGEN_THREADS" --server-pid "$pid" --json --quiet \
      >"$OUT/$scenario-$name.json" 2>"$OUT/$scenario-$name.err" ||
      { log "loadgen failed against $name:"; cat "$OUT/$scenario-$name.err" >&2; }
    sleep 1
  done
done

# The table: one row per scenario and server, then tickcast/peer ratios.
node - "$OUT" $SCENARIOS <<'EOF'
const fs = require('fs');
const [dir, ...scenarios] = process.argv.slice(2);
const load = (f) => { try { return JSON.parse(fs.readFileSync(`${dir}/${f}`, 'utf8')); } catch { return null; } };
const cols = ['scenario', 'server', 'conns', 'events/s', 'ev/s/conn', 'p50 ms', 'p99 ms', 'p99.9 ms', 'missed %', 'srv cpu', 'srv ns/ev', 'srv rss MB', 'KiB/conn', 'lg cpu', 'lg ns/ev', 'B/event', 'ev/frame'];
// CPU per delivered event: cores x 1e9 / events per second.
const nsPerEvent = (cores, j) => (cores !== undefined && cores !== null && j.events_per_s ? (cores * 1e9) / j.events_per_s : undefined);
const rss0 = (f) => { try { return Number(fs.readFileSync(`${dir}/${f}`, 'utf8').trim()); } catch { return NaN; } };
const rows = [cols];
const num = (v, d = 1) => (v === undefined || v === null || Number.isNaN(v) ? '-' : Number(v).toFixed(d));
for (const sc of scenarios) {
  const r = {};
  for (const name of ['tickcast', 'base', 'peer', 'rust', 'floor']) {
    const j = load(`${sc}-${name}.json`);
    if (!j) continue;
    r[name] = j;
    const est = j.connections.established;
    rows.push([sc, name, `${est}/${j.config.connections}`, num(j.events_per_s, 0), num(est ? j.events_per_s / est : 0, 1),
      num(j.latency.p50_ms, 3), num(j.latency.p99_ms, 3), num(j.latency.p999_ms, 3), num(j.gaps.missed_ratio * 100, 2),
      num(j.server?.cpu_cores, 2), num(nsPerEvent(j.server?.cpu_cores, j), 0), num(j.server?.rss_mb, 1),
      num(est && j.server ? (j.server.rss_mb * 1024 - rss0(`${sc}-${name}.rss0`)) / est : undefined, 2),
      num(j.loadgen.cpu_cores, 2), num(nsPerEvent(j.loadgen.cpu_cores, j), 0), num(j.bytes_per_event, 1),
      num(j.frames ? j.events / j.frames : undefined, 1)]);
    for (const w of j.warnings) if (!w.startsWith('dashboards subscribe')) console.error(`warning (${sc}/${name}): ${w}`);
  }
  for (const other of ['base', 'peer', 'rust', 'floor']) {
    if (!(r.tickcast && r[other])) continue;
    const q = (a, b) => (b ? (a / b).toFixed(2) + 'x' : '-');
    const t = r.tickcast, p = r[other];
    rows.push([sc, `tickcast/${other}`, '', q(t.events_per_s, p.events_per_s), '', q(t.latency.p50_ms, p.latency.p50_ms),
      q(t.latency.p99_ms, p.latency.p99_ms),
      q(t.latency.p999_ms, p.latency.p999_ms), '', q(t.server?.cpu_cores, p.server?.cpu_cores),
      q(nsPerEvent(t.server?.cpu_cores, t), nsPerEvent(p.server?.cpu_cores, p)),
      q(t.server?.rss_mb, p.server?.rss_mb), '', '', '', q(t.bytes_per_event, p.bytes_per_event), '']);
  }
}
const w = cols.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
for (const [i, r] of rows.entries()) {
  console.log(r.map((c, k) => (k < 2 ? String(c).padEnd(w[k]) : String(c).padStart(w[k]))).join('  '));
  if (i === 0) console.log(w.map((n) => '-'.repeat(n)).join('  '));
}
if (scenarios.includes('dashboards')) {
  console.log('note: dashboards subscribe ticks with throttle_ms; missed % and latency up to the throttle are conflation by design');
}
console.log('ratios are tickcast/base (BASELINE_BIN), tickcast/peer (Node ws), tickcast/rust (batched broadcast) and tickcast/floor: above 1x is better for events/s, below 1x is better for latency, cpu, ns/ev and rss');
EOF
