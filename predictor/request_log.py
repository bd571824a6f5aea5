"""The request log: every `/recommend` answer written to the event log, off the request path.

Online evaluation joins these lines with later watches, per model version, so each line is the
contract's recommendation line with `server` = `<host:port>@<version>`. The request handler only
appends a tuple to a bounded queue (no formatting, no I/O); a background thread formats lines
with `components.core.events.format_event`, writes them in batches through
`components.core.eventlog.open_event_log(uri)` (a local file or a Kafka topic) and flushes at least
every `flush_seconds`. A slow or dead event log never blocks or fails a response: when the queue
is full the line is dropped and counted (`movierec_predictor_request_log_dropped_total`).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from datetime import UTC, datetime

from components.core.events import RecommendationEvent, format_event
from predictor import metrics

log = logging.getLogger(__name__)


class RequestLog:
    """A batched background writer of recommendation lines to one event log."""

    def __init__(self, uri: str, server: str, *, max_queue: int = 100_000, batch: int = 1000,
                 flush_seconds: float = 0.5):
        self.uri, self.server = uri, server
        self.batch, self.flush_seconds = batch, flush_seconds
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def record(self, user_id: int, version: str, status: int, results: list[str] | tuple[str, ...],
               response_ms: float, error: str = "") -> None:
        """Queue one request for logging; never blocks."""
        try:
            self._queue.put_nowait((datetime.now(UTC).replace(tzinfo=None), user_id, version,
                                    status, tuple(results), math.ceil(response_ms), error))  # never under-reported
        except queue.Full:
            metrics.REQUEST_LOG_DROPPED.inc()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, flush and close the event log."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        sink = None
        while True:
            items = self._drain()
            if items:
                try:
                    if sink is None:
                        from components.core.eventlog import open_event_log

                        sink = open_event_log(self.uri)
                    for item in items:
                        sink.append(self._line(item))
                    sink.flush()
                except Exception as exc:  # the log is down: drop this batch, keep serving
                    metrics.REQUEST_LOG_DROPPED.inc(len(items))
                    log.warning("request log %s: dropped %d lines: %s", self.uri, len(items), exc)
                    sink = _close_quietly(sink)
            elif self._stop.is_set():
                break
        _close_quietly(sink)

    def _drain(self) -> list[tuple]:
        """Up to `batch` queued items, waiting at most `flush_seconds` for the first one."""
        items = []
        deadline = time.monotonic() + self.flush_seconds
        while len(items) < self.batch:
            timeout = deadline - time.monotonic()
            try:
                items.append(self._queue.get(timeout=max(timeout, 0.0)) if timeout > 0
                             else self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _line(self, item: tuple) -> str:
        when, user_id, version, status, results, ms, error = item
        event = RecommendationEvent(time=when, user_id=user_id, server=f"{self.server}@{version}",
                                    status=status, results=results if status == 200 else (),
                                    response_time_ms=ms, error=error)
        return format_event(event)


def _close_quietly(sink) -> None:
    if sink is not None:
        try:
            sink.close()
        except Exception:
            pass
    return None
