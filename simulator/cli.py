"""`movierec simulate`: the streaming-service stand-in, writing to a log file or a Kafka topic.

    movierec simulate --to file:events.log --days 21                  # a history
    movierec simulate --to kafka://127.0.0.1:9092/movie-events --seed 7   # the same into Kafka
    movierec simulate --to file:events.log --recommend-url http://127.0.0.1:8080 --requests 2000
    movierec simulate --profile course --to file:course.log           # 200k users, 10k movies, 14 days

`--profile` (`simulator/profiles.py`) sets users, movies, days, sessions per day and sign-up
ratings at once; any of those flags given beside it wins.

With `--recommend-url` the history of `--days` days is replayed in memory (not written again) so
that users remember what they have seen, then live traffic is driven at the endpoint and only the
lines it causes are written.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Annotated

import typer


def _parse_start(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"expected an ISO date like 2026-03-01, got {text!r}", param_hint="--start") from None


class _Progress:
    """A status line on stderr, at most every `every` seconds."""

    def __init__(self, every: float = 2.0):
        self.every, self.last, self.started = every, 0.0, time.monotonic()

    def __call__(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            typer.echo(f"[{now - self.started:6.1f}s] {text}", err=True)


def simulate(
    to: Annotated[str, typer.Option(help="Event log to write: file:PATH or kafka://HOST:PORT/TOPIC.")]
    = "file:events.log",
    profile: Annotated[str, typer.Option(help="Named world: demo (small, the default) or course (200k users, "
                                              "10k movies, 14 days); the flags below override it.")] = "demo",
    seed: Annotated[int, typer.Option(help="Seed of the users' tastes, the catalogue and all behaviour.")] = 0,
    users: Annotated[int | None, typer.Option(help="Number of users (ids 1..N); default: the profile's.",
                                              min=1)] = None,
    movies: Annotated[int | None, typer.Option(help="Number of movies in the catalogue; default: the profile's.",
                                               min=1)] = None,
    days: Annotated[int | None, typer.Option(help="Days of history to simulate (replayed, not written, in live "
                                                  "mode); default: the profile's.", min=0)] = None,
    sessions_per_day: Annotated[int | None, typer.Option(help="Mean number of watch sessions per day; default: "
                                                              "the profile's rate per user times the users.",
                                                         min=0)] = None,
    corrupt_rate: Annotated[float, typer.Option(help="Share of lines written corrupted (0..1).", min=0.0,
                                                max=1.0)] = 0.0,
    start: Annotated[str | None, typer.Option(help="Simulated start date (ISO, e.g. 2026-03-01); "
                                                      "default: --days days before today (UTC).")] = None,
    recommend_url: Annotated[str | None, typer.Option(help="Live mode: base URL of the recommendation "
                                                              "endpoint, e.g. http://127.0.0.1:8080.")] = None,
    requests: Annotated[int, typer.Option(help="Live mode: number of recommendation requests.", min=0)] = 1000,
    concurrency: Annotated[int, typer.Option(help="Live mode: requests in flight at once.", min=1)] = 4,
    log_requests: Annotated[bool, typer.Option(help="Live mode: also write the recommendation request lines "
                                                    "(off: the platform's predictor logs its own).")] = False,
    partitions: Annotated[int, typer.Option(help="Kafka: partitions of the topic if it has to be created.",
                                            min=1)] = 3,
) -> None:
    """Simulate the streaming service's users and write their events to an event log."""
    from components.core.eventlog import EventLogError, create_topic, open_event_log, parse_kafka_uri
    from simulator.profiles import get_profile
    from simulator.service import StreamingService

    try:
        world = get_profile(profile)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from None
    world = world.scaled(users or world.users, movies or world.movies) if users or movies else world
    days = world.days if days is None else days
    sessions_per_day = world.sessions_per_day if sessions_per_day is None else sessions_per_day
    started_at = _parse_start(start)
    progress = _Progress()
    try:
        if to.startswith("kafka://"):
            bootstrap, topic = parse_kafka_uri(to)
            create_topic(bootstrap, topic, partitions=partitions)
        log = open_event_log(to)
    except (EventLogError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc

    service = StreamingService(seed=seed, n_users=world.users, n_movies=world.movies, corrupt_rate=corrupt_rate,
                               signup_ratings=world.signup_ratings, legacy_share=world.legacy_share)
    written = 0
    try:
        with log:
            history = service.history(days=days, sessions_per_day=sessions_per_day, start=started_at)
            if recommend_url is None:
                for line in history:
                    log.append(line)
                    written += 1
                    if written % 10000 == 0:
                        progress(f"{written:,} lines, simulated {service.clock:%Y-%m-%d %H:%M}")
            else:
                replayed = sum(1 for _ in history)
                progress(f"replayed {replayed:,} lines of history in memory", force=True)
                service.reset_counters()  # only what is written counts
                for line in service.serve_traffic(recommend_url, n_requests=requests, concurrency=concurrency,
                                                  log_requests=log_requests):
                    log.append(line)
                    written += 1
                    progress(f"{service.traffic.requests:,}/{requests:,} requests, {written:,} lines")
    except EventLogError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc

    typer.echo(f"wrote {written:,} lines to {to} ({service.corrupted:,} corrupted; "
               + ", ".join(f"{k} {v:,}" for k, v in sorted(service.counts.items())) + ")", err=True)
    if recommend_url is not None:
        t = service.traffic
        typer.echo(f"traffic: {t.requests:,} requests, {t.answered:,} answered, {t.failed:,} failed, "
                   f"follow rate {t.follow_rate:.3f}", err=True)
    sys.stderr.flush()
