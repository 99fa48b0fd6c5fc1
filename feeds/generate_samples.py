#!/usr/bin/env python3
"""Writes feeds/sample_ticks.csv and feeds/sample_ticks.jsonl: the same 300 ticks for 5 symbols.

Deterministic: a fixed 64-bit LCG, no library randomness, so re-running produces identical files.
The CSV spells `ts` as integer milliseconds, the JSONL as RFC 3339 with milliseconds, so the two
files also exercise both timestamp forms (a unit test checks they parse to identical ticks).
"""
import datetime
import json
import math
import os

N = 300
START_MS = 1704205800000  # 2024-01-02T14:30:00Z
SYMBOLS = [  # symbol, start price, price decimals, size decimals, max size
    ("AAPL", 185.64, 2, 0, 500),
    ("MSFT", 370.87, 2, 0, 300),
    ("NVDA", 481.68, 2, 0, 200),
    ("BTC-USD", 45120.55, 2, 4, 2),
    ("ETH-USD", 2375.10, 2, 4, 20),
]

state = 0x2545F4914F6CDD1D


def rand():
    """Uniform in [0, 1) from a 64-bit LCG (Knuth MMIX constants)."""
    global state
    state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    return (state >> 11) / float(1 << 53)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    prices = [s[1] for s in SYMBOLS]
    ts = START_MS
    rows = []
    for _ in range(N):
        ts += 5 + int(rand() * 195)
        i = int(rand() * len(SYMBOLS))
        sym, _, pdec, sdec, smax = SYMBOLS[i]
        prices[i] = max(0.01, round(prices[i] * math.exp((rand() - 0.5) * 0.002), pdec))
        size = round(max(10 ** -sdec, rand() * smax), sdec)
        if sdec == 0:
            size = int(size)
        side = "buy" if rand() < 0.5 else "sell"
        rows.append((ts, sym, prices[i], size, side))
    with open(os.path.join(here, "sample_ticks.csv"), "w", newline="\n") as f:
        f.write("ts,symbol,price,size,side\n")
        for ts, sym, price, size, side in rows:
            f.write(f"{ts},{sym},{price},{size},{side}\n")
    with open(os.path.join(here, "sample_ticks.jsonl"), "w", newline="\n") as f:
        for ts, sym, price, size, side in rows:
            t = datetime.datetime.fromtimestamp(ts / 1000, tz=datetime.timezone.utc)
            iso = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts % 1000:03d}Z"
            rec = {"ts": iso, "symbol": sym, "price": price, "size": size, "side": side}
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
