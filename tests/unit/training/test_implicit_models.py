"""ALS and BPR: the exported artifact ranks exactly as `implicit` itself, and watches count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.training.implicit_models import confidence_signal, popularity_prior, quality_prior
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


def test_a_quality_prior_adds_to_the_item_bias_and_orders_the_list_of_strangers(dataset):
    params = {**PARAMS["als"], "popularity_weight": 0.8, "quality_weight": 0.3, "quality_shrinkage": 2.0}
    rec = make_recommender("als", params).fit(dataset)
    prior = (0.8 * popularity_prior(dataset) + 0.3 * quality_prior(dataset, 2.0)).astype(np.float32)
    np.testing.assert_array_equal(rec.fitted.item_bias, prior)
    stranger = rec.fitted.recommend(987654321, k=dataset.n_movies)[0]
    assert stranger == dataset.movie_ids[np.argsort(-prior, kind="stable")].tolist()
    assert stranger != dataset.movie_ids[dataset.popular_order()].tolist(), "quality did not reorder anything"


def test_without_a_popularity_prior_strangers_get_the_popularity_list(dataset):
    """The item bias alone (quality, no popularity) would put obscure movies first."""
    rec = make_recommender("als", {**PARAMS["als"], "popularity_weight": 0.0, "quality_weight": 0.5}).fit(dataset)
    assert rec.fitted.recommend(987654321, k=10)[0] == dataset.movie_ids[dataset.popular_order()[:10]].tolist()


def _events(rows: list[tuple[int, str, int, int | None]]):
    """(user, movie, minutes watched, rating or None) rows as the rate and watch frames of a snapshot."""
    start = pd.Timestamp("2026-01-01")
    rates, watches = [], []
    for n, (user, movie, minutes, rating) in enumerate(rows):
        when = start + pd.Timedelta(hours=n)
        watches += [(when + pd.Timedelta(minutes=m), user, movie, m, "t", 0) for m in range(minutes)]
        if rating is not None:
            rates.append((when + pd.Timedelta(hours=0.5), user, movie, rating, "t", 0))
    rate_df = pd.DataFrame(rates, columns=["time", "user_id", "movie_id", "rating", "source", "offset"])
    watch_df = pd.DataFrame(watches, columns=["time", "user_id", "movie_id", "minute", "source", "offset"])
    for frame in (rate_df, watch_df):
        frame["time"] = frame["time"].astype("datetime64[us]")
    rate_df["rating"], watch_df["minute"] = rate_df["rating"].astype(np.int8), watch_df["minute"].astype(np.int32)
    return build_dataset(rate_df, watch_df, {"preprocess": {"min_user_movies": 1, "min_movie_users": 1,
                                                            "valid_fraction": 0.0}})


def test_quality_is_how_much_of_a_movie_its_viewers_watched_and_how_they_rated_it():
    # "kept": everyone watches all 10 minutes and rates 5; "left": all but one stop after 2 and rate 1
    # (the one who watched it to the end says it lasts 10); "mixed": in between; "one": a single viewer
    # who loved it, pulled toward the mean by the shrinkage
    rows = [(u, "kept", 10, 5) for u in range(1, 7)] + [(u, "left", 2, 1) for u in range(1, 7)]
    rows += [(u, "mixed", 5 + u % 3, 3) for u in range(1, 7)] + [(7, "one", 10, 5), (8, "left", 10, None)]
    dataset = _events(rows)
    quality = dict(zip(dataset.movie_ids, quality_prior(dataset, shrinkage=5.0), strict=True))
    assert quality["kept"] > quality["one"] > quality["mixed"] > quality["left"]
    unshrunk = dict(zip(dataset.movie_ids, quality_prior(dataset, shrinkage=0.0), strict=True))
    assert unshrunk["one"] == pytest.approx(unshrunk["kept"]), "without shrinkage one viewer counts as six"
    values = np.array(list(quality.values()))
    assert values.mean() == pytest.approx(0.0, abs=1e-12)


def test_a_log_of_ratings_alone_gives_quality_from_the_ratings():
    rows = [(u, "good", 0, 5) for u in range(1, 5)] + [(u, "bad", 0, 2) for u in range(1, 5)]
    rows += [(u, "fair", 0, 3 + u % 2) for u in range(1, 5)]
    dataset = _events(rows)
    assert dataset.watch_csr.nnz == 0
    quality = dict(zip(dataset.movie_ids, quality_prior(dataset, shrinkage=1.0), strict=True))
    assert quality["good"] > quality["fair"] > quality["bad"]
    assert np.std(list(quality.values())) == pytest.approx(1.0), "one standardized signal"


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
