"""Canary analysis: is the canary better than the stable version, with evidence, and what to do.

Input: the joined recommendations of `components.online.join.join` and the rollout state.
Both arms are compared over the same period (from the canary's first answer on), so a daily
rhythm or a catalogue change does not favour one of them. The checks, in order:

1. Service objectives of the canary (it needs `min_requests` answers): availability (status 200
   under 600 ms) whose Wilson upper bound is under the objective, or a p99 latency whose lower
   bound is over 600 ms, is a rollback whatever the hit rate says.
2. Sample-ratio mismatch: distinct users per arm against the configured canary share
   (chi-square, p < 0.001). Users, not requests, are the unit of assignment (a stable hash of the
   user id); a mismatch means routing or logging is broken, so nothing is promoted.
3. Peeking guard: no hit-rate decision before `min_per_arm` evaluated answers in each arm, and
   then the two-proportion z statistic must cross `stats.sequential_boundary(t)` with
   t = canary answers / `planned_canary`. That boundary keeps the false promote/rollback rate
   under `alpha` however often the analysis runs (every cycle of `online-eval --follow`).
   Past the planned size without a crossing the result is "inconclusive": keep collecting, a
   person decides.
4. z above the boundary: promote; below minus the boundary: roll back; otherwise keep collecting.

With `auto`, `act` carries a promote or rollback out through `components.core.rollout`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from components.core import rollout, stats
from components.online.join import LATENCY_OBJECTIVE_MS, available, closed

PROMOTE, ROLLBACK, KEEP, NO_CANARY = "promote", "rollback", "keep_collecting", "no_canary"


@dataclass(frozen=True)
class CanaryPolicy:
    """Thresholds of the automatic decision (defaults documented in the module docstring)."""

    alpha: float = 0.05
    min_per_arm: int = 300
    planned_canary: int = 5000
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
    arms: dict = field(default_factory=dict)
    z_test: dict | None = None
    boundary: float | None = None
    information_fraction: float | None = None
    srm: dict | None = None
    acted: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _arm(g: pd.DataFrame) -> dict:
    done = g[closed(g)]
    return {"requests": len(g), "users": int(g["user_id"].nunique()), "evaluated": len(done),
            "hits": int(done["hit"].sum()),
            "hit_rate": stats.wilson(int(done["hit"].sum()), len(done)).to_dict(),
            "availability": stats.wilson(int(available(g).sum()), len(g)).to_dict(),
            "latency_p99_seconds": stats.quantile_ci(g["response_time_ms"] / 1000.0, 0.99).to_dict()}


def analyse(joined: pd.DataFrame, state: rollout.RolloutState, policy: CanaryPolicy = CanaryPolicy()
            ) -> CanaryAnalysis:
    """Compare the rollout's canary with its stable version on the joined answers; decide."""
    result = CanaryAnalysis(state.stable, state.canary, state.canary_percent, KEEP)
    if not state.canary or not state.stable:
        result.decision, result.reasons = NO_CANARY, ["no canary is deployed"]
        return result
    canary_rows = joined[joined["version"] == state.canary]
    if canary_rows.empty:
        result.reasons = [f"no answer from canary {state.canary} in the log yet"]
        return result
    since = canary_rows["time"].min()
    period = joined[joined["time"] >= since]
    c, s = period[period["version"] == state.canary], period[period["version"] == state.stable]
    result.since = since.isoformat()
    result.arms = {"canary": _arm(c), "stable": _arm(s)}
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

    # 3. peeking guard
    if min(ca["evaluated"], sa["evaluated"]) < policy.min_per_arm:
        result.reasons = [f"collecting: {ca['evaluated']} canary and {sa['evaluated']} stable evaluated answers, "
                          f"{policy.min_per_arm} per arm needed before a decision"]
        return result
    t = ca["evaluated"] / policy.planned_canary
    boundary = stats.sequential_boundary(t, policy.alpha)
    z = stats.two_proportion_z(sa["hits"], sa["evaluated"], ca["hits"], ca["evaluated"])
    result.z_test, result.boundary, result.information_fraction = asdict(z), boundary, t
    summary = (f"hit rate canary {ca['hit_rate']['value']:.4f} vs stable {sa['hit_rate']['value']:.4f} "
               f"(difference {z.diff:+.4f}, 95% CI {z.diff_low:+.4f}..{z.diff_high:+.4f}), z={z.z:.2f}, "
               f"boundary +-{boundary:.2f} at information {min(t, 1):.2f}")

    # 4. decision
    if z.z >= boundary:
        result.decision, result.reasons = PROMOTE, [f"canary better: {summary}"]
    elif z.z <= -boundary:
        result.decision, result.reasons = ROLLBACK, [f"canary worse: {summary}"]
    elif t >= 1:
        result.reasons = [f"inconclusive at the planned sample size ({policy.planned_canary}): {summary}; "
                          "no significant difference, a person decides"]
    else:
        result.reasons = [f"collecting: {summary}"]
    return result


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
