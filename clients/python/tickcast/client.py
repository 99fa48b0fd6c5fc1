"""The streaming client: one WebSocket to `/ws`, typed events by async iteration, and everything
exactly-once needs: per-channel seq tracking, reconnect with jittered exponential backoff, resume
of every channel with `from` and `epoch`, resets and gaps surfaced, verified order books, and a
token refreshed before it expires."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from . import events as ev
from .book import Book
from .errors import ClientClosed, HandshakeRefused, ProtocolViolation, ServerError, TickcastError
from .token import TokenProvider, fetch_token, jwt_exp
from .tracker import Tracker
from .wire import decode_frame as wire_decode

log = logging.getLogger("tickcast")

_END = object()
TOKEN_EXPIRED = 4001


@dataclass(frozen=True)
class Ack:
    """The server's `ack` of an op; `errors` are the per-channel `error`s it came with."""

    op: str
    channels: list[str]
    epoch: int | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    user: str | None = None
    exp: int | None = None


@dataclass
class _Pending:
    future: asyncio.Future
    errors: list[dict[str, Any]] = field(default_factory=list)


class Client:
    """Use `tickcast.connect(...)`; see the package README."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        encoding: str = "json",
        on_gap: Callable[[ev.Gap], None] | None = None,
        backoff_min_s: float = 0.25,
        backoff_max_s: float = 10.0,
        op_timeout_s: float = 10.0,
    ):
        if encoding not in ("json", "msgpack"):
            raise ValueError(f"encoding must be 'json' or 'msgpack', not {encoding!r}")
        self.url = url
        self.encoding = encoding
        self.on_gap = on_gap
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.op_timeout_s = op_timeout_s
        self.reconnects = 0
        self.gaps = 0
        self.duplicates = 0
        self.token_refreshes = 0
        self._token = token
        self._token_provider = token_provider
        self._exp = jwt_exp(token) if token else None
        self._tracker = Tracker()
        self._books: dict[str, Book] = {}
        self._resyncing: dict[str, str] = {}  # book channel -> why its copy was given up
        self._queue: asyncio.Queue = asyncio.Queue()
        self._pending: dict[int, _Pending] = {}
        self._ping_for: dict[int, int] = {}  # ping id -> the op id it closes
        self._next_id = 1
        self._ws: ClientConnection | None = None
        self._closed = False
        self._tasks: list[asyncio.Task] = []
        self._token_changed = asyncio.Event()

    # --- lifecycle ---

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Opens the first connection; a refused upgrade raises HandshakeRefused."""
        if self._token is None and self._token_provider is not None:
            await self._set_token(await fetch_token(self._token_provider))
        self._ws = await self._open()
        self._tasks.append(asyncio.create_task(self._run(self._ws)))
        self._tasks.append(asyncio.create_task(self._refresh_loop()))

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_pending(ClientClosed("client closed"))
        self._queue.put_nowait(_END)

    def __aiter__(self) -> AsyncIterator[ev.Event | ev.Notice]:
        return self

    async def __anext__(self) -> ev.Event | ev.Notice:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later call ends too
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    # --- ops ---

    async def subscribe(
        self,
        channels: str | list[str],
        *,
        throttle_ms: int | None = None,
        depth: int | None = None,
        snapshot: int | None = None,
    ) -> Ack:
        """Subscribes; resolves with the `ack` (whose `errors` name refused channels), or raises
        ServerError when every channel was refused. `book:SYM` channels get a local book."""
        channels = [channels] if isinstance(channels, str) else list(channels)
        options = {k: v for k, v in (("throttle_ms", throttle_ms), ("depth", depth)) if v is not None}
        for ch in channels:
            if ch.startswith("book:") and not ch.endswith("*"):
                self._books.setdefault(ch, Book(ch[5:], depth))
        op: dict[str, Any] = {"op": "subscribe", "channels": channels, **options}
        if snapshot is not None:
            op["snapshot"] = snapshot
        ack = await self._op(op)
        self._tracker.subscribed(ack.channels, options)
        return ack

    async def unsubscribe(self, channels: str | list[str]) -> Ack:
        channels = [channels] if isinstance(channels, str) else list(channels)
        ack = await self._op({"op": "unsubscribe", "channels": channels})
        self._tracker.unsubscribed(ack.channels)
        for ch in ack.channels:
            self._books.pop(ch, None)
        return ack

    async def auth(self, token: str) -> Ack:
        """Authenticates the live connection, or refreshes its token (same user)."""
        ack = await self._op({"op": "auth", "token": token})
        await self._set_token(token, ack.exp)
        self.token_refreshes += 1
        return ack

    async def symbols(self) -> list[str]:
        """The `list` op: the symbols the server has."""
        reply = await self._request({"op": "list"})
        return list(reply.get("symbols", []))

    def book(self, symbol: str) -> Book:
        """The local, verified copy of `book:SYMBOL` (subscribe to it first)."""
        try:
            return self._books[f"book:{symbol}"]
        except KeyError:
            raise KeyError(f"not subscribed to book:{symbol}") from None

    @property
    def epoch(self) -> int | None:
        return self._tracker.epoch

    @property
    def resyncs(self) -> int:
        return sum(b.resyncs for b in self._books.values())

    def last_seq(self, ch: str) -> int | None:
        return self._tracker.seqs.get(ch)

    # --- the socket ---

    def _ws_url(self) -> str:
        parts = urlsplit(self.url)
        query = [("v", "1")] + ([("encoding", "msgpack")] if self.encoding == "msgpack" else [])
        if self._token:
            query.append(("token", self._token))
        extra = "&".join(q for q in (parts.query, urlencode(query)) if q)
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/ws", extra, ""))

    async def _open(self) -> ClientConnection:
        try:
            return await ws_connect(self._ws_url(), max_size=None, open_timeout=self.op_timeout_s)
        except InvalidStatus as e:
            status = e.response.status_code
            code, detail = "http_error", ""
            try:
                body = json.loads(e.response.body or b"{}")
                code, detail = body.get("code", code), body.get("detail", "")
            except ValueError:
                pass
            raise HandshakeRefused(status, code, detail) from e

    async def _run(self, ws: ClientConnection) -> None:
        attempt = 0
        while True:
            opened = time.monotonic()
            await self._read(ws)
            self._fail_pending(TickcastError("connection lost"))
            if self._closed:
                return
            code = ws.close_code
            log.info("tickcast connection closed", extra={"code": code})
            if time.monotonic() - opened > 5:
                attempt = 0  # a connection that stayed up restarts the backoff
            while True:
                delay = min(self.backoff_max_s, self.backoff_min_s * 2**attempt) * random.uniform(0.5, 1.0)
                attempt += 1
                await asyncio.sleep(delay)
                try:
                    if self._token_provider is not None and (code == TOKEN_EXPIRED or self._expired()):
                        await self._set_token(await fetch_token(self._token_provider))
                    ws = await self._open()
                    break
                except HandshakeRefused as e:
                    if e.status == 401 and self._token_provider is not None:
                        code = TOKEN_EXPIRED
                        continue
                    if e.status in (400, 401, 403):
                        self._queue.put_nowait(e)  # retrying cannot help
                        return
                    log.warning("tickcast reconnect refused", extra={"status": e.status, "code": e.code})
                except (OSError, asyncio.TimeoutError, ConnectionClosed) as e:
                    log.info("tickcast reconnect failed", extra={"error": str(e)})
            self._ws = ws
            self.reconnects += 1
            self._tasks.append(asyncio.create_task(self._resume()))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                try:
                    messages = wire_decode(frame)
                except ProtocolViolation as e:
                    log.warning("tickcast dropped a malformed frame", extra={"error": str(e)})
                    continue
                for m in messages:
                    try:
                        self._dispatch(m)
                    except (KeyError, TypeError, ValueError) as e:
                        log.warning("tickcast dropped a malformed message", extra={"error": repr(e)})
        except ConnectionClosed:
            pass

    async def _resume(self) -> None:
        """Restores every subscription on a new connection, each channel from its last seq."""
        books = {ch: (b.seq if b.synced else None) for ch, b in self._books.items()}
        for op in self._tracker.resume_ops(books):
            try:
                ack = await self._op(op)
                for ch in ack.channels:
                    self._tracker.subs.setdefault(ch, {})
            except ServerError as e:
                # Refused (a token that no longer covers a channel, say): the consumer must know.
                log.warning("tickcast resume refused", extra={"channels": op["channels"], "error": str(e)})
                self._queue.put_nowait(e)
            except TickcastError:
                return  # the socket went again: the next reconnect resumes

    # --- replies and events ---

    def _new_id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    async def _send(self, msg: dict[str, Any]) -> None:
        if self._ws is None:
            raise TickcastError("not connected")
        await self._ws.send(json.dumps(msg))

    async def _op(self, op: dict[str, Any]) -> Ack:
        """Sends an op and a ping after it: ops are answered in order, so the pong marks the end
        of the op's replies, and an op refused whole (errors, no ack) is told apart."""
        reply = await self._request(op, closing_ping=True)
        return reply  # type: ignore[return-value]

    async def _request(self, op: dict[str, Any], closing_ping: bool = False) -> Any:
        op_id = self._new_id()
        fut = asyncio.get_running_loop().create_future()
        self._pending[op_id] = _Pending(fut)
        try:
            await self._send({**op, "id": op_id})
            if closing_ping:
                ping_id = self._new_id()
                self._ping_for[ping_id] = op_id
                await self._send({"op": "ping", "id": ping_id})
            return await asyncio.wait_for(fut, self.op_timeout_s)
        except ConnectionClosed as e:
            raise TickcastError("connection lost") from e
        except asyncio.TimeoutError:
            raise TickcastError(f"no answer to {op.get('op')} within {self.op_timeout_s} s") from None
        finally:
            self._pending.pop(op_id, None)

    def _dispatch(self, m: dict[str, Any]) -> None:
        t = m.get("type")
        if t in ("ack", "error", "pong", "list"):
            self._reply(m)
        elif t == "snapshot":
            self._snapshot(m)
        elif "ch" in m and "seq" in m:
            self._event(m)

    def _reply(self, m: dict[str, Any]) -> None:
        t, op_id = m.get("type"), m.get("id")
        if t == "pong":
            closes = self._ping_for.pop(op_id, None)
            p = self._pending.get(closes) if closes is not None else None
            if p is not None and not p.future.done():
                first = p.errors[0] if p.errors else {"code": "no_answer", "message": "no ack"}
                p.future.set_exception(ServerError(first.get("code", ""), first.get("message", ""), closes, p.errors))
            return
        p = self._pending.get(op_id)
        if p is None or p.future.done():
            if t == "error":
                log.warning("tickcast server error", extra={"code": m.get("code"), "detail": m.get("message")})
            return
        if t == "error":
            p.errors.append(m)
        elif t == "ack":
            if m.get("epoch") is not None:
                self._tracker.epoch = m["epoch"]
            p.future.set_result(
                Ack(m.get("op", ""), list(m.get("channels", [])), m.get("epoch"), p.errors, m.get("user"), m.get("exp"))
            )
        else:
            p.future.set_result(m)

    def _emit(self, item: Any) -> None:
        self._queue.put_nowait(item)

    def _event(self, m: dict[str, Any]) -> None:
        ch, seq = m["ch"], m["seq"]
        verdict, prev = self._tracker.observe(ch, seq)
        if verdict == "duplicate":
            self.duplicates += 1  # a replay overlapping what was already delivered
            return
        reset_book = m.get("type") == "book" and m.get("reset")
        if prev is not None and seq > prev + 1 and not reset_book and not self._tracker.expects_jumps(ch):
            gap = ev.Gap(ch, prev + 1, seq - 1)
            self.gaps += 1
            self._emit(gap)
            if self.on_gap is not None:
                self.on_gap(gap)
        event = ev.parse_event(m)
        if isinstance(event, ev.BookUpdate):
            self._book_event(event)
        self._emit(event)

    def _snapshot(self, m: dict[str, Any]) -> None:
        ch, seq = m["ch"], m["seq"]
        events = [ev.parse_event(e) for e in m.get("data", [])]
        self._tracker.seqs[ch] = seq
        why = self._resyncing.pop(ch, None)
        book = self._books.get(ch)
        if book is not None or ch.startswith("book:"):
            book = book or self._books.setdefault(ch, Book(ch[5:], self._tracker.options_of(ch).get("depth")))
            if not events:
                book.clear(seq)
                book.synced = True
            for e in events:
                if isinstance(e, ev.BookUpdate):
                    self._book_event(e)
        if m.get("reset"):
            self._emit(ev.Reset(ch, seq, events, "the server could not resume (restarted, or the gap is gone)"))
        elif why is not None:
            self._emit(ev.Reset(ch, seq, events, f"book resync: {why}"))
        else:
            self._emit(ev.Snapshot(ch, seq, events))

    def _book_event(self, e: ev.BookUpdate) -> None:
        book = self._books.get(e.ch)
        if book is None:  # a concrete channel of `book:*`
            book = self._books.setdefault(e.ch, Book(e.ch[5:], self._tracker.options_of(e.ch).get("depth")))
        if e.ch in self._resyncing and not e.reset:
            return  # a delta for a copy given up: only the fresh snapshot restarts it
        why = book.apply(e.reset, e.seq, e.bids, e.asks, e.checksum)
        if why is None:
            self._resyncing.pop(e.ch, None)
            return
        book.resyncs += 1
        self._resyncing[e.ch] = why
        log.warning("tickcast book resync", extra={"ch": e.ch, "reason": why})
        self._tasks.append(asyncio.create_task(self._request_snapshot(e.ch)))

    async def _request_snapshot(self, ch: str) -> None:
        op: dict[str, Any] = {"op": "subscribe", "channels": [ch], "snapshot": 1}
        depth = self._tracker.options_of(ch).get("depth")
        if depth is not None:
            op["depth"] = depth
        try:
            await self._op(op)
        except TickcastError as e:
            log.warning("tickcast book snapshot refused", extra={"ch": ch, "error": str(e)})

    # --- tokens ---

    def _expired(self) -> bool:
        return self._exp is not None and self._exp <= time.time()

    async def _set_token(self, token: str, exp: int | None = None) -> None:
        self._token = token
        self._exp = exp if exp is not None else jwt_exp(token)
        self._token_changed.set()

    async def _refresh_loop(self) -> None:
        """Refreshes the token at 80 % of its remaining life through the user's provider."""
        while True:
            self._token_changed.clear()
            if self._token_provider is None or self._exp is None:
                await self._token_changed.wait()
                continue
            wait = max(0.5, (self._exp - time.time()) * 0.8)
            try:
                await asyncio.wait_for(self._token_changed.wait(), wait)
                continue  # a newer token came meanwhile
            except asyncio.TimeoutError:
                pass
            try:
                await self.auth(await fetch_token(self._token_provider))
            except Exception as e:  # noqa: BLE001 - the provider is the user's code
                log.warning("tickcast token refresh failed", extra={"error": str(e)})
                await asyncio.sleep(1)

    def _fail_pending(self, error: Exception) -> None:
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(error)
        self._ping_for.clear()


def connect(url: str, **options: Any) -> Client:
    """A client for `url` (`ws://host:port/ws`), used as `async with connect(url) as client:`.

    Options: `token`, `token_provider` (a callable, sync or async, returning a fresh JWT: called
    before `exp` and after a 4001 close), `encoding` ("json" or "msgpack"), `on_gap`,
    `backoff_min_s`, `backoff_max_s`, `op_timeout_s`."""
    return Client(url, **options)



