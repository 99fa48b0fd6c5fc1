#!/usr/bin/env bash
# API fuzzing: schemathesis generates requests from the server's own /openapi.json and runs
# every check: no 5xx, every response as documented (status codes, content types, headers,
# schemas), every schema-valid request accepted and every schema-violating one refused. The few
# rules a schema cannot state are allowed per operation in tests/schemathesis.toml. Bounded: 50
# examples per operation, a fixed seed, loopback only.
#
# usage: SERVER_BIN=target/debug/tickcast bash tests/api-fuzz.sh   (needs `pip install schemathesis`)
set -euo pipefail
bin=${SERVER_BIN:?set SERVER_BIN to a tickcast binary}
port=${API_FUZZ_PORT:-18601}
dir=$(mktemp -d)
db="sqlite://$dir/fuzz.db?mode=rwc"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

# A real API key, so the portfolio routes are exercised past authentication.
key=$(TICKCAST_DATABASE__URL="$db" "$bin" user add fuzz 2>/dev/null)
# The rate limits are lifted: this run is about answers, not about 429s. A token secret, so the
# key-for-token exchange is exercised too.
TICKCAST_DATABASE__URL="$db" TICKCAST_SERVER__LISTEN="127.0.0.1:$port" \
  TICKCAST_AUTH__JWT_HS256_SECRET=api-fuzz-secret-of-at-least-32-bytes \
  TICKCAST_API__REQUESTS_PER_SECOND=1000000 TICKCAST_API__BURST=1000000 \
  TICKCAST_FEEDS__SYNTHETIC__SYMBOLS=5 TICKCAST_LOG__LEVEL=warn \
  "$bin" serve >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log"; exit 1; }
  sleep 0.1
done

# One worker: with two, hypothesis describes strategies by parsing source in both threads at once,
# and CPython 3.11 can fail that with "AST constructor recursion depth mismatch" (a tool crash,
# seen in CI, not a finding).
st --config-file "$(dirname "$0")/schemathesis.toml" run "http://127.0.0.1:$port/openapi.json" \
  --checks all \
  --max-examples 50 --workers 1 --seed 20261201 \
  -H "Authorization: Bearer $key"
