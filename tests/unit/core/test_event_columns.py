"""The bulk parser says exactly what `parse_line` says of every line: same events, same rejections,
on its vectorised path (Arrow, the default) as on its per-line path."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from components.core.event_columns import FIELDS, parse_columns
from components.core.events import MAX_CLOCK_SKEW, MAX_LINE_CHARS, MAX_USER_ID, format_event, parse_line
from components.core.snapshots import events_to_tables, parsed_to_tables
from tests.unit.core.test_events import VALID_LINES, events

T = "2026-03-18T06:12:47"


def assert_same_as_parse_line(lines: list) -> None:
    for vectorised in (True, False):
        _assert_same_as_parse_line(lines, vectorised)


def _assert_same_as_parse_line(lines: list, vectorised: bool) -> None:
    parsed = parse_columns(lines, vectorised=vectorised)
    got = dict(parsed.events())
    for i, rejection in parsed.rejections:
        assert i not in got
        got[i] = rejection
    expected = [parse_line(line if line is not None else b"") for line in lines]
    assert sorted(got) == list(range(len(lines)))
    for i, want in enumerate(expected):
        assert type(got[i]) is type(want) and got[i] == want, (lines[i], got[i], want)
    for kind, columns in parsed.columns.items():
        positions, *cols = (c if isinstance(c, list) else c.to_pylist() for c in columns)   # Arrow on the fast path
        assert positions == sorted(positions)  # rows keep the log's order
        assert len(cols) == len(FIELDS[kind]) and all(len(c) == len(positions) for c in cols)
    assert parsed.counts() == {k: n for k in FIELDS if (n := sum(1 for e in expected if e.kind == k))}


EDGE_CASES = [
    *VALID_LINES.values(),
    f"{T},{MAX_USER_ID},GET /data/m/heat/1.mpg",  # 19 digits: parse_line checks the bound
    f"{T},{MAX_USER_ID + 1},GET /data/m/heat/1.mpg",
    f"{T},1234567890123456789,GET /rate/heat=3",
    f"{T},01,GET /create_account",
    f"{T},1,GET /rate/heat=05", f"{T},1,GET /rate/heat=0", f"{T},1,GET /rate/heat=6", f"{T},1,GET /rate/heat=-1",
    f"{T},1,GET /rate/heat=", f"{T},1,GET /rate/heat",
    "2026-13-18T06:12:47,1,GET /create_account", "2026-02-30T06:12:47,1,GET /data/m/heat/1.mpg",
    "2026-02-30T06:12:47,1,recommendation request h, status 200, result: heat, 5 ms",
    f"{T}.123456,1,GET /data/m/heat/00012.mpg", f"{T}.123,1,GET /data/m/heat/1.mpg",
    f"{T}.149,1,GET /rate/heat=4", f"{T}.149,1,GET /create_account", f"{T}.12,1,GET /create_account",
    f"{T}.1234,1,GET /create_account", f"{T}.149,1,recommendation request h, status 200, result: heat, 5 ms",
    f"{T}.149,1,recommendation request h, status 0, result: timeout, 5 ms",
    "2026-02-30T06:12:47.149,1,GET /create_account",
    f"{T},1,GET /data/m/heat/123456.mpg", f"{T},1,GET /data/m/Heat/1.mpg", f"{T},1,GET /data/m//1.mpg",
    f"{T},1,GET /data/m/heat/1.mpg\r", f"{T},1,GET /data/m/heat/1.mpg\r\n", f"{T},1,GET /create_account\n",
    f"{T}\n,1,GET /create_account", f"{T},1\n,GET /create_account", f"{T},1,GET /create_account ",
    f"{T},1,recommendation request h, status 200, result: heat, 5 ms\r",
    f"{T},1,recommendation request h\r, status 200, result: heat, 5 ms",
    f"{T},1,recommendation request h, status 200, result: heat\n, 5 ms",
    f"{T},1,recommendation request h, status 999, result: heat, 5 ms",
    f"{T},1,recommendation request h, status 200, result: {', '.join(['heat'] * 21)}, 5 ms",
    f"{T},1,recommendation request h, status 200, result: heat, 5",
    f"{T},١٢,GET /create_account", f"{T},1,GET /data/m/heat/١.mpg", "٢٠٢٦-03-18T06:12:47,1,GET /create_account",
    f"{T},1,GET /data/m/{'a' * MAX_LINE_CHARS}/1.mpg", f"{T},1,GET /rate/{'b' * (MAX_LINE_CHARS - 34)}=4",
    f"{T},1,GET /data/m/{'a' * (MAX_LINE_CHARS - 40)}/1.mpg\n", ("x" * MAX_LINE_CHARS + "\xff").encode("latin-1"),
    f"{T},1,GET /data/m/héat/1.mpg", "", " ", "\n", "\r\n", "garbage", "a,b", "a,b,c", None,
    b"\xff\xfe", f"{T},1,GET /data/m/heat/1.mpg".encode(), f"{T},1,GET /data/m/h\xe9at/1.mpg".encode("latin-1"),
]


def test_edge_cases_match_parse_line():
    assert_same_as_parse_line(EDGE_CASES)
    assert_same_as_parse_line([line.encode() if isinstance(line, str) else line for line in EDGE_CASES])


def test_reject_future_moves_late_events_to_the_rejections():
    now = datetime(2026, 3, 18, 7, 0, 0)
    late = now + MAX_CLOCK_SKEW + timedelta(microseconds=1)
    lines = [f"{T},1,GET /create_account", f"{late.isoformat()},2,GET /rate/heat=4".encode(), "garbage",
             f"{(now + MAX_CLOCK_SKEW).isoformat()},3,GET /create_account",
             "2099-01-01T00:00:00,4,recommendation request h, status 200, result: heat, 5 ms\r\n"]
    parsed = parse_columns(lines)
    assert parsed.reject_future(lines, now) == 2
    assert [(i, e.user_id) for i, e in parsed.events()] == [(0, 1), (3, 3)]
    assert [(i, r.reason) for i, r in parsed.rejections] == [(1, "future_time"), (2, "truncated"), (4, "future_time")]
    assert parsed.rejections[0][1].line == lines[1].decode()
    assert parsed.rejections[2][1].line == lines[4].rstrip()
    assert parsed.counts() == {"account": 2}
    assert parsed.reject_future(lines, now) == 0


def test_empty_list():
    assert parse_columns([]).counts() == {} and parse_columns([]).rejections == []


def _mutate(line: str, draw) -> str:
    """One character replaced, inserted or deleted, a cut, or a character appended."""
    i = draw(st.integers(0, len(line)))
    op = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "suffix"]))
    ch = draw(st.sampled_from([",", " ", "\r", "\n", "0", "9", "/", "=", "-", ".", "T", ":", "é", "١"])
                   | st.characters(blacklist_categories=("Cs",)))
    return {"replace": line[:i] + ch + line[i + 1:], "insert": line[:i] + ch + line[i:],
            "delete": line[:i] + line[i + 1:], "truncate": line[:i], "suffix": line + ch}[op]


@st.composite
def lines(draw):
    kind = draw(st.sampled_from(["valid", "mutated", "text", "bytes", "none"]))
    if kind == "text":
        return draw(st.text(max_size=120))
    if kind == "bytes":
        return draw(st.binary(max_size=120))
    if kind == "none":
        return None
    line = format_event(draw(events))
    # the precisions real logs use: seconds, milliseconds, microseconds
    head, sep, rest = line.partition(",")
    line = draw(st.sampled_from([head, head[:19], head[:19] + ".149", head[:19] + ".000"])) + sep + rest
    if kind == "mutated":
        line = _mutate(line, draw)
    return line.encode() if draw(st.booleans()) else line


@settings(max_examples=300, deadline=None)
@given(st.lists(lines(), max_size=40))
@example(batch=["0000-01-01T00:00:00,0,GET /data/m/0/0.mpg"])   # Arrow reads year 0; no datetime holds it
def test_random_and_corrupted_lines_match_parse_line(batch):
    assert_same_as_parse_line(batch)


@settings(max_examples=200, deadline=None)
@given(st.lists(events, min_size=1, max_size=30))
def test_valid_lines_round_trip(evts):
    parsed = parse_columns([format_event(e) for e in evts])
    assert [e for _, e in parsed.events()] == evts and parsed.rejections == []


@settings(max_examples=100, deadline=None)
@given(st.lists(lines(), min_size=1, max_size=40), st.integers(0, 10**12))
def test_snapshot_tables_match_the_per_event_path(batch, start):
    """Columns straight to Arrow give the same tables (rows, order, types, day split) as events."""
    offsets = [start + 3 * i for i in range(len(batch))]
    parsed = parse_columns(batch)
    events = [(offsets[i], e) for i, e in parsed.events()]
    expected = events_to_tables(events, "topic-1")
    got = parsed_to_tables(parsed, offsets, "topic-1")
    assert sorted(got) == sorted(expected)
    for key, table in expected.items():
        assert got[key].equals(table), key


def test_vectorised_and_per_line_paths_write_the_same_bytes_for_the_simulators_lines():
    """The simulator's traffic with corrupted lines (invalid UTF-8 among them), as the file source
    (bytes) and as text: the same events, rejections (reason, detail) and Parquet bytes either way."""
    from components.core.snapshots import rejections_to_table, table_bytes
    from simulator.service import StreamingService

    service = StreamingService(seed=5, n_users=120, n_movies=50, corrupt_rate=0.05)
    text = list(service.history(days=3, sessions_per_day=40, start=datetime(2026, 3, 1)))
    raw = [line.encode("utf-8", "surrogateescape") for line in text]
    assert service.corrupted > 50 and len(text) > 3000
    assert any(not _utf8(line) for line in raw)
    text = [line.decode("utf-8", "replace") for line in raw]        # what a text reader would hold
    for lines in (raw, text, raw[:1] + text[1:]):
        offsets = list(range(10**6, 10**6 + len(lines)))
        written = []
        for vectorised in (True, False):
            parsed = parse_columns(lines, vectorised=vectorised)
            tables = parsed_to_tables(parsed, offsets, "topic-0")
            dead = rejections_to_table(((offsets[i], r) for i, r in parsed.rejections), "topic-0")
            written.append(({key: table_bytes(t) for key, t in tables.items()}, table_bytes(dead),
                            parsed.events(), parsed.rejections, parsed.counts()))
        assert written[0] == written[1]
        assert len(written[0][3]) == service.corrupted


def _utf8(line: bytes) -> bool:
    try:
        line.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_snapshot_tables_split_days():
    lines = ["2026-03-18T23:59:59,1,GET /data/m/heat/1.mpg", "2026-03-19T00:00:00,2,GET /data/m/heat/2.mpg",
             "2026-03-18T23:59:59.500000,3,GET /data/m/heat/3.mpg", "2026-03-19T00:00:01,4,GET /rate/heat=5"]
    got = parsed_to_tables(parse_columns(lines), [10, 11, 12, 13], "t-0")
    assert sorted(got) == [("rate", "2026-03-19"), ("watch", "2026-03-18"), ("watch", "2026-03-19")]
    assert got[("watch", "2026-03-18")].column("offset").to_pylist() == [10, 12]
    assert got[("watch", "2026-03-19")].column("user_id").to_pylist() == [2]
