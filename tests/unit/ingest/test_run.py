"""Ingest without servers: batch cutting, exactly-once snapshots under replays, the file source,
store faults, metrics and the report."""

from __future__ import annotations

import io
import random
from datetime import datetime, timedelta

import pyarrow.parquet as pq
import pytest

from components.core import layout
from components.core.eventlog import parse_kafka_uri
from components.core.events import AccountEvent, RateEvent, WatchEvent, format_event
from components.core.snapshots import read_deadletters, read_events
from components.core.store import LocalStore, StoreError
from components.ingest.batches import Batcher, IngestError, SnapshotWriter
from components.ingest.metrics import IngestMetrics
from components.ingest.run import IngestReport, file_source_name, ingest

T0 = datetime(2026, 3, 18, 23, 0, 0)


def make_lines(n: int, corrupt_every: int = 17, seed: int = 0) -> tuple[list[bytes], int]:
    """n log lines over two days (crossing midnight); every `corrupt_every`-th is corrupted."""
    rng = random.Random(seed)
    lines, bad = [], 0
    for i in range(n):
        t = T0 + timedelta(seconds=7 * i)
        user = rng.randrange(1, 200)
        kind = rng.random()
        if kind < 0.7:
            event = WatchEvent(t, user, f"movie+{rng.randrange(50)}+1999", rng.randrange(120))
        elif kind < 0.95:
            event = RateEvent(t, user, f"movie+{rng.randrange(50)}", rng.randrange(1, 6))
        else:
            event = AccountEvent(t, user)
        line = format_event(event)
        if corrupt_every and i % corrupt_every == 3:
            line = rng.choice([line[: len(line) // 2], line.replace(",", ";", 1), "garbage", ""])
            bad += 1
        lines.append(line.encode())
    return lines, bad


def stored_positions(store) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Every (source, offset) row of every snapshot and dead-letter file: no de-duplication."""
    events, dead = [], []
    for prefix, out in ((layout.events_prefix(), events), (layout.DEADLETTER + "/", dead)):
        for key in store.list(prefix):
            table = pq.read_table(io.BytesIO(store.get_bytes(key)), columns=["source", "offset"])
            out.extend(zip(table.column("source").to_pylist(), table.column("offset").to_pylist(), strict=True))
    return events, dead


# -- batch cutting ---------------------------------------------------------------------------------

def test_batches_are_cut_at_offset_multiples():
    b = Batcher(batch_size=10, linger=60)
    ready = b.add("t-0", list(range(3, 25)), [b"x"] * 22)
    assert [(x.first, x.last) for x in ready] == [(3, 9), (10, 19)]
    assert b.pending["t-0"].first == 20
    ready = b.add("t-0", list(range(25, 31)), [b"y"] * 6)
    assert [(x.first, x.last) for x in ready] == [(20, 29)]
    assert [(x.first, x.last) for x in b.take_all()] == [(30, 30)]


def test_a_gap_into_the_next_window_closes_the_batch():
    b = Batcher(batch_size=10, linger=60)
    assert b.add("s", [1, 2, 3], [b""] * 3) == []
    ready = b.add("s", [12], [b""])
    assert [(x.first, x.last) for x in ready] == [(1, 3)]


def test_linger_releases_partial_batches():
    b = Batcher(batch_size=100, linger=5)
    b.add("a", [0, 1], [b"", b""])
    assert b.due(now=b.pending["a"].started + 1) == []
    assert [x.last for x in b.due(now=b.pending["a"].started + 6)] == [1]


# -- exactly once under replays ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_crashed_replays_leave_each_line_once(tmp_path, seed):
    """Runs that crash at random points (before/after writes, before commits) and restart from the
    last commit, cutting partial batches at random places, end with every line stored once."""
    rng = random.Random(seed)
    lines, bad = make_lines(700, seed=seed)
    store = LocalStore(tmp_path / "store")
    committed = 0
    for _run in range(12):
        writer = SnapshotWriter(store, IngestMetrics())
        batcher = Batcher(batch_size=64, linger=0, max_bytes=rng.choice([1 << 30, 700]))  # and byte cuts
        pos = committed
        crashed = False
        while pos < len(lines) and not crashed:
            n = rng.randrange(1, 90)
            offsets = list(range(pos, min(pos + n, len(lines))))
            pos = offsets[-1] + 1
            ready = batcher.add("t-0", offsets, lines[offsets[0]:pos])
            if rng.random() < 0.4:  # an idle flush at an arbitrary point
                ready += batcher.take_all()
            for batch in ready:
                if rng.random() < 0.05:
                    crashed = True  # killed before writing
                    break
                writer.write(batch)
                if rng.random() < 0.1:
                    crashed = True  # killed after writing, before committing
                    break
                committed = batch.last + 1
        if not crashed:
            for batch in batcher.take_all():
                writer.write(batch)
                committed = batch.last + 1
            break
    events, dead = stored_positions(store)
    assert len(events) + len(dead) == len(lines)
    assert sorted(events + dead) == [("t-0", i) for i in range(len(lines))]
    assert len(dead) == bad
    assert len(read_events(store, "watch")) + len(read_events(store, "rate")) + \
        len(read_events(store, "account")) == len(lines) - bad


def test_a_snapshot_starting_before_the_batch_is_never_deleted(tmp_path):
    store = LocalStore(tmp_path / "s")
    lines, _ = make_lines(40, corrupt_every=0)
    w = SnapshotWriter(store, IngestMetrics())
    b = Batcher(100, 0)
    b.add("x-1", list(range(0, 30)), lines[:30])
    w.write(b.take("x-1"))
    w.invalidate()
    b.add("x-1", list(range(20, 40)), lines[20:40])
    w.write(b.take("x-1"))  # overlaps 20..29 of a file that also holds 0..19: kept (nothing is lost)
    events, _ = stored_positions(store)
    assert {o for _, o in events} == set(range(40))


# -- store faults ------------------------------------------------------------------------------------

class FlakyStore(LocalStore):
    def __init__(self, root, failures: int):
        super().__init__(root)
        self.failures = failures

    def put_bytes(self, key, data):
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("S3 put failed: connection refused")
        super().put_bytes(key, data)


def test_store_errors_are_retried(tmp_path):
    store = FlakyStore(tmp_path / "s", failures=2)
    sleeps = []
    w = SnapshotWriter(store, IngestMetrics(), retry_seconds=30, sleep=sleeps.append)
    b = Batcher(10, 0)
    lines, _ = make_lines(10, corrupt_every=0)
    counts = w.write(b.add("t-0", list(range(10)), lines)[0])
    assert sum(counts.stored.values()) == 10 and sleeps == [0.5, 1.0] and counts.store_errors == 2


def test_a_store_that_stays_down_stops_ingest_without_a_checkpoint(tmp_path):
    log = tmp_path / "events.log"
    lines, _ = make_lines(50)
    log.write_bytes(b"\n".join(lines) + b"\n")
    store = FlakyStore(tmp_path / "s", failures=10**9)
    with pytest.raises(IngestError, match="unavailable"):
        ingest(f"file:{log}", store, batch_size=20, store_retry_seconds=0.6)
    assert store.list() == []


# -- the file source ---------------------------------------------------------------------------------

def test_file_source_resumes_from_its_checkpoint(tmp_path):
    log = tmp_path / "events.log"
    store = LocalStore(tmp_path / "store")
    lines, _ = make_lines(300)
    log.write_bytes(b"\n".join(lines[:120]) + b"\n")
    r1 = ingest(f"file:{log}", store, batch_size=50)
    assert r1.read == 120 and r1.committed == {"file-events.log": 120}
    with open(log, "ab") as f:
        f.write(b"\n".join(lines[120:]) + b"\n")
    r2 = ingest(f"file:{log}", store, batch_size=50)
    assert r2.read == 180
    assert ingest(f"file:{log}", store, batch_size=50).read == 0
    events, dead = stored_positions(store)
    assert sorted(events + dead) == [("file-events.log", i) for i in range(300)]
    cp = store.get_json(layout.checkpoint_key(file_source_name(log)))
    assert cp["line"] == 300 and cp["byte"] == log.stat().st_size


def test_file_source_without_checkpoint_replays_onto_the_same_keys(tmp_path):
    log = tmp_path / "events.log"
    store = LocalStore(tmp_path / "store")
    lines, bad = make_lines(250)
    log.write_bytes(b"\n".join(lines))  # no trailing newline: a bounded run reads the last line too
    ingest(f"file:{log}", store, batch_size=100)
    store.delete(layout.checkpoint_key(file_source_name(log)))  # as if killed before checkpointing
    report = ingest(f"file:{log}", store, batch_size=100)
    assert report.read == 250 and sum(report.rejected.values()) == bad
    events, dead = stored_positions(store)
    assert len(events) == 250 - bad and len(dead) == bad and len(set(events)) == len(events)
    assert len(read_deadletters(store)) == bad


def test_a_truncated_log_file_is_refused(tmp_path):
    log = tmp_path / "events.log"
    store = LocalStore(tmp_path / "store")
    lines, _ = make_lines(30)
    log.write_bytes(b"\n".join(lines) + b"\n")
    ingest(f"file:{log}", store)
    log.write_bytes(lines[0] + b"\n")
    with pytest.raises(IngestError, match="truncated or replaced"):
        ingest(f"file:{log}", store)


# -- metrics, report, sources ------------------------------------------------------------------------

def test_bounded_run_writes_a_prom_textfile(tmp_path):
    log = tmp_path / "events.log"
    lines, bad = make_lines(100)
    log.write_bytes(b"\n".join(lines) + b"\n")
    prom = tmp_path / "ingest.prom"
    report = ingest(f"file:{log}", LocalStore(tmp_path / "s"), batch_size=40, metrics_file=str(prom))
    text = prom.read_text()
    assert f'movierec_ingest_events_read_total{{kind="invalid"}} {float(bad)}' in text
    assert 'movierec_ingest_committed_offset{partition="0",topic="file-events.log"} 100.0' in text
    assert "movierec_ingest_batch_write_seconds_count 3.0" in text
    assert f"movierec_ingest_events_stored_total{{kind=\"watch\"}} {float(report.stored['watch'])}" in text
    data = report.to_dict()
    assert data["read"] == 100 and data["batches"] == 3 and sum(data["rejected"].values()) == bad


def test_report_and_source_helpers():
    assert parse_kafka_uri("kafka://127.0.0.1:9092/events") == ("127.0.0.1:9092", "events")
    assert parse_kafka_uri("kafka://a:1,b:2/t") == ("a:1,b:2", "t")
    for bad in ("kafka://host:1/", "kafka:///t", "http://h/t"):
        with pytest.raises(ValueError):
            parse_kafka_uri(bad)
    assert file_source_name("/x/my log.txt") == "file-my_log.txt"
    assert IngestReport().to_dict()["events_per_second"] == 0.0
    with pytest.raises(ValueError, match="unknown event source"):
        ingest("ftp://x", LocalStore.__new__(LocalStore))


def test_following_a_file_reads_whole_lines_until_stopped(tmp_path):
    import threading
    import time

    log = tmp_path / "events.log"
    store = LocalStore(tmp_path / "store")
    lines, bad = make_lines(200)
    log.write_bytes(b"\n".join(lines[:100]) + b"\n" + lines[100][:10])  # a writer caught mid-line
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "r", ingest(f"file:{log}", store, follow=True, stop=stop, batch_size=1000, linger=0.1)))
    thread.start()
    deadline = time.monotonic() + 10
    while not store.exists(layout.checkpoint_key("file-events.log")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get_json(layout.checkpoint_key("file-events.log"))["line"] == 100
    with open(log, "ab") as f:
        f.write(lines[100][10:] + b"\n" + b"\n".join(lines[101:]) + b"\n")
    while store.get_json(layout.checkpoint_key("file-events.log"))["line"] < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert result["r"].read == 200 and sum(result["r"].rejected.values()) == bad
    events, dead = stored_positions(store)
    assert sorted(events + dead) == [("file-events.log", i) for i in range(200)]


def test_the_writer_process_writes_in_order_and_reports_store_failures(tmp_path):
    from components.ingest.writer import ProcessWriter

    lines, bad = make_lines(300)
    store = LocalStore(tmp_path / "ok")
    sink = ProcessWriter(store, retry_seconds=5)
    try:
        batches = Batcher(100, 0).add("t-0", list(range(300)), lines)
        results = [f.result(timeout=30) for f in [sink.submit(b) for b in batches]]
    finally:
        sink.close()
    assert [(r.first, r.last) for r in results] == [(0, 99), (100, 199), (200, 299)]
    assert sum(sum(r.rejected.values()) for r in results) == bad
    events, dead = stored_positions(store)
    assert sorted(events + dead) == [("t-0", i) for i in range(300)]

    sink = ProcessWriter(FlakyStore(tmp_path / "down", failures=10**9), retry_seconds=0.6)
    try:
        future = sink.submit(Batcher(100, 0).add("t-0", list(range(100)), lines[:100])[0])
        with pytest.raises(IngestError, match="unavailable"):
            future.result(timeout=30)
    finally:
        sink.close()


@pytest.mark.parametrize("terminated", [True, False])
def test_a_line_of_megabytes_in_a_file_keeps_memory_bounded_and_is_a_dead_letter(tmp_path, monkeypatch, terminated):
    """Only MAX_PENDING bytes of it are held (it used to be read whole, however long); the lines
    after it are stored and the checkpoint lands on the file's end."""
    from components.ingest import run as run_mod

    monkeypatch.setattr(run_mod, "_CHUNK", 64 << 10)
    good, _ = make_lines(30, corrupt_every=0)
    huge = b"2026-03-18T23:00:00,1,GET /data/m/" + b"a" * (3 << 20) + b"/1.mpg"
    body = b"\n".join(good[:10] + [huge] + good[10:]) + b"\n"
    if not terminated:
        body = b"\n".join(good) + b"\n" + huge
    log = tmp_path / "events.log"
    log.write_bytes(body)
    held = []
    real_add = Batcher.add

    def add(self, source, offsets, lines):
        held.append(max((len(x) for x in lines), default=0))
        return real_add(self, source, offsets, lines)

    monkeypatch.setattr(Batcher, "add", add)
    store = LocalStore(tmp_path / "s")
    report = ingest(f"file:{log}", store, batch_size=8)
    assert max(held) <= run_mod.MAX_PENDING
    assert report.read == 31 and report.rejected == {"too_long": 1} and sum(report.stored.values()) == 30
    checkpoint = store.get_json(layout.checkpoint_key(file_source_name(log)))
    assert checkpoint == {"source": str(log), "line": 31, "byte": len(body)}
    dead = read_deadletters(store)
    assert list(dead["reason"]) == ["too_long"] and dead["offset"][0] == (10 if terminated else 30)
    assert ingest(f"file:{log}", store).read == 0  # nothing read twice


def test_an_unreadable_checkpoint_is_an_ingest_error_saying_what_to_do(tmp_path):
    log = tmp_path / "events.log"
    log.write_bytes(b"\n".join(make_lines(5)[0]) + b"\n")
    store = LocalStore(tmp_path / "s")
    store.put_bytes(layout.checkpoint_key(file_source_name(log)), b'{"line": "x"')
    with pytest.raises(IngestError, match="unreadable .*move it away"):
        ingest(f"file:{log}", store)
