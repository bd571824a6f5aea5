"""The hyper-parameter search: an earlier time fold of the train period, a budget, results on the card."""

from __future__ import annotations

import pandas as pd
import pytest

from components.core.errors import UserError
from components.core.params import validate
from components.training.preprocess import build_dataset
from components.training.train import train
from components.training.tune import time_fold, tune, tune_all
from tests.synthetic_events import synthetic_events

SEARCH = {"train": {"tune": {"mode": "search", "n_trials": 4, "timeout_seconds": 60, "fold_fraction": 0.3},
                    "als": {"factors": 8, "iterations": 5}, "svd": {"n_factors": 8, "n_epochs": 10}}}


@pytest.fixture(scope="module")
def dataset():
    rates, watches = synthetic_events(n_users=120, n_movies=50, per_user=20, seed=3)
    return build_dataset(rates, watches, {"preprocess": {"min_user_movies": 1, "min_movie_users": 1}})


def test_the_fold_splits_the_train_period_by_time_and_never_sees_validation(dataset):
    fold = time_fold(dataset, 0.3)
    cutoff = pd.Timestamp(fold.cutoff)
    assert cutoff < pd.Timestamp(dataset.cutoff)
    assert (fold.train_ratings["time"] < cutoff).all() and (fold.train_watches["time"] < cutoff).all()
    assert (fold.valid_ratings["time"] >= cutoff).all() and (fold.valid_watches["time"] >= cutoff).all()
    assert (fold.valid_ratings["time"] < pd.Timestamp(dataset.cutoff)).all()
    assert len(fold.train_ratings) + len(fold.valid_ratings) <= len(dataset.train_ratings)
    assert set(fold.valid_ratings["user_id"]) <= set(fold.user_ids), "window users need history before the fold"
    assert (fold.train_ratings["u"] >= 0).all() and (fold.train_ratings["i"] >= 0).all()


def test_search_keeps_to_its_budget_starts_from_the_configured_values_and_never_does_worse(dataset):
    params = validate(SEARCH)
    result = tune(dataset, "als", params)
    assert result["searched"] and 1 <= result["trials_done"] <= 4
    assert result["trials"][0]["params"]["factors"] == 8 and result["trials"][0]["params"]["iterations"] == 5
    assert result["best_score"] >= result["configured_score"]
    assert result["best_score"] == max(t["score"] for t in result["trials"])
    assert set(result["best_params"]) == set(params["train"]["als"])


def test_the_validation_window_does_not_change_the_choice(dataset):
    params = validate(SEARCH)
    blind = dataset.__class__(**{**dataset.__dict__, "valid_ratings": dataset.valid_ratings.iloc[:0],
                                 "valid_watches": dataset.valid_watches.iloc[:0]})
    assert tune(blind, "svd", params)["best_params"] == tune(dataset, "svd", params)["best_params"]


def test_a_model_without_hyper_parameters_is_scored_once_on_the_same_fold(dataset):
    results = tune_all(dataset, ["popularity", "als"], validate(SEARCH))
    assert not results["popularity"]["searched"] and results["popularity"]["trials"] == []
    assert results["popularity"]["fold_cutoff"] == results["als"]["fold_cutoff"]
    assert results["popularity"]["best_score"] > 0


def test_search_mode_trains_with_the_chosen_values_and_cards_the_search(dataset):
    rec, card = train(dataset, "als", validate(SEARCH))
    assert card.tuning["best_params"] == card.params
    assert card.metrics["tune_fold_ndcg@20"] == card.tuning["best_score"]
    assert len(card.tuning["trials"]) == card.tuning["trials_done"]
    _, fixed = train(dataset, "als", validate({**SEARCH, "train": {**SEARCH["train"], "tune": {"mode": "fixed"}}}))
    assert fixed.tuning == {} and fixed.params["factors"] == 8


def test_a_misspelled_mode_is_one_clear_line():
    with pytest.raises(UserError, match=r"train.tune.mode: unknown choice 'serch' \(allowed: fixed, search\)"):
        validate({"train": {"tune": {"mode": "serch"}}})
