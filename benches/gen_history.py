#!/usr/bin/env python3
"""History for `tickcast import` benchmarks: N ticks of S symbols spread over H hours, ending
two days ago, as a vendor export (`timestamp,symbol,price,qty,side`, RFC 3339 times).

    python3 benches/gen_history.py OUT.csv [--ticks 2000000] [--symbols 100] [--hours 48] [--seed 7]

Times are in order (random gaps), each symbol a random walk in cents; deterministic per seed.
"""
import argparse
import datetime as dt
import random


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--ticks", type=int, default=2_000_000)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--hours", type=float, default=48)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    syms = [f"S{i:03d}" for i in range(a.symbols)]
    cents = [rnd.randint(1_000, 100_000) for _ in syms]
    span_us = int(a.hours * 3600 * 1_000_000)
    end = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=2)
    start = end - dt.timedelta(microseconds=span_us)
    start_us = int(start.timestamp()) * 1_000_000
    step = span_us / a.ticks
    with open(a.out, "w") as f:
        f.write("timestamp,symbol,price,qty,side\n")
        for i in range(a.ticks):
            k = rnd.randrange(a.symbols)
            cents[k] = max(1, cents[k] + rnd.randint(-5, 5))
            us = start_us + int(i * step)
            t = dt.datetime.fromtimestamp(us / 1_000_000, dt.timezone.utc)
            stamp = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{us % 1_000_000:06d}Z"
            side = "buy" if rnd.random() < 0.5 else "sell"
            f.write(f"{stamp},{syms[k]},{cents[k] / 100:.2f},{rnd.randint(1, 500)},{side}\n")


if __name__ == "__main__":
    main()
