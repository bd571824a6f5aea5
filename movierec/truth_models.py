"""Truth models of known quality, scored offline and online: the offline gate must rank them as users do.

On a simulated service (`simulator.service.StreamingService`, users with hidden tastes), three
models whose quality is known by construction:

- `popularity`: the popularity baseline fitted on the train period (no taste at all);
- `partial`: every user's true affinities plus Gaussian noise of `noise` times their spread
  (part of the taste, part guesswork);
- `full`: the true affinities themselves (the oracle, up to the mask of what users have seen).

Offline, each is scored by the evaluate step's own code on the history's time split
(`components.training.evaluate`, the same targets for all three) on the primary metric.
Online, each serves the same simulated users from the same state (a copy of the service after
its history), the platform's join (`components.online.join`) turns the logged answers and the
watches that follow into a hit rate. The order of the three must be the same both ways:

    python -m benchmarks.bench_truth_models --seeds 10     # writes benchmarks/results/truth_models.json
"""

from __future__ import annotations

import copy
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from components.core.model_artifact import FactorModel
from components.core.store import LocalStore
from components.ingest.run import ingest
from components.online.join import frames_from_lines, join
from components.training.dataset import Dataset
from components.training.evaluate import evaluate, popularity_baseline
from components.training.preprocess import prepare
from simulator.service import StreamingService

TRUTH_MODELS = ("popularity", "partial", "full")   # known order, worst first
START = datetime(2026, 3, 2)


def truth_models(service: StreamingService, dataset: Dataset, noise: float = 0.5, seed: int = 0
                 ) -> dict[str, FactorModel]:
    """The three truth models over `dataset`'s users and movies, masking its train period."""
    users, movies = dataset.user_ids, dataset.movie_ids
    affinity = np.stack([service.true_affinity(int(u), movies) for u in users]).astype(np.float64)
    affinity = np.nan_to_num(affinity, nan=-1e3)
    rng = np.random.default_rng(seed)
    spread = affinity.std(axis=1, keepdims=True)
    pop = popularity_baseline(dataset)

    def model(scores: np.ndarray) -> FactorModel:
        return FactorModel(global_mean=0.0, user_bias=np.zeros(len(users)), item_bias=np.zeros(len(movies)),
                           user_factors=scores, item_factors=np.eye(len(movies)), user_ids=users,
                           movie_ids=movies, seen_indptr=np.zeros(len(users) + 1), seen_indices=[],
                           popular=pop.popular)

    seen = dataset.train_seen_for(users, movies)
    return {"popularity": pop.with_seen(seen),
            "partial": model(affinity + rng.normal(0.0, 1.0, affinity.shape) * noise * spread).with_seen(seen),
            "full": model(affinity).with_seen(seen)}


def offline_and_online(seed: int, users: int = 600, movies: int = 200, days: int = 14, requests: int = 3000,
                       noise: float = 0.5, params: dict | None = None) -> dict:
    """One simulated service: each truth model's primary metric offline and hit rate online."""
    service = StreamingService(seed=seed, n_users=users, n_movies=movies)
    lines = list(service.history(days=days, start=START))
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "events.log"
        log.write_text("\n".join(lines) + "\n")
        store = LocalStore(Path(tmp) / "store")
        ingest(f"file:{log}", store, follow=False)
        split = prepare(store, params)
        whole = prepare(store, {**(params or {}), "preprocess": {**(params or {}).get("preprocess", {}),
                                                                  "valid_days": None, "valid_fraction": 0.0}})
    offline_models = truth_models(service, split, noise, seed)
    offline = {name: evaluate(m, split, params, name=name) for name, m in offline_models.items()}
    metric = (params or {}).get("evaluate", {}).get("primary_metric", "ndcg@20")
    served_models = truth_models(service, whole, noise, seed)
    after = START + timedelta(days=days, hours=1)
    online = {}
    for name, model in served_models.items():
        world = copy.deepcopy(service)
        answer = (lambda m: lambda user: (m.recommend(int(user), 20)[0], 200, 5.0))(model)
        out = list(world.serve_traffic(answer, n_requests=requests, log_requests=True, start=after,
                                       server=f"sim@{name}"))
        joined = join(frames_from_lines(out))
        done = joined[joined["served"] & ~joined["open"]]
        online[name] = {"hit_rate": round(float(done["hit"].mean()), 4) if len(done) else None,
                        "answers": int(len(done)), "follow_rate": round(world.traffic.follow_rate, 4)}
    return {"seed": seed, "metric": metric,
            "offline": {n: {metric: e.metrics.get(metric), "users": e.metrics.get("users")} for n, e in offline.items()},
            "online": online,
            "offline_order": sorted(offline, key=lambda n: offline[n].metrics.get(metric, 0.0)),
            "online_order": sorted(online, key=lambda n: online[n]["hit_rate"] or 0.0)}
