"""Units without a server: number printing, checksums, frame decoding, resume ops."""

import json
import zlib
from decimal import Decimal

import msgpack
import pytest

from tickcast import Book, ProtocolViolation, book_checksum, checksum_text, plain_number
from tickcast.events import Gap, Portfolio, Tick, parse_event
from tickcast.tracker import Tracker, covers
from tickcast.wire import decode_frame


@pytest.mark.parametrize(
    "x, text",
    [(100.0, "100"), (187.25, "187.25"), (0.0005, "0.0005"), (1e-6, "0.000001"), (42000.5, "42000.5"), (3, "3"), (1e20, "100000000000000000000"), (0.1 + 0.2, "0.30000000000000004")],
)
def test_numbers_print_as_javascript_string_does(x, text):
    assert plain_number(x) == text


def test_checksum_is_zlib_crc32_of_the_protocol_example():
    bids, asks = [(100, 10), (99.5, 11)], [(100.5, 20), (101, 21)]
    assert checksum_text(bids, asks) == "100:10:100.5:20:99.5:11:101:21"
    assert book_checksum(bids, asks) == zlib.crc32(b"100:10:100.5:20:99.5:11:101:21")


def test_book_applies_deltas_trims_and_detects_a_lost_update():
    b = Book("X", depth=2)
    snap = [[10.0, 1.0], [9.0, 2.0], [8.0, 3.0]]
    assert b.apply(True, 1, snap, [[11.0, 1.0]], book_checksum([(10.0, 1.0), (9.0, 2.0)], [(11.0, 1.0)])) is None
    assert b.bids == [(10.0, 1.0), (9.0, 2.0)]  # the third level is beyond depth 2
    ok = book_checksum([(10.0, 1.0), (9.0, 2.0)], [(11.0, 4.0)])
    assert b.apply(False, 2, [], [[11.0, 4.0]], ok) is None
    assert b.verified == 2
    assert b.apply(False, 3, [[10.0, 0]], [], 12345) == "checksum mismatch at seq 3"
    assert not b.synced
    assert b.apply(False, 4, [[9.5, 1.0]], [], None) == "delta without a snapshot"


def test_msgpack_frames_decode_to_the_json_shape():
    frame = msgpack.packb(
        [
            [1, "ticks:AAPL", 7, 1000, 189.5, 100, "buy", 999],
            {"type": "snapshot", "ch": "book:AAPL", "seq": 3, "data": [[5, "book:AAPL", 3, 5, True, [[1.0, 2]], [], 42]]},
            [4, "portfolio", 2, 9, {"reason": "trade", "positions": [{"symbol": "AAPL", "quantity": "0.3", "avg_cost": "1.5", "last_price": None, "market_value": None, "unrealized_pnl": None, "realized_pnl": "0"}], "realized_pnl": "0", "unrealized_pnl": None, "trades": 2}],
            [99, "future:X", 1],
        ]
    )
    tick, snap, pf = decode_frame(frame)
    assert parse_event(tick) == Tick("ticks:AAPL", 7, 1000, 189.5, 100, "buy", 999)
    assert snap["data"][0]["type"] == "book" and snap["data"][0]["reset"] is True
    p = parse_event(pf)
    assert isinstance(p, Portfolio) and p.positions[0].quantity == Decimal("0.3")


def test_json_portfolio_numbers_are_exact_decimals():
    text = json.dumps({"type": "portfolio", "ch": "portfolio", "seq": 1, "ts": 1, "reason": "trade", "positions": [], "realized_pnl": 0, "unrealized_pnl": None, "trades": 0})
    text = text.replace('"realized_pnl": 0', '"realized_pnl": 25.63')
    p = parse_event(decode_frame(text)[0])
    assert p.realized_pnl == Decimal("25.63")


@pytest.mark.parametrize("frame", [b"\xc1", b"\x93\x01", "{not json", "[1, 2]", msgpack.packb({"type": "ack"})])
def test_malformed_frames_are_refused_with_a_typed_error(frame):
    with pytest.raises(ProtocolViolation):
        decode_frame(frame)


def test_resume_ops_carry_from_and_epoch_per_option_set():
    t = Tracker()
    t.subscribed(["ticks:AAPL", "indicators:*"], {})
    t.subscribed(["book:AAPL"], {"depth": 5})
    t.epoch = 77
    for ch, seq in (("ticks:AAPL", 10), ("indicators:MSFT", 4), ("book:AAPL", 9)):
        t.observe(ch, seq)
    assert t.observe("ticks:AAPL", 10) == ("duplicate", 10)
    ops = t.resume_ops({"book:AAPL": None})
    assert ops == [
        {"op": "subscribe", "channels": ["ticks:AAPL", "indicators:*"], "from": {"ticks:AAPL": 10, "indicators:MSFT": 4}, "epoch": 77},
        {"op": "subscribe", "channels": ["book:AAPL"], "depth": 5},
    ]
    assert covers("ticks:*", "ticks:X") and not covers("ticks:*", "bars.1s:X")
    assert t.expects_jumps("book:AAPL") and not t.expects_jumps("ticks:AAPL")


def test_gap_counts_what_is_missing():
    assert Gap("ticks:X", 5, 7).missed == 3
