"""The Kafka side of ingest: a consumer-group member that commits only what the store holds.

- Offsets are committed by hand (`enable_auto_commit=False`), after the batch's snapshots are
  written; a failed commit is retried with the next one (a later offset supersedes it).
- Rebalance: when partitions are revoked, their buffered lines are written and committed inside
  the rebalance listener, before another member can be assigned them; on a forced loss nothing
  is committed and the next owner reads the same range again (and replaces what overlaps).
  Offsets recorded under an ownership that ended (lost, or assigned anew) are dropped, including
  those of writes still in flight: a lost partition's offsets are never committed later.
- Faults: an unreachable broker at start is retried with backoff and a log line per attempt (for
  ever when following, `connect_timeout` seconds otherwise), kafka-python's own connection log
  kept off the console; refused credentials or certificates stop at once with one line; a broker restart mid-stream is
  ridden out by the client's reconnects; poll errors are logged and retried.
- Lag per partition is the broker's end offset (ListOffsets, as `kafka-consumer-groups`
  computes it) minus the committed offset.

kafka-python 3 runs rebalance listeners on its IO thread, where blocking consumer calls are
refused; the listener is therefore an `AsyncConsumerRebalanceListener` and commits by awaiting
`commit_async`. Rebalances only happen inside `poll()`, so the main loop and the listener never
touch the buffers at the same time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from components.core.eventlog import EventLogError, KafkaAuthError, kafka_client_config, kafka_connection
from components.ingest.batches import Batch, BatchCounts, Batcher, IngestError
from components.ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

LAG_INTERVAL = 5.0
POLL_MS = 200
MAX_IN_FLIGHT = 2  # batches handed to the writer and not yet back


class _Consumer(KafkaConsumer):
    """A KafkaConsumer that does not leave its IO thread behind when bootstrapping fails."""

    def __init__(self, *topics, **configs):
        try:
            super().__init__(*topics, **configs)
        except BaseException:
            client = getattr(self, "_client", None)
            if client is not None:
                client.close()
            raise


def source_name(tp: TopicPartition) -> str:
    """The source name of a partition in store keys: `<topic>-<partition>` (Kafka's own spelling)."""
    return f"{tp.topic}-{tp.partition}"


class KafkaIngest:
    """One consumer-group member ingesting one topic; `run()` returns when done or stopped."""

    def __init__(self, bootstrap: str, topic: str, group: str, sink, batcher: Batcher,
                 report, metrics: IngestMetrics, *, stop: threading.Event, follow: bool,
                 instance_id: str | None = None, connect_timeout: float = 60.0):
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self.sink, self.batcher, self.report, self.metrics = sink, batcher, report, metrics
        self.in_flight: deque[tuple[TopicPartition, int, Future]] = deque()
        # Bumped when a partition is lost or (re)assigned: a write handed over under an older
        # ownership may finish, but its offset is never recorded, hence never committed.
        self.ownership: dict[TopicPartition, int] = {}
        self.stop, self.follow = stop, follow
        self.instance_id, self.connect_timeout = instance_id, connect_timeout
        self.consumer: KafkaConsumer | None = None
        self.assigned: set[TopicPartition] = set()
        self.joined = False
        self.ends: dict[TopicPartition, int] = {}
        self.done: set[TopicPartition] = set()
        self.written: dict[TopicPartition, int] = {}  # next offset after what the store holds
        self.uncommitted: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    # -- connection --------------------------------------------------------------------------------
    def connect(self) -> KafkaConsumer | None:
        """A subscribed consumer, retrying an unreachable broker with backoff; None if stopped."""
        started, delay, attempt = time.monotonic(), 1.0, 0
        config = kafka_client_config(self.bootstrap, f"movierec-ingest-{self.instance_id or 'member'}")
        while not self.stop.is_set():
            attempt += 1
            try:
                with kafka_connection(config, f"joining consumer group {self.group!r}"):
                    consumer = _Consumer(
                        **config, group_id=self.group, group_instance_id=self.instance_id,
                        enable_auto_commit=False, auto_offset_reset="earliest",
                        bootstrap_timeout_ms=3000, request_timeout_ms=15000, session_timeout_ms=10000,
                        heartbeat_interval_ms=1000, max_poll_records=20000,
                        # a topic created (or partitions added) after joining is assigned within 10 s,
                        # not at the next 5-minute metadata refresh: the group rejoins on the change
                        metadata_max_age_ms=10_000,
                        max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
            except KafkaAuthError:
                raise  # refused credentials or certificates: waiting does not fix them
            except EventLogError as exc:
                waited = time.monotonic() - started
                if waited + delay > self.connect_timeout:
                    raise IngestError(f"Kafka broker {self.bootstrap} unreachable after {attempt} attempts "
                                      f"over {waited:.0f} s: {exc}") from exc
                log.warning("Kafka broker %s not reachable (attempt %d); retrying in %.0f s",
                            self.bootstrap, attempt, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            log.info("connected to Kafka %s (topic %s, group %s)", self.bootstrap, self.topic, self.group)
            consumer.subscribe([self.topic], listener=_Rebalance(self))
            return consumer
        return None

    def take_end_offsets(self) -> None:
        """Bounded mode: the end offsets of every partition, as of now, are where it stops."""
        parts = self.consumer.partitions_for_topic(self.topic)
        if not parts:
            raise IngestError(f"topic {self.topic!r} does not exist on {self.bootstrap}")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self.ends = self.consumer.end_offsets(tps, timeout_ms=15000)
        log.info("bounded ingest of %s up to end offsets %s", self.topic,
                 {tp.partition: o for tp, o in self.ends.items()})

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        self.consumer = self.connect()
        if self.consumer is None:
            return
        failed = True
        try:
            if not self.follow:
                self.take_end_offsets()
            next_lag = 0.0
            while not self.stop.is_set():
                try:
                    records = self.consumer.poll(timeout_ms=POLL_MS)
                except KafkaError as exc:
                    log.warning("poll failed (%s); retrying", exc)
                    self.stop.wait(1.0)
                    continue
                ready: list[Batch] = []
                for tp, recs in records.items():
                    if tp not in self.assigned:
                        continue
                    offsets = [r.offset for r in recs]
                    lines = [r.value for r in recs]
                    end = self.ends.get(tp)
                    if end is not None and offsets and offsets[-1] >= end:
                        keep = sum(1 for o in offsets if o < end)
                        offsets, lines = offsets[:keep], lines[:keep]
                    ready.extend(self.batcher.add(source_name(tp), offsets, lines))
                ready.extend(self.batcher.due())
                if not self.follow:
                    ready.extend(self._finished_partitions())
                self.flush(ready)
                if time.monotonic() >= next_lag:
                    self.update_lag()
                    next_lag = time.monotonic() + LAG_INTERVAL
                if not self.follow and self.joined and self.done >= self.assigned:
                    break
            failed = False
        finally:
            self.close(flush=not failed)

    def _finished_partitions(self) -> list[Batch]:
        """Bounded mode: partitions whose end offset is reached give their last partial batch."""
        batches = []
        for tp in self.assigned - self.done:
            end = self.ends.get(tp, 0)
            pending = self.batcher.pending.get(source_name(tp))
            reached = pending.last + 1 if pending else self.written.get(tp, -1)
            if reached < end:  # nothing more buffered: where the consumer stands (skips control records)
                try:
                    reached = max(reached, self.consumer.position(tp, timeout_ms=1000) or -1)
                except KafkaError:
                    pass
            if reached >= end:
                self.done.add(tp)
                self.consumer.pause(tp)
                batch = self.batcher.take(source_name(tp))
                if batch:
                    batches.append(batch)
        return batches

    def flush(self, batches: list[Batch]) -> None:
        """Hand batches to the writer, take back the finished ones, commit what they cover."""
        try:
            for batch in batches:
                self.write(batch)
            self.collect(keep=MAX_IN_FLIGHT)
        finally:
            self.commit()

    def write(self, batch: Batch) -> None:
        tp = TopicPartition(self.topic, int(batch.source.rsplit("-", 1)[1]))
        self.in_flight.append((tp, self.ownership.get(tp, 0), self.sink.submit(batch)))

    def disown(self, tps) -> None:
        """Forget every offset recorded or in flight for these partitions (lost, or assigned anew)."""
        for tp in tps:
            self.ownership[tp] = self.ownership.get(tp, 0) + 1
            self.uncommitted.pop(tp, None)
            self.written.pop(tp, None)

    def collect(self, keep: int) -> None:
        """Account for finished writes, in order; wait while more than `keep` are in flight."""
        while self.in_flight:
            tp, owned, future = self.in_flight[0]
            if not future.done() and len(self.in_flight) <= keep:
                return
            try:
                counts: BatchCounts = future.result()
            except IngestError:
                raise
            except Exception as exc:  # the writer process died, or a bug in it
                raise IngestError(f"writing {tp.topic}[{tp.partition}] failed: {exc!r}") from exc
            self.in_flight.popleft()
            counts.count(self.metrics)
            self.report.add(counts)
            if owned != self.ownership.get(tp, 0):
                log.info("%s[%d] offsets %d-%d written after the partition was lost: not committed here",
                         tp.topic, tp.partition, counts.first, counts.last)
                continue
            self.written[tp] = counts.last + 1
            self.uncommitted[tp] = counts.last + 1

    def _offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        return {tp: OffsetAndMetadata(o, "", -1) for tp, o in self.uncommitted.items() if tp in self.assigned}

    def commit(self) -> None:
        offsets = self._offsets()
        if not offsets:
            return
        try:
            self.consumer.commit(offsets, timeout_ms=10000)
        except CommitFailedError as exc:
            log.warning("commit of %s refused (%s): the group rebalanced; the new owner reads them again",
                        _show(offsets), exc)
            self.uncommitted.clear()
            return
        except KafkaError as exc:
            log.warning("commit of %s failed (%s); retrying with the next commit", _show(offsets), exc)
            return
        self._committed(offsets)

    def _committed(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, om in offsets.items():
            self.committed[tp] = om.offset
            self.uncommitted.pop(tp, None)
            self.report.committed[source_name(tp)] = om.offset
            self.metrics.set_committed(tp.topic, tp.partition, om.offset)

    def update_lag(self) -> None:
        tps = sorted(self.assigned)
        if not tps:
            return
        try:
            ends = self.consumer.end_offsets(tps, timeout_ms=2000)
            for tp in tps:
                if tp not in self.committed:
                    self.committed[tp] = self.consumer.committed(tp, timeout_ms=2000) or 0
        except KafkaError as exc:
            log.debug("lag not updated: %s", exc)
            return
        for tp, end in ends.items():
            self.metrics.set_lag(tp.topic, tp.partition, end - self.committed.get(tp, 0))

    def close(self, flush: bool) -> None:
        try:
            if flush:
                self.flush(self.batcher.take_all())
                self.collect(keep=0)
                self.commit()
                deadline = time.monotonic() + 15
                while self._offsets() and time.monotonic() < deadline:
                    time.sleep(0.5)
                    self.commit()
                if self._offsets():
                    log.error("could not commit %s before exiting; the snapshots are in the store and "
                              "a restart rewrites the same range", _show(self._offsets()))
                self.update_lag()
        finally:
            self.consumer.close(autocommit=False, timeout_ms=5000)


class _Rebalance(AsyncConsumerRebalanceListener):
    """Commit on revoke (write the revoked partitions' buffers first); forget on loss."""

    def __init__(self, ingest: KafkaIngest):
        self.ingest = ingest

    async def on_partitions_revoked(self, revoked):
        ing = self.ingest
        revoked = set(revoked)
        if not revoked:
            return
        ing.joined = False  # a rebalance is under way: an empty assignment does not mean "done" yet
        log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))
        try:
            for tp in revoked:
                batch = ing.batcher.take(source_name(tp))
                if batch:
                    ing.write(batch)
            ing.collect(keep=0)  # blocks the IO loop while the writer finishes: a rebalance is on anyway
        except Exception as exc:  # the next owner reads the unwritten range again
            log.error("could not write revoked partitions' buffers (%s); they will be read again", exc)
        offsets = {tp: o for tp, o in ing._offsets().items() if tp in revoked}
        if offsets:
            try:
                await ing.consumer.commit_async(offsets)
                ing._committed(offsets)
            except Exception as exc:
                log.warning("commit on revoke failed (%s); the next owner re-reads and replaces", exc)
        self._forget(revoked)

    async def on_partitions_assigned(self, assigned):
        ing = self.ingest
        ing.disown(set(assigned) - ing.assigned)  # nothing recorded before this assignment is ours
        ing.assigned |= set(assigned)
        ing.joined = True
        ing.sink.invalidate()
        log.info("partitions assigned: %s", sorted(tp.partition for tp in ing.assigned))

    async def on_partitions_lost(self, lost):
        self.ingest.joined = False
        log.warning("partitions lost (evicted from the group): %s; buffered lines dropped, nothing committed",
                    sorted(tp.partition for tp in lost))
        for tp in lost:
            self.ingest.batcher.take(source_name(tp))
        self.ingest.disown(lost)  # writes still in flight for them finish, uncommitted
        self._forget(set(lost))

    def _forget(self, tps: set[TopicPartition]) -> None:
        ing = self.ingest
        for tp in tps:
            ing.assigned.discard(tp)
            ing.done.discard(tp)
            ing.uncommitted.pop(tp, None)
            ing.written.pop(tp, None)
            ing.committed.pop(tp, None)
            ing.metrics.forget_partition(tp.topic, tp.partition)


def _show(offsets: dict[TopicPartition, OffsetAndMetadata]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{om.offset}" for tp, om in sorted(offsets.items()))
