"""Reading snapshots back: each log position once (the last write wins), in (time, source, offset)
order, the same whether string columns come back as Python strings or as categoricals."""

from __future__ import annotations

import io
import random
from datetime import datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.core import layout
from components.core.events import RateEvent, RecommendationEvent, WatchEvent
from components.core.snapshots import SCHEMAS, read_events
from tests.snapshot_batches import write_batch

T0 = datetime(2026, 3, 18, 22)


def random_events(rng: random.Random, first: int, n: int) -> list:
    out = []
    for offset in range(first, first + n):
        time = T0 + timedelta(minutes=rng.randrange(240))        # many equal times, across midnight
        user, movie = rng.randrange(30), f"movie+{rng.randrange(12)}"
        kind = rng.randrange(3)
        out.append((offset, WatchEvent(time, user, movie, rng.randrange(90)) if kind == 0 else
                    RateEvent(time, user, movie, rng.randint(1, 5)) if kind == 1 else
                    RecommendationEvent(time, user, f"host@v{rng.randrange(2)}", 200, (movie,), 20)))
    return out


def reference(store, kind: str) -> pd.DataFrame:
    """What a reader must return, computed the plain pandas way."""
    keys = [k for k in store.list(layout.events_prefix(kind)) if k.endswith(".parquet")]
    frame = pd.concat([pq.read_table(io.BytesIO(store.get_bytes(k)), schema=SCHEMAS[kind]).to_pandas()
                       for k in keys], ignore_index=True)
    frame = frame.drop_duplicates(["source", "offset"], keep="last")
    return frame.sort_values(["time", "source", "offset"], kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_read_matches_the_plain_pandas_reading(local_store, seed):
    rng = random.Random(seed)
    for source in ("kafka-1", "kafka-0", "file-b"):     # written in another order than they sort
        events = random_events(rng, 0, 300)
        write_batch(local_store, source, 0, 299, events, [])
        write_batch(local_store, source, 100, 199, [e for e in events if 100 <= e[0] < 200], [])  # a replay
    for kind in ("watch", "rate", "recommendation"):
        expected = reference(local_store, kind)
        assert len(expected) and not expected.duplicated(["source", "offset"]).any()
        pd.testing.assert_frame_equal(read_events(local_store, kind), expected)
        categorical = read_events(local_store, kind, categorical=True)
        strings = [c for c in categorical.columns if isinstance(categorical[c].dtype, pd.CategoricalDtype)]
        assert "source" in strings and (kind == "recommendation" or "movie_id" in strings)
        pd.testing.assert_frame_equal(categorical.astype({c: object for c in strings}), expected)


def test_empty_store_reads_empty_categorical_frames(local_store):
    frame = read_events(local_store, "rate", categorical=True)
    assert frame.empty and list(frame.columns) == SCHEMAS["rate"].names
    assert isinstance(frame["movie_id"].dtype, pd.CategoricalDtype)


def test_a_position_written_twice_reads_as_its_latest_copy(local_store):
    first = [(o, WatchEvent(T0 + timedelta(minutes=o), 1, "movie+1", 10)) for o in range(5)]
    write_batch(local_store, "kafka-0", 0, 4, first, [])
    write_batch(local_store, "kafka-0", 2, 3, [(o, WatchEvent(T0 + timedelta(minutes=o), 1, "movie+1", 77))
                                               for o in (2, 3)], [])
    frame = read_events(local_store, "watch", categorical=True)
    assert frame["offset"].tolist() == [0, 1, 2, 3, 4] and frame["minute"].tolist() == [10, 10, 77, 77, 10]


def test_last_of_each_position_by_sorting_and_by_hashing_agree():
    import numpy as np

    from components.core.snapshots import _last_of_each_position

    rng = np.random.default_rng(0)
    src, offset = rng.integers(0, 3, 5000), rng.integers(0, 2000, 5000)
    expected = np.flatnonzero(~pd.DataFrame({"s": src, "o": offset}).duplicated(keep="last").to_numpy())
    assert np.array_equal(_last_of_each_position(src, offset), expected)
    assert _last_of_each_position(np.zeros(4, np.int64), np.arange(4)) is None       # every position once
    assert _last_of_each_position(np.zeros(0, np.int64), np.zeros(0, np.int64)) is None
    huge = np.array([0, 2**61, 0])                    # no room for one int64 key: the pairs are hashed
    assert np.array_equal(_last_of_each_position(np.array([0, 5, 0]), huge), [1, 2])


def test_positions_can_repeat_only_where_two_batches_ranges_overlap():
    from components.core.snapshots import _ranges_overlap

    def key(source, first, last, day="2026-03-18"):
        return layout.snapshot_key("watch", day, source, first, last)

    one_batch_two_days = [key("kafka-0", 0, 99), key("kafka-0", 0, 99, "2026-03-19"), key("kafka-0", 100, 199)]
    assert not _ranges_overlap(one_batch_two_days + [key("kafka-1", 0, 99)])   # other source, same offsets
    assert _ranges_overlap(one_batch_two_days + [key("kafka-0", 150, 250)])    # a replay from 150
    assert _ranges_overlap([key("kafka-0", 0, 99), key("kafka-0", 99, 120)])
    assert _ranges_overlap([key("kafka-0", 0, 99), "events/kind=watch/day=2026-03-18/other.parquet"])
