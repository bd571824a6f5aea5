"""Canary decisions: users as the unit, the always-valid test, sample-ratio mismatch, objectives, acting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.core import rollout, stats
from components.core.store import LocalStore
from components.online import canary

T0 = pd.Timestamp("2026-03-18T12:00:00")


def joined(n_stable, p_stable, n_canary, p_canary, *, seed=0, ms_canary=20.0, status_canary=200,
           stable="v1", canary_version="v2"):
    """A joined frame as online_eval.join returns it, with known hit probabilities per arm."""
    rng = np.random.default_rng(seed)
    rows = []
    for version, n, p, ms, status in ((stable, n_stable, p_stable, 20.0, 200),
                                      (canary_version, n_canary, p_canary, ms_canary, status_canary)):
        rows.append(pd.DataFrame({
            "time": T0 + pd.to_timedelta(rng.uniform(0, 3600, n), unit="s"),
            "user_id": rng.integers(0, 10**9, n), "version": version, "status": status,
            "response_time_ms": ms, "served": status == 200, "open": False,
            "hit": (rng.random(n) < p) & (status == 200), "minutes": 0}))
    return pd.concat(rows, ignore_index=True).sort_values("time", ignore_index=True)


STATE = rollout.RolloutState(stable="v1", canary="v2", canary_percent=10.0)


def test_two_proportion_z_matches_textbook():
    z = stats.two_proportion_z(100, 1000, 130, 1000)
    assert z.z == pytest.approx(2.098, abs=0.01)
    assert z.p_value == pytest.approx(0.0359, abs=0.002)
    assert z.diff_low < 0.03 < z.diff_high


def test_sample_ratio_mismatch():
    assert not stats.sample_ratio_mismatch(1000, 9000, 0.10).mismatch
    bad = stats.sample_ratio_mismatch(700, 9300, 0.10)
    assert bad.mismatch and bad.p_value < 1e-10


def test_sequential_boundary_is_strict_early_and_2_24_at_the_end():
    assert stats.sequential_boundary(1.0) == pytest.approx(2.241, abs=0.001)
    assert stats.sequential_boundary(0.25) == pytest.approx(4.48, abs=0.01)
    assert stats.sequential_boundary(3.0) == stats.sequential_boundary(1.0)


def test_better_canary_is_promoted():
    a = canary.analyse(joined(18000, 0.20, 2000, 0.30), STATE)
    assert a.decision == canary.PROMOTE, a.reasons
    d = a.difference
    assert 0 < d["always_low"] < d["low"] < d["diff"] < d["high"] < d["always_high"]
    assert "2000 canary" in a.reasons[0] and "users" in a.reasons[0]


def test_worse_canary_is_rolled_back():
    a = canary.analyse(joined(18000, 0.20, 2000, 0.05), STATE)
    assert a.decision == canary.ROLLBACK and "worse" in a.reasons[0]


def test_equal_canary_keeps_collecting():
    a = canary.analyse(joined(18000, 0.20, 2000, 0.20), STATE)
    assert a.decision == canary.KEEP


def test_equal_canary_past_planned_size_is_inconclusive():
    a = canary.analyse(joined(45000, 0.20, 5000, 0.20), STATE)
    assert a.decision == canary.KEEP and "inconclusive" in a.reasons[0]


def test_too_few_samples_keep_collecting_even_if_different():
    a = canary.analyse(joined(900, 0.10, 90, 0.60), STATE)
    assert a.decision == canary.KEEP and "per arm needed" in a.reasons[0]


def test_early_small_difference_is_not_yet_a_decision():
    # z about 2.3 would pass a naive 5% test; the always-valid interval still includes 0.
    a = canary.analyse(joined(4500, 0.20, 500, 0.25, seed=1), STATE)
    assert a.decision == canary.KEEP
    d = a.difference
    assert d["low"] > 0 > d["always_low"]


def test_srm_blocks_promotion():
    frame = joined(5000, 0.20, 2000, 0.40)   # 2000 canary users for a 10% split: broken routing
    a = canary.analyse(frame, STATE)
    assert a.decision == canary.KEEP and "sample-ratio mismatch" in a.reasons[0]


def test_slow_canary_is_rolled_back_whatever_its_hit_rate():
    a = canary.analyse(joined(18000, 0.20, 2000, 0.50, ms_canary=900.0), STATE)
    assert a.decision == canary.ROLLBACK and any("latency" in r or "availability" in r for r in a.reasons)


def test_failing_canary_is_rolled_back():
    a = canary.analyse(joined(18000, 0.20, 2000, 0.0, status_canary=500), STATE)
    assert a.decision == canary.ROLLBACK and "availability" in a.reasons[0]


def test_no_canary():
    a = canary.analyse(joined(100, 0.2, 0, 0.2), rollout.RolloutState(stable="v1"))
    assert a.decision == canary.NO_CANARY


def test_act_promotes_and_rolls_back_through_rollout(tmp_path):
    store = LocalStore(tmp_path)
    rollout.set_stable(store, "v1")
    rollout.start_canary(store, "v2", 10)
    a = canary.act(store, canary.analyse(joined(18000, 0.20, 2000, 0.30), rollout.load(store)))
    assert a.acted == canary.PROMOTE
    state = rollout.load(store)
    assert state.stable == "v2" and state.canary is None
    assert "online evaluation" in state.history[-1]["reason"]

    rollout.start_canary(store, "v3", 10)
    worse = joined(18000, 0.20, 2000, 0.05, stable="v2", canary_version="v3")
    a = canary.act(store, canary.analyse(worse, rollout.load(store)))
    assert a.acted == canary.ROLLBACK and rollout.load(store).stable == "v2"


def test_act_does_nothing_when_the_canary_changed(tmp_path):
    store = LocalStore(tmp_path)
    rollout.set_stable(store, "v1")
    rollout.start_canary(store, "v9", 10)
    a = canary.act(store, canary.analyse(joined(18000, 0.20, 2000, 0.30), STATE))
    assert a.acted is None and rollout.load(store).canary == "v9"


def clustered_world(rng, n_users, requests_per_user, p_users):
    """Per-user hits and requests: each user has their own hit probability (correlated requests)."""
    n = rng.poisson(requests_per_user - 1, n_users) + 1
    return rng.binomial(n, p_users(rng, n_users)), n


def test_clustered_share_is_the_binomial_variance_for_one_request_per_user():
    hits = np.array([1] * 30 + [0] * 70)
    share = stats.clustered_share(hits, np.ones(100))
    assert share.value == pytest.approx(0.3)
    assert share.variance == pytest.approx(0.3 * 0.7 / 99, rel=1e-9)     # m/(m-1) * p(1-p)/m


def test_correlated_requests_widen_the_interval():
    """Users who always or never follow: ten requests of one user are worth about one."""
    hits = np.array([10] * 30 + [0] * 70)
    share = stats.clustered_share(hits, np.full(100, 10))
    assert share.variance == pytest.approx(10 * 0.3 * 0.7 / 99 / 10, rel=1e-9)
    assert share.variance > 9 * 0.3 * 0.7 / 1000


def test_identical_arms_with_heavy_users_false_rate_within_alpha_unlike_the_request_level_z_test():
    """200 A/A comparisons with strongly correlated users: the request-level z-test (the first
    version) declares a difference far more often than 5%; the users-as-unit test does not."""
    rng = np.random.default_rng(7)

    def beta(r, m):
        return r.beta(0.5, 1.0, m)

    naive = clustered = 0
    for _ in range(200):
        (ha, na), (hb, nb) = clustered_world(rng, 300, 6, beta), clustered_world(rng, 300, 6, beta)
        naive += abs(stats.two_proportion_z(ha.sum(), na.sum(), hb.sum(), nb.sum()).z) > 1.96
        d = stats.sequential_difference(stats.clustered_share(ha, na), stats.clustered_share(hb, nb))
        clustered += not d.low < 0 < d.high
    assert naive / 200 > 0.15
    assert clustered / 200 < 0.09


def test_always_valid_interval_holds_at_every_look():
    """300 A/A canaries looked at 40 times each: the fixed 95% interval excludes 0 at some look far
    more often than 5%; the always-valid one does in at most about alpha of them."""
    rng = np.random.default_rng(3)
    fixed = always = 0
    for _ in range(300):
        ha, na, hb, nb = (np.zeros(0),) * 4
        wrong_fixed = wrong_always = False
        for _look in range(40):
            h1, n1 = clustered_world(rng, 50, 3, lambda r, m: np.full(m, 0.3))
            h2, n2 = clustered_world(rng, 50, 3, lambda r, m: np.full(m, 0.3))
            ha, na, hb, nb = np.r_[ha, h1], np.r_[na, n1], np.r_[hb, h2], np.r_[nb, n2]
            d = stats.sequential_difference(stats.clustered_share(ha, na), stats.clustered_share(hb, nb))
            wrong_fixed |= not d.low < 0 < d.high
            wrong_always |= not d.always_low < 0 < d.always_high
        fixed += wrong_fixed
        always += wrong_always
    assert fixed / 300 > 0.15
    assert always / 300 <= 0.07


def test_failed_answers_count_against_the_canary():
    frame = joined(100, 0.0, 100, 1.0, seed=1)
    canary_rows = frame[frame["version"] == "v2"].copy()
    canary_rows.loc[canary_rows.index[:40], ["status", "served", "hit"]] = [500, False, False]
    share = canary.hit_share(canary_rows)
    assert share.requests == 100 and share.value == pytest.approx(0.6)


def test_trajectory_of_the_difference_ends_where_the_analysis_is():
    frame = joined(18000, 0.20, 2000, 0.30)
    a = canary.analyse(frame, STATE)
    path = canary.trajectory(frame, STATE, points=6)
    assert len(path) == 6 and path["time"].is_monotonic_increasing
    assert path["canary_users"].is_monotonic_increasing
    assert path.iloc[-1]["diff"] == pytest.approx(a.difference["diff"])
    assert (path["always_high"] - path["always_low"]).iloc[-1] < (path["always_high"] - path["always_low"]).iloc[0]


def test_answers_over_the_objective_are_misses_and_no_decision_before_the_objectives_are_checked():
    slow = joined(1500, 0.20, 150, 0.60, ms_canary=900.0)     # 150 canary answers: too few to check objectives
    a = canary.analyse(slow, STATE)
    assert a.decision == canary.KEEP and "service objectives" in a.reasons[0]
    assert a.arms["canary"]["hit_rate"]["value"] == 0.0      # every canary answer broke the 600 ms contract
