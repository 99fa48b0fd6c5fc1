"""What a client must remember to resume exactly: the subscriptions it holds (with their options),
the last `seq` seen per concrete channel, and the `epoch` those seqs belong to."""

from __future__ import annotations

from typing import Any


def covers(pattern: str, ch: str) -> bool:
    """Does a subscribed channel (`ticks:AAPL`, `ticks:*`, `portfolio`) cover a concrete one?"""
    if pattern == ch:
        return True
    kind, _, sym = pattern.partition(":")
    return sym == "*" and ch.startswith(kind + ":")


class Tracker:
    def __init__(self) -> None:
        self.subs: dict[str, dict[str, Any]] = {}  # channel as subscribed -> its options
        self.seqs: dict[str, int] = {}  # concrete channel -> last seq seen
        self.epoch: int | None = None

    def subscribed(self, channels: list[str], options: dict[str, Any]) -> None:
        for ch in channels:
            self.subs[ch] = dict(options)

    def unsubscribed(self, channels: list[str]) -> None:
        for ch in channels:
            self.subs.pop(ch, None)
        self.seqs = {c: s for c, s in self.seqs.items() if any(covers(p, c) for p in self.subs)}

    def options_of(self, ch: str) -> dict[str, Any]:
        for pattern, opts in self.subs.items():
            if covers(pattern, ch):
                return opts
        return {}

    def expects_jumps(self, ch: str) -> bool:
        """A throttled subscription is conflated, and a book at a narrower depth skips events that
        do not touch its levels: their seq jumps are the contract, not losses."""
        opts = self.options_of(ch)
        return bool(opts.get("throttle_ms")) or (ch.startswith("book:") and opts.get("depth") is not None)

    def observe(self, ch: str, seq: int) -> tuple[str, int | None]:
        """Records a live event's seq: ("new", previous seq) or ("duplicate", previous seq)."""
        prev = self.seqs.get(ch)
        if prev is not None and seq <= prev:
            return "duplicate", prev
        self.seqs[ch] = seq
        return "new", prev

    def resume_ops(self, book_seq: dict[str, int | None]) -> list[dict[str, Any]]:
        """The subscribes that restore every subscription after a reconnect: one per set of
        options, each with `from` (the last seq of every concrete channel it covers) and `epoch`.
        `book_seq` overrides a book channel's seq (None: its copy is not trusted, no `from`)."""
        groups: dict[tuple, list[str]] = {}
        for ch, opts in self.subs.items():
            groups.setdefault(tuple(sorted(opts.items())), []).append(ch)
        ops = []
        for key, channels in groups.items():
            op: dict[str, Any] = {"op": "subscribe", "channels": channels, **dict(key)}
            start = {}
            for ch, seq in self.seqs.items():
                if ch in book_seq:
                    seq = book_seq[ch]  # type: ignore[assignment]
                if seq and any(covers(p, ch) for p in channels):
                    start[ch] = seq
            if start and self.epoch is not None:
                op["from"] = start
                op["epoch"] = self.epoch
            ops.append(op)
        return ops
