"""The online join and its figures: hits only inside the window, once per recommendation, per version."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from components.core import stats
from components.core.durations import parse_duration
from components.core.events import RateEvent, RecommendationEvent, WatchEvent, format_event
from components.online.join import SESSION_GAP, frames_from_lines, join, time_series, version_metrics

T0 = datetime(2026, 3, 18, 12, 0, 0)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def reco(minute, user, version, movies, status=200, ms=20):
    return format_event(RecommendationEvent(at(minute), user, f"host:8080@{version}", status,
                                            tuple(movies) if status == 200 else (), ms,
                                            error="" if status == 200 else "timeout"))


def watch(minute, user, movie, m=0):
    return format_event(WatchEvent(at(minute), user, movie, m))


def rate(minute, user, movie, r):
    return format_event(RateEvent(at(minute), user, movie, r))


def evaluate(lines, window="30m", end=None):
    frames = frames_from_lines(lines)
    return join(frames, parse_duration(window), end=end)


def test_hit_only_inside_the_window():
    lines = [reco(0, 1, "v1", ["a+2000", "b+2000"]), watch(29, 1, "a+2000"),   # inside: hit
             reco(0, 2, "v1", ["a+2000"]), watch(31, 2, "a+2000"),              # too late
             reco(10, 3, "v1", ["a+2000"]), watch(5, 3, "a+2000"),              # before: not a follow
             watch(200, 9, "z+2000")]                                           # closes every window
    j = evaluate(lines)
    assert j.set_index("user_id")["hit"].to_dict() == {1: True, 2: False, 3: False}


def test_hit_counted_once_per_recommendation_and_minutes_are_distinct():
    lines = [reco(0, 1, "v1", ["a+2000", "b+2000"])]
    lines += [watch(1 + i / 10, 1, "a+2000", m=i) for i in range(5)]
    lines += [watch(2, 1, "a+2000", m=0), watch(3, 1, "b+2000", m=0), watch(200, 9, "z+2000")]
    j = evaluate(lines)
    assert j["hit"].sum() == 1
    assert j.loc[0, "minutes"] == 6          # a: minutes 0-4 (0 twice), b: minute 0
    m = version_metrics(j)["v1"]
    assert m["hit_rate"]["value"] == 1.0 and m["hit_rate"]["n"] == 1


def test_watch_of_a_movie_not_recommended_is_no_hit():
    j = evaluate([reco(0, 1, "v1", ["a+2000"]), watch(5, 1, "other+1999"), watch(200, 9, "z+2000")])
    assert not j["hit"].any()


def test_other_users_watch_is_no_hit():
    j = evaluate([reco(0, 1, "v1", ["a+2000"]), watch(5, 2, "a+2000"), watch(200, 9, "z+2000")])
    assert not j["hit"].any()


def test_latest_recommendation_listing_the_movie_takes_the_credit():
    lines = [reco(0, 1, "v1", ["a+2000", "b+2000"]), reco(10, 1, "v2", ["a+2000", "c+2000"]),
             watch(15, 1, "a+2000"),     # listed by both: the later answer (v2) gets it
             watch(16, 1, "b+2000"),     # only the first answer listed b: v1 gets it
             watch(200, 9, "z+2000")]
    j = evaluate(lines)
    assert j["hit"].tolist() == [True, True]
    assert j["minutes"].tolist() == [1, 1]


def test_metrics_per_version_with_intervals_and_ratings():
    lines = []
    for u in range(1, 41):
        version = "v1" if u % 2 else "v2"
        lines.append(reco(0, u, version, ["a+2000", "b+2000"], ms=700 if u == 1 else 30))
        if version == "v2" or u % 4 == 1:
            lines += [watch(5, u, "a+2000"), rate(40 if u == 2 else 20, u, "a+2000", 4)]
    lines.append(watch(300, 999, "z+2000"))
    m = version_metrics(evaluate(lines))
    assert set(m) == {"v1", "v2"}
    assert m["v2"]["hit_rate"]["value"] == 1.0 and m["v2"]["hit_rate"]["n"] == 20
    assert m["v1"]["hit_rate"]["value"] == 0.5
    lo, hi = m["v1"]["hit_rate"]["low"], m["v1"]["hit_rate"]["high"]
    assert lo < 0.5 < hi
    assert m["v1"]["availability"]["value"] == pytest.approx(19 / 20)   # one answer took 700 ms
    assert m["v2"]["mean_rating_of_recommended"]["n"] == 19           # user 2 rated after the window
    assert m["v1"]["personalized_share"]["method"] == "unavailable"
    assert m["v1"]["latency_p99_seconds"]["value"] == pytest.approx(0.7)


def test_open_recommendations_are_not_evaluated():
    lines = [reco(0, 1, "v1", ["a+2000"]), reco(100, 2, "v1", ["a+2000"]), watch(110, 3, "q+2000")]
    m = version_metrics(evaluate(lines))["v1"]
    assert m["evaluated"] == 1 and m["open"] == 1


def test_failed_requests_count_in_availability_not_in_hit_rate():
    lines = [reco(0, 1, "v1", ["a+2000"]), reco(0, 2, "v1", [], status=0, ms=600),
             reco(0, 3, "v1", [], status=500), watch(1, 2, "a+2000"), watch(200, 9, "z+2000")]
    m = version_metrics(evaluate(lines))["v1"]
    assert m["hit_rate"]["n"] == 1 and m["requests"] == 3
    assert m["availability"]["value"] == pytest.approx(1 / 3)


def test_server_without_version_is_unknown_and_personalized_callback():
    lines = [format_event(RecommendationEvent(at(0), 5, "legacy", 200, ("a+2000",), 10)),
             reco(0, 6, "v1", ["a+2000"]), reco(0, 7, "v1", ["a+2000"]), watch(100, 1, "z+2000")]
    m = version_metrics(evaluate(lines), personalized=lambda v, users: np.isin(users, [6]))
    assert set(m) == {"unknown", "v1"}
    assert m["v1"]["personalized_share"]["value"] == 0.5


def test_time_series_per_version():
    lines = [reco(i, i, "v1" if i % 2 else "v2", ["a+2000"]) for i in range(60)] + [watch(500, 1, "z")]
    ts = time_series(evaluate(lines), freq="10min")
    assert set(ts["version"]) == {"v1", "v2"}
    assert ts["requests"].sum() == 60


def test_wilson_interval():
    e = stats.wilson(10, 100)
    assert e.low == pytest.approx(0.0552, abs=1e-3) and e.high == pytest.approx(0.1744, abs=1e-3)
    zero = stats.wilson(0, 50)
    assert zero.low == pytest.approx(0.0) and 0 < zero.high < 0.1
    assert stats.wilson(0, 0).value is None


def test_mean_and_quantile_intervals_cover():
    rng = np.random.default_rng(0)
    x = rng.normal(10, 2, 400)
    e = stats.mean_ci(x)
    assert e.low < 10 < e.high and e.n == 400
    q = stats.quantile_ci(rng.exponential(1.0, 2000), 0.5)
    assert q.low < np.log(2) < q.high
    assert stats.quantile_ci([1.0, 2.0], 0.99).high is None   # two values cannot bound a p99


def test_empty_input_gives_no_versions():
    j = evaluate([])
    assert j.empty and version_metrics(j) == {}
    assert time_series(j).empty


def test_join_agrees_with_a_plain_loop_on_random_traffic():
    """The vectorized attribution equals the rule written as a loop: watch lines of a user and movie
    with gaps of at most SESSION_GAP form a session; each session goes to the latest recommendation of
    the same user strictly before its start, within the window, that listed the movie."""
    rng = np.random.default_rng(42)
    movies = [f"m+{i}" for i in range(40)]
    lines, recs = [], []
    for i in range(300):
        user, minute = int(rng.integers(1, 30)), float(rng.uniform(0, 600))
        listed = [movies[j] for j in rng.choice(40, 5, replace=False)]
        recs.append((at(minute), user, set(listed)))
        lines.append(reco(minute, user, "v1" if i % 2 else "v2", listed))
    watches = sorted((at(float(rng.uniform(0, 660))), int(rng.integers(1, 30)), movies[int(rng.integers(0, 40))])
                     for _ in range(3000))
    lines += [format_event(WatchEvent(t, u, m, 0)) for t, u, m in watches]
    lines.append(watch(2000, 999, "z+2000"))
    joined = evaluate(lines)
    last_line: dict = {}
    starts = []
    for t, u, m in watches:
        if (u, m) not in last_line or t - last_line[(u, m)] > SESSION_GAP:
            starts.append((t, u, m))
        last_line[(u, m)] = t
    order = sorted(range(len(recs)), key=lambda i: recs[i][0])     # join sorts answers by time (stable)
    expected = np.zeros(len(recs), dtype=bool)
    for t, u, m in starts:
        best = None
        for i in order:
            rt, ru, listed = recs[i]
            if ru == u and rt < t and t - rt <= timedelta(minutes=30) and m in listed:
                best = i
        if best is not None:
            expected[order.index(best)] = True
    assert joined["hit"].to_numpy().tolist() == expected.tolist()
    assert 0 < expected.sum() < len(recs)


def test_a_session_already_running_is_no_hit():
    """A user watching a movie reloads the home page; the list repeats that movie: not a hit."""
    lines = [watch(m, 1, "a+2000", m=m) for m in range(0, 40)]
    lines += [reco(10, 1, "v1", ["a+2000", "b+2000"]), reco(20, 1, "v1", ["a+2000"]), watch(300, 9, "z+2000")]
    j = evaluate(lines)
    assert not j["hit"].any() and j["minutes"].sum() == 0


def test_one_viewing_counts_once_with_all_its_minutes():
    """Minutes past the window still belong to a session that started inside it; two lists that both
    show the movie do not both earn it: the latest one before the session starts does."""
    lines = [reco(0, 1, "v1", ["a+2000"]), reco(5, 1, "v2", ["a+2000"])]
    lines += [watch(8 + m, 1, "a+2000", m=m) for m in range(90)]
    lines += [rate(100, 1, "a+2000", 5), watch(300, 9, "z+2000")]
    j = evaluate(lines)
    assert j["hit"].tolist() == [False, True]
    assert j["minutes"].tolist() == [0, 90]
    assert j["ratings"].tolist() == [[], [5]]


def test_a_new_session_after_a_pause_is_a_new_viewing():
    lines = [watch(0, 1, "a+2000", m=0), watch(1, 1, "a+2000", m=1),            # watched a bit earlier
             reco(30, 1, "v1", ["a+2000"]), watch(35, 1, "a+2000", m=2), watch(36, 1, "a+2000", m=3),
             watch(300, 9, "z+2000")]
    j = evaluate(lines)
    assert j["hit"].tolist() == [True] and j["minutes"].tolist() == [2]


def test_hit_rate_interval_treats_the_user_as_the_unit():
    """20 users with 10 answers each, half of them always follow: 200 answers but only 20 independent units."""
    lines = []
    for u in range(1, 21):
        for i in range(10):
            lines.append(reco(40 * i, u, "v1", [f"m{i}+2000"]))
            if u % 2:
                lines.append(watch(40 * i + 5, u, f"m{i}+2000"))
    lines.append(watch(2000, 999, "z+2000"))
    est = version_metrics(evaluate(lines))["v1"]["hit_rate"]
    wilson = stats.wilson(100, 200)
    assert est["value"] == 0.5 and est["method"] == "delta-method (users)"
    assert est["high"] - est["low"] > 2.5 * (wilson.high - wilson.low)
