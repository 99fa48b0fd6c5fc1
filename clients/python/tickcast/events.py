"""Typed events: the server's (tick, bar, indicators, book, portfolio), the snapshots that start or
restart a channel, and this client's own notices (`Gap`, `Reset`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Union


def exact(v: Any) -> Decimal | None:
    """A portfolio value as a Decimal: JSON digits (read as Decimal), a MessagePack string, an int."""
    if v is None:
        return None
    if isinstance(v, Decimal):
        return v
    if isinstance(v, float):
        return Decimal(repr(v))
    return Decimal(v)


@dataclass(frozen=True)
class Tick:
    ch: str
    seq: int
    ts: int
    price: float
    size: float
    side: str | None
    xts: int

    @property
    def symbol(self) -> str:
        return self.ch.partition(":")[2]


@dataclass(frozen=True)
class Bar:
    ch: str
    seq: int
    ts: int
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    final: bool


@dataclass(frozen=True)
class Indicators:
    ch: str
    seq: int
    ts: int
    values: dict[str, Any]


@dataclass(frozen=True)
class BookUpdate:
    """A `book` event as received (a delta, or the whole book when `reset`); `client.book(sym)`
    holds the verified result."""

    ch: str
    seq: int
    ts: int
    reset: bool
    bids: list[list[float]]
    asks: list[list[float]]
    checksum: int | None


@dataclass(frozen=True)
class Position:
    symbol: str
    quantity: Decimal
    avg_cost: Decimal
    last_price: Decimal | None
    market_value: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Position:
        return cls(
            symbol=d["symbol"],
            quantity=exact(d["quantity"]),  # type: ignore[arg-type]
            avg_cost=exact(d["avg_cost"]),  # type: ignore[arg-type]
            last_price=exact(d.get("last_price")),
            market_value=exact(d.get("market_value")),
            unrealized_pnl=exact(d.get("unrealized_pnl")),
            realized_pnl=exact(d["realized_pnl"]),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Portfolio:
    ch: str
    seq: int
    ts: int
    reason: str
    positions: list[Position]
    realized_pnl: Decimal
    unrealized_pnl: Decimal | None
    trades: int


@dataclass(frozen=True)
class Unknown:
    """An event of a `type` this client does not know (a later server's), passed on as received."""

    ch: str
    seq: int
    raw: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """The state a subscribe starts from: the channel's latest `seq` and its newest events."""

    ch: str
    seq: int
    events: list[Event]


@dataclass(frozen=True)
class Reset:
    """The server could not continue this channel from where the client was (the gap is no
    longer held, or the server restarted: another epoch). `events` is the fresh state; whatever the
    consumer derived from earlier events of `ch` must be rebuilt, not merged."""

    ch: str
    seq: int
    events: list[Event]
    reason: str


@dataclass(frozen=True)
class Gap:
    """Events of `ch` that will never arrive: seqs `first`..=`last` (`missed` of them). Expected on
    a throttled subscription (conflation); anywhere else they were lost on the way."""

    ch: str
    first: int
    last: int
    missed: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "missed", self.last - self.first + 1)


Event = Union[Tick, Bar, Indicators, BookUpdate, Portfolio, Unknown]
Notice = Union[Snapshot, Reset, Gap]


def parse_event(m: dict[str, Any]) -> Event:
    """A server event (a dict in JSON shape) as its typed form."""
    t = m.get("type")
    ch, seq, ts = m["ch"], m["seq"], m.get("ts", 0)
    if t == "tick":
        return Tick(ch, seq, ts, m["price"], m["size"], m.get("side"), m.get("xts", ts))
    if t == "bar":
        return Bar(ch, seq, ts, m["start"], m["open"], m["high"], m["low"], m["close"], m["volume"], m["trades"], m["final"])
    if t == "indicators":
        values = {k: v for k, v in m.items() if k not in ("type", "ch", "seq", "ts")}
        return Indicators(ch, seq, ts, values)
    if t == "book":
        return BookUpdate(ch, seq, ts, bool(m.get("reset")), m["bids"], m["asks"], m.get("checksum"))
    if t == "portfolio":
        return Portfolio(
            ch,
            seq,
            ts,
            m["reason"],
            [Position.from_dict(p) for p in m["positions"]],
            exact(m["realized_pnl"]),  # type: ignore[arg-type]
            exact(m.get("unrealized_pnl")),
            int(m["trades"]),
        )
    return Unknown(ch, seq, m)
