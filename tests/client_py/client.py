#!/usr/bin/env python3
"""An independent tickcast client, written from docs/PROTOCOL.md alone (it reads no server code).

It starts the server binary (SERVER_BIN) on an ephemeral loopback port with the synthetic market,
then, in both encodings (JSON and MessagePack):
- subscribes to ticks, bars.1s, indicators and book (at depth 5 and, on a second connection, 10);
- checks that every channel's `seq` goes up by exactly 1 (no throttle, a client that keeps up:
  the document allows no jump here), and that every book event leaves its copy with the event's
  checksum, computed by the document's number rule;
- resumes a ticks channel with `from` + `epoch` (a replay: the missed seqs, in order) and a book
  channel at depth 5 (a `snapshot` with `"reset": true`);
- checks REST tick history against the ticks it saw live: the same (epoch, seq), the same
  exchange time `xts`, REST `ingest_ts` = socket `ts`, the same price and size.

usage: SERVER_BIN=target/debug/tickcast python3 tests/client_py/client.py
needs: pip install -r tests/client_py/requirements.txt
Exits 0 when every check held; bounded to TIME_LIMIT_S in all.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from decimal import Decimal

import msgpack
import websockets

TIME_LIMIT_S = 110
READ_S = 6.0
SYMBOLS = 4


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


# --- numbers and checksums (docs/PROTOCOL.md "Order books") ---------------------------------


def plain(x):
    """The checksum's number text: the shortest decimal that reads back as the same double, in
    plain notation (no exponent, no trailing `.0`)."""
    if isinstance(x, bool):
        raise Failure(f"a boolean where a number belongs: {x}")
    if isinstance(x, int):
        return str(x)
    d = Decimal(repr(float(x))).normalize()
    return format(d, "f")


def book_checksum(bids, asks):
    parts = []
    for i in range(10):
        for side in (bids, asks):
            if i < len(side):
                parts.append(f"{plain(side[i][0])}:{plain(side[i][1])}")
    return zlib.crc32(":".join(parts).encode()) & 0xFFFFFFFF


class BookCopy:
    """A subscriber's copy of one book at `depth` levels per side."""

    def __init__(self, depth):
        self.depth = depth
        self.bids = {}
        self.asks = {}

    def apply(self, e):
        if e["reset"]:
            self.bids.clear()
            self.asks.clear()
        for side, levels in ((self.bids, e["bids"]), (self.asks, e["asks"])):
            for price, size in levels:
                if size == 0:
                    side.pop(price, None)
                else:
                    side[price] = size
        for side, best_first in ((self.bids, True), (self.asks, False)):
            for price in sorted(side, reverse=best_first)[self.depth:]:
                del side[price]
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        got = book_checksum(bids, asks)
        check(got == e["checksum"], f"{e['ch']} seq {e['seq']}: checksum {got} != {e['checksum']}")


# --- the wire: JSON objects, or MessagePack arrays of positional events -----------------------

POSITIONAL = {
    1: ("tick", ["ch", "seq", "ts", "price", "size", "side", "xts"]),
    2: ("bar", ["ch", "seq", "ts", "start", "open", "high", "low", "close", "volume", "trades", "final"]),
    3: ("indicators", ["ch", "seq", "ts", None]),
    5: ("book", ["ch", "seq", "ts", "reset", "bids", "asks", "checksum"]),
}


def from_positional(a):
    kind, fields = POSITIONAL[a[0]]
    out = {"type": kind}
    for name, value in zip(fields, a[1:]):
        if name is None:
            out.update(value)  # indicators: the map of period-named values
        else:
            out[name] = value
    return out


def messages(frame, encoding):
    """The messages of one frame: an object or an array of them (JSON), always an array
    (MessagePack), events positional there."""
    if encoding == "json":
        check(isinstance(frame, str), "a JSON connection got a binary frame")
        v = json.loads(frame)
        return v if isinstance(v, list) else [v]
    check(isinstance(frame, bytes), "a MessagePack connection got a text frame")
    items = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    check(isinstance(items, list), "a MessagePack frame is always an array")
    out = []
    for m in items:
        if isinstance(m, list):
            out.append(from_positional(m))
        else:
            if m.get("type") == "snapshot":
                m["data"] = [from_positional(e) for e in m["data"]]
            out.append(m)
    return out


class Conn:
    def __init__(self, ws, encoding):
        self.ws = ws
        self.encoding = encoding
        self.pending = []

    async def send(self, op):
        await self.ws.send(json.dumps(op))

    async def next(self, timeout=5.0):
        while not self.pending:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            self.pending.extend(messages(frame, self.encoding))
        return self.pending.pop(0)

    async def op(self, op):
        """Sends an op and returns its replies up to its `ack` (errors first, ack last), and
        what else arrived meanwhile."""
        await self.send(op)
        replies, other = [], []
        while True:
            m = await self.next()
            if m.get("id") == op.get("id") and m["type"] in ("ack", "error"):
                replies.append(m)
                if m["type"] == "ack":
                    return replies, other
            else:
                other.append(m)


# --- following channels -------------------------------------------------------------------


class Follower:
    """Every channel's last seq, and a book copy per book channel."""

    def __init__(self, book_depth):
        self.book_depth = book_depth
        self.last = {}
        self.books = {}
        self.ticks = {}  # (epoch-less) seq -> tick, per channel
        self.counts = {"tick": 0, "bar": 0, "indicators": 0, "book": 0}

    def on(self, m):
        t = m["type"]
        if t == "snapshot":
            ch = m["ch"]
            self.last[ch] = m["seq"]
            if ch.startswith("book:"):
                copy = BookCopy(self.book_depth)
                if m["data"]:
                    copy.apply(m["data"][0])
                self.books[ch] = copy
            for e in m["data"]:
                check(e["seq"] <= m["seq"], f"{ch}: snapshot data past its seq")
            return
        if t not in self.counts:
            return
        ch = m["ch"]
        check(ch in self.last, f"{ch}: an event before its snapshot")
        want = self.last[ch] + 1
        check(m["seq"] == want, f"{ch}: seq {m['seq']} where {want} was due (an unexplained jump)")
        self.last[ch] = m["seq"]
        self.counts[t] += 1
        if t == "book":
            self.books[ch].apply(m)
        elif t == "tick":
            check(isinstance(m["ts"], int) and isinstance(m["xts"], int), "tick times are integers")
            self.ticks.setdefault(ch, {})[m["seq"]] = m


async def follow(conns, seconds):
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for conn, follower in conns:
            try:
                m = await conn.next(timeout=0.05)
            except asyncio.TimeoutError:
                continue
            follower.on(m)
            while conn.pending:
                follower.on(conn.pending.pop(0))


def get(base, path):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.loads(r.read())


async def run_encoding(base_ws, base_http, encoding):
    url = f"{base_ws}/ws?v=1&encoding={encoding}"
    async with websockets.connect(url, max_size=None) as ws5, websockets.connect(url, max_size=None) as ws10:
        main, deep = Conn(ws5, encoding), Conn(ws10, encoding)
        f5, f10 = Follower(5), Follower(10)
        replies, early = await main.op({"op": "subscribe", "id": 1,
                                        "channels": ["ticks:*", "bars.1s:*", "indicators:*"]})
        check(replies[-1]["type"] == "ack" and len(replies) == 1, f"subscribe: {replies}")
        epoch = replies[-1]["epoch"]
        for m in early:
            f5.on(m)
        replies, early = await main.op({"op": "subscribe", "id": 2, "channels": ["book:*"], "depth": 5})
        check(len(replies) == 1, f"book subscribe: {replies}")
        for m in early:
            f5.on(m)
        replies, early = await deep.op({"op": "subscribe", "id": 3, "channels": ["book:*"], "depth": 10})
        check(len(replies) == 1, f"book subscribe depth 10: {replies}")
        for m in early:
            f10.on(m)
        await follow([(main, f5), (deep, f10)], READ_S)
        for kind, n in f5.counts.items():
            check(n > 0, f"{encoding}: no {kind} event in {READ_S} s")
        check(f10.counts["book"] > 0, f"{encoding}: no book event at depth 10")
        print(f"{encoding}: {f5.counts} at depth 5, {f10.counts['book']} book events at depth 10; "
              f"every seq contiguous, every checksum matched")

    # Resume after a disconnect: ticks replayed from the seq after `from`; a depth-5 book gets a
    # reset snapshot.
    tick_ch = max(f5.ticks, key=lambda c: len(f5.ticks[c]))
    book_ch = next(iter(f5.books))
    seen_tick, seen_book = f5.last[tick_ch], f5.last[book_ch]
    await asyncio.sleep(0.5)
    async with websockets.connect(url, max_size=None) as ws:
        conn = Conn(ws, encoding)
        replies, early = await conn.op({"op": "subscribe", "id": 4, "channels": [tick_ch, book_ch],
                                        "depth": 5, "from": {tick_ch: seen_tick, book_ch: seen_book},
                                        "epoch": epoch})
        check(len(replies) == 1 and replies[0]["epoch"] == epoch, f"resume: {replies}")
        pending = early + conn.pending
        conn.pending = []
        resumed = Follower(5)
        resumed.last[tick_ch] = seen_tick
        got_book_reset = False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (not got_book_reset or resumed.last[tick_ch] < seen_tick + 3):
            m = pending.pop(0) if pending else await conn.next()
            if m["type"] == "snapshot":
                check(m["ch"] == book_ch, f"{m['ch']}: a snapshot where a replay was due")
                check(m.get("reset") is True, f"{book_ch}: a resume's snapshot has reset: true")
                got_book_reset = True
            resumed.on(m)
        check(got_book_reset, f"{book_ch}: no reset snapshot on resume")
        check(resumed.last[tick_ch] >= seen_tick + 1, f"{tick_ch}: nothing replayed")
        print(f"{encoding}: resume replayed {tick_ch} from {seen_tick + 1} in order; "
              f"{book_ch} at depth 5 answered with a reset snapshot")

    # REST history against what the socket delivered: one identity, one clock.
    symbol = tick_ch.split(":", 1)[1]
    live = f5.ticks[tick_ch]
    deadline = time.monotonic() + 10
    while True:
        stored, cursor = {}, None
        while True:
            q = "?from=0&limit=1000" + (f"&cursor={cursor}" if cursor else "")
            page = get(base_http, f"/api/v1/ticks/{symbol}{q}")
            for t in page["ticks"]:
                if t["epoch"] == epoch:
                    stored[t["seq"]] = t
            cursor = page["next_cursor"]
            if not cursor:
                break
        missing = [s for s in live if s not in stored]
        if not missing:
            break
        check(time.monotonic() < deadline, f"{symbol}: {len(missing)} live ticks never stored")
        await asyncio.sleep(0.2)
    for seq, t in live.items():
        s = stored[seq]
        check(s["xts"] == t["xts"], f"{symbol} seq {seq}: REST xts {s['xts']} != socket xts {t['xts']}")
        check(s["ingest_ts"] == t["ts"], f"{symbol} seq {seq}: REST ingest_ts != socket ts")
        check(s["price"] == t["price"] and s["size"] == t["size"], f"{symbol} seq {seq}: {s} vs {t}")
        check(type(s["size"]) is type(t["size"]) or encoding == "msgpack",
              f"{symbol} seq {seq}: size written differently: {s['size']!r} vs {t['size']!r}")
        check(s["side"] == t["side"], f"{symbol} seq {seq}: side")
    print(f"{encoding}: {len(live)} live ticks of {symbol} found in REST by (epoch, seq), same xts, "
          f"ingest_ts, price, size and side")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, workdir):
    port = free_port()
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env.update({
        "TICKCAST_SERVER__LISTEN": f"127.0.0.1:{port}",
        "TICKCAST_DATABASE__URL": f"sqlite://{workdir}/client_py.db?mode=rwc",
        "TICKCAST_FEEDS__SYNTHETIC__SYMBOLS": str(SYMBOLS),
        "TICKCAST_FEEDS__SYNTHETIC__RATE": "200",
        "TICKCAST_LOG__LEVEL": "warn",
    })
    log = open(os.path.join(workdir, "server.log"), "w")
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if proc.poll() is not None:
            raise Failure(f"the server exited: {open(log.name).read()}")
        try:
            get(base, "/healthz")
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise Failure("the server did not answer /healthz")


async def main():
    binary = os.environ.get("SERVER_BIN")
    if not binary:
        raise Failure("set SERVER_BIN to a tickcast binary")
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_server(binary, workdir)
        try:
            # Let the market produce bars and indicators first.
            await asyncio.sleep(1.5)
            for encoding in ("json", "msgpack"):
                await run_encoding(f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", encoding)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), TIME_LIMIT_S))
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except asyncio.TimeoutError:
        print(f"FAILED: not done within {TIME_LIMIT_S} s", file=sys.stderr)
        sys.exit(1)
    print("ok: the server keeps the contract as docs/PROTOCOL.md writes it, in both encodings")
