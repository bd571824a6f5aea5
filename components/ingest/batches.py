"""Cutting a log into batches and writing each batch to the store exactly once.

Two rules make a replay after a crash converge on the same store content:

- Batch boundaries follow the log, not the timing of reads: a batch never crosses a multiple of
  `batch_size` in its source's offsets, so the full batches of a replay have the same ranges,
  hence the same keys (`components.core.layout.snapshot_key`), as the batches they replace.
- Batches cut early (idle flush, shutdown, rebalance) can still differ from a replay's: when a
  batch is written, every older snapshot of the same source whose range starts within it is
  deleted, before the offsets are committed. What such a snapshot held beyond the new batch lies
  past the commit point and is read again. The store therefore holds each log position once,
  counted in rows, not only through a de-duplicating reader. (A snapshot that starts before the
  batch holds committed positions: it is kept, with a warning, and readers drop the overlap; one
  consumer group per topic and store never produces it.)

Only the consumer that owns a partition writes its snapshots (consumer-group assignment); the
writer keeps an index of the store's snapshot ranges per source, refreshed when the assignment
changes.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from components.core import layout
from components.core.event_columns import parse_columns
from components.core.snapshots import write_parsed
from components.core.store import ArtifactStore, StoreError
from components.ingest.metrics import INVALID, IngestMetrics

log = logging.getLogger(__name__)

DEFAULT_BATCH_BYTES = 32 << 20  # line bytes per batch: a batch's memory, whatever the lines' length


def utc_now() -> datetime:
    """The consumer's clock, as event times are written: UTC without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


class IngestError(RuntimeError):
    """Ingest cannot go on (broker or store unreachable past the retry window); nothing is lost."""


@dataclass(slots=True)
class Batch:
    """Consecutive log lines of one source, inside one aligned window of `batch_size` offsets."""

    source: str
    window: int
    started: float
    offsets: list[int] = field(default_factory=list)
    lines: list = field(default_factory=list)
    size: int = 0  # bytes (characters) of the lines

    @property
    def first(self) -> int:
        return self.offsets[0]

    @property
    def last(self) -> int:
        return self.offsets[-1]


def _size(line) -> int:
    return len(line) if line else 0


class Batcher:
    """Per-source buffers of read lines, cut at multiples of `batch_size`, after `linger` seconds,
    and before they exceed `max_bytes` (a batch holds at least one line).

    The byte cut bounds the memory a batch takes in the consumer, the writer and the Parquet
    encoder whatever the lines' length: without it a run of very long lines exceeds the pod's
    memory, and every restart replays the same range into the same crash. Where it cuts depends
    on the log alone (from the batch's first offset), so a replay from the same offset cuts alike."""

    def __init__(self, batch_size: int, linger: float, max_bytes: int = DEFAULT_BATCH_BYTES):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.size = batch_size
        self.linger = linger
        self.max_bytes = max_bytes
        self.pending: dict[str, Batch] = {}

    def add(self, source: str, offsets: list[int], lines: list) -> list[Batch]:
        """Buffer lines at increasing offsets; return the batches that are complete."""
        ready: list[Batch] = []
        batch = self.pending.pop(source, None)
        i, n, size = 0, len(offsets), self.size
        while i < n:
            window = offsets[i] // size
            window_end = (window + 1) * size
            j = bisect.bisect_left(offsets, window_end, i, n)
            if batch is not None and batch.window != window:
                ready.append(batch)
                batch = None
            if batch is None:
                batch = Batch(source, window, time.monotonic())
            sizes = [_size(line) for line in lines[i:j]]
            if batch.size + sum(sizes) > self.max_bytes:  # cut by bytes inside the window
                k = i
                for line_size in sizes:
                    if batch.offsets and batch.size + line_size > self.max_bytes:
                        ready.append(batch)
                        batch = Batch(source, window, time.monotonic())
                    batch.offsets.append(offsets[k])
                    batch.lines.append(lines[k])
                    batch.size += line_size
                    k += 1
            else:
                batch.offsets.extend(offsets[i:j])
                batch.lines.extend(lines[i:j])
                batch.size += sum(sizes)
            if offsets[j - 1] == window_end - 1:
                ready.append(batch)
                batch = None
            i = j
        if batch is not None:
            self.pending[source] = batch
        return ready

    def due(self, now: float | None = None) -> list[Batch]:
        """Take the batches that have waited `linger` seconds for the rest of their window."""
        now = time.monotonic() if now is None else now
        sources = [s for s, b in self.pending.items() if now - b.started >= self.linger]
        return [self.pending.pop(s) for s in sources]

    def take(self, source: str) -> Batch | None:
        return self.pending.pop(source, None)

    def take_all(self) -> list[Batch]:
        batches = list(self.pending.values())
        self.pending.clear()
        return batches


def transient(exc: BaseException) -> bool:
    """Whether a failed store call is worth retrying (network, server-side) rather than a bug."""
    return isinstance(exc, (StoreError, OSError, TimeoutError)) or type(exc).__name__ in (
        "S3Error", "MaxRetryError", "ProtocolError", "ServerError")


@dataclass
class BatchCounts:
    """What one written batch held (returned across processes, so plain data)."""

    source: str
    first: int
    last: int
    lines: int
    read: Tally
    stored: Tally
    rejected: Tally
    seconds: float
    store_errors: int = 0

    def count(self, metrics: IngestMetrics) -> None:
        metrics.count_batch(self.read, self.stored, self.rejected, self.seconds)
        metrics.store_errors.inc(self.store_errors)


class SnapshotWriter:
    """Parses batches, writes their snapshots and dead letters, and removes overlapping leftovers."""

    def __init__(self, store: ArtifactStore, metrics: IngestMetrics, *, retry_seconds: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], datetime] = utc_now):
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.retry_seconds = retry_seconds
        self.sleep = sleep
        self._index: dict[str, list[tuple[int, int, str]]] | None = None
        self.errors = 0  # failed store calls so far (retried or not)

    def invalidate(self) -> None:
        """Forget the snapshot index (another consumer may have written since): relist on next write."""
        self._index = None

    def _load_index(self) -> dict[str, list[tuple[int, int, str]]]:
        index: dict[str, list[tuple[int, int, str]]] = {}
        for prefix in layout.snapshot_prefixes():
            for key in self.retry(f"listing {prefix}", lambda p=prefix: self.store.list(p)):
                if found := layout.range_of_key(key):
                    source, first, last = found
                    index.setdefault(source, []).append((first, last, key))
        return index

    def write(self, batch: Batch) -> BatchCounts:
        """Write one batch durably; return what it held (the caller counts it in the metrics).

        Raises IngestError once retries run out."""
        started, errors = time.perf_counter(), self.errors
        if len(batch.offsets) != len(batch.lines):
            raise ValueError(f"batch of {batch.source}: {len(batch.offsets)} offsets for {len(batch.lines)} lines")
        parsed = parse_columns(batch.lines)
        parsed.reject_future(batch.lines, self.clock())  # the consumer's clock bounds event times
        stored = Tally(parsed.counts())
        rejected = Tally(r.reason for _, r in parsed.rejections)
        read: Tally = Tally(stored)
        if parsed.rejections:
            read[INVALID] = len(parsed.rejections)
        first, last = batch.first, batch.last
        keys = self.retry(f"{batch.source} offsets {first}-{last}",
                          lambda: write_parsed(self.store, batch.source, batch.offsets, parsed))
        self._remove_overlaps(batch.source, first, last, set(keys))
        return BatchCounts(batch.source, first, last, len(batch.offsets), read, stored, rejected,
                           time.perf_counter() - started, self.errors - errors)

    def _remove_overlaps(self, source: str, first: int, last: int, written: set[str]) -> None:
        if self._index is None:
            self._index = self._load_index()
        ranges = self._index.setdefault(source, [])
        keep = []
        for a, b, key in ranges:
            if key in written or b < first or a > last:
                keep.append((a, b, key))
            elif a < first:
                # Holds positions before this batch, which are committed: never delete those.
                log.warning("snapshot %s overlaps batch %s-%s of %s but starts before it; kept "
                            "(one consumer group per topic and store avoids this)", key, first, last, source)
                keep.append((a, b, key))
            else:
                log.info("replacing snapshot %s (offsets %d-%d) by batch %d-%d", key, a, b, first, last)
                self.retry(f"deleting {key}", lambda k=key: self.store.delete(k))
        known = {k for _, _, k in keep}
        keep.extend((first, last, k) for k in written if k not in known)
        self._index[source] = keep

    def retry(self, what: str, call: Callable):
        delay, deadline = 0.5, time.monotonic() + self.retry_seconds
        while True:
            try:
                return call()
            except Exception as exc:
                if not transient(exc):
                    raise
                self.errors += 1
                if time.monotonic() + delay > deadline:
                    raise IngestError(
                        f"artifact store {self.store.uri} unavailable for {self.retry_seconds:.0f} s while "
                        f"writing {what}: {exc}. Nothing was committed for unwritten events; they will "
                        f"be read again on restart.") from exc
                log.warning("store write failed (%s: %s); retrying in %.1f s", what, exc, delay)
                self.sleep(delay)
                delay = min(delay * 2, 8.0)


def merge_counts(total: dict[str, int], part: Iterable[tuple[str, int]]) -> None:
    for k, n in part:
        total[k] = total.get(k, 0) + n
