"""Train: the exported factors reproduce Surprise exactly, cards carry provenance, versions are valid."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime

import numpy as np
import pytest

from components.core.layout import check_version
from components.core.model_artifact import ArtifactError, FactorModel
from components.training import train as train_module
from components.training.preprocess import build_dataset
from components.training.train import (
    RatingLists,
    check_export,
    code_commit,
    make_recommender,
    model_version,
    rating_rmse,
    surprise_trainset,
    train,
)
from tests.synthetic_events import synthetic_events

FAST = {"train": {"svd": {"n_factors": 4, "n_epochs": 5}, "svdpp": {"n_factors": 4, "n_epochs": 5}}}


@pytest.fixture(scope="module")
def dataset():
    rates, watches = synthetic_events(n_users=40, n_movies=30, per_user=15, seed=11)
    return build_dataset(rates, watches)


@pytest.mark.parametrize("algorithm", ["svd", "svdpp"])
def test_exported_scores_equal_surprise_estimates_for_every_pair(dataset, algorithm):
    rec = make_recommender(algorithm, FAST["train"][algorithm]).fit(dataset)
    trainset = rec.algo.trainset
    for raw_u in list(trainset._raw2inner_id_users)[:10]:
        scores = rec.fitted.scores(int(raw_u))
        surprise = [rec.algo.predict(int(raw_u), int(i), clip=False).est for i in trainset._raw2inner_id_items]
        np.testing.assert_allclose(scores[list(trainset._raw2inner_id_items)], surprise, atol=1e-4)
    assert rec.export_error < 1e-4


def test_a_wrong_export_is_caught(dataset):
    rec = make_recommender("svdpp", FAST["train"]["svdpp"]).fit(dataset)
    rec.fitted.user_factors += 0.1        # e.g. forgetting SVD++'s implicit term would look like this
    with pytest.raises(RuntimeError, match="disagree"):
        check_export(rec.fitted, rec.algo, rec.algo.trainset)


def test_surprise_trainset_uses_the_platform_indices(dataset):
    trainset = surprise_trainset(dataset)
    assert trainset.n_ratings == len(dataset.train_ratings)
    assert set(trainset._raw2inner_id_users) <= set(range(dataset.n_users))


def test_surprise_trainset_is_the_one_surprise_builds(dataset):
    import surprise

    frame = dataset.train_ratings.sample(frac=1.0, random_state=3)       # any row order
    shuffled = dataset.__class__(**{**dataset.__dict__, "train_ratings": frame})
    ours = surprise_trainset(shuffled)
    theirs = surprise.Dataset.load_from_df(frame[["u", "i", "rating"]], surprise.Reader(rating_scale=(1, 5))
                                           ).build_full_trainset()
    for name in ("n_users", "n_items", "n_ratings", "rating_scale", "_raw2inner_id_users", "_raw2inner_id_items"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert dict(ours.ur) == dict(theirs.ur) and dict(ours.ir) == dict(theirs.ir)
    assert list(ours.all_ratings()) == list(theirs.all_ratings())
    assert ours.global_mean == theirs.global_mean


def test_rating_lists_read_like_surprises_defaultdict():
    lists = RatingLists(np.array([0, 2, 2, 3]), np.array([5, 7, 1]), np.array([4.0, 3.5, 1.0]))
    assert len(lists) == 3 and list(lists) == [0, 1, 2]
    assert lists[0] == [(5, 4.0), (7, 3.5)] and lists[1] == [] and lists[np.int64(2)] == [(1, 1.0)]
    assert 2 in lists and 3 not in lists and -1 not in lists and "0" not in lists
    assert lists[3] == [] and 3 not in lists        # an unknown id reads empty and is not added
    assert dict(lists.items()) == {0: [(5, 4.0), (7, 3.5)], 1: [], 2: [(1, 1.0)]}


def test_surprises_own_svdpp_fit_reads_the_same_trainset(dataset):
    """`sgd: surprise` hands Surprise's loop plain lists made once; the fit is Surprise's on that
    trainset, whatever holds the lists."""
    params = {"train": {"svdpp": {"n_factors": 4, "n_epochs": 2, "sgd": "surprise"}}}
    rec, _ = train(dataset, "svdpp", params)
    assert isinstance(rec.algo.trainset.ur, dict) and rec.export_error < 1e-3


def test_training_is_deterministic_with_a_seed(dataset):
    a, _ = train(dataset, "svd", FAST)
    b, _ = train(dataset, "svd", FAST)
    np.testing.assert_array_equal(a.fitted.item_factors, b.fitted.item_factors)


def test_card_records_provenance(dataset, monkeypatch):
    rec, card = train(dataset, "svdpp", FAST)
    assert re.fullmatch(r"svdpp-\d{8}t\d{6}-[0-9a-f]{8}", card.version)
    check_version(card.version)
    assert card.algorithm == "svdpp" and card.params["n_factors"] == 4 and card.params["cache_ratings"] is True
    assert card.data_snapshot == dataset.snapshot_hash
    assert card.training_seconds > 0 and card.trained_at.endswith("Z")
    assert (card.n_users, card.n_movies, card.n_factors) == (dataset.n_users, dataset.n_movies, 4)
    assert 0 < card.metrics["train_rmse"] < 2 and card.metrics["export_max_abs_error"] < 1e-3
    assert rec.card is card


def test_code_commit_falls_back_to_the_environment(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    monkeypatch.setenv(train_module.COMMIT_ENV, "abc123")
    assert code_commit() == "abc123"
    monkeypatch.delenv(train_module.COMMIT_ENV)
    assert code_commit() == ""


def test_model_version_is_lowercase_and_valid():
    when = datetime(2026, 3, 18, 6, 12, 47, tzinfo=UTC)
    version = model_version("svd", when, "ff" * 32, {"n_factors": 3}, "")
    assert version.startswith("svd-20260318t061247-") and check_version(version)
    assert version != model_version("svd", when, "ee" * 32, {"n_factors": 3}, "")


def test_model_directory_round_trip_and_tamper_check(dataset, tmp_path):
    rec, card = train(dataset, "popularity", FAST)
    rec.fitted.save_dir(tmp_path / card.version, card)
    back, back_card = FactorModel.load_dir(tmp_path / card.version)
    assert back_card.version == card.version
    for user in dataset.user_ids[:5].tolist():
        assert back.recommend(user)[0] == rec.recommend(user)
    path = tmp_path / card.version / "user_ids.npy"
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(ArtifactError):
        FactorModel.load_dir(tmp_path / card.version)


def test_recommenders_do_not_import_the_training_stage():
    """The engine registry is in train.py; recommenders.py is imported by it, never the reverse."""
    import ast
    from pathlib import Path

    import components.training.recommenders as recommenders

    tree = ast.parse(Path(recommenders.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "components.training.train" not in imported
    assert {"svd", "svdpp", "popularity", "random"} <= set(train_module.ALGORITHMS)


@pytest.mark.parametrize("algorithm", ["svd", "svdpp"])
def test_a_user_who_only_watched_gets_the_popularity_baselines_scores(algorithm):
    import pandas as pd

    from components.training.recommenders import PopularityRecommender

    rates, watches = synthetic_events(n_users=40, n_movies=30, per_user=15, seed=11)
    first = watches[watches["user_id"] == watches["user_id"].iloc[0]]
    extra = first.assign(user_id=10_000, offset=first["offset"] + 10_000_000)    # watched, never rated
    data = build_dataset(rates, pd.concat([watches, extra], ignore_index=True))
    assert 10_000 in data.user_ids.tolist() and 10_000 not in data.train_ratings["user_id"].tolist()
    rec = make_recommender(algorithm, FAST["train"][algorithm]).fit(data)
    pop = PopularityRecommender().fit(data)
    assert rec.fitted.n_factors == FAST["train"][algorithm]["n_factors"] + 1
    np.testing.assert_allclose(rec.score(10_000), pop.score(10_000), atol=1e-4)
    by_popularity = dict(zip(pop.movie_ids, pop.score(10_000), strict=True))   # the same list up to ties
    np.testing.assert_allclose([by_popularity[m] for m in rec.recommend(10_000, k=10)],
                               [by_popularity[m] for m in pop.recommend(10_000, k=10)], atol=1e-4)
    assert rec.export_error < 1e-4                    # raters: exactly what Surprise learned


def test_svdpp_can_take_the_watched_movies_as_its_implicit_set():
    import pandas as pd

    rates, watches = synthetic_events(n_users=40, n_movies=30, per_user=15, seed=11)
    rater = int(rates["user_id"].iloc[0])
    only_watched = watches.iloc[:3].assign(user_id=rater, movie_id="movie+999",
                                           offset=watches["offset"].max() + np.arange(1, 4))
    data = build_dataset(rates, pd.concat([watches, only_watched], ignore_index=True),
                         {"preprocess": {"min_movie_users": 1}})
    params = {**FAST["train"]["svdpp"], "implicit_set": "rated_or_watched"}
    rec = make_recommender("svdpp", params).fit(data)
    trainset = rec.algo.trainset
    u = trainset.to_inner_uid(int(data.user_index([rater])[0]))
    rated = {j for j, r in trainset.rating_ur[u]}
    implicit = {j for j, _ in trainset.ur[u]}
    seen = set(data.seen_csr[data.user_index([rater])[0]].indices.tolist())
    assert {trainset.to_raw_iid(j) for j in implicit} == seen and rated < implicit
    assert trainset.n_items > trainset.n_rated_items                   # "movie+999": watched, never rated
    assert sum(1 for _ in trainset.all_ratings()) == len(data.train_ratings)   # SGD sees ratings only
    assert np.isfinite(trainset.global_mean)
    assert rec.export_error < 1e-4                                      # the export folds the wider N(u)
    assert not np.any(rec.algo.qi[trainset.n_rated_items:])
    plain = make_recommender("svdpp", FAST["train"]["svdpp"]).fit(data)
    assert not np.allclose(plain.fitted.user_factors, rec.fitted.user_factors)


@pytest.mark.parametrize("algorithm", ["svd", "svdpp", "als"])
def test_train_rmse_by_index_is_predicts_by_id(dataset, algorithm):
    rec = make_recommender(algorithm, {"svd": FAST["train"]["svd"], "svdpp": FAST["train"]["svdpp"],
                                       "als": {"factors": 4, "iterations": 3}}[algorithm]).fit(dataset)
    r = dataset.train_ratings
    by_id = float(np.sqrt(np.mean((rec.predict(r["user_id"], r["movie_id"]) - r["rating"]) ** 2)))
    assert rating_rmse(rec.fitted, dataset, chunk=7) == pytest.approx(by_id, rel=1e-12)
    other = dataset.__class__(**{**dataset.__dict__, "user_ids": dataset.user_ids[::-1].copy()})
    assert rating_rmse(rec.fitted, other) == pytest.approx(by_id, rel=1e-12)    # another order: by id
