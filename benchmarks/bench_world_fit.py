"""Canary worlds fitted to the calibrated simulator: what its users do, and the `WorldSpec` derived from it.

Plays the course profile scaled to `--users` users and `--movies` movies (its traffic per user
kept: `Profile.scaled`), then live traffic answered by the service's popularity list, and measures
what `simulator.worlds.WorldSpec` models (`simulator.world_fit`): visits per user and their tail,
reloads, mid-session visits, following, own choices and how often they land on the list.

    python -m benchmarks.bench_world_fit [--users 20000] [--movies 1000] [--live-requests 60000]
    # writes benchmarks/results/world-fit.json; `COURSE_WORLD` in simulator/worlds.py holds its spec
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

from simulator.profiles import get_profile
from simulator.service import StreamingService
from simulator.world_fit import measure_service, spec_from_measures
from simulator.worlds import WorldSpec

RESULTS = Path(__file__).resolve().parent / "results" / "world-fit.json"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--movies", type=int, default=1000)
    parser.add_argument("--live-requests", type=int, default=60_000, help="live requests (about 3 per user)")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    profile = get_profile("course").scaled(args.users, args.movies)
    started = time.perf_counter()
    service = StreamingService(seed=args.seed, n_users=profile.users, n_movies=profile.movies,
                               signup_ratings=profile.signup_ratings, legacy_share=profile.legacy_share)
    measured = measure_service(service, profile.days, profile.sessions_per_day, live_requests=args.live_requests)
    spec = spec_from_measures(measured)
    result = {"benchmark": "world_fit", "profile": asdict(profile), "seed": args.seed,
              "live_requests": args.live_requests, "measured": measured.summary(), "derived_spec": asdict(spec),
              "legacy_world": asdict(WorldSpec.legacy()),
              "seconds": round(time.perf_counter() - started, 1), "python": platform.python_version(),
              "cpus": os.cpu_count()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
