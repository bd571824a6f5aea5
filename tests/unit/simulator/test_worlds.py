"""Calibration worlds: deterministic, in the event-log shape, and with the behaviour that fools a naive analysis."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from components.online.join import join
from simulator.worlds import WorldSpec, make_world

SMALL = WorldSpec(users=600, days=1.0)


def test_a_world_is_deterministic_and_routes_about_the_canary_share():
    a, b = make_world(3, SMALL), make_world(3, SMALL)
    assert a["recommendation"].equals(b["recommendation"]) and a["watch"].equals(b["watch"])
    recs = a["recommendation"]
    users = recs.groupby("user_id")["server"].agg(set)
    assert all(len(s) == 1 for s in users)                      # a user stays on one version
    share = (users.map(lambda s: "sim@canary" in s)).mean()
    assert 0.05 < share < 0.16
    assert recs["time"].is_monotonic_increasing and a["watch"]["time"].is_monotonic_increasing
    assert (recs["status"] == 0).any() and (recs.loc[recs["status"] == 0, "results"].map(len) == 0).all()


def test_users_differ_return_and_reload():
    recs = make_world(4, SMALL)["recommendation"]
    per_user = recs.groupby("user_id").size()
    assert per_user.max() >= 8 * per_user.median()               # a heavy tail of returning users
    gaps = recs.groupby("user_id")["time"].diff().dropna()
    assert (gaps < np.timedelta64(5, "m")).mean() > 0.1          # reloads within minutes


def test_running_sessions_and_own_choices_are_in_the_data():
    """Some lists show the movie the user is watching (not a hit), and the join still finds hits."""
    frames = make_world(5, SMALL)
    joined = join(frames)
    recs, watches = frames["recommendation"], frames["watch"]
    first = recs[recs["status"] == 200].iloc[:2000]
    during = 0
    for _, r in first.iterrows():
        w = watches[(watches["user_id"] == r["user_id"]) & (watches["movie_id"] == r["results"][0])]
        during += bool(((w["time"] < r["time"]) & (w["time"] > r["time"] - np.timedelta64(10, "m"))).any())
    assert during > 10
    assert 0.1 < joined["hit"].mean() < 0.6


def test_a_better_canary_earns_more_hits():
    spec = WorldSpec(users=3000, days=1.0)
    rates = {}
    for effect in (0.0, 0.15):
        joined = join(make_world(6, WorldSpec(**{**spec.__dict__, "effect": effect})))
        rates[effect] = joined.groupby("version")["hit"].mean()
    assert rates[0.15]["canary"] - rates[0.15]["stable"] > rates[0.0]["canary"] - rates[0.0]["stable"] + 0.03


def test_calibrate_command_rejects_an_unknown_scenario_in_one_line():
    from movierec.cli import app

    result = CliRunner().invoke(app, ["calibrate", "--scenario", "sideways", "--worlds", "1"])
    assert result.exit_code == 2
    assert "unknown scenario 'sideways'" in result.output and "Traceback" not in result.output
