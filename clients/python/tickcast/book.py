"""A local order book (docs/PROTOCOL.md, "Order books"): a reset replaces it, a delta sets levels
(size 0 removes), the best `depth` levels per side are kept, and every event's CRC-32 is checked
against the copy."""

from __future__ import annotations

import zlib
from decimal import Decimal

CHECKSUM_LEVELS = 10


def plain_number(x: float) -> str:
    """A number as the checksum writes it: the shortest round-trip decimal in plain notation
    (`100`, `187.25`, `0.0005`), as JavaScript's `String(x)` for 1e-6 <= x < 1e21."""
    if isinstance(x, int):
        return str(x)
    if x.is_integer():
        return str(int(x))
    text = format(Decimal(repr(x)), "f")  # repr is the shortest round-trip form; `f` drops the exponent
    return text


def checksum_text(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> str:
    parts = []
    for i in range(CHECKSUM_LEVELS):
        for side in (bids, asks):
            if i < len(side):
                parts.append(f"{plain_number(side[i][0])}:{plain_number(side[i][1])}")
    return ":".join(parts)


def book_checksum(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> int:
    return zlib.crc32(checksum_text(bids, asks).encode())


class Book:
    """One symbol's book as this client holds it. `bids` and `asks` are `(price, size)` lists,
    best first. `synced` is False while the copy waits for a fresh snapshot (after a checksum
    mismatch); `resyncs` counts those."""

    def __init__(self, symbol: str, depth: int | None = None):
        self.symbol = symbol
        self.depth = depth
        self.seq = 0
        self.synced = False
        self.resyncs = 0
        self.verified = 0  # events whose checksum matched the copy
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}

    @property
    def bids(self) -> list[tuple[float, float]]:
        return sorted(self._bids.items(), key=lambda level: -level[0])

    @property
    def asks(self) -> list[tuple[float, float]]:
        return sorted(self._asks.items())

    @property
    def spread(self) -> float | None:
        bids, asks = self.bids, self.asks
        return asks[0][0] - bids[0][0] if bids and asks else None

    def checksum(self) -> int:
        return book_checksum(self.bids, self.asks)

    def clear(self, seq: int = 0) -> None:
        self._bids.clear()
        self._asks.clear()
        self.seq = seq

    def apply(self, reset: bool, seq: int, bids: list, asks: list, checksum: int | None) -> str | None:
        """Applies one event; returns None when the copy is exact, else why it cannot be trusted."""
        if reset:
            self.clear()
        elif not self.synced:
            return "delta without a snapshot"
        elif seq <= self.seq:
            return f"seq went back from {self.seq} to {seq}"
        try:
            for price, size in bids:
                _set(self._bids, price, size)
            for price, size in asks:
                _set(self._asks, price, size)
        except (TypeError, ValueError):
            self.synced = False
            return "malformed level"
        if self.depth is not None:  # None: the server's full depth, whose deltas remove what leaves it
            for side, levels in ((self._bids, self.bids), (self._asks, self.asks)):
                for price, _ in levels[self.depth :]:
                    del side[price]
        self.seq = seq
        if checksum is not None and checksum != self.checksum():
            self.synced = False
            return f"checksum mismatch at seq {seq}"
        self.synced = True
        self.verified += checksum is not None
        return None


def _set(side: dict[float, float], price: float, size: float) -> None:
    if size == 0:
        side.pop(price, None)
    else:
        side[price] = size
