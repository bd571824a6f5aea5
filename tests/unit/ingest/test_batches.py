"""Ingest faults in the batch writer: long lines, runs of them, events from the future, batches of
nothing but rejections."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pyarrow.parquet as pq

from components.core import layout
from components.core.events import (
    KEPT_CHARS,
    MAX_CLOCK_SKEW,
    MAX_LINE_CHARS,
    AccountEvent,
    WatchEvent,
    format_event,
)
from components.core.snapshots import read_deadletters, read_events
from components.core.store import LocalStore
from components.ingest.batches import Batcher, SnapshotWriter, utc_now
from components.ingest.metrics import IngestMetrics
from components.ingest.retention import expire_snapshots

NOW = datetime(2026, 3, 18, 12, 0, 0)


def writer(store, now: datetime = NOW) -> SnapshotWriter:
    return SnapshotWriter(store, IngestMetrics(), clock=lambda: now)


def test_batches_are_cut_by_bytes_inside_a_window():
    b = Batcher(batch_size=100, linger=60, max_bytes=1000)
    lines = [b"x" * 300] * 10
    ready = b.add("t-0", list(range(10)), lines)
    assert [(x.first, x.last) for x in ready] == [(0, 2), (3, 5), (6, 8)]
    assert all(x.size <= 1000 for x in ready)
    assert [(x.first, x.last, x.size) for x in b.take_all()] == [(9, 9, 300)]


def test_a_line_longer_than_the_byte_bound_is_a_batch_of_its_own():
    b = Batcher(batch_size=100, linger=60, max_bytes=1000)
    ready = b.add("t-0", [0, 1, 2], [b"a" * 10, b"b" * 5000, b"c" * 10])
    assert [(x.first, x.last) for x in ready] == [(0, 0), (1, 1)]
    assert b.take_all()[0].offsets == [2]


def test_byte_cuts_follow_the_log_not_the_reads():
    """Read in one go or in dribs, from the same first offset: the same batches."""
    lines = [b"y" * (50 + 37 * i % 400) for i in range(60)]
    whole = Batcher(100, 60, max_bytes=1500)
    once = whole.add("t-0", list(range(60)), lines) + whole.take_all()
    dribs = Batcher(100, 60, max_bytes=1500)
    pieces = []
    for a in range(0, 60, 7):
        pieces += dribs.add("t-0", list(range(a, min(a + 7, 60))), lines[a:a + 7])
    pieces += dribs.take_all()
    assert [(x.first, x.last) for x in once] == [(x.first, x.last) for x in pieces]
    assert len(once) > 1 and sum(len(x.offsets) for x in once) == 60


def test_an_over_long_line_is_a_dead_letter_that_keeps_its_head(tmp_path):
    store = LocalStore(tmp_path)
    ok = format_event(AccountEvent(NOW, 1)).encode()
    huge = format_event(WatchEvent(NOW, 2, "a" * (MAX_LINE_CHARS + 10), 1)).encode()
    b = Batcher(10, 0)
    b.add("t-0", [0, 1, 2], [ok, huge, ok])
    counts = writer(store).write(b.take("t-0"))
    assert counts.rejected == {"too_long": 1} and counts.stored == {"account": 2}
    dead = read_deadletters(store)
    assert list(dead["reason"]) == ["too_long"] and len(dead["line"][0]) == KEPT_CHARS
    assert dead["line"][0] == huge.decode()[:KEPT_CHARS] and str(len(huge)) in dead["detail"][0]


def test_events_later_than_the_clock_plus_skew_are_dead_letters(tmp_path):
    store = LocalStore(tmp_path)
    times = [NOW - timedelta(days=1), NOW + MAX_CLOCK_SKEW - timedelta(seconds=1),
             NOW + MAX_CLOCK_SKEW + timedelta(seconds=1), datetime(2099, 1, 1)]
    lines = [format_event(WatchEvent(t, 7, "heat+1995", 3)).encode() for t in times]
    b = Batcher(10, 0)
    b.add("t-0", list(range(4)), lines)
    counts = writer(store).write(b.take("t-0"))
    assert counts.stored == {"watch": 2} and counts.rejected == {"future_time": 2}
    assert sorted(read_events(store, "watch")["offset"]) == [0, 1]
    dead = read_deadletters(store)
    assert list(dead["offset"]) == [2, 3] and set(dead["reason"]) == {"future_time"}
    assert list(dead["line"]) == [lines[2].decode(), lines[3].decode()]
    # no snapshot day from the future: days come from the accepted events only
    assert {layout.day_of_key(k) for k in store.list()} == {"2026-03-17", "2026-03-18"}


def test_dead_letters_of_a_batch_without_events_are_dated_and_expire(tmp_path):
    store = LocalStore(tmp_path)
    b = Batcher(10, 0)
    b.add("t-0", [0, 1, 2], [b"garbage", b"", b"\xff\xfe"])
    writer(store).write(b.take("t-0"))
    (key,) = store.list(layout.deadletter_prefix())
    today = utc_now().date()
    assert layout.day_of_key(key) == today.isoformat()
    table = pq.read_table(io.BytesIO(store.get_bytes(key)))
    assert table.num_rows == 3
    midnight = datetime.combine(today, datetime.min.time())
    store.put_json(layout.ONLINE_WATERMARK, {"consumed_until": (midnight + timedelta(days=1, hours=1)).isoformat()})
    report = expire_snapshots(store, 0.5, now=midnight + timedelta(days=2))
    assert report.deleted_days == [today.isoformat()] and store.list(layout.deadletter_prefix()) == []


def test_the_cli_default_batch_is_the_ingest_default():
    import inspect

    from components.cli import ingest_command
    from components.ingest.run import DEFAULT_BATCH_SIZE

    assert inspect.signature(ingest_command).parameters["batch_size"].default == DEFAULT_BATCH_SIZE
