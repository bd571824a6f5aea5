"""Offline and online agree: truth models of known quality (popularity, partial and full knowledge
of the simulated users' tastes) come out in the same order from the offline evaluation (the
evaluate step's code on the history's time split, from ingested snapshots) and online (the join's
hit rate of their answers to the same simulated users), on several seeds. More seeds in
`python -m benchmarks.bench_gate`."""

from __future__ import annotations

import pytest

from movierec.truth_models import TRUTH_MODELS, offline_and_online

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_offline_order_of_the_truth_models_is_the_online_order(seed):
    world = offline_and_online(seed, users=400, days=10, requests=1500)
    offline = {name: figures["ndcg@20"] for name, figures in world["offline"].items()}
    online = {name: figures["hit_rate"] for name, figures in world["online"].items()}
    assert world["offline_order"] == list(TRUTH_MODELS), (offline, online)
    assert world["online_order"] == list(TRUTH_MODELS), (offline, online)
    assert min(f["answers"] for f in world["online"].values()) == 1500
    assert len({f["users"] for f in world["offline"].values()}) == 1       # the same validation users
