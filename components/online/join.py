"""Online evaluation: what users did after each served recommendation, per model version.

The predictor logs every answer as a recommendation line whose `server` ends in `@<version>`.
This module joins those answers with the same user's later watch and rate lines and turns them
into per-version figures, each with its sample size and a confidence interval
(`components.core.stats`).

Attribution rule (documented because it decides what a "hit" is; the session rule lives in
`components.core.attribution`, which offline evaluation uses too):

* Watch lines are grouped into viewing sessions: the minute lines of one user and one movie
  that follow each other with gaps of at most `SESSION_GAP`. A session starts at its first line.
* A session of user u for movie m that starts at t is credited to the most recent recommendation
  answered to u strictly before t, no older than `window`, whose result list contains m. Each
  session is credited to at most one recommendation. A session that was already running when
  the list was shown is not credited to it: showing a user the movie they are watching earns
  nothing, and reloading the home page during a movie does not make a hit.
* A recommendation is a hit if at least one session is credited to it. Its watched minutes are
  all the distinct minutes of its credited sessions, also those past the window (the session
  started inside it). A rate line is credited with the session of the same user and movie it
  follows (started before the rating, ended at most `window` before it).
* Only answers with status 200 and a non-empty list can be hits. Availability (status 200 and
  under 600 ms) and latency count every request; the canary analysis counts failed answers as
  misses (`components.online.canary`).
* An answer younger than `window` at the end of the data is still "open": its outcome is not
  known yet, so it is left out of hit rate, minutes and ratings (counted as `open`).

The join is one `merge_asof` by (user, movie) on time over the exploded result lists and the
sessions: no Python loop per event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta

import numpy as np
import pandas as pd

from components.core import stats
from components.core.attribution import (  # the one attribution rule, shared with offline evaluation
    DEFAULT_WINDOW,
    SESSION_GAP,  # noqa: F401  (re-exported: the session rule as the join documents it)
    credit,
    listed_items,
    watch_sessions,
)
from components.core.eventlog import file_path
from components.core.events import (
    ANSWER_BUDGET_MS,
    RateEvent,
    RecommendationEvent,
    WatchEvent,
    parse_line,
    server_version,
)

LATENCY_OBJECTIVE_MS = ANSWER_BUDGET_MS
KINDS = ("recommendation", "watch", "rate")
_COLUMNS = {
    "recommendation": ["time", "user_id", "server", "status", "results", "response_time_ms"],
    "watch": ["time", "user_id", "movie_id", "minute"],
    "rate": ["time", "user_id", "movie_id", "rating"],
}
_TYPES = {RecommendationEvent: "recommendation", WatchEvent: "watch", RateEvent: "rate"}


# -- inputs ------------------------------------------------------------------------------------

def frames_from_lines(lines: Iterable[str | bytes]) -> dict[str, pd.DataFrame]:
    """Parse event lines (rejections and account lines are ignored) into the three frames."""
    rows: dict[str, list] = {k: [] for k in KINDS}
    for line in lines:
        event = parse_line(line)
        kind = _TYPES.get(type(event))
        if kind == "recommendation":
            rows[kind].append((event.time, event.user_id, event.server, event.status, list(event.results),
                               event.response_time_ms))
        elif kind == "watch":
            rows[kind].append((event.time, event.user_id, event.movie_id, event.minute))
        elif kind == "rate":
            rows[kind].append((event.time, event.user_id, event.movie_id, event.rating))
    return {k: _frame(k, rows[k]) for k in KINDS}


def frames_from_log(path: str) -> dict[str, pd.DataFrame]:
    """The frames of a local event-log file (`file:PATH` or a plain path)."""
    with open(file_path(path), "rb") as f:
        return frames_from_lines(f)


def frames_from_store(store, last_days: int | None = None) -> dict[str, pd.DataFrame]:
    """The frames of the ingested snapshots in the store (only the newest `last_days` days if given)."""
    from components.core.snapshots import read_events, snapshot_days

    days = None
    if last_days is not None:
        days = sorted({d for ds in snapshot_days(store).values() for d in ds})[-last_days:]
    return {k: read_events(store, k, days)[_COLUMNS[k]] for k in KINDS}


def _frame(kind: str, rows: list) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=_COLUMNS[kind])
    frame["time"] = pd.to_datetime(frame["time"])
    frame["user_id"] = frame["user_id"].astype("int64")
    return frame


def last_time(frames: dict[str, pd.DataFrame]) -> pd.Timestamp | None:
    """The time of the newest event in the frames, None when they are all empty."""
    times = [f["time"].max() for f in frames.values() if len(f)]
    return max(times) if times else None


def concat_frames(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {k: pd.concat([a[k], b[k]], ignore_index=True) if len(a[k]) else b[k] for k in KINDS}


# -- the join ----------------------------------------------------------------------------------

def version_of(server: pd.Series) -> pd.Series:
    """The model version of each `<host>@<version>` (events.server_version, once per distinct server)."""
    if server.empty:
        return pd.Series([], index=server.index, dtype=object)
    codes, servers = pd.factorize(server.astype(str))     # a handful of servers: parse each once
    versions = np.array([server_version(s) for s in servers], dtype=object)
    return pd.Series(versions[codes], index=server.index, dtype=object)


def join(frames: dict[str, pd.DataFrame], window: timedelta = DEFAULT_WINDOW,
         end: pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per recommendation request with its outcome.

    Columns: time, user_id, version, status, response_time_ms, served (200 with a list), open
    (window not over at `end`, default the last event time), hit, minutes, ratings (list of credited
    ratings)."""
    recs = frames["recommendation"].sort_values("time", kind="stable").reset_index(drop=True)
    out = pd.DataFrame({"time": recs["time"], "user_id": recs["user_id"].astype("int64"),
                        "version": version_of(recs["server"]), "status": recs["status"].astype(int),
                        "response_time_ms": recs["response_time_ms"].astype(float)})
    out["served"] = (out["status"] == 200) & (recs["results"].map(len) > 0)
    if end is None:
        end = last_time(frames)
    out["open"] = out["time"] > end - pd.Timedelta(window) if end is not None else False

    items, movies = listed_items(recs, out["served"])
    sessions = watch_sessions(frames["watch"], movies)
    credited = credit(sessions, items, window)
    out["hit"] = out.index.isin(credited["rec_id"].unique())
    out["minutes"] = credited.groupby("rec_id")["minutes"].sum().reindex(out.index, fill_value=0).astype(int)
    rates = _rated_sessions(frames["rate"], movies, credited, window)
    cells: list[list] = [[] for _ in range(len(out))]
    for rec_id, rating in zip(rates["rec_id"], rates["rating"], strict=True):
        cells[rec_id].append(rating)
    out["ratings"] = cells
    return out


def _rated_sessions(rates: pd.DataFrame, movies: pd.Index, credited: pd.DataFrame, window: timedelta
                    ) -> pd.DataFrame:
    """Rate lines of credited sessions: the latest credited session of that user and movie started at or before
    the rating and ended at most `window` before it; columns time, rating, rec_id."""
    codes = movies.get_indexer(rates["movie_id"].astype(str)) if len(rates) else np.empty(0, dtype=np.int64)
    if credited.empty or not (codes >= 0).any():
        return pd.DataFrame({"time": [], "rating": [], "rec_id": pd.Series(dtype="int64")})
    left = rates.loc[codes >= 0, ["time", "user_id", "rating"]].assign(movie=codes[codes >= 0].astype("int64"))
    left = left.assign(user_id=left["user_id"].astype("int64")).sort_values("time", kind="stable")
    right = credited[["start", "end", "user_id", "movie", "rec_id"]].sort_values("start", kind="stable")
    matched = pd.merge_asof(left, right, left_on="time", right_on="start", by=["user_id", "movie"],
                            direction="backward").dropna(subset=["rec_id"])
    matched = matched[matched["time"] <= matched["end"] + pd.Timedelta(window)]
    return matched.assign(rec_id=matched["rec_id"].astype("int64"))


# -- figures -----------------------------------------------------------------------------------

def available(joined: pd.DataFrame) -> pd.Series:
    """Answers within the service objective (status 200 within LATENCY_OBJECTIVE_MS): what availability counts."""
    return (joined["status"] == 200) & (joined["response_time_ms"] <= LATENCY_OBJECTIVE_MS)


def closed(joined: pd.DataFrame) -> pd.Series:
    """Served answers whose window is over: the ones hit rate, minutes and ratings count."""
    return joined["served"] & ~joined["open"]


Personalized = Callable[[str, np.ndarray], np.ndarray | None]


def version_metrics(joined: pd.DataFrame, personalized: Personalized | None = None,
                    confidence: float = 0.95) -> dict[str, dict]:
    """Per version: every figure as an `Estimate` dict (value, n, low, high, method), plus counts.

    The hit rate's interval comes from per-user totals (delta method): one user's answers are
    correlated, so a per-request interval would be too narrow.

    `personalized(version, user_ids)` returns a boolean array (the user was known to that version,
    so the answer was personalized) or None when the version's model is unavailable."""
    result = {}
    for version, g in joined.groupby("version", sort=True):
        done, ok = g[closed(g)], available(g)
        ratings = np.concatenate([np.asarray(r, dtype=float) for r in done["ratings"]] or [np.empty(0)])
        lat = g["response_time_ms"].to_numpy() / 1000.0
        figures = {
            "hit_rate": _user_level_share(done, confidence),
            "watched_minutes_per_recommendation": stats.mean_ci(done["minutes"], confidence),
            "mean_rating_of_recommended": stats.mean_ci(ratings, confidence),
            "availability": stats.wilson(int(ok.sum()), len(g), confidence),
            "latency_p50_seconds": stats.quantile_ci(lat, 0.50, confidence),
            "latency_p95_seconds": stats.quantile_ci(lat, 0.95, confidence),
            "latency_p99_seconds": stats.quantile_ci(lat, 0.99, confidence),
        }
        served = g[g["served"]]
        known = personalized(version, served["user_id"].to_numpy()) if personalized else None
        figures["personalized_share"] = (stats.wilson(int(np.sum(known)), len(served), confidence)
                                         if known is not None else stats.Estimate(None, len(served), None,
                                                                                    None, "unavailable"))
        result[version] = {
            "requests": len(g), "served": len(served), "evaluated": len(done),
            "open": int((g["served"] & g["open"]).sum()), "hits": int(done["hit"].sum()),
            "watched_minutes": int(done["minutes"].sum()), "users": int(g["user_id"].nunique()),
            "first": g["time"].min().isoformat(), "last": g["time"].max().isoformat(),
            **{name: est.to_dict() for name, est in figures.items()},
        }
    return result


def _user_level_share(done: pd.DataFrame, confidence: float) -> stats.Estimate:
    """Hit rate of served answers with an interval that treats the user, not the request, as the unit."""
    per_user = done.groupby("user_id")["hit"].agg(["sum", "size"])
    share = stats.clustered_share(per_user["sum"].to_numpy(), per_user["size"].to_numpy())
    if share.value is not None and share.variance == 0:   # all hits or none: the Wilson bound says how sure
        return stats.wilson(int(done["hit"].sum()), len(done), confidence)
    return stats.clustered_interval(share, confidence)


def personalized_from_store(store) -> Personalized:
    """Whether each answer was personalized: the user is known to the version's model.

    The request line does not say whether the popularity fallback answered; the served model
    decides that deterministically (`FactorModel.recommend`: unknown user -> fallback), so the
    model's user ids answer it exactly. Versions whose model cannot be loaded give None."""
    cache: dict[str, np.ndarray | None] = {}

    def known(version: str, user_ids: np.ndarray) -> np.ndarray | None:
        if version not in cache:
            try:
                from components.core.model_artifact import load_array

                cache[version] = np.asarray(load_array(store, version, "user_ids"), dtype=np.int64)
            except Exception:
                cache[version] = None
        users = cache[version]
        return None if users is None else np.isin(user_ids, users)

    return known


_BUCKETS = ("1s", "5s", "15s", "1min", "5min", "15min", "1h", "6h", "1D")


def time_series(joined: pd.DataFrame, freq: str | None = None) -> pd.DataFrame:
    """Per version and time bucket: requests, hit rate (closed answers), availability, p95 latency."""
    if joined.empty:
        return pd.DataFrame(columns=["version", "time", "requests", "hit_rate", "availability", "p95_ms"])
    if freq is None:   # the finest bucket that keeps the plot to at most ~30 points per version
        span = joined["time"].max() - joined["time"].min()
        freq = next((f for f in _BUCKETS if span / pd.Timedelta(f) <= 30), _BUCKETS[-1])
    j = joined.assign(ok=available(joined), closed=closed(joined))
    j["closed_hit"] = j["hit"] & j["closed"]
    grouped = j.groupby(["version", pd.Grouper(key="time", freq=freq)])
    ts = grouped.agg(requests=("status", "size"), closed=("closed", "sum"), hits=("closed_hit", "sum"),
                     ok=("ok", "sum"), p95_ms=("response_time_ms", lambda s: s.quantile(0.95)))
    ts["hit_rate"] = ts["hits"] / ts["closed"].where(ts["closed"] > 0)
    ts["availability"] = ts["ok"] / ts["requests"]
    return ts.reset_index()
