"""Offline gate benchmark: the paired bootstrap at course scale, and the truth models' order.

- `bootstrap`: `components.training.evaluate.paired_interval` on per-user differences shaped like
  NDCG@20 differences at course scale (`--users`, default 200,000; `--nonzero` of them differ):
  the median wall time of `--repeats` runs at `--resamples` (at this size it takes the normal
  interval), beside the zero-skipping bootstrap it uses below `BOOTSTRAP_MAX_DRAWS` and the plain
  bootstrap (all users drawn every resample), their times and intervals, and the normal
  approximation mean +- z sd / sqrt(n).
- `truth_models`: `movierec.truth_models.offline_and_online` on `--seeds` simulated services:
  popularity, partial and full knowledge of tastes, offline (the evaluate step's primary metric)
  and online (the join's hit rate); whether the two orders agree on every seed.

    python -m benchmarks.bench_gate [--users 200000] [--seeds 10]
    # writes benchmarks/results/gate.json (timings on a shared machine are noisy)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from components.training import evaluate

RESULTS = Path(__file__).resolve().parent / "results" / "gate.json"


def plain_bootstrap(d: np.ndarray, level: float, resamples: int, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 8_000_000 // len(d))
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        means[start:start + n] = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(low), float(high)


def bootstrap(users: int, nonzero: float, resamples: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    d = np.where(rng.random(users) < nonzero, rng.normal(0.01, 0.25, users), 0.0)
    times, got = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        got = evaluate.paired_interval(d, 0.975, resamples, seed=1)
        times.append(time.perf_counter() - started)
    saved, evaluate.BOOTSTRAP_MAX_DRAWS = evaluate.BOOTSTRAP_MAX_DRAWS, float("inf")
    try:
        started = time.perf_counter()
        skipping = evaluate.paired_interval(d, 0.975, resamples, seed=1)
        skipping_seconds = time.perf_counter() - started
    finally:
        evaluate.BOOTSTRAP_MAX_DRAWS = saved
    started = time.perf_counter()
    plain = plain_bootstrap(d, 0.975, resamples)
    plain_seconds = time.perf_counter() - started
    half = 2.2414 * d.std(ddof=1) / np.sqrt(users)       # z of a two-sided 97.5% interval
    return {"users": users, "nonzero_share": nonzero, "resamples": resamples, "level": 0.975,
            "method": got["method"], "seconds_median": round(statistics.median(times), 3),
            "interval": [got["low"], got["high"]],
            "zero_skipping_bootstrap_seconds": round(skipping_seconds, 3),
            "zero_skipping_bootstrap_interval": [skipping["low"], skipping["high"]],
            "plain_bootstrap_seconds": round(plain_seconds, 3),
            "plain_bootstrap_interval": [round(plain[0], 6), round(plain[1], 6)],
            "normal_interval": [round(float(d.mean() - half), 6), round(float(d.mean() + half), 6)]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--nonzero", type=float, default=0.5, help="share of users whose difference is not 0")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=10, help="simulated services for the truth models (0: skip)")
    args = parser.parse_args(argv)
    result = {"benchmark": "gate", "python": platform.python_version(), "cpus": os.cpu_count(),
              "bootstrap": bootstrap(args.users, args.nonzero, args.resamples, args.repeats)}
    print(json.dumps(result["bootstrap"]), flush=True)
    if args.seeds:
        from movierec.truth_models import offline_and_online

        started, worlds = time.perf_counter(), []
        for seed in range(1, args.seeds + 1):
            worlds.append(offline_and_online(seed))
            print(json.dumps({k: worlds[-1][k] for k in ("seed", "offline_order", "online_order")}), flush=True)
        result["truth_models"] = {"seeds": args.seeds, "worlds": worlds,
                                  "orders_agree": sum(w["offline_order"] == w["online_order"] for w in worlds),
                                  "seconds": round(time.perf_counter() - started, 1)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
