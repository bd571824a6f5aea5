"""Preprocess works on integer codes: what it builds does not depend on how the ids are held
(Python strings or categoricals, any row order), and re-ratings on both sides of the cutoff
keep the latest of each side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.training.preprocess import build_dataset
from tests.synthetic_events import synthetic_events
from tests.unit.training.test_preprocess import frames

FRAMES = ("train_ratings", "train_watches", "valid_ratings", "valid_watches")


def assert_same(a, b) -> None:
    assert (a.cutoff, a.snapshot_hash, a.stats) == (b.cutoff, b.snapshot_hash, b.stats)
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_array_equal(a.movie_ids, b.movie_ids)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)


@pytest.mark.parametrize("params", [{}, {"preprocess": {"split": "user_recent"}},
                                    {"preprocess": {"min_user_movies": 5, "min_movie_users": 8}}])
def test_categorical_ids_and_row_order_change_nothing(params):
    rates, watches = synthetic_events(seed=21)
    again = rates.sample(frac=0.3, random_state=1).assign(time=lambda f: f["time"] + pd.Timedelta(days=2),
                                                          offset=lambda f: f["offset"] + 10**6)
    rates = pd.concat([rates, again], ignore_index=True)
    plain = build_dataset(rates, watches, params)
    shuffled = rates.sample(frac=1, random_state=2).astype({"movie_id": "category", "source": "category"})
    assert_same(plain, build_dataset(shuffled, watches.astype({"movie_id": "category"}), params))
    assert plain.train_ratings["movie_id"].dtype == object and plain.valid_ratings["u"].dtype == np.int32


def test_a_rerating_after_the_cutoff_leaves_the_earlier_one_in_train():
    r, w = frames([(0, 1, "a", 2), (1, 1, "a", 3), (0, 2, "a", 4), (0, 2, "b", 4), (1, 1, "b", 5), (20, 1, "a", 5)])
    ds = build_dataset(r, w, {"preprocess": {"min_user_movies": 1, "min_movie_users": 1, "valid_days": 5}})
    train = ds.train_ratings.set_index(["user_id", "movie_id"])["rating"]
    assert train[(1, "a")] == 3 and ds.valid_ratings["rating"].tolist() == [5]
    assert ds.stats["duplicate_ratings_dropped"] == 1


@pytest.mark.parametrize("ids", [np.array([3, 4, 7, 10]),                         # dense: a lookup table
                                 np.array([3, 4, 7, 10**15]),                      # sparse: binary search
                                 np.array(["a", "b", "d", "z"], dtype=object)])    # strings: binary search
def test_index_of_finds_every_id_and_marks_the_absent(ids):
    from components.training.dataset import index_of

    wanted = np.concatenate([ids[::-1], ids[:2]])
    assert index_of(ids, wanted).tolist() == [3, 2, 1, 0, 0, 1]
    absent = np.array([0, 5, 11, 10**16]) if ids.dtype != object else np.array(["0", "c", "zz"], dtype=object)
    assert (index_of(ids, absent) == -1).all()
    assert index_of(ids[:0], wanted).tolist() == [-1] * len(wanted)


def test_sparse_user_ids_build_the_same_dataset_as_dense_ones():
    """Dense ids are made distinct by marks in a table over their range, sparse ones (no table
    that long) by hashing: the dataset is the same but for the ids themselves."""
    rates, watches = synthetic_events(seed=5)
    dense = build_dataset(rates, watches)
    spread = {"user_id": lambda f: f["user_id"] * 10**9}         # the same order, far apart
    sparse = build_dataset(rates.assign(**spread), watches.assign(**spread))
    np.testing.assert_array_equal(sparse.user_ids, dense.user_ids * 10**9)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(sparse, name).assign(user_id=lambda f: f["user_id"] // 10**9),
                                      getattr(dense, name), check_exact=True)


def test_distinct_ids_in_a_table_or_by_hashing_are_the_same():
    from components.training.preprocess import _distinct_ids

    dense = np.array([10**12 + 5, 10**12 + 2, 10**12 + 5]), np.array([10**12 + 9])     # offset: still a table
    sparse = np.array([7 * 10**15, -3, 7 * 10**15]), np.array([2])
    assert _distinct_ids(*dense).tolist() == [10**12 + 2, 10**12 + 5, 10**12 + 9]
    assert _distinct_ids(*sparse).tolist() == [-3, 2, 7 * 10**15]
    assert _distinct_ids(np.empty(0, np.int64)).tolist() == []
