"""Typed errors: what the server refused (an `error` event, a problem+json answer, a close code)."""

from __future__ import annotations

from typing import Any


class TickcastError(Exception):
    """Base class of every error this package raises."""


class ServerError(TickcastError):
    """An op refused by the server: the `error` event's stable `code` and its `message`.

    `errors` holds every `error` the op got (a subscribe of several channels may get one per
    channel); `code` and `message` are the first one's.
    """

    def __init__(self, code: str, message: str, op_id: int | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.op_id = op_id
        self.errors = errors or []


class ProblemError(TickcastError):
    """A REST answer that is an `application/problem+json` body (RFC 9457)."""

    def __init__(self, status: int, code: str, title: str, detail: str, body: dict[str, Any] | None = None):
        super().__init__(f"HTTP {status} {code}: {detail or title}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.body = body or {}


class HandshakeRefused(TickcastError):
    """The server refused the WebSocket upgrade (HTTP 400/401/429/503 with a problem body)."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"upgrade refused: HTTP {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class ProtocolViolation(TickcastError):
    """A frame this client cannot read (malformed JSON or MessagePack, an unknown shape)."""


class ClientClosed(TickcastError):
    """The client was closed while an op was waiting for its answer."""
