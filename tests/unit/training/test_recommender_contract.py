"""One contract every recommender is held to, applied to each implementation by subclassing.

A new engine joins by adding a three-line subclass of `RecommenderContract`: it then has to fit
the same synthetic dataset, score every movie, recommend k distinct unseen movies best first,
give strangers its cold-start list (popularity, or its own prior), survive a save/load round trip
unchanged, and refuse a corrupted artifact.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from components.core import layout
from components.core.model_artifact import ArtifactError, ModelCard
from components.core.store import LocalStore
from components.training.preprocess import build_dataset
from components.training.recommenders import LoadedRecommender, Recommender
from components.training.train import make_recommender
from tests.synthetic_events import synthetic_events

UNKNOWN_USER = 987654321


@pytest.fixture(scope="module")
def dataset():
    rates, watches = synthetic_events(n_users=60, n_movies=40, per_user=18, seed=1)
    return build_dataset(rates, watches, {"preprocess": {"min_user_movies": 1, "min_movie_users": 1}})


class RecommenderContract:
    """The expectations; subclasses set `algorithm` and `params`."""

    algorithm: str = ""
    params: dict = {}

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, dataset) -> Recommender:
        rec = make_recommender(cls.algorithm, cls.params)
        assert rec.fit(dataset) is rec
        return rec

    @pytest.fixture
    def published(self, fitted, tmp_path):
        store = LocalStore(tmp_path / "store")
        version = fitted.save(store, ModelCard(version=f"{self.algorithm}-contract", algorithm=self.algorithm,
                                               params=self.params))
        return store, version

    def test_unfitted_model_refuses_to_serve(self):
        with pytest.raises(RuntimeError, match="not fitted"):
            make_recommender(self.algorithm, self.params).recommend(1)

    def test_score_covers_every_movie(self, fitted, dataset):
        scores = fitted.score(int(dataset.user_ids[0]))
        assert scores.shape == (dataset.n_movies,)
        assert np.all(np.isfinite(scores))
        assert list(fitted.movie_ids) == list(dataset.movie_ids)

    def test_recommend_gives_k_distinct_unseen_movies_best_first(self, fitted, dataset):
        seen = dataset.seen_csr
        for u, user in enumerate(dataset.user_ids[:15]):
            recs = fitted.recommend(int(user), k=10)
            unseen = dataset.n_movies - seen[u].nnz
            assert len(recs) == min(10, unseen)
            assert len(set(recs)) == len(recs)
            seen_ids = set(dataset.movie_ids[seen[u].indices])
            assert not seen_ids & set(recs)
            scores = fitted.score(int(user))[dataset.movie_index(recs)]
            assert np.all(np.diff(scores) <= 1e-6), "not sorted by score"

    def test_k_beyond_the_catalogue_returns_every_unseen_movie(self, fitted, dataset):
        user = int(dataset.user_ids[0])
        recs = fitted.recommend(user, k=10_000)
        assert len(recs) == dataset.n_movies - dataset.seen_csr[0].nnz

    def test_unknown_user_gets_the_cold_start_list(self, fitted, dataset):
        """The artifact's list for strangers: the popularity list, or the engine's own prior order
        (ALS with a popularity prior: tests/unit/training/test_implicit_models.py)."""
        order = fitted.fitted.popular
        assert sorted(order.tolist()) == list(range(dataset.n_movies)), "not a ranking of the catalogue"
        expected = dataset.movie_ids[order[:20]].tolist()
        assert fitted.recommend(UNKNOWN_USER, k=20) == expected == fitted.recommend(UNKNOWN_USER + 1, k=20)
        if not fitted.params.get("popularity_weight"):
            assert expected == dataset.movie_ids[dataset.popular_order()[:20]].tolist()
        assert fitted.score(UNKNOWN_USER).shape == (dataset.n_movies,)

    def test_predict_agrees_with_score_and_is_clipped(self, fitted, dataset):
        user = int(dataset.user_ids[3])
        raw = fitted.predict([user] * dataset.n_movies, dataset.movie_ids, clip=False)
        np.testing.assert_allclose(raw, fitted.score(user), rtol=1e-5, atol=1e-5)
        clipped = fitted.predict([user, UNKNOWN_USER], [dataset.movie_ids[0], "no+such+movie"])
        assert np.all((clipped >= 1) & (clipped <= 5))

    def test_save_load_round_trip_serves_the_same_lists(self, fitted, published, dataset):
        store, version = published
        for loader in (Recommender, type(fitted)):
            loaded = loader.load(store, version)
            assert loaded.card.version == version and loaded.card.algorithm == self.algorithm
            for user in [*dataset.user_ids[:10].tolist(), UNKNOWN_USER]:
                assert loaded.recommend(user, k=20) == fitted.recommend(user, k=20)
            np.testing.assert_array_equal(loaded.score(int(dataset.user_ids[0])),
                                          fitted.score(int(dataset.user_ids[0])))
        assert isinstance(Recommender.load(store, version), LoadedRecommender)

    def test_corrupted_artifact_is_refused(self, published):
        store, version = published
        key = layout.model_key(version, "user_factors.npy")
        data = bytearray(store.get_bytes(key))
        data[len(data) // 2] ^= 0xFF
        store.put_bytes(key, bytes(data))
        with pytest.raises(ArtifactError, match="checksum"):
            Recommender.load(store, version)

    def test_artifact_holds_no_pickled_objects(self, published):
        store, version = published
        for name in layout.MODEL_ARRAYS:
            raw = store.get_bytes(layout.model_key(version, f"{name}.npy"))
            assert np.load(io.BytesIO(raw), allow_pickle=False).dtype != object


class TestSurpriseSVD(RecommenderContract):
    algorithm = "svd"
    params = {"n_factors": 5, "n_epochs": 10, "random_state": 0}


class TestSurpriseSVDpp(RecommenderContract):
    algorithm = "svdpp"
    params = {"n_factors": 5, "n_epochs": 8, "random_state": 0, "cache_ratings": True}


class TestSurpriseSVDppOwnSGD(RecommenderContract):
    algorithm = "svdpp"
    params = {"n_factors": 5, "n_epochs": 8, "random_state": 0, "cache_ratings": True, "sgd": "surprise"}


class TestImplicitALS(RecommenderContract):
    algorithm = "als"
    params = {"factors": 6, "iterations": 8, "random_state": 0}


class TestImplicitALSWithPriors(RecommenderContract):
    algorithm = "als"
    params = {"factors": 6, "iterations": 8, "random_state": 0, "popularity_weight": 0.8, "quality_weight": 0.15}


class TestImplicitBPR(RecommenderContract):
    algorithm = "bpr"
    params = {"factors": 6, "iterations": 30, "random_state": 0, "threads": 1}


class TestPopularity(RecommenderContract):
    algorithm = "popularity"


class TestRandom(RecommenderContract):
    algorithm = "random"
    params = {"n_factors": 4, "seed": 3}


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="unknown algorithm"):
        make_recommender("als-typo", {})


def test_loaded_model_cannot_be_refit(tmp_path, dataset):
    store = LocalStore(tmp_path)
    rec = make_recommender("popularity").fit(dataset)
    rec.save(store, ModelCard(version="popularity-x", algorithm="popularity"))
    with pytest.raises(TypeError):
        Recommender.load(store, "popularity-x").fit(dataset)


@pytest.mark.parametrize("algorithm", ["svd", "svdpp"])
def test_factorization_beats_popularity_on_held_out_ratings(algorithm):
    """With a real low-rank structure in the data, SVD and SVD++ must predict the future better."""
    rates, watches = synthetic_events(n_users=150, n_movies=60, per_user=25, noise=0.3, seed=7)
    ds = build_dataset(rates, watches)
    v = ds.valid_ratings

    def rmse(rec):
        return float(np.sqrt(np.mean((rec.predict(v["user_id"], v["movie_id"]) - v["rating"]) ** 2)))

    popularity = rmse(make_recommender("popularity").fit(ds))
    model = rmse(make_recommender(algorithm, {"n_factors": 8, "n_epochs": 30, "lr_all": 0.01,
                                              "random_state": 0}).fit(ds))
    assert model < popularity - 0.1, (algorithm, model, popularity)
