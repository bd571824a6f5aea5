"""Model loading benchmark: time to load and verify one version, and what it costs a process in memory.

One synthetic version (default 1M users x 27k movies x 64 factors, 20 seen movies per user) is
published into a local store in the current artifact format. Each measurement runs in a fresh
Python process, so nothing is cached in the interpreter (the file pages are in the page cache,
as on a serving node after the first worker):

- `mapped`: `predictor.mapped.load_model(..., mmap_arrays=True)`, what the predictor does;
- `read`: `FactorModel.load`, the full read used for stores that are not local (S3);

each reporting the median wall time of `--repeats` loads, and the process's RSS, PSS and USS
(psutil) after the load and after ranking 200 users, minus those of the bare interpreter with
numpy and the project imported. `two_workers` then holds two processes with the version loaded at
once (as two predictor workers) and sums their PSS: mapped pages are shared and counted once. Results go to `benchmarks/results/model_load.json` under the
label given by `--label` (one entry per label, so two artifact formats can be compared).

    python -m benchmarks.bench_model_load --label npy-folder
    python -m benchmarks.bench_model_load --quick --label smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "model_load.json"
VERSION = "bench-load"

CHILD = r"""
import json, os, sys, time
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np, psutil
from components.core.model_artifact import FactorModel
from components.core.store import LocalStore
from predictor.mapped import load_model

def mem():
    i = psutil.Process().memory_full_info()
    return {"rss": i.rss, "pss": i.pss, "uss": i.uss}

root, version, mode = sys.argv[1:4]
store = LocalStore(root)
base = mem()
t0 = time.perf_counter()
model = load_model(store, version, mmap_arrays=True)[0] if mode == "mapped" else FactorModel.load(store, version)[0]
seconds = time.perf_counter() - t0
loaded = mem()
for u in np.linspace(model.user_ids[0], model.user_ids[-1], 200).astype(int):
    model.recommend(int(u), 20)
ranked = mem()
print(json.dumps({"seconds": seconds, "after_load": {k: loaded[k] - base[k] for k in base},
                  "after_200_users": {k: ranked[k] - base[k] for k in base}, "base": base}), flush=True)
if len(sys.argv) > 4:  # hold: keep the model loaded until the parent closes stdin
    sys.stdin.read()
"""


def measure(root: Path, mode: str, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", CHILD, str(root), VERSION, mode], capture_output=True,
                             text=True, check=True, timeout=600, cwd=Path(__file__).resolve().parent.parent,
                             env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    median = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {"seconds_median": round(median["seconds"], 4),
            "seconds_all": [round(r["seconds"], 4) for r in runs],
            "after_load_bytes": median["after_load"], "after_200_users_bytes": median["after_200_users"]}


def two_workers(root: Path, mode: str) -> dict:
    """PSS and RSS summed over two processes holding the same version at once (minus their bases)."""
    import psutil

    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(root), VERSION, mode, "hold"], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent,
                              env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}) for _ in range(2)]
    try:
        bases = [json.loads(p.stdout.readline())["base"] for p in procs]
        infos = [psutil.Process(p.pid).memory_full_info() for p in procs]
        return {"pss_bytes": sum(i.pss - b["pss"] for i, b in zip(infos, bases, strict=True)),
                "rss_bytes": sum(i.rss - b["rss"] for i, b in zip(infos, bases, strict=True))}
    finally:
        for p in procs:
            p.communicate(timeout=60)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100k users, one repeat: a smoke run")
    parser.add_argument("--label", default="current", help="Name of this entry in the results file")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.repeats = 100_000, 1

    from components.core.model_artifact import FactorModel
    from components.core.store import LocalStore
    from tests.synthetic_models import publish_synthetic

    with tempfile.TemporaryDirectory(prefix="movierec-bench-load-") as tmp:
        store = LocalStore(tmp)
        t0 = time.perf_counter()
        model = publish_synthetic(store, VERSION, args.users, args.movies, args.factors, seed=1, seen_per_user=20)
        save_seconds = time.perf_counter() - t0
        files = sorted(p for p in Path(tmp).rglob("*") if p.is_file())
        entry = {
            "shape": {"users": args.users, "movies": args.movies, "factors": args.factors, "seen_per_user": 20},
            "build_and_save_seconds": round(save_seconds, 2),
            "files": {str(p.relative_to(tmp)): p.stat().st_size for p in files},
            "array_bytes": model.nbytes,
            "mapped": measure(Path(tmp), "mapped", args.repeats),
            "read": measure(Path(tmp), "read", args.repeats),
            "two_workers": {mode: two_workers(Path(tmp), mode) for mode in ("mapped", "read")},
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        del model, FactorModel
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.label] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps({args.label: entry}, indent=2))
    return entry


if __name__ == "__main__":
    main()
