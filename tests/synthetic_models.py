"""Synthetic factor models of any size, for the predictor's tests and its benchmark (test code: not shipped).

They have the real artifact format (built with `FactorModel` and saved with its checksums), so
everything downstream - mapping, verification, scoring, swapping - runs the production code.
Deterministic by seed; generated with vectorised numpy so 1M users take seconds.
"""

from __future__ import annotations

import numpy as np

from components.core.model_artifact import FactorModel, ModelCard
from components.core.store import ArtifactStore


def movie_slugs(n_movies: int) -> np.ndarray:
    return np.array([f"movie+{i}+{1950 + i % 70}" for i in range(n_movies)])


def synthetic_model(n_users: int, n_movies: int, k: int = 32, *, seed: int = 0, seen_per_user: int = 5,
                    user_id_start: int = 1) -> FactorModel:
    """Random biases/factors; user ids start..start+n_users-1; each user has seen a few movies."""
    rng = np.random.default_rng(seed)
    user_factors = rng.standard_normal((n_users, k), dtype=np.float32)
    user_factors *= np.float32(0.1)
    item_factors = rng.standard_normal((n_movies, k), dtype=np.float32)
    item_factors *= np.float32(0.1)
    seen_per_user = min(seen_per_user, n_movies - 1)
    seen = rng.integers(0, n_movies, size=(n_users, seen_per_user), dtype=np.int32)
    seen.sort(axis=1)
    popular = np.argsort(-rng.random(n_movies)).astype(np.int32)
    return FactorModel(
        global_mean=3.5,
        user_bias=(rng.standard_normal(n_users, dtype=np.float32) * np.float32(0.1)),
        item_bias=(rng.standard_normal(n_movies, dtype=np.float32) * np.float32(0.1)),
        user_factors=user_factors,
        item_factors=item_factors,
        user_ids=np.arange(user_id_start, user_id_start + n_users, dtype=np.int64),
        movie_ids=movie_slugs(n_movies),
        seen_indptr=np.arange(0, (n_users + 1) * seen_per_user, seen_per_user, dtype=np.int64),
        seen_indices=seen.reshape(-1),
        popular=popular,
    )


def publish_synthetic(store: ArtifactStore, version: str, n_users: int, n_movies: int, k: int = 32,
                      *, seed: int = 0, **kwargs) -> FactorModel:
    """Build a synthetic model and save it under `version`; return the model."""
    model = synthetic_model(n_users, n_movies, k, seed=seed, **kwargs)
    model.save(store, ModelCard(version=version, algorithm="synthetic", params={"seed": seed, "k": k}))
    return model
