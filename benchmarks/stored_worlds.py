"""The worlds of the benchmarks that score models on an ingested store (`bench_implicit_set`,
`bench_ceiling`): stores named on the command line as LABEL=PATH (e.g. what `bench_scale
--workdir` leaves behind), or one world of the course profile scaled down, simulated and ingested
into a temporary folder that is removed after."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def simulated_store(folder: Path, seed: int, users: int, movies: int) -> Path:
    """The course profile scaled to `users` and `movies` (its traffic per user kept), simulated
    and ingested into `folder/store`."""
    from components.core.eventlog import open_event_log
    from components.core.store import open_store
    from components.ingest.run import ingest
    from simulator.profiles import get_profile
    from simulator.service import StreamingService

    profile = get_profile("course").scaled(users, movies)
    service = StreamingService(seed=seed, n_users=profile.users, n_movies=profile.movies,
                               signup_ratings=profile.signup_ratings, legacy_share=profile.legacy_share)
    log = folder / "events.log"
    with open_event_log(f"file:{log}") as out:
        lines = out.extend(service.history(days=profile.days, sessions_per_day=profile.sessions_per_day))
    print(f"  simulated {lines:,} lines ({profile.users:,} users, {profile.movies:,} movies, "
          f"{profile.sessions_per_day:,} sessions a day)", flush=True)
    ingest(f"file:{log}", open_store(str(folder / "store")))
    return folder / "store"


def add_world_options(parser: argparse.ArgumentParser, out: Path) -> None:
    """The options every such benchmark takes (each adds its own --movies)."""
    parser.add_argument("--store", action="append", default=[],
                        help="LABEL=PATH of a store ingested from a simulated log (repeatable); none: simulate one")
    parser.add_argument("--seed", type=int, default=3, help="the simulator seed of the world(s)")
    parser.add_argument("--users", type=int, default=50_000, help="the simulated world's users (without --store)")
    parser.add_argument("--params", default=None, help="params.yaml (default: the project's)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the paired intervals")
    parser.add_argument("--out", type=Path, default=out, help="where the JSON result goes")


@contextmanager
def worlds(items: list[str], seed: int, users: int, movies: int) -> Iterator[dict[str, Path]]:
    """Stores by label: the LABEL=PATH `items`, or one simulated world when there are none."""
    from components.core.errors import UserError

    stores = {}
    for item in items:
        label, _, path = item.rpartition("=")
        if not Path(path).is_dir():
            raise UserError(f"--store {item}: no store folder at {path} (give LABEL=PATH of an ingested store)")
        stores[label or Path(path).parent.name] = Path(path)
    work = None
    try:
        if not stores:
            work = Path(tempfile.mkdtemp(prefix="movierec-bench-world-"))
            stores[f"course-scaled-seed{seed}"] = simulated_store(work, seed, users, movies)
        yield stores
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def write_result(path: Path, result: dict) -> dict:
    """`result` with the machine it ran on, as JSON at `path`."""
    result = {**result, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return result


def run(main: Callable[[], object], name: str) -> None:
    """A benchmark's command line: a user's mistake is one line and exit status 2."""
    from components.core.errors import UserError

    try:
        main()
    except UserError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(2)
