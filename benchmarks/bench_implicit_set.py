"""SVD++'s implicit set: the movies a user rated (Surprise's N(u)) against every movie the user
rated or watched (`train.svdpp.implicit_set: rated_or_watched`), on the same split, user by user.

For each world: prepare the dataset as the pipeline does (params.yaml), fit SVD++ both ways with
the same hyper-parameters, and report per variant the offline list metrics at k (the pipeline's
relevance), the RMSE on the validation ratings and the fit time, with the popularity baseline
beside; then the paired per-user difference (watched - rated) with its 95% bootstrap interval.

    python -m benchmarks.bench_implicit_set --store seed3=WORK/seed3/store --store seed7=WORK/seed7/store
    # stores ingested from simulated logs, e.g. what `bench_scale --workdir WORK` leaves behind
    python -m benchmarks.bench_implicit_set          # simulates its own world (course profile, scaled)

Writes benchmarks/results/svdpp-implicit-set.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "svdpp-implicit-set.json"
VARIANTS = ("rated", "rated_or_watched")
SUITE_ARGV = ["--users", "10000", "--movies", "500", "--out", str(RESULTS.with_name("svdpp-implicit-set-suite.json"))]
METRICS = ("ndcg@20", "recall@20", "hit_rate@20")


def simulated_store(folder: Path, seed: int, users: int, movies: int) -> Path:
    """The course profile scaled to `users` and `movies` (its traffic per user kept), simulated
    and ingested into `folder/store`."""
    from components.core.eventlog import open_event_log
    from components.core.store import open_store
    from components.ingest.run import ingest
    from simulator.profiles import get_profile
    from simulator.service import StreamingService

    profile = get_profile("course").scaled(users, movies)
    service = StreamingService(seed=seed, n_users=profile.users, n_movies=profile.movies,
                               signup_ratings=profile.signup_ratings, legacy_share=profile.legacy_share)
    log = folder / "events.log"
    with open_event_log(f"file:{log}") as out:
        lines = out.extend(service.history(days=profile.days, sessions_per_day=profile.sessions_per_day))
    print(f"  simulated {lines:,} lines ({profile.users:,} users, {profile.movies:,} movies, "
          f"{profile.sessions_per_day:,} sessions a day)", flush=True)
    ingest(f"file:{log}", open_store(str(folder / "store")))
    return folder / "store"


def compare(store: Path, params: dict, resamples: int) -> dict:
    from components.core.store import open_store
    from components.training.evaluate import evaluate, paired_interval, popularity_baseline, relevant_targets
    from components.training.preprocess import prepare
    from components.training.train import make_recommender

    dataset = prepare(open_store(str(store)), params)
    targets = relevant_targets(dataset, params)
    runs = {"popularity": evaluate(popularity_baseline(dataset), dataset, params, name="popularity",
                                   targets=targets)}
    seconds = {}
    for variant in VARIANTS:
        started = time.perf_counter()
        rec = make_recommender("svdpp", {**params["train"]["svdpp"], "implicit_set": variant}).fit(dataset)
        seconds[variant] = round(time.perf_counter() - started, 2)
        runs[variant] = evaluate(rec.fitted, dataset, params, name=variant, targets=targets)
    out = {"users": int(len(targets.users)), "train_ratings": int(len(dataset.train_ratings)),
           "train_watch_pairs": int(len(dataset.train_watches)), "variants": {}}
    for name, ev in runs.items():
        out["variants"][name] = {m: round(float(ev.metrics[m]), 6) for m in (*METRICS, "rmse") if m in ev.metrics}
        if name in seconds:
            out["variants"][name]["fit_seconds"] = seconds[name]
    out["watched_minus_rated"] = {m: paired_interval(runs["rated_or_watched"].per_user[m] - runs["rated"].per_user[m],
                                                     0.95, resamples) for m in METRICS}
    return out


def main(argv: list[str] | None = None) -> dict:
    from components.core.errors import UserError
    from components.core.params import load_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", default=[],
                        help="LABEL=PATH of an ingested store (repeatable); none: simulate one world")
    parser.add_argument("--seed", type=int, default=3, help="the simulated world's seed (without --store)")
    parser.add_argument("--users", type=int, default=50_000, help="the simulated world's users (without --store)")
    parser.add_argument("--movies", type=int, default=2_500, help="the simulated world's movies (without --store)")
    parser.add_argument("--params", default=None, help="params.yaml (default: the project's)")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    stores = {}
    for item in args.store:
        label, _, path = item.rpartition("=")
        if not Path(path).is_dir():
            raise UserError(f"--store {item}: no store folder at {path} (give LABEL=PATH of an ingested store)")
        stores[label or Path(path).parent.name] = Path(path)
    work = None
    if not stores:
        work = Path(tempfile.mkdtemp(prefix="movierec-bench-implicit-set-"))
        stores[f"course-scaled-seed{args.seed}"] = simulated_store(work, args.seed, args.users, args.movies)
    try:
        worlds = {}
        for label, store in stores.items():
            print(f"== {label}", flush=True)
            worlds[label] = compare(store, params, args.resamples)
            v = worlds[label]["variants"]
            for name in ("popularity", *VARIANTS):
                print(f"  {name:17} " + "  ".join(f"{m} {v[name].get(m, float('nan')):.5f}"
                                                  for m in (*METRICS, "rmse")), flush=True)
            for m, d in worlds[label]["watched_minus_rated"].items():
                print(f"  watched - rated {m}: {d['difference']:+.5f} [{d['low']:+.5f}, {d['high']:+.5f}]", flush=True)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    result = {"benchmark": "svdpp-implicit-set", "params": params["train"]["svdpp"],
              "interval": "95% percentile bootstrap over validation users (paired: per-user difference)",
              "worlds": worlds, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    import sys

    from components.core.errors import UserError

    try:
        main()
    except UserError as exc:
        print(f"bench_implicit_set: {exc}", file=sys.stderr)
        sys.exit(2)
