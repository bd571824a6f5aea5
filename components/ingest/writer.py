"""Where batches are parsed and written: inline, or in a writer process beside the Kafka consumer.

kafka-python decodes every record in Python on the consuming thread, and parsing plus Parquet
writing cost about as much again; on one core they add up. The writer process takes parsing and
writing off the consumer so that both run at once (two cores, or one consumer and one writer per
core). Batches go to it in order and come back in order; offsets are committed only for batches
whose result came back, so nothing changes in what is committed when.

The process is forked before the Kafka client starts its IO thread (a warm-up job at creation),
ignores SIGINT/SIGTERM (the consumer decides when to stop and drains it), and exits on its own if
the consumer process dies (it watches its parent), so a SIGKILL leaves no orphan behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

from components.core.store import ArtifactStore
from components.ingest.batches import Batch, BatchCounts, IngestError, SnapshotWriter
from components.ingest.metrics import IngestMetrics


class InlineWriter:
    """Writes each batch on the caller's thread; `submit` returns a finished future."""

    def __init__(self, writer: SnapshotWriter):
        self.writer = writer

    def submit(self, batch: Batch) -> Future:
        future: Future = Future()
        try:
            future.set_result(self.writer.write(batch))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def invalidate(self) -> None:
        self.writer.invalidate()

    def close(self, cancel: bool = False) -> None:
        pass


_WORKER: SnapshotWriter | None = None
_GENERATION = 0


def _init_worker(store: ArtifactStore, retry_seconds: float) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _WORKER = SnapshotWriter(store, IngestMetrics(), retry_seconds=retry_seconds)
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=watch_parent, daemon=True, name="watch-parent").start()


def _noop() -> int:
    return os.getpid()


def _write(source: str, window: int, offsets: list[int], lines: list, generation: int) -> BatchCounts:
    global _GENERATION
    if generation != _GENERATION:
        _WORKER.invalidate()
        _GENERATION = generation
    return _WORKER.write(Batch(source, window, 0.0, offsets, lines))


class ProcessWriter:
    """Writes batches in one forked worker process, in submission order."""

    def __init__(self, store: ArtifactStore, retry_seconds: float):
        self.generation = 0
        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                                        initializer=_init_worker, initargs=(store, retry_seconds))
        self.pool.submit(_noop).result(timeout=60)  # fork now, before any client thread exists

    def submit(self, batch: Batch) -> Future:
        try:
            return self.pool.submit(_write, batch.source, batch.window, batch.offsets, batch.lines, self.generation)
        except RuntimeError as exc:  # BrokenProcessPool: the writer died
            raise IngestError(f"the snapshot writer process died: {exc}") from exc

    def invalidate(self) -> None:
        self.generation += 1

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)
