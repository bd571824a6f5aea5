"""Implicit-feedback models: ALS and BPR (the `implicit` library) learning from what users watch.

Explicit ratings are a small part of what the service knows; every watch says a user chose a
movie and how much of it they sat through. These engines learn from every (user, movie) pair the
user watched or rated in the train period:

- preference p_ui = 1 for each such pair (0 elsewhere);
- confidence (ALS) c_ui = 1 + alpha * (f_ui + rating_weight * g_ui), where f_ui is the share of
  the movie watched (distinct minutes over the most minutes any train user watched of that
  movie, the best estimate of its length the event log gives) and g_ui = (rating - 3) / 2 for a
  rating above 3, else 0 (a good rating is a strong positive even without a watch);
- BPR learns the ranking of seen over unseen movies from the same pairs (binary).

Both export to the serving format unchanged: `score(u) = Q @ p_u` with a zero global mean and
zero biases (BPR's item bias is a factor column of `implicit` itself, matched by a column of
ones in the user factors), so the exported artifact scores every movie exactly as the library
does and ranks exactly as its `recommend` (a unit test checks). ALS may add a prior as the
artifact's item bias (both weights 0 by default; params.yaml and the search set them):

- `popularity_weight` times the standardized log popularity of the movie: where users mostly
  follow what is popular, it orders a personalized candidate list the way they do;
- `quality_weight` times the movie's standardized quality (`quality_prior`): how much of it the
  users who chose it watched, and how they rated it. Choosing a movie says it drew the user;
  finishing it and rating it well say it was worth it, which is what a list should offer.

With a popularity prior, the item bias is also the list of users the model does not know (the
artifact's cold-start order): the most popular movies, reordered by their quality. These models
rank; they do not predict stars, so their RMSE is not meaningful.

    rec = make_recommender("als", params["train"]["als"]).fit(dataset)
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from components.training.dataset import Dataset
from components.training.recommenders import Recommender, build_model


def watched_share(dataset: Dataset) -> sp.csr_matrix:
    """Users x movies, f_ui: the distinct minutes u watched of a movie over the most any train user
    watched of it (the best estimate of its length the event log gives)."""
    watch = dataset.watch_csr.tocsc()
    longest = np.maximum(watch.max(axis=0).toarray().ravel(), 1.0)
    return (watch @ sp.diags(1.0 / longest)).tocsr()


def confidence_signal(dataset: Dataset, rating_weight: float) -> sp.csr_matrix:
    """Users x movies, f_ui + rating_weight * g_ui (see the module docstring) on every seen pair,
    plus a floor of 1e-3 so that a pair seen with no signal (a low rating, no watch) stays stored."""
    fraction = watched_share(dataset)
    ratings = dataset.ratings_csr
    good = ratings.copy()
    good.data = np.clip((good.data - 3.0) / 2.0, 0.0, None)
    seen = dataset.seen_csr.astype(np.float32)
    signal = (fraction + float(rating_weight) * good + 1e-3 * seen).tocsr().astype(np.float32)
    signal.sort_indices()
    return signal


def popularity_prior(dataset: Dataset) -> np.ndarray:
    """Per movie, the standardized log of how many train users rated or watched it."""
    pop = np.log1p(dataset.movie_popularity().astype(np.float64))
    return (pop - pop.mean()) / (pop.std() or 1.0)


def quality_prior(dataset: Dataset, shrinkage: float) -> np.ndarray:
    """Per movie, how much the train users who chose it liked it, standardized: the mean share of
    it they watched and its mean rating, each shrunk toward the catalogue's mean by `shrinkage`
    pseudo-users (a movie few users saw is taken as average), standardized, and averaged over the
    signals the data holds (a log of ratings alone, as MovieLens, gives the rating part alone)."""
    parts = [_shrunk_column_mean(matrix.tocsc(), shrinkage)
             for matrix in (watched_share(dataset), dataset.ratings_csr) if matrix.nnz]
    if not parts:
        return np.zeros(dataset.n_movies)
    return np.mean([_standardized(part) for part in parts], axis=0)


def _shrunk_column_mean(matrix: sp.csc_matrix, shrinkage: float) -> np.ndarray:
    """Each column's mean over its stored values, with `shrinkage` pseudo-values at the overall mean."""
    sums = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)
    counts = np.diff(matrix.indptr).astype(np.float64)
    overall = sums.sum() / counts.sum()
    return (sums + shrinkage * overall) / np.maximum(counts + shrinkage, 1e-12)


def _standardized(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)


def _threads(value) -> int:
    """0 means every core the library sees."""
    return int(value or 0)


class _ImplicitFactorization(Recommender):
    """Shared export of an `implicit` model: its factors as they are, zero mean and biases."""

    def _library_model(self):
        raise NotImplementedError

    def _user_items(self, dataset: Dataset) -> sp.csr_matrix:
        raise NotImplementedError

    def _item_bias(self, dataset: Dataset) -> np.ndarray:
        """`popularity_weight` times the standardized log popularity of each movie plus
        `quality_weight` times its quality (`quality_prior`); 0 when both weights are 0."""
        bias = np.zeros(dataset.n_movies)
        popularity, quality = (float(self.params.get(key, 0.0)) for key in ("popularity_weight", "quality_weight"))
        if popularity:
            bias += popularity * popularity_prior(dataset)
        if quality:
            bias += quality * quality_prior(dataset, float(self.params.get("quality_shrinkage", 5.0)))
        return bias

    def fit(self, dataset: Dataset) -> _ImplicitFactorization:
        import implicit.cpu.als  # noqa: F401  (loads the BLAS the limit below applies to)
        from threadpoolctl import threadpool_limits

        started = time.perf_counter()
        user_items = self._user_items(dataset)
        with threadpool_limits(1, "blas"):      # the library's own threads, not BLAS's, do the work
            algo = self._library_model()
            algo.fit(user_items, show_progress=False)
        self.algo, self.user_items = algo, user_items
        user_factors = np.asarray(algo.user_factors, dtype=np.float32)
        item_factors = np.asarray(algo.item_factors, dtype=np.float32)
        item_bias = self._item_bias(dataset)
        # with a popularity prior, users the model does not know get the prior's order (popularity
        # and quality); without one the item bias alone would rank obscure movies first
        cold_start = item_bias if float(self.params.get("popularity_weight", 0.0)) else None
        self.model = build_model(dataset, 0.0, np.zeros(dataset.n_users), item_bias, user_factors, item_factors,
                                 cold_start=cold_start)
        self.fit_timings = {"fit_seconds": time.perf_counter() - started}
        return self


class ImplicitALS(_ImplicitFactorization):
    """Weighted matrix factorization for implicit feedback (Hu, Koren, Volinsky 2008), `implicit`'s
    conjugate-gradient ALS on the machine's cores."""

    name = "als"

    def _library_model(self):
        from implicit.cpu.als import AlternatingLeastSquares

        p = self.params
        return AlternatingLeastSquares(factors=int(p.get("factors", 64)),
                                       regularization=float(p.get("regularization", 0.05)), alpha=1.0,
                                       iterations=int(p.get("iterations", 15)), num_threads=_threads(p.get("threads")),
                                       random_state=p.get("random_state", 0), calculate_training_loss=False)

    def _user_items(self, dataset: Dataset) -> sp.csr_matrix:
        signal = confidence_signal(dataset, float(self.params.get("rating_weight", 1.0)))
        signal.data = 1.0 + float(self.params.get("alpha", 10.0)) * signal.data
        return signal


class ImplicitBPR(_ImplicitFactorization):
    """Bayesian personalized ranking (Rendle et al. 2009), `implicit`'s SGD on the machine's cores;
    its item bias is the last factor column (the user side holds a constant 1 there)."""

    name = "bpr"

    def _library_model(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        p = self.params
        return BayesianPersonalizedRanking(factors=int(p.get("factors", 64)),
                                           learning_rate=float(p.get("learning_rate", 0.05)),
                                           regularization=float(p.get("regularization", 0.01)),
                                           iterations=int(p.get("iterations", 100)),
                                           num_threads=_threads(p.get("threads")),
                                           random_state=p.get("random_state", 0))

    def _user_items(self, dataset: Dataset) -> sp.csr_matrix:
        return dataset.seen_csr.astype(np.float32)
