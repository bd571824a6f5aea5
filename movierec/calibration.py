"""How often the canary analysis decides right, measured on many simulated worlds (`movierec calibrate`).

    movierec calibrate --worlds 200                      # A/A, better and worse canaries, JSON summary
    movierec calibrate --worlds 20 --scenario equal      # a quick look at the false-decision rate

Each world (`simulator.worlds`) is a canary at the default share with known truth: identical to
the stable version (`equal`), or followed `effect` more (`better`) or less (`worse`) often. The
world's event frames go through the platform's own join (`components.online.join.join`), then
the canary analysis looks at every evaluation cycle (`--cadence`, as `online-eval --follow`
would) from the canary's first answer to the end, on everything since that first answer. The
first look that decides ends the world; at that look (or the last one) the full
`components.online.canary.analyse` runs too and must agree.

Per scenario the summary gives the share of worlds promoted and rolled back with 95% Wilson
intervals, the median number of canary users at the decision, and the hit-rate difference the
effect amounts to (mean of the final estimates). The checks: the false-decision rate of
identical versions is within alpha (its interval includes or is below alpha); a better (worse)
canary is promoted (rolled back) in at least 80% of worlds and never the wrong way.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from datetime import timedelta

import numpy as np
import pandas as pd

from components.core import rollout, stats
from components.online import canary
from components.online.join import DEFAULT_WINDOW, join
from simulator.worlds import WorldSpec, make_world

EFFECT = 0.10            # per-visit follow probability: about 5 points of hit rate in these worlds
SCENARIOS = {"equal": 0.0, "better": EFFECT, "worse": -EFFECT}
CADENCE = timedelta(minutes=30)
STATE = rollout.RolloutState(stable="stable", canary="canary", canary_percent=WorldSpec().canary_percent)
POWER_TARGET = 0.8


@dataclass
class WorldOutcome:
    """What the analysis did in one world."""

    seed: int
    effect: float
    decision: str
    looks: int                 # looks taken until the decision (or all of them)
    canary_users: int          # canary users with evaluated answers at that look
    diff: float | None         # the hit-rate difference estimated at that look
    final_diff: float | None   # ... and on the whole world (every answer evaluated): the effect's size
    analyse_agrees: bool       # the full canary.analyse gives the same decision at that look


def look_times(joined: pd.DataFrame, cadence: timedelta = CADENCE) -> pd.DatetimeIndex:
    """Every evaluation cycle from the canary's first answer to the end of the data."""
    first = joined.loc[joined["version"] == STATE.canary, "time"].min()
    return pd.date_range(first + pd.Timedelta(cadence), joined["time"].max(), freq=pd.Timedelta(cadence))


def at_look(joined: pd.DataFrame, t: pd.Timestamp, window: timedelta) -> pd.DataFrame:
    """The joined answers as an analysis at time t sees them (later ones unknown, recent ones open)."""
    seen = joined[joined["time"] <= t]
    return seen.assign(open=seen["time"] > t - pd.Timedelta(window))


def sequential_decisions(joined: pd.DataFrame, looks: pd.DatetimeIndex, window: timedelta,
                         policy: canary.CanaryPolicy) -> tuple[int, str, int, float | None]:
    """The canary analysis's decision at each look, vectorised over looks (the answers and users guards, the
    sample-ratio check and the sequential test of `canary.analyse`; these worlds meet the service objectives): (look
    index, decision, canary users, difference) of the first look that decides, or of the last look."""
    first = joined.loc[joined["version"] == STATE.canary, "time"].min()
    period = joined[joined["time"] >= first]
    times = period["time"].to_numpy()
    users, user_index = np.unique(period["user_id"].to_numpy(), return_inverse=True)
    is_canary = np.zeros(users.size, dtype=bool)
    is_canary[user_index[(period["version"] == STATE.canary).to_numpy()]] = True
    hit = period["hit"].to_numpy(dtype=float)
    closed_until = np.searchsorted(times, (looks - pd.Timedelta(window)).to_numpy(), side="right")
    first_seen = np.full(users.size, np.datetime64("NaT"), dtype=times.dtype)
    first_seen[user_index[::-1]] = times[::-1]          # earliest answer of each user
    seen_canary, seen_stable = np.sort(first_seen[is_canary]), np.sort(first_seen[~is_canary])
    canary_times = times[(period["version"] == STATE.canary).to_numpy()]
    last = (len(looks) - 1, canary.KEEP, 0, None)
    for k, n in enumerate(closed_until):
        t = looks[k].to_datetime64()
        if np.searchsorted(canary_times, t, side="right") < policy.min_requests:   # objectives not checked yet
            continue
        srm = stats.sample_ratio_mismatch(int(np.searchsorted(seen_canary, t, side="right")),
                                          int(np.searchsorted(seen_stable, t, side="right")),
                                          STATE.canary_percent / 100, policy.srm_threshold)
        if srm.mismatch:       # the analysis trusts nothing while the split looks broken
            continue
        h = np.bincount(user_index[:n], weights=hit[:n], minlength=users.size)
        r = np.bincount(user_index[:n], minlength=users.size)
        cu, su = is_canary & (r > 0), ~is_canary & (r > 0)
        c_share, s_share = stats.clustered_share(h[cu], r[cu]), stats.clustered_share(h[su], r[su])
        if min(c_share.users, s_share.users) < policy.min_per_arm:
            continue
        d = stats.sequential_difference(s_share, c_share, policy.alpha, policy.mixture_sd)
        if d is None:
            continue
        decision = canary.PROMOTE if d.always_low > 0 else canary.ROLLBACK if d.always_high < 0 else canary.KEEP
        last = (k, decision, c_share.users, d.diff)
        if decision != canary.KEEP:
            return last
    return last


def world_joined(seed: int, effect: float, spec: WorldSpec = WorldSpec(), window: timedelta = DEFAULT_WINDOW
                 ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """A world's event frames and the platform's join of them."""
    frames = make_world(seed, replace(spec, effect=effect))
    return frames, join(frames, window)


def analyse_world(seed: int, effect: float, joined: pd.DataFrame, policy: canary.CanaryPolicy = canary.CanaryPolicy(),
                  window: timedelta = DEFAULT_WINDOW, cadence: timedelta = CADENCE) -> WorldOutcome:
    """The canary analysis of one joined world, looked at every `cadence`."""
    looks = look_times(joined, cadence)
    k, decision, users, diff = sequential_decisions(joined, looks, window, policy)
    full = canary.analyse(at_look(joined, looks[k], window), STATE, policy)
    c, s = canary.arms(joined.assign(open=False), STATE)
    final = stats.sequential_difference(canary.hit_share(s), canary.hit_share(c))
    return WorldOutcome(seed, effect, decision, k + 1, users, diff, final.diff if final else None,
                        full.decision == decision)


def run_world(seed: int, effect: float, spec: WorldSpec = WorldSpec(), policy: canary.CanaryPolicy = canary.CanaryPolicy(),
              window: timedelta = DEFAULT_WINDOW, cadence: timedelta = CADENCE) -> WorldOutcome:
    """One world through the platform's join and canary analysis, looked at every `cadence`."""
    _, joined = world_joined(seed, effect, spec, window)
    return analyse_world(seed, effect, joined, policy, window, cadence)


def summarise(outcomes: list[WorldOutcome], alpha: float) -> dict:
    """Decision shares with Wilson intervals, users at the decision, and the checks, per scenario."""
    effect = outcomes[0].effect
    n = len(outcomes)
    promoted = sum(o.decision == canary.PROMOTE for o in outcomes)
    rolled_back = sum(o.decision == canary.ROLLBACK for o in outcomes)
    decided = [o.canary_users for o in outcomes if o.decision != canary.KEEP]
    diffs = [o.final_diff for o in outcomes if o.final_diff is not None]
    out = {"effect_follow": effect, "worlds": n, "promoted": promoted, "rolled_back": rolled_back,
           "collecting": n - promoted - rolled_back,
           "hit_rate_difference_mean_estimate": round(float(np.mean(diffs)), 4) if diffs else None,
           "median_canary_users_at_decision": int(np.median(decided)) if decided else None,
           "median_looks_at_decision": int(np.median([o.looks for o in outcomes if o.decision != canary.KEEP]))
           if decided else None,
           "analyse_disagreements": sum(not o.analyse_agrees for o in outcomes)}
    if effect == 0:
        est = stats.wilson(promoted + rolled_back, n)
        out["false_decision_rate"] = {"value": est.value, "low": est.low, "high": est.high}
        out["check"] = {"rule": f"95% interval of the false-decision rate includes or is below alpha={alpha}",
                        "passed": est.low <= alpha}
    else:
        right, wrong = (promoted, rolled_back) if effect > 0 else (rolled_back, promoted)
        est = stats.wilson(right, n)
        out["right_decision_rate"] = {"value": est.value, "low": est.low, "high": est.high}
        out["wrong_way"] = wrong
        out["check"] = {"rule": f"right decision in at least {POWER_TARGET:.0%} of worlds, never the wrong way",
                        "passed": est.value >= POWER_TARGET and wrong == 0}
    return out


def calibrate(worlds: int, scenarios: dict[str, float] = SCENARIOS, spec: WorldSpec = WorldSpec(),
              policy: canary.CanaryPolicy = canary.CanaryPolicy(), first_seed: int = 1,
              progress=None) -> dict:
    """Run `worlds` worlds per scenario (the same seeds in each) and summarise them."""
    started = time.perf_counter()
    result = {"spec": asdict(spec), "policy": asdict(policy), "cadence": str(CADENCE), "scenarios": {}}
    for name, effect in scenarios.items():
        outcomes = []
        for seed in range(first_seed, first_seed + worlds):
            outcomes.append(run_world(seed, effect, spec, policy))
            if progress:
                progress(f"{name}: {len(outcomes)}/{worlds} worlds")
        result["scenarios"][name] = summarise(outcomes, policy.alpha)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["passed"] = all(s["check"]["passed"] for s in result["scenarios"].values())
    return result
