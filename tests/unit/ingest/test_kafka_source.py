"""The Kafka consumer's bookkeeping without a broker: which offsets it commits around rebalances."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import Future

from kafka import TopicPartition

from components.ingest.batches import BatchCounts, Batcher
from components.ingest.kafka_source import KafkaIngest, _Rebalance
from components.ingest.metrics import IngestMetrics
from components.ingest.run import IngestReport

TOPIC = "events"
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


class Consumer:
    """Records commits; stands in for KafkaConsumer's commit calls."""

    def __init__(self):
        self.commits: list[dict] = []

    def commit(self, offsets, timeout_ms=None):
        self.commits.append({tp: om.offset for tp, om in offsets.items()})

    async def commit_async(self, offsets):
        self.commit(offsets)


class Sink:
    """A writer whose writes finish when the test says so."""

    def __init__(self):
        self.futures: list[Future] = []

    def submit(self, batch):
        future = Future()
        future.batch = batch
        self.futures.append(future)
        return future

    def finish(self, future: Future) -> None:
        b = future.batch
        future.set_result(BatchCounts(b.source, b.first, b.last, len(b.offsets), Counter(), Counter(),
                                      Counter(), 0.0))

    def invalidate(self):
        pass


def member():
    metrics = IngestMetrics()
    sink = Sink()
    ing = KafkaIngest("127.0.0.1:9", TOPIC, "g", sink, Batcher(10, 60), IngestReport(), metrics,
                      stop=threading.Event(), follow=True)
    ing.consumer = Consumer()
    return ing, sink, _Rebalance(ing)


def write(ing, tp, first, last):
    (batch,) = ing.batcher.add(f"{TOPIC}-{tp.partition}", list(range(first, last + 1)),
                               [b"x"] * (last - first + 1)) or [ing.batcher.take(f"{TOPIC}-{tp.partition}")]
    ing.write(batch)


def test_a_write_in_flight_when_its_partition_is_lost_is_never_committed_after_reassignment():
    ing, sink, listener = member()
    asyncio.run(listener.on_partitions_assigned([TP0, TP1]))
    write(ing, TP0, 0, 9)
    write(ing, TP1, 0, 9)
    asyncio.run(listener.on_partitions_lost([TP0, TP1]))  # evicted: another member owns them now
    for future in sink.futures:
        sink.finish(future)  # the writer finishes anyway
    asyncio.run(listener.on_partitions_assigned([TP1]))  # later given one back
    ing.collect(keep=0)
    ing.commit()
    assert ing.consumer.commits == []
    write(ing, TP1, 10, 19)  # what is written under the new ownership is committed
    sink.finish(sink.futures[-1])
    ing.collect(keep=0)
    ing.commit()
    assert ing.consumer.commits == [{TP1: 20}]


def test_offsets_recorded_but_uncommitted_are_dropped_on_loss_and_on_reassignment():
    ing, sink, listener = member()
    asyncio.run(listener.on_partitions_assigned([TP0]))
    write(ing, TP0, 0, 9)
    sink.finish(sink.futures[0])
    ing.collect(keep=0)  # recorded; the commit has not happened yet
    assert ing.uncommitted == {TP0: 10}
    asyncio.run(listener.on_partitions_lost([TP0]))
    assert ing.uncommitted == {} and ing.written == {}
    ing.uncommitted[TP0] = 10  # even a stale record that survived ...
    asyncio.run(listener.on_partitions_assigned([TP0]))
    ing.commit()  # ... is not committed by the new ownership
    assert ing.consumer.commits == []


def test_revoked_partitions_write_and_commit_their_buffers():
    ing, sink, listener = member()
    asyncio.run(listener.on_partitions_assigned([TP0]))
    ing.batcher.add(f"{TOPIC}-0", [0, 1, 2], [b"x"] * 3)
    done = threading.Event()

    def finish_when_submitted():
        while not sink.futures:
            done.wait(0.01)
        sink.finish(sink.futures[0])

    t = threading.Thread(target=finish_when_submitted)
    t.start()
    asyncio.run(listener.on_partitions_revoked([TP0]))
    t.join()
    assert ing.consumer.commits == [{TP0: 3}] and ing.assigned == set()
