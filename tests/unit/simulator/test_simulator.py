"""The simulated streaming service: deterministic, contract-true lines, exact corruption counts."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

import numpy as np
import pytest

from components.core.events import Rejection, parse_line, parse_slug
from simulator.catalogue import Catalogue
from simulator.population import Population, minutes_watched, rating
from simulator.service import StreamingService

START = datetime(2026, 3, 1)


def small(seed: int = 3, corrupt_rate: float = 0.0) -> StreamingService:
    return StreamingService(seed=seed, n_users=150, n_movies=60, corrupt_rate=corrupt_rate)


def history(service: StreamingService, days: int = 4) -> list[str]:
    return list(service.history(days=days, sessions_per_day=40, start=START))


@pytest.fixture(scope="module")
def clean() -> tuple[StreamingService, list[str]]:
    service = small()
    return service, history(service)


def test_same_seed_same_lines_other_seed_other_lines(clean):
    _, lines = clean
    assert history(small()) == lines
    assert history(small(seed=4)) != lines


def test_tastes_and_movies_depend_only_on_seed_and_id():
    few, many = Population(5, 10), Population(5, 300)
    assert np.array_equal(few.taste[7], many.taste[7]) and few.bias[7] == many.bias[7]
    assert not np.array_equal(Population(6, 10).taste[7], few.taste[7])
    short, long = Catalogue(5, 40), Catalogue(5, 120)
    assert short.slugs == long.slugs[:40]
    assert np.array_equal(short.factors, long.factors[:40])


def test_catalogue_slugs_lengths_and_long_tail():
    catalogue = Catalogue(1, 500)
    assert len(set(catalogue.slugs)) == 500
    for movie in catalogue.movies:
        assert parse_slug(movie.slug).year == movie.year
    assert any(movie.year is None for movie in catalogue.movies)
    assert catalogue.lengths.min() >= 60 and catalogue.lengths.max() <= 180
    share = np.sort(catalogue.exposure)[::-1]
    assert share[:50].sum() / share.sum() > 0.4  # the top 10% of movies get a large share of attention


def test_every_line_parses_to_its_kind_in_time_order(clean):
    service, lines = clean
    events = [parse_line(line) for line in lines]
    assert not [e for e in events if isinstance(e, Rejection)]
    kinds = Counter(e.kind for e in events)
    assert kinds == service.counts
    assert set(kinds) == {"watch", "rate", "account", "recommendation"}
    assert kinds["watch"] > kinds["rate"] > kinds["account"] > 0
    times = [e.time for e in events]
    assert times == sorted(times) and times[0] >= START
    assert all(t.microsecond == 0 for t in times)


def test_accounts_come_first_and_ratings_are_in_range(clean):
    _, lines = clean
    joined: dict[int, datetime] = {}
    for event in map(parse_line, lines):
        if event.kind == "account":
            assert event.user_id not in joined
            joined[event.user_id] = event.time
        else:
            assert event.user_id in joined and event.time >= joined[event.user_id]
        if event.kind == "rate":
            assert 1 <= event.rating <= 5


def test_watch_minutes_are_consecutive_per_session(clean):
    _, lines = clean
    by_user = defaultdict(list)
    for event in map(parse_line, lines):
        if event.kind == "watch":
            by_user[event.user_id].append(event)
    sessions = 0
    for watches in by_user.values():
        previous = None
        for w in watches:
            if w.minute == 0:
                sessions += 1
            else:
                assert previous is not None and w.movie_id == previous.movie_id
                assert w.minute == previous.minute + 1
                assert w.time - previous.time == timedelta(minutes=1)
            previous = w
    assert sessions > 50


def test_corrupted_lines_are_exactly_the_rejections(clean):
    _, clean_lines = clean
    service = small(corrupt_rate=0.05)
    lines = history(service)
    assert len(lines) == len(clean_lines)
    rejected = [line for line in lines if isinstance(parse_line(line), Rejection)]
    as_bytes = [line for line in lines
                if isinstance(parse_line(line.encode("utf-8", "surrogateescape")), Rejection)]
    assert len(rejected) == len(as_bytes) == service.corrupted > 0.03 * len(lines)
    assert set(service.corrupted_by_kind) == {"bad_time", "truncated", "garbage", "bad_rating",
                                              "missing_field", "empty"}
    assert sum(service.counts.values()) + service.corrupted == len(lines)
    # Corruption replaces lines and changes nothing else: the valid lines are the clean run's.
    valid = [line for line in lines if not isinstance(parse_line(line), Rejection)]
    assert not Counter(valid) - Counter(clean_lines)
    assert all("\n" not in line and "\r" not in line for line in lines)


def test_true_affinity_drives_minutes_and_ratings():
    import random

    rnd = random.Random(0)
    liked = [minutes_watched(1.5, 100, rnd) for _ in range(500)]
    disliked = [minutes_watched(-1.5, 100, rnd) for _ in range(500)]
    assert np.mean(liked) > 80 > 20 > np.mean(disliked)
    assert np.mean([rating(1.5, rnd) for _ in range(200)]) > np.mean([rating(-1.5, rnd) for _ in range(200)]) + 1.5


def test_true_affinity_and_oracle_agree(clean):
    service, _ = clean
    user = min(sorted(service.members), key=lambda u: len(service.seen.get(u, {})))  # 20+ movies unseen
    ids = service.oracle_list(user)
    scores = service.true_affinity(user, ids)
    assert len(ids) == 20 and list(scores) == sorted(scores, reverse=True)
    assert np.isnan(service.true_affinity(7, ["no+such+movie"])[0])
    others = [s for s in service.catalogue.slugs if s not in ids]
    seen = service.seen.get(user, {})
    unseen_others = [s for s in others if seen.get(service.catalogue.index[s], 1.0) > 0.02]
    assert scores.min() >= np.nanmax(service.true_affinity(user, unseen_others))
