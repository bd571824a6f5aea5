"""Offline evaluation: how good a model's top-20 lists and rating predictions are on the future.

A model is judged on the dataset's validation window (the interactions after the time cutoff),
never on what it was trained on, side by side with a popularity baseline fitted on the same
train period, so every number has a yardstick.

Who and what counts:

- Evaluated users: the validation users (users with history before the cutoff who came back in
  the window) who have at least one relevant movie.
- Relevant movies of a user: the movies the user watched to the end in the validation window
  (`evaluate.relevant_watch: completed`: at least `evaluate.completed_share` of the movie's
  length, the most distinct minutes any user streamed of it; `any`: any watch of at least
  `preprocess.min_watch_minutes` minutes, reported beside as the `*_any_watch` metrics), or
  rated there at `evaluate.relevant_min_rating` (default 4) or more, and had neither rated nor
  watched before the cutoff. Relevant movies the model cannot know (first seen in the window, or filtered as too sparse) stay in the
  denominators: the evaluation is honest about what a model misses. A watch that a served list
  caused (a viewing session starting within the join window after a recommendation that listed
  the movie, `components.core.attribution`) is not relevant: the model that served the list
  would get credit for its own influence; how many were left out is `caused_watches_excluded`.
- Lists: what the model serves, `FactorModel.top_k` (seen movies excluded) for known users and
  the model's cold-start list (`FactorModel.popular`) for users it does not know, computed in
  batches (`U[batch] @ Q.T`, mask, `argpartition`).

Metrics (means over evaluated users, list length k = `evaluate.k`):
precision@k = hits / k; recall@k = hits / |relevant|; NDCG@k with binary gains,
DCG = sum over hit ranks r (1-based) of 1/log2(r + 1), divided by the DCG of min(|relevant|, k)
hits at the top; hit_rate@k = share of users with at least one hit; coverage@k = share of the
model's catalogue that appears in any list; popularity_bias@k = mean, over all listed movies, of
the share of train users who had rated or watched the movie. RMSE and MAE are over all
validation ratings (predictions clipped to 1-5; unknown users or movies drop their terms, as
Surprise does). Activity groups: `new` users have no usable train history (not in the dataset's
id map), `light` ones at most `evaluate.light_max_history` movies before the cutoff (null: the
median of the evaluated known users, so that both groups say something), `heavy` the rest.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from components.core.model_artifact import FactorModel
from components.core.params import section
from components.training.dataset import Dataset, index_of
from components.training.recommenders import LoadedRecommender, PopularityRecommender

ACTIVITY_GROUPS = ("new", "light", "heavy")
BOOTSTRAP_MAX_DRAWS = 20_000_000     # resamples x users who differ; beyond it the normal interval
_BATCH = 1024


@dataclass
class Evaluation:
    """The offline metrics of one model on one split, and its per-user values (in `users` order)
    of every list metric, for the report and for paired comparisons between models."""

    name: str
    metrics: dict[str, float]
    by_activity: dict[str, dict[str, float]] = field(default_factory=dict)
    users: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    ndcg_per_user: np.ndarray = field(default_factory=lambda: np.empty(0))
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # every list metric at k, by user

    def to_dict(self, per_user: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "metrics": self.metrics, "by_activity": self.by_activity}
        if per_user:
            out["users"] = self.users.tolist()
            out["ndcg_per_user"] = [round(float(x), 6) for x in self.ndcg_per_user]
            out["per_user"] = {m: [round(float(x), 6) for x in v] for m, v in self.per_user.items()}
        return out

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Evaluation:
        return cls(name=obj["name"], metrics=dict(obj["metrics"]), by_activity=dict(obj.get("by_activity", {})),
                   users=np.asarray(obj.get("users", []), dtype=np.int64),
                   ndcg_per_user=np.asarray(obj.get("ndcg_per_user", []), dtype=np.float64),
                   per_user={m: np.asarray(v, dtype=np.float64) for m, v in obj.get("per_user", {}).items()})


@dataclass
class Targets:
    """The relevant (user, movie) pairs of a split and each evaluated user's activity group."""

    users: np.ndarray          # evaluated user ids, ascending
    pairs: pd.DataFrame        # user_id, movie_id: the relevant movies
    activity: np.ndarray       # per evaluated user: "new" | "light" | "heavy"
    light_max_history: float = 0.0
    caused_excluded: int = 0   # validation (user, movie) watches a served list caused: kept out of the targets


def relevant_targets(dataset: Dataset, params: dict | None = None, watch: str | None = None) -> Targets:
    """Per validation user, the movies a good list should have found (see the module docstring);
    `watch` ("completed" or "any", default `evaluate.relevant_watch`) says which watches count."""
    p = section(params, "evaluate")
    r, w = dataset.valid_ratings, dataset.valid_watches
    if (watch or p["relevant_watch"]) == "completed":
        w = w[w["minutes"] >= float(p["completed_share"]) * w["movie_id"].map(movie_lengths(dataset))]
    cols = ["user_id", "movie_id", "u", "i", "history"]
    caused = w.loc[w["caused"], ["user_id", "movie_id"]] if "caused" in w else w.iloc[0:0][["user_id", "movie_id"]]
    pos = pd.concat([w[cols], r.loc[r["rating"] >= float(p["relevant_min_rating"]), cols]], ignore_index=True)
    pos = pos.drop_duplicates(["user_id", "movie_id"])
    # seen in the train period (millions of pairs): by the dataset's indices; a movie the train period
    # does not know (i = -1) was not seen there
    train = [dataset.train_ratings, dataset.train_watches]
    seen = np.sort(np.concatenate([_pair_keys(f["u"], f["i"], dataset.n_movies) for f in train]))
    keys = _pair_keys(pos["u"], pos["i"], dataset.n_movies)
    at = np.minimum(np.searchsorted(seen, keys), max(len(seen) - 1, 0))
    pos = pos[~((pos["i"].to_numpy() >= 0) & (seen[at] == keys if len(seen) else False))]
    pos = pos.merge(caused.drop_duplicates(), on=["user_id", "movie_id"], how="left",  # the platform's own
                    indicator=True)                                                     # lists caused it
    pos = pos[pos["_merge"] == "left_only"].sort_values(["user_id", "movie_id"]).reset_index(drop=True)
    per_user = pos.drop_duplicates("user_id")
    users = per_user["user_id"].to_numpy(np.int64)
    history = per_user["history"].to_numpy(np.int64)
    known = dataset.user_index(users) >= 0
    light_max = p.get("light_max_history")
    if light_max is None:                       # the less active half of the known users
        light_max = float(np.median(history[known])) if known.any() else 0.0
    activity = np.where(~known, "new", np.where(history <= float(light_max), "light", "heavy"))
    return Targets(users=users, pairs=pos[["user_id", "movie_id"]], activity=activity,
                   light_max_history=float(light_max), caused_excluded=len(caused.drop_duplicates()))


def _pair_keys(u: pd.Series, i: pd.Series, n_movies: int) -> np.ndarray:
    """One int64 per (user index, movie index) pair."""
    return u.to_numpy(np.int64) * max(n_movies, 1) + i.to_numpy(np.int64)


def movie_lengths(dataset: Dataset) -> pd.Series:
    """Per movie id, its length as the data knows it: the most distinct minutes any user streamed."""
    frames = [f[["movie_id", "minutes"]] for f in (dataset.train_watches, dataset.valid_watches)]
    return pd.concat(frames, ignore_index=True).groupby("movie_id")["minutes"].max()


def top_k_lists(model: FactorModel, rows: np.ndarray, k: int) -> np.ndarray:
    """(len(rows), k) movie indices, best first, -1 padded: `top_k` for known rows (>= 0) and the
    cold-start list for unknown ones (-1), computed in batches of one matrix product each, the
    batches on the machine's cores (numpy's product and partition let go of the GIL)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.full((len(rows), k), -1, dtype=np.int64)
    popular = model.popular[:k]
    out[rows < 0, :len(popular)] = popular
    known = np.flatnonzero(rows >= 0)
    kk = min(k, model.n_movies)
    base = model.item_bias + np.float32(model.global_mean)

    def batch(start: int) -> None:
        where = known[start:start + _BATCH]
        b = rows[where]
        s = model.user_factors[b] @ model.item_factors.T
        s += base
        s += model.user_bias[b][:, None]
        starts, ends = model.seen_indptr[b], model.seen_indptr[b + 1]
        lengths = ends - starts
        line = np.repeat(np.arange(len(b)), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        s[line, model.seen_indices[np.repeat(starts, lengths) + offsets]] = -np.inf
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < model.n_movies else np.tile(
            np.arange(model.n_movies), (len(b), 1))
        top_scores = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
        out[where, :kk] = np.where(np.isfinite(top_scores), top, -1)

    starts = range(0, len(known), _BATCH)
    workers = min(len(starts), os.cpu_count() or 1)
    if workers > 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"), ThreadPoolExecutor(workers) as pool:   # one core per batch
            list(pool.map(batch, starts))
    else:
        for start in starts:
            batch(start)
    return out


def evaluate(model: FactorModel, dataset: Dataset, params: dict | None = None, *, name: str = "model",
             targets: Targets | None = None, any_watch: Targets | None = None) -> Evaluation:
    """Every offline metric of `model` on `dataset`'s validation window; with `any_watch` (the
    targets when any watch is relevant), the list metrics on those too, as `<metric>_any_watch`,
    from the same lists."""
    p = section(params, "evaluate")
    k = int(p["k"])
    targets = targets or relevant_targets(dataset, params)
    metrics = rating_errors(model, dataset)

    listed_users = targets.users if any_watch is None else np.union1d(targets.users, any_watch.users)
    all_lists = top_k_lists(model, index_of(model.user_ids, listed_users), k)
    lists = all_lists[np.searchsorted(listed_users, targets.users)]
    per_user, n_relevant = _per_user(model, lists, targets, k)
    for metric, values in per_user.items():
        metrics[f"{metric}@{k}"] = _mean(values)
    if any_watch is not None:
        wide, _ = _per_user(model, all_lists[np.searchsorted(listed_users, any_watch.users)], any_watch, k)
        metrics.update({f"{metric}@{k}_any_watch": _mean(values) for metric, values in wide.items()})
        metrics["users_any_watch"] = float(len(any_watch.users))
    listed = lists[lists >= 0]
    popularity = _model_popularity(model, dataset)
    metrics[f"coverage@{k}"] = round(len(np.unique(listed)) / model.n_movies, 6)
    metrics[f"popularity_bias@{k}"] = _mean(popularity[listed])
    metrics["users"] = float(len(targets.users))
    metrics["relevant_per_user"] = _mean(n_relevant)
    metrics["light_max_history"] = targets.light_max_history
    metrics["caused_watches_excluded"] = float(targets.caused_excluded)
    metrics = {key: value for key, value in metrics.items() if np.isfinite(value)}  # no users: no metric

    by_activity = {}
    for group in ACTIVITY_GROUPS:
        mask = targets.activity == group
        by_activity[group] = {"users": float(mask.sum())}
        if mask.any():
            by_activity[group].update({f"{m}@{k}": _mean(v[mask]) for m, v in per_user.items()})
    return Evaluation(name=name, metrics=metrics, by_activity=by_activity, users=targets.users,
                      ndcg_per_user=per_user["ndcg"], per_user={f"{m}@{k}": v for m, v in per_user.items()})


def _per_user(model: FactorModel, lists: np.ndarray, targets: Targets, k: int
              ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each list metric per evaluated user (lists in `targets.users` order), and relevant counts."""
    user_pos = np.searchsorted(targets.users, targets.pairs["user_id"].to_numpy(np.int64))
    n_relevant = np.bincount(user_pos, minlength=len(targets.users))
    rel_movie = model.movie_index(targets.pairs["movie_id"].to_numpy())
    keys = user_pos[rel_movie >= 0] * model.n_movies + rel_movie[rel_movie >= 0]
    list_keys = np.arange(len(targets.users))[:, None] * model.n_movies + lists
    hits = np.isin(list_keys, keys) & (lists >= 0)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)[np.minimum(n_relevant, k) - 1] if len(n_relevant) else np.empty(0)
    n_hits = hits.sum(axis=1)
    return {"precision": n_hits / k, "recall": n_hits / np.maximum(n_relevant, 1),
            "ndcg": (hits * discount).sum(axis=1) / np.where(ideal > 0, ideal, 1.0),
            "hit_rate": (n_hits > 0).astype(np.float64)}, n_relevant


def rating_errors(model: FactorModel, dataset: Dataset) -> dict[str, float]:
    """RMSE and MAE of the clipped predicted ratings over every validation rating."""
    r = dataset.valid_ratings
    if r.empty:
        return {"ratings": 0.0}
    rec = LoadedRecommender()
    rec.model = model
    err = rec.predict(r["user_id"].to_numpy(), r["movie_id"].to_numpy()) - r["rating"].to_numpy(np.float64)
    return {"rmse": round(float(np.sqrt(np.mean(err ** 2))), 6), "mae": round(float(np.mean(np.abs(err))), 6),
            "ratings": float(len(r))}


def popularity_baseline(dataset: Dataset) -> FactorModel:
    """The yardstick: most popular first, fitted on the same train period."""
    return PopularityRecommender().fit(dataset).fitted


def evaluate_with_baseline(model: FactorModel, dataset: Dataset, params: dict | None = None, *,
                           name: str = "model", references: dict[str, tuple[str, FactorModel]] | None = None
                           ) -> dict[str, Any]:
    """The evaluation set one evaluate step writes: the candidate, the popularity baseline on the
    same split, and reference models by role, e.g. {"stable": (version, model)}, as a JSON-ready
    dict (a reference's `name` is its version)."""
    p = section(params, "evaluate")
    targets = relevant_targets(dataset, params)
    wide = relevant_targets(dataset, params, watch="any") if p["relevant_watch"] != "any" else None
    candidate = evaluate(model, dataset, params, name=name, targets=targets, any_watch=wide)
    baseline = evaluate(popularity_baseline(dataset), dataset, params, name="popularity", targets=targets,
                        any_watch=wide)
    refs = {role: evaluate(m, dataset, params, name=version, targets=targets, any_watch=wide)
            for role, (version, m) in (references or {}).items()}
    primary = p["primary_metric"]  # one of LIST_METRICS at k: the params schema checks it
    if primary in baseline.metrics:
        candidate.metrics[f"baseline_{primary}"] = baseline.metrics[primary]
    return {"k": int(p["k"]), "primary_metric": primary, "snapshot": dataset.snapshot_hash,
            "relevance": relevance_text(p),
            "candidate": candidate.to_dict(), "baseline": baseline.to_dict(),
            "references": {role: ev.to_dict() for role, ev in refs.items()},
            "comparisons": paired_comparisons(candidate, {"popularity": baseline, **refs}, params)}


def relevance_text(p: dict) -> str:
    """What counts as relevant, in words (the report prints it)."""
    watched = ("watched to at least {:.0%} of its length (the longest any user streamed)".format(
        float(p["completed_share"])) if p["relevant_watch"] == "completed" else "watched")
    beside = "; '_any_watch' metrics count any watch" if p["relevant_watch"] == "completed" else ""
    return (f"{watched}, or rated >= {p['relevant_min_rating']}, in the validation window; unseen before; "
            f"not a watch a served list caused (the online join's attribution rule){beside}")


def paired_comparisons(candidate: Evaluation, others: dict[str, Evaluation], params: dict | None = None
                       ) -> dict[str, Any]:
    """The candidate against each other model on the primary metric, user by user: the mean of
    the per-user differences (candidate - other) with its paired bootstrap interval.

    The interval's level is simultaneous over the algorithms trained on the same split
    (`train.algorithms`; Bonferroni): when the best of several is kept, each one's interval
    still holds with the stated confidence, so choosing does not make the winner look better
    than it is."""
    p = section(params, "evaluate")
    primary, confidence = p["primary_metric"], float(p["gate_confidence"])
    choices = max(1, len(section(params, "train")["algorithms"]))
    level = 1.0 - (1.0 - confidence) / choices
    out: dict[str, Any] = {"metric": primary, "confidence": confidence, "simultaneous_over": choices,
                           "level": round(level, 6), "resamples": int(p["gate_resamples"]), "by_role": {}}
    mine = candidate.per_user.get(primary)
    for role, other in others.items():
        theirs = other.per_user.get(primary)
        if mine is None or theirs is None or len(mine) != len(theirs):
            continue
        out["by_role"][role] = paired_interval(mine - theirs, level, int(p["gate_resamples"]), int(p["gate_seed"]))
        out["by_role"][role]["name"] = other.name
    return out


def paired_interval(differences: np.ndarray, level: float = 0.95, resamples: int = 1000,
                    seed: int = 0) -> dict[str, float]:
    """Mean of per-user differences and its percentile bootstrap interval (users resampled).

    Vectorised and exact in distribution: a resample of n users draws Binomial(n, m/n) of the m
    users whose difference is not zero (most users miss with both lists) and zeros for the rest,
    so the cost is resamples x m draws, in chunks of at most ~8M. Beyond `BOOTSTRAP_MAX_DRAWS`
    (course scale: 200k users) the mean is normal to well within the interval's rounding, and
    the normal interval mean +- z sd / sqrt(n) is used (`method` says which; a unit test and
    `benchmarks/bench_gate.py` check the two agree)."""
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    if n == 0:
        return {"difference": float("nan"), "low": float("nan"), "high": float("nan"), "width": float("nan"),
                "users": 0, "level": level, "method": "none"}
    nonzero = d[d != 0]
    m = len(nonzero)
    if m * resamples > BOOTSTRAP_MAX_DRAWS:
        half = NormalDist().inv_cdf(1 - (1 - level) / 2) * float(d.std(ddof=1)) / np.sqrt(n)
        low, high = d.mean() - half, d.mean() + half
        return {"difference": round(float(d.mean()), 6), "low": round(float(low), 6), "high": round(float(high), 6),
                "width": round(float(high - low), 6), "users": int(n), "level": round(level, 6),
                "method": "normal"}
    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    if m:
        chunk = max(1, min(resamples, 8_000_000 // max(1, m)))
        for start in range(0, resamples, chunk):
            counts = rng.binomial(n, m / n, size=min(chunk, resamples - start))
            sums = np.concatenate([[0.0], np.cumsum(nonzero[rng.integers(0, m, size=int(counts.sum()))])])
            ends = np.cumsum(counts)
            means[start:start + len(counts)] = (sums[ends] - sums[ends - counts]) / n
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"difference": round(float(d.mean()), 6), "low": round(float(low), 6), "high": round(float(high), 6),
            "width": round(float(high - low), 6), "users": int(n), "level": round(level, 6), "method": "bootstrap"}


def pick_winner(evaluations: dict[str, dict[str, float]], primary: str = "ndcg@20") -> str:
    """The name whose metrics are best on the primary metric (ties: the first)."""
    scored = [(name, float(m.get(primary, float("-inf")))) for name, m in evaluations.items()]
    return max(scored, key=lambda item: item[1])[0] if scored else ""


def _model_popularity(model: FactorModel, dataset: Dataset) -> np.ndarray:
    """Share of train users who rated or watched each of the model's movies (0 if unknown)."""
    share = dataset.movie_popularity() / max(1, dataset.n_users)
    out = np.zeros(model.n_movies)
    idx = model.movie_index(dataset.movie_ids)
    out[idx[idx >= 0]] = share[idx >= 0]
    return out


def _mean(values: np.ndarray) -> float:
    return round(float(np.mean(values)), 6) if len(values) else float("nan")
