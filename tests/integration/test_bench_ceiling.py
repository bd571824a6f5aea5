"""The ceiling benchmark on a small simulated world: the ladder popularity, ALS, ALS's prior alone,
known movie factors, oracle written whole; the oracle (true odds) beats popularity; a store from another
world, or without its catalogue size, is a one-line mistake."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_ceiling
from benchmarks.stored_worlds import simulated_store
from components.core.errors import UserError
from components.core.params import load_params


def test_a_small_world_climbs_from_popularity_to_the_oracle(tmp_path):
    out = tmp_path / "ceiling.json"
    result = bench_ceiling.main(["--users", "3000", "--movies", "200", "--resamples", "300", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (world,) = result["worlds"].values()
    assert set(world["models"]) == {"popularity", "als", "als_prior", "known_factors", "oracle"}
    assert world["known_factors_weight"] in bench_ceiling.WEIGHTS
    for name, entry in world["models"].items():
        assert 0 <= entry["ndcg@20"] <= 1 and 0 <= entry["recall@20"] <= 1, name
        if name != "popularity":
            d = entry["vs_popularity"]["ndcg@20"]
            assert d["low"] <= d["difference"] <= d["high"] and d["users"] == world["users"]
    assert world["models"]["oracle"]["vs_popularity"]["ndcg@20"]["low"] > 0   # knowing the truth pays
    assert world["als_factor_fit"] and all(0 <= band["r2"] <= 1 and band["movies"] > 0
                                           for band in world["als_factor_fit"].values())


def test_a_store_of_another_world_or_without_its_size_is_named(tmp_path):
    store = simulated_store(tmp_path, seed=5, users=1500, movies=150)
    with pytest.raises(UserError, match="not in the catalogue of seed 6 with 150 movies"):
        bench_ceiling.ladder(store, 6, 150, load_params(None), 100)
    with pytest.raises(UserError, match="--store needs --movies"):
        bench_ceiling.main(["--store", f"w={store}", "--out", str(tmp_path / "x.json")])
