"""The REST API (`/api/v1`): history as async iterators over every page, the book, indicators,
predictions, the portfolio and trades with exact decimals, problem+json answers as ProblemError.
HTTP is the standard library's, run in a worker thread so the event loop never blocks."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import datetime
from decimal import Decimal
from typing import Any, AsyncIterator
from urllib.parse import quote, urlencode

from .errors import ProblemError, TickcastError


def _time(t: int | str | datetime | None) -> str | None:
    """`from`/`to` as the server reads them: epoch ms or RFC 3339."""
    if t is None:
        return None
    if isinstance(t, datetime):
        return t.isoformat()
    return str(t)


class Rest:
    """`Rest("http://127.0.0.1:8080", api_key=...)`; every method is a coroutine or async iterator."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    async def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        url = self.base_url + path + ("?" + urlencode(q) if q else "")
        return await asyncio.to_thread(self._blocking, method, url, body, headers or {})

    def _blocking(self, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
        data = None
        if body is not None:
            data = json.dumps(body, default=_json_default).encode()
            headers = {**headers, "content-type": "application/json"}
        if self.api_key:
            headers = {**headers, "authorization": f"Bearer {self.api_key}"}
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as res:
                return json.loads(res.read(), parse_float=Decimal)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                p = json.loads(raw)
            except ValueError:
                raise ProblemError(e.code, "http_error", e.reason, raw[:200].decode(errors="replace")) from None
            raise ProblemError(e.code, p.get("code", "http_error"), p.get("title", ""), p.get("detail", ""), p) from None
        except (urllib.error.URLError, OSError) as e:
            raise TickcastError(f"{method} {url}: {e}") from e

    # --- market data ---

    async def symbols(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/api/v1/symbols"))["symbols"]

    async def ticks(self, symbol: str, *, start: int | str | datetime | None = None, end: int | str | datetime | None = None, page_size: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every stored tick of `symbol` in [start, end), oldest first, page after page."""
        cursor = None
        while True:
            page = await self.request(
                "GET",
                f"/api/v1/ticks/{quote(symbol, safe='')}",
                {"from": _time(start), "to": _time(end), "limit": page_size, "cursor": cursor},
            )
            for t in page["ticks"]:
                yield t
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def bars(self, symbol: str, interval: str = "1m", *, start: int | str | datetime | None = None, end: int | str | datetime | None = None, page_size: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every bar of `symbol` at `interval` (1s, 1m, 5m, 1h, 1d) in [start, end), page after page."""
        frm = _time(start)
        while True:
            page = await self.request(
                "GET",
                f"/api/v1/bars/{quote(symbol, safe='')}",
                {"interval": interval, "from": frm, "to": _time(end), "limit": page_size},
            )
            for b in page["bars"]:
                yield b
            if page.get("next_from") is None:
                return
            frm = str(page["next_from"])

    async def book(self, symbol: str, depth: int | None = None) -> dict[str, Any]:
        return await self.request("GET", f"/api/v1/book/{quote(symbol, safe='')}", {"depth": depth})

    async def indicators(self, symbol: str) -> dict[str, Any]:
        return await self.request("GET", f"/api/v1/indicators/{quote(symbol, safe='')}")

    async def predictions(self, symbol: str, *, horizon_s: int | None = None, model: str | None = None) -> dict[str, Any]:
        return await self.request("GET", f"/api/v1/predictions/{quote(symbol, safe='')}", {"horizon_s": horizon_s, "model": model})

    # --- the caller's own (Bearer API key) ---

    async def portfolio(self) -> dict[str, Any]:
        """Positions and P&L; every exact field (`quantity`, `avg_cost`, P&L) is a Decimal."""
        return await self.request("GET", "/api/v1/portfolio")

    async def record_trade(self, symbol: str, side: str, quantity: Decimal | str, price: Decimal | str, *, time: int | str | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        """Records a fill; `quantity` and `price` travel as exact decimal strings."""
        body: dict[str, Any] = {"symbol": symbol, "side": side, "quantity": str(quantity), "price": str(price)}
        if time is not None:
            body["time"] = time
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        return await self.request("POST", "/api/v1/portfolio/trades", body=body, headers=headers)

    async def token(self) -> str:
        """Exchanges the API key for a connection token (JWT); a ready `token_provider`."""
        return (await self.request("POST", "/api/v1/auth/token"))["token"]


def _json_default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    raise TypeError(f"not JSON serializable: {type(v).__name__}")
