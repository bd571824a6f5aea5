"""Ingest memory under a run of very long lines: batches cut by bytes against batches cut by count only.

A log file holds `--lines` lines of `--line-kb` KB each (over-long lines: dead letters). Each run
ingests it in a fresh process (file source, local store) and reports that process's peak resident
memory (`ru_maxrss`): once with the default byte bound per batch, once with the bound lifted (what
ingest did before: one batch of up to 20,000 lines, whatever their size).

    python -m benchmarks.bench_long_lines [--lines 150 --line-kb 1024]   # benchmarks/results/long_lines.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "long_lines.json"

_CHILD = """
import json, resource, sys, time
from components.core.store import LocalStore
from components.ingest.run import ingest
started = time.perf_counter()
report = ingest("file:" + sys.argv[1], LocalStore(sys.argv[2]), batch_bytes=int(sys.argv[3]))
print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "seconds": round(time.perf_counter() - started, 2), "batches": report.batches,
                  "read": report.read, "rejected": report.rejected}))
"""


def run(log: Path, store: Path, batch_bytes: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(log), str(store), str(batch_bytes)],
                         capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=150, help="long lines in the log")
    parser.add_argument("--line-kb", type=int, default=1024, help="size of each line in KB")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON result")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    from components.ingest.batches import DEFAULT_BATCH_BYTES

    with tempfile.TemporaryDirectory(prefix="bench-long-lines-") as tmp:
        log = Path(tmp) / "events.log"
        head = b"2026-03-18T06:12:47,1,GET /data/m/"
        with open(log, "wb") as f:
            for _ in range(args.lines):
                f.write(head + b"a" * (args.line_kb * 1024 - len(head) - 7) + b"/1.mpg\n")
        cut = run(log, Path(tmp) / "cut", DEFAULT_BATCH_BYTES)
        uncut = run(log, Path(tmp) / "uncut", 1 << 62)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    result = {
        "benchmark": "ingest peak memory, a run of long lines (file source, local store)",
        "lines": args.lines, "line_kb": args.line_kb, "log_mb": round(args.lines * args.line_kb / 1024, 1),
        "cut_by_bytes": {"batch_bytes": DEFAULT_BATCH_BYTES, **cut},
        "cut_by_count_only": uncut,
        "machine": {"cpus": os.cpu_count(), "load_average_1m": load, "python": platform.python_version()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
