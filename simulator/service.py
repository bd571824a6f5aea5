"""The streaming service stand-in: users join, watch, rate and ask for recommendations.

    service = StreamingService(seed=7)
    for line in service.history(days=21):            # contract lines, in time order
        log.append(line)
    lines = service.serve_traffic("http://127.0.0.1:8080", n_requests=2000, concurrency=4)

Everything is deterministic by seed (live traffic only up to the server's answers). Users who
join create an account and rate movies they already know (the service asks newcomers for a few
ratings, MovieLens-style), then watch sessions minute by minute, abandon movies they like less
earlier, sometimes rate what they watched, and sometimes pick from a recommendation list - in
the history from the service's legacy popularity list (logged as `legacy@popularity`), in live
traffic from a real endpoint. The share of requests followed by a watch of a recommended movie
is what a better model earns (`traffic.follow_rate`).
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from components.core.events import AccountEvent, RateEvent, RecommendationEvent, format_event, format_time
from simulator import population as behaviour
from simulator.catalogue import Catalogue
from simulator.corruption import Corruptor
from simulator.live import LiveTrafficMixin
from simulator.population import Population
from simulator.recommenders import RecommendersMixin
from simulator.traffic import Answer, TrafficStats

DAY = 86400
LEGACY_SERVER = "legacy@popularity"
LEGACY_SHARE = 0.15       # history sessions that start from the legacy popularity list
SIGNUP_RATINGS = 25       # mean number of movies rated when joining
RELOAD_SHARE = 0.25       # chance that a user reloads the home page (again) before choosing
PASSED_OVER_WEIGHT = 0.5  # how much less a user picks, on their own, a movie of the list they just passed over
_MINUTES = [timedelta(minutes=m) for m in range(24 * 60)]  # offsets of a session's minute lines


class StreamingService(LiveTrafficMixin, RecommendersMixin):
    """A population of users with hidden tastes, a catalogue, a simulated clock, and their log."""

    def __init__(self, seed: int = 0, n_users: int = 1500, n_movies: int = 400, corrupt_rate: float = 0.0,
                 signup_ratings: float = SIGNUP_RATINGS, legacy_share: float = LEGACY_SHARE):
        self.seed = seed
        self.catalogue = Catalogue(seed, n_movies)
        self.population = Population(seed, n_users)
        self.signup_ratings = signup_ratings
        self.legacy_share = legacy_share
        self._choice_base = behaviour.choice_base(self.catalogue)
        self._known_base = behaviour.choice_base(self.catalogue, behaviour.KNOWN_BETA, behaviour.KNOWN_POWER)
        self._rnd = random.Random(f"movierec-behaviour-{seed}")
        self._np = np.random.default_rng([seed, 2])
        self._corrupt = Corruptor(corrupt_rate, random.Random(f"movierec-corruption-{seed}"))
        self.seen: dict[int, dict[int, float]] = {}   # user -> movie index -> how much less they pick it
        self.members: set[int] = set()
        self._busy_until: dict[int, datetime] = {}
        self.counts: Counter[str] = Counter()         # valid lines emitted, per event kind
        self.ratings_after_watch = 0                  # rate lines that follow a watch (the rest: sign-up)
        self.traffic = TrafficStats()
        self.clock: datetime | None = None            # time of the latest line emitted
        self._seq = 0

    # -- ground truth ---------------------------------------------------------------------------
    @property
    def corrupted(self) -> int:
        """Exact number of corrupted lines emitted so far (ingest must reject exactly these)."""
        return self._corrupt.corrupted

    @property
    def corrupted_by_kind(self) -> dict[str, int]:
        return dict(self._corrupt.by_kind)

    def reset_counters(self) -> None:
        """Forget what was counted so far (lines per kind, corrupted lines, traffic), keep the state."""
        self.counts.clear()
        self._corrupt.by_kind.clear()
        self.traffic = TrafficStats()

    def true_affinity(self, user_id: int, movie_ids) -> np.ndarray:
        """The hidden affinity of a user for movies (slugs or indices); NaN for unknown slugs."""
        idx = self.catalogue.indices(movie_ids)
        row = self.population.affinity(self.catalogue, user_id)
        return np.where(idx >= 0, row[np.maximum(idx, 0)], np.nan)

    # -- the history ----------------------------------------------------------------------------
    def history(self, days: int = 21, sessions_per_day: int = 110, start: datetime | None = None,
                progress: Callable[[int, int], None] | None = None) -> Iterator[str]:
        """Lines of `days` days of the service, in time order, from `start` (default: `days` ago)."""
        if start is None:
            today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
            start = today - timedelta(days=days)
        pop = self.population
        joins = []
        for u in pop.user_ids:
            q = pop.join_quantile[u]
            share = behaviour.INITIAL_SHARE
            offset = q / share * DAY if q < share else (q - share) / (1 - share) * days * DAY
            joins.append((start + timedelta(seconds=int(offset)), u))
        joins.sort()
        join_times = [t for t, _ in joins]
        cum_activity = np.cumsum([pop.activity[u] for _, u in joins])
        pending: list[tuple] = []
        j = 0
        for day in range(days):
            day_start, day_end = start + timedelta(days=day), start + timedelta(days=day + 1)
            while j < len(joins) and joins[j][0] < day_end:
                self._join(joins[j][1], joins[j][0], pending)
                j += 1
            for t in sorted(day_start + timedelta(seconds=int(self._time_of_day()))
                            for _ in range(self._np.poisson(sessions_per_day))):
                k = bisect.bisect_right(join_times, t)
                if k == 0:
                    continue
                i = int(np.searchsorted(cum_activity[:k], self._rnd.random() * cum_activity[k - 1], side="right"))
                self._history_session(joins[min(i, k - 1)][1], t, pending)
            yield from self._emit(pending, day_end)
            if progress:
                progress(day + 1, days)
        yield from self._emit(pending, None)

    def _time_of_day(self) -> float:
        """Seconds into the day of a session start: an evening peak over a flat background."""
        if self._rnd.random() < 0.65:
            return (self._rnd.gauss(20.5, 2.0) * 3600) % DAY
        return self._rnd.random() * DAY

    def _history_session(self, user: int, t: datetime, out: list) -> None:
        t = max(t, self._busy_until.get(user, t))
        affinity = self.population.affinity(self.catalogue, user)
        movie = None
        if self._rnd.random() < self.legacy_share:
            ids = self.popularity_list(user)
            timeout = self._rnd.random() < 0.005
            ms = self._rnd.randint(600, 900) if timeout else self._rnd.randint(15, 120)
            answer = Answer([], 0, ms, "ReadTimeout: timed out") if timeout else Answer(ids, 200, ms)
            self._push(out, RecommendationEvent(t, user, LEGACY_SERVER, answer.status, tuple(answer.ids),
                                                answer.response_ms, answer.error))
            while self._rnd.random() < RELOAD_SHARE:  # the home page again, the same list
                t += timedelta(seconds=self._rnd.randint(5, 120))
                self._push(out, RecommendationEvent(t, user, LEGACY_SERVER, answer.status, tuple(answer.ids),
                                                    self._rnd.randint(15, 120), answer.error))
            movie = self._react(user, affinity, answer.ids)
            t += timedelta(seconds=self._rnd.randint(20, 180))
        if movie is None:
            movie = self._own_choice(user, affinity)
        self._watch(user, movie, affinity[movie], t, out)

    # -- what users do --------------------------------------------------------------------------
    def _join(self, user: int, t: datetime, out: list) -> None:
        """A new member: the account line, then ratings of movies they already know."""
        self.members.add(user)
        self._push(out, AccountEvent(t, user))
        # engaged users rate more when asked, as they do after watching (the same heavy tail); the
        # service asks about a few of its well-known movies, not the whole catalogue
        asked = self.signup_ratings * self.population.activity[user]
        n = min(len(self.catalogue) // 4, int(self._np.poisson(asked)))
        if n == 0:
            return
        affinity = self.population.affinity(self.catalogue, user)
        w = behaviour.choice_weights(affinity, self._known_base, {}, behaviour.KNOWN_BETA)
        known = self._np.choice(len(w), size=n, replace=False, p=w / w.sum())
        seen = self.seen.setdefault(user, {})
        for m in known:
            t += timedelta(seconds=self._rnd.randint(5, 40))
            self._push(out, RateEvent(t, user, self.catalogue.slugs[m], behaviour.rating(affinity[m], self._rnd)))
            seen[int(m)] = behaviour.SEEN_WEIGHT
        self._busy_until[user] = t

    def _own_choice(self, user: int, affinity: np.ndarray, passed_over: list[str] = ()) -> int:
        """A movie the user finds on their own. Movies of a list they just passed over are less likely
        (PASSED_OVER_WEIGHT), not impossible: a well-known movie a user would have watched anyway is
        often on the list too, and the log then shows a "hit" the list did not cause - the attribution
        bias of real data, which online evaluation has to live with."""
        w = behaviour.choice_weights(affinity, self._choice_base, self.seen.get(user, {}))
        if len(passed_over):
            idx = self.catalogue.indices(list(passed_over)[:20])
            w[idx[idx >= 0]] *= PASSED_OVER_WEIGHT
        return behaviour.pick(w, self._rnd)

    def _utilities(self, user: int, affinity: np.ndarray, idx: np.ndarray) -> np.ndarray:
        seen = self.seen.get(user, {})
        return affinity[idx] + np.log([seen.get(int(m), 1.0) for m in idx])

    def _react(self, user: int, affinity: np.ndarray, ids: list[str]) -> int | None:
        """The movie a user picks from a list (best first), or None if nothing there tempts them."""
        idx = self.catalogue.indices(ids[:20])
        idx = idx[idx >= 0]
        if len(idx) == 0:
            return None
        utilities = self._utilities(user, affinity, idx)
        if self._rnd.random() >= behaviour.follow_probability(utilities):
            return None
        return int(idx[behaviour.pick(behaviour.follow_odds(utilities), self._rnd)])

    def _watch(self, user: int, movie: int, affinity: float, t: datetime, out: list) -> int:
        """A watch session, one line per minute from minute 0; maybe a rating after. Returns minutes."""
        length = int(self.catalogue.lengths[movie])
        minutes = behaviour.minutes_watched(float(affinity), length, self._rnd)
        slug = self.catalogue.slugs[movie]
        # the contract's watch line (format_event of a WatchEvent), built without an object per minute:
        # a course-scale history streams tens of millions of them
        tail = f",{user},GET /data/m/{slug}/"
        seq = self._seq
        for minute, offset in enumerate(_MINUTES[:minutes]):
            when = t + offset
            out.append((when, seq + minute, "watch", f"{format_time(when)}{tail}{minute}.mpg"))
        self._seq = seq + minutes
        end = t + timedelta(seconds=60 * minutes)
        seen = self.seen.setdefault(user, {})
        done = behaviour.SEEN_WEIGHT if minutes >= 0.9 * length else behaviour.STARTED_WEIGHT
        seen[movie] = min(done, seen.get(movie, 1.0))
        propensity = self.population.rate_propensity[user]
        if self._rnd.random() < behaviour.rate_probability(propensity, float(affinity), minutes, length):
            self.ratings_after_watch += 1
            end += timedelta(seconds=self._rnd.randint(5, 300))
            self._push(out, RateEvent(end, user, slug, behaviour.rating(float(affinity), self._rnd)))
        self._busy_until[user] = end + timedelta(seconds=self._rnd.randint(60, 3600))
        return minutes

    # -- emission: every line goes through here -------------------------------------------------
    def _push(self, out: list, event) -> None:
        self._seq += 1
        out.append((event.time, self._seq, event.kind, format_event(event)))

    def _emit(self, pending: list, until: datetime | None) -> Iterator[str]:
        """Yield, in time order, the pending lines before `until` (all if None); keep the rest."""
        pending.sort()
        cut = len(pending) if until is None else bisect.bisect_left(pending, (until,))
        ready = pending[:cut]
        del pending[:cut]
        counts = Counter()
        try:
            for time, _, kind, line in ready:
                out = self._corrupt(line)
                if out is line:
                    counts[kind] += 1
                self.clock = time
                yield out
        finally:  # counted in bulk: a per-line update of the shared counter costs more than the line
            self.counts.update(counts)
