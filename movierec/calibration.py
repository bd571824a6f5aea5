"""How often the canary analysis decides right, measured on many simulated worlds (`movierec calibrate`).

    movierec calibrate --worlds 200                      # A/A, better and worse canaries, JSON summary
    movierec calibrate --worlds 20 --scenario equal      # a quick look at the false-decision rate

Each world (`simulator.worlds`) is a canary at the default share with known truth: identical to
the stable version (`equal`), or with a hit rate `EFFECT_POINTS` (5 points) above (`better`) or
below (`worse`) it: the canary's users follow a list more (less) often per visit, by the follow
effect that moves a population's hit rate by exactly that (`follow_effect`). The
world's event frames go through the platform's own join (`components.online.join.join`), then
the canary analysis looks at every evaluation cycle of a follow run (`CADENCE`, the interval of
`online-eval --follow`: every 30 s) from the canary's first answer to the end, on everything
since that first answer (the looks are vectorised: prefix sums per arm over the answers). The
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
from components.online.run import FOLLOW_INTERVAL_S
from simulator.worlds import WorldSpec, make_world

EFFECT_POINTS = 0.05     # the stated effect: the canary's hit rate 5 points above (below) the stable one's
SCENARIOS = {"equal": 0.0, "better": EFFECT_POINTS, "worse": -EFFECT_POINTS}   # in hit-rate points
EFFECT = 0.10            # a per-visit follow effect of about 5 points (`follow_effect` gives the exact one)
CADENCE = timedelta(seconds=FOLLOW_INTERVAL_S)   # every evaluation cycle of `online-eval --follow`
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
    """The canary analysis's decision at each look, vectorised over looks and answers (the answers
    and users guards, the sample-ratio check and the sequential test of `canary.analyse`; these
    worlds meet the service objectives): (look index, decision, canary users, difference) of the
    first look that decides, else of the last look the test could run at, else of the last look.

    Each arm's users-as-unit figures (`stats.clustered_share`: users m, hits S, answers N and
    the sums of s_i^2, s_i n_i, n_i^2 over users) are prefix sums over the answers in the order
    they close, so a look every 30 seconds for days costs no more than a look every hour."""
    first = joined.loc[joined["version"] == STATE.canary, "time"].min()
    period = joined[joined["time"] >= first]
    times = period["time"].to_numpy()
    in_canary = (period["version"] == STATE.canary).to_numpy()
    users, user_index = np.unique(period["user_id"].to_numpy(), return_inverse=True)
    is_canary = np.zeros(users.size, dtype=bool)
    is_canary[user_index[in_canary]] = True
    hit = period["hit"].to_numpy(dtype=float)
    closed_until = np.searchsorted(times, (looks - pd.Timedelta(window)).to_numpy(), side="right")
    look_times_ = looks.to_numpy().astype(times.dtype)

    # per answer: the user's answers and hits before it (answers close in time order)
    order = np.lexsort((np.arange(user_index.size), user_index))
    starts = np.r_[0, np.flatnonzero(np.diff(user_index[order])) + 1]
    n_before = np.empty(user_index.size)
    n_before[order] = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
    cum_hits = np.cumsum(hit[order])
    group_start = np.repeat(cum_hits[starts] - hit[order][starts], np.diff(np.r_[starts, order.size]))
    s_before = np.empty(user_index.size)
    s_before[order] = cum_hits - hit[order] - group_start
    increments = np.stack([n_before == 0, hit, np.ones_like(hit), 2 * s_before * hit + hit * hit,
                           s_before + hit * n_before + hit, 2 * n_before + 1])       # m, S, N, Sss, Ssn, Snn

    def arm(mask: np.ndarray) -> tuple[np.ndarray, ...]:
        sums = np.concatenate([np.zeros((6, 1)), np.cumsum(increments * mask, axis=1)], axis=1)
        m, total_s, total_n, sss, ssn, snn = sums[:, closed_until]
        with np.errstate(divide="ignore", invalid="ignore"):
            p = total_s / total_n
            var = m / (m - 1) * (sss - 2 * p * ssn + p * p * snn) / total_n ** 2
        return m, p, var

    user_is_canary = is_canary[user_index]
    mc, pc, vc = arm(user_is_canary)
    ms, ps, vs = arm(~user_is_canary)
    first_seen = np.full(users.size, np.datetime64("NaT"), dtype=times.dtype)
    first_seen[user_index[::-1]] = times[::-1]          # earliest answer of each user
    nc = np.searchsorted(np.sort(first_seen[is_canary]), look_times_, side="right")
    ns = np.searchsorted(np.sort(first_seen[~is_canary]), look_times_, side="right")
    share = STATE.canary_percent / 100
    srm = _srm_mismatch(nc, ns, share, policy.srm_threshold)
    answered = np.searchsorted(times[in_canary], look_times_, side="right") >= policy.min_requests
    d, v, t2 = pc - ps, vc + vs, policy.mixture_sd ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        always = np.sqrt(2 * v * (v + t2) / t2 * (np.log(1 / policy.alpha) + 0.5 * np.log((v + t2) / v)))
    valid = answered & ~srm & (np.minimum(mc, ms) >= policy.min_per_arm) & (mc >= 2) & (ms >= 2) & (v > 0)
    promote, rollback = valid & (d - always > 0), valid & (d + always < 0)
    decided = np.flatnonzero(promote | rollback)
    if decided.size:
        k = int(decided[0])
        return k, canary.PROMOTE if promote[k] else canary.ROLLBACK, int(mc[k]), float(d[k])
    tested = np.flatnonzero(valid)
    if tested.size:
        k = int(tested[-1])
        return k, canary.KEEP, int(mc[k]), float(d[k])
    return len(looks) - 1, canary.KEEP, 0, None


def _srm_mismatch(n_canary: np.ndarray, n_stable: np.ndarray, share: float, threshold: float) -> np.ndarray:
    """`stats.sample_ratio_mismatch` over many looks at once (the same chi-square, 1 dof)."""
    from scipy.stats import chi2

    total = n_canary + n_stable
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = ((n_canary - share * total) ** 2 / (share * total)
                     + (n_stable - (1 - share) * total) ** 2 / ((1 - share) * total))
    return (total > 0) & (chi2.sf(np.nan_to_num(statistic), 1) < threshold)


def hit_rate_shift(follow: float, spec: WorldSpec = WorldSpec(), users: int = 20_000, seed: int = 0) -> float:
    """How much a per-visit follow effect moves the hit rate (sum of hits / answers, as the canary
    analysis measures it) of a world's population: every user given the effect against the same
    users without it, on the same random draws (the effect changes no draw), so the sampling
    noise of one world cancels."""
    def rate(effect: float) -> float:
        joined = join(make_world(seed, replace(spec, users=users, canary_percent=100.0, effect=effect)))
        return float(joined.loc[joined["served"], "hit"].mean())
    return rate(follow) - rate(0.0)


def follow_effect(points: float, spec: WorldSpec = WorldSpec(), tolerance: float = 2e-4) -> float:
    """The per-visit follow effect whose hit-rate shift is `points` (secant on `hit_rate_shift`),
    so that a scenario's stated effect is the effect the worlds have."""
    if points == 0:
        return 0.0
    key = (points, spec)
    if key not in _FOLLOW_EFFECTS:
        x0, x1 = 0.0, 2 * points
        f0, f1 = -points, hit_rate_shift(x1, spec) - points
        for _ in range(8):
            if abs(f1) <= tolerance or f1 == f0:
                break
            x0, f0, x1 = x1, f1, x1 - f1 * (x1 - x0) / (f1 - f0)
            f1 = hit_rate_shift(x1, spec) - points
        _FOLLOW_EFFECTS[key] = round(x1, 5)
    return _FOLLOW_EFFECTS[key]


_FOLLOW_EFFECTS: dict[tuple[float, WorldSpec], float] = {}


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
    """Run `worlds` worlds per scenario (the same seeds in each) and summarise them; a scenario's
    effect is in hit-rate points, turned into the worlds' follow effect by `follow_effect`."""
    started = time.perf_counter()
    result = {"spec": asdict(spec), "policy": asdict(policy), "cadence": str(CADENCE), "scenarios": {}}
    for name, points in scenarios.items():
        effect, outcomes = follow_effect(points, spec), []
        for seed in range(first_seed, first_seed + worlds):
            outcomes.append(run_world(seed, effect, spec, policy))
            if progress:
                progress(f"{name}: {len(outcomes)}/{worlds} worlds")
        result["scenarios"][name] = {"effect_points": points, **summarise(outcomes, policy.alpha)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["passed"] = all(s["check"]["passed"] for s in result["scenarios"].values())
    return result
