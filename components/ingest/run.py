"""Ingest: the event log (a Kafka topic or a local log file) into Parquet snapshots in the store.

One code path, two modes. `follow=True` is the continuous service (`movierec ingest --follow`):
it runs until SIGTERM/SIGINT or `stop` is set, then flushes, commits and returns. `follow=False`
is the bounded pipeline step: it ingests everything up to the log's end as of its start.

What makes it safe to kill at any moment (see `components.ingest.batches`): snapshots are written
under keys that depend only on (source, first offset, last offset), batches are cut at fixed
offset multiples, overlapping leftovers of an interrupted run are replaced, and a position is
committed (Kafka consumer-group offset, or a checkpoint in the store for a file) only after the
snapshots holding everything before it are in the store.

    report = ingest("kafka://127.0.0.1:9092/events", open_store("s3://movierec/prod"), follow=True)
    report = ingest("file:events.log", open_store())
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from components.core import layout
from components.core.eventlog import file_path, parse_kafka_uri
from components.core.events import MAX_LINE_CHARS
from components.core.store import ArtifactStore
from components.ingest.batches import (
    DEFAULT_BATCH_BYTES,
    Batch,
    BatchCounts,
    Batcher,
    IngestError,
    SnapshotWriter,
    merge_counts,
)
from components.ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 200_000  # lines: 37M lines make ~800 snapshot files, not ~7,500 (each read costs ~1 ms)
DEFAULT_GROUP = "movierec-ingest"
DEFAULT_CONNECT_TIMEOUT = 5.0  # a bounded run gives an unreachable broker this long, then says so
_CHUNK = 4 << 20
# The most bytes of one unterminated line held in memory: enough for the parser to see that it is
# longer than the contract allows (MAX_LINE_CHARS characters of up to 4 bytes), never more.
MAX_PENDING = 4 * MAX_LINE_CHARS + 4

__all__ = ["DEFAULT_BATCH_BYTES", "DEFAULT_BATCH_SIZE", "DEFAULT_GROUP", "IngestError", "IngestReport", "ingest",
           "file_source_name"]


@dataclass
class IngestReport:
    """What one ingest run did: lines read, events stored per kind, rejections per reason."""

    read: int = 0
    stored: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0
    committed: dict[str, int] = field(default_factory=dict)  # source -> next position to read

    def add(self, counts: BatchCounts) -> None:
        self.read += counts.lines
        merge_counts(self.stored, counts.stored.items())
        merge_counts(self.rejected, counts.rejected.items())
        self.batches += 1

    def to_dict(self) -> dict:
        data = asdict(self)
        data["events_per_second"] = round(self.read / self.seconds, 1) if self.seconds > 0 else 0.0
        return data


def file_source_name(path: str | os.PathLike) -> str:
    """The source name of a log file in store keys: `file-<file name>` with unsafe characters replaced."""
    return layout.check_source("file-" + re.sub(r"[^A-Za-z0-9._=-]", "_", Path(path).name))


def ingest(source: str, store: ArtifactStore, *, group: str = DEFAULT_GROUP, follow: bool = False,
           batch_size: int = DEFAULT_BATCH_SIZE, batch_bytes: int = DEFAULT_BATCH_BYTES, stop: threading.Event | None = None,
           metrics_port: int | None = None, metrics_host: str = "0.0.0.0", metrics_file: str | None = None,
           linger: float = 5.0, instance_id: str | None = None, connect_timeout: float | None = None,
           store_retry_seconds: float = 30.0, write_process: bool = True,
           metrics: IngestMetrics | None = None) -> IngestReport:
    """Ingest `source` (`file:PATH` or `kafka://HOST:PORT/TOPIC`) into `store`; see the module doc.

    `batch_size` lines per snapshot batch (cut at offset multiples), `batch_bytes` the most line
    bytes a batch holds (a longer run of lines is cut into several batches), `linger` seconds before a
    partial batch is written anyway, `instance_id` a static consumer-group membership id (a
    restarted process takes its partitions back without waiting for a session timeout),
    `connect_timeout` how long to retry an unreachable broker (default: forever when following,
    DEFAULT_CONNECT_TIMEOUT otherwise), `store_retry_seconds` how long to retry a failing store before giving up,
    `write_process` whether a Kafka run parses and writes in a second process (see
    `components.ingest.writer`) so that consuming and writing overlap.
    Raises `IngestError` when the broker or the store stays unreachable; nothing is committed
    past what is in the store.
    """
    metrics = metrics or IngestMetrics()
    stop = stop or threading.Event()
    report = IngestReport()
    writer = SnapshotWriter(store, metrics, retry_seconds=store_retry_seconds)
    batcher = Batcher(batch_size, linger, batch_bytes)
    if metrics_port is not None:
        metrics.serve(metrics_port, metrics_host)
    started = time.perf_counter()
    try:
        with _stop_on_signals(stop, enabled=follow):
            if source.startswith("kafka://"):
                from components.ingest.kafka_source import KafkaIngest

                bootstrap, topic = parse_kafka_uri(source)
                if connect_timeout is None:
                    connect_timeout = float("inf") if follow else DEFAULT_CONNECT_TIMEOUT
                from components.ingest.writer import InlineWriter, ProcessWriter

                sink = ProcessWriter(store, store_retry_seconds) if write_process else InlineWriter(writer)
                try:
                    KafkaIngest(bootstrap, topic, group, sink, batcher, report, metrics, stop=stop,
                                follow=follow, instance_id=instance_id, connect_timeout=connect_timeout).run()
                finally:
                    sink.close(cancel=True)
            elif source.startswith("file:"):
                _ingest_file(Path(file_path(source)), writer, batcher, report, metrics, stop=stop, follow=follow)
            else:
                raise ValueError(f"unknown event source {source!r}: use file:PATH or kafka://HOST:PORT/TOPIC")
    finally:
        report.seconds = time.perf_counter() - started
        if metrics_file:
            metrics.write_textfile(metrics_file)
        metrics.close()
    log.info("ingest done: %d lines read, stored %s, rejected %s, %d batches in %.1f s",
             report.read, report.stored, report.rejected, report.batches, report.seconds)
    return report


@contextmanager
def _stop_on_signals(stop: threading.Event, enabled: bool):
    """Turn SIGTERM/SIGINT into `stop` (flush, commit, return) while following in the main thread."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        log.info("received %s: flushing, committing and stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _ingest_file(path: Path, writer: SnapshotWriter, batcher: Batcher, report: IngestReport,
                 metrics: IngestMetrics, *, stop: threading.Event, follow: bool) -> None:
    """A local append-only log file: positions are line numbers, checkpointed in the store.

    Following, only newline-terminated lines are read (a writer may be mid-line); a bounded run
    also takes an unterminated last line, since it reads a finished file. Of a line longer than
    MAX_PENDING bytes only the head is kept (it is a `too_long` dead letter): memory stays bounded
    whatever the file holds.
    """
    source = file_source_name(path)
    key = layout.checkpoint_key(source)
    store = writer.store
    try:
        checkpoint = store.get_json(key) if store.exists(key) else {"line": 0, "byte": 0}
        line_no, position = int(checkpoint["line"]), int(checkpoint["byte"])
    except (ValueError, TypeError, KeyError) as exc:
        raise IngestError(f"the checkpoint {key} of {path} is unreadable ({exc!r}): fix it, or move it away "
                          f"to ingest the file from its start (snapshots of the same lines are replaced)") from None
    if not path.exists():
        raise IngestError(f"event log file {path} does not exist")
    size = path.stat().st_size
    if size < position:
        raise IngestError(f"event log file {path} is shorter ({size} bytes) than its checkpoint "
                          f"({position} bytes): it was truncated or replaced; move the checkpoint {key} away")
    end = None if follow else size
    log.info("ingesting %s from line %d (byte %d)%s", path, line_no, position,
             " and following" if follow else f" to byte {end}")
    committed = position
    dropped: dict[int, int] = {}  # line number -> bytes of an over-long line not kept in memory

    def write(batches: list[Batch]) -> None:
        nonlocal committed
        for batch in batches:
            counts = writer.write(batch)
            counts.count(metrics)
            committed += sum(len(line) for line in batch.lines) + len(batch.lines)
            if dropped:
                committed += sum(dropped.pop(o, 0) for o in batch.offsets)
            if committed > (end if end is not None else float("inf")):
                committed = end  # the unterminated last line of a bounded run has no newline
            checkpoint = {"source": str(path), "line": batch.last + 1, "byte": committed}
            writer.retry(f"checkpoint {key}", lambda c=checkpoint: store.put_json(key, c))
            report.add(counts)
            report.committed[source] = batch.last + 1
            metrics.set_committed(source, 0, batch.last + 1)

    with open(path, "rb") as f:
        f.seek(position)
        tail, over = b"", 0  # the unterminated line so far; bytes of it beyond MAX_PENDING skipped
        while True:
            want = _CHUNK if end is None else min(_CHUNK, end - f.tell())
            chunk = f.read(want) if want > 0 else b""
            if chunk:
                if over:  # inside an over-long line: skip to its end, keeping only its head
                    nl = chunk.find(b"\n")
                    over += len(chunk) if nl < 0 else nl
                    if nl < 0:
                        continue
                    chunk = chunk[nl:]
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                if over:
                    dropped[line_no], over = over, 0
                write(batcher.add(source, list(range(line_no, line_no + len(lines))), lines))
                line_no += len(lines)
                if len(tail) > MAX_PENDING:  # a line without end in sight: it is too long anyway
                    over, tail = len(tail) - MAX_PENDING, tail[:MAX_PENDING]
                continue
            if end is not None:
                if tail:
                    if over:
                        dropped[line_no] = over
                    write(batcher.add(source, [line_no], [tail]))
                    line_no += 1
                write(batcher.take_all())
                return
            write(batcher.due())
            if stop.wait(0.2):
                write(batcher.take_all())
                return
