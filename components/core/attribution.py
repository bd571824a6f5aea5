"""The attribution rule: which viewing session a served list caused. One rule for the online
join (`components.online.join`, where it makes a hit) and for offline evaluation (where a watch
the platform's own lists caused is kept out of the targets: the model that served the list
would get credit for its own influence).

* Watch lines are grouped into viewing sessions: the minute lines of one user and one movie that
  follow each other with gaps of at most `SESSION_GAP`. A session starts at its first line.
* A session of user u for movie m that starts at t is credited to the most recent recommendation
  answered to u strictly before t, no older than the window (`DEFAULT_WINDOW`), whose result
  list contains m. Each session is credited to at most one recommendation; a session already
  running when the list was shown is not credited to it.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

DEFAULT_WINDOW = timedelta(minutes=30)
SESSION_GAP = timedelta(minutes=10)   # a longer pause between two minute lines starts a new viewing session


def listed_items(recs: pd.DataFrame, served: pd.Series | np.ndarray) -> tuple[pd.DataFrame, pd.Index]:
    """One row per (served answer, listed movie): rec_time, user_id, movie (code), rec_id (the
    answer's row label in `recs`), and the movie codes' index."""
    items = recs.loc[served, ["time", "user_id", "results"]].explode("results")
    items = items.rename(columns={"results": "movie_id", "time": "rec_time"})
    items["rec_id"] = items.index.astype("int64")
    # Integer movie codes: merge_asof groups int64 keys much faster than strings.
    codes, movies = pd.factorize(items["movie_id"].astype(str))
    items = items.assign(movie=codes.astype("int64"), user_id=items["user_id"].astype("int64"))
    return items, pd.Index(movies)


def watch_sessions(watches: pd.DataFrame, movies: pd.Index) -> pd.DataFrame:
    """Viewing sessions of listed movies: one row per (user, movie, run of minute lines with gaps <= SESSION_GAP).

    Columns: user_id, movie (code in `movies`), start, end, minutes (distinct minute numbers)."""
    codes = _codes_of(watches["movie_id"], movies) if len(watches) else np.empty(0, dtype=np.int64)
    w = watches.loc[codes >= 0, ["time", "user_id", "minute"]].assign(movie=codes[codes >= 0].astype("int64"))
    if w.empty:
        return pd.DataFrame({"user_id": pd.Series(dtype="int64"), "movie": pd.Series(dtype="int64"),
                             "start": pd.Series(dtype="datetime64[ns]"), "end": pd.Series(dtype="datetime64[ns]"),
                             "minutes": pd.Series(dtype="int64")})
    w = w.assign(user_id=w["user_id"].astype("int64")).sort_values(["user_id", "movie", "time"], kind="stable")
    same = (w["user_id"].to_numpy()[1:] == w["user_id"].to_numpy()[:-1]) & \
           (w["movie"].to_numpy()[1:] == w["movie"].to_numpy()[:-1])
    close = np.diff(w["time"].to_numpy()) <= np.timedelta64(SESSION_GAP)
    w["session"] = np.cumsum(np.concatenate([[True], ~(same & close)]))
    g = w.groupby("session", sort=False)
    return pd.DataFrame({"user_id": g["user_id"].first(), "movie": g["movie"].first(), "start": g["time"].min(),
                         "end": g["time"].max(), "minutes": g["minute"].nunique().astype("int64")}
                        ).reset_index(drop=True)


def _codes_of(movie_ids: pd.Series, movies: pd.Index) -> np.ndarray:
    """Each row's code in `movies` (-1: not listed); a categorical column is looked up once per
    category, not once per row (millions of watch lines)."""
    if isinstance(movie_ids.dtype, pd.CategoricalDtype):
        where = np.append(movies.get_indexer(movie_ids.cat.categories.astype(str)), -1)
        return where[movie_ids.cat.codes.to_numpy()]              # code -1 (missing) -> the appended -1
    return movies.get_indexer(movie_ids.astype(str))


def credit(sessions: pd.DataFrame, items: pd.DataFrame, window: timedelta = DEFAULT_WINDOW) -> pd.DataFrame:
    """Sessions matched to the latest recommendation of the same user listing the movie, strictly before
    the session's start and no older than `window`; columns of `sessions` plus rec_id."""
    if sessions.empty or items.empty:
        return sessions.assign(rec_id=pd.Series(dtype="int64")).iloc[0:0]
    right = items[["rec_time", "user_id", "movie", "rec_id"]].sort_values("rec_time", kind="stable")
    matched = pd.merge_asof(sessions.sort_values("start", kind="stable"), right, left_on="start",
                            right_on="rec_time", by=["user_id", "movie"], direction="backward",
                            tolerance=pd.Timedelta(window), allow_exact_matches=False)
    matched = matched.dropna(subset=["rec_id"])
    return matched.assign(rec_id=matched["rec_id"].astype("int64"))


def caused_pairs(recommendations: pd.DataFrame, watches: pd.DataFrame, window: timedelta = DEFAULT_WINDOW
                 ) -> pd.DataFrame:
    """The (user_id, movie_id) pairs with at least one viewing session a served list caused (status
    200, the movie in its results), by the rule above."""
    empty = pd.DataFrame({"user_id": pd.Series(dtype="int64"), "movie_id": pd.Series(dtype=str)})
    if recommendations.empty or watches.empty:
        return empty
    recs = recommendations.reset_index(drop=True)
    recs = recs.assign(time=recs["time"].astype(watches["time"].dtype))    # one time unit for merge_asof
    served = (recs["status"].astype(int) == 200) & (recs["results"].map(len) > 0)
    items, movies = listed_items(recs, served)
    credited = credit(watch_sessions(watches, movies), items, window)
    if credited.empty:
        return empty
    pairs = credited[["user_id", "movie"]].drop_duplicates()
    return pd.DataFrame({"user_id": pairs["user_id"].to_numpy(np.int64),
                         "movie_id": np.asarray(movies)[pairs["movie"].to_numpy()].astype(str)})
