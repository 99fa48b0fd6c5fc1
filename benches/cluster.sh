#!/usr/bin/env bash
# One `all` node versus one ingest + two edges (issue 12), in the same run, on this machine.
#
#   bash benches/cluster.sh [BOTS] [SECONDS]
#
# Needs the release binaries (cargo build --release --bin tickcast -p tickcast-loadgen), NATS
# with JetStream on 127.0.0.1:4222 and PostgreSQL on 127.0.0.1:5432 (trust auth). Every node
# runs the default synthetic feed (100 symbols, 1,000 ticks/s); BOTS sockets subscribe to
# ticks:* (round-robin over the two edges in the cluster run). Prints the loadgen report of
# each run and the CPU each process used over the loadgen's whole run (ramp, warm-up, window).
set -euo pipefail
cd "$(dirname "$0")/.."
BOTS=${1:-300}
SECS=${2:-10}
BIN=target/release/tickcast
LOAD=target/release/tickcast-loadgen
ID="bench$$"
DB="postgres://postgres@127.0.0.1:5432/$ID"
LIMITS=(TICKCAST_WS__MAX_CONNECTIONS_PER_IP=0 TICKCAST_SERVER__MAX_HTTP_CONNECTIONS_PER_IP=0 TICKCAST_WS__UPGRADES_PER_SECOND=100000
        TICKCAST_WS__UPGRADE_BURST=100000 TICKCAST_LOG__LEVEL=warn)
CLUSTER=(TICKCAST_CLUSTER__STREAM="B$ID" TICKCAST_CLUSTER__SUBJECT_PREFIX="b$ID"
         TICKCAST_CLUSTER__LEASE_BUCKET="L$ID" DATABASE_URL="$DB")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $ID WITH (FORCE)" || true
}
trap cleanup EXIT
psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $ID"

# CPU seconds (user + system) a process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
start_node() { # PORT ROLE ENV...
  local port=$1 role=$2; shift 2
  env TICKCAST_SERVER__LISTEN="127.0.0.1:$port" "${LIMITS[@]}" "$@" "$BIN" serve --role "$role" \
    >"/tmp/$ID-$port.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$port/readyz")" = 200 ] && return
    sleep 0.1
  done
  echo "node on $port not ready"; cat "/tmp/$ID-$port.log"; exit 1
}
measure() { # LABEL URLS PIDS...
  local label=$1 urls=$2; shift 2
  local before=() p
  for p in "$@"; do before+=("$(cpu "$p")"); done
  local t0; t0=$(date +%s.%N)
  "$LOAD" --url "$urls" -c "$BOTS" --ramp 2 --warmup 2 -d "$SECS" --quiet
  local t1; t1=$(date +%s.%N)
  local i=0
  for p in "$@"; do
    echo "  $label pid $p: $(echo "($(cpu "$p") - ${before[$i]}) / ($t1 - $t0)" | bc -l | cut -c1-5) cores"
    i=$((i + 1))
  done
}

echo "== one all node (SQLite, no other service)"
start_node 18300 all DATABASE_URL="sqlite:///tmp/$ID.db?mode=rwc"
ALL=${PIDS[-1]}
measure all ws://127.0.0.1:18300/ws "$ALL"
kill "$ALL"; wait "$ALL" 2>/dev/null || true
rm -f "/tmp/$ID.db"*

echo "== one ingest + two edges (NATS JetStream, PostgreSQL)"
start_node 18301 ingest "${CLUSTER[@]}"
INGEST=${PIDS[-1]}
start_node 18302 edge "${CLUSTER[@]}"
EDGE_A=${PIDS[-1]}
start_node 18303 edge "${CLUSTER[@]}"
EDGE_B=${PIDS[-1]}
NATS_PID=$(pgrep -x nats-server | head -n1)
echo "  pids: ingest $INGEST, edge A $EDGE_A, edge B $EDGE_B, nats-server $NATS_PID"
measure cluster ws://127.0.0.1:18302/ws,ws://127.0.0.1:18303/ws "$INGEST" "$EDGE_A" "$EDGE_B" "$NATS_PID"
curl -s 127.0.0.1:18302/metrics | grep -E '^tickcast_cluster_(stream_lag|events_received)'
