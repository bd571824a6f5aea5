"""Offline metrics on a case small enough to compute by hand, and the batched lists against `top_k`.

The hand case: five movies a..e ranked a > b > c > d > e for everyone (item biases 5..1, no
factors), k = 3, three validation users:

    user 1 (light) saw a; watched c, e and z (z is not in the catalogue)  list b c d -> hit at 2
    user 2 (heavy) saw b; rated a=5 (relevant) and d=1 (not: < 4)         list a c d -> hit at 1
    user 3 (new)   unknown to the model; watched b                        list a b c -> hit at 2
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from components.core.errors import UserError
from components.core.model_artifact import FactorModel
from components.training.dataset import Dataset
from components.training.evaluate import (
    evaluate,
    evaluate_with_baseline,
    pick_winner,
    relevant_targets,
    top_k_lists,
)
from components.training.report import render_html, render_markdown

PARAMS = {"evaluate": {"k": 3, "primary_metric": "ndcg@3", "relevant_min_rating": 4, "light_max_history": 10}}
T = pd.Timestamp("2026-01-01")


def _frame(rows, value):
    cols = ["user_id", "movie_id", "u", "i", value, "time"]
    return pd.DataFrame(rows, columns=cols).astype({"user_id": "int64", "u": "int32", "i": "int32"})


@pytest.fixture
def dataset() -> Dataset:
    train_r = _frame([(1, "a", 0, 0, 4.0, T), (2, "b", 1, 1, 3.0, T)], "rating")
    train_w = _frame([], "minutes")
    valid_r = _frame([(2, "a", 1, 0, 5.0, T), (2, "d", 1, 3, 1.0, T)], "rating")
    valid_r["history"] = [20, 20]
    valid_w = _frame([(1, "c", 0, 2, 3, T), (1, "e", 0, 4, 1, T), (1, "z", 0, -1, 2, T), (3, "b", -1, 1, 5, T)],
                     "minutes")
    valid_w["history"] = [1, 1, 1, 1]
    return Dataset(user_ids=[1, 2], movie_ids=list("abcde"), train_ratings=train_r, train_watches=train_w,
                   valid_ratings=valid_r, valid_watches=valid_w, cutoff=str(T), snapshot_hash="hand")


@pytest.fixture
def ranked_model() -> FactorModel:
    return FactorModel(global_mean=0.0, user_bias=np.zeros(2), item_bias=np.array([5, 4, 3, 2, 1.0]),
                       user_factors=np.zeros((2, 1)), item_factors=np.zeros((5, 1)), user_ids=[1, 2],
                       movie_ids=list("abcde"), seen_indptr=[0, 1, 2], seen_indices=[0, 1], popular=[0, 1, 2, 3, 4])


def test_relevance_and_activity(dataset):
    targets = relevant_targets(dataset, PARAMS)
    assert targets.users.tolist() == [1, 2, 3]
    assert sorted(map(tuple, targets.pairs.to_numpy().tolist())) == [
        (1, "c"), (1, "e"), (1, "z"), (2, "a"), (3, "b")]
    assert targets.activity.tolist() == ["light", "heavy", "new"]
    median = relevant_targets(dataset, {"evaluate": {"light_max_history": None}})
    assert median.light_max_history == 10.5 and median.activity.tolist() == ["light", "heavy", "new"]
    assert relevant_targets(dataset, {"evaluate": {"light_max_history": 0}}).activity.tolist() == [
        "heavy", "heavy", "new"]


def test_lists_exclude_seen_and_fall_back_to_popularity(ranked_model):
    lists = top_k_lists(ranked_model, np.array([0, 1, -1]), 3)
    assert lists.tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 2]]


def test_hand_computed_metrics(dataset, ranked_model):
    ev = evaluate(ranked_model, dataset, PARAMS, name="ranked")
    m = ev.metrics
    inv = 1 / math.log2(3)
    ndcg = [inv / (1 + inv + 0.5), 1.0, inv]                  # user 1: 3 relevant, one of them unknowable
    assert m["precision@3"] == pytest.approx(1 / 3, abs=1e-6)
    assert m["recall@3"] == pytest.approx((1 / 3 + 1 + 1) / 3, abs=1e-6)
    assert m["ndcg@3"] == pytest.approx(np.mean(ndcg), abs=1e-6)
    assert ev.ndcg_per_user == pytest.approx(ndcg, abs=1e-6)
    assert m["hit_rate@3"] == 1.0
    assert m["coverage@3"] == pytest.approx(4 / 5)            # a, b, c, d listed; e never
    assert m["popularity_bias@3"] == pytest.approx(2 / 9, abs=1e-6)  # a and b: seen by 1 of 2 train users
    assert m["users"] == 3
    assert m["rmse"] == pytest.approx(math.sqrt(0.5), abs=1e-6)      # a: 5 vs 5, d: 2 vs 1
    assert m["mae"] == pytest.approx(0.5, abs=1e-6)
    assert ev.by_activity["new"] == pytest.approx({"users": 1, "precision@3": 1 / 3, "recall@3": 1.0,
                                                    "ndcg@3": inv, "hit_rate@3": 1.0}, abs=1e-6)
    assert ev.by_activity["heavy"]["ndcg@3"] == 1.0


def test_per_user_values_of_every_list_metric_survive_the_artifact(dataset, ranked_model):
    from components.training.evaluate import Evaluation

    ev = evaluate(ranked_model, dataset, PARAMS, name="ranked")
    assert sorted(ev.per_user) == ["hit_rate@3", "ndcg@3", "precision@3", "recall@3"]
    assert ev.per_user["recall@3"] == pytest.approx([1 / 3, 1.0, 1.0], abs=1e-6)
    for metric, values in ev.per_user.items():
        assert len(values) == len(ev.users) and np.mean(values) == pytest.approx(ev.metrics[metric], abs=1e-6)
    back = Evaluation.from_dict(ev.to_dict(per_user=True))
    assert sorted(back.per_user) == sorted(ev.per_user)
    for metric, values in ev.per_user.items():
        assert back.per_user[metric] == pytest.approx(values, abs=1e-6)
    assert "per_user" not in ev.to_dict(per_user=False)


def test_perfect_and_empty_lists(dataset):
    # A model that ranks exactly the relevant movies first gets NDCG 1 wherever the catalogue allows.
    model = FactorModel(global_mean=0.0, user_bias=np.zeros(2), item_bias=np.zeros(5),
                        user_factors=np.eye(2), item_factors=np.array([[0, 9], [0, 0], [5, 0], [0, 0], [4, 0.0]]),
                        user_ids=[1, 2], movie_ids=list("abcde"), seen_indptr=[0, 1, 2], seen_indices=[0, 1],
                        popular=[1, 0, 2, 3, 4])
    ev = evaluate(model, dataset, PARAMS)
    per_user = dict(zip(ev.users.tolist(), ev.ndcg_per_user.tolist(), strict=True))
    assert per_user[2] == pytest.approx(1.0)
    inv = 1 / math.log2(3)
    assert per_user[1] == pytest.approx((1 + inv) / (1 + inv + 0.5))   # c, e first; z is unreachable
    assert per_user[3] == pytest.approx(1.0)                            # popular list starts with b


def test_batched_lists_match_top_k():
    rng = np.random.default_rng(0)
    n_u, n_m = 50, 30
    seen = [np.sort(rng.choice(n_m, size=rng.integers(0, 28), replace=False)) for _ in range(n_u)]
    model = FactorModel(global_mean=3.5, user_bias=rng.normal(size=n_u), item_bias=rng.normal(size=n_m),
                        user_factors=rng.normal(size=(n_u, 4)), item_factors=rng.normal(size=(n_m, 4)),
                        user_ids=np.arange(n_u) * 3, movie_ids=[f"m{i:02d}" for i in range(n_m)],
                        seen_indptr=np.concatenate([[0], np.cumsum([len(s) for s in seen])]),
                        seen_indices=np.concatenate(seen), popular=np.arange(n_m))
    lists = top_k_lists(model, np.arange(n_u), 5)
    for u in range(n_u):
        expected = model.top_k(u, 5).tolist()
        assert lists[u, :len(expected)].tolist() == expected
        assert (lists[u, len(expected):] == -1).all()


def test_evaluation_set_report_and_winner(dataset, ranked_model):
    result = evaluate_with_baseline(ranked_model, dataset, PARAMS, name="ranked",
                                    references={"stable": ("v-old", ranked_model)})
    assert result["baseline"]["name"] == "popularity"
    assert result["references"]["stable"]["name"] == "v-old"
    assert result["candidate"]["metrics"]["baseline_ndcg@3"] == result["baseline"]["metrics"]["ndcg@3"]
    html = render_html([result])
    assert html.count("data:image/png;base64,") == 3 and "ranked" in html
    assert "| ranked |" in render_markdown([result])
    assert pick_winner({"a": {"ndcg@20": 0.1}, "b": {"ndcg@20": 0.3}}) == "b"
    assert pick_winner({}) == ""
    with pytest.raises(UserError, match="primary_metric"):  # params are validated before any work
        evaluate_with_baseline(ranked_model, dataset, {"evaluate": {"k": 3, "primary_metric": "ndcg@20"}})


def test_paired_interval_is_the_bootstrap_of_the_mean_and_matches_the_normal_approximation(monkeypatch):
    """The zero-skipping bootstrap resamples users like the plain one: same centre and spread, and
    at 5000 users both agree with mean +- 1.96 sd / sqrt(n)."""
    from components.training.evaluate import paired_interval

    rng = np.random.default_rng(3)
    d = np.where(rng.random(5000) < 0.6, 0.0, rng.normal(0.02, 0.3, 5000))
    got = paired_interval(d, 0.95, 2000, seed=1)
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    assert got["users"] == 5000 and got["difference"] == pytest.approx(d.mean(), abs=1e-6)
    assert got["low"] == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert got["high"] == pytest.approx(d.mean() + half, abs=0.15 * half)
    assert got["width"] == pytest.approx(got["high"] - got["low"], abs=1e-6)
    naive = d[rng.integers(0, len(d), size=(2000, len(d)))].mean(axis=1)
    assert np.quantile(naive, 0.025) == pytest.approx(got["low"], abs=0.15 * half)
    monkeypatch.setattr("components.training.evaluate.BOOTSTRAP_MAX_DRAWS", 0)   # as at course scale
    normal = paired_interval(d, 0.95, 2000, seed=1)
    assert (got["method"], normal["method"]) == ("bootstrap", "normal")
    assert normal["low"] == pytest.approx(got["low"], abs=0.15 * half)
    assert normal["high"] == pytest.approx(got["high"], abs=0.15 * half)
    assert paired_interval(np.zeros(10))["width"] == 0.0
    assert paired_interval(np.empty(0))["users"] == 0


def test_evaluation_set_carries_paired_comparisons_simultaneous_over_the_algorithms(dataset, ranked_model):
    params = {**PARAMS, "train": {"algorithms": ["svd", "svdpp"]}}
    result = evaluate_with_baseline(ranked_model, dataset, params, name="ranked",
                                    references={"stable": ("v-old", ranked_model)})
    c = result["comparisons"]
    assert c["metric"] == "ndcg@3" and c["simultaneous_over"] == 2 and c["level"] == pytest.approx(0.975)
    assert set(c["by_role"]) == {"popularity", "stable"}
    same = c["by_role"]["stable"]                     # the same model: every per-user difference is 0
    assert (same["difference"], same["low"], same["high"], same["users"]) == (0.0, 0.0, 0.0, 3)
    assert c["by_role"]["popularity"]["name"] == "popularity"
    text = render_markdown([result])
    assert "| ranked | stable (v-old) | +0.0000 |" in text and "simultaneous over 2" in text


def test_watches_a_served_list_caused_are_kept_out_of_the_targets():
    """A validation watch whose session starts within the join window after a list that showed the
    movie is the platform's doing (the online join's rule): not a target; a list shown after the
    session started, or one that did not list the movie, causes nothing."""
    from components.training.preprocess import build_dataset
    from tests.synthetic_events import synthetic_events

    rates, watches = synthetic_events(n_users=40, n_movies=30, per_user=12, seed=2)
    params = {"preprocess": {"min_user_movies": 1, "min_movie_users": 1}}
    plain = build_dataset(rates, watches, params)
    valid = plain.valid_watches
    caused, running, unlisted = (valid.iloc[i] for i in range(3))
    first = watches.groupby(["user_id", "movie_id"])["time"].min()

    def answer(row, delay, movie):
        return (first[(row.user_id, row.movie_id)] + pd.Timedelta(minutes=delay), int(row.user_id), "p@v1", 200,
                [movie, "movie+999"], 10)
    recs = pd.DataFrame([answer(caused, -5, caused.movie_id), answer(running, 1, running.movie_id),
                         answer(unlisted, -5, "movie+998")],
                        columns=["time", "user_id", "server", "status", "results", "response_time_ms"])
    marked = build_dataset(rates, watches, params, recommendations=recs)
    assert marked.stats["valid_watch_pairs_caused"] == 1
    flagged = marked.valid_watches.loc[marked.valid_watches["caused"], ["user_id", "movie_id"]]
    assert flagged.values.tolist() == [[caused.user_id, caused.movie_id]]
    targets, before = relevant_targets(marked), relevant_targets(plain)
    pairs = set(map(tuple, targets.pairs.values.tolist()))
    assert (caused.user_id, caused.movie_id) not in pairs
    assert (running.user_id, running.movie_id) in pairs and (unlisted.user_id, unlisted.movie_id) in pairs
    assert len(before.pairs) - len(targets.pairs) == 1 and targets.caused_excluded == 1
    assert evaluate(_popularity(marked), marked).metrics[
        "caused_watches_excluded"] == 1


def _popularity(data):
    from components.training.evaluate import popularity_baseline
    return popularity_baseline(data)


def test_relevant_watch_is_a_completed_one_and_any_watch_is_reported_beside(dataset, ranked_model):
    """User 1 watched c for 3 minutes and e for 1; another user streamed 10 minutes of e, so e's
    length is 10 and user 1 gave up on it: not relevant when relevance is a completed watch."""
    extra = _frame([(3, "e", -1, 4, 10, T)], "minutes").assign(history=1)
    dataset.valid_watches = pd.concat([dataset.valid_watches, extra], ignore_index=True)
    completed = relevant_targets(dataset, PARAMS)
    anything = relevant_targets(dataset, {"evaluate": {**PARAMS["evaluate"], "relevant_watch": "any"}})
    assert (1, "e") not in set(map(tuple, completed.pairs.values.tolist()))
    assert (1, "e") in set(map(tuple, anything.pairs.values.tolist()))
    result = evaluate_with_baseline(ranked_model, dataset, PARAMS, name="ranked")
    metrics = result["candidate"]["metrics"]
    assert "ndcg@3_any_watch" in metrics and metrics["users_any_watch"] == 3
    assert metrics["recall@3_any_watch"] < metrics["recall@3"]     # e is missed, and counts only there
    assert "watched to at least 50% of its length" in result["relevance"]


def test_targets_are_the_validation_pairs_unseen_in_train_and_not_caused():
    """The index-keyed membership test against the plain definition (a pandas anti-join on ids),
    on a split whose validation window holds movies and pairs the train period never saw."""
    from components.training.preprocess import build_dataset
    from tests.synthetic_events import synthetic_events

    rates, watches = synthetic_events(n_users=60, n_movies=40, per_user=15, seed=8)
    late = rates["time"] > rates["time"].quantile(0.9)
    rates.loc[late & (rates.index % 3 == 0), "movie_id"] = "movie+new"     # only in the validation window
    data = build_dataset(rates, watches, {"preprocess": {"min_user_movies": 1, "min_movie_users": 1}})
    assert (data.valid_ratings["i"] < 0).any()
    data.valid_watches["caused"] = data.valid_watches.index % 4 == 0
    r, w = data.valid_ratings, data.valid_watches
    positives = pd.concat([w[["user_id", "movie_id"]], r.loc[r["rating"] >= 4, ["user_id", "movie_id"]]])
    excluded = pd.concat([data.train_ratings[["user_id", "movie_id"]], data.train_watches[["user_id", "movie_id"]],
                          w.loc[w["caused"], ["user_id", "movie_id"]]])
    expected = positives.drop_duplicates().merge(excluded.drop_duplicates(), how="left", indicator=True)
    expected = sorted(map(tuple, expected.loc[expected["_merge"] == "left_only", ["user_id", "movie_id"]].values))
    targets = relevant_targets(data, {"evaluate": {"relevant_watch": "any"}})
    assert sorted(map(tuple, targets.pairs.values.tolist())) == expected and expected
