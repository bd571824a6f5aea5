"""Many event lines parsed at once into per-kind columns: ingest's fast path, defined by `events`.

Ingest turns tens of thousands of lines per batch into Parquet columns. Building a dataclass per
line only to take it apart again, and re-checking each field with its own pattern, cost as much as
reading the records from Kafka. `parse_columns` matches each line once against one compiled
pattern for the common well-formed lines (watch, rate, account, served recommendations), built from
the contract's own fragments in `components.core.events`, and appends the fields straight to column lists.

Every other line goes to the contract's own code: recommendations with another status to
`parse_recommendation` (after the shared head), anything unusual (a 19-digit user id, a rating
written `05`, a trailing `\\r`, invalid UTF-8) and every corrupted line to `parse_line`. The fast
pattern only accepts lines that `parse_line` parses to the same event, so the contract keeps one
definition and every rejection keeps its reason and detail;
`tests/unit/core/test_event_columns.py` checks this against `parse_line` on random and corrupted lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

from components.core.events import (
    MAX_LINE_CHARS,
    MAX_RESULTS,
    SLUG_PATTERN,
    TIME_PATTERN,
    AccountEvent,
    Event,
    RateEvent,
    RecommendationEvent,
    Rejection,
    WatchEvent,
    future_time,
    latest_acceptable,
    parse_line,
    parse_recommendation,
)

CLASSES = {"watch": WatchEvent, "rate": RateEvent, "recommendation": RecommendationEvent, "account": AccountEvent}
FIELDS = {kind: tuple(f.name for f in fields(cls)) for kind, cls in CLASSES.items()}

# <time>,<user>, as `_TIME_RE` and `_USER_RE` accept them, at most 18 digits (always <= MAX_USER_ID;
# longer ids go to parse_line, which checks the bound), then one of the three simple requests.
# \Z, not $: a line ending in a newline is left to parse_line, which strips it.
_HEAD = rf"({TIME_PATTERN}),(0|[1-9]\d{{0,17}}),"
# A served recommendation (status 200) whose result is up to MAX_RESULTS slugs: slugs hold neither
# ',' nor ' ', so the groups are the ones `_RECO_RE` takes and `result.split(", ")` gives the ids.
_FAST = re.compile(
    _HEAD + rf"(?:GET /data/m/({SLUG_PATTERN})/(\d{{1,5}})\.mpg|GET /rate/({SLUG_PATTERN})=([1-5])|(GET /create_account)"
    rf"|recommendation request (\S+), status 200, result: ((?:{SLUG_PATTERN}(?:, {SLUG_PATTERN}){{0,{MAX_RESULTS - 1}}})?), "
    rf"(\d{{1,9}}) ms)\Z", re.ASCII).match
# No \r or \n anywhere: parse_line strips trailing ones first, so such lines go to it whole.
_RECO_HEAD = re.compile(_HEAD + r"(recommendation request [^\r\n]*)\Z", re.ASCII).match


@dataclass(slots=True)
class ParsedLines:
    """A list of lines parsed: per kind, the input positions and one list per event field, and the rejections.

    `columns[kind]` is `[positions, *field lists]`, fields in the order of the kind's dataclass
    (which is the order of its snapshot schema)."""

    columns: dict[str, list[list]] = field(default_factory=lambda: {k: [[] for _ in range(len(f) + 1)]
                                                                    for k, f in FIELDS.items()})
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Events per kind (kinds with none left out)."""
        return {kind: len(cols[0]) for kind, cols in self.columns.items() if cols[0]}

    def events(self) -> list[tuple[int, Event]]:
        """The (position, event) pairs, in input order: what `parse_line` gives for each valid line."""
        pairs = [(i, CLASSES[kind](*values)) for kind, (positions, *cols) in self.columns.items()
                 for i, values in zip(positions, zip(*cols, strict=True), strict=True)]
        return sorted(pairs, key=lambda p: p[0])

    def reject_future(self, lines: Sequence[str | bytes | None], now: datetime) -> int:
        """Move the events stamped after `latest_acceptable(now)` to the rejections (`future_time`);
        `lines` are the parsed lines. Returns how many were moved."""
        limit, moved = latest_acceptable(now), []
        for cols in self.columns.values():
            times = cols[1]
            if not times or max(times) <= limit:
                continue
            keep = [j for j, t in enumerate(times) if t <= limit]
            moved.extend((cols[0][j], times[j]) for j, t in enumerate(times) if t > limit)
            cols[:] = [[col[j] for j in keep] for col in cols]
        for i, time in moved:
            line = lines[i]
            text = line.decode("utf-8") if isinstance(line, bytes) else line
            self.rejections.append((i, future_time(text.rstrip("\r\n"), time, now)))
        if moved:
            self.rejections.sort(key=lambda r: r[0])
        return len(moved)

    def add(self, position: int, parsed: Event | Rejection) -> None:
        if parsed.kind == "rejection":
            self.rejections.append((position, parsed))
            return
        positions, *cols = self.columns[parsed.kind]
        positions.append(position)
        for col, name in zip(cols, FIELDS[parsed.kind], strict=True):
            col.append(getattr(parsed, name))


def parse_columns(lines: Sequence[str | bytes | None]) -> ParsedLines:
    """Parse every line (None counts as an empty line); exactly what `parse_line` says of each, as columns."""
    out = ParsedLines()
    w_pos, w_time, w_user, w_movie, w_minute = out.columns["watch"]
    r_pos, r_time, r_user, r_movie, r_rating = out.columns["rate"]
    a_pos, a_time, a_user = out.columns["account"]
    c_pos, c_time, c_user, c_server, c_status, c_results, c_ms, c_error = out.columns["recommendation"]
    fromiso = datetime.fromisoformat
    for i, raw in enumerate(lines):
        line = raw
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                out.add(i, parse_line(raw))
                continue
        elif line is None:
            line = ""
        if len(line) > MAX_LINE_CHARS:
            out.add(i, parse_line(line))
            continue
        m = _FAST(line)
        if m is None:
            out.add(i, _slow(line))
            continue
        time_text, user_text, movie, minute, rated, rating, account, server, result, ms = m.groups()
        try:
            time = fromiso(time_text)
        except ValueError:  # matches the pattern, not the calendar (month 13, Feb 30)
            out.add(i, parse_line(line))
            continue
        if movie is not None:
            w_pos.append(i)
            w_time.append(time)
            w_user.append(int(user_text))
            w_movie.append(movie)
            w_minute.append(int(minute))
        elif rated is not None:
            r_pos.append(i)
            r_time.append(time)
            r_user.append(int(user_text))
            r_movie.append(rated)
            r_rating.append(int(rating))
        elif account is not None:
            a_pos.append(i)
            a_time.append(time)
            a_user.append(int(user_text))
        else:
            c_pos.append(i)
            c_time.append(time)
            c_user.append(int(user_text))
            c_server.append(server)
            c_status.append(200)
            c_results.append(tuple(result.split(", ")) if result else ())
            c_ms.append(int(ms))
            c_error.append("")
    return out


def _slow(line: str) -> Event | Rejection:
    """Other recommendations with a well-formed head skip re-checking it; everything else is `parse_line`."""
    m = _RECO_HEAD(line)
    if m is not None:
        try:
            time = datetime.fromisoformat(m.group(1))
        except ValueError:
            return parse_line(line)
        return parse_recommendation(line, time, int(m.group(2)), m.group(3))
    return parse_line(line)
