"""Preprocess benchmark: reading the snapshots and building the dataset, time and peak memory.

Each measurement runs in a fresh interpreter (so its peak resident memory is its own) and reports
wall seconds, CPU seconds (user + system: what the step costs even when other work shares the
cores) and peak RSS, for: reading the rate and watch snapshots, and the whole preprocess step
(read, build the dataset, save it as the pipeline does between steps).

By default the store is a small simulated world made here (simulator, then ingest); `--store`
measures an existing one, e.g. the course-scale world of issue 15:

    movierec simulate --to file:events.log --seed 3 --users 200000 --movies 10000 --days 14 \\
        --sessions-per-day 8000 --corrupt-rate 0.001
    movierec ingest --source file:events.log --store store
    python -m benchmarks.bench_preprocess --store store      # writes benchmarks/results/preprocess.json

`--code DIR` measures the `components` package of another checkout of the project (e.g. the
revision before a change) on the same store, for a before/after figure.
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

RESULTS = Path(__file__).resolve().parent / "results" / "preprocess.json"
SMALL_WORLD = ["--seed", "3", "--users", "5000", "--movies", "1000", "--days", "7", "--sessions-per-day", "800",
               "--corrupt-rate", "0.001"]

MEASURE = r"""
import json, resource, sys, tempfile, time
from components.core.store import open_store
what, store = sys.argv[1], open_store(sys.argv[2])
cpu, wall = time.process_time(), time.perf_counter()
if what == "read":
    from components.core.snapshots import read_events
    rows = sum(len(read_events(store, kind)) for kind in ("rate", "watch"))
    out = {"rows": rows, "code": sys.modules["components"].__path__[0]}
else:
    from components.training.preprocess import prepare
    ds = prepare(store)
    ds.save(tempfile.mkdtemp(prefix="bench-preprocess-"))
    out = {"users": ds.n_users, "movies": ds.n_movies, "train_ratings": len(ds.train_ratings),
           "snapshot": ds.snapshot_hash, "stats": ds.stats, "code": sys.modules["components"].__path__[0]}
out.update(wall_seconds=round(time.perf_counter() - wall, 2), cpu_seconds=round(time.process_time() - cpu, 2),
           peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
print(json.dumps(out))
"""


def measure(what: str, store: str, code: str | None) -> dict:
    root = Path(code).resolve() if code else Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", MEASURE, what, str(Path(store).resolve())], capture_output=True,
                          text=True, env=env, cwd=root, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {what} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def small_world(workdir: Path) -> str:
    """A simulated log ingested into a local store: the default subject."""
    movierec = str(Path(sys.executable).with_name("movierec"))
    log, store = workdir / "events.log", workdir / "store"
    subprocess.run([movierec, "simulate", "--to", f"file:{log}", *SMALL_WORLD], check=True, capture_output=True,
                   timeout=1800)
    subprocess.run([movierec, "ingest", "--source", f"file:{log}", "--store", str(store)], check=True,
                   capture_output=True, timeout=1800)
    return str(store)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="an ingested store to measure (default: a small simulated world made here)")
    ap.add_argument("--code", help="a checkout of the project whose `components` to measure instead of this one")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        store = args.store or small_world(Path(tmp))
        result = {
            "store": "small simulated world: movierec simulate " + " ".join(SMALL_WORLD) if not args.store
            else f"given store ({Path(args.store).name})",
            "code": "this checkout" if not args.code else f"another checkout ({Path(args.code).name})",
            "read_snapshots": measure("read", store, args.code),
            "preprocess": measure("preprocess", store, args.code),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
            "note": "wall seconds stretch when other work shares the cores; CPU seconds and peak RSS do not",
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for part in ("read_snapshots", "preprocess"):
        r = result[part]
        print(f"{part}: {r['wall_seconds']} s wall, {r['cpu_seconds']} s CPU, peak {r['peak_rss_mb']} MB")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
