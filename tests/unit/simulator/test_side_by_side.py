"""Recommenders side by side: users split by the predictor's rule, every follow counted once, in its arm."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from components.core.rollout import user_bucket
from simulator.service import StreamingService
from simulator.side_by_side import arm_of, side_by_side


def played(seed: int = 5) -> StreamingService:
    service = StreamingService(seed=seed, n_users=400, n_movies=120)
    for _ in service.history(days=5, sessions_per_day=60, start=datetime(2026, 3, 1)):
        pass
    return service


def test_arms_follow_the_hash_buckets_in_equal_shares():
    names = ["a", "b"]
    arms = [arm_of(u, names, "salt") for u in range(1, 5001)]
    assert arms == ["a" if user_bucket(u, "salt") < 5000 else "b" for u in range(1, 5001)]
    assert abs(arms.count("a") - 2500) < 150
    assert arm_of(7, names, "one") == arm_of(7, names, "one")


def test_every_follow_is_counted_once_in_the_arm_that_served_it():
    service = played()
    outcome = side_by_side(service, {"random": service.random_recommender(), "oracle": service.oracle()},
                           n_requests=900, start=service.clock + timedelta(hours=1), salt="t")
    assert sum(int(o.requests.sum()) for o in outcome.values()) == 900 == service.traffic.requests
    assert sum(int(o.followed.sum()) for o in outcome.values()) == service.traffic.followed
    for name, o in outcome.items():
        assert np.all(np.diff(o.users) > 0) and np.all(o.followed <= o.requests)
        assert all(arm_of(int(u), ["random", "oracle"], "t") == name for u in o.users)
    assert not set(outcome["random"].users) & set(outcome["oracle"].users)
    assert outcome["oracle"].follow_rate > outcome["random"].follow_rate + 0.1   # the ceiling beats the floor


def test_the_same_recommender_on_both_arms_earns_about_the_same():
    service = played(seed=6)
    outcome = side_by_side(service, {"a": service.popularity_recommender(), "b": service.popularity_recommender()},
                           n_requests=1200, start=service.clock + timedelta(hours=1))
    assert outcome["a"].follow_rate == pytest.approx(outcome["b"].follow_rate, abs=0.1)


def test_no_recommender_is_a_mistake():
    with pytest.raises(ValueError, match="at least one"):
        side_by_side(played(), {}, n_requests=10, start=datetime(2026, 3, 10))
