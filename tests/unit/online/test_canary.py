"""Canary decisions: z-test, sample-ratio mismatch, objectives, the peeking guard, acting on rollout."""

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
    assert a.z_test["z"] > a.boundary


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
    a = canary.analyse(joined(900, 0.10, 100, 0.60), STATE)
    assert a.decision == canary.KEEP and "needed before a decision" in a.reasons[0]


def test_early_small_difference_does_not_cross_the_strict_boundary():
    # z about 2.3 would pass a naive 5% test, but only 10% of the planned information is in.
    a = canary.analyse(joined(4500, 0.20, 500, 0.25, seed=3), STATE)
    assert a.decision == canary.KEEP
    assert abs(a.z_test["z"]) < a.boundary


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
