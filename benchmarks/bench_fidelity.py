"""Fidelity and speed of the simulator: the calibrated generator against the one before it.

Both generators simulate the same course-shaped world (by default the course profile scaled to
20k users and 1k movies: the course's users per movie and traffic per user, ten times smaller),
each in a subprocess of its own so that time and peak memory are its alone. The baseline is the
simulator at a git revision (`--baseline`, default the commit before the calibration), extracted
with `git archive` into a temporary folder that shadows `simulator` on the import path; it runs
with the flags the course-scale figures were taken with (`--sessions-per-day 8000` for 200k
users, scaled). Each run's log is compared with MovieLens-100k (fetched at run time) by
`movierec.fidelity`, and its lines per second measured while the log is generated and read.

    python -m benchmarks.bench_fidelity                    # writes benchmarks/results/fidelity.json
    python -m benchmarks.bench_fidelity --full             # the course profile at full scale (minutes)

Timings on a machine whose cores are shared are noisy: compare the two runs of one invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fidelity.json"
BASELINE = "2a51ee9"   # the simulator before the calibration (issue 16)

WORKER = r"""
import json, resource, sys, time
from datetime import datetime
if len(sys.argv) > 2:  # an older simulator first: before the working directory the interpreter put there
    sys.path.insert(0, sys.argv[2])
import simulator
from simulator.service import StreamingService
from movierec.fidelity import compare, from_lines, from_ratings, rows_as_dicts, statistics
from components.ingest.movielens import fetch_ml100k, read_ratings

spec = json.loads(sys.argv[1])
extra = {k: spec[k] for k in ("signup_ratings", "legacy_share") if k in spec}
service = StreamingService(seed=spec["seed"], n_users=spec["users"], n_movies=spec["movies"], **extra)
counted = [0]
def lines():
    for line in service.history(days=spec["days"], sessions_per_day=spec["sessions_per_day"],
                                start=datetime(2026, 3, 1)):
        counted[0] += 1
        yield line
started = time.perf_counter()
sample = from_lines(lines())
seconds = time.perf_counter() - started
real = statistics(from_ratings(read_ratings(fetch_ml100k())))
sim = statistics(sample, reference_users=real["scalars"]["users_with_ratings"])
rows = rows_as_dicts(compare(sim, real))
print(json.dumps({"simulator": simulator.__path__[0], "seconds": round(seconds, 1), "lines": counted[0], "lines_per_second": round(counted[0] / seconds),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "by_kind": dict(service.counts), "ratings_after_watch": getattr(service, "ratings_after_watch", None),
                  "scalars": sim["scalars"], "table": rows,
                  "passed": all(r["passed"] for r in rows if r["passed"] is not None)}))
"""


def run(spec: dict, simulator_root: Path | None = None) -> dict:
    """One generator in a subprocess; `simulator_root` puts an older `simulator` first on the path."""
    older = [str(simulator_root)] if simulator_root else []
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(spec), *older], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    expected = (simulator_root or ROOT) / "simulator"
    if Path(result["simulator"]).resolve() != expected.resolve():
        raise RuntimeError(f"ran the simulator in {result['simulator']}, expected {expected}")
    result["simulator"] = "the baseline revision" if simulator_root else "this checkout"  # no machine path
    return result


def extract(revision: str, into: Path) -> Path:
    """The `simulator` package at `revision`, extracted into `into`."""
    archive = subprocess.run(["git", "archive", "--format=tar", revision, "simulator"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    tar_path = into / "simulator.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    return into


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000, help="users of the scaled course world")
    parser.add_argument("--movies", type=int, default=1_000, help="movies of the scaled course world")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the simulator to compare with")
    parser.add_argument("--full", action="store_true", help="also the course profile at full scale (minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from simulator.profiles import get_profile

    course = get_profile("course")
    world = course.scaled(args.users, args.movies)
    new = {"seed": args.seed, "users": world.users, "movies": world.movies, "days": world.days,
           "sessions_per_day": world.sessions_per_day, "signup_ratings": world.signup_ratings,
           "legacy_share": world.legacy_share}
    old = {"seed": args.seed, "users": world.users, "movies": world.movies, "days": world.days,
           "sessions_per_day": round(8000 * world.users / course.users)}
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average": os.getloadavg()},
              "reference": "ml-100k (recbole 1.2.1 wheel, fetched at run time)", "world": new}
    with tempfile.TemporaryDirectory() as tmp:
        result["baseline"] = {"revision": args.baseline, "flags": old,
                              **run(old, extract(args.baseline, Path(tmp)))}
        print(json.dumps({"baseline": {k: result["baseline"][k] for k in ("seconds", "lines", "passed")}}), flush=True)
    result["calibrated"] = run(new)
    print(json.dumps({"calibrated": {k: result["calibrated"][k] for k in ("seconds", "lines", "passed")}}), flush=True)
    if args.full:
        full = {"seed": args.seed, "users": course.users, "movies": course.movies, "days": course.days,
                "sessions_per_day": course.sessions_per_day, "signup_ratings": course.signup_ratings,
                "legacy_share": course.legacy_share}
        result["course_full_scale"] = {"flags": full, **run(full)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results in {args.out}")
    return result


if __name__ == "__main__":
    main()
