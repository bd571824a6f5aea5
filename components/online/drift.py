"""Input drift: are the users asking and the movies watched still like the training data's?

The reference distribution is the served model's own training data, read from the artifact
(`FactorModel.seen_indptr` / `seen_indices`: what each user watched or rated in training):

* users: training users are cut into 10 bins holding equal shares of training activity (from the
  heaviest users to the lightest). If traffic looks like training, each bin receives about 10%
  of the requests from known users. A shift towards light or heavy users moves the shares.
* movies: training movies are cut the same way by how often they were watched; watch lines of
  known movies should fall 10% per bin.

The score per feature is the population stability index (PSI) between the expected and the
observed bin shares: < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant drift (the alert
threshold). Users and movies the model has never seen are not drift of the known population but
growth; their share is reported beside the score (`unknown_share`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.core.model_artifact import FactorModel
from components.training.dataset import index_of

N_BINS = 10
EPS = 1e-4


def psi(expected: np.ndarray, observed: np.ndarray) -> float:
    """Population stability index of two share vectors (smoothed so empty bins stay finite)."""
    e = np.clip(np.asarray(expected, float), EPS, None)
    o = np.clip(np.asarray(observed, float), EPS, None)
    e, o = e / e.sum(), o / o.sum()
    return float(np.sum((o - e) * np.log(o / e)))


def _equal_mass_bins(counts: np.ndarray, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Bin of every item so that each bin holds about the same share of the counts; and those shares."""
    order = np.argsort(-counts, kind="stable")
    cum = np.cumsum(counts[order]) / max(counts.sum(), 1)
    bins_sorted = np.minimum((np.concatenate([[0.0], cum[:-1]]) * n_bins).astype(int), n_bins - 1)
    bins = np.empty(len(counts), dtype=int)
    bins[order] = bins_sorted
    expected = np.bincount(bins, weights=counts, minlength=n_bins) / max(counts.sum(), 1)
    return bins, expected


def _score(index: np.ndarray, counts: np.ndarray) -> dict:
    """PSI of observed item indices (-1 = unknown) against the training counts per item."""
    known = index[index >= 0]
    result = {"n": int(index.size), "unknown_share": float((index < 0).mean()) if index.size else None}
    if known.size == 0 or counts.sum() == 0:   # nothing to compare (or no training history kept)
        return {**result, "psi": None}
    bins, expected = _equal_mass_bins(counts)
    observed = np.bincount(bins[known], minlength=N_BINS) / known.size
    return {**result, "psi": psi(expected, observed)}


def input_drift(model: FactorModel, recommendations: pd.DataFrame, watches: pd.DataFrame) -> dict:
    """Drift of requested users and watched movies against the model's training data."""
    user_counts = np.diff(model.seen_indptr).astype(float)
    movie_counts = np.bincount(model.seen_indices, minlength=model.n_movies).astype(float)
    users = recommendations["user_id"].to_numpy(dtype=np.int64)
    user_index = index_of(model.user_ids, users)
    return {"users": _score(user_index, user_counts),
            "movies": _score(model.movie_index(watches["movie_id"].astype(str)), movie_counts)}
