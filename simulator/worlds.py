"""Small simulated worlds for calibrating the canary analysis: many of them, cheaply, with known truth.

A world is a few days of one canary at a given share: users routed by the platform's own bucket
function (`components.core.rollout.in_canary`), their recommendation requests and watch lines as
the event frames the online join reads (`components.online.join.frames_from_lines` gives the same
columns). Everything is drawn with numpy, vectorised over users and visits, so hundreds of worlds
run in minutes. The users are not alike, and that is the point: an analysis that treats requests
as independent, or credits a watch the list did not cause, must fail on these worlds.

* Users differ in how often they come back (a heavy-tailed number of visits) and in how often
  they follow a list (a per-user propensity): one user's requests are correlated.
* A visit may reload the home page a few times within minutes: the same list again.
* Users watch on their own too, movies drawn by popularity; since the lists favour well-known
  movies, an own choice sometimes is a listed movie (the attribution bias of real data).
* During a movie, users sometimes open the home page; the list may show the movie they are
  watching (a session already running: not a hit).
* A small share of requests fails (status 0, no list), in both arms alike.

The canary differs from the stable version only by `effect`: its users follow a list that much
more (or less) often per visit. With effect 0 both arms are the same version (A/A).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.core.rollout import in_canary

START = pd.Timestamp("2026-03-02T00:00:00")
MINUTE = np.timedelta64(60, "s")


@dataclass(frozen=True)
class WorldSpec:
    """The shape of a world; defaults give a canary at the platform's default share (10%)."""

    users: int = 10_000
    days: float = 2.0
    canary_percent: float = 10.0
    effect: float = 0.0              # canary users follow a list this much more often per visit (absolute)
    movies: int = 300
    list_length: int = 10
    visits_mean: float = 2.0         # mean visits per user over the world (lognormal spread, heavy tail)
    visits_shape: float = 0.0        # > 0: visits are Poisson(visits_mean * Gamma(shape)) given >= 1 instead
    follow_mean: float = 0.3         # mean per-user chance of following a list on a visit
    follow_concentration: float = 2.0   # Beta(a, b) with a + b = this: low = users differ a lot
    reload_mean: float = 0.4         # mean extra reloads per visit (per-user rate)
    own_choice: float = 0.5          # chance a visit that did not follow the list still starts a movie
    mid_session_visit: float = 0.3   # chance a user opens the home page during a movie
    failure_rate: float = 0.005      # requests that fail (status 0, no list)
    zipf: float = 0.9                # popularity exponent of listed movies and own choices

    @classmethod
    def legacy(cls) -> WorldSpec:
        """The first worlds: user behaviour set by hand (`movierec calibrate --world legacy`)."""
        return cls()

    @classmethod
    def calibrated(cls) -> WorldSpec:
        """Worlds whose users behave as the calibrated simulator's (`COURSE_WORLD`)."""
        return COURSE_WORLD


# Worlds fitted to the calibrated simulator (`simulator/world_fit.py`), measured with
#   python -m benchmarks.bench_world_fit      (course profile scaled to 20,000 users and 1,000 movies, seed 3)
# (benchmarks/results/world-fit.json): visitors come 1.44 times in two days (p99 4), a visit reloads
# 0.34 times, nobody opens the home page mid-movie, a popularity list is followed 37% of the time
# (users alike: concentration 31), half the others watch an own choice, 4.6% of those on the list
# (no more than chance: Zipf 0, own choices go as exposure, not as the list's popularity).
COURSE_WORLD = WorldSpec(list_length=20, visits_mean=0.3877, visits_shape=0.76, follow_mean=0.3718,
                         follow_concentration=31.438, reload_mean=0.3442, own_choice=0.5017,
                         mid_session_visit=0.0, zipf=0.0)
WORLDS = {"course": WorldSpec.calibrated, "legacy": WorldSpec.legacy}


def make_world(seed: int, spec: WorldSpec = WorldSpec()) -> dict[str, pd.DataFrame]:
    """The recommendation, watch and rate frames of one world (deterministic by seed and spec)."""
    rng = np.random.default_rng([seed, 1701])
    n, span = spec.users, spec.days * 86400.0
    user_ids = seed * 1_000_000 + np.arange(1, n + 1, dtype=np.int64)   # fresh buckets in every world
    canary = np.fromiter((in_canary(int(u), spec.canary_percent) for u in user_ids), bool, n)

    # users: how often they come, follow, reload, and look at the home page mid-movie
    a = spec.follow_mean * spec.follow_concentration
    follow = rng.beta(a, spec.follow_concentration - a, n)
    follow = np.clip(np.where(canary, follow + spec.effect, follow), 0.0, 1.0)
    visits = _visits(rng, spec, n)
    reload_rate = spec.reload_mean * rng.exponential(1.0, n)

    # lists: per user and arm a list of popular-leaning movies (Gumbel top-k on Zipf weights)
    weights = _weights(spec)
    lists = _lists(rng, spec, n)

    # visits -> requests (first request of a visit, then reloads of the same list)
    v_user = np.repeat(np.arange(n), visits)
    v_time = rng.uniform(0, span, v_user.size)
    reloads = rng.poisson(reload_rate[v_user])
    r_user = np.concatenate([v_user, np.repeat(v_user, reloads)])
    r_time = np.concatenate([v_time, np.repeat(v_time, reloads) + rng.exponential(90.0, reloads.sum())])
    r_list = lists[r_user].copy()

    # what a visit leads to: a listed movie (followed), an own choice (by popularity), or nothing
    followed = rng.random(v_user.size) < follow[v_user]
    position = np.minimum(rng.geometric(0.3, v_user.size) - 1, spec.list_length - 1)
    own = ~followed & (rng.random(v_user.size) < spec.own_choice)
    movie = np.where(followed, lists[v_user, position], rng.choice(spec.movies, v_user.size, p=weights / weights.sum()))
    watched = followed | own
    # the last request of the visit decides the session start: after the reloads
    last_reload = np.zeros(v_user.size)
    if reloads.sum():
        idx = np.repeat(np.arange(v_user.size), reloads)
        np.maximum.at(last_reload, idx, r_time[v_user.size:] - v_time[idx])
    s_user, s_movie = v_user[watched], movie[watched]
    s_start = v_time[watched] + last_reload[watched] + rng.uniform(30, 600, watched.sum())
    s_minutes = np.minimum(rng.geometric(1 / 15, s_user.size), 45)

    # mid-movie visits: a request whose list shows the movie being watched
    mid = rng.random(s_user.size) < spec.mid_session_visit
    m_user, m_movie = s_user[mid], s_movie[mid]
    m_time = s_start[mid] + rng.uniform(60, 60 * np.maximum(s_minutes[mid], 1.0))
    m_list = lists[m_user].copy()
    m_list[:, 0] = m_movie
    r_user, r_time = np.concatenate([r_user, m_user]), np.concatenate([r_time, m_time])
    r_list = np.concatenate([r_list, m_list])

    # frames in the event-log contract's shape
    failed = rng.random(r_user.size) < spec.failure_rate
    version = np.where(canary[r_user], "sim@canary", "sim@stable")
    slugs = np.array([f"movie+{m}+2000" for m in range(spec.movies)])
    results = slugs[r_list].tolist()
    for i in np.flatnonzero(failed):
        results[i] = []
    recs = pd.DataFrame({"time": _times(r_time), "user_id": user_ids[r_user],
                         "server": version, "status": np.where(failed, 0, 200), "results": results,
                         "response_time_ms": np.where(failed, 600, rng.integers(5, 80, r_user.size))})
    w_session = np.repeat(np.arange(s_user.size), s_minutes)
    w_minute = np.arange(w_session.size) - np.repeat(np.cumsum(s_minutes) - s_minutes, s_minutes)
    watches = pd.DataFrame({"time": _times(s_start[w_session] + 60.0 * w_minute),
                            "user_id": user_ids[s_user[w_session]], "movie_id": slugs[s_movie[w_session]],
                            "minute": w_minute})
    recs = recs.sort_values("time", kind="stable", ignore_index=True)
    watches = watches.sort_values("time", kind="stable", ignore_index=True)
    rates = pd.DataFrame({"time": pd.Series(dtype="datetime64[ns]"), "user_id": pd.Series(dtype="int64"),
                          "movie_id": pd.Series(dtype=object), "rating": pd.Series(dtype="int64")})
    return {"recommendation": recs, "watch": watches, "rate": rates}


def _visits(rng: np.random.Generator, spec: WorldSpec, n: int) -> np.ndarray:
    """Visits per user: a lognormal-spread Poisson plus one (legacy), or a zero-truncated
    Poisson-Gamma (users differ by Gamma(visits_shape) activity; only users who visit are in the world)."""
    if spec.visits_shape <= 0:
        return rng.poisson(spec.visits_mean * rng.lognormal(-0.5, 1.0, n)) + 1
    visits = np.zeros(n, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:          # redraw users with no visit (activity and count together): truncation at 1
        k = spec.visits_shape
        visits[todo] = rng.poisson(spec.visits_mean * rng.gamma(k, 1.0 / k, todo.size))
        todo = todo[visits[todo] == 0]
    return visits


def _weights(spec: WorldSpec) -> np.ndarray:
    """Chance of each movie as an own choice (Zipf over the catalogue)."""
    weights = 1.0 / np.arange(1, spec.movies + 1) ** spec.zipf
    return weights / weights.sum()


def _lists(rng: np.random.Generator, spec: WorldSpec, n: int) -> np.ndarray:
    """Per user a list of popular-leaning movies (Gumbel top-k on the Zipf weights), best first."""
    keys = np.log(_weights(spec)) + rng.gumbel(size=(n, spec.movies))
    top = np.argpartition(-keys, spec.list_length, axis=1)[:, :spec.list_length]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1), axis=1)


def own_choice_on_list(spec: WorldSpec, rows: int = 4000, seed: int = 0) -> float:
    """The chance that a user's own choice is a movie of their list, in worlds of this spec."""
    rng = np.random.default_rng([seed, 1702])
    lists = _lists(rng, spec, rows)
    return float(_weights(spec)[lists].sum(axis=1).mean())


def _times(seconds: np.ndarray) -> np.ndarray:
    """Seconds since START as datetime64[ns] (whole seconds, like the event log)."""
    return np.datetime64(START, "ns") + (np.floor(seconds).astype(np.int64) * 1_000_000_000).astype("timedelta64[ns]")
