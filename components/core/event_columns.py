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

By default the watch, rate and account lines (nearly all of a log) do not even take that per-line
step: one Arrow regex match over the whole batch (`_FAST_ARROW`, the same fragments) picks them,
the fields are cut at separators no field holds and converted column by column, and their columns
stay Arrow arrays (`ParsedLines.columns`, in input order) all the way to the snapshot tables. The
per-line path above parses the rest and is the reference the tests compare the two paths with,
down to the Parquet bytes.
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
_HEAD = rf"({TIME_PATTERN}),(0|[1-9]\d{{0,17}}),"
# A served recommendation (status 200) whose result is up to MAX_RESULTS slugs: slugs hold neither
# ',' nor ' ', so the groups are the ones `_RECO_RE` takes and `result.split(", ")` gives the ids.
# \Z, not $: a line ending in a newline is left to parse_line, which strips it.
_FAST = re.compile(
    _HEAD + rf"(?:GET /data/m/({SLUG_PATTERN})/(\d{{1,5}})\.mpg|GET /rate/({SLUG_PATTERN})=([1-5])|(GET /create_account)"
    rf"|recommendation request (\S+), status 200, result: ((?:{SLUG_PATTERN}(?:, {SLUG_PATTERN}){{0,{MAX_RESULTS - 1}}})?), "
    rf"(\d{{1,9}}) ms)\Z", re.ASCII).match
# The vectorised path (Arrow's RE2, one pass over a batch): watch, rate and account lines. RE2's
# `$` is Python's `\Z` (a line ending in a newline is left to parse_line, which strips it); `\d`
# is ASCII in both and every class is spelt in ASCII, so a line holding any other byte never
# matches. Matching only (no groups) is what RE2 does fast; the fields are then cut at separators.
_FAST_ARROW = (rf"^{TIME_PATTERN},(?:0|[1-9]\d{{0,17}}),(?:GET /data/m/{SLUG_PATTERN}/\d{{1,5}}\.mpg"
               rf"|GET /rate/{SLUG_PATTERN}=[1-5]|GET /create_account)$")
# No \r or \n anywhere: parse_line strips trailing ones first, so such lines go to it whole.
_RECO_HEAD = re.compile(_HEAD + r"(recommendation request [^\r\n]*)\Z", re.ASCII).match


@dataclass(slots=True)
class ParsedLines:
    """A list of lines parsed: per kind, the input positions and one list per event field, and the rejections.

    `columns[kind]` is `[positions, *field lists]`, fields in the order of the kind's dataclass
    (which is the order of its snapshot schema); Arrow arrays instead of lists for the kinds
    `parse_columns` took in bulk."""

    columns: dict[str, list[list]] = field(default_factory=lambda: {k: [[] for _ in range(len(f) + 1)]
                                                                    for k, f in FIELDS.items()})
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Events per kind (kinds with none left out)."""
        return {kind: len(cols[0]) for kind, cols in self.columns.items() if cols[0]}

    def events(self) -> list[tuple[int, Event]]:
        """The (position, event) pairs, in input order: what `parse_line` gives for each valid line."""
        pairs = [(i, CLASSES[kind](*values)) for kind, columns in self.columns.items()
                 for i, *values in zip(*map(_pylist, columns), strict=True)]
        return sorted(pairs, key=lambda p: p[0])

    def reject_future(self, lines: Sequence[str | bytes | None], now: datetime) -> int:
        """Move the events stamped after `latest_acceptable(now)` to the rejections (`future_time`);
        `lines` are the parsed lines. Returns how many were moved."""
        limit, moved = latest_acceptable(now), []
        for cols in self.columns.values():
            times = cols[1]
            if not isinstance(times, list):                 # Arrow columns of the bulk path
                import pyarrow as pa
                import pyarrow.compute as pc

                late = pc.greater(times, pa.scalar(limit, times.type))
                if len(times) and pc.any(late).as_py():
                    moved.extend(zip(pc.filter(cols[0], late).to_pylist(), pc.filter(times, late).to_pylist(),
                                     strict=True))
                    cols[:] = [pc.filter(col, pc.invert(late)) for col in cols]
                continue
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
        kind = parsed.kind
        if not isinstance(self.columns[kind][0], list):       # Arrow columns of the bulk path: a list twin
            kind = f"{kind}+"
            self.columns.setdefault(kind, [[] for _ in range(len(FIELDS[parsed.kind]) + 1)])
        positions, *cols = self.columns[kind]
        positions.append(position)
        for col, name in zip(cols, FIELDS[parsed.kind], strict=True):
            col.append(getattr(parsed, name))


def _pylist(column) -> list:
    return column if isinstance(column, list) else column.to_pylist()


def parse_columns(lines: Sequence[str | bytes | None], *, vectorised: bool = True) -> ParsedLines:
    """Parse every line (None counts as an empty line); exactly what `parse_line` says of each, as columns.

    `vectorised` (the default) matches the watch, rate and account lines of the whole list in one
    Arrow pass (`_parse_arrow`): their columns come back as Arrow arrays in input order. The
    other lines (recommendations, anything the bulk pattern or the calendar check does not take)
    go through the per-line path below, which `vectorised=False` uses for every line."""
    if vectorised and lines:
        return _parse_arrow(lines)
    return _parse_each(lines, range(len(lines)))


def _parse_each(lines: Sequence[str | bytes | None], indices, out: ParsedLines | None = None) -> ParsedLines:
    """The per-line path, for `lines[i]` of each i in `indices` (increasing), appended to `out`'s lists."""
    out = ParsedLines() if out is None else out
    w_pos, w_time, w_user, w_movie, w_minute = out.columns["watch"]
    r_pos, r_time, r_user, r_movie, r_rating = out.columns["rate"]
    a_pos, a_time, a_user = out.columns["account"]
    c_pos, c_time, c_user, c_server, c_status, c_results, c_ms, c_error = out.columns["recommendation"]
    fromiso = datetime.fromisoformat
    for i in indices:
        raw = lines[i]
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


_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _parse_arrow(lines: Sequence[str | bytes | None]) -> ParsedLines:
    """`parse_columns` with the common lines parsed in bulk by Arrow; the same result.

    A line is taken here only when it matches `_FAST_ARROW` (ASCII, no trailing newline), is at
    most MAX_LINE_CHARS long and its time is a real instant (year 1+, month, day of that month,
    hour, minute, second in range: what `datetime.fromisoformat` accepts of that shape). Every
    other line (invalid UTF-8, recommendations, every corrupted line) goes to `_parse_each`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        raw = pa.array(lines, pa.binary() if isinstance(lines[0], bytes) else pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeError):   # str and bytes mixed, lone surrogates: line by line
        return _parse_each(lines, range(len(lines)))
    ok = pc.fill_null(pc.and_(pc.match_substring_regex(raw, _FAST_ARROW),
                              pc.less_equal(pc.binary_length(raw), MAX_LINE_CHARS)), False)
    # Cut at the separators no field holds (the time has none either): at "/", watch lines give 5
    # parts ("<time>,<user>,GET ", "data", "m", movie, "<minute>.mpg"), rate lines 3 (..., "rate",
    # "<movie>=<rating>"), account lines 2; the first part cut at "," gives the time and the user.
    parts = pc.split_pattern(pc.filter(raw, ok).cast(pa.string()), "/")   # ASCII: matched
    head = pc.split_pattern(pc.list_element(parts, 0), ",")
    taken = pc.indices_nonzero(ok)                       # positions of the lines parsed here
    stamp = pc.list_element(head, 0)
    try:
        time = pc.cast(stamp, pa.timestamp("us"))        # Arrow's ISO 8601 reader refuses what fromisoformat does
        if pc.any(pc.less(time, pa.scalar(datetime(1, 1, 1), pa.timestamp("us")))).as_py():
            raise pa.ArrowInvalid("year 0")              # ... except year 0, which no datetime holds
    except pa.ArrowInvalid:                              # some time is not on the calendar: keep those out
        real = _on_calendar(stamp)
        taken, parts, head = (pc.filter(a, real) for a in (taken, parts, head))
        time = pc.cast(pc.filter(stamp, real), pa.timestamp("us"))
    user = pc.cast(pc.list_element(head, 1), pa.int64())
    count = pc.list_value_length(parts)
    out = ParsedLines()
    for kind, n in (("watch", 5), ("rate", 3), ("account", 2)):
        where = pc.equal(count, n)
        columns = [pc.filter(col, where) for col in (taken, time, user)]
        if kind == "watch":
            mine = pc.filter(parts, where)
            columns += [pc.list_element(mine, 3),
                        pc.cast(pc.utf8_rtrim(pc.list_element(mine, 4), characters=".mpg"), pa.int32())]
        elif kind == "rate":
            rated = pc.split_pattern(pc.list_element(pc.filter(parts, where), 2), "=")
            columns += [pc.list_element(rated, 0), pc.cast(pc.list_element(rated, 1), pa.int8())]
        out.columns[kind] = columns
    rest = pc.indices_nonzero(pc.invert(_mask(len(lines), taken))).to_pylist()
    if rest:
        _parse_each(lines, rest, out)
        for kind in ("watch", "rate", "account"):
            _merge(out.columns, kind)
    return out


def _on_calendar(stamp):
    """Which times (`TIME_PATTERN` text) name a real instant: year 1+, month, day of that month, hour,
    minute and second in range."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def number(start: int, stop: int):
        return pc.cast(pc.utf8_slice_codeunits(stamp, start, stop), pa.int32())

    year, month, day = number(0, 4), number(5, 7), number(8, 10)
    leap = pc.and_(pc.equal(pc.bit_wise_and(year, 3), 0),
                   pc.or_(pc.not_equal(pc.remainder(year, 100), 0), pc.equal(pc.remainder(year, 400), 0)))
    days = pc.add(pc.take(pa.array(_DAYS_IN_MONTH, pa.int32()), pc.max_element_wise(pc.min_element_wise(month, 12), 0)),
                  pc.cast(pc.and_(leap, pc.equal(month, 2)), pa.int32()))
    real = pc.greater_equal(year, 1)
    for check in (pc.greater_equal(month, 1), pc.less_equal(month, 12), pc.greater_equal(day, 1),
                  pc.less_equal(day, days), pc.less_equal(number(11, 13), 23), pc.less_equal(number(14, 16), 59),
                  pc.less_equal(number(17, 19), 59)):
        real = pc.and_(real, check)
    return real


def _mask(n: int, positions):
    """A boolean Arrow array of length n, true at `positions`."""
    import numpy as np
    import pyarrow as pa

    mask = np.zeros(n, dtype=bool)
    mask[np.asarray(positions, dtype=np.int64)] = True
    return pa.array(mask)


def _merge(columns: dict[str, list], kind: str) -> None:
    """Join the Arrow columns of the lines parsed in bulk with the rows the per-line path appended
    after them (`ParsedLines.add` appends to lists), in input order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    extra = columns.pop(f"{kind}+", None)          # the per-line rows: see ParsedLines.add
    if not extra or not extra[0]:
        return
    merged = [pa.concat_arrays([a, pa.array(e, a.type)]) for a, e in zip(columns[kind], extra, strict=True)]
    order = pc.sort_indices(merged[0])
    columns[kind] = [pc.take(c, order) for c in merged]


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
