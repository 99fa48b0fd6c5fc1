"""Frames to messages (docs/PROTOCOL.md, "Encodings"): a JSON text frame holds one object or an
array of them; a MessagePack binary frame is always an array of messages, events positional and
led by a kind code, everything else a map. Both come out as the dicts the JSON form parses to."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgpack

from .errors import ProtocolViolation

TICK, BAR, INDICATORS, PORTFOLIO, BOOK = 1, 2, 3, 4, 5

# Fields of each positional event; a longer array (a later server appending fields) is accepted.
_FIELDS = {
    TICK: ("tick", ("ch", "seq", "ts", "price", "size", "side", "xts")),
    BAR: ("bar", ("ch", "seq", "ts", "start", "open", "high", "low", "close", "volume", "trades", "final")),
    BOOK: ("book", ("ch", "seq", "ts", "reset", "bids", "asks", "checksum")),
}


def _event_from_array(a: list[Any]) -> dict[str, Any] | None:
    if not a or not isinstance(a[0], int):
        raise ProtocolViolation("msgpack event does not start with an integer kind code")
    kind = a[0]
    if kind in _FIELDS:
        name, fields = _FIELDS[kind]
        if len(a) < len(fields) + 1:
            raise ProtocolViolation(f"msgpack {name} event has {len(a)} fields, expected {len(fields) + 1}")
        ev = dict(zip(fields, a[1:]))
        ev["type"] = name
        return ev
    if kind in (INDICATORS, PORTFOLIO):
        name = "indicators" if kind == INDICATORS else "portfolio"
        if len(a) < 5 or not isinstance(a[4], dict):
            raise ProtocolViolation(f"msgpack {name} event: field 4 is not a map")
        ev = dict(a[4])
        ev.update(type=name, ch=a[1], seq=a[2], ts=a[3])
        return ev
    return None  # a kind this client does not know: ignored, as an unknown JSON `type` is


def _from_msgpack(m: Any) -> dict[str, Any] | None:
    if isinstance(m, list):
        return _event_from_array(m)
    if not isinstance(m, dict):
        raise ProtocolViolation(f"msgpack message is neither an array nor a map: {type(m).__name__}")
    if m.get("type") == "snapshot" and isinstance(m.get("data"), list):
        data = []
        for e in m["data"]:
            ev = _event_from_array(e) if isinstance(e, list) else e
            if ev is not None:
                data.append(ev)
        m = {**m, "data": data}
    return m


def decode_frame(data: str | bytes) -> list[dict[str, Any]]:
    """The messages of one server frame, in JSON shape. Raises ProtocolViolation when malformed.

    A JSON frame that holds a portfolio is read with `Decimal` for its numbers (the contract's
    exact decimals); MessagePack sends those as strings, turned into `Decimal` by the event type.
    """
    try:
        if isinstance(data, str):
            exact = '"portfolio"' in data
            parsed = json.loads(data, parse_float=Decimal) if exact else json.loads(data)
            msgs = parsed if isinstance(parsed, list) else [parsed]
            if not all(isinstance(m, dict) for m in msgs):
                raise ProtocolViolation("JSON frame holds a message that is not an object")
            return msgs
        unpacked = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except ProtocolViolation:
        raise
    except (ValueError, msgpack.UnpackException) as e:
        raise ProtocolViolation(f"malformed frame: {e}") from e
    if not isinstance(unpacked, list):
        raise ProtocolViolation("msgpack frame is not an array of messages")
    out = []
    for m in unpacked:
        ev = _from_msgpack(m)
        if ev is not None:
            out.append(ev)
    return out
