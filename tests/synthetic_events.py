"""Small synthetic rate/watch frames with real low-rank structure, shaped like event snapshots.

Users have hidden tastes (rank-`rank` factors plus a movie quality bias); ratings are those
tastes rounded to 1-5 with noise, spread over `days` days, so a time split and a learnable
signal both exist. Deterministic by seed; small enough for unit tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_events(n_users: int = 60, n_movies: int = 40, per_user: int = 18, rank: int = 2,
                     days: int = 30, noise: float = 0.3, watch_share: float = 0.5,
                     seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 1.0, (n_users, rank))
    q = rng.normal(0, 1.0, (n_movies, rank))
    quality = rng.normal(0, 0.6, n_movies)
    popularity = np.exp(rng.normal(0, 1.0, n_movies))
    popularity /= popularity.sum()
    start = pd.Timestamp("2026-01-01")
    rates, watches = [], []
    offset = 0
    for u in range(n_users):
        movies = rng.choice(n_movies, size=min(per_user, n_movies), replace=False, p=popularity)
        times = np.sort(rng.uniform(0, days * 86400, len(movies)))
        for m, t in zip(movies, times, strict=False):
            when = start + pd.Timedelta(seconds=float(t))
            slug = f"movie+{m:03d}"
            true = 3.0 + quality[m] + p[u] @ q[m] * 0.8
            rating = int(np.clip(np.rint(true + rng.normal(0, noise)), 1, 5))
            if rng.random() < watch_share:
                for minute in range(int(rng.integers(1, 6))):
                    watches.append((when + pd.Timedelta(minutes=minute), 1000 + u, slug, minute, "syn", offset))
                    offset += 1
            rates.append((when + pd.Timedelta(minutes=10), 1000 + u, slug, rating, "syn", offset))
            offset += 1
    rate_df = pd.DataFrame(rates, columns=["time", "user_id", "movie_id", "rating", "source", "offset"])
    watch_df = pd.DataFrame(watches, columns=["time", "user_id", "movie_id", "minute", "source", "offset"])
    rate_df["time"] = rate_df["time"].astype("datetime64[us]")
    watch_df["time"] = watch_df["time"].astype("datetime64[us]")
    rate_df["rating"] = rate_df["rating"].astype(np.int8)
    watch_df["minute"] = watch_df["minute"].astype(np.int32)
    return (rate_df.sort_values("time", kind="stable").reset_index(drop=True),
            watch_df.sort_values("time", kind="stable").reset_index(drop=True))
