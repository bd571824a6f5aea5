"""Surprise's SGD compiled: SVD bit for bit Surprise's; SVD++'s per-user SGD Surprise's arithmetic where
the two must agree, Surprise's accuracy where they differ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import surprise

from components.training.preprocess import build_dataset
from components.training.surprise_sgd import fit_svd, fit_svdpp_per_user
from components.training.train import implicit_matrix, inner_ratings, make_recommender, surprise_trainset
from tests.synthetic_events import synthetic_events


def _trainset(frame: pd.DataFrame):
    return surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=(1, 5))).build_full_trainset()


def _ratings(trainset):
    """The CSR arrays `fit_per_user` takes, read off `all_ratings()` one by one."""
    rows = np.array(list(trainset.all_ratings()))
    users = rows[:, 0].astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=trainset.n_users))])
    return indptr, rows[:, 1].astype(np.int64), rows[:, 2]


def _fit(trainset, **hyper):
    algo = surprise.SVDpp(**hyper)
    fit_svdpp_per_user(algo, trainset, _ratings(trainset), implicit_matrix(trainset))
    return algo


def _both(trainset, **hyper):
    return surprise.SVDpp(**hyper).fit(trainset), _fit(trainset, **hyper)


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


def test_long_histories_fit_as_well_as_surprise():
    """Where the two SGDs differ (many ratings a user), the per-user one is as accurate. Its speed is
    measured by `python -m benchmarks.bench_train --parts rmse` (Surprise's fit beside the platform's),
    not timed here."""
    rates, _ = synthetic_events(n_users=150, n_movies=120, per_user=60, seed=4, watch_share=0.0)
    frame = rates.assign(u=rates["user_id"], i=rates["movie_id"])[["u", "i", "rating"]]
    test = frame.sample(frac=0.2, random_state=0)
    trainset = _trainset(frame.drop(test.index))
    theirs, ours = _both(trainset, n_factors=10, n_epochs=20, random_state=0)

    def rmse(algo) -> float:
        est = [algo.predict(u, i).est for u, i in zip(test["u"], test["i"], strict=True)]
        return float(np.sqrt(np.mean((np.array(est) - test["rating"].to_numpy()) ** 2)))

    assert rmse(ours) == pytest.approx(rmse(theirs), abs=0.02)
    assert rmse(ours) < float(test["rating"].std())          # it learned something


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


def test_the_ratings_arrays_are_all_ratings_in_order_without_a_python_loop():
    rates, watches = synthetic_events(n_users=50, n_movies=40, per_user=12, seed=2)
    data = build_dataset(rates.sample(frac=1.0, random_state=1).sort_values("time", kind="stable"), watches)
    trainset = surprise_trainset(data)
    users, items, ratings = inner_ratings(trainset, data)
    expected = np.array(list(trainset.all_ratings()))
    np.testing.assert_array_equal(users, expected[:, 0])
    np.testing.assert_array_equal(items, expected[:, 1])
    np.testing.assert_array_equal(ratings, expected[:, 2])


def test_a_mismatched_ratings_array_is_refused():
    frame = pd.DataFrame({"u": [0, 0, 1], "i": [0, 1, 1], "rating": [4.0, 2.0, 5.0]})
    trainset = _trainset(frame)
    indptr, items, ratings = _ratings(trainset)
    with pytest.raises(ValueError, match="do not match"):
        fit_svdpp_per_user(surprise.SVDpp(), trainset, (indptr[:-1], items, ratings), implicit_matrix(trainset))


@pytest.mark.parametrize("biased", [True, False])
def test_svd_is_surprises_fit_bit_for_bit(biased):
    rates, _ = synthetic_events(n_users=80, n_movies=60, per_user=25, seed=6, watch_share=0.0)
    frame = rates.assign(u=rates["user_id"], i=rates["movie_id"])[["u", "i", "rating"]]
    trainset = _trainset(frame)
    hyper = {"n_factors": 7, "n_epochs": 9, "random_state": 2, "lr_all": 0.01, "reg_all": 0.05, "biased": biased}
    theirs = surprise.SVD(**hyper).fit(trainset)
    ours = surprise.SVD(**hyper)
    fit_svd(ours, trainset, _ratings(trainset))
    for name in ("bu", "bi", "pu", "qi"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    assert ours.predict(1000, "movie+003").est == theirs.predict(1000, "movie+003").est
