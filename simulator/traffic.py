"""Recommenders the simulated users can ask, and what their traffic earned.

A recommender is any callable `user_id -> (movie ids best first, HTTP status, response ms)`,
optionally with a 4th element, the error text of a failed request. `HttpRecommender` calls a real
`GET /recommend/<userid>` endpoint under the contract's 600 ms budget; the oracle, popularity and
random recommenders are in-process baselines for tests and benchmarks (`simulator/recommenders.py`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlparse

TIMEOUT_S = 0.6  # the contract: an answer later than 600 ms counts as failed


class Answer(NamedTuple):
    """What a recommender answered: ids (best first), HTTP status (0: no answer), ms, error text."""

    ids: list[str]
    status: int
    response_ms: int
    error: str = ""


RecommendCall = Callable[[int], "Answer | tuple"]


def as_answer(result) -> Answer:
    """Normalise a recommender's 3- or 4-tuple into an `Answer`."""
    if isinstance(result, Answer):
        return result
    ids, status, ms, *rest = result
    return Answer(list(ids), int(status), int(ms), str(rest[0]) if rest else "")


class HttpRecommender:
    """`GET <url>/recommend/<user_id>` with one httpx client per thread; never raises.

    A timeout or connection failure is status 0 with the exception text as the error, the way the
    service logs a request that got no answer.
    """

    def __init__(self, url: str, timeout_s: float = TIMEOUT_S, transport=None):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.transport = transport  # an httpx transport, for tests
        self.server = urlparse(self.url).netloc or self.url
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None or client.is_closed:
            import httpx

            client = httpx.Client(base_url=self.url, timeout=self.timeout_s, transport=self.transport)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def __call__(self, user_id: int) -> Answer:
        client = self._client()  # creating a client (SSL context) is not part of the request's time
        started = time.perf_counter()
        try:
            response = client.get(f"/recommend/{user_id}")
        except Exception as exc:  # timeouts, refused connections: the request failed, the user moves on
            ms = int((time.perf_counter() - started) * 1000)
            return Answer([], 0, ms, _one_line(f"{type(exc).__name__}: {exc}"))
        ms = int((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            return Answer([], response.status_code, ms, _one_line(response.text))
        ids = [movie for movie in response.text.strip().split(",") if movie]
        return Answer(ids, 200, ms)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()


def _one_line(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]


@dataclass
class TrafficStats:
    """What one `serve_traffic` run measured: how often users followed the recommendations."""

    requests: int = 0
    answered: int = 0          # status 200
    failed: int = 0            # anything else, status 0 (timeout / no connection) included
    followed: int = 0          # a recommended movie was watched afterwards
    own_choice: int = 0        # the user ignored the list and watched something else
    minutes_recommended: int = 0
    status: dict[int, int] = field(default_factory=dict)

    @property
    def follow_rate(self) -> float:
        """Share of requests followed by a watch of a recommended movie."""
        return self.followed / self.requests if self.requests else 0.0
