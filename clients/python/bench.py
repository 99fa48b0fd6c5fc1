"""Throughput of one client: events/s decoded from server frames and handed over by async
iteration (decode, seq tracking, typed event, queue, consumer), JSON and MessagePack, without a
socket so the client is what is measured.

    python clients/python/bench.py [events]

Frames are what the server sends for `ticks:*`: batches of 64 tick events (docs/PROTOCOL.md)."""

import asyncio
import json
import sys
import time

import msgpack

import tickcast

BATCH = 64


def frames(n: int, encoding: str) -> list:
    out = []
    for start in range(0, n, BATCH):
        evs = [(f"ticks:SYM{i % 50:04d}", i // 50 + 1, 1764070000123456789 + i, 189.23 + i % 7 * 0.01, 100 + i % 3, "buy" if i % 2 else "sell", 1764070000120000000 + i) for i in range(start, min(n, start + BATCH))]
        if encoding == "json":
            out.append(json.dumps([{"type": "tick", "ch": c, "seq": s, "ts": ts, "price": p, "size": z, "side": d, "xts": x} for c, s, ts, p, z, d, x in evs], separators=(",", ":")))
        else:
            out.append(msgpack.packb([[1, c, s, ts, p, z, d, x] for c, s, ts, p, z, d, x in evs]))
    return out


async def measure(encoding: str, n: int) -> float:
    data = frames(n, encoding)
    client = tickcast.Client("ws://127.0.0.1:1/ws", encoding=encoding)
    client._tracker.subscribed(["ticks:*"], {})
    got = 0
    t0 = time.perf_counter()
    for f in data:
        for m in tickcast.wire.decode_frame(f):
            client._dispatch(m)
        while not client._queue.empty():
            await client.__anext__()
            got += 1
    elapsed = time.perf_counter() - t0
    assert got == n, (got, n)
    return n / elapsed


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    for enc in ("json", "msgpack"):
        best = max([await measure(enc, n) for _ in range(3)])
        print(f"python {enc:8} {best:>10,.0f} events/s (best of 3, {n} tick events in frames of {BATCH})")


if __name__ == "__main__":
    asyncio.run(main())
