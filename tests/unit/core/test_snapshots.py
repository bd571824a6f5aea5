"""Event snapshots: typed Parquet round trip per kind, dead letters, and idempotent replays."""

from __future__ import annotations

from datetime import datetime

import pytest

from components.core import layout
from components.core.events import (
    AccountEvent,
    RateEvent,
    RecommendationEvent,
    Rejection,
    WatchEvent,
    parse_line,
)
from components.core.snapshots import SCHEMAS, read_deadletters, read_events, snapshot_days
from tests.snapshot_batches import write_batch

D1 = datetime(2026, 3, 18, 23, 59, 58)
D2 = datetime(2026, 3, 19, 0, 0, 1, 250000)

EVENTS = [
    AccountEvent(D1, 7),
    WatchEvent(D1, 7, "the+matrix+1999", 0),
    WatchEvent(D2, 7, "the+matrix+1999", 1),
    RateEvent(D2, 7, "the+matrix+1999", 5),
    RecommendationEvent(D1, 8, "host@v1", 200, ("heat+1995", "amelie"), 41),
    RecommendationEvent(D2, 9, "host@v2", 0, (), 600, error="timeout"),
    RecommendationEvent(D2, 9, "host@v2", 200, (), 12),
]
REJECTED = [parse_line("garbage"), parse_line("2026-03-18T10:00:00,x,GET /create_account")]


def batch(first: int = 0):
    """(offset, event) and (offset, rejection) pairs as ingest produces them, from `first` on."""
    items = list(EVENTS) + list(REJECTED)
    pairs = list(enumerate(items, start=first))
    events = [(o, e) for o, e in pairs if not isinstance(e, Rejection)]
    rejections = [(o, e) for o, e in pairs if isinstance(e, Rejection)]
    return first, pairs[-1][0], events, rejections


def rebuild(kind: str, row) -> object:
    time = row.time.to_pydatetime()
    if kind == "watch":
        return WatchEvent(time, int(row.user_id), row.movie_id, int(row.minute))
    if kind == "rate":
        return RateEvent(time, int(row.user_id), row.movie_id, int(row.rating))
    if kind == "account":
        return AccountEvent(time, int(row.user_id))
    return RecommendationEvent(time, int(row.user_id), row.server, int(row.status), tuple(row.results),
                               int(row.response_time_ms), row.error)


def test_write_read_round_trip(local_store):
    first, last, events, rejections = batch()
    keys = write_batch(local_store, "log", first, last, events, rejections)
    assert len(keys) == len(set(keys)) == 7  # 4 kinds x days present + 1 dead-letter file
    assert all(local_store.exists(k) for k in keys)
    for kind, schema in SCHEMAS.items():
        frame = read_events(local_store, kind)
        assert list(frame.columns) == schema.names
        expected = [e for _, e in events if e.kind == kind]
        assert [rebuild(kind, row) for row in frame.itertuples()] == sorted(expected, key=lambda e: e.time)
        assert set(frame["source"]) == {"log"}


def test_snapshots_are_split_by_kind_and_day(local_store):
    first, last, events, rejections = batch()
    keys = write_batch(local_store, "log", first, last, events, rejections)
    assert layout.snapshot_key("watch", "2026-03-18", "log", first, last) in keys
    assert layout.snapshot_key("watch", "2026-03-19", "log", first, last) in keys
    assert snapshot_days(local_store) == {"account": ["2026-03-18"], "watch": ["2026-03-18", "2026-03-19"],
                                          "rate": ["2026-03-19"], "recommendation": ["2026-03-18", "2026-03-19"]}
    assert len(read_events(local_store, "watch", days=["2026-03-19"])) == 1


def test_deadletters_keep_line_reason_and_offset(local_store):
    first, last, events, rejections = batch(first=100)
    keys = write_batch(local_store, "log", first, last, events, rejections)
    assert layout.deadletter_key("2026-03-18", "log", first, last) in keys  # the batch's first event day
    dead = read_deadletters(local_store)
    assert dead["line"].tolist() == [r.line for _, r in rejections]
    assert dead["reason"].tolist() == ["truncated", "bad_user"]
    assert dead["offset"].tolist() == [o for o, _ in rejections]


def test_rejections_only_batch_uses_the_given_day(local_store):
    keys = write_batch(local_store, "log", 0, 1, [], [(0, REJECTED[0]), (1, REJECTED[1])], day="2026-03-20")
    assert keys == [layout.deadletter_key("2026-03-20", "log", 0, 1)]
    assert len(read_deadletters(local_store)) == 2


def test_replaying_the_same_batch_adds_no_duplicates(local_store):
    first, last, events, rejections = batch()
    keys = write_batch(local_store, "log", first, last, events, rejections)
    before = {k: local_store.get_bytes(k) for k in local_store.list()}
    assert write_batch(local_store, "log", first, last, events, rejections) == keys
    assert sorted(local_store.list()) == sorted(before)
    for kind in SCHEMAS:
        assert len(read_events(local_store, kind)) == sum(e.kind == kind for _, e in events)
    assert len(read_deadletters(local_store)) == len(rejections)


def test_overlapping_replay_is_deduplicated_by_position(local_store):
    """A crash after writing 0..8 and a replay of 0..8 split differently (0..3, 4..8): new keys, but
    readers see each log position once."""
    first, last, events, rejections = batch()
    write_batch(local_store, "log", first, last, events, rejections)
    write_batch(local_store, "log", 0, 3, [p for p in events if p[0] <= 3], [])
    write_batch(local_store, "log", 4, last, [p for p in events if p[0] >= 4], rejections)
    frame = read_events(local_store, "watch")
    assert len(frame) == 2 and frame["offset"].is_unique
    assert sum(len(read_events(local_store, kind)) for kind in SCHEMAS) == len(events)
    assert len(read_deadletters(local_store)) == len(rejections)


def test_two_sources_do_not_collide(local_store):
    first, last, events, rejections = batch()
    write_batch(local_store, "kafka-0", first, last, events, rejections)
    write_batch(local_store, "kafka-1", first, last, events, rejections)
    assert len(read_events(local_store, "watch")) == 4


def test_empty_store_reads_empty_frames(local_store):
    for kind, schema in SCHEMAS.items():
        frame = read_events(local_store, kind)
        assert frame.empty and list(frame.columns) == schema.names
    assert read_deadletters(local_store).empty
    assert snapshot_days(local_store) == {}


def test_microseconds_survive(local_store):
    write_batch(local_store, "log", 0, 0, [(0, WatchEvent(D2, 1, "heat", 3))], [])
    assert read_events(local_store, "watch")["time"][0].to_pydatetime() == D2


@pytest.mark.parametrize("source", ["", "a/b", "a b"])
def test_invalid_source_is_refused(local_store, source):
    with pytest.raises(ValueError):
        write_batch(local_store, source, 0, 0, [(0, EVENTS[0])], [])
