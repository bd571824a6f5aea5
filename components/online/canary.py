"""Canary analysis: is the canary better than the stable version, with evidence, and what to do.

Input: the joined recommendations of `components.online.join.join` and the rollout state.
Both arms are compared over the same period (everything from the canary's first answer on), so a
daily rhythm or a catalogue change does not favour one of them. The checks, in order:

1. Service objectives of the canary (it needs `min_requests` answers): availability (status 200
   under 600 ms) whose Wilson upper bound is under the objective, or a p99 latency whose lower
   bound is over 600 ms, is a rollback whatever the hit rate says.
2. Sample-ratio mismatch: distinct users per arm against the configured canary share
   (chi-square, p < 0.001). Users, not requests, are the unit of assignment (a stable hash of the
   user id); a mismatch means routing or logging is broken, so nothing is promoted.
3. The user is the unit. Hit rate is hits per evaluated request, where a failed answer (timeout,
   error, empty list) is an evaluated request without a hit: failures count against the canary.
   One user's requests are correlated, so the variance of each arm's hit rate is computed from
   per-user totals (delta method, `stats.clustered_share`), and the intervals and the test are on
   that basis. An answer over 600 ms is a failed one (the contract). No hit-rate decision before
   `min_per_arm` users per arm have evaluated answers and the canary has the `min_requests`
   answers its service objectives are checked on.
4. An always-valid sequential test (`stats.sequential_difference`, a mixture SPRT): the analysis
   may look at every cycle of `online-eval --follow`, at any cadence, for as long as the canary
   runs, and the chance of ever deciding wrongly between identical versions stays under `alpha`.
   Its interval of the difference excluding 0 from above: promote; from below: roll back;
   otherwise keep collecting. Past `planned_canary` users without a decision the analysis says
   "inconclusive" (a person decides, the test stays valid if it keeps running).

With `auto`, `act` carries a promote or rollback out through `components.core.rollout`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from components.core import rollout, stats
from components.online.join import LATENCY_OBJECTIVE_MS, available

PROMOTE, ROLLBACK, KEEP, NO_CANARY = "promote", "rollback", "keep_collecting", "no_canary"


@dataclass(frozen=True)
class CanaryPolicy:
    """Thresholds of the automatic decision (defaults documented in the module docstring)."""

    alpha: float = 0.05
    min_per_arm: int = 100            # users with evaluated answers, per arm
    planned_canary: int = 2000        # canary users after which "no difference yet" goes to a person
    mixture_sd: float = 0.05          # the size of hit-rate difference the sequential test is tuned for
    min_requests: int = 200
    availability_objective: float = 0.99
    latency_p99_objective_seconds: float = LATENCY_OBJECTIVE_MS / 1000
    srm_threshold: float = 0.001


@dataclass
class CanaryAnalysis:
    stable: str | None
    canary: str | None
    canary_percent: float
    decision: str
    reasons: list[str] = field(default_factory=list)
    since: str | None = None
    until: str | None = None
    arms: dict = field(default_factory=dict)
    difference: dict | None = None
    srm: dict | None = None
    acted: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def evaluated(g: pd.DataFrame) -> pd.DataFrame:
    """The answers whose window is over, failed ones included (they are misses)."""
    return g[~g["open"].astype(bool)]


def hit_share(g: pd.DataFrame) -> stats.ClusteredShare:
    """Hits per evaluated answer, users as the unit. Failed answers count as misses, and so does an
    answer over the 600 ms objective: the contract counts it as failed, whatever the user did next."""
    done = evaluated(g)
    per_user = done.assign(hit=done["hit"] & available(done)).groupby("user_id")["hit"].agg(["sum", "size"])
    return stats.clustered_share(per_user["sum"].to_numpy(), per_user["size"].to_numpy())


def _arm(g: pd.DataFrame, share: stats.ClusteredShare) -> dict:
    hit_rate = stats.clustered_interval(share)
    return {"requests": len(g), "users": int(g["user_id"].nunique()), "evaluated": share.requests,
            "evaluated_users": share.users, "hits": int(round((share.value or 0) * share.requests)), "hit_rate": hit_rate.to_dict(),
            "availability": stats.wilson(int(available(g).sum()), len(g)).to_dict(),
            "latency_p99_seconds": stats.quantile_ci(g["response_time_ms"] / 1000.0, 0.99).to_dict()}


def arms(joined: pd.DataFrame, state: rollout.RolloutState) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(canary rows, stable rows) from the canary's first answer on; None when the canary has none."""
    canary_rows = joined[joined["version"] == state.canary]
    if canary_rows.empty:
        return None
    period = joined[joined["time"] >= canary_rows["time"].min()]
    return period[period["version"] == state.canary], period[period["version"] == state.stable]


def analyse(joined: pd.DataFrame, state: rollout.RolloutState, policy: CanaryPolicy = CanaryPolicy()
            ) -> CanaryAnalysis:
    """Compare the rollout's canary with its stable version on the joined answers; decide."""
    result = CanaryAnalysis(state.stable, state.canary, state.canary_percent, KEEP)
    if not state.canary or not state.stable:
        result.decision, result.reasons = NO_CANARY, ["no canary is deployed"]
        return result
    split = arms(joined, state)
    if split is None:
        result.reasons = [f"no answer from canary {state.canary} in the log yet"]
        return result
    c, s = split
    result.since, result.until = c["time"].min().isoformat(), joined["time"].max().isoformat()
    c_share, s_share = hit_share(c), hit_share(s)
    result.arms = {"canary": _arm(c, c_share), "stable": _arm(s, s_share)}
    ca, sa = result.arms["canary"], result.arms["stable"]

    # 1. service objectives of the canary
    breaches = []
    if ca["requests"] >= policy.min_requests:
        av, p99 = ca["availability"], ca["latency_p99_seconds"]
        if av["high"] is not None and av["high"] < policy.availability_objective:
            breaches.append(f"canary availability {av['value']:.4f} (95% CI {av['low']:.4f}-{av['high']:.4f}) "
                            f"is under the objective {policy.availability_objective}")
        if p99["low"] is not None and p99["low"] > policy.latency_p99_objective_seconds:
            breaches.append(f"canary p99 latency {p99['value']:.3f}s (lower bound {p99['low']:.3f}s) is over "
                            f"{policy.latency_p99_objective_seconds}s")
    if breaches:
        result.decision, result.reasons = ROLLBACK, breaches
        return result

    # 2. sample-ratio mismatch
    srm = stats.sample_ratio_mismatch(ca["users"], sa["users"], state.canary_percent / 100, policy.srm_threshold)
    result.srm = asdict(srm)
    if srm.mismatch:
        result.reasons = [f"sample-ratio mismatch: {ca['users']} canary vs {sa['users']} stable users for a "
                          f"configured {state.canary_percent}% (p={srm.p_value:.2g}); results not trusted, "
                          "check routing and the request log"]
        return result

    # 3. enough users
    if min(c_share.users, s_share.users) < policy.min_per_arm or ca["requests"] < policy.min_requests:
        result.reasons = [f"collecting: {c_share.users} canary and {s_share.users} stable users with evaluated "
                          f"answers ({policy.min_per_arm} per arm needed) and {ca['requests']} canary answers "
                          f"({policy.min_requests} needed to check its service objectives first)"]
        return result
    d = stats.sequential_difference(s_share, c_share, policy.alpha, policy.mixture_sd)
    if d is None:
        result.reasons = ["collecting: no variation in the hit rates yet"]
        return result
    result.difference = asdict(d)
    summary = (f"on {c_share.users} canary and {s_share.users} stable users: hit rate canary "
               f"{c_share.value:.4f} vs stable {s_share.value:.4f}, difference {d.diff:+.4f} "
               f"(95% CI {d.low:+.4f}..{d.high:+.4f}; always-valid {1 - policy.alpha:.0%} interval "
               f"{d.always_low:+.4f}..{d.always_high:+.4f})")

    # 4. decision
    if d.always_low > 0:
        result.decision, result.reasons = PROMOTE, [f"canary better: {summary}"]
    elif d.always_high < 0:
        result.decision, result.reasons = ROLLBACK, [f"canary worse: {summary}"]
    elif c_share.users >= policy.planned_canary:
        result.reasons = [f"inconclusive at the planned {policy.planned_canary} canary users: {summary}; "
                          "no difference shown, a person decides (the test stays valid if the canary keeps running)"]
    else:
        result.reasons = [f"collecting: {summary}; the always-valid interval still includes 0"]
    return result


def trajectory(joined: pd.DataFrame, state: rollout.RolloutState, policy: CanaryPolicy = CanaryPolicy(),
               points: int = 24) -> pd.DataFrame:
    """The difference (canary - stable) and both its intervals at `points` times since the canary started,
    each on the evaluated answers given up to then (with the outcomes known now): how the evidence grew."""
    columns = ["time", "canary_users", "stable_users", "diff", "low", "high", "always_low", "always_high"]
    split = arms(joined, state) if state.canary and state.stable else None
    if split is None:
        return pd.DataFrame(columns=columns)
    c, s = split
    start = c["time"].min()
    rows = []
    for t in start + (joined["time"].max() - start) * np.linspace(0, 1, points + 1)[1:]:
        cs, ss = hit_share(c[c["time"] <= t]), hit_share(s[s["time"] <= t])
        d = stats.sequential_difference(ss, cs, policy.alpha, policy.mixture_sd)
        if d is not None:
            rows.append((t, cs.users, ss.users, d.diff, d.low, d.high, d.always_low, d.always_high))
    return pd.DataFrame(rows, columns=columns)


def act(store, analysis: CanaryAnalysis) -> CanaryAnalysis:
    """Carry out a promote or rollback decision, if the analysed canary is still the deployed one."""
    if analysis.decision not in (PROMOTE, ROLLBACK):
        return analysis
    current = rollout.load(store)
    if current.canary != analysis.canary:
        analysis.reasons.append(f"not acted: the canary is now {current.canary!r}, not {analysis.canary!r}")
        return analysis
    reason = "online evaluation: " + "; ".join(analysis.reasons)
    if analysis.decision == PROMOTE:
        rollout.promote(store, reason=reason)
    else:
        rollout.rollback(store, reason=reason)
    analysis.acted = analysis.decision
    return analysis
