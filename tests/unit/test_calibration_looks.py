"""The calibration's vectorised looks decide as a plain loop over looks with `components.core.stats`
does, look by look (the loop is the analysis `canary.analyse` runs at each evaluation cycle)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from components.core import stats
from components.online import canary
from movierec import calibration as cal
from simulator.worlds import WorldSpec

WINDOW = timedelta(minutes=30)


def loop_decisions(joined: pd.DataFrame, looks: pd.DatetimeIndex, policy: canary.CanaryPolicy):
    first = joined.loc[joined["version"] == cal.STATE.canary, "time"].min()
    period = joined[joined["time"] >= first]
    last = (len(looks) - 1, canary.KEEP, 0, None)
    for k, t in enumerate(looks):
        if (period["version"].eq(cal.STATE.canary) & (period["time"] <= t)).sum() < policy.min_requests:
            continue
        seen = period[period["time"] <= t]
        firsts = seen.groupby("user_id")["version"].first()
        if stats.sample_ratio_mismatch(int((firsts == cal.STATE.canary).sum()), int((firsts != cal.STATE.canary).sum()),
                                       cal.STATE.canary_percent / 100, policy.srm_threshold).mismatch:
            continue
        closed = period[period["time"] <= t - pd.Timedelta(WINDOW)]
        per_user = closed.groupby(["user_id", "version"])["hit"].agg(["sum", "count"]).reset_index()
        arm = {v: per_user[per_user["version"] == v] for v in (cal.STATE.canary, cal.STATE.stable)}
        c = stats.clustered_share(arm["canary"]["sum"].to_numpy(), arm["canary"]["count"].to_numpy())
        s = stats.clustered_share(arm["stable"]["sum"].to_numpy(), arm["stable"]["count"].to_numpy())
        if min(c.users, s.users) < policy.min_per_arm:
            continue
        d = stats.sequential_difference(s, c, policy.alpha, policy.mixture_sd)
        if d is None:
            continue
        decision = canary.PROMOTE if d.always_low > 0 else canary.ROLLBACK if d.always_high < 0 else canary.KEEP
        last = (k, decision, c.users, d.diff)
        if decision != canary.KEEP:
            return last
    return last


@pytest.mark.parametrize("seed,effect", [(1, 0.0), (2, -0.15), (3, 0.15)])
def test_vectorised_looks_decide_as_the_loop(seed, effect):
    spec = WorldSpec(users=3000, days=0.5)
    _, joined = cal.world_joined(seed, effect, spec)
    looks = cal.look_times(joined, timedelta(minutes=10))
    policy = canary.CanaryPolicy(min_per_arm=30, min_requests=50)
    got, want = cal.sequential_decisions(joined, looks, WINDOW, policy), loop_decisions(joined, looks, policy)
    assert got[:3] == want[:3]
    assert got[3] == pytest.approx(want[3], abs=1e-12) if want[3] is not None else got[3] is None


def test_sample_ratio_check_over_many_looks_is_the_chi_square_of_each():
    counts = [(0, 0), (10, 90), (30, 70), (5, 200), (100, 900), (1, 0)]
    got = cal._srm_mismatch(np.array([c for c, _ in counts]), np.array([s for _, s in counts]), 0.1, 0.001)
    want = [stats.sample_ratio_mismatch(c, s, 0.1, 0.001).mismatch for c, s in counts]
    assert got.tolist() == want


def test_the_calibration_looks_at_every_cycle_of_a_follow_run():
    import inspect

    from components.online.run import FOLLOW_INTERVAL_S, follow

    assert cal.CADENCE == timedelta(seconds=FOLLOW_INTERVAL_S)
    assert inspect.signature(follow).parameters["interval"].default == FOLLOW_INTERVAL_S


def test_the_stated_effect_is_the_hit_rate_shift_of_the_follow_effect_chosen(monkeypatch):
    """`follow_effect` solves hit_rate_shift(effect) = points; here on a known, clipped-looking shift."""
    monkeypatch.setattr(cal, "_FOLLOW_EFFECTS", {})
    monkeypatch.setattr(cal, "hit_rate_shift", lambda f, spec=None: 0.42 * f + 0.3 * min(f, 0.0) ** 2)
    for points in (-0.05, 0.05):
        effect = cal.follow_effect(points)
        assert cal.hit_rate_shift(effect) == pytest.approx(points, abs=2e-4)
    assert cal.follow_effect(0.0) == 0.0
    assert cal.SCENARIOS == {"equal": 0.0, "better": 0.05, "worse": -0.05}
