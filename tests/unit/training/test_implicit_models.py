"""ALS and BPR: the exported artifact ranks exactly as `implicit` itself, and watches count."""

from __future__ import annotations

import numpy as np
import pytest

from components.training.implicit_models import confidence_signal, popularity_prior
from components.training.preprocess import build_dataset
from components.training.train import make_recommender, train
from tests.synthetic_events import synthetic_events

PARAMS = {"als": {"factors": 8, "iterations": 10}, "bpr": {"factors": 8, "iterations": 40, "threads": 1}}


@pytest.fixture(scope="module")
def dataset():
    rates, watches = synthetic_events(n_users=80, n_movies=50, per_user=20, seed=5)
    return build_dataset(rates, watches, {"preprocess": {"min_user_movies": 1, "min_movie_users": 1}})


@pytest.mark.parametrize("algorithm", ["als", "bpr"])
def test_exported_artifact_ranks_exactly_as_the_library(dataset, algorithm):
    rec = make_recommender(algorithm, PARAMS[algorithm]).fit(dataset)
    for u in range(dataset.n_users):
        ids, scores = rec.algo.recommend(u, rec.user_items[u], N=15, filter_already_liked_items=True)
        assert rec.fitted.top_k(u, 15).tolist() == ids.tolist()
        np.testing.assert_array_equal(rec.fitted.scores(u)[ids], scores)


def test_a_popularity_prior_is_the_item_bias_on_top_of_the_library_scores(dataset):
    rec = make_recommender("als", {**PARAMS["als"], "popularity_weight": 0.3}).fit(dataset)
    prior = (0.3 * popularity_prior(dataset)).astype(np.float32)
    np.testing.assert_array_equal(rec.fitted.item_bias, prior)
    for u in range(0, dataset.n_users, 7):
        library = rec.algo.item_factors @ rec.algo.user_factors[u]
        np.testing.assert_allclose(rec.fitted.scores(u), library + prior, rtol=1e-6, atol=1e-6)


def test_confidence_grows_with_the_share_watched_and_good_ratings(dataset):
    signal = confidence_signal(dataset, rating_weight=1.0).toarray()
    seen = dataset.seen_csr.toarray() > 0
    assert np.array_equal(signal > 0, seen), "every seen pair, and only those, carries a confidence"
    watch = dataset.watch_csr.toarray()
    longest = watch.max(axis=0)
    u, i = np.argwhere((watch > 0) & (dataset.ratings_csr.toarray() == 0))[0]
    assert signal[u, i] == pytest.approx(watch[u, i] / longest[i] + 1e-3, rel=1e-5)
    no_ratings = confidence_signal(dataset, rating_weight=0.0).toarray()
    rated_good = dataset.ratings_csr.toarray() >= 4
    assert np.all(signal[rated_good] > no_ratings[rated_good])


def test_als_learns_from_watches_that_carry_no_rating(dataset):
    """Dropping the ratings leaves watches only: ALS still fits and personalizes."""
    watched_only = dataset.__class__(**{**dataset.__dict__, "train_ratings": dataset.train_ratings.iloc[:0]})
    rec = make_recommender("als", PARAMS["als"]).fit(watched_only)
    lists = {tuple(rec.recommend(int(user), k=5)) for user in dataset.user_ids[:20]}
    assert len(lists) > 1, "every user got the same list"


def test_training_stage_cards_an_implicit_model(dataset):
    rec, card = train(dataset, "als", {"train": {"als": PARAMS["als"]}})
    assert card.algorithm == "als" and card.params["factors"] == 8 and card.n_factors == 8
    assert card.version.startswith("als-")
