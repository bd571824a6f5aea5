"""Hyper-parameter search on an earlier time fold of the train period (Optuna, budgeted).

The validation window judges the models and gates them; it must not also choose their
hyper-parameters. So the search splits the dataset's train period by time once more: the
oldest part trains (`train-before`), the newest `train.tune.fold_fraction` of it (by event time)
is the tuning window, scored with the same offline evaluation as the validation window (the
primary metric, e.g. NDCG@20, relevant = watched or rated well there and unseen before). Every
model is searched the same way, the baselines too (a well-tuned baseline is the honest
comparison); a model without hyper-parameters (popularity) is scored once on the fold, so its
fold score sits beside the others'.

Budget: at most `n_trials` trials and `timeout_seconds` (Optuna stops starting trials after
it; a trial under way finishes). The first trial is always the configured values, so the search
never returns something worse on the fold than what it started from. Optuna's TPE sampler is
seeded (`train.tune.seed`).

    result = tune(dataset, "als", params)     # params: the full params dict
    result["best_params"], result["best_score"], result["trials"]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from components.core.params import section
from components.training.dataset import Dataset, index_of

Space = Callable[[Any], dict[str, Any]]

# What each algorithm's search varies; everything else keeps its configured value. ALS's
# regularization reaches 1e3: heavy shrinkage pulls its lists toward the popular movies, which is
# where a service whose users mostly follow popularity (the simulated one) is best served.
SPACES: dict[str, Space] = {
    "svd": lambda t: {"n_factors": t.suggest_int("n_factors", 8, 200, log=True),
                      "n_epochs": t.suggest_int("n_epochs", 10, 60),
                      "lr_all": t.suggest_float("lr_all", 1e-3, 3e-2, log=True),
                      "reg_all": t.suggest_float("reg_all", 5e-3, 0.3, log=True)},
    "svdpp": lambda t: {"n_factors": t.suggest_int("n_factors", 4, 64, log=True),
                        "n_epochs": t.suggest_int("n_epochs", 10, 40),
                        "lr_all": t.suggest_float("lr_all", 1e-3, 3e-2, log=True),
                        "reg_all": t.suggest_float("reg_all", 5e-3, 0.3, log=True),
                        "implicit_set": t.suggest_categorical("implicit_set", ["rated", "rated_or_watched"])},
    "als": lambda t: {"factors": t.suggest_int("factors", 8, 256, log=True),
                      "regularization": t.suggest_float("regularization", 1e-3, 1e3, log=True),
                      "alpha": t.suggest_float("alpha", 0.5, 100.0, log=True),
                      "rating_weight": t.suggest_float("rating_weight", 0.0, 4.0),
                      "popularity_weight": t.suggest_float("popularity_weight", 0.0, 1.0),
                      "quality_weight": t.suggest_float("quality_weight", 0.0, 0.6),
                      "iterations": t.suggest_int("iterations", 5, 30)},
    "bpr": lambda t: {"factors": t.suggest_int("factors", 8, 256, log=True),
                      "learning_rate": t.suggest_float("learning_rate", 1e-3, 0.3, log=True),
                      "regularization": t.suggest_float("regularization", 1e-4, 0.3, log=True),
                      "iterations": t.suggest_int("iterations", 20, 400, log=True)},
}


def time_fold(dataset: Dataset, fraction: float) -> Dataset:
    """The train period split by time again: `train-before` trains, the newest `fraction` of its
    events is the tuning window (the validation frames of the returned dataset). Id maps are
    those of `train-before`; window users without history before the fold's cutoff are left out,
    as preprocess does for the validation window."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"tune fold_fraction must be in (0, 1), got {fraction}")
    r, w = dataset.train_ratings, dataset.train_watches
    times = pd.concat([t for t in (r["time"], w["time"]) if len(t)], ignore_index=True)
    cutoff = pd.Timestamp(times.quantile(1.0 - fraction, interpolation="higher"))
    before_r, after_r = r[r["time"] < cutoff], r[r["time"] >= cutoff]
    before_w, after_w = w[w["time"] < cutoff], w[w["time"] >= cutoff]
    if before_r.empty or (after_r.empty and after_w.empty):
        raise ValueError(f"the train period is too short to tune on a time fold (cutoff {cutoff})")
    pairs = pd.concat([before_r[["user_id", "movie_id"]], before_w[["user_id", "movie_id"]]]).drop_duplicates()
    history = pairs.groupby("user_id").size()
    user_ids = np.sort(pairs["user_id"].unique().astype(np.int64))
    movie_ids = np.sort(pairs["movie_id"].unique().astype(str))

    def reindex(frame: pd.DataFrame, window: bool) -> pd.DataFrame:
        frame = frame.copy()
        if window:
            frame = frame[frame["user_id"].isin(history.index)].copy()
            frame["history"] = frame["user_id"].map(history).astype(np.int64)
        frame["u"] = index_of(user_ids, frame["user_id"].to_numpy(np.int64)).astype(np.int32)
        frame["i"] = index_of(movie_ids, frame["movie_id"].to_numpy().astype(str)).astype(np.int32)
        return frame.reset_index(drop=True)

    return Dataset(user_ids=user_ids, movie_ids=movie_ids, train_ratings=reindex(before_r, False),
                   train_watches=reindex(before_w, False), valid_ratings=reindex(after_r, True),
                   valid_watches=reindex(after_w, True), cutoff=cutoff.isoformat(),
                   snapshot_hash=f"{dataset.snapshot_hash}:tune-fold-{fraction}",
                   stats={"users": len(user_ids), "movies": len(movie_ids)}, params=dataset.params)


def fold_score(algorithm: str, hyper: dict, fold: Dataset, params: dict | None, targets=None) -> float:
    """The primary metric of `algorithm` with `hyper`, fitted on the fold's train-before part and
    scored on its tuning window."""
    from components.training.evaluate import evaluate
    from components.training.train import make_recommender

    model = make_recommender(algorithm, hyper).fit(fold).fitted
    primary = section(params, "evaluate")["primary_metric"]
    return float(evaluate(model, fold, params, targets=targets).metrics.get(primary, 0.0))


def tune(dataset: Dataset, algorithm: str, params: dict | None = None, fold: Dataset | None = None) -> dict[str, Any]:
    """Search `algorithm`'s hyper-parameters on the time fold within the budget of `train.tune`;
    return the chosen values (the configured ones completed by the best trial), the fold's score
    of the configured and the chosen values, and every trial (for the model card and the report)."""
    import optuna

    from components.training.evaluate import relevant_targets

    settings = section(params, "train", "tune")
    configured = section(params, "train", algorithm)
    fold = fold or time_fold(dataset, float(settings["fold_fraction"]))
    targets = relevant_targets(fold, params)
    primary = section(params, "evaluate")["primary_metric"]
    started = time.perf_counter()
    space = SPACES.get(algorithm)
    summary = {"algorithm": algorithm, "metric": primary, "fold_cutoff": fold.cutoff,
               "fold_fraction": float(settings["fold_fraction"]), "fold_users": int(len(targets.users)),
               "n_trials": int(settings["n_trials"]), "timeout_seconds": float(settings["timeout_seconds"])}
    if space is None:                                  # nothing to search: score the model once
        score = fold_score(algorithm, configured, fold, params, targets)
        return {**summary, "searched": False, "configured_score": round(score, 6), "best_score": round(score, 6),
                "best_params": configured, "trials": [], "seconds": round(time.perf_counter() - started, 3)}

    def objective(trial) -> float:
        t0 = time.perf_counter()
        value = fold_score(algorithm, {**configured, **space(trial)}, fold, params, targets)
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=int(settings["seed"])))
    searched = {key: configured[key] for key in space(optuna.trial.FixedTrial(configured))}
    study.enqueue_trial(searched)                      # trial 0: the configured values
    study.optimize(objective, n_trials=int(settings["n_trials"]), timeout=float(settings["timeout_seconds"]))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(done, key=lambda t: t.value)
    trials = [{"number": t.number, "params": t.params, "score": round(float(t.value), 6),
               "seconds": t.user_attrs.get("seconds")} for t in done]
    return {**summary, "searched": True, "configured_score": trials[0]["score"] if done[0].number == 0 else None,
            "best_score": round(float(best.value), 6), "best_params": {**configured, **best.params},
            "trials": trials, "trials_done": len(done), "seconds": round(time.perf_counter() - started, 3)}


def tune_all(dataset: Dataset, algorithms: list[str], params: dict | None = None) -> dict[str, dict[str, Any]]:
    """`tune` for each algorithm on one fold (built once); the algorithm choice can be read off
    the fold scores, before the validation window is looked at."""
    fold = time_fold(dataset, float(section(params, "train", "tune")["fold_fraction"]))
    return {algorithm: tune(dataset, algorithm, params, fold=fold) for algorithm in algorithms}
