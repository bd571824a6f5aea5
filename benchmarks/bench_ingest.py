"""Ingest benchmark: events per second from Kafka into the store, against per-user JSON files.

Both sides read the same topic on a real Kafka broker (started here with `tests.servers`):
- ours: `components.ingest.run.ingest` in bounded mode into a local store (Parquet snapshots,
  consumer-group commits): with its writer process (default), with the writer inline, and as two
  consumer processes in one group (how the service scales: partitions spread over members);
- baseline (the reference project's approach): a consumer that parses each line and appends it as
  a JSON record to the file of its user (open, append, close per event).

To say what bounds ours, the same run also measures each stage alone (the Kafka client fetching
and decoding records; parsing, line by line with `parse_line` and in bulk with `parse_columns`;
building the Arrow tables; building and writing the snapshots) and profiles one ingest run with
cProfile, grouping time by where it is spent. Ours runs three times per mode (median reported).

    python -m benchmarks.bench_ingest [--events 200000]   # writes benchmarks/results/ingest.json

The parse comparison alone (per-line path before, vectorised path after, CPU seconds, same output
checked), on an event log such as `movierec simulate` writes, without Kafka:

    python -m benchmarks.bench_ingest --log events.log   # writes benchmarks/results/ingest_parse.json
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
PARSE_RESULTS = RESULTS.with_name("ingest_parse.json")
PARTITIONS = 4
RUNS = 3  # runs of ours per mode; the median is reported


def make_lines(n: int, seed: int = 0, corrupt_share: float = 0.01) -> list[bytes]:
    """Simulator-like traffic: mostly watch minutes, some ratings and recommendation requests."""
    from components.core.events import AccountEvent, RateEvent, RecommendationEvent, WatchEvent, format_event

    rng = random.Random(seed)
    t0 = datetime(2026, 3, 18, 6, 0, 0)
    movies = [f"movie+number+{i}+{1950 + i % 70}" for i in range(2000)]
    lines = []
    for i in range(n):
        t, user = t0 + timedelta(milliseconds=250 * i), rng.randrange(1, 20000)
        r = rng.random()
        if r < 0.80:
            e = WatchEvent(t, user, rng.choice(movies), rng.randrange(120))
        elif r < 0.90:
            e = RateEvent(t, user, rng.choice(movies), rng.randrange(1, 6))
        elif r < 0.99:
            e = RecommendationEvent(t, user, "predictor-0@v3", 200, tuple(rng.sample(movies, 20)), rng.randrange(5, 400))
        else:
            e = AccountEvent(t, user)
        line = format_event(e)
        if rng.random() < corrupt_share:
            line = line[: rng.randrange(len(line))]
        lines.append(line.encode())
    return lines


def produce(bootstrap: str, topic: str, lines: list[bytes]) -> float:
    from kafka import KafkaProducer

    started = time.perf_counter()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50, batch_size=1 << 20,
                             max_block_ms=30000, bootstrap_timeout_ms=30000)
    for i, line in enumerate(lines):
        producer.send(topic, line, partition=i % PARTITIONS)
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def run_ours(bootstrap: str, topic: str, group: str, workdir: Path, write_process: bool = True) -> dict:
    from components.core.store import LocalStore
    from components.ingest.run import ingest

    report = ingest(f"kafka://{bootstrap}/{topic}", LocalStore(workdir / group), group=group,
                    write_process=write_process)
    return {"events": report.read, "seconds": round(report.seconds, 3),
            "events_per_second": round(report.read / report.seconds), "batches": report.batches}


def run_ours_two_consumers(bootstrap: str, topic: str, group: str, workdir: Path) -> dict:
    """Two `movierec ingest` processes in one group; timed from the first start to the last exit."""
    cmd = [sys.executable, "-m", "movierec.cli", "ingest", "--source", f"kafka://{bootstrap}/{topic}",
           "--store", str(workdir / group), "--group", group]
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    reports = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    seconds = time.perf_counter() - started
    busy = max(r["seconds"] for r in reports)
    events = sum(r["read"] for r in reports)
    return {"events": events, "seconds_wall_with_process_start": round(seconds, 3),
            "seconds_in_ingest": round(busy, 3), "events_per_second": round(events / busy),
            "events_per_member": [r["read"] for r in reports]}


def run_baseline(bootstrap: str, topic: str, workdir: Path, n: int) -> dict:
    """The reference approach: one JSON file per user, each event appended as it is read."""
    from kafka import KafkaConsumer

    from components.core.events import Rejection, parse_line

    out = workdir / "baseline-users"
    out.mkdir()
    started = time.perf_counter()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="bench-baseline",
                             enable_auto_commit=False, auto_offset_reset="earliest", bootstrap_timeout_ms=10000)
    read = stored = 0
    while read < n:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                read += 1
                event = parse_line(record.value)
                if isinstance(event, Rejection):
                    continue
                row = {k: getattr(event, k) for k in event.__slots__}
                row["time"] = row["time"].isoformat()
                row["kind"] = event.kind
                with open(out / f"{event.user_id}.json", "a") as f:
                    f.write(json.dumps(row) + "\n")
                stored += 1
    consumer.commit()
    consumer.close()
    seconds = time.perf_counter() - started
    return {"events": read, "stored": stored, "seconds": round(seconds, 3),
            "events_per_second": round(read / seconds), "files": sum(1 for _ in out.iterdir())}


def stage_rates(bootstrap: str, topic: str, lines: list[bytes], workdir: Path) -> dict:
    """Each stage alone, events/s: the Kafka client, parsing (one by one, bulk), Arrow tables, snapshots."""
    from kafka import KafkaConsumer, TopicPartition

    from components.core.event_columns import parse_columns
    from components.core.events import parse_line
    from components.core.snapshots import parsed_to_tables, write_parsed
    from components.core.store import LocalStore

    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=20000,
                             max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20, bootstrap_timeout_ms=10000)
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    started, got = time.perf_counter(), 0
    while got < len(lines):
        got += sum(len(r) for r in consumer.poll(timeout_ms=1000).values())
    fetch = time.perf_counter() - started
    consumer.close()

    n, step = len(lines), 20_000  # the ingest batch size
    started = time.perf_counter()
    for line in lines:
        parse_line(line)
    parse = time.perf_counter() - started
    per_line = parse_paths(lines, step)["per_line"]
    started = time.perf_counter()
    parsed = [parse_columns(lines[a:a + step]) for a in range(0, n, step)]
    bulk = time.perf_counter() - started
    started = time.perf_counter()
    for a, p in zip(range(0, n, step), parsed, strict=True):
        parsed_to_tables(p, list(range(a, min(a + step, n))), "bench-0")
    build = time.perf_counter() - started
    store = LocalStore(workdir / "stage-write")
    started = time.perf_counter()
    for a, p in zip(range(0, n, step), parsed, strict=True):
        write_parsed(store, "bench-0", list(range(a, min(a + step, n))), p)
    write = time.perf_counter() - started
    return {"kafka_client_fetch_decode": round(n / fetch), "parse_line_one_by_one": round(n / parse),
            "parse_columns_per_line": round(n / per_line["parse_cpu_seconds"]),
            "parse_columns_bulk": round(n / bulk), "arrow_tables_from_columns": round(n / build),
            "snapshot_build_and_write": round(n / write)}


def parse_paths(lines: list, step: int = 20_000) -> dict:
    """The writer's CPU seconds for parsing `lines` in ingest batches of `step` and building their
    snapshot tables, on the per-line path (before) and the vectorised path (after), one after the
    other in this process; and whether both give the same rows and rejections."""
    from components.core.event_columns import parse_columns
    from components.core.snapshots import parsed_to_tables

    out, kept = {}, {}
    for name, vectorised in (("per_line", False), ("vectorised", True)):
        parse_columns(lines[:step], vectorised=vectorised)            # imports and first-call costs out
        started = time.process_time()
        parsed = [parse_columns(lines[a:a + step], vectorised=vectorised) for a in range(0, len(lines), step)]
        parse = time.process_time() - started
        started = time.process_time()
        tables = [parsed_to_tables(p, list(range(a, a + step)), "bench-0")
                  for a, p in zip(range(0, len(lines), step), parsed, strict=True)]
        build = time.process_time() - started
        kept[name] = (tables, [p.rejections for p in parsed])
        out[name] = {"parse_cpu_seconds": round(parse, 3), "tables_cpu_seconds": round(build, 3),
                     "lines_per_cpu_second": round(len(lines) / (parse + build))}
    same_tables = all(a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)
                      for a, b in zip(kept["per_line"][0], kept["vectorised"][0], strict=True))
    out["same_output"] = same_tables and kept["per_line"][1] == kept["vectorised"][1]
    out["speedup_parse_and_tables"] = round(out["vectorised"]["lines_per_cpu_second"]
                                            / out["per_line"]["lines_per_cpu_second"], 2)
    return out


def parse_only(path: Path, limit: int | None, output: Path) -> dict:
    """`--log`: the parse comparison alone on an event log file (no Kafka), lines as the file source reads them."""
    lines = path.read_bytes().split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    lines = lines[:limit] if limit else lines
    result = {"benchmark": "ingest parse: per-line path vs vectorised path (CPU seconds, one process, in turn)",
              "log": path.name, "lines": len(lines), **parse_paths(lines),
              "machine": {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
                          "python": platform.python_version()}}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


def median_run(runs: list[dict]) -> dict:
    """The run with the median rate (a 2-core machine shared with other work is noisy), and all rates."""
    runs = sorted(runs, key=lambda r: r["events_per_second"])
    return {**runs[len(runs) // 2], "runs_events_per_second": [r["events_per_second"] for r in runs]}


def bound(stages: dict) -> dict:
    """What limits ours: the consumer process decodes records (kafka-python), the writer process
    parses and writes; with the writer process they overlap, so the slower side sets the rate."""
    consumer = stages["kafka_client_fetch_decode"]
    writer = round(1 / (1 / stages["parse_columns_bulk"] + 1 / stages["snapshot_build_and_write"]))
    return {"consumer_side_events_per_second": consumer, "writer_side_events_per_second": writer,
            "bound_by": "kafka client (fetch + decode)" if consumer < writer else "parsing + snapshot writing"}


def profile_ours(bootstrap: str, topic: str, workdir: Path) -> dict:
    """Share of one ingest run's CPU time by where it is spent (cProfile, by own time; inline
    writer, since cProfile does not follow the writer process)."""
    profiler = cProfile.Profile()
    profiler.enable()
    run_ours(bootstrap, topic, "bench-profiled", workdir, write_process=False)
    profiler.disable()
    buckets = {"kafka_client": 0.0, "parsing": 0.0, "snapshots_arrow_parquet": 0.0, "ingest_loop": 0.0,
               "waiting": 0.0, "other": 0.0}
    for (path, _line, func), (_cc, _nc, tottime, _ct, _callers) in pstats.Stats(profiler).stats.items():
        if "/kafka/" in path:
            buckets["kafka_client"] += tottime
        elif path.endswith(("components/core/events.py", "components/core/event_columns.py")) or func in ("fromisoformat",) or "re.Pattern" in func:
            buckets["parsing"] += tottime
        elif "pyarrow" in path or path.endswith(("snapshots.py", "store.py")) or "pyarrow" in func:
            buckets["snapshots_arrow_parquet"] += tottime
        elif "components/ingest" in path:
            buckets["ingest_loop"] += tottime
        elif "acquire" in func or "select" in func or "sleep" in func:
            buckets["waiting"] += tottime
        else:
            buckets["other"] += tottime
    total = sum(buckets.values())
    return {"share_of_profiled_time": {k: round(v / total, 3) for k, v in buckets.items()},
            "top_functions_by_own_time": [
                f"{func} ({Path(path).name}:{line}) {tottime:.2f}s"
                for (path, line, func), (_c, _n, tottime, _t, _x) in sorted(
                    pstats.Stats(profiler).stats.items(), key=lambda kv: -kv[1][2])[:12]]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=int(os.environ.get("MOVIEREC_BENCH_INGEST_EVENTS", 200_000)),
                        help="events to produce and ingest")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON result")
    parser.add_argument("--log", type=Path, help="only compare the parse paths on this event log file (no Kafka); "
                                                 "writes benchmarks/results/ingest_parse.json unless --output")
    parser.add_argument("--lines", type=int, help="with --log: its first LINES lines only")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.log is not None:
        return parse_only(args.log, args.lines, args.output if args.output != RESULTS else PARSE_RESULTS)
    import logging

    logging.getLogger("kafka").setLevel(logging.ERROR)
    from tests.servers import KafkaBroker

    lines = make_lines(args.events)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, KafkaBroker() as broker:
        workdir = Path(tmp)
        topic = broker.create_topic("bench-events", partitions=PARTITIONS)
        produce_seconds = produce(broker.bootstrap, topic, lines)
        stages = stage_rates(broker.bootstrap, topic, lines, workdir)
        baseline = run_baseline(broker.bootstrap, topic, workdir, len(lines))
        ours = median_run([run_ours(broker.bootstrap, topic, f"bench-ours-run{i}", workdir) for i in range(RUNS)])
        inline = median_run([run_ours(broker.bootstrap, topic, f"bench-ours-inline-run{i}", workdir, write_process=False)
                             for i in range(RUNS)])
        two = run_ours_two_consumers(broker.bootstrap, topic, "bench-ours-two-consumers", workdir)
        profile = profile_ours(broker.bootstrap, topic, workdir)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    result = {
        "benchmark": "ingest: Kafka topic -> store",
        "events": len(lines), "partitions": PARTITIONS, "produce_seconds": round(produce_seconds, 2),
        "ours": ours, "ours_inline_writer": inline, "ours_two_consumers": two, "baseline_per_user_json": baseline,
        "ratio_ours_vs_baseline": round(ours["events_per_second"] / baseline["events_per_second"], 2),
        "ratio_two_consumers_vs_baseline": round(two["events_per_second"] / baseline["events_per_second"], 2),
        "stage_rates_events_per_second": stages, "bound": bound(stages), "profile": profile,
        "machine": {"cpus": os.cpu_count(), "load_average_1m": load, "python": platform.python_version()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("ours", "ours_inline_writer", "ours_two_consumers", "baseline_per_user_json",
                                             "ratio_ours_vs_baseline", "stage_rates_events_per_second", "bound")},
                     indent=2))
    return result


if __name__ == "__main__":
    main()
