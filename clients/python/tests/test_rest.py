"""The REST client against the real server: paged history, book, portfolio and trades with exact
decimals, predictions, problem+json as ProblemError."""

import asyncio
import time
from decimal import Decimal

import pytest
from conftest import run

import tickcast
from tickcast import ProblemError


def test_tick_history_is_read_through_every_page(server):
    rest = tickcast.Rest(server.http)

    async def go():
        sym = (await rest.symbols())[0]["symbol"]
        end = int(time.time() * 1000)
        # Enough stored ticks for ten pages of 20 (1000 ticks/s over 5 symbols; stored within ms).
        while True:
            page = await rest.request("GET", f"/api/v1/ticks/{sym}", {"to": end, "limit": 1000})
            if len(page["ticks"]) >= 250:
                break
            await asyncio.sleep(0.5)
            end = int(time.time() * 1000)
        pages = []
        orig = rest.request

        async def counting(*a, **k):
            r = await orig(*a, **k)
            pages.append(r)
            return r

        rest.request = counting
        ticks = [t async for t in rest.ticks(sym, end=end, page_size=20)]
        assert len(pages) >= 10
        assert len(ticks) == sum(len(p["ticks"]) for p in pages) >= 200
        keys = [(t["ts"], t["seq"]) for t in ticks]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)

    run(go())


def test_bar_history_pages_end(server):
    rest = tickcast.Rest(server.http)

    async def go():
        sym = (await rest.symbols())[0]["symbol"]
        bars = [b async for b in rest.bars(sym, "1s", page_size=2)]
        starts = [b["start"] for b in bars]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)

    run(go())


def test_book_portfolio_and_trades_are_exact(server):
    key = server.add_user("py-rest")
    rest = tickcast.Rest(server.http, api_key=key)

    async def go():
        sym = (await rest.symbols())[1]["symbol"]
        book = await rest.book(sym, depth=5)
        assert len(book["bids"]) <= 5 and book["bids"][0][0] < book["asks"][0][0]
        a = await rest.record_trade(sym, "buy", Decimal("0.1"), "0.1", idempotency_key="py-a")
        assert a["quantity"] == Decimal("0.1")
        await rest.record_trade(sym, "buy", "0.2", "0.2")
        again = await rest.record_trade(sym, "buy", Decimal("0.1"), "0.1", idempotency_key="py-a")
        assert again["id"] == a["id"]  # replayed, not recorded twice
        pf = await rest.portfolio()
        pos = next(p for p in pf["positions"] if p["symbol"] == sym)
        assert pos["quantity"] == Decimal("0.3") and isinstance(pos["quantity"], Decimal)

    run(go())


def test_problems_are_typed_errors(server):
    rest = tickcast.Rest(server.http)

    async def go():
        with pytest.raises(ProblemError) as e:
            [t async for t in rest.ticks("AAPL", page_size=0)]
        assert e.value.status == 400 and e.value.code == "limit_out_of_range"
        with pytest.raises(ProblemError) as e:
            await rest.book("NOSUCH")
        assert e.value.status == 404
        with pytest.raises(ProblemError) as e:
            await rest.portfolio()
        assert e.value.code == "unauthorized"
        with pytest.raises(ProblemError) as e:
            await rest.predictions("AAPL", model="nope")
        assert e.value.code == "bad_model"

    run(go())


def test_predictions_answer_a_forecast_or_say_why_not(server):
    rest = tickcast.Rest(server.http)

    async def go():
        sym = (await rest.symbols())[0]["symbol"]
        try:
            p = await rest.predictions(sym, horizon_s=5)
        except ProblemError as e:
            assert e.code == "insufficient_data"  # the only refusal a fresh server may give
        else:
            assert p["symbol"] == sym and p["interval"]["low"] <= p["forecast"] <= p["interval"]["high"]

    run(go())
