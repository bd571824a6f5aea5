"""Event snapshots: typed, compressed Parquet files in the store, one per (kind, day, offset range).

Ingest writes them; preprocess, online evaluation and notebooks read them back as pandas frames.
Every row keeps `source` and `offset`, the position of its line in the event log, so a replay
after a crash rewrites the same file (see `components.core.layout.snapshot_key`) and a reader can
drop any overlap with `drop_duplicates(["source", "offset"])`.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.core import layout
from components.core.event_columns import ParsedLines
from components.core.events import AccountEvent, Event, RateEvent, RecommendationEvent, Rejection, WatchEvent
from components.core.store import ArtifactStore

_TIME = pa.timestamp("us")
_POSITION = [("source", pa.string()), ("offset", pa.int64())]

SCHEMAS: dict[str, pa.Schema] = {
    "watch": pa.schema([("time", _TIME), ("user_id", pa.int64()), ("movie_id", pa.string()),
                        ("minute", pa.int32()), *_POSITION]),
    "rate": pa.schema([("time", _TIME), ("user_id", pa.int64()), ("movie_id", pa.string()),
                       ("rating", pa.int8()), *_POSITION]),
    "recommendation": pa.schema([("time", _TIME), ("user_id", pa.int64()), ("server", pa.string()),
                                 ("status", pa.int16()), ("results", pa.list_(pa.string())),
                                 ("response_time_ms", pa.int32()), ("error", pa.string()), *_POSITION]),
    "account": pa.schema([("time", _TIME), ("user_id", pa.int64()), *_POSITION]),
}
DEADLETTER_SCHEMA = pa.schema([("line", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
                               *_POSITION])

_FIELDS = {
    "watch": lambda e: (e.time, e.user_id, e.movie_id, e.minute),
    "rate": lambda e: (e.time, e.user_id, e.movie_id, e.rating),
    "recommendation": lambda e: (e.time, e.user_id, e.server, e.status, list(e.results),
                                 e.response_time_ms, e.error),
    "account": lambda e: (e.time, e.user_id),
}


def events_to_tables(events: Iterable[tuple[int, Event]], source: str) -> dict[tuple[str, str], pa.Table]:
    """Group (offset, event) pairs by (kind, day) into Arrow tables of the kind's schema."""
    columns: dict[tuple[str, str], list[list]] = {}
    for offset, event in events:
        key = (event.kind, event.time.date().isoformat())
        row = (*_FIELDS[event.kind](event), source, offset)
        cols = columns.get(key)
        if cols is None:
            cols = columns[key] = [[] for _ in row]
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return {key: pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, SCHEMAS[key[0]], strict=True)],
                                      schema=SCHEMAS[key[0]])
            for key, cols in columns.items()}


def rejections_to_table(rejections: Iterable[tuple[int, Rejection]], source: str) -> pa.Table:
    rows = list(rejections)
    return pa.table({"line": [r.line for _, r in rows], "reason": [r.reason for _, r in rows],
                     "detail": [r.detail for _, r in rows], "source": [source] * len(rows),
                     "offset": [o for o, _ in rows]}, schema=DEADLETTER_SCHEMA)


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def parsed_to_tables(parsed: ParsedLines, offsets: list[int], source: str) -> dict[tuple[str, str], pa.Table]:
    """The same tables as `events_to_tables`, built from bulk-parsed columns (`parse_columns`) with
    one Arrow conversion per column instead of one Python event per row; `offsets[i]` is the log
    position of input line i."""
    tables = {}
    for kind, (positions, *cols) in parsed.columns.items():
        if not positions:
            continue
        schema = SCHEMAS[kind]
        arrays = [c.cast(f.type) if isinstance(c, pa.Array) else pa.array(c, type=f.type)   # Arrow from the bulk path
                  for c, f in zip(cols, schema, strict=False)]
        arrays += [pa.array([source] * len(positions), pa.string()),
                   pa.array(offsets, pa.int64()).take(positions if isinstance(positions, pa.Array)
                                                      else pa.array(positions, pa.int64()))]
        table = pa.Table.from_arrays(arrays, schema=schema)
        days = pc.cast(table["time"], pa.date32())
        first, last = (d.as_py() for d in pc.min_max(days).values())
        if first == last:  # the usual case: the whole batch within one day
            tables[(kind, first.isoformat())] = table
            continue
        for day in pc.unique(days).to_pylist():
            tables[(kind, day.isoformat())] = table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
    return tables


def write_parsed(store: ArtifactStore, source: str, offsets: list[int], parsed: ParsedLines) -> list[str]:
    """Write one batch of lines parsed in bulk (line i of `parsed` is at log position `offsets[i]`)
    as snapshots; return the keys written.

    Keys depend only on (kind, day, source, offsets[0], offsets[-1]): writing the same batch twice
    leaves the same objects. Rejections go to the dead-letter area under the batch's first event day."""
    dead = rejections_to_table(((offsets[i], r) for i, r in parsed.rejections), source)
    return write_tables(store, source, offsets[0], offsets[-1], parsed_to_tables(parsed, offsets, source), dead)


def write_tables(store: ArtifactStore, source: str, first: int, last: int,
                 tables: dict[tuple[str, str], pa.Table], dead: pa.Table, day: str | None = None) -> list[str]:
    keys = []
    for (kind, event_day), table in sorted(tables.items()):
        key = layout.snapshot_key(kind, event_day, source, first, last)
        store.put_bytes(key, table_bytes(table))
        keys.append(key)
    if dead.num_rows:
        # A batch with no valid event is filed under the day it was ingested, so that retention
        # expires it like any other day.
        dl_day = day or (min(d for _, d in tables) if tables else datetime.now(UTC).date().isoformat())
        key = layout.deadletter_key(dl_day, source, first, last)
        store.put_bytes(key, table_bytes(dead))
        keys.append(key)
    return keys


def read_events(store: ArtifactStore, kind: str, days: Iterable[str] | None = None, *,
                categorical: bool = False) -> pd.DataFrame:
    """All snapshots of one event kind as one frame, each log position once, sorted by time.

    `categorical` returns the string columns (movie ids, sources, servers) as pandas categoricals:
    a few bytes per row instead of a Python string each, for readers of millions of events."""
    wanted = set(days) if days is not None else None
    keys = [k for k in store.list(layout.events_prefix(kind))
            if k.endswith(".parquet") and (wanted is None or layout.day_of_key(k) in wanted)]
    return _read_tables(store, keys, SCHEMAS[kind], sort="time", categorical=categorical)


def read_deadletters(store: ArtifactStore) -> pd.DataFrame:
    keys = [k for k in store.list(layout.deadletter_prefix()) if k.endswith(".parquet")]
    return _read_tables(store, keys, DEADLETTER_SCHEMA, sort="offset")


def _read_tables(store: ArtifactStore, keys: list[str], schema: pa.Schema, sort: str,
                 categorical: bool = False) -> pd.DataFrame:
    """Concatenate, keep the last row of each (source, offset), order by (sort, source, offset):
    done on Arrow columns and numpy keys, converted to pandas once at the end, a column at a time
    (41M watch events: 3.5 GB peak, 1.2 GB of them the frame, where hashing the positions and
    taking the whole table at once peaked at 6.1 GB)."""
    if not keys:
        frame = schema.empty_table().to_pandas()
        return frame.astype({f.name: "category" for f in schema if f.type == pa.string()}) if categorical else frame
    strings = [f.name for f in schema if f.type == pa.string()] if categorical else []
    tables = []
    for key in keys:
        table = pq.read_table(io.BytesIO(store.get_bytes(key)), schema=schema)
        for name in strings:  # dictionary columns from the file on: every later copy is of small codes
            table = table.set_column(table.schema.get_field_index(name), name, pc.dictionary_encode(table[name]))
        tables.append(table)
    table = pa.concat_tables(tables)
    del tables
    src = _sorted_codes(table["source"])
    offset = table["offset"].to_numpy()
    rows = _last_of_each_position(src, offset) if _ranges_overlap(keys) else None
    if rows is not None:                           # a position ingested twice: keep its latest copy
        src, offset = src[rows], offset[rows]
    first = offset if sort == "offset" else table[sort].to_numpy()
    if rows is not None and sort != "offset":
        first = first[rows]
    order = np.lexsort((offset, src, first))
    del src, offset, first
    order = pa.array(order if rows is None else rows[order])
    del rows
    # Column by column, each released once taken: at most one column is held twice at a time.
    # Arrow's allocator keeps freed pages for reuse, which the pandas columns (numpy's allocator)
    # never get: hand them back after each column, or every column taken adds to the peak
    # (36M watch events in 800 snapshot files: 3.7 -> 3.2 GB), and the process carries the
    # read's peak into what the reader does next (2.7 -> 1.3 GB resident).
    names, columns = table.column_names, table.columns
    del table
    frame = {}
    pool = pa.default_memory_pool()
    for name in names:
        column = columns.pop(0)
        frame[name] = column.take(order).to_pandas()
        del column
        pool.release_unused()
    return pd.DataFrame(frame, copy=False)


def _ranges_overlap(keys: list[str]) -> bool:
    """Whether two snapshots of different batches cover a common log position (a replay after a
    crash): only then can a position be there twice. One batch's snapshots of different days share
    their range but not their rows; a key of another shape counts as overlapping."""
    ranges = {layout.range_of_key(k) for k in keys}
    if None in ranges:
        return True
    end: dict[str, int] = {}
    for source, first, last in sorted(ranges):
        if first <= end.get(source, -1):
            return True
        end[source] = last
    return False


def _last_of_each_position(src: np.ndarray, offset: np.ndarray) -> np.ndarray | None:
    """Ascending row positions of the last row of each log position (source code, offset), or None
    when every position is there once: a position ingested twice is kept once, as its latest copy.
    Sorting one int64 key (the snapshots are ascending runs, which a stable sort merges quickly)
    takes a fraction of the memory of hashing the pairs."""
    n = len(offset)
    if n == 0:
        return None
    span = int(offset.max()) + 1
    if int(src.max()) + 1 > (2**62) // span:       # too many sources for one key: hash the pairs
        keep = ~pd.DataFrame({"s": src, "o": offset}).duplicated(keep="last").to_numpy()
        return None if keep.all() else np.flatnonzero(keep)
    key = src.astype(np.int64) * span + offset
    idx = np.argsort(key, kind="stable")
    key = key[idx]
    last = np.empty(n, dtype=bool)
    last[:-1] = key[1:] != key[:-1]
    last[-1] = True
    return None if last.all() else np.sort(idx[last])


def _sorted_codes(column: pa.ChunkedArray) -> np.ndarray:
    """Per row of a string (or dictionary of strings) column, an integer that sorts as its value."""
    def values(chunk: pa.Array) -> pa.Array:
        return chunk.dictionary if pa.types.is_dictionary(chunk.type) else pc.unique(chunk)

    names = np.unique(np.concatenate([values(c).to_numpy(zero_copy_only=False) for c in column.chunks]
                                     or [np.empty(0, dtype=object)]))
    parts = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            rank = np.searchsorted(names, chunk.dictionary.to_numpy(zero_copy_only=False))
            parts.append(rank[chunk.indices.to_numpy(zero_copy_only=False)])
        else:
            parts.append(pc.index_in(chunk, value_set=pa.array(names, pa.string())).to_numpy(zero_copy_only=False))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def snapshot_days(store: ArtifactStore) -> dict[str, list[str]]:
    """Which days hold snapshots, per kind (for retention and for reports)."""
    days: dict[str, set[str]] = defaultdict(set)
    for key in store.list(layout.events_prefix()):
        kind, day = layout.kind_of_key(key), layout.day_of_key(key)
        if kind and day:
            days[kind].add(day)
    return {k: sorted(v) for k, v in days.items()}


__all__ = ["SCHEMAS", "DEADLETTER_SCHEMA", "write_parsed", "read_events", "read_deadletters",
           "events_to_tables", "parsed_to_tables", "rejections_to_table", "snapshot_days",
           "WatchEvent", "RateEvent", "RecommendationEvent", "AccountEvent"]
