#!/usr/bin/env bash
# `tickcast import` of one file into a fresh store, timed: wall seconds, the tickcast process's
# CPU (user + sys, /usr/bin/time) and, on PostgreSQL, the CPU of every backend of the scratch
# database (its connections and parallel index-build workers: utime + stime from /proc,
# sampled every 0.2 s); prints one Markdown row with the load average before and after.
# usage: [BIN=target/release/tickcast] benches/import_rate.sh sqlite|postgres FILE
# PostgreSQL on 127.0.0.1:5432 (user postgres): a scratch database tc_import_rate_PID, dropped.
set -uo pipefail
backend=$1 file=$2
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/tickcast}
work=$(mktemp -d /tmp/tickcast-rate-XXXXXX)
P="psql -h 127.0.0.1 -U postgres -q"
db=tc_import_rate_$$
case $backend in
  sqlite) url="sqlite://$work/store.db?mode=rwc" ;;
  postgres) $P -d test -c "CREATE DATABASE $db"; url="postgres://postgres@127.0.0.1:5432/$db" ;;
  *) echo "backend: sqlite or postgres" >&2; exit 64 ;;
esac
trap '[ "$backend" = postgres ] && $P -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"; rm -rf "$work"' EXIT
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s.%N)
DATABASE_URL=$url /usr/bin/time -f "%U %S" -o "$work/time" "$bin" import "$file" > "$work/out" 2> "$work/err" &
tpid=$!
declare -A cpu
tck=$(getconf CLK_TCK)
while kill -0 $tpid 2>/dev/null; do
  if [ "$backend" = postgres ]; then
    for pid in $($P -d test -tAc "SELECT pid FROM pg_stat_activity WHERE datname = '$db'"); do
      v=$(awk '{print $14+$15}' /proc/$pid/stat 2>/dev/null) && [ -n "$v" ] && cpu[$pid]=$v
    done
  fi
  sleep 0.2
done
wait $tpid; rc=$?
t1=$(date +%s.%N)
load1=$(cut -d' ' -f1-3 /proc/loadavg)
backend_cpu=0; for v in "${cpu[@]}"; do backend_cpu=$((backend_cpu + v)); done
size=""
[ "$backend" = sqlite ] && size=$(du -sm "$work" | cut -f1)" MB"
[ "$backend" = postgres ] && size=$($P -d $db -tAc "SELECT pg_size_pretty(pg_database_size('$db'))")
stored=$(awk -F: '/^ticks stored/ {gsub(/ /,"",$2); print $2}' "$work/out")
bars=$(awk -F: '/^bars written/ {gsub(/ /,"",$2); print $2}' "$work/out")
mode=$(awk -F': *' '/^load:/ {print $2}' "$work/out")
read u s < "$work/time"
awk -v b="$backend" -v st="$stored" -v br="$bars" -v a=$t0 -v z=$t1 -v u=$u -v s=$s -v bc=$backend_cpu -v k=$tck \
    -v l0="$load0" -v l1="$load1" -v m="$mode" -v sz="$size" -v rc=$rc 'BEGIN {
  w = z - a; m1 = st / 1e6; pc = bc / k
  printf "| %s | %d | %d | %.1f s | **%.0f** | %.1f | %.1f | %.1f | %s | %s | %s → %s | %s |\n",
    b, st, br, w, st / w, (u + s) / m1, pc / m1, (u + s + pc) / m1, sz, m, l0, l1, (rc == 0 ? "ok" : "exit " rc) }'
[ $rc -eq 0 ] || cat "$work/err" >&2
# The load's end (indexes, new days, edge windows, statistics): from the last progress line
# (every row written) to the summary's elapsed.
last=$(grep -o '[0-9]* s$' "$work/err" | tail -1 | cut -d' ' -f1)
total=$(awk '/^elapsed/ {print $2}' "$work/out")
echo "  (progress: rows all written by ~${last:-?} s of ${total:-?} s; the rest is the load's end)"
