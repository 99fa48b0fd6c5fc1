"""The streaming client against the real server: typed events, errors, resume, restart, books in
both encodings, token refresh."""

import asyncio
import json
import urllib.request

import pytest
from conftest import run

import tickcast
from tickcast import BookUpdate, Gap, Reset, ServerError, Snapshot, Tick


def symbols(server) -> list[str]:
    with urllib.request.urlopen(f"{server.http}/api/v1/symbols", timeout=5) as r:
        return [s["symbol"] for s in json.load(r)["symbols"]]


async def take(client, n, kind=object, limit_s=30):
    """The next `n` events of type `kind` (others are skipped), within `limit_s`."""
    out = []

    async def collect():
        async for e in client:
            if isinstance(e, kind):
                out.append(e)
                if len(out) == n:
                    return

    await asyncio.wait_for(collect(), limit_s)
    return out


def test_subscribe_acks_and_typed_events_flow(server):
    sym = symbols(server)[0]

    async def go():
        async with tickcast.connect(server.ws) as c:
            ack = await c.subscribe([f"ticks:{sym}", "ticks:NOPE"])
            assert ack.channels == [f"ticks:{sym}"] and ack.epoch
            assert [e["code"] for e in ack.errors] == ["unknown_channel"]
            first = await take(c, 1, Snapshot)
            assert first[0].ch == f"ticks:{sym}"
            ticks = await take(c, 20, Tick)
            assert all(t.symbol == sym and t.price > 0 for t in ticks)
            assert [t.seq for t in ticks] == list(range(ticks[0].seq, ticks[0].seq + 20))

    run(go())


def test_refused_ops_raise_the_server_error_code(server):
    sym = symbols(server)[0]

    async def go():
        async with tickcast.connect(server.ws) as c:
            with pytest.raises(ServerError) as e:
                await c.subscribe("ticks:NOPE")
            assert e.value.code == "unknown_channel"
            with pytest.raises(ServerError) as e:
                await c.unsubscribe(f"ticks:{sym}")
            assert e.value.code == "not_subscribed"
            with pytest.raises(ServerError) as e:
                await c.subscribe("book:*", depth=100000)
            assert e.value.code == "bad_request"
            with pytest.raises(ServerError) as e:
                await c.auth("not-a-jwt")
            assert e.value.code == "unauthorized"

    run(go())


def test_a_bad_url_parameter_is_a_typed_handshake_error(server):
    async def go():
        with pytest.raises(tickcast.HandshakeRefused) as e:
            async with tickcast.connect(server.ws, token="expired.or.bad"):
                pass
        assert e.value.status == 401 and e.value.code == "unauthorized"

    run(go())


def test_a_dropped_socket_resumes_every_channel_without_loss_or_repeat(server):
    sym = symbols(server)[1]
    ch = f"ticks:{sym}"

    async def go():
        gaps = []
        async with tickcast.connect(server.ws, on_gap=gaps.append) as c:
            await c.subscribe([ch, "bars.1s:*"])
            seen = [t.seq for t in await take(c, 50, Tick)]
            c._ws.transport.abort()  # the network drops: no close handshake
            after = [t.seq for t in await take(c, 200, Tick)]
            assert c.reconnects == 1
            seqs = seen + after
            # Exactly once: every seq from the first to the last, each once, across the drop.
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert gaps == [] and c.gaps == 0

    run(go())


def test_a_server_killed_and_restarted_is_reported_as_a_reset(own_server):
    sym = symbols(own_server)[0]
    ch = f"ticks:{sym}"

    async def go():
        async with tickcast.connect(own_server.ws, backoff_max_s=1.0) as c:
            await c.subscribe(ch)
            await take(c, 30, Tick)
            epoch = c.epoch
            own_server.kill()
            own_server.start()
            resets = await take(c, 1, Reset, limit_s=45)
            assert resets[0].ch == ch and c.reconnects >= 1
            assert c.epoch != epoch  # a new run: its seqs restarted
            # Nothing after the reset is a silent jump: seqs continue from the reset's.
            nxt = await take(c, 20, Tick)
            assert nxt[0].seq > resets[0].seq or nxt[0].seq == resets[0].seq + 1
            assert [t.seq for t in nxt] == list(range(nxt[0].seq, nxt[0].seq + 20))

    run(go(), timeout=90)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_a_thousand_book_deltas_are_verified(server, encoding):
    async def go():
        async with tickcast.connect(server.ws, encoding=encoding) as c:
            await c.subscribe("book:*")
            deltas = 0
            async for e in c:
                if isinstance(e, BookUpdate) and not e.reset:
                    deltas += 1
                    if deltas >= 1000:
                        break
            syms = [s for s in symbols(server)]
            verified = sum(c.book(s).verified for s in syms)
            assert verified >= 1000 and c.resyncs == 0
            b = c.book(syms[0])
            assert b.synced and b.bids and b.asks and b.bids[0][0] < b.asks[0][0]
            assert b.bids == sorted(b.bids, reverse=True) and b.asks == sorted(b.asks)

    run(go(), timeout=90)


def test_a_corrupted_book_is_resynced_from_a_fresh_snapshot(server):
    sym = symbols(server)[2]

    async def go():
        async with tickcast.connect(server.ws) as c:
            await c.subscribe(f"book:{sym}")
            await take(c, 5, BookUpdate)
            book = c.book(sym)
            book._bids[1e9] = 1.0  # a level the server never sent: the next checksum fails
            resets = await take(c, 1, Reset)
            assert resets[0].reason.startswith("book resync: checksum mismatch")
            assert book.resyncs == 1 and book.synced and 1e9 not in dict(book.bids)
            await take(c, 20, BookUpdate)
            assert book.synced and c.resyncs == 1

    run(go())


def test_a_token_is_refreshed_on_a_live_connection(server):
    key = server.add_user("py-refresh")
    rest = tickcast.Rest(server.http, api_key=key)
    sym = symbols(server)[0]

    async def go():
        async with tickcast.connect(server.ws, token_provider=rest.token) as c:
            await c.subscribe(f"ticks:{sym}")
            # Three lifetimes of the 3 s token: without refreshes the server closes with 4001.
            deadline = asyncio.get_running_loop().time() + 9
            while asyncio.get_running_loop().time() < deadline:
                await take(c, 1, Tick)
            assert c.token_refreshes >= 2
            assert c.reconnects == 0

    run(go())


def test_portfolio_events_carry_exact_decimals(server):
    key = server.add_user("py-portfolio")
    rest = tickcast.Rest(server.http, api_key=key)
    sym = symbols(server)[3]

    async def go():
        async with tickcast.connect(server.ws, token_provider=rest.token) as c:
            await c.subscribe("portfolio")
            await rest.record_trade(sym, "buy", "0.1", "10")
            await rest.record_trade(sym, "buy", "0.2", "20")
            async for e in c:
                if isinstance(e, tickcast.Portfolio) and e.trades == 2:
                    pos = e.positions[0]
                    assert pos.quantity == tickcast.events.Decimal("0.3") and str(pos.quantity) == "0.3"
                    break

    run(go())


def test_gap_notice_type_is_iterated_and_called_back():
    # The callback contract without a server: a Gap is what on_gap gets.
    got = []
    c = tickcast.Client("ws://127.0.0.1:1/ws", on_gap=got.append)
    c._tracker.subscribed(["ticks:X"], {})
    c._dispatch({"type": "tick", "ch": "ticks:X", "seq": 1, "ts": 1, "price": 1.0, "size": 1, "side": None, "xts": 1})
    c._dispatch({"type": "tick", "ch": "ticks:X", "seq": 4, "ts": 1, "price": 1.0, "size": 1, "side": None, "xts": 1})
    c._dispatch({"type": "tick", "ch": "ticks:X", "seq": 4, "ts": 1, "price": 1.0, "size": 1, "side": None, "xts": 1})
    assert got == [Gap("ticks:X", 2, 3)] and c.duplicates == 1
    items = [c._queue.get_nowait() for _ in range(c._queue.qsize())]
    assert [type(i).__name__ for i in items] == ["Tick", "Gap", "Tick"]
