"""Two (or more) recommenders side by side for the same simulated users: who followed which list.

    outcome = side_by_side(service, {"popularity": pop, "svd": svd}, n_requests=20000, start=t0)
    outcome["svd"].followed.sum() / outcome["svd"].requests.sum()

Each user is assigned to one arm for good, by a salted hash of the user id (the predictor's own
traffic-split rule, `components.core.rollout.user_bucket`, equal shares), asks the arm's
recommender, and reacts to the list through the service's reaction model (`serve_traffic`:
follow a recommended movie with a probability that grows with their hidden taste for what is
shown, otherwise maybe watch something of their own). Users are the unit: per arm, one row per
user with their requests and how many of them they followed, ready for
`components.core.stats.clustered_share`.

The requests run one at a time on a simulated clock, so the reaction to request i is settled when
request i + 1 is asked; that is how each follow is attributed to its request (and the total is
checked against the service's own counter).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from components.core.rollout import BUCKETS, user_bucket
from simulator.traffic import RecommendCall, as_answer


@dataclass
class ArmOutcome:
    """One arm's users (ascending), their requests and the requests they followed."""

    name: str
    users: np.ndarray
    requests: np.ndarray
    followed: np.ndarray

    @property
    def follow_rate(self) -> float:
        total = int(self.requests.sum())
        return float(self.followed.sum() / total) if total else 0.0


def arm_of(user_id: int, names: list[str], salt: str) -> str:
    """The arm that serves `user_id`: equal shares of the hash buckets, in the order of `names`."""
    return names[user_bucket(user_id, salt) * len(names) // BUCKETS]


def side_by_side(service, arms: dict[str, RecommendCall], n_requests: int, start: datetime,
                 salt: str = "side-by-side", interval_s: float = 2.0) -> dict[str, ArmOutcome]:
    """Drive `n_requests` requests of the service's users at their arms; per arm, who followed.

    `service` is a `StreamingService` whose history has been played (users remember what they saw)."""
    names = list(arms)
    if not names:
        raise ValueError("side_by_side needs at least one recommender")
    asked: list[tuple[str, int]] = []
    followed: list[int] = []
    settled = [0]   # the service's follow counter when the previous request was asked

    def settle() -> None:
        if len(followed) < len(asked):
            now = service.traffic.followed
            followed.append(now - settled[0])
            settled[0] = now

    def call(user_id: int):
        settle()                        # the previous request's reaction is done by now
        arm = arm_of(user_id, names, salt)
        asked.append((arm, int(user_id)))
        return as_answer(arms[arm](user_id))

    for _ in service.serve_traffic(call, n_requests=n_requests, concurrency=1, start=start, interval_s=interval_s):
        pass
    settle()
    if sum(followed) != service.traffic.followed or len(followed) != service.traffic.requests:
        raise RuntimeError("side_by_side lost track of which request was followed")
    out = {}
    for name in names:
        rows = [(u, f) for (arm, u), f in zip(asked, followed, strict=True) if arm == name]
        users = np.array([u for u, _ in rows], dtype=np.int64)
        follows = np.array([f for _, f in rows], dtype=np.int64)
        unique, inverse = np.unique(users, return_inverse=True)
        out[name] = ArmOutcome(name, unique, np.bincount(inverse, minlength=len(unique)),
                               np.bincount(inverse, weights=follows, minlength=len(unique)).astype(np.int64))
    return out
