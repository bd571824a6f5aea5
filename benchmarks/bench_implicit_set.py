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
import time
from pathlib import Path

from benchmarks.stored_worlds import add_world_options, run, worlds, write_result

RESULTS = Path(__file__).resolve().parent / "results" / "svdpp-implicit-set.json"
VARIANTS = ("rated", "rated_or_watched")
SUITE_ARGV = ["--users", "10000", "--movies", "500", "--out", str(RESULTS.with_name("svdpp-implicit-set-suite.json"))]
METRICS = ("ndcg@20", "recall@20", "hit_rate@20")


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
    from components.core.params import load_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_options(parser, RESULTS)
    parser.add_argument("--movies", type=int, default=2_500, help="the simulated world's movies (without --store)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    found = {}
    with worlds(args.store, args.seed, args.users, args.movies) as stores:
        for label, store in stores.items():
            print(f"== {label}", flush=True)
            found[label] = compare(store, params, args.resamples)
            v = found[label]["variants"]
            for name in ("popularity", *VARIANTS):
                print(f"  {name:17} " + "  ".join(f"{m} {v[name].get(m, float('nan')):.5f}"
                                                  for m in (*METRICS, "rmse")), flush=True)
            for m, d in found[label]["watched_minus_rated"].items():
                print(f"  watched - rated {m}: {d['difference']:+.5f} [{d['low']:+.5f}, {d['high']:+.5f}]", flush=True)
    return write_result(args.out, {
        "benchmark": "svdpp-implicit-set", "params": params["train"]["svdpp"], "worlds": found,
        "interval": "95% percentile bootstrap over validation users (paired: per-user difference)"})


if __name__ == "__main__":
    run(main, "bench_implicit_set")
