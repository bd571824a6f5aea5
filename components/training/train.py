"""Train: Surprise SVD and SVD++ behind the `Recommender` interface, exported to the serving format.

Surprise learns on its own inner ids; `fit` maps its biases and factors back to the platform's
id order (`Dataset.user_ids` / `movie_ids`) and, for SVD++, folds the implicit-feedback term
into the user vector, `p_u + |N(u)|^-1/2 * sum_{j in N(u)} y_j`, so serving stays one mat-vec.
N(u), the implicit set, is what u rated (Surprise's choice) or, with `implicit_set:
rated_or_watched`, every movie u rated or watched (Koren's N(u): any implicit preference). The
latter hands Surprise a trainset whose `ur` lists the watched movies too while its
`all_ratings()`, which the SGD and the global mean iterate, yields only the ratings; a movie
only watched gets an inner id and a y_j, and no q_i (set to 0: no rating ever fitted it).
After every fit a sample of Surprise's own unclipped `predict(...).est` is compared with the
exported model's scores: an export that drifts from what Surprise learned fails loudly.

A user who only watched (no rating in the train period) is unknown to Surprise, whose estimate for
such a user is `mu + b_i`: a ranking by average rating that favours obscure movies. The export
scores them as the popularity baseline scores everyone instead, through one extra factor: 1 on
those users' side, `popularity bias - b_i` on each movie's (0 on every rater's side, so what
Surprise learned is unchanged). Present only when the dataset has such users.

    rec, card = train(dataset, "svdpp", params)      # params: the full params.yaml dict
    rec.save(store, card)                            # or rec.fitted.save_dir(out_dir, card): the same folder

`make_recommender` (every engine by name) lives here: this module imports the recommender
interface and the baselines, never the other way round.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from components.core import layout
from components.core.model_artifact import FactorModel, ModelCard
from components.core.params import ALGORITHMS, section
from components.training.dataset import Dataset
from components.training.implicit_models import ImplicitALS, ImplicitBPR
from components.training.recommenders import (
    RATING_SCALE,
    LoadedRecommender,
    PopularityRecommender,
    RandomRecommender,
    Recommender,
    build_model,
    popularity_item_bias,
)

COMMIT_ENV = "MOVIEREC_COMMIT"
EXPORT_TOLERANCE = 1e-3      # float32 factors against Surprise's float64 estimate


class _SurpriseFactorization(Recommender):
    """Shared fit of Surprise's SVD-family: build a trainset, fit, export, check the export."""

    surprise_class = ""
    own_params: tuple[str, ...] = ()      # keys of ours, not Surprise's

    def fit(self, dataset: Dataset) -> _SurpriseFactorization:
        import surprise

        clock = time.perf_counter
        t0 = clock()
        algo = getattr(surprise, self.surprise_class)(
            **{key: value for key, value in self.params.items() if key not in self.own_params})
        trainset = self._trainset(dataset)
        t1 = clock()
        self._fit_algo(algo, trainset, dataset)
        self._after_fit(algo, trainset)
        t2 = clock()
        self.algo = algo
        self.model = self._export(algo, trainset, dataset)
        t3 = clock()
        self.export_error = check_export(self.model, algo, trainset)
        self.fit_timings = {"trainset_seconds": t1 - t0, "surprise_fit_seconds": t2 - t1,
                            "export_seconds": t3 - t2, "check_seconds": clock() - t3}
        return self

    def _export(self, algo, trainset, dataset: Dataset) -> FactorModel:
        users = np.fromiter(trainset._raw2inner_id_users.keys(), dtype=np.int64, count=trainset.n_users)
        inner_users = np.fromiter(trainset._raw2inner_id_users.values(), dtype=np.int64, count=trainset.n_users)
        items = np.fromiter(trainset._raw2inner_id_items.keys(), dtype=np.int64, count=trainset.n_items)
        inner_items = np.fromiter(trainset._raw2inner_id_items.values(), dtype=np.int64, count=trainset.n_items)
        k = algo.pu.shape[1]
        bu, bi = np.zeros(dataset.n_users), np.zeros(dataset.n_movies)
        pu, qi = np.zeros((dataset.n_users, k)), np.zeros((dataset.n_movies, k))
        bu[users], bi[items] = algo.bu[inner_users], algo.bi[inner_items]
        pu[users] = self._user_vectors(algo, trainset)[inner_users]
        qi[items] = algo.qi[inner_items]
        unrated = np.ones(dataset.n_users, dtype=bool)
        unrated[users] = False
        if unrated.any():       # watched only: the popularity baseline's scores (module docstring)
            pu = np.hstack([pu, unrated[:, None].astype(np.float64)])
            qi = np.hstack([qi, (popularity_item_bias(dataset) - bi)[:, None]])
        return build_model(dataset, trainset.global_mean, bu, bi, pu, qi)

    def _trainset(self, dataset: Dataset):
        return surprise_trainset(dataset)

    def _fit_algo(self, algo, trainset, dataset: Dataset) -> None:
        algo.fit(trainset)

    def _after_fit(self, algo, trainset) -> None:
        pass

    def _user_vectors(self, algo, trainset) -> np.ndarray:
        return algo.pu


class SurpriseSVD(_SurpriseFactorization):
    """Funk SVD with biases (surprise.SVD): r = mu + b_u + b_i + q_i . p_u, fitted by Surprise's SGD
    compiled over arrays (`components.training.surprise_sgd.fit_svd`, bit for bit Surprise's)."""

    name = "svd"
    surprise_class = "SVD"

    def _fit_algo(self, algo, trainset, dataset: Dataset) -> None:
        from components.training.surprise_sgd import fit_svd

        users, items, ratings = inner_ratings(trainset, dataset)
        fit_svd(algo, trainset, (_indptr(users, trainset.n_users), items, ratings))


class SurpriseSVDpp(_SurpriseFactorization):
    """SVD++ (surprise.SVDpp): the rated items' implicit factors y_j are folded into p_u at export.

    `sgd: per_user` (the default) trains Surprise's model with the implicit term updated once per
    user (`components.training.surprise_sgd`: linear in a user's history instead of quadratic);
    `sgd: surprise` runs Surprise's own `fit`."""

    name = "svdpp"
    surprise_class = "SVDpp"
    own_params = ("implicit_set", "sgd")

    def _fit_algo(self, algo, trainset, dataset: Dataset) -> None:
        users, items, ratings = inner_ratings(trainset, dataset)
        if hasattr(trainset, "rating_ur"):     # N(u) holds watched movies too: read it off the trainset
            self._implicit_sets = implicit_matrix(trainset)
        else:                                  # N(u) = R(u), entry for entry as in `ur`
            self._implicit_sets = sp.csr_matrix((np.ones(len(items)), items, _indptr(users, trainset.n_users)),
                                                shape=(trainset.n_users, trainset.n_items))
        if self.params.get("sgd", "per_user") == "surprise":
            if isinstance(trainset.ur, RatingLists):    # Surprise reads ur[u] once per rating: make them once
                trainset.ur, trainset.ir = defaultdict(list, trainset.ur), defaultdict(list, trainset.ir)
            algo.fit(trainset)
        else:
            from components.training.surprise_sgd import fit_svdpp_per_user

            fit_svdpp_per_user(algo, trainset, (_indptr(users, trainset.n_users), items, ratings), self._implicit_sets)

    def _trainset(self, dataset: Dataset):
        trainset = surprise_trainset(dataset)
        if self.params.get("implicit_set", "rated") == "rated_or_watched":
            trainset = with_watched_implicit_set(trainset, dataset)
        return trainset

    def _after_fit(self, algo, trainset) -> None:
        if hasattr(trainset, "n_rated_items"):
            algo.qi[trainset.n_rated_items:] = 0.0      # only watched: no rating ever fitted q_i

    def _user_vectors(self, algo, trainset) -> np.ndarray:
        rated = self._implicit_sets
        counts = np.asarray(rated.sum(axis=1)).ravel()
        norm = np.divide(1.0, np.sqrt(counts), out=np.zeros_like(counts, dtype=np.float64), where=counts > 0)
        return algo.pu + sp.diags(norm) @ (rated @ algo.yj)


def surprise_trainset(dataset: Dataset):
    """The dataset's train ratings as a Surprise trainset; raw ids are the platform's indices (u, i).

    The trainset `surprise.Dataset.load_from_df(frame).build_full_trainset()` builds (inner ids in
    order of first appearance, each user's and movie's ratings in the frame's order; a unit test
    checks them equal), put together from arrays: Surprise's own loop over millions of rows took
    9 s of SVD++'s 21 at course scale. Its `ur` and `ir` are `RatingLists`, built per user or movie
    when read: the compiled fits never read them, and 2 x 4.6M Python tuples took 3 s and a GB."""
    import surprise

    frame = dataset.train_ratings
    u, i = frame["u"].to_numpy(np.int64), frame["i"].to_numpy(np.int64)
    ratings = frame["rating"].to_numpy(np.float64)
    users, inner_u = _first_appearance(u)
    items, inner_i = _first_appearance(i)
    by_user = np.argsort(inner_u, kind="stable")           # all_ratings() order
    by_item = np.argsort(inner_i, kind="stable")
    trainset = surprise.Trainset(RatingLists(_indptr(inner_u[by_user], len(users)), inner_i[by_user], ratings[by_user]),
                                 RatingLists(_indptr(inner_i[by_item], len(items)), inner_u[by_item], ratings[by_item]),
                                 len(users), len(items), len(frame), (1, 5),
                                 dict(zip(users.tolist(), range(len(users)), strict=True)),
                                 dict(zip(items.tolist(), range(len(items)), strict=True)))
    if len(frame):      # Surprise's own mean, over all_ratings() in its order, without 5M Python tuples
        trainset._global_mean = np.mean(ratings[by_user])
    return trainset


class RatingLists(Mapping):
    """Surprise's `ur` (or `ir`) over CSR arrays: inner id -> [(other inner id, rating), ...] in
    Surprise's order, each list made when it is read. Like Surprise's `defaultdict(list)`, an id
    it does not hold reads as an empty list (without being added)."""

    def __init__(self, indptr: np.ndarray, other: np.ndarray, ratings: np.ndarray):
        self.indptr, self.other, self.ratings = indptr, other, ratings

    def __getitem__(self, key) -> list[tuple[int, float]]:
        if key not in self:
            return []
        a, b = int(self.indptr[key]), int(self.indptr[key + 1])
        return list(zip(self.other[a:b].tolist(), self.ratings[a:b].tolist(), strict=True))

    def __contains__(self, key) -> bool:
        return isinstance(key, (int, np.integer)) and 0 <= key < len(self)

    def __iter__(self):
        return iter(range(len(self)))

    def __len__(self) -> int:
        return len(self.indptr) - 1


def _first_appearance(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct raw ids in order of first appearance, each row's position in that order)."""
    import pandas as pd

    codes, distinct = pd.factorize(raw)      # codes follow first appearance; one hash pass, no sort
    return np.asarray(distinct, dtype=raw.dtype), codes.astype(np.int64)


@functools.cache
def _implicit_set_trainset():
    import surprise

    class _ImplicitSetTrainset(surprise.Trainset):
        """A trainset whose `ur` (the implicit sets SVD++ reads) holds more movies than the
        ratings `all_ratings()` yields (the ones SGD and the global mean use); the extra entries'
        rating is NaN so that any use of one as a rating shows."""

        def __init__(self, base, ur, n_items, raw2inner_items):
            super().__init__(ur, base.ir, base.n_users, n_items, base.n_ratings, base.rating_scale,
                             base._raw2inner_id_users, raw2inner_items)
            self.rating_ur, self.n_rated_items = base.ur, base.n_items

        def all_ratings(self):
            for u, u_ratings in self.rating_ur.items():
                for i, r in u_ratings:
                    yield u, i, r

    return _ImplicitSetTrainset


def with_watched_implicit_set(trainset, dataset: Dataset):
    """`trainset` whose implicit sets N(u) add the movies each rater watched without rating;
    a movie only watched gets the next inner id. Users who never rated stay out (no p_u to fit)."""
    raw_users = np.fromiter(trainset._raw2inner_id_users.keys(), dtype=np.int64, count=trainset.n_users)
    inner_users = np.fromiter(trainset._raw2inner_id_users.values(), dtype=np.int64, count=trainset.n_users)
    raters = np.zeros(dataset.n_users, dtype=bool)
    raters[raw_users] = True
    watched = (dataset.seen_csr[raters].astype(np.int8) - (dataset.ratings_csr[raters] != 0).astype(np.int8)).tocsr()
    watched.eliminate_zeros()
    raw2inner_items = dict(trainset._raw2inner_id_items)
    for movie in np.unique(watched.indices):
        raw2inner_items.setdefault(int(movie), len(raw2inner_items))
    inner_of_raw_user = dict(zip(raw_users.tolist(), inner_users.tolist(), strict=True))
    ur = {u: list(ratings) for u, ratings in trainset.ur.items()}
    for row, raw_u in enumerate(np.flatnonzero(raters).tolist()):
        extra = watched.indices[watched.indptr[row]:watched.indptr[row + 1]]
        ur[inner_of_raw_user[raw_u]].extend((raw2inner_items[int(j)], float("nan")) for j in extra)
    return _implicit_set_trainset()(trainset, ur, len(raw2inner_items), raw2inner_items)


def inner_ratings(trainset, dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The train ratings as (inner user, inner item, rating) arrays in `trainset.all_ratings()` order
    (users by inner id, the order Surprise numbered them in; each user's ratings in the frame's
    order), from the dataset's frame without a Python loop over millions of ratings."""
    frame = dataset.train_ratings
    users = _inner_ids(trainset._raw2inner_id_users, dataset.n_users)[frame["u"].to_numpy()]
    items = _inner_ids(trainset._raw2inner_id_items, dataset.n_movies)[frame["i"].to_numpy()]
    order = np.argsort(users, kind="stable")
    return users[order], items[order], frame["rating"].to_numpy(np.float64)[order]


def _inner_ids(raw2inner: dict, size: int) -> np.ndarray:
    table = np.full(size, -1, dtype=np.int64)
    table[np.fromiter(raw2inner.keys(), dtype=np.int64, count=len(raw2inner))] = np.fromiter(
        raw2inner.values(), dtype=np.int64, count=len(raw2inner))
    return table


def _indptr(sorted_users: np.ndarray, n_users: int) -> np.ndarray:
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(sorted_users, minlength=n_users), out=indptr[1:])
    return indptr


def implicit_matrix(trainset) -> sp.csr_matrix:
    """N(u) of SVD++ on Surprise's inner ids: 1 where inner item j is in inner user u's `ur` (rated, or
    also watched with `with_watched_implicit_set`)."""
    rows = [u for u, ratings in trainset.ur.items() for _ in ratings]
    cols = [j for ratings in trainset.ur.values() for j, _ in ratings]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(trainset.n_users, trainset.n_items))


def check_export(model: FactorModel, algo, trainset, sample: int = 50, seed: int = 0) -> float:
    """Max |FactorModel score - Surprise predict().est (unclipped)| over a sample of (user, movie)
    pairs; raise RuntimeError above `EXPORT_TOLERANCE`."""
    rng = np.random.default_rng(seed)
    raw_users = np.fromiter(trainset._raw2inner_id_users.keys(), dtype=np.int64, count=trainset.n_users)
    raw_items = np.fromiter(trainset._raw2inner_id_items.keys(), dtype=np.int64, count=trainset.n_items)
    worst = 0.0
    for u in rng.choice(raw_users, size=min(sample, len(raw_users)), replace=False):
        scores = model.scores(int(u))
        for i in rng.choice(raw_items, size=min(3, len(raw_items)), replace=False):
            est = algo.predict(int(u), int(i), clip=False).est
            worst = max(worst, abs(float(scores[int(i)]) - est))
    if worst > EXPORT_TOLERANCE:
        raise RuntimeError(f"exported factors disagree with Surprise by {worst:.2e} (> {EXPORT_TOLERANCE})")
    return worst


# -- the training stage ----------------------------------------------------------------------------

def train(dataset: Dataset, algorithm: str, params: dict | None = None) -> tuple[Recommender, ModelCard]:
    """Fit one algorithm on the dataset; return the recommender and its model card (not yet published).

    `params` is the full params dict (params.yaml); the algorithm's section `train.<algorithm>`
    holds its hyper-parameters. With `train.tune.mode: search` they are first chosen on an earlier
    time fold of the train period (`components.training.tune`); the card holds the chosen values
    as `params` and the search (every trial, the fold's scores) as `tuning`."""
    hyper = section(params, "train", algorithm)
    tuning: dict[str, Any] = {}
    started = time.perf_counter()
    if section(params, "train", "tune")["mode"] == "search":
        from components.training.tune import tune

        tuning = tune(dataset, algorithm, params)
        hyper = tuning["best_params"]
    tuning_seconds = time.perf_counter() - started
    rec = make_recommender(algorithm, hyper)
    started = time.perf_counter()
    rec.fit(dataset)
    seconds = time.perf_counter() - started
    model = rec.fitted
    trained_at = datetime.now(UTC)
    commit = code_commit()
    train_rmse = rating_rmse(model, dataset)
    card = ModelCard(version=model_version(algorithm, trained_at, dataset.snapshot_hash, hyper, commit),
                     algorithm=algorithm, params=hyper, data_snapshot=dataset.snapshot_hash, code_commit=commit,
                     trained_at=trained_at.strftime("%Y-%m-%dT%H:%M:%SZ"), training_seconds=round(seconds, 4),
                     n_users=model.n_users, n_movies=model.n_movies, n_factors=model.n_factors,
                     metrics={"train_rmse": round(train_rmse, 6)}, tuning=tuning)
    if tuning:
        card.metrics["tuning_seconds"] = round(tuning_seconds, 3)
        card.metrics[f"tune_fold_{tuning['metric']}"] = tuning["best_score"]
    export_error = getattr(rec, "export_error", None)
    if export_error is not None:
        card.metrics["export_max_abs_error"] = float(export_error)
    rec.card = card
    return rec, card


def rating_rmse(model: FactorModel, dataset: Dataset, chunk: int = 1 << 16) -> float:
    """RMSE of the model's clipped predictions of the train ratings (`Recommender.predict`'s), read
    by the dataset's indices: a model fitted on the dataset is in its id order, so millions of ids
    need no lookup (4 s at course scale). A model in another order goes through `predict`."""
    r = dataset.train_ratings
    if not (np.array_equal(model.user_ids, dataset.user_ids) and np.array_equal(model.movie_ids, dataset.movie_ids)):
        rec = LoadedRecommender()
        rec.model = model
        estimate = rec.predict(r["user_id"], r["movie_id"])
    else:
        u, i = r["u"].to_numpy(np.int64), r["i"].to_numpy(np.int64)
        estimate = np.full(len(u), model.global_mean, dtype=np.float64)
        estimate += model.user_bias[u]
        estimate += model.item_bias[i]
        for start in range(0, len(u), chunk):     # blocks: two (block x factors) gathers, not millions of rows
            rows = slice(start, start + chunk)
            estimate[rows] += np.einsum("ij,ij->i", model.user_factors[u[rows]], model.item_factors[i[rows]])
        estimate = np.clip(estimate, *RATING_SCALE)
    if not len(r):
        return 0.0
    return float(np.sqrt(np.mean((estimate - r["rating"].to_numpy(np.float64)) ** 2)))


def model_version(algorithm: str, when: datetime, snapshot: str, hyper: dict, commit: str) -> str:
    """`<algorithm>-<UTC yyyymmddThhmmss>-<8 hex of data, params and code>`, lowercase."""
    digest = hashlib.sha256(json.dumps([snapshot, hyper, commit], sort_keys=True, default=str).encode())
    version = f"{algorithm}-{when.astimezone(UTC).strftime('%Y%m%dT%H%M%S')}-{digest.hexdigest()[:8]}"
    return layout.check_version(version.lower())


def code_commit() -> str:
    """The git commit of the code (git rev-parse), else $MOVIEREC_COMMIT, else ''."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get(COMMIT_ENV, "")


ENGINES: dict[str, type[Recommender]] = {"svd": SurpriseSVD, "svdpp": SurpriseSVDpp, "als": ImplicitALS,
                                         "bpr": ImplicitBPR, "popularity": PopularityRecommender,
                                         "random": RandomRecommender}
assert set(ENGINES) == set(ALGORITHMS), "an engine per algorithm of the params schema"


def make_recommender(name: str, params: dict | None = None) -> Recommender:
    """A new, unfitted recommender by algorithm name; `params` are its hyper-parameters."""
    if name not in ENGINES:
        raise ValueError(f"unknown algorithm {name!r}; choose from {', '.join(ALGORITHMS)}")
    return ENGINES[name](params)


__all__: list[Any] = ["SurpriseSVD", "SurpriseSVDpp", "train", "model_version", "code_commit", "make_recommender",
                      "ALGORITHMS", "check_export", "surprise_trainset"]
