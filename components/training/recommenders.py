"""The recommender interface: fit on a `Dataset`, then score, recommend, save and load.

Every engine reduces to the serving format `components.core.model_artifact.FactorModel`
(`score = mu + b_u + b_i + Q @ p_u`). An engine implements only `fit`, which ends by setting
`self.model`; scoring, top-k, persistence and loading are shared here, so every engine is held
to one contract test (`tests/unit/training/test_recommender_contract.py`) and what is evaluated offline
is exactly what the predictor serves.

    rec = make_recommender("svd", params["train"]["svd"]).fit(dataset)   # components.training.train
    rec.recommend(42, k=20)              # unseen movie ids, best first
    version = rec.save(store, card)      # models/<version>/ in the store (written once)
    Recommender.load(store, version).recommend(42)

The registry of engines by name (`make_recommender`) is in `components.training.train`, beside
the Surprise engines: this module imports nothing of the training stage.

The baselines live here too: `PopularityRecommender` (the yardstick of offline evaluation and
a servable fallback) and `RandomRecommender` (a deliberately bad model for canary rollback tests).
Surprise's SVD and SVD++ are in `components.training.train`.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from components.core.model_artifact import FactorModel, ModelCard
from components.core.store import ArtifactStore
from components.training.dataset import Dataset, index_of

RATING_SCALE = (1.0, 5.0)


_PREDICT_CHUNK = 1 << 16  # pairs per block in `predict`: two (block x factors) copies, not millions of rows

class Recommender(ABC):
    """A movie recommender. Subclasses implement `fit`, which must set `self.model`."""

    name: ClassVar[str] = ""

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.params: dict[str, Any] = dict(params or {})
        self.model: FactorModel | None = None
        self.card: ModelCard | None = None

    @abstractmethod
    def fit(self, dataset: Dataset) -> Recommender:
        """Learn from `dataset`'s train period; set `self.model`; return self."""

    # -- delegated to the serving format ----------------------------------------------------
    @property
    def fitted(self) -> FactorModel:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(dataset) or load()")
        return self.model

    @property
    def movie_ids(self) -> np.ndarray:
        """Movie ids in score order."""
        return self.fitted.movie_ids

    def score(self, user_id: int) -> np.ndarray:
        """Predicted rating (unclipped) of every movie, in `movie_ids` order.

        An unknown user gets `mu + b_i`, Surprise's estimate for a user it has never seen."""
        m = self.fitted
        u = m.user_index(user_id)
        if u < 0:
            return m.item_bias + np.float32(m.global_mean)
        return m.scores(u)

    def predict(self, user_ids, movie_ids, clip: bool = True) -> np.ndarray:
        """Predicted ratings of (user, movie) pairs, vectorized (for RMSE/MAE).

        Unknown users or movies drop their terms, as Surprise does: mu + b_u, mu + b_i or mu."""
        m = self.fitted
        users = np.asarray(user_ids, dtype=np.int64)
        u, i = index_of(m.user_ids, users), m.movie_index(movie_ids)
        ku, ki = u >= 0, i >= 0
        est = np.full(len(users), m.global_mean, dtype=np.float64)
        est[ku] += m.user_bias[u[ku]]
        est[ki] += m.item_bias[i[ki]]
        both = np.flatnonzero(ku & ki)
        for start in range(0, len(both), _PREDICT_CHUNK):  # chunks: factor rows per pair, not per rating set
            rows = both[start:start + _PREDICT_CHUNK]
            est[rows] += np.einsum("ij,ij->i", m.user_factors[u[rows]], m.item_factors[i[rows]])
        return np.clip(est, *RATING_SCALE) if clip else est

    def recommend(self, user_id: int, k: int = 20) -> list[str]:
        """Top-k movie ids the user has not rated or watched, best first (unknown user: most popular)."""
        return self.fitted.recommend(user_id, k)[0]

    def save(self, store: ArtifactStore, card: ModelCard) -> str:
        """Publish the model as `card.version` in the store; return the version."""
        version = self.fitted.save(store, card)
        self.card = card
        return version

    @classmethod
    def load(cls, store: ArtifactStore, version: str) -> Recommender:
        """Load a published version (checksums verified). On the base class, any algorithm loads."""
        model, card = FactorModel.load(store, version)
        target = LoadedRecommender if inspect.isabstract(cls) else cls
        rec = target(card.params)
        rec.model, rec.card = model, card
        return rec


class LoadedRecommender(Recommender):
    """A published model read back from the store: serves, but cannot be refit."""

    name = "loaded"

    def fit(self, dataset: Dataset) -> Recommender:
        raise TypeError("a loaded model cannot be refit: make_recommender(card.algorithm, card.params)")


def build_model(dataset: Dataset, global_mean: float, user_bias: np.ndarray, item_bias: np.ndarray,
                user_factors: np.ndarray, item_factors: np.ndarray, cold_start: np.ndarray | None = None
                ) -> FactorModel:
    """A `FactorModel` in the dataset's id order, with its seen movies and the list of users it does
    not know: the popularity ranking, or the movies by `cold_start` scores (best first, ties by
    popularity) when the engine has a prior of its own."""
    seen = dataset.seen_csr
    popular = dataset.popular_order()
    if cold_start is not None:
        popular = popular[np.argsort(-np.asarray(cold_start)[popular], kind="stable")]
    return FactorModel(global_mean=float(global_mean), user_bias=user_bias, item_bias=item_bias,
                       user_factors=user_factors, item_factors=item_factors, user_ids=dataset.user_ids,
                       movie_ids=dataset.movie_ids, seen_indptr=seen.indptr, seen_indices=seen.indices,
                       popular=popular)


class PopularityRecommender(Recommender):
    """Most popular first, the same list for everyone (minus what each user has seen).

    Popularity = how many train users rated or watched a movie. To be usable for RMSE too, the
    item bias is that popularity (standardized log count) times a slope fitted by least squares
    on the train ratings and kept positive, so the ranking is the popularity ranking."""

    name = "popularity"

    def fit(self, dataset: Dataset) -> PopularityRecommender:
        n_u, n_m = dataset.n_users, dataset.n_movies
        self.model = build_model(dataset, dataset.global_mean, np.zeros(n_u), popularity_item_bias(dataset),
                                 np.zeros((n_u, 1)), np.zeros((n_m, 1)))
        return self


def popularity_item_bias(dataset: Dataset) -> np.ndarray:
    """The popularity baseline's item bias: the standardized log count of train users who rated or
    watched each movie, times its least-squares slope on the train ratings (kept positive)."""
    pop = np.log1p(dataset.movie_popularity().astype(np.float64))
    z = (pop - pop.mean()) / (pop.std() or 1.0)
    r = dataset.train_ratings
    zi, y = z[r["i"].to_numpy()], r["rating"].to_numpy(np.float64) - dataset.global_mean
    slope = float(zi @ y / (zi @ zi)) if zi @ zi > 0 else 0.0
    return max(slope, 1e-3) * z


class RandomRecommender(Recommender):
    """Random factors (seeded): a servable model that is reliably bad, to exercise rollbacks."""

    name = "random"

    def fit(self, dataset: Dataset) -> RandomRecommender:
        rng = np.random.default_rng(int(self.params.get("seed", 0)))
        k = int(self.params.get("n_factors", 8))
        n_u, n_m = dataset.n_users, dataset.n_movies
        self.model = build_model(dataset, dataset.global_mean, np.zeros(n_u), np.zeros(n_m),
                                 rng.normal(0, 0.5, (n_u, k)), rng.normal(0, 0.5, (n_m, k)))
        return self
