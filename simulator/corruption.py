"""Corrupted lines of the kinds real event logs carry, counted exactly.

A `Corruptor` replaces a configurable share of lines by a corrupted version of them. Every
corrupted line is checked against the contract's parser (as text and as the bytes written): it is
only emitted if it is rejected, so `corrupted` is exactly the number of rejections ingest must
report. Corrupted lines never hold a line break, so line counts stay exact too.
"""

from __future__ import annotations

import random
from collections import Counter

from components.core.events import Rejection, parse_line

KINDS = ("bad_time", "truncated", "garbage", "bad_rating", "missing_field", "empty")

_BAD_TIMES = ("2026-13-45T25:61:00", "2026/03/18 06:12:47", "1773814367", "18-03-2026T06:12:47",
              "2026-03-18 06:12:47", "2026-03-18T06:12:47Z", "2026-03-18T06:12", "??")
_BAD_RATINGS = ("0", "6", "10", "-1", "x", "4.5", "", "99999")
_GARBAGE = ("\x00", "\x1b[2J", "\ufffd", "\udcff\udcfe", "\udcc3(", "\u202e", "%00", "\x7f", "#$%^&*")


class Corruptor:
    """Corrupts each line with probability `rate`; counts what it did per kind."""

    def __init__(self, rate: float, rnd: random.Random):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"corrupt rate must be within 0..1, got {rate}")
        self.rate = rate
        self.rnd = rnd
        self.by_kind: Counter[str] = Counter()

    @property
    def corrupted(self) -> int:
        """How many corrupted lines were emitted so far."""
        return sum(self.by_kind.values())

    def __call__(self, line: str) -> str:
        """The line itself, or (with probability `rate`) a corrupted version of it."""
        if self.rate == 0.0 or self.rnd.random() >= self.rate:
            return line
        for _ in range(20):
            kind = self.rnd.choice(KINDS)
            bad = corrupt(line, kind, self.rnd)
            if _rejected(bad):
                self.by_kind[kind] += 1
                return bad
        self.by_kind["empty"] += 1  # cannot happen for contract lines; an empty line always is bad
        return ""


def _rejected(line: str) -> bool:
    if "\n" in line or "\r" in line:
        return False
    return (isinstance(parse_line(line), Rejection)
            and isinstance(parse_line(line.encode("utf-8", "surrogateescape")), Rejection))


def corrupt(line: str, kind: str, rnd: random.Random) -> str:
    """One corrupted version of `line` of the given kind (may, rarely, still parse: check it)."""
    time, _, rest = line.partition(",")
    if kind == "bad_time":
        return rnd.choice(_BAD_TIMES) + "," + rest
    if kind == "truncated":
        cut = rnd.randint(1, max(1, len(line) - 2))
        return line[:cut]
    if kind == "garbage":
        pos = rnd.randint(0, len(line))
        return line[:pos] + rnd.choice(_GARBAGE) + line[pos:]
    if kind == "bad_rating":
        head, sep, _ = line.rpartition("=")
        if sep and "/rate/" in head:
            return head + "=" + rnd.choice(_BAD_RATINGS)
        user, _, request = rest.partition(",")
        return f"{time},{user},GET /rate/{request.rsplit('/', 2)[-2] if '/' in request else 'x'}=" \
               + rnd.choice(_BAD_RATINGS)
    if kind == "missing_field":
        user, _, request = rest.partition(",")
        return rnd.choice((f"{time},{request}", f"{time},,{request}", f"{user},{request}", f"{time},{user},"))
    return ""  # empty
