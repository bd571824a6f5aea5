"""Calibration benchmark: the canary analysis against the first version's, on the same simulated worlds.

Every world (`simulator.worlds`: heterogeneous users, reloads, own choices that land on the list,
home-page visits during a movie, failed requests) is analysed twice, looking at every evaluation
cycle of a follow run (every 30 simulated seconds, `online-eval --follow`'s interval) from the canary's first answer on:

- ours: `components.online.join.join` (viewing sessions that start after the list) and the
  canary analysis of `components.online.canary` (users as the unit, always-valid mixture SPRT);
- first version: its join (every watch line credited to the latest list that showed the movie,
  sessions already running included) and its decision rule (request-level two-proportion z-test
  against the boundary c / sqrt(t), t = canary answers / 5000 planned, at least 300 answers per
  arm), copied here so it stays callable.

It reports, per scenario, the false-decision rate of identical versions (A/A) with its 95% Wilson
interval, the share of worlds a better (worse) canary is promoted (rolled back) and after how many
canary users, and the wrong-way decisions.

    python -m benchmarks.bench_calibration [--worlds 200] [--power-worlds 100] [--world legacy|course]
    # writes benchmarks/results/calibration.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from components.core import stats
from components.online import canary
from components.online.join import DEFAULT_WINDOW
from movierec import calibration as cal
from simulator.worlds import WORLDS

RESULTS = Path(os.environ.get("MOVIEREC_CALIBRATION_RESULTS", Path(__file__).resolve().parent / "results" / "calibration.json"))
FIRST_MIN_PER_ARM, FIRST_PLANNED = 300, 5000


def first_version_hits(frames: dict[str, pd.DataFrame], window: timedelta = DEFAULT_WINDOW) -> np.ndarray:
    """The first version's hits, in the order of `join`'s rows: a watch line (any minute, also of a
    session already running) credits the latest list at or before it, within the window, showing its movie."""
    recs = frames["recommendation"].sort_values("time", kind="stable").reset_index(drop=True)
    served = (recs["status"] == 200) & (recs["results"].map(len) > 0)
    items = recs.loc[served, ["time", "user_id", "results"]].explode("results")
    items = items.rename(columns={"results": "movie_id", "time": "rec_time"})
    items["rec_id"] = items.index.astype("int64")
    codes, movies = pd.factorize(items["movie_id"].astype(str))
    items = items.assign(movie=codes.astype("int64"), user_id=items["user_id"].astype("int64"))
    watches = frames["watch"]
    wcodes = pd.Index(movies).get_indexer(watches["movie_id"].astype(str))
    left = watches[wcodes >= 0].assign(movie=wcodes[wcodes >= 0].astype("int64"),
                                       user_id=lambda f: f["user_id"].astype("int64"))
    matched = pd.merge_asof(left.sort_values("time", kind="stable"),
                            items[["rec_time", "user_id", "movie", "rec_id"]].sort_values("rec_time", kind="stable"),
                            left_on="time", right_on="rec_time", by=["user_id", "movie"], direction="backward",
                            tolerance=pd.Timedelta(window), allow_exact_matches=True).dropna(subset=["rec_id"])
    return np.isin(np.arange(len(recs)), matched["rec_id"].astype("int64").unique())


def first_version_decisions(joined: pd.DataFrame, hits: np.ndarray, looks: pd.DatetimeIndex,
                            window: timedelta = DEFAULT_WINDOW) -> tuple[int, str, int, float | None]:
    """The first version's rule at every look: request-level z against c / sqrt(min(t, 1))."""
    first = joined.loc[joined["version"] == cal.STATE.canary, "time"].min()
    keep = (joined["time"] >= first).to_numpy() & joined["served"].to_numpy()
    times, hit = joined["time"].to_numpy()[keep], hits[keep]
    in_canary = (joined["version"] == cal.STATE.canary).to_numpy()[keep]
    users = joined["user_id"].to_numpy()[keep]
    closed_until = np.searchsorted(times, (looks - pd.Timedelta(window)).to_numpy(), side="right")
    last = (len(looks) - 1, canary.KEEP, 0, None)
    for k, n in enumerate(closed_until):
        c, h = in_canary[:n], hit[:n]
        nc, ns = int(c.sum()), int((~c).sum())
        if min(nc, ns) < FIRST_MIN_PER_ARM:
            continue
        xc, xs = int(h[c].sum()), int(h[~c].sum())
        z = stats.two_proportion_z(xs, ns, xc, nc)
        boundary = stats.sequential_boundary(nc / FIRST_PLANNED)
        decision = canary.PROMOTE if z.z >= boundary else canary.ROLLBACK if z.z <= -boundary else canary.KEEP
        last = (k, decision, int(np.unique(users[:n][c]).size), z.diff)
        if decision != canary.KEEP:
            return last
    return last


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=200, help="A/A worlds (identical versions)")
    parser.add_argument("--power-worlds", type=int, default=100, help="worlds with a better and with a worse canary")
    parser.add_argument("--users", type=int, default=cal.WorldSpec().users, help="users per world")
    parser.add_argument("--world", choices=sorted(WORLDS), default="legacy",
                        help="users' behaviour: legacy (hand-set, this benchmark's figures) or course (fitted)")
    args = parser.parse_args(argv)
    spec, policy = replace(WORLDS[args.world](), users=args.users), canary.CanaryPolicy()
    counts = {"equal": args.worlds, "better": args.power_worlds, "worse": args.power_worlds}
    result = {"benchmark": "calibration", "world": args.world, "spec": cal.asdict(spec), "policy": cal.asdict(policy),
              "cadence": str(cal.CADENCE), "effect_points": cal.EFFECT_POINTS,
              "first_version": {"min_per_arm_answers": FIRST_MIN_PER_ARM, "planned_canary_answers": FIRST_PLANNED},
              "scenarios": {}, "python": platform.python_version(), "cpus": os.cpu_count()}
    started = time.perf_counter()
    for name, points in cal.SCENARIOS.items():
        effect = cal.follow_effect(points, spec)       # the follow effect that moves the hit rate by `points`
        ours, first, reported = [], [], []
        for seed in range(1, counts[name] + 1):
            frames, joined = cal.world_joined(seed, effect, spec)
            outcome = cal.analyse_world(seed, effect, joined, policy)
            ours.append(outcome)
            first_hits = first_version_hits(frames)
            served = joined["served"].to_numpy()
            reported.append((joined["hit"].to_numpy()[served].mean(), first_hits[served].mean()))
            k, decision, users, diff = first_version_decisions(joined, first_hits, cal.look_times(joined))
            first.append(cal.WorldOutcome(seed, effect, decision, k + 1, users, diff, outcome.final_diff, True))
            if seed % 10 == 0:
                print(f"{name}: {seed}/{counts[name]} worlds, {time.perf_counter() - started:.0f} s",
                      file=sys.stderr, flush=True)
        first_summary = cal.summarise(first, policy.alpha)
        first_summary.pop("analyse_disagreements")
        result["scenarios"][name] = {"effect_points": points, "effect_follow": effect,
                                     "ours": cal.summarise(ours, policy.alpha), "first_version": first_summary}
        mean = np.mean(reported, axis=0)   # the level each join reports: the first one credits running sessions
        result["scenarios"][name]["ours"]["hit_rate_reported_mean"] = round(float(mean[0]), 4)
        result["scenarios"][name]["first_version"]["hit_rate_reported_mean"] = round(float(mean[1]), 4)
    result["seconds"] = round(time.perf_counter() - started, 1)
    path = RESULTS if args.world == "legacy" else RESULTS.with_name(f"{RESULTS.stem}-{args.world}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
