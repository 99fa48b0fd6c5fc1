#!/usr/bin/env bash
# Issue 22's replay: a CSV of TICKS trades (default 2,000,000; 100 symbols, 48 h, past-dated,
# benches/gen_ticks.py) replayed at speed 0 into one store by a release build; prints what was
# stored of what was sent and the rate (from the server's start to the last tick committed).
# usage: [SERVER_BIN=...] benches/replay_store.sh sqlite|postgres [TICKS] [TICKCAST_*=... ...]
# PostgreSQL: a fresh database on 127.0.0.1:5432 (user postgres), dropped afterwards.
set -euo pipefail
backend=$1
ticks=${2:-2000000}
shift $(( $# > 1 ? 2 : 1 ))
bin=${SERVER_BIN:-${CARGO_TARGET_DIR:-target}/release/tickcast}
port=${PORT:-18422}
work=$(mktemp -d /tmp/tickcast-replay-XXXXXX)
python3 "$(dirname "$0")/gen_ticks.py" "$work/ticks.csv" --rows "$ticks"
case $backend in
  sqlite) url="sqlite://$work/store.db?mode=rwc"
          count() { sqlite3 "$work/store.db" "SELECT COUNT(*) FROM ticks"; } ;;
  postgres) db=tc_replay_$$
            psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $db"
            url="postgres://postgres@127.0.0.1:5432/$db"
            count() { psql -h 127.0.0.1 -U postgres -d "$db" -tAc "SELECT COUNT(*) FROM ticks"; } ;;
  *) echo "backend: sqlite or postgres" >&2; exit 64 ;;
esac
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
start=$(date +%s.%N)
env TICKCAST_SERVER__LISTEN=127.0.0.1:$port TICKCAST_DATABASE__URL="$url" \
  TICKCAST_DATABASE__JOURNAL_DIR="$work/journal" TICKCAST_DATABASE__RETENTION_DAYS=0 \
  TICKCAST_FEEDS__SYNTHETIC__ENABLED=false TICKCAST_FEEDS__REPLAY__ENABLED=true \
  TICKCAST_FEEDS__REPLAY__PATH="$work/ticks.csv" TICKCAST_FEEDS__REPLAY__SPEED=0 \
  "$@" "$bin" serve > "$work/server.log" 2>&1 &
pid=$!
# Until every tick is committed, or nothing moved for 60 s (at most an hour in all).
last=-1; still=0
for _ in $(seq 18000); do
  sleep 0.2
  written=$(metric tickcast_db_rows_written_total || true); written=${written:-0}
  [ "$written" -ge "$ticks" ] && break
  if [ "$written" = "$last" ]; then still=$((still + 1)); [ $still -ge 300 ] && break; else still=0; fi
  last=$written
done
end=$(date +%s.%N)
dropped=$(metric tickcast_db_rows_dropped_total || true); journaled=$(metric tickcast_db_rows_journaled_total || true)
kill -INT $pid; wait $pid || true
stored=$(count)
awk -v b="$backend" -v s="$stored" -v n="$ticks" -v t0="$start" -v t1="$end" -v d="$dropped" -v j="$journaled" \
  'BEGIN { printf "%s: stored %d / sent %d (%.2f %%) in %.1f s: %.0f ticks/s; dropped %d, journaled %d\n", b, s, n, 100 * s / n, t1 - t0, s / (t1 - t0), d, j }'
if [ "$backend" = postgres ]; then psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE $db WITH (FORCE)"; fi
rm -rf "$work"
