#!/usr/bin/env bash
# Issue 22's history at scale: ROWS trades (default 50,000,000) of 100 symbols over DAYS days
# (default 30, ending a day ago; benches/gen_ticks.py) imported with `tickcast import` into a
# fresh store, then the release server started on it with the synthetic feed recording, a user
# with 10,000 trades, and CLIENTS (200) closed-loop clients reading history for SECONDS_PER_KIND (20) per
# request kind (benches/history.rs). Prints the import's summary, the store's size and the table.
#
# usage: [SERVER_BIN=...] [HISTORY_BIN=...] [CLIENTS=200] [SECONDS_PER_KIND=20] [KEEP_CSV=path]
#        [KEEP_STORE=1] [STORE_URL=url] benches/history_at_scale.sh sqlite|postgres [ROWS] [DAYS]
#
# CLIENTS may be a list ("1 8 200"): the table is measured once per client count, on the same
# store and server. Each row gives the server's CPU per request (and, on PostgreSQL, its
# backends'), so a latency that is a wait for a CPU on a loaded machine shows as such.
# KEEP_STORE=1 keeps the store made here (its URL is printed at the end) and STORE_URL reads one
# kept earlier instead of importing (the range then comes from KEEP_CSV, the file it was made
# from): plans and indexes can be changed and the table measured again without a new import.
#
# 127.0.0.1 only. Bounded: every step has a timeout and the whole run stops by itself. Cleans up
# after itself whatever happens: the server is stopped, the SQLite file deleted, the PostgreSQL
# database (tc_scale_PID on 127.0.0.1:5432, user postgres) dropped. The CSV (about 48 bytes a
# row, 2.4 GB at 50 M) is deleted too unless KEEP_CSV names where to keep it (and reuse it:
# an existing KEEP_CSV is not generated again, so both backends can read the same file).
set -euo pipefail
backend=${1:?usage: history_at_scale.sh sqlite\|postgres [ROWS] [DAYS]}
rows=${2:-50000000}
days=${3:-30}
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../target}
bin=${SERVER_BIN:-$target/release/tickcast}
bench=${HISTORY_BIN:-$(ls -t "$target"/release/deps/history-* 2>/dev/null | grep -v '\.d$' | head -1)}
clients=${CLIENTS:-200}
seconds=${SECONDS_PER_KIND:-20}
port=${PORT:-18522}
[ -x "$bin" ] || { echo "no server binary: cargo build --release --bin tickcast" >&2; exit 69; }
[ -x "$bench" ] || { echo "no history bench: cargo bench --bench history --no-run" >&2; exit 69; }
work=$(mktemp -d "${WORK_DIR:-/tmp}/tickcast-scale-XXXXXX")
csv=${KEEP_CSV:-$work/ticks.csv}
pid=
db=
store_file=
cleanup() {
  if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "${KEEP_STORE:-}" ]; then
    echo "store kept: $url"
  else
    if [ -n "$db" ]; then
      psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    fi
    if [ -n "$store_file" ]; then rm -f "$store_file" "$store_file"-wal "$store_file"-shm; fi
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -s "$csv" ]; then
  echo "generating $rows rows over $days days ending a day ago into $csv"
  timeout 3600 python3 "$here/gen_ticks.py" "$csv" --rows "$rows" --days "$days" --end=-1d
fi
# The history's range, from the file itself (integer ms times, in order).
from_ms=$(sed -n 2p "$csv" | cut -d, -f1)
to_ms=$(( $(tail -1 "$csv" | cut -d, -f1) + 1 ))

url=${STORE_URL:-}
case $backend in
  sqlite) if [ -z "$url" ]; then
            store_file=${WORK_DIR:-/tmp}/tickcast-scale-$$.db
            url="sqlite://$store_file?mode=rwc"
          fi
          file=${url#sqlite://}; file=${file%%\?*}
          size() { du -ch "$file"* | tail -1; }
          db_process= ;;
  postgres) if [ -z "$url" ]; then
              db=tc_scale_$$
              psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $db"
              url="postgres://postgres@127.0.0.1:5432/$db"
            fi
            dbname=${url##*/}
            size() { psql -h 127.0.0.1 -U postgres -d "$dbname" -tAc "SELECT pg_size_pretty(pg_database_size('$dbname'))"; }
            db_process=" postgres $dbname " ;;  # the backends' title: "postgres: 15/main: postgres DB ADDR state"
  *) echo "backend: sqlite or postgres" >&2; exit 64 ;;
esac

if [ -z "${STORE_URL:-}" ]; then
  echo "== import ($backend, load average $(cut -d' ' -f1-3 /proc/loadavg))"
  timeout 7200 env DATABASE_URL="$url" "$bin" import "$csv"
  [ -n "${KEEP_CSV:-}" ] || rm -f "$csv"
fi
echo "store size: $(size)"

key=$(timeout 600 "$bench" setup "$url" 10000 | tail -1)

env TICKCAST_SERVER__LISTEN=127.0.0.1:$port TICKCAST_DATABASE__URL="$url" \
  TICKCAST_DATABASE__JOURNAL_DIR="$work/journal" TICKCAST_DATABASE__RETENTION_DAYS=0 \
  TICKCAST_API__REQUESTS_PER_SECOND=1000000 TICKCAST_API__BURST=1000000 \
  TICKCAST_SERVER__MAX_HTTP_CONNECTIONS_PER_IP=100000 TICKCAST_LOG__LEVEL=warn \
  "$bin" serve > "$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$port/readyz" > /dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 69; }
  sleep 0.2
done
curl -sf "http://127.0.0.1:$port/readyz" > /dev/null || { echo "server not ready" >&2; exit 69; }

for n in $clients; do
  echo "== REST ($backend, $n clients, ${seconds}s per kind, load average $(cut -d' ' -f1-3 /proc/loadavg))"
  timeout $(( seconds * 6 + 120 )) env SERVER_PID="$pid" DB_PROCESS="$db_process" \
    "$bench" run "127.0.0.1:$port" "$from_ms" "$to_ms" "$key" "$n" "$seconds" 100
done
written=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "tickcast_db_rows_written_total" {print $2}')
echo "live feed rows written during the run: ${written:-?}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
