"""The course-scale benchmark at a small scale: a real kfp.local run, its JSON whole and its numbers sane.

`python -m benchmarks.bench_scale --quick` (what `make bench` runs): a small simulated world, the
pipeline, offline intervals against popularity, the winner and popularity side by side online.
ml-100k is left out here (it downloads a data set); its split is checked on a table of its shape.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from benchmarks import bench_scale
from components.core.errors import UserError

STAGES = {"ingest", "preprocess", "compare", "release"}


def _interval(x: dict, lo: float = 0.0, hi: float = 1.0) -> None:
    assert lo <= x["low"] <= x["value"] <= x["high"] <= hi, x


def test_quick_run_writes_a_complete_sane_result(tmp_path):
    prefix = tmp_path / "results" / "scale-quick"
    reference = tmp_path / "earlier" / "scale"
    reference.parent.mkdir()
    reference.with_name("scale-seed3.json").write_text(json.dumps(
        {"machine": {"commit": "first"}, "offline": {"models": {"svd": {"ndcg@20": {"value": 0.0}}}}}))
    results = bench_scale.main(["--quick", "--bootstrap", "300", "--workdir", str(tmp_path / "work"),
                                "--out-prefix", str(prefix), "--reference", str(reference)])
    path = prefix.with_name("scale-quick-seed3.json")
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(results["seed3"]))
    assert not (tmp_path / "results" / "scale-quick-ml100k.json").exists()

    world, sim = saved["world"], saved["simulate"]
    assert world["seed"] == 3 and world["users"] == bench_scale.QUICK["users"]
    assert sim["lines"] > 10_000 and 0 < sim["corrupted"] < sim["lines"] * 0.01 and sim["seconds"] > 0

    pipeline = saved["pipeline"]
    stages = pipeline["stages"]
    assert STAGES <= set(stages) and any(s.startswith("train-") for s in stages)
    assert any(s.startswith("evaluate-") for s in stages) and any(s.startswith("publish-") for s in stages)
    for name, stage in stages.items():
        # every step is a Python process with numpy and kfp loaded: tens of MB at least, far from GBs
        assert stage["seconds"] > 0 and 30 < stage["peak_rss_mb"] < 4096, (name, stage)
        assert 0 < stage["cpu_seconds"] < stage["seconds"] * 2 + 1, (name, stage)   # at most both cores
        assert stage["kernel_peak_rss_mb"] is None or 30 < stage["kernel_peak_rss_mb"] < 4096, (name, stage)
    assert any(s["kernel_peak_rss_mb"] for s in stages.values())
    assert pipeline["cpu_seconds"] == pytest.approx(sum(s["cpu_seconds"] for s in stages.values()), abs=0.1)
    assert pipeline["peak_rss_mb"] == max(s["peak_rss_mb"] for s in stages.values())
    assert max(s["seconds"] for s in stages.values()) <= pipeline["stage_seconds_sum"] <= pipeline["seconds"] + 1
    assert pipeline["samples"] > 10 and "RSS" in pipeline["memory_method"]
    assert pipeline["winner"] and {p["algorithm"] for p in pipeline["published"]} >= {"svd", "svdpp"}

    offline = saved["offline"]
    models = offline["models"]
    assert {"popularity", "svd", "svdpp"} <= set(models) and offline["users"] > 50
    pop = models["popularity"]
    for name, row in models.items():
        for metric in ("ndcg@20", "recall@20", "hit_rate@20"):
            _interval(row[metric])
            assert row[metric]["users"] == offline["users"]
            if name != "popularity":
                paired = row["vs_popularity"][metric]
                _interval(paired, -1.0, 1.0)
                assert paired["value"] == pytest.approx(row[metric]["value"] - pop[metric]["value"], abs=2e-6)
        if name != "popularity":
            assert row["training_seconds"] > 0 and row["version"].startswith(name)

    online = saved["online"]
    winner = online["winner"]["algorithm"]
    assert online["winner"]["version"] == pipeline["winner"] and set(online["arms"]) == {"popularity", winner}
    assert sum(arm["requests"] for arm in online["arms"].values()) == online["requests"]
    for arm in online["arms"].values():
        assert 0 < arm["users"] <= arm["requests"]
        assert 0 <= arm["low"] <= arm["hit_rate"] <= arm["high"] <= 1
    diff = online["winner_vs_popularity"]
    assert diff["diff"] == pytest.approx(online["arms"][winner]["hit_rate"] - online["arms"]["popularity"]["hit_rate"],
                                         abs=2e-6)
    assert diff["low"] <= diff["diff"] <= diff["high"]
    split = online["by_user"]
    for name, arm in online["arms"].items():   # known and unknown users partition each arm's requests
        assert split["known"]["requests"][name] + split["unknown"]["requests"][name] == arm["requests"]
    assert split["known"]["requests"][winner] > 0

    checks = saved["done_when"]
    assert checks["winner"] == winner and all(isinstance(v, bool) for k, v in checks.items() if k != "winner")
    assert checks["beats_popularity_online"] == (diff["low"] > 0)
    assert saved["machine"]["commit"]
    earlier = saved["against_reference"]
    assert earlier["commit"] == "first"
    assert earlier["models"]["offline"]["svd"]["ndcg@20"] == models["svd"]["ndcg@20"]["value"]


def test_bootstrap_interval_covers_the_mean_with_the_textbook_width():
    x = np.random.default_rng(1).normal(0.3, 1.0, 20_000)
    ci = bench_scale.bootstrap_mean(x, n_boot=1000)
    assert ci["low"] < 0.3 < ci["high"] and ci["users"] == 20_000
    assert ci["high"] - ci["low"] == pytest.approx(2 * 1.96 / np.sqrt(20_000), rel=0.15)
    assert bench_scale.bootstrap_mean(np.full(50, 0.25)) == {"value": 0.25, "low": 0.25, "high": 0.25, "users": 50}
    assert bench_scale.bootstrap_mean(np.empty(0))["value"] is None


def test_user_recent_split_holds_out_each_users_newest_fifth():
    ratings = pd.DataFrame({"user_id": [1] * 10 + [2] * 3, "movie_id": range(13), "rating": 4.0,
                            "timestamp": list(range(10, 0, -1)) + [5, 6, 7]})
    train, held = bench_scale.user_recent_split(ratings)
    assert sorted(held.loc[held["user_id"] == 1, "timestamp"]) == [9, 10]          # 20% of 10, the newest
    assert held.loc[held["user_id"] == 2, "timestamp"].tolist() == [7]             # at least one
    assert len(train) + len(held) == len(ratings) and not set(train.index) & set(held.index)


def test_against_reference_gives_each_models_change_since_an_earlier_result():
    def result(ndcg: float, hit: float, commit: str) -> dict:
        row = {"ndcg@20": {"value": ndcg}, "recall@20": {"value": 0.5}, "version": "v"}
        return {"offline": {"models": {"svd": row, "popularity": {"ndcg@20": {"value": 0.1}}}},
                "online": {"arms": {"svd": {"hit_rate": hit}, "popularity": {"hit_rate": 0.2}}},
                "machine": {"commit": commit}}

    change = bench_scale.against_reference(result(0.3, 0.5, "new"), result(0.25, 0.4, "old"))
    assert change["commit"] == "old"
    assert change["models"]["offline"]["svd"] == pytest.approx({"ndcg@20": 0.05, "recall@20": 0.0})
    assert change["models"]["offline"]["popularity"] == {"ndcg@20": 0.0}
    assert change["online_hit_rate"] == pytest.approx({"svd": 0.1, "popularity": 0.0})
    assert bench_scale.against_reference(result(0.3, 0.5, "new"), None) is None
    ml = {"user_recent": {"offline": {"models": {"svd": {"ndcg@20": {"value": 0.07}}}}}}
    assert bench_scale.against_reference(ml, ml)["models"] == {"user_recent": {"svd": {"ndcg@20": 0.0}}}


def test_without_a_gated_winner_the_best_model_is_served_marked_ungated_and_the_checks_fail():
    offline = {"primary_metric": "ndcg@20", "models": {
        "popularity": {"ndcg@20": {"value": 0.16}},
        "svd": {"version": "svd-1", "ndcg@20": {"value": 0.08}, "vs_popularity": {"ndcg@20": {"low": -0.1}}},
        "svdpp": {"version": "svdpp-1", "ndcg@20": {"value": 0.15}, "vs_popularity": {"ndcg@20": {"low": -0.02}}}}}
    assert bench_scale.served_model("svd-9", offline) == ("svd-9", True)
    assert bench_scale.served_model("", offline) == ("svdpp-1", False)
    assert bench_scale.served_model("", {"primary_metric": "ndcg@20", "models": {"popularity": {}}}) == ("", False)
    result = {"offline": offline, "pipeline": {"seconds": 100.0, "peak_rss_mb": 900.0},
              "online": {"winner": {"version": "svdpp-1", "algorithm": "svdpp", "gated": False},
                         "winner_vs_popularity": {"diff": 0.05, "low": 0.01, "high": 0.09}}}
    checks = bench_scale.world_checks(result)
    assert checks["winner"] is None and checks["winner_is_personalized"] is False
    assert checks["beats_popularity_offline_ndcg@20"] is False and checks["beats_popularity_online"] is True
    assert checks["pipeline_within_180_s"] and checks["pipeline_within_4_gb"]


def _args(**given):
    return argparse.Namespace(**{**dict.fromkeys(bench_scale.COURSE), "quick": False, "profile": None, **given})


def test_the_world_is_the_course_run_or_the_profiles_and_flags_win():
    from simulator.profiles import get_profile

    assert bench_scale.world_of(_args()) == bench_scale.COURSE
    course = get_profile("course")
    world = bench_scale.world_of(_args(profile="course", sessions_per_day=8000))
    assert (world["users"], world["movies"], world["days"]) == (course.users, course.movies, course.days)
    assert world["sessions_per_day"] == 8000 and world["requests"] == bench_scale.COURSE["requests"]
    quick = bench_scale.world_of(_args(quick=True, profile="course"))
    assert quick["users"] == bench_scale.QUICK["users"]
    assert quick["sessions_per_day"] == course.scaled(bench_scale.QUICK["users"]).sessions_per_day
    with pytest.raises(UserError, match="--profile: unknown profile 'coarse'"):
        bench_scale.world_of(_args(profile="coarse"))


def test_a_profile_gives_the_simulated_service_its_behaviour(tmp_path):
    from simulator.profiles import get_profile

    world = {**bench_scale.QUICK, "users": 200, "movies": 60, "days": 1, "sessions_per_day": 20}
    service, simulated = bench_scale.simulate_world(1, world, tmp_path / "events.log", "course")
    course = get_profile("course")
    assert (service.signup_ratings, service.legacy_share) == (course.signup_ratings, course.legacy_share)
    assert simulated["lines"] > 0 and (tmp_path / "events.log").exists()


def test_ml100k_checks_the_model_the_platform_would_serve():
    models = {"popularity": {"ndcg@20": {"value": 0.11}},
              "svdpp": {"version": "svdpp-1", "ndcg@20": {"value": 0.08}},
              "als": {"version": "als-1", "ndcg@20": {"value": 0.15}}}
    assert bench_scale._released(models, {"winner": "als-1"}) == "als"
    assert bench_scale._released(models, {"winner": ""}) == ""          # the pipeline's gate passed none
    assert bench_scale._released(models, None) == "als"                 # in-process: the best on NDCG@20
