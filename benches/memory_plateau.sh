#!/usr/bin/env bash
# Where an idle server's memory goes over time: starts SERVER_BIN with the default synthetic feed
# (100 symbols, 1,000 ticks/s, books, the pipeline with every bar interval) and no client, in a
# directory of its own, and samples its resident memory (and, when the server exports them, the
# ring gauges) every INTERVAL seconds for DURATION seconds. The slowest rings (bars.1s,
# indicators, ticker: one event a second per symbol) fill after 1,024 s, about 17 minutes: run
# at least 20 minutes to see the plateau.
#
#   SERVER_BIN=target/release/tickcast PORT=18101 DURATION=1500 bash benches/memory_plateau.sh > plateau.csv
#
# Output: CSV `elapsed_s,rss_mb,ring_events,ring_bytes_mb,msgpack_made_mb` (empty gauge columns for a
# server without them). The server is stopped at the end; its log is left in the run directory.
set -euo pipefail

SERVER_BIN=${SERVER_BIN:?set SERVER_BIN to a tickcast binary}
PORT=${PORT:-18101}
DURATION=${DURATION:-1500}
INTERVAL=${INTERVAL:-15}
RUN_DIR=$(mktemp -d -t tickcast-plateau.XXXXXX)
SERVER_BIN=$(realpath "$SERVER_BIN")

cd "$RUN_DIR"
TICKCAST_SERVER__LISTEN="127.0.0.1:$PORT" TICKCAST_LOG__LEVEL=warn \
  TICKCAST_DATABASE__URL="sqlite://$RUN_DIR/tickcast.db?mode=rwc" \
  TICKCAST_DATABASE__JOURNAL_DIR="$RUN_DIR/journal" \
  "$SERVER_BIN" serve > server.log 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true' EXIT
echo "run dir $RUN_DIR, server pid $PID on port $PORT" >&2

metric() { # name, from the text in $1
  awk -v n="$2" '$1 == n { print $2 }' <<<"$1"
}

echo "elapsed_s,rss_mb,ring_events,ring_bytes_mb,msgpack_made_mb"
start=$(date +%s)
while :; do
  now=$(date +%s)
  elapsed=$((now - start))
  kill -0 "$PID" 2>/dev/null || { echo "server exited; see $RUN_DIR/server.log" >&2; exit 1; }
  rss_kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status")
  text=$(curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" || true)
  events=$(metric "$text" tickcast_ring_events)
  bytes=$(metric "$text" tickcast_ring_bytes)
  made=$(metric "$text" tickcast_msgpack_made_bytes)
  mb() { [ -n "$1" ] && awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
  printf '%d,%.1f,%s,%s,%s\n' "$elapsed" "$(awk -v k="$rss_kb" 'BEGIN { print k * 1024 / 1e6 }')" \
    "$events" "$(mb "$bytes" || true)" "$(mb "$made" || true)"
  [ "$elapsed" -ge "$DURATION" ] && break
  sleep "$INTERVAL"
done
