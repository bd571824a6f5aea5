"""Live traffic: simulated users ask a real (or in-process) recommender and react to its lists.

Mixed into `StreamingService`. Each request picks a member (weighted by activity), asks the
recommender, optionally logs the request line (the platform's predictor logs its own, so by
default the simulator does not), and the user then watches one of the recommended movies with a
probability that follows their hidden taste for what is shown - otherwise, sometimes, something
of their own choice. Requests run `concurrency` at a time; the users' reactions are decided in
request order on one thread, so a run is deterministic given the answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from components.core.events import RecommendationEvent
from simulator.traffic import Answer, HttpRecommender, RecommendCall, TrafficStats, as_answer

OWN_CHOICE_SHARE = 0.5    # users who ignore a list still watch something of their own this often


class LiveTrafficMixin:
    """`serve_traffic` for a `StreamingService`."""

    def serve_traffic(self, recommend: RecommendCall | HttpRecommender | str, n_requests: int = 1000,
                      concurrency: int = 4, log_requests: bool = False, start: datetime | None = None,
                      interval_s: float = 2.0, server: str | None = None) -> Iterator[str]:
        """Users ask `recommend` (a callable or an endpoint URL) and react; yields the lines to log.

        Each request's lines come together: the request line (only if `log_requests`: the
        platform's predictor logs its own), then the watch and rate lines a few minutes later.
        The clock is the wall clock (UTC) at each request, or simulated from `start` every
        `interval_s` seconds on average. `self.traffic` holds the counters of the latest run.
        """
        self.traffic = TrafficStats()
        http = HttpRecommender(recommend) if isinstance(recommend, str) else None
        if isinstance(recommend, HttpRecommender):
            http = recommend
        call = http or recommend
        server = server or (http.server if http else "simulator")
        users = self._traffic_users(n_requests)
        clock = [start]

        def ask(user: int) -> tuple[int, datetime, Answer]:
            if clock[0] is None:
                t = datetime.now(UTC).replace(tzinfo=None)
            else:
                t = clock[0]
            return user, t, as_answer(call(user))

        pool = None
        try:
            if concurrency <= 1 or start is not None:
                answers = (self._tick(clock, interval_s, ask(u)) for u in users)
            else:
                pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="viewer")
                answers = pool.map(ask, users)
            yield from self._traffic_lines(answers, log_requests, server)
        finally:  # a consumer that stops early cancels the requests not yet sent
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            if http:
                http.close()

    def _tick(self, clock: list, interval_s: float, answer):
        if clock[0] is not None:
            clock[0] += timedelta(seconds=round(self._rnd.expovariate(1.0 / interval_s)))
        return answer

    def _traffic_users(self, n: int) -> list[int]:
        """Who asks: members weighted by how active they are (everyone, if nobody joined yet).

        A user asks once, then is busy with what they watch: users who have not asked yet come
        first (drawn without replacement), and only when everyone has asked do users ask again.
        Live traffic runs in wall-clock time, much denser than a real day; without this one user's
        requests would follow each other within seconds, and the watch that one list caused would
        fall in the attribution window of the next."""
        users = sorted(self.members) or list(self.population.user_ids)
        asked = getattr(self, "_asked", set())
        order: list[int] = []
        while len(order) < n:
            fresh = [u for u in users if u not in asked] or users
            if fresh is users:
                asked = set()
            w = self.population.activity[fresh]
            take = min(n - len(order), len(fresh))
            picked = [fresh[i] for i in self._np.choice(len(fresh), size=take, replace=False, p=w / w.sum())]
            asked.update(picked)
            order.extend(picked)
        self._asked = asked
        return order

    def _traffic_lines(self, answers, log_requests: bool, server: str) -> Iterator[str]:
        stats = self.traffic
        for user, t, answer in answers:
            out: list = []
            if user not in self.members:
                self._join(user, t - timedelta(minutes=30), out)
            stats.requests += 1
            stats.status[answer.status] = stats.status.get(answer.status, 0) + 1
            if answer.status == 200:
                stats.answered += 1
            else:
                stats.failed += 1
            if log_requests:
                ids = tuple(answer.ids[:20]) if answer.status == 200 else ()
                self._push(out, RecommendationEvent(t, user, server, answer.status, ids,
                                                    answer.response_ms, answer.error))
            affinity = self.population.affinity(self.catalogue, user)
            movie = self._react(user, affinity, answer.ids) if answer.status == 200 else None
            t_watch = t + timedelta(seconds=self._rnd.randint(60, 300))
            if movie is not None:
                stats.followed += 1
                stats.minutes_recommended += self._watch(user, movie, affinity[movie], t_watch, out)
            elif self._rnd.random() < OWN_CHOICE_SHARE:
                stats.own_choice += 1
                movie = self._own_choice(user, affinity, answer.ids if answer.status == 200 else ())
                self._watch(user, movie, affinity[movie], t_watch, out)
            yield from self._emit(out, None)
