"""How far a recommender could go on a simulated world: popularity, ALS, the same history with
the true movie factors, and the oracle, offline on the pipeline's split.

The simulator knows what no model does: each movie's hidden factors and each user's taste. On the
dataset the pipeline prepares (params.yaml), five lists per validation user, scored with the
pipeline's relevance and NDCG/recall/hit rate @20, each against popularity user by user:

- popularity and ALS (params.yaml's values): what the platform deploys;
- ALS's prior alone: its item bias (popularity and quality) with no factors, the same list for
  everyone: how much of ALS's lead is not personalization;
- known movie factors: the user's train-period movies, their true factors averaged (shrunk by one
  pseudo-movie) and scored against every movie's true factors on top of popularity, with the
  weight that scores best (chosen on the validation users, so an optimistic ceiling): what the
  data allows a model that learned the movies perfectly;
- oracle: each user's true odds of picking each movie (`simulator.population.choice_base` plus
  the user's taste against the movie's factors), which needs no history: what perfect knowledge
  gives (users the dataset does not know, a handful, get the popularity list).

Beside them, `als_factor_fit`: how much of the true movie factors ALS's item factors hold (R^2 of
a least-squares fit, in-sample), by how many train users saw the movie.

    python -m benchmarks.bench_ceiling --store seed3=WORK/seed3/store --seed 3 --movies 10000
    # a store ingested from the simulator's log with that seed and catalogue size (bench_scale --workdir)
    python -m benchmarks.bench_ceiling            # simulates its own world (course profile, scaled)

Writes benchmarks/results/ceiling.json (or --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.stored_worlds import add_world_options, run, worlds, write_result

RESULTS = Path(__file__).resolve().parent / "results" / "ceiling.json"
METRICS = ("ndcg@20", "recall@20", "hit_rate@20")
WEIGHTS = (0.1, 0.2, 0.4, 0.8, 1.6)
BANDS = ((2, 5), (5, 20), (20, 100), (100, 10**9))   # train users who saw a movie, for `factor_fit`
SUITE_ARGV = ["--users", "10000", "--movies", "500", "--out", str(RESULTS.with_name("ceiling-suite.json"))]


def ladder(store: Path, seed: int, n_movies: int, params: dict, resamples: int) -> dict:
    from components.core.errors import UserError
    from components.core.store import open_store
    from components.training.evaluate import evaluate, paired_interval, popularity_baseline, relevant_targets
    from components.training.preprocess import prepare
    from components.training.recommenders import build_model
    from components.training.train import make_recommender
    from simulator import population as behaviour
    from simulator.catalogue import Catalogue

    dataset = prepare(open_store(str(store)), params)
    targets = relevant_targets(dataset, params)
    catalogue = Catalogue(seed, n_movies)
    where = {slug: i for i, slug in enumerate(catalogue.slugs)}
    missing = [m for m in dataset.movie_ids[:50] if m not in where]
    if missing:
        raise UserError(f"movie {missing[0]!r} is not in the catalogue of seed {seed} with {n_movies} movies: "
                        "give the --seed and --movies the store's log was simulated with")
    true_factors = catalogue.factors[[where[m] for m in dataset.movie_ids]]

    popularity = popularity_baseline(dataset)
    runs = {"popularity": evaluate(popularity, dataset, params, name="popularity", targets=targets)}
    als = make_recommender("als", params["train"]["als"]).fit(dataset).fitted
    runs["als"] = evaluate(als, dataset, params, name="als", targets=targets)
    prior_only = build_model(dataset, 0.0, np.zeros(dataset.n_users), als.item_bias, np.zeros((dataset.n_users, 1)),
                             np.zeros((dataset.n_movies, 1)))
    runs["als_prior"] = evaluate(prior_only, dataset, params, name="als_prior", targets=targets)

    prior = popularity.item_bias.astype(np.float64)
    prior /= prior.std() or 1.0
    seen = dataset.seen_csr.astype(np.float64)
    history = (seen @ true_factors) / (np.asarray(seen.sum(axis=1)).ravel()[:, None] + 1.0)
    best, chosen = None, None
    for weight in WEIGHTS:
        model = build_model(dataset, 0.0, np.zeros(dataset.n_users), prior, (weight * history).astype(np.float32),
                            true_factors.astype(np.float32))
        run = evaluate(model, dataset, params, name="known_factors", targets=targets)
        if best is None or run.metrics["ndcg@20"] > best.metrics["ndcg@20"]:
            best, chosen = run, weight
    runs["known_factors"] = best

    # the oracle: every user's true odds, base + beta * taste . factors, as a rank-8 factor model
    base = behaviour.choice_base(catalogue)[[where[m] for m in dataset.movie_ids]]
    taste = np.stack([behaviour.user_traits(seed, int(u))[1] for u in dataset.user_ids])
    oracle = build_model(dataset, 0.0, np.zeros(dataset.n_users), base,
                         (behaviour.CHOICE_BETA * taste).astype(np.float32), true_factors.astype(np.float32))
    runs["oracle"] = evaluate(oracle, dataset, params, name="oracle", targets=targets)

    out = {"users": int(len(targets.users)), "known_factors_weight": chosen, "models": {},
           "als_factor_fit": factor_fit(als.item_factors, true_factors, dataset.movie_popularity())}
    for name, run in runs.items():
        entry = {m: round(float(run.metrics[m]), 6) for m in METRICS}
        if name != "popularity":
            entry["vs_popularity"] = {m: paired_interval(run.per_user[m] - runs["popularity"].per_user[m], 0.95,
                                                         resamples) for m in METRICS}
        out["models"][name] = entry
    return out


def factor_fit(item_factors: np.ndarray, true_factors: np.ndarray, popularity: np.ndarray) -> dict:
    """How much of the true movie factors a model's item factors hold: R^2 of the true factors
    regressed on the model's (least squares with an intercept, in-sample), by how many train users
    saw the movie."""
    out = {}
    for low, high in BANDS:
        movies = (popularity >= low) & (popularity < high)
        if movies.sum() <= item_factors.shape[1] + 1:
            continue
        x = np.hstack([item_factors[movies].astype(np.float64), np.ones((int(movies.sum()), 1))])
        y = true_factors[movies]
        residual = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
        out[f"{low}-{high if high < 10**9 else 'more'}"] = {
            "movies": int(movies.sum()), "r2": round(float(1 - (residual ** 2).sum() / ((y - y.mean(0)) ** 2).sum()), 4)}
    return out


def main(argv: list[str] | None = None) -> dict:
    from components.core.errors import UserError
    from components.core.params import load_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_options(parser, RESULTS)
    parser.add_argument("--movies", type=int, default=None,
                        help="the world's catalogue size (default: 2,500 when simulating; required with --store)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if args.store and args.movies is None:
        raise UserError("--store needs --movies: the catalogue size the store's log was simulated with")
    movies = args.movies or 2_500
    found = {}
    with worlds(args.store, args.seed, args.users, movies) as stores:
        for label, store in stores.items():
            print(f"== {label}", flush=True)
            found[label] = ladder(store, args.seed, movies, params, args.resamples)
            for name, entry in found[label]["models"].items():
                d = entry.get("vs_popularity", {}).get("ndcg@20")
                beside = f"  vs popularity {d['difference']:+.5f} [{d['low']:+.5f}, {d['high']:+.5f}]" if d else ""
                print(f"  {name:14} ndcg@20 {entry['ndcg@20']:.5f}  recall@20 {entry['recall@20']:.5f}{beside}",
                      flush=True)
    return write_result(args.out, {
        "benchmark": "ceiling", "seed": args.seed, "movies": movies, "worlds": found,
        "known_factors_weights_tried": list(WEIGHTS),
        "interval": "95% percentile bootstrap over validation users (paired: per-user difference)"})


if __name__ == "__main__":
    run(main, "bench_ceiling")
