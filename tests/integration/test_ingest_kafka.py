"""Ingest against a real Kafka broker and a real S3 server (SeaweedFS): killed, restarted, rebalanced.

Every check counts rows in the Parquet files themselves (no de-duplicating reader): the store must
hold each valid event exactly once and each corrupted line exactly once as a dead letter.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from components.core import layout
from components.core.events import AccountEvent, RateEvent, RecommendationEvent, WatchEvent, format_event
from components.core.store import S3Store
from components.ingest.run import ingest
from tests.servers import free_port

pytestmark = pytest.mark.integration

PARTITIONS = 3
T0 = datetime(2026, 3, 18, 22, 0, 0)


class Log:
    """Lines produced to a topic, partition i % 3, so every line's (partition, offset) is known."""

    def __init__(self, n: int, seed: int = 0, corrupt_every: int = 19):
        rng = random.Random(seed)
        self.lines: list[bytes] = []
        self.corrupted: set[int] = set()
        for i in range(n):
            t = T0 + timedelta(seconds=11 * i, microseconds=rng.choice([0, 123456]))
            user, movie = rng.randrange(1, 500), f"movie+{rng.randrange(80)}+{rng.choice(['1999', '2004'])}"
            r = rng.random()
            if r < 0.7:
                event = WatchEvent(t, user, movie, rng.randrange(150))
            elif r < 0.85:
                event = RateEvent(t, user, movie, rng.randrange(1, 6))
            elif r < 0.97:
                event = RecommendationEvent(t, user, "predictor-0@v1", 200,
                                            tuple(f"movie+{j}" for j in rng.sample(range(80), 20)), rng.randrange(5, 300))
            else:
                event = AccountEvent(t, user)
            line = format_event(event)
            if i % corrupt_every == 5:
                line = rng.choice([line[:12], line.replace("T", " ", 1), line + " trailing junk", "",
                                   "\x00\x01 binary", line.replace(",", "", 1)])
                self.corrupted.add(i)
            self.lines.append(line.encode())

    @staticmethod
    def position(i: int, topic: str) -> tuple[str, int]:
        return f"{topic}-{i % PARTITIONS}", i // PARTITIONS

    def ends(self, upto: int | None = None) -> dict[int, int]:
        n = len(self.lines) if upto is None else upto
        return {p: len(range(p, n, PARTITIONS)) for p in range(PARTITIONS)}

    def produce(self, bootstrap: str, topic: str, start: int, stop: int, pause: float = 0.0, chunks: int = 1):
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_block_ms=15000,
                                 bootstrap_timeout_ms=15000, max_in_flight_requests_per_connection=1)
        try:
            bounds = [start + (stop - start) * k // chunks for k in range(chunks + 1)]
            for a, b in itertools.pairwise(bounds):
                for i in range(a, b):
                    producer.send(topic, self.lines[i], partition=i % PARTITIONS)
                producer.flush(timeout=15)
                time.sleep(pause)
        finally:
            producer.close(timeout=5)

    def check_store(self, store, topic: str) -> None:
        """Exactly the valid lines as event rows and the corrupted ones as dead letters, each once."""
        events, dead, dead_lines = [], [], {}
        for prefix, out in ((layout.events_prefix(), events), (layout.DEADLETTER + "/", dead)):
            for key in store.list(prefix):
                table = pq.read_table(io.BytesIO(store.get_bytes(key)))
                pos = list(zip(table.column("source").to_pylist(), table.column("offset").to_pylist(), strict=True))
                out.extend(pos)
                if prefix.startswith(layout.DEADLETTER):
                    dead_lines.update(zip(pos, table.column("line").to_pylist(), strict=True))
        valid = {self.position(i, topic) for i in range(len(self.lines)) if i not in self.corrupted}
        bad = {self.position(i, topic): i for i in self.corrupted}
        assert len(events) == len(set(events)), "an event is stored twice"
        assert len(dead) == len(set(dead)), "a dead letter is stored twice"
        assert set(events) == valid
        assert set(dead) == set(bad)
        for pos, i in bad.items():
            assert dead_lines[pos] == self.lines[i].decode("utf-8", "replace")


def ingest_cmd(tmp_path: Path, name: str, bootstrap: str, topic: str, store_uri: str, *extra: str):
    """`movierec ingest --follow` as a subprocess, its output in tmp_path/<name>.log."""
    out = open(tmp_path / f"{name}.log", "ab")
    cmd = [sys.executable, "-m", "movierec.cli", "ingest", "--source", f"kafka://{bootstrap}/{topic}",
           "--store", store_uri, "--follow", "--batch-size", "150", "--linger", "0.3", *extra]
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    out.close()
    return proc


def committed(bootstrap: str, group: str) -> dict[int, int]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=10000, request_timeout_ms=10000)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
        return {tp.partition: om.offset for tp, om in offsets.items() if om.offset >= 0}
    finally:
        admin.close()


def wait_committed(bootstrap: str, group: str, ends: dict[int, int], procs=(), timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"ingest exited early with {p.returncode}"
        try:
            seen = committed(bootstrap, group)
        except Exception:
            seen = None
        if seen == ends:
            return
        time.sleep(0.3)
    raise AssertionError(f"committed offsets {seen} never reached {ends}")


def wait_log(path: Path, text: str, after: int, proc: subprocess.Popen, timeout: float = 40.0) -> None:
    """Wait until `text` appears in a log past byte `after` (e.g. a restarted process has joined its group)."""
    deadline = time.monotonic() + timeout
    while text.encode() not in path.read_bytes()[after:]:
        assert proc.poll() is None, f"ingest exited early with {proc.returncode}"
        assert time.monotonic() < deadline, f"{text!r} not in {path} after byte {after}"
        time.sleep(0.2)


def terminate(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture
def stopper():
    """Kill every ingest subprocess a test leaves behind (a failed assertion must not leak one)."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigkill_at_random_points_loses_and_duplicates_nothing(kafka, kafka_topic, s3_store, tmp_path, stopper):
    topic, log, group = kafka_topic(PARTITIONS), Log(2400, seed=1), "g-kill"
    uri = f"s3://{s3_store.bucket}"
    producer = threading.Thread(target=log.produce, args=(kafka.bootstrap, topic, 0, 2400, 0.25, 12))
    producer.start()
    rng = random.Random(7)
    for _run in range(4):
        proc = ingest_cmd(tmp_path, "ingest", kafka.bootstrap, topic, uri, "--group", group, "--instance-id", "i0")
        stopper.append(proc)
        time.sleep(rng.uniform(1.0, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    producer.join()
    logged = (tmp_path / "ingest.log").stat().st_size
    proc = ingest_cmd(tmp_path, "ingest", kafka.bootstrap, topic, uri, "--group", group, "--instance-id", "i0")
    stopper.append(proc)
    # The killed runs may already have committed everything: wait until this one is running (has
    # joined) so that SIGTERM reaches its handler, not a process still importing.
    wait_log(tmp_path / "ingest.log", "partitions assigned", logged, proc)
    wait_committed(kafka.bootstrap, group, log.ends(), [proc])
    assert terminate(proc) == 0, (tmp_path / "ingest.log").read_text()[-3000:]
    log.check_store(s3_store, topic)


def test_broker_down_at_start_and_restarted_mid_stream(kafka, kafka_topic, s3_store, tmp_path, stopper):
    topic, log, group = kafka_topic(PARTITIONS), Log(1500, seed=2), "g-restart"
    uri = f"s3://{s3_store.bucket}"
    proc = ingest_cmd(tmp_path, "ingest", kafka.bootstrap, topic, uri, "--group", group, "--instance-id", "i0")
    stopper.append(proc)
    log.produce(kafka.bootstrap, topic, 0, 700)
    wait_committed(kafka.bootstrap, group, log.ends(700), [proc])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kafka.stop()  # the next start finds no broker: it retries with backoff and says so
    try:
        proc = ingest_cmd(tmp_path, "ingest", kafka.bootstrap, topic, uri, "--group", group, "--instance-id", "i0")
        stopper.append(proc)
        deadline = time.monotonic() + 20
        while "not reachable (attempt 1" not in (tmp_path / "ingest.log").read_text():
            assert time.monotonic() < deadline and proc.poll() is None, "no retry log line"
            time.sleep(0.3)
    finally:
        kafka.start()
    log.produce(kafka.bootstrap, topic, 700, 1000)
    kafka.restart()  # under a live consumer, mid-stream
    log.produce(kafka.bootstrap, topic, 1000, 1500)
    wait_committed(kafka.bootstrap, group, log.ends(), [proc], timeout=50)
    assert terminate(proc) == 0
    log.check_store(s3_store, topic)


def test_two_consumers_split_the_partitions(kafka, kafka_topic, s3_store, tmp_path, stopper):
    topic, log, group = kafka_topic(PARTITIONS), Log(1800, seed=3), "g-two"
    uri = f"s3://{s3_store.bucket}"
    a = ingest_cmd(tmp_path, "a", kafka.bootstrap, topic, uri, "--group", group, "--instance-id", "a")
    stopper.append(a)
    log.produce(kafka.bootstrap, topic, 0, 600)
    wait_committed(kafka.bootstrap, group, log.ends(600), [a])
    # The second member joins mid-stream: the rebalance revokes a's partitions (a writes and commits
    # what it holds) and splits them.
    producer = threading.Thread(target=log.produce, args=(kafka.bootstrap, topic, 600, 1800, 0.25, 16))
    producer.start()
    b = ingest_cmd(tmp_path, "b", kafka.bootstrap, topic, uri, "--group", group, "--instance-id", "b",
                   "--no-write-process")  # one member of each kind
    stopper.append(b)
    deadline = time.monotonic() + 30
    while "partitions assigned: [" not in (tmp_path / "b.log").read_text().replace("assigned: []", ""):
        assert time.monotonic() < deadline, "the second consumer never got a partition"
        time.sleep(0.2)
    producer.join()
    wait_committed(kafka.bootstrap, group, log.ends(), [a, b])
    assert terminate(a) == 0 and terminate(b) == 0
    owned = {}
    for name in ("a", "b"):
        lines = [x for x in (tmp_path / f"{name}.log").read_text().splitlines() if "partitions assigned" in x]
        owned[name] = set(json.loads(lines[-1].rsplit(":", 1)[1]))  # "[0, 2]"
    assert owned["a"] and owned["b"] and owned["a"].isdisjoint(owned["b"])
    assert owned["a"] | owned["b"] == set(range(PARTITIONS))
    log.check_store(s3_store, topic)


def test_sigterm_flushes_commits_and_exits_0_with_metrics(kafka, kafka_topic, s3_store, tmp_path, stopper):
    topic, log, group = kafka_topic(PARTITIONS), Log(600, seed=4), "g-term"
    port = free_port()
    proc = ingest_cmd(tmp_path, "ingest", kafka.bootstrap, topic, f"s3://{s3_store.bucket}", "--group", group,
                      "--batch-size", "100000", "--linger", "600", "--metrics-port", str(port),
                      "--metrics-host", "127.0.0.1")
    stopper.append(proc)
    log.produce(kafka.bootstrap, topic, 0, 600)
    deadline = time.monotonic() + 30
    text = ""
    while 'movierec_ingest_consumer_lag{partition="2"' not in text and time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            pass
    assert f'movierec_ingest_consumer_lag{{partition="0",topic="{topic}"}} 200.0' in text  # nothing committed yet
    assert s3_store.list(layout.events_prefix()) == []  # all of it still buffered
    assert terminate(proc) == 0
    assert committed(kafka.bootstrap, group) == log.ends()
    log.check_store(s3_store, topic)


def test_bounded_run_stops_at_the_end_offsets_of_its_start(kafka, kafka_topic, s3_store):
    topic, log = kafka_topic(PARTITIONS), Log(900, seed=5)
    log.produce(kafka.bootstrap, topic, 0, 600)
    report = ingest(f"kafka://{kafka.bootstrap}/{topic}", s3_store, group="g-bounded", batch_size=250)
    assert report.read == 600 and report.committed == {f"{topic}-{p}": 200 for p in range(PARTITIONS)}
    log.produce(kafka.bootstrap, topic, 600, 900)
    assert ingest(f"kafka://{kafka.bootstrap}/{topic}", s3_store, group="g-bounded", batch_size=250).read == 300
    assert ingest(f"kafka://{kafka.bootstrap}/{topic}", s3_store, group="g-bounded").read == 0
    log.check_store(s3_store, topic)


def test_unreachable_broker_is_retried_then_reported(tmp_path, local_store):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "movierec.cli", "ingest", "--source",
                           f"kafka://127.0.0.1:{free_port()}/events", "--store", str(tmp_path / "s"),
                           "--connect-timeout", "8"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "not reachable (attempt 1" in proc.stderr and "retrying in" in proc.stderr
    assert "unreachable after" in proc.stderr
    assert time.monotonic() - started < 30


def test_store_outage_stops_without_committing_then_resumes(kafka, kafka_topic, s3, s3_env, tmp_path, stopper):
    topic, log, group = kafka_topic(PARTITIONS), Log(900, seed=6), "g-store"
    store = S3Store(s3_env)
    proc = ingest_cmd(tmp_path, "ingest", kafka.bootstrap, topic, f"s3://{s3_env}", "--group", group,
                      "--store-retry-seconds", "3")
    stopper.append(proc)
    log.produce(kafka.bootstrap, topic, 0, 450)
    wait_committed(kafka.bootstrap, group, log.ends(450), [proc])
    s3.stop()
    try:
        log.produce(kafka.bootstrap, topic, 450, 900)
        assert proc.wait(40) == 1
        out = (tmp_path / "ingest.log").read_text()
        assert "ingest failed: artifact store" in out and "unavailable" in out
        assert committed(kafka.bootstrap, group) == log.ends(450)  # nothing committed past the store
    finally:
        s3.start()
    proc = ingest_cmd(tmp_path, "ingest", kafka.bootstrap, topic, f"s3://{s3_env}", "--group", group)
    stopper.append(proc)
    wait_committed(kafka.bootstrap, group, log.ends(), [proc])
    assert terminate(proc) == 0
    log.check_store(store, topic)


def test_future_and_over_long_lines_are_dead_letters_and_cut_small_batches(kafka, kafka_topic, local_store):
    """Through a real broker and the writer process: a forged line dated 2099 and lines of 200 KB
    are dead letters with their own reasons; the long lines make batches of at most batch_bytes."""
    from kafka import KafkaProducer

    from components.core.events import KEPT_CHARS
    from components.core.snapshots import read_deadletters, read_events

    topic = kafka_topic(1)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    lines = [format_event(WatchEvent(now - timedelta(minutes=i), 7, "heat+1995", i)).encode() for i in range(20)]
    lines[5] = format_event(WatchEvent(datetime(2099, 1, 1), 7, "heat+1995", 1)).encode()
    for i in (8, 9, 10, 11):
        lines[i] = b"2026-03-18T06:12:47.149,1,GET /data/m/" + b"a" * (200 << 10) + b"/1.mpg"
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", max_request_size=1 << 20,
                             bootstrap_timeout_ms=15000, max_block_ms=15000)
    for line in lines:
        producer.send(topic, line)
    producer.flush(timeout=15)
    producer.close(timeout=5)
    report = ingest(f"kafka://{kafka.bootstrap}/{topic}", local_store, group="g-faults", batch_bytes=300 << 10)
    assert report.read == 20 and report.rejected == {"future_time": 1, "too_long": 4}
    assert report.batches >= 4  # 4 x 200 KB lines under a 300 KB bound: one batch each at least
    dead = read_deadletters(local_store).set_index("offset")
    assert dead.loc[5, "reason"] == "future_time" and "2099-01-01T00:00:00" in dead.loc[5, "detail"]
    assert all(dead.loc[i, "reason"] == "too_long" and len(dead.loc[i, "line"]) == KEPT_CHARS for i in (8, 9, 10, 11))
    assert len(read_events(local_store, "watch")) == 15
