"""Event-log sinks: whole lines appended to files (also from several processes), Kafka settings."""

from __future__ import annotations

import multiprocessing
import os
import socket
import time

import pytest

from components.core import eventlog
from components.core.eventlog import (
    EventLogError,
    FileEventLog,
    create_topic,
    encode_line,
    line_key,
    open_event_log,
    parse_kafka_uri,
)

LINE = "2026-03-18T06:12:47,42,GET /data/m/the+matrix+1999/3.mpg"


def test_file_log_appends_lines_and_reopens_in_append_mode(tmp_path):
    path = tmp_path / "logs" / "events.log"
    with open_event_log(f"file:{path}") as log:
        log.append(LINE)
        assert log.extend([LINE + "\n", "x"]) == 2
    with open_event_log(str(path)) as log:  # a bare path is a file too
        log.append("y")
    assert path.read_text().splitlines() == [LINE, LINE, "x", "y"]


def test_file_uri_forms(tmp_path):
    for uri in (f"file:{tmp_path}/a.log", f"file://{tmp_path}/b.log", f"{tmp_path}/c.log"):
        log = open_event_log(uri)
        assert isinstance(log, FileEventLog)
        log.close()
        log.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="unknown event log"):
        open_event_log("s3://bucket/events")


def test_flush_writes_and_fsyncs(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(eventlog.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "events.log"
    log = open_event_log(f"file:{path}")
    log.append(LINE)
    assert path.read_bytes() == b""  # buffered until a batch is written
    log.flush()
    assert path.read_bytes() == (LINE + "\n").encode() and len(synced) == 1
    log.close()
    with pytest.raises(EventLogError, match="closed"):
        log.append(LINE)
        log.flush()


def test_garbage_bytes_survive_and_line_breaks_are_refused(tmp_path):
    garbage = "2026-03-18T06:12:47,4\udcff\udcfe2,GET /create_account"
    assert encode_line(garbage) == b"2026-03-18T06:12:47,4\xff\xfe2,GET /create_account"
    with pytest.raises(ValueError, match="line break"):
        encode_line("a\nb")
    with pytest.raises(ValueError, match="line break"):
        encode_line("a\rb")
    path = tmp_path / "events.log"
    with open_event_log(f"file:{path}") as log:
        log.append(garbage)
    assert path.read_bytes() == b"2026-03-18T06:12:47,4\xff\xfe2,GET /create_account\n"


def _writer(path: str, writer: int, n: int) -> None:
    with FileEventLog(path, buffer_bytes=700) as log:  # many small batches, to race the other writers
        for i in range(n):
            log.append(f"2026-03-18T06:12:47,{writer},GET /data/m/movie+{writer}+2001/{i}.mpg")


def test_several_processes_append_whole_lines(tmp_path):
    path = str(tmp_path / "events.log")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 3000)) for w in (1, 2, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    lines = open(path, encoding="utf-8").read().splitlines()
    assert len(lines) == 9000
    for w in (1, 2, 3):
        mine = [line for line in lines if line.startswith(f"2026-03-18T06:12:47,{w},")]
        assert mine == [f"2026-03-18T06:12:47,{w},GET /data/m/movie+{w}+2001/{i}.mpg" for i in range(3000)]


def test_line_key_is_the_user_id():
    assert line_key(LINE) == b"42"
    assert line_key("garbage") is None
    assert line_key("2026-03-18T06:12:47,,GET /create_account") is None


def test_kafka_uri():
    assert parse_kafka_uri("kafka://127.0.0.1:9092/movielog") == ("127.0.0.1:9092", "movielog")
    assert parse_kafka_uri("kafka://a:1,b:2/t") == ("a:1,b:2", "t")
    for bad in ("kafka://127.0.0.1:9092", "kafka:///t", "kafka://h:1/a/b", "http://h/t"):
        with pytest.raises(ValueError):
            parse_kafka_uri(bad)


class FakeFuture:
    def __init__(self, error=None):
        self.error = error

    def add_errback(self, fn):
        if self.error:
            fn(self.error)


class FakeProducer:
    instances: list = []

    def __init__(self, **config):
        self.config, self.sent, self.flushed, self.closed = config, [], 0, False
        self.fail = False
        FakeProducer.instances.append(self)

    def send(self, topic, value, key):
        self.sent.append((topic, value, key))
        return FakeFuture(RuntimeError("broker said no") if self.fail else None)

    def flush(self, timeout=None):
        self.flushed += 1

    def close(self, timeout=None):
        self.closed = True


def test_kafka_log_keys_by_user_waits_for_all_replicas_and_bounds_every_wait(monkeypatch):
    import kafka

    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    with open_event_log("kafka://127.0.0.1:9092/movielog") as log:
        producer = FakeProducer.instances[-1]
        log.append(LINE)
        log.extend(["", "x,y"])
        assert producer.flushed == 1
    config = producer.config
    assert config["acks"] == "all" and config["linger_ms"] > 0
    assert config["bootstrap_timeout_ms"] <= 10000 and config["max_block_ms"] <= 30000
    assert config["request_timeout_ms"] <= 30000
    assert producer.sent == [("movielog", LINE.encode(), b"42"), ("movielog", b"", None), ("movielog", b"x,y", None)]
    assert producer.closed


def test_kafka_delivery_failure_is_an_event_log_error(monkeypatch):
    import kafka

    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    log = open_event_log("kafka://127.0.0.1:9092/movielog")
    FakeProducer.instances[-1].fail = True
    log.append(LINE)
    with pytest.raises(EventLogError, match="not delivered"):
        log.flush()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_kafka_fails_within_the_bootstrap_timeout():
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(EventLogError, match=f"cannot reach Kafka at 127.0.0.1:{port}"):
        open_event_log(f"kafka://127.0.0.1:{port}/events", bootstrap_timeout_ms=1000)
    with pytest.raises(EventLogError, match="cannot reach Kafka"):
        create_topic(f"127.0.0.1:{port}", "events", timeout_ms=1000)
    assert time.monotonic() - started < 8
