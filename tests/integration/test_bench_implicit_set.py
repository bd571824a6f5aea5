"""SVD++'s implicit-set benchmark on a small simulated world: both variants fitted on the same
split, their metrics and the paired difference written whole; a store that is not there is a
one-line mistake."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_implicit_set
from components.core.errors import UserError


def test_a_small_world_compares_both_implicit_sets_user_by_user(tmp_path):
    out = tmp_path / "svdpp-implicit-set.json"
    result = bench_implicit_set.main(["--users", "3000", "--movies", "200", "--resamples", "300",
                                      "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (world,) = result["worlds"].values()
    assert world["users"] > 50 and world["train_ratings"] > 0 and world["train_watch_pairs"] > 0
    assert set(world["variants"]) == {"popularity", "rated", "rated_or_watched"}
    for name in ("rated", "rated_or_watched"):
        variant = world["variants"][name]
        assert 0 <= variant["ndcg@20"] <= 1 and 0.3 < variant["rmse"] < 2 and variant["fit_seconds"] > 0
    for metric, d in world["watched_minus_rated"].items():
        assert d["low"] <= d["difference"] <= d["high"] and d["users"] == world["users"], metric
    # the two variants differ (the watched movies reach the fit), though not necessarily in the metric
    assert world["variants"]["rated"]["rmse"] != world["variants"]["rated_or_watched"]["rmse"]


def test_a_store_that_is_not_there_is_named(tmp_path):
    with pytest.raises(UserError, match="no store folder at"):
        bench_implicit_set.main(["--store", f"w={tmp_path / 'missing'}", "--out", str(tmp_path / "x.json")])
