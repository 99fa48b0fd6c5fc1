#!/usr/bin/env python3
"""Seeded trade history for tickcast's benchmarks: the replay feed (`replay_store.sh`), `tickcast
import` (BENCHMARKS.md "Import") and the history-at-scale run (`history_at_scale.sh`).

    python3 benches/gen_ticks.py OUT [--rows 2000000] [--symbols 100] [--hours 48 | --days D]
        [--end now|-2d|UNIX_SECONDS|RFC3339] [--format csv|jsonl] [--gzip]
        [--time ms|rfc3339] [--header replay|vendor] [--seed 22]

OUT is a path or `-` (stdout). ROWS trades of SYMBOLS symbols (S000, S001, ...) spread evenly
over the span that ends at END (default: now; `-2d` is two days ago), in time order, each symbol
a multiplicative random walk. Times are integer ms (`--time ms`, the default) or RFC 3339 with
microseconds. CSV columns are `ts,symbol,price,size,side` (`--header replay`, the default) or a
vendor's `timestamp,symbol,price,qty,side` (`--header vendor`); JSONL objects use the replay's
field names. The same flags and seed give the same file, byte for byte, whatever END resolves to
only moving the times.
"""
import argparse
import datetime as dt
import gzip
import io
import json
import random
import sys
import time

BATCH = 100_000


def parse_end(text):
    """END as integer ms since the Unix epoch."""
    if text == "now":
        return int(time.time() * 1000)
    if text.startswith("-") and text.endswith("d"):
        return int(time.time() * 1000) - int(float(text[1:-1]) * 86_400_000)
    try:
        return int(float(text) * 1000)
    except ValueError:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return int(parsed.timestamp() * 1000)


def rfc3339(us):
    t = dt.datetime.fromtimestamp(us // 1_000_000, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{us % 1_000_000:06d}Z"


def open_out(path, compress):
    raw = sys.stdout.buffer if path == "-" else open(path, "wb")
    if compress:
        raw = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0)
    return io.TextIOWrapper(raw, encoding="ascii", newline="\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output path, or - for stdout")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--symbols", type=int, default=100)
    span = ap.add_mutually_exclusive_group()
    span.add_argument("--hours", type=float)
    span.add_argument("--days", type=float)
    ap.add_argument("--end", default="now", help="now, -Nd, Unix seconds or RFC 3339")
    ap.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    ap.add_argument("--gzip", action="store_true", help="gzip the output (level 1)")
    ap.add_argument("--time", choices=["ms", "rfc3339"], default="ms")
    ap.add_argument("--header", choices=["replay", "vendor"], default="replay")
    ap.add_argument("--seed", type=int, default=22)
    a = ap.parse_args()
    if a.rows < 1 or a.symbols < 1:
        ap.error("--rows and --symbols must be at least 1")
    hours = a.days * 24 if a.days is not None else (a.hours if a.hours is not None else 48)
    if hours <= 0:
        ap.error("the span (--hours/--days) must be positive")

    rng = random.Random(a.seed)
    names = [f"S{i:03d}" for i in range(a.symbols)]
    price = [100.0 + 10 * i for i in range(a.symbols)]
    end_us = parse_end(a.end) * 1000
    span_us = int(hours * 3_600_000_000)
    start_us = end_us - span_us
    step = span_us / a.rows
    stamp = (lambda us: us // 1000) if a.time == "ms" else rfc3339
    ts_key, size_key = ("timestamp", "qty") if a.header == "vendor" else ("ts", "size")

    out = open_out(a.out, a.gzip)
    if a.format == "csv":
        out.write(f"{ts_key},symbol,price,{size_key},side\n")
    lines = []
    for i in range(a.rows):
        s = rng.randrange(a.symbols)
        price[s] = max(0.01, price[s] * (1 + rng.gauss(0, 0.0005)))
        side = "buy" if rng.random() < 0.5 else "sell"
        size = rng.randint(1, 500)
        ts = stamp(start_us + int(i * step))
        if a.format == "csv":
            lines.append(f"{ts},{names[s]},{price[s]:.4f},{size},{side}\n")
        else:
            record = {ts_key: ts, "symbol": names[s], "price": round(price[s], 4),
                      size_key: size, "side": side}
            lines.append(json.dumps(record, separators=(",", ":")) + "\n")
        if len(lines) == BATCH:
            out.writelines(lines)
            lines.clear()
    out.writelines(lines)
    out.close()


if __name__ == "__main__":
    main()
