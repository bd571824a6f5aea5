"""Preprocess split modes: one global time cutoff (default) or each user's newest events held out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.core.errors import UserError
from components.core.params import validate
from components.training.preprocess import _cutoff, _split, build_dataset
from tests.synthetic_events import synthetic_events
from tests.unit.training.test_preprocess import frames

USER_RECENT = {"preprocess": {"split": "user_recent", "min_user_movies": 1, "min_movie_users": 1}}
MOVIEREC = Path(sys.executable).with_name("movierec")


def test_user_recent_holds_out_each_users_newest_fifth():
    # user 1 rates on days 0..9, user 2 on days 10..14: a global cutoff would validate user 2 only
    r, _ = frames([(d, 1, f"m{d}", 4) for d in range(10)] + [(d, 2, f"m{d - 10}", 3) for d in range(10, 15)])
    ds = build_dataset(r, frames([])[1], USER_RECENT)
    held = ds.valid_ratings.groupby("user_id")["movie_id"].apply(sorted).to_dict()
    assert held == {1: ["m8", "m9"], 2: ["m4"]}
    assert ds.stats["valid_users"] == 2 and ds.cutoff == "per user"
    for user, rows in ds.train_ratings.groupby("user_id"):
        assert rows["time"].max() < ds.valid_ratings.loc[ds.valid_ratings["user_id"] == user, "time"].min()
    assert build_dataset(r, frames([])[1], {**USER_RECENT, "preprocess": {**USER_RECENT["preprocess"],
                                                                           "split": "time"}}).stats["valid_users"] == 1


@pytest.mark.parametrize("window", [{"valid_fraction": 0.2}, {"valid_fraction": 0.35}, {"valid_days": 3},
                                    {"valid_days": 0}, {"valid_fraction": 0}])
def test_user_recent_is_the_global_rule_applied_to_each_user_alone(window):
    rates, watches = synthetic_events(seed=11)
    p = {"split": "user_recent", **window}
    _, in_train_r, in_train_w = _split(rates, watches, p)
    for user in np.union1d(rates["user_id"].unique(), watches["user_id"].unique()):
        r, w = rates["user_id"] == user, watches["user_id"] == user
        cutoff = _cutoff(rates.loc[r, "time"], watches.loc[w, "time"], {"valid_fraction": 0.2, **window})
        np.testing.assert_array_equal(in_train_r[r.to_numpy()], (rates.loc[r, "time"] < cutoff).to_numpy())
        np.testing.assert_array_equal(in_train_w[w.to_numpy()], (watches.loc[w, "time"] < cutoff).to_numpy())


def test_user_recent_validates_every_user_with_enough_history():
    rates, watches = synthetic_events(seed=12)
    by_user = build_dataset(rates, watches, {"preprocess": {"split": "user_recent"}})
    assert by_user.stats["valid_users"] == by_user.stats["valid_window_users"]
    share = by_user.stats["valid_rating_pairs"] / (by_user.stats["valid_rating_pairs"]
                                                   + by_user.stats["train_rating_pairs"])
    assert 0.1 < share < 0.35


def test_time_split_is_the_default_and_unchanged():
    rates, watches = synthetic_events(seed=13)
    default, explicit = build_dataset(rates, watches), build_dataset(rates, watches, {"preprocess": {"split": "time"}})
    assert default.cutoff == explicit.cutoff and pd.Timestamp(default.cutoff) > rates["time"].min()
    pd.testing.assert_frame_equal(default.valid_ratings, explicit.valid_ratings)


def test_a_misspelled_split_lists_the_choices():
    with pytest.raises(UserError) as error:
        validate({"preprocess": {"split": "user"}}, "params.yaml")
    assert str(error.value) == "params.yaml: preprocess.split: unknown choice 'user' (allowed: time, user_recent)"


def test_the_command_refuses_a_misspelled_split_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("preprocess:\n  split: per_user\n")
    (tmp_path / "store").mkdir()
    done = subprocess.run([str(MOVIEREC), "preprocess", "--store", "store", "--out", "ds"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        "movierec: params.yaml: preprocess.split: unknown choice 'per_user' (allowed: time, user_recent)"]
    assert not (tmp_path / "ds").exists()
