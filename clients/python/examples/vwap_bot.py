"""A bot printing a live 1-minute VWAP of one symbol's trades.

    python examples/vwap_bot.py ws://127.0.0.1:8080/ws AAPL [seconds]

A reset (the server restarted, or could not replay what the bot missed) empties the window: the
VWAP starts over rather than mixing two histories; a gap is reported (trades were lost)."""

import asyncio
import sys
from collections import deque

import tickcast

WINDOW_NS = 60 * 1_000_000_000


async def main(url: str, symbol: str, seconds: float | None) -> None:
    window: deque[tickcast.Tick] = deque()
    notional = volume = 0.0
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + seconds if seconds else None
    last_print = 0.0
    async with tickcast.connect(url) as client:
        await client.subscribe(f"ticks:{symbol}")
        async for event in client:
            if isinstance(event, (tickcast.Snapshot, tickcast.Reset)):
                if isinstance(event, tickcast.Reset):
                    print(f"reset: {event.reason}; the window starts over")
                window.clear()
                notional = volume = 0.0
                continue
            if isinstance(event, tickcast.Gap):
                print(f"gap: {event.missed} trades of {event.ch} lost")
                continue
            if not isinstance(event, tickcast.Tick):
                continue
            window.append(event)
            notional += event.price * event.size
            volume += event.size
            while window and window[0].ts <= event.ts - WINDOW_NS:
                old = window.popleft()
                notional -= old.price * old.size
                volume -= old.size
            now = loop.time()
            if now - last_print >= 1 and volume > 0:
                last_print = now
                print(f"{symbol} vwap(1m) {notional / volume:.4f} over {len(window)} trades, last {event.price}")
            if stop_at is not None and now >= stop_at:
                return


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: vwap_bot.py WS_URL SYMBOL [SECONDS]")
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else None))
