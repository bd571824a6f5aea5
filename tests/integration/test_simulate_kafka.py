"""The simulator writes into a real Kafka topic: every line arrives, keyed and ordered per user."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime

import pytest
from typer.testing import CliRunner

from components.core.eventlog import EventLogError, create_topic, open_event_log
from simulator.service import StreamingService
from tests.servers._process import free_port

pytestmark = pytest.mark.integration


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list:
    """Every record of the topic (all partitions, from the start) once `expected` have arrived."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=3000,
                             bootstrap_timeout_ms=10000, request_timeout_ms=10000)
    records, deadline = [], time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000, max_records=10000).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def test_simulated_history_arrives_complete_and_ordered_per_user(kafka, kafka_topic):
    topic = kafka_topic(3)
    service = StreamingService(seed=11, n_users=200, n_movies=80, corrupt_rate=0.02)
    lines = list(service.history(days=2, sessions_per_day=60, start=datetime(2026, 3, 1)))
    assert 3000 < len(lines) < 60000
    with open_event_log(f"kafka://{kafka.bootstrap}/{topic}") as log:
        assert log.extend(lines) == len(lines)

    records = read_topic(kafka.bootstrap, topic, len(lines))
    values = [r.value.decode("utf-8", "surrogateescape") for r in records]
    assert Counter(values) == Counter(lines)
    assert {r.partition for r in records} == {0, 1, 2}

    # A user's events are in one partition, in the order they were written.
    partitions, by_user = defaultdict(set), defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.key is not None:
            partitions[r.key].add(r.partition)
            by_user[r.key].append(r.value.decode("utf-8", "surrogateescape"))
    assert all(len(p) == 1 for p in partitions.values())
    written = defaultdict(list)
    for line in lines:
        parts = line.split(",", 2)
        if len(parts) == 3 and parts[1]:
            written[parts[1].encode("utf-8", "surrogateescape")].append(line)
    assert by_user == written


def test_simulate_command_creates_the_topic_and_writes_every_line(kafka):
    topic = f"sim-{uuid.uuid4().hex[:8]}"
    from movierec.cli import app

    result = CliRunner().invoke(app, ["simulate", "--to", f"kafka://{kafka.bootstrap}/{topic}", "--users", "100",
                                      "--movies", "50", "--days", "1", "--sessions-per-day", "30",
                                      "--corrupt-rate", "0.01", "--start", "2026-03-01"])
    assert result.exit_code == 0, result.output
    expected = StreamingService(seed=0, n_users=100, n_movies=50, corrupt_rate=0.01)
    lines = list(expected.history(days=1, sessions_per_day=30, start=datetime(2026, 3, 1)))
    records = read_topic(kafka.bootstrap, topic, len(lines))
    assert Counter(r.value.decode("utf-8", "surrogateescape") for r in records) == Counter(lines)
    assert {r.partition for r in records} <= {0, 1, 2}
    admin = kafka.admin()
    try:
        (desc,) = admin.describe_topics([topic])
        assert len(desc["partitions"]) == 3
    finally:
        admin.close()


def test_create_topic_is_idempotent_and_sets_retention(kafka):
    topic = f"events-{uuid.uuid4().hex[:8]}"
    assert create_topic(kafka.bootstrap, topic, partitions=3, retention_ms=3_600_000) is True
    assert create_topic(kafka.bootstrap, topic, partitions=3, retention_ms=7_200_000) is False
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = kafka.admin()
    try:
        (desc,) = admin.describe_topics([topic])
        assert len(desc["partitions"]) == 3
        result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    assert "7200000" in repr(result)


def test_unreachable_kafka_is_a_clear_error_within_seconds():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(EventLogError, match=f"cannot reach Kafka at 127.0.0.1:{port}"):
        open_event_log(f"kafka://127.0.0.1:{port}/events")
    assert time.monotonic() - started < 10


def test_simulate_command_fails_fast_without_kafka():
    from movierec.cli import app

    port = free_port()
    started = time.monotonic()
    result = CliRunner().invoke(app, ["simulate", "--to", f"kafka://127.0.0.1:{port}/events", "--days", "1"])
    assert result.exit_code != 0
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in result.output
    assert time.monotonic() - started < 15
