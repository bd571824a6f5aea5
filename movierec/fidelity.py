"""How much a simulated event log looks like real data: the marginal statistics decisions depend on.

The canary analysis, the publish gate and the course-scale benchmark are all tested on simulated
worlds, so those worlds must look like the real one where it matters: how unequal users are
(ratings per user), how concentrated the catalogue's head is (ratings per movie), how ratings are
spread over the stars, how a user's events are spaced in time and how long a viewing lasts.

    sample = from_lines(open("events.log"))          # or from_ratings(read_ratings("u.data"))
    table = compare(sample, from_ratings(real))      # one row per statistic, with its tolerance

Scales differ (a 14-day world of 200k users against MovieLens' 943 users over 7 months), so
per-user quantiles are compared as ratios to their median, and the largest count as the quantile
a sample of the reference's size would show as its maximum (1 - 1/n_users): a world with more
users is not penalised for having a larger maximum. Distributions are compared with the
two-sample Kolmogorov-Smirnov distance on scale-free values (counts over their median or mean).
MovieLens holds no watches: session length is reported for the log alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from components.core.events import RateEvent, parse_line

RATIO_TOLERANCE = 0.25   # the bar: each headline statistic within 25% of the real one
# KS distance allowed per distribution: loose enough for sampling noise of a few thousand users,
# tight enough that the uniform sign-up world the simulator used to produce fails (0.4+).
KS_TOLERANCE = {"ratings_per_user": 0.3, "ratings_per_movie": 0.25, "rating_values": 0.1}


@dataclass
class Sample:
    """What the statistics need from a log or a ratings file."""

    rates: pd.DataFrame                                       # user_id, movie_id, rating, time (s)
    minute_counts: Counter = field(default_factory=Counter)   # watch lines per minute index
    watch_users: set = field(default_factory=set)             # users who started a movie

    @property
    def session_minutes(self) -> np.ndarray:
        """Length of every viewing session in minutes: sessions of at least m+1 minutes are exactly
        the watch lines of minute m (a session streams minutes 0, 1, ... one line each)."""
        if not self.minute_counts:
            return np.zeros(0, dtype=np.int64)
        top = max(self.minute_counts)
        at_least = np.array([self.minute_counts.get(m, 0) for m in range(top + 1)], dtype=np.int64)
        ended = at_least - np.append(at_least[1:], 0)
        return np.repeat(np.arange(1, top + 2), np.maximum(ended, 0))


def from_lines(lines: Iterable[str | bytes]) -> Sample:
    """A sample from event-log lines: rate lines parsed by the contract, watch lines only counted."""
    rows, minutes, watchers = [], Counter(), set()
    for line in lines:
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        if "GET /data/m/" in line:
            head, _, tail = line.rpartition("/")
            minute = tail.strip()[:-4]
            if minute.isdigit():
                minutes[int(minute)] += 1
                if minute == "0":
                    watchers.add(line.split(",", 2)[1])
        elif "GET /rate/" in line:
            event = parse_line(line)
            if isinstance(event, RateEvent):
                rows.append((event.user_id, event.movie_id, event.rating, event.time))
    rates = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "time"])
    rates["time"] = pd.to_datetime(rates["time"]).astype("int64") // 10**9 if len(rates) else 0
    return Sample(rates, minutes, watchers)


def from_ratings(ratings: pd.DataFrame) -> Sample:
    """A sample from MovieLens ratings (`components.ingest.movielens.read_ratings`)."""
    rates = pd.DataFrame({"user_id": ratings["user_id"].to_numpy(), "movie_id": ratings["movie_id"].to_numpy(),
                          "rating": np.floor(ratings["rating"].to_numpy(float) + 0.5).clip(1, 5),
                          "time": ratings["timestamp"].to_numpy(np.int64)})
    return Sample(rates)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0: all equal, towards 1: one holds everything)."""
    x = np.sort(np.asarray(counts, dtype=float))
    if len(x) == 0 or x.sum() == 0:
        return 0.0
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def top_share(counts: np.ndarray, fraction: float = 0.01) -> float:
    """Share of all counts on the top `fraction` of items (at least one item)."""
    x = np.sort(np.asarray(counts, dtype=float))[::-1]
    k = max(1, int(round(fraction * len(x))))
    return float(x[:k].sum() / x.sum()) if x.sum() else 0.0


def statistics(sample: Sample, reference_users: int | None = None) -> dict:
    """The scalar statistics and the scale-free distributions of one sample."""
    rates = sample.rates
    if rates.empty:
        raise ValueError("no rate lines: nothing to compare")
    per_user = rates.groupby("user_id").size().to_numpy()
    per_movie = rates.groupby("movie_id").size().to_numpy()
    median = float(np.median(per_user))
    n = reference_users or len(per_user)
    matched_max = float(np.quantile(per_user, 1 - 1 / n)) if n > 1 else float(per_user.max())
    ordered = rates.sort_values(["user_id", "time"], kind="stable")
    same_user = ordered["user_id"].to_numpy()[1:] == ordered["user_id"].to_numpy()[:-1]
    gaps = np.diff(ordered["time"].to_numpy(np.int64))[same_user]
    sessions = sample.session_minutes
    return {
        "scalars": {
            "users_with_ratings": int(len(per_user)), "movies_with_ratings": int(len(per_movie)),
            "ratings": int(len(rates)),
            "ratings_per_user_median": median,
            "ratings_per_user_p90": float(np.quantile(per_user, 0.9)),
            "ratings_per_user_p99": float(np.quantile(per_user, 0.99)),
            "ratings_per_user_max": float(per_user.max()),
            "ratings_per_user_max_size_matched": matched_max,
            "top1pct_movie_share": top_share(per_movie),
            "gini_movie_ratings": gini(per_movie),
            "mean_rating": float(rates["rating"].mean()),
            "watch_sessions": int(len(sessions)), "watch_minutes": int(sessions.sum()),
            "users_who_watched": len(sample.watch_users),
            "session_minutes_median": float(np.median(sessions)) if len(sessions) else None,
        },
        "distributions": {
            "ratings_per_user": per_user / median,
            "ratings_per_movie": per_movie / per_movie.mean(),
            "rating_values": rates["rating"].to_numpy(float),
            "seconds_between_ratings": gaps[gaps > 0],
            "session_minutes": sessions,
        },
    }


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    return float(ks_2samp(a, b).statistic) if len(a) and len(b) else float("nan")


@dataclass
class Row:
    statistic: str
    simulated: float
    real: float | None
    distance: float | None         # |simulated / real - 1| for ratios, the KS statistic for distributions
    tolerance: float | None        # None: reported, not checked
    kind: str                      # "ratio" or "ks"

    @property
    def passed(self) -> bool | None:
        if self.tolerance is None or self.distance is None:
            return None
        return bool(self.distance <= self.tolerance)


def compare(simulated: dict, real: dict) -> list[Row]:
    """One row per statistic: the issue's headline figures first, then the distributions."""
    s, r = simulated["scalars"], real["scalars"]
    rows = []
    for name, key in (("ratings per user p90 / median", "ratings_per_user_p90"),
                      ("ratings per user p99 / median", "ratings_per_user_p99"),
                      ("ratings per user max / median (size-matched)", "ratings_per_user_max_size_matched")):
        a, b = s[key] / s["ratings_per_user_median"], r[key] / r["ratings_per_user_median"]
        rows.append(Row(name, a, b, abs(a / b - 1), RATIO_TOLERANCE, "ratio"))
    for name, key in (("share of ratings on the top 1% of movies", "top1pct_movie_share"),
                      ("Gini of movie popularity (ratings)", "gini_movie_ratings"),
                      ("mean rating", "mean_rating")):
        rows.append(Row(name, s[key], r[key], abs(s[key] / r[key] - 1), RATIO_TOLERANCE, "ratio"))
    sd, rd = simulated["distributions"], real["distributions"]
    for name, key in (("KS ratings per user (/ median)", "ratings_per_user"),
                      ("KS ratings per movie (/ mean)", "ratings_per_movie"),
                      ("KS rating values (1-5 stars)", "rating_values")):
        rows.append(Row(name, float("nan"), None, _ks(sd[key], rd[key]), KS_TOLERANCE[key], "ks"))
    gaps_s, gaps_r = sd["seconds_between_ratings"], rd["seconds_between_ratings"]
    rows.append(Row("KS log time between a user's ratings", float(np.median(gaps_s)) if len(gaps_s) else float("nan"),
                    float(np.median(gaps_r)) if len(gaps_r) else None,
                    _ks(np.log10(gaps_s), np.log10(gaps_r)), None, "ks"))
    return rows


def rows_as_dicts(rows: list[Row]) -> list[dict]:
    def clean(x):
        return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), 4)

    return [{"statistic": r.statistic, "simulated": clean(r.simulated), "real": clean(r.real),
             "distance": clean(r.distance), "kind": r.kind, "tolerance": r.tolerance, "passed": r.passed}
            for r in rows]
