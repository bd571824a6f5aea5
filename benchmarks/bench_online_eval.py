"""Online-evaluation benchmark: the vectorized join against a per-recommendation Python loop.

Both sides get the same synthetic traffic (recommendations with 20 movies, watch minutes, ratings)
and the same attribution rule (a viewing session counts for the latest recommendation to the same
user before it started, within the window, that listed the movie). The run checks that both count the same hits,
then reports recommendations joined per second:

- ours: `components.online.join.join` (exploded lists, one `merge_asof` by user and movie);
- baseline: the straightforward loop, per session start, back over that user's earlier recommendations
  (with a per-user index, so it is not a strawman quadratic scan).

    python -m benchmarks.bench_online_eval [--recs 20000]   # writes benchmarks/results/online_eval.json
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "online_eval.json"
WINDOW = pd.Timedelta(minutes=30)


def make_frames(n_recs: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_users, n_movies, n_watch = max(50, n_recs // 5), 2000, n_recs * 10
    movies = np.array([f"movie+{i}+2001" for i in range(n_movies)])
    t0, span = pd.Timestamp("2026-03-01"), 7 * 86400
    rec_users = rng.integers(1, n_users, n_recs)
    lists = [movies[rng.choice(n_movies, 20, replace=False)] for _ in range(n_recs)]
    recs = pd.DataFrame({"time": t0 + pd.to_timedelta(np.sort(rng.uniform(0, span, n_recs)), unit="s"),
                         "user_id": rec_users, "server": np.where(rng.random(n_recs) < 0.2, "p@v2", "p@v1"),
                         "status": 200, "results": [list(x) for x in lists],
                         "response_time_ms": rng.integers(2, 80, n_recs)})
    # One watch per recommendation on average follows one of the same user's recommendations
    # (within an hour: about half inside the window); the rest is viewing of the user's own choice.
    follow = rng.integers(0, n_recs, n_recs)
    delay = pd.to_timedelta(rng.uniform(0, 3600, len(follow)), unit="s")
    picked = [lists[i][rng.integers(0, 20)] for i in follow]
    w1 = pd.DataFrame({"time": recs["time"].to_numpy()[follow] + delay.to_numpy(), "user_id": rec_users[follow],
                       "movie_id": picked, "minute": rng.integers(0, 120, len(follow))})
    n_rest = n_watch - len(follow)
    w2 = pd.DataFrame({"time": t0 + pd.to_timedelta(rng.uniform(0, span, n_rest), unit="s"),
                       "user_id": rng.integers(1, n_users, n_rest), "movie_id": movies[rng.integers(0, n_movies, n_rest)],
                       "minute": rng.integers(0, 120, n_rest)})
    watches = pd.concat([w1, w2], ignore_index=True).sort_values("time", ignore_index=True)
    rates = watches.iloc[::20][["time", "user_id", "movie_id"]].assign(rating=4).reset_index(drop=True)
    return {"recommendation": recs, "watch": watches, "rate": rates}


def loop_hits(frames: dict[str, pd.DataFrame]) -> np.ndarray:
    """The baseline: group each user's minute lines of a movie into sessions (gaps of at most
    SESSION_GAP), then for each session start walk back over the user's recommendations (same rule as ours)."""
    from components.online.join import SESSION_GAP

    recs = frames["recommendation"]
    by_user: dict[int, list] = defaultdict(list)
    for i, (t, u, results) in enumerate(zip(recs["time"], recs["user_id"], recs["results"], strict=True)):
        by_user[int(u)].append((t, i, set(results)))
    times = {u: [r[0] for r in rs] for u, rs in by_user.items()}
    hit = np.zeros(len(recs), dtype=bool)
    last_line: dict = {}
    watches = frames["watch"].sort_values("time", kind="stable")
    for t, u, m in zip(watches["time"], watches["user_id"], watches["movie_id"], strict=True):
        u = int(u)
        previous, last_line[(u, m)] = last_line.get((u, m)), t
        rs = by_user.get(u)
        if not rs or (previous is not None and t - previous <= SESSION_GAP):
            continue
        j = bisect.bisect_left(times[u], t) - 1
        while j >= 0 and t - rs[j][0] <= WINDOW:
            if m in rs[j][2]:
                hit[rs[j][1]] = True
                break
            j -= 1
    return hit


def main(argv: list[str] | None = None) -> dict:
    from components.online.join import join, version_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recs", type=int, default=20_000, help="recommendations in the synthetic log")
    args = parser.parse_args(argv)
    frames = make_frames(args.recs)
    started = time.perf_counter()
    joined = join(frames, WINDOW.to_pytimedelta(), end=frames["watch"]["time"].max() + WINDOW)
    version_metrics(joined)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    baseline_hit = loop_hits(frames)
    baseline = time.perf_counter() - started
    agree = bool((joined["hit"].to_numpy() == baseline_hit).all())
    result = {
        "benchmark": "online_eval", "recommendations": args.recs, "watch_lines": len(frames["watch"]),
        "rate_lines": len(frames["rate"]), "hits": int(joined["hit"].sum()), "same_hits_as_baseline": agree,
        "ours": {"what": "components.online.join.join + version_metrics (merge_asof)", "seconds": round(ours, 3),
                 "recommendations_per_second": round(args.recs / ours)},
        "baseline": {"what": "per-watch Python loop over the user's recommendations (hits only)",
                     "seconds": round(baseline, 3), "recommendations_per_second": round(args.recs / baseline)},
        "speedup": round(baseline / ours, 2), "python": platform.python_version(), "cpus": os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not agree:
        raise AssertionError("the vectorized join and the loop disagree on hits")
    return result


if __name__ == "__main__":
    main()
