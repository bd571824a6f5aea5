"""SVD++'s per-user SGD: Surprise's arithmetic where the two must agree, Surprise's accuracy where they
differ, and a fraction of its time on long histories."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import surprise

from components.training.preprocess import build_dataset
from components.training.svdpp_sgd import fit_per_user
from components.training.train import implicit_matrix, make_recommender
from tests.synthetic_events import synthetic_events


def _trainset(frame: pd.DataFrame):
    return surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=(1, 5))).build_full_trainset()


def _both(trainset, **hyper):
    ours = surprise.SVDpp(**hyper)
    fit_per_user(ours, trainset, implicit_matrix(trainset))
    return surprise.SVDpp(**hyper).fit(trainset), ours


def test_one_rating_per_user_is_surprises_arithmetic_exactly():
    """With |R(u)| = |N(u)| = 1 holding y_j until the user's last rating changes nothing: every
    array equals Surprise's, bit for bit, after several epochs."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"u": np.arange(400), "i": rng.integers(0, 30, 400),
                          "rating": rng.integers(1, 6, 400).astype(float)})
    theirs, ours = _both(_trainset(frame), n_factors=5, n_epochs=6, random_state=3, lr_all=0.01)
    for name in ("bu", "bi", "pu", "qi", "yj"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    assert ours.predict(7, 4).est == theirs.predict(7, 4).est


def test_zero_epochs_is_surprises_initialisation():
    frame = pd.DataFrame({"u": [0, 0, 1, 2], "i": [0, 1, 1, 2], "rating": [4.0, 2.0, 5.0, 3.0]})
    theirs, ours = _both(_trainset(frame), n_factors=3, n_epochs=0, random_state=9)
    for name in ("bu", "bi", "pu", "qi", "yj"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)


def test_long_histories_fit_as_well_as_surprise_in_a_fraction_of_the_time():
    rates, _ = synthetic_events(n_users=150, n_movies=120, per_user=60, seed=4, watch_share=0.0)
    frame = rates.assign(u=rates["user_id"], i=rates["movie_id"])[["u", "i", "rating"]]
    test = frame.sample(frac=0.2, random_state=0)
    trainset = _trainset(frame.drop(test.index))
    hyper = {"n_factors": 10, "n_epochs": 20, "random_state": 0}
    fit_per_user(surprise.SVDpp(**hyper), trainset, implicit_matrix(trainset))   # compiled before timing
    started = time.perf_counter()
    theirs = surprise.SVDpp(**hyper).fit(trainset)
    surprise_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ours = surprise.SVDpp(**hyper)
    fit_per_user(ours, trainset, implicit_matrix(trainset))
    ours_seconds = time.perf_counter() - started

    def rmse(algo) -> float:
        est = [algo.predict(u, i).est for u, i in zip(test["u"], test["i"], strict=True)]
        return float(np.sqrt(np.mean((np.array(est) - test["rating"].to_numpy()) ** 2)))

    assert rmse(ours) == pytest.approx(rmse(theirs), abs=0.02)
    assert rmse(ours) < float(test["rating"].std())          # it learned something
    assert ours_seconds < surprise_seconds, (ours_seconds, surprise_seconds)


def test_the_engine_trains_per_user_by_default_and_surprise_on_request():
    rates, watches = synthetic_events(n_users=40, n_movies=30, per_user=15, seed=11)
    data = build_dataset(rates, watches)
    hyper = {"n_factors": 4, "n_epochs": 5, "random_state": 0}
    fast = make_recommender("svdpp", hyper).fit(data)
    own = make_recommender("svdpp", {**hyper, "sgd": "surprise"}).fit(data)
    reference = surprise.SVDpp(**hyper).fit(own.algo.trainset)
    np.testing.assert_array_equal(own.algo.yj, reference.yj)
    assert not np.array_equal(fast.algo.yj, reference.yj)
    assert fast.export_error < 1e-4 and own.export_error < 1e-4      # the export reads either
