"""Prometheus metrics of the ingest stage, in a registry of their own.

An operator watches ingest through these: is it reading, is it storing, what does it reject and
why, how far behind the broker is it, how long do snapshot writes take, where is it committed.
The continuous service serves them on `--metrics-port`; the bounded run (a pipeline step) can
write them to a node-exporter textfile (`.prom`) instead, since it exits before any scrape.

Counters are updated once per batch, never per event: ingest handles ~100k events/s and a
labelled counter increment costs about a microsecond.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
    write_to_textfile,
)

log = logging.getLogger(__name__)

PREFIX = "movierec_ingest_"
INVALID = "invalid"  # the `kind` label of a line that is not an event (events_read_total)


class IngestMetrics:
    """The ingest stage's metrics. Each instance owns its registry, so several can coexist."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.read = Counter(f"{PREFIX}events_read", "Log lines read, by parsed event kind ('invalid' if rejected).",
                            ["kind"], registry=r)
        self.stored = Counter(f"{PREFIX}events_stored", "Events written to snapshots in the store, by kind.",
                              ["kind"], registry=r)
        self.rejected = Counter(f"{PREFIX}events_rejected", "Lines written to the dead-letter area, by reason.",
                                ["reason"], registry=r)
        self.batches = Counter(f"{PREFIX}batches", "Batches written to the store.", registry=r)
        self.write_seconds = Histogram(f"{PREFIX}batch_write_seconds",
                                       "Time to write one batch's snapshots to the store (with retries).",
                                       buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                       registry=r)
        self.store_errors = Counter(f"{PREFIX}store_errors", "Failed store writes (each retry counts).",
                                    registry=r)
        self.lag = Gauge(f"{PREFIX}consumer_lag",
                         "Events in the log not yet committed: broker end offset minus committed offset.",
                         ["topic", "partition"], registry=r)
        self.committed = Gauge(f"{PREFIX}committed_offset",
                               "Next offset to read, as last committed (Kafka) or checkpointed (file).",
                               ["topic", "partition"], registry=r)
        self._server = None

    def count_batch(self, read: Mapping[str, int], stored: Mapping[str, int], rejected: Mapping[str, int],
                    seconds: float) -> None:
        for kind, n in read.items():
            self.read.labels(kind).inc(n)
        for kind, n in stored.items():
            self.stored.labels(kind).inc(n)
        for reason, n in rejected.items():
            self.rejected.labels(reason).inc(n)
        self.batches.inc()
        self.write_seconds.observe(seconds)

    def set_committed(self, topic: str, partition: int, offset: int) -> None:
        self.committed.labels(topic, str(partition)).set(offset)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.lag.labels(topic, str(partition)).set(max(0, lag))

    def forget_partition(self, topic: str, partition: int) -> None:
        """Stop exporting a partition this consumer no longer owns (another member reports it)."""
        for gauge in (self.lag, self.committed):
            try:
                gauge.remove(topic, str(partition))
            except KeyError:
                pass

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Serve `/metrics` on `host:port` from a background thread until `close()`."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        log.info("ingest metrics on http://%s:%d/metrics", host, port)

    def write_textfile(self, path: str) -> None:
        """Write the metrics in the text exposition format (node-exporter textfile collector)."""
        write_to_textfile(path, self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
