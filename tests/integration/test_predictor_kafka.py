"""The predictor's request log into a real Kafka topic: every answer arrives as a contract line
naming the version that served it; a broker stop never fails or slows a response."""

from __future__ import annotations

import time

import httpx
import pytest

from components.core import rollout
from components.core.events import RecommendationEvent, parse_line
from components.core.store import LocalStore
from tests.integration.test_predictor import Instance
from tests.servers import free_port
from tests.synthetic_models import publish_synthetic

pytestmark = pytest.mark.integration


def read_lines(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[str]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=3000,
                             bootstrap_timeout_ms=10000, request_timeout_ms=10000)
    lines, deadline = [], time.monotonic() + timeout
    try:
        while len(lines) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000, max_records=10000).values():
                lines.extend(r.value.decode() for r in batch)
    finally:
        consumer.close()
    return lines


def test_request_log_to_kafka(kafka, kafka_topic, tmp_path):
    topic = kafka_topic(3)
    store = LocalStore(tmp_path / "store")
    publish_synthetic(store, "v1", 500, 100, 8, seed=1)
    publish_synthetic(store, "v2", 500, 100, 8, seed=2)
    rollout.set_stable(store, "v1")
    rollout.start_canary(store, "v2", 50)
    inst = Instance(store, free_port(), tmp_path, workers=1,
                    extra=("--request_log", f"kafka://{kafka.bootstrap}/{topic}"))
    try:
        served = {}
        with httpx.Client(base_url=inst.url) as client:
            for uid in range(1, 41):
                r = client.get(f"/recommend/{uid}")
                assert r.status_code == 200
                served[uid] = (r.headers["x-model-version"], tuple(r.text.split(",")))
        events = [parse_line(line) for line in read_lines(kafka.bootstrap, topic, len(served))]
        assert all(isinstance(e, RecommendationEvent) for e in events), events[:3]
        assert {e.user_id: (e.version, e.results) for e in events} == served
        assert {e.version for e in events} == {"v1", "v2"}
        kafka.stop()  # the log is down: answers go on, as fast
        try:
            with httpx.Client(base_url=inst.url, timeout=5) as client:
                t0 = time.perf_counter()
                codes = [client.get(f"/recommend/{uid}").status_code for uid in range(1, 101)]
                assert codes == [200] * 100 and time.perf_counter() - t0 < 5
        finally:
            kafka.start()
    finally:
        inst.stop()
