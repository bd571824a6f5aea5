"""Canary analysis against the simulator's ground truth, in automatic mode, within a request budget.

The simulated users have hidden low-rank tastes (`simulator.population`). The served models are
real `FactorModel`s built from that truth, routed per user by `components.core.rollout` exactly as
the predictor routes them, and saved in the store like published versions:

    rank-2    the stable version: knows 2 of the 8 taste factors
    rank-8    a truly better canary (more factors: the whole taste)
    random    a truly worse canary (random factors)
    rank-2b   an equal canary (the same model under another version)
    slow      rank-8 answering in 900 ms: breaks the latency and availability objectives

Each round, the users ask `n` times (their answers logged as `sim@<version>` request lines by
`format_event`), react as their tastes say, and `online_run.run_once(auto=True)` analyses the
whole log so far and acts through the rollout state. A better canary must end promoted, a worse
or slow one rolled back, an equal one still collecting when the budget is spent.

The last tests run a few of the calibration's worlds (`simulator.worlds`, `movierec.calibration`:
thousands of heterogeneous users at the default 10% canary share, looked at every 30 simulated
minutes); `make bench` runs hundreds of them (`benchmarks/bench_calibration.py`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest

from components.core import rollout
from components.core.events import RecommendationEvent, format_event, parse_line
from components.core.model_artifact import FactorModel, ModelCard
from components.core.store import LocalStore
from components.online import canary
from components.online.join import concat_frames, frames_from_lines
from components.online.run import run_once
from simulator.service import StreamingService

pytestmark = pytest.mark.integration

POLICY = canary.CanaryPolicy(min_per_arm=100, planned_canary=600)
PERCENT = 50.0
ROUND, BUDGET = 400, 4000
START = datetime(2026, 3, 1, 8, 0, 0)
# The canary's users are fixed: `start_canary` draws a fresh salt for each experiment, which made
# these single-world outcomes vary from run to run (an equal canary was decided about once in many
# runs, as the rule allows). How often that happens is measured over many worlds below and in
# `benchmarks/bench_calibration.py`; here each world is the same on every run.
EXPERIMENT = "9d98e721efec2e0b"


def truth_model(svc: StreamingService, rank: int | None, *, random_seed: int | None = None) -> FactorModel:
    """A FactorModel that knows `rank` of the hidden taste factors (or random factors)."""
    pop, cat = svc.population, svc.catalogue
    taste, factors = pop.taste[1:], cat.factors
    if random_seed is not None:
        rng = np.random.default_rng(random_seed)
        taste, factors = rng.normal(size=taste.shape), rng.normal(size=factors.shape)
        bias, quality = np.zeros(pop.n_users), np.zeros(len(cat))
    else:
        taste, factors = taste[:, :rank], factors[:, :rank]
        bias, quality = pop.bias[1:], cat.quality
    n_users = pop.n_users
    return FactorModel(global_mean=0.0, user_bias=bias, item_bias=quality, user_factors=taste,
                       item_factors=factors, user_ids=np.arange(1, n_users + 1), movie_ids=np.array(cat.slugs),
                       seen_indptr=np.zeros(n_users + 1, dtype=np.int64), seen_indices=np.zeros(0, dtype=np.int32),
                       popular=np.asarray(cat.popularity_order, dtype=np.int32))


def run_canary(tmp_path, canary_version: str, canary_model: FactorModel, latency_ms: dict[str, int] | None = None):
    """Simulate rounds of traffic until online evaluation acts or the budget is spent."""
    svc = StreamingService(seed=11, n_users=1200, n_movies=300)
    store = LocalStore(tmp_path / "store")
    stable = truth_model(svc, 2)
    models = {"rank-2": stable, canary_version: canary_model}
    for version, model in models.items():
        model.save(store, ModelCard(version=version, algorithm="simulated-truth", trained_at=START.isoformat()))
    rollout.set_stable(store, "rank-2")
    state = rollout.start_canary(store, canary_version, PERCENT)
    state.experiment = EXPERIMENT
    rollout.save(store, state, "canary", version=canary_version, reason="the test's fixed users")
    latency_ms = latency_ms or {}

    frames, clock, requests, result = frames_from_lines([]), START, 0, None
    while requests < BUDGET:
        state = rollout.load(store)
        served: dict[int, str] = {}

        def recommend(user_id: int, state=state, served=served):
            version = state.route(user_id)
            served[user_id] = version
            ids, _ = models[version].recommend(user_id, 20)
            return ids, 200, latency_ms.get(version, 15)

        lines = []
        for line in svc.serve_traffic(recommend, n_requests=ROUND, log_requests=True, start=clock, interval_s=1.0,
                                      server="sim"):
            event = parse_line(line)
            if isinstance(event, RecommendationEvent):   # the predictor's request line names the version
                line = format_event(replace(event, server=f"sim@{served[event.user_id]}"))
                clock = max(clock, event.time + timedelta(seconds=1))
            lines.append(line)
        requests += ROUND
        frames = concat_frames(frames, frames_from_lines(lines))
        result = run_once(frames, store, policy=POLICY, auto=True)
        if result["canary"]["acted"]:
            break
    return result, rollout.load(store), requests


def test_better_canary_is_promoted(tmp_path):
    svc = StreamingService(seed=11, n_users=1200, n_movies=300)
    result, state, requests = run_canary(tmp_path, "rank-8", truth_model(svc, 8))
    assert result["canary"]["decision"] == canary.PROMOTE, result["canary"]["reasons"]
    assert state.stable == "rank-8" and state.canary is None
    assert requests <= BUDGET
    assert result["versions"]["rank-8"]["hit_rate"]["low"] > result["versions"]["rank-2"]["hit_rate"]["value"]


def test_worse_canary_is_rolled_back(tmp_path):
    svc = StreamingService(seed=11, n_users=1200, n_movies=300)
    result, state, requests = run_canary(tmp_path, "random", truth_model(svc, None, random_seed=5))
    assert result["canary"]["decision"] == canary.ROLLBACK, result["canary"]["reasons"]
    assert "worse" in result["canary"]["reasons"][0]
    assert state.stable == "rank-2" and state.canary is None


def test_equal_canary_keeps_collecting(tmp_path):
    svc = StreamingService(seed=11, n_users=1200, n_movies=300)
    result, state, requests = run_canary(tmp_path, "rank-2b", truth_model(svc, 2))
    assert requests == BUDGET
    assert result["canary"]["decision"] == canary.KEEP, result["canary"]["reasons"]
    assert state.canary == "rank-2b"
    assert not result["canary"]["srm"]["mismatch"]


def test_slow_canary_is_rolled_back_whatever_its_hit_rate(tmp_path):
    svc = StreamingService(seed=11, n_users=1200, n_movies=300)
    result, state, requests = run_canary(tmp_path, "slow", truth_model(svc, 8), latency_ms={"slow": 900})
    assert result["canary"]["decision"] == canary.ROLLBACK
    assert any("latency" in r or "availability" in r for r in result["canary"]["reasons"])
    assert requests <= 2 * ROUND and state.canary is None


def test_worse_canary_over_the_real_predictor_is_rolled_back_and_withdrawn(tmp_path):
    """End to end over HTTP: the predictor serves and logs, users react, online-eval rolls back,
    and the predictor stops serving the canary (it polls the rollout state)."""
    import time

    import httpx

    from components.online.join import frames_from_log
    from predictor.supervisor import serve_args, start_instance, stop_instance, wait_ready
    from tests.servers import free_port

    svc = StreamingService(seed=11, n_users=1200, n_movies=300)
    store = LocalStore(tmp_path / "store")
    for version, m in (("rank-2", truth_model(svc, 2)), ("random", truth_model(svc, None, random_seed=5))):
        m.save(store, ModelCard(version=version, algorithm="simulated-truth", trained_at=START.isoformat()))
    rollout.set_stable(store, "rank-2")
    rollout.start_canary(store, "random", PERCENT)
    port = free_port()
    requests_log, user_log = tmp_path / "requests.log", tmp_path / "users.log"
    ready, server_log = tmp_path / "ready", open(tmp_path / "server.log", "wb")
    proc = start_instance(serve_args(str(store.root), port, poll_seconds=0.3, request_log=f"file:{requests_log}"),
                          ready, log_file=server_log)
    try:
        wait_ready(proc, ready, timeout=90)
        url = f"http://127.0.0.1:{port}"
        n = 1200
        user_log.write_text("\n".join(svc.serve_traffic(url, n_requests=n, concurrency=4)) + "\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not requests_log.exists()
                                               or requests_log.read_text().count("\n") < n):
            time.sleep(0.2)
        frames = concat_frames(frames_from_log(str(requests_log)), frames_from_log(str(user_log)))
        assert len(frames["recommendation"]) == n
        result = run_once(frames, store, policy=POLICY, auto=True)
        assert result["canary"]["acted"] == canary.ROLLBACK, result["canary"]["reasons"]
        assert rollout.load(store).canary is None
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=url, timeout=5) as client:
            while time.monotonic() < deadline:
                served = {client.get(f"/recommend/{u}").headers["x-model-version"] for u in range(1, 200)}
                if served == {"rank-2"}:
                    break
                time.sleep(0.3)
        assert served == {"rank-2"}
    finally:
        stop_instance(proc)
        server_log.close()


def test_identical_canaries_are_rarely_decided_on_simulated_worlds():
    from movierec import calibration

    outcomes = [calibration.run_world(seed, 0.0) for seed in range(1, 7)]
    assert all(o.analyse_agrees for o in outcomes)
    assert all(o.looks > 50 or o.decision != canary.KEEP for o in outcomes)   # looked at every cycle
    assert sum(o.decision != canary.KEEP for o in outcomes) <= 1, outcomes


@pytest.mark.parametrize("sign, right, wrong", [(1, canary.PROMOTE, canary.ROLLBACK),
                                                (-1, canary.ROLLBACK, canary.PROMOTE)])
def test_better_and_worse_canaries_are_decided_right_on_simulated_worlds(sign, right, wrong):
    from movierec import calibration

    outcomes = [calibration.run_world(seed, sign * calibration.EFFECT) for seed in range(1, 4)]
    assert all(o.analyse_agrees for o in outcomes)
    assert sum(o.decision == right for o in outcomes) >= 2, outcomes
    assert not any(o.decision == wrong for o in outcomes), outcomes
