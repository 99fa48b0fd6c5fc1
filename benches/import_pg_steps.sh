#!/usr/bin/env bash
# The import's PostgreSQL tick write, step by step (BENCHMARKS.md "Import, second pass"): the
# same imported tick rows loaded into a fresh `ticks` table (the store's columns and indexes)
# in five ways, one psql session each; prints a Markdown row per way with the rows, the wall
# time and the backend's CPU time (utime+stime from /proc, sampled while it runs).
# usage: benches/import_pg_steps.sh STORE.db [ROWS=1000000]
#   STORE.db: a SQLite store filled by `tickcast import` (its first ROWS ticks are used).
# PostgreSQL on 127.0.0.1:5432 (user postgres); a scratch database tc_import_steps_PID, dropped.
set -uo pipefail
store=${1:?usage: import_pg_steps.sh STORE.db [ROWS]}
rows=${2:-1000000}
work=$(mktemp -d /tmp/tickcast-steps-XXXXXX)
db=tc_import_steps_$$
trap 'psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; rm -rf "$work"' EXIT
sqlite3 -csv "$store" "SELECT symbol, ts, ingest_ts, epoch, seq, price, size, side FROM ticks ORDER BY id LIMIT $rows" > "$work/ticks.csv"
P="psql -h 127.0.0.1 -U postgres -q"
tck=$(getconf CLK_TCK)
cols="symbol, ts, ingest_ts, epoch, seq, price, size, side"
schema="CREATE TABLE ticks (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, symbol TEXT NOT NULL, ts BIGINT NOT NULL, ingest_ts BIGINT NOT NULL, seq BIGINT NOT NULL, price DOUBLE PRECISION NOT NULL, size DOUBLE PRECISION NOT NULL, side SMALLINT NOT NULL, epoch BIGINT NOT NULL); CREATE INDEX ticks_symbol_ts ON ticks (symbol, ts, id); CREATE INDEX ticks_ts ON ticks (ts); CREATE TABLE st (symbol text, ts int8, ingest_ts int8, epoch int8, seq int8, price float8, size float8, side int2);"
run() { # name identity-columns script
  $P -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  $P -d $db -c "$schema" -c "CREATE UNIQUE INDEX ticks_identity ON ticks ($2)"
  if [ ! -s $work/ticks.bin ]; then
    $P -d $db -c "\copy st FROM $work/ticks.csv (FORMAT csv)" -c "\copy st TO $work/ticks.bin (FORMAT binary)" -c "TRUNCATE st"
  fi
  printf 'SET synchronous_commit = off;\n%b\n' "$3" > $work/step.sql
  local t0=$(date +%s.%N)
  $P -d $db -f $work/step.sql > /dev/null &
  local c=$! pid= cpu=0
  while kill -0 $c 2>/dev/null; do
    [ -n "$pid" ] || pid=$($P -d test -tAc "SELECT pid FROM pg_stat_activity WHERE datname='$db' LIMIT 1")
    [ -n "$pid" ] && v=$(awk '{print $14+$15}' /proc/$pid/stat 2>/dev/null) && [ -n "$v" ] && cpu=$v
    sleep 0.2
  done
  local t1=$(date +%s.%N)
  local n=$($P -d $db -tAc "SELECT count(*) FROM ticks")
  awk -v n="$1" -v a=$t0 -v b=$t1 -v c=$cpu -v k=$tck -v r=$n 'BEGIN{printf "| %s | %d | %.1f | %.1f |\n", n, r, b-a, c/k}'
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
run "text COPY into staging + INSERT ... ON CONFLICT (before), identity (symbol, epoch, seq)" "symbol, epoch, seq" \
  "BEGIN;\n\\\\copy st FROM $work/ticks.csv (FORMAT csv)\nINSERT INTO ticks ($cols) SELECT $cols FROM st ON CONFLICT DO NOTHING;\nCOMMIT;"
run "binary COPY straight in, identity (symbol, epoch, seq)" "symbol, epoch, seq" \
  "\\\\copy ticks ($cols) FROM $work/ticks.bin (FORMAT binary)"
run "binary COPY straight in, identity (symbol, epoch, ts, seq) (after)" "symbol, epoch, ts, seq" \
  "\\\\copy ticks ($cols) FROM $work/ticks.bin (FORMAT binary)"
run "text COPY into staging + INSERT ... ON CONFLICT, identity (symbol, epoch, ts, seq)" "symbol, epoch, ts, seq" \
  "BEGIN;\n\\\\copy st FROM $work/ticks.csv (FORMAT csv)\nINSERT INTO ticks ($cols) SELECT $cols FROM st ON CONFLICT DO NOTHING;\nCOMMIT;"
no_index="CREATE TABLE ticks (id BIGINT GENERATED ALWAYS AS IDENTITY, symbol TEXT NOT NULL, ts BIGINT NOT NULL, ingest_ts BIGINT NOT NULL, seq BIGINT NOT NULL, price DOUBLE PRECISION NOT NULL, size DOUBLE PRECISION NOT NULL, side SMALLINT NOT NULL, epoch BIGINT NOT NULL); CREATE TABLE st (symbol text, ts int8, ingest_ts int8, epoch int8, seq int8, price float8, size float8, side int2);"
schema=$no_index run "binary COPY straight in, no index at all (the heap and WAL alone)" "symbol" \
  "DROP INDEX ticks_identity;\n\\\\copy ticks ($cols) FROM $work/ticks.bin (FORMAT binary)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
