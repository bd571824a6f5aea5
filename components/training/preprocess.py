"""Preprocess: event snapshots -> a `Dataset` split by time, with counts of what each step kept.

The split is by time, for every user at once (`split: time`, the default): one cutoff, train on
everything before it, validate on the window after it. A global cutoff means no model ever sees an
interaction that happened after one it is asked to predict, from any user (a per-user split leaks
the future through the other users' factors). `split: user_recent` holds out each user's newest
`valid_fraction` of events (or last `valid_days`) instead, the setting of the literature: on a
short log such as MovieLens 100k a global cutoff leaves only about a hundred users in the window,
too few to tell two models apart. Only users with history before their cutoff are validated; users and movies too sparse to learn (thresholds in params.yaml) leave the id maps
but their validation rows stay, with index -1, so the evaluation counts what the model cannot
know instead of hiding it.

Every step records in `dataset.stats` how many users, movies and interactions it kept and
dropped; the pipeline writes those numbers to the step's KFP metrics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.core.attribution import DEFAULT_WINDOW, caused_pairs
from components.core.params import section
from components.core.snapshots import read_events, snapshot_days
from components.core.store import ArtifactStore
from components.training.dataset import RATING_COLUMNS, Dataset, dense_enough, index_of

__all__ = ["Dataset", "prepare", "build_dataset", "from_ratings", "snapshot_hash"]


def prepare(store: ArtifactStore, params: dict | None = None) -> Dataset:
    """Read the rate and watch snapshots of `store` and build the dataset (params: the full params
    dict); the served recommendations from the validation window's days mark which of its watches
    the platform's own lists caused (`mark_caused`)."""
    return build_dataset(read_events(store, "rate", categorical=True), read_events(store, "watch", categorical=True),
                         params, recommendations=lambda since: recommendations_since(store, since))


def recommendations_since(store: ArtifactStore, since: pd.Timestamp) -> pd.DataFrame:
    """The served recommendations of the days that can cause a watch at or after `since`."""
    first = (since - pd.Timedelta(DEFAULT_WINDOW)).strftime("%Y-%m-%d")
    days = [d for d in snapshot_days(store).get("recommendation", []) if d >= first]
    return read_events(store, "recommendation", days) if days else pd.DataFrame()


def mark_caused(valid_w: pd.DataFrame, watches: pd.DataFrame, recommendations: pd.DataFrame) -> pd.DataFrame:
    """`valid_w` with `caused`: the (user, movie) had a viewing session in the validation window that
    a served list caused (`components.core.attribution`, the online join's rule). Such a watch
    is the platform's influence, not a taste the model should have found."""
    pairs = caused_pairs(recommendations, watches) if len(recommendations) else None
    if pairs is None or pairs.empty:
        return valid_w.assign(caused=False)
    keys = pd.MultiIndex.from_frame(pairs[["user_id", "movie_id"]])
    return valid_w.assign(caused=pd.MultiIndex.from_frame(valid_w[["user_id", "movie_id"]]).isin(keys))


def snapshot_hash(rates: pd.DataFrame, watches: pd.DataFrame) -> str:
    """A content hash of the input events, independent of how they were batched into files.

    Rows are hashed in (source, offset) order; a categorical column hashes as its values do."""
    h = hashlib.sha256()
    for kind, frame in (("rate", rates), ("watch", watches)):
        h.update(f"{kind}:{len(frame)}:{','.join(frame.columns)};".encode())
        if len(frame):
            order = np.lexsort((frame["offset"].to_numpy(), _sorted_codes(frame["source"])))
            for start in range(0, len(order), _HASH_ROWS):     # a slice of rows at a time: bounded memory
                rows = frame.iloc[order[start:start + _HASH_ROWS]]
                h.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
    return h.hexdigest()


_HASH_ROWS = 2_000_000


def build_dataset(rates: pd.DataFrame, watches: pd.DataFrame, params: dict | None = None,
                  recommendations: pd.DataFrame | Callable[[pd.Timestamp], pd.DataFrame] | None = None) -> Dataset:
    """The whole preprocess step on in-memory frames (the schemas of `components.core.snapshots`;
    `movie_id` and `source` may be categorical, as `prepare` reads them). `recommendations` (served
    answers, or a function of the validation window's first instant giving them) mark the
    validation watches the platform caused.

    Works on integer codes throughout: users and movies are numbered once (in id order), a
    (user, movie) pair is one int64 key, and the frames of the dataset are built at the end."""
    p = section(params, "preprocess")
    stats: dict[str, int | float] = {"events_rate": len(rates), "events_watch": len(watches)}
    if rates.empty:
        raise ValueError("no rate events in the snapshot: nothing to train on")
    digest = snapshot_hash(rates, watches)

    cutoff, in_train_r, in_train_w = _split(rates, watches, p)
    ids = _Ids.of(rates, watches)
    r_key, w_key = ids.keys(rates), ids.keys(watches)
    r_rows = _log_order(rates)                           # latest rating wins (in log order) on each side
    r_rows = r_rows[~pd.Series(r_key[r_rows] * 2 + in_train_r[r_rows]).duplicated(keep="last").to_numpy()]
    rating = rates["rating"].to_numpy().astype(np.float32)
    r_time = rates["time"].to_numpy()
    train_r = _Pairs.take(r_key, r_rows[in_train_r[r_rows]], rating, r_time)
    valid_r = _Pairs.take(r_key, r_rows[~in_train_r[r_rows]], rating, r_time)
    train_w = _watch_minutes(w_key, watches, np.flatnonzero(in_train_w), p)
    valid_w = _watch_minutes(w_key, watches, np.flatnonzero(~in_train_w), p)
    stats.update(train_rating_pairs=len(train_r), valid_rating_pairs=len(valid_r),
                 train_watch_pairs=len(train_w), valid_watch_pairs=len(valid_w),
                 duplicate_ratings_dropped=len(rates) - len(train_r) - len(valid_r))
    if not len(train_r):
        raise ValueError(f"no ratings before the validation cutoff {cutoff}: history too short for the split")

    pairs = pd.unique(np.concatenate([train_r.key, train_w.key]))   # rated or watched; hashing: np.unique sorts
    history = np.bincount(ids.user(pairs), minlength=len(ids.users)).astype(np.int64)
    user_ok, movie_ok = _filter(ids, pairs, train_r, p, stats)
    train_r = train_r.where(user_ok[ids.user(train_r.key)] & movie_ok[ids.movie(train_r.key)])
    train_w = train_w.where(user_ok[ids.user(train_w.key)] & movie_ok[ids.movie(train_w.key)])
    if not len(train_r):
        raise ValueError("every rating was filtered out: lower min_user_movies / min_movie_users")
    valid_r, valid_w = _validation(ids, valid_r, valid_w, history, p, stats)

    user_index = np.where(user_ok, np.cumsum(user_ok) - 1, -1).astype(np.int32)
    movie_index = np.where(movie_ok, np.cumsum(movie_ok) - 1, -1).astype(np.int32)
    frames = {name: _frame(ids, pairs, value, user_index, movie_index, history if valid else None)
              for name, pairs, value, valid in (("train_ratings", train_r, "rating", False),
                                                ("train_watches", train_w, "minutes", False),
                                                ("valid_ratings", valid_r, "rating", True),
                                                ("valid_watches", valid_w, "minutes", True))}
    if recommendations is not None:
        held_out = watches.iloc[np.flatnonzero(~in_train_w)]
        recs = (recommendations(held_out["time"].min()) if callable(recommendations) and len(held_out)
                else recommendations if not callable(recommendations) else pd.DataFrame())
        frames["valid_watches"] = mark_caused(frames["valid_watches"], held_out, recs)
        stats.update(valid_watch_pairs_caused=int(frames["valid_watches"]["caused"].sum()))
    ds = Dataset(user_ids=ids.users[user_ok], movie_ids=np.asarray(ids.movies[movie_ok], dtype=str), **frames,
                 cutoff=cutoff, snapshot_hash=digest, stats=stats, params={"preprocess": p})
    stats.update(users=ds.n_users, movies=ds.n_movies, train_ratings=len(ds.train_ratings),
                 train_watches=len(ds.train_watches), valid_ratings=len(ds.valid_ratings),
                 valid_watches=len(ds.valid_watches), seen_pairs=int(ds.seen_csr.nnz),
                 density=round(len(ds.train_ratings) / max(1, ds.n_users * ds.n_movies), 6),
                 valid_unknown_user_rows=int((ds.valid_ratings["u"] < 0).sum() + (ds.valid_watches["u"] < 0).sum()),
                 valid_unknown_movie_rows=int((ds.valid_ratings["i"] < 0).sum()
                                              + (ds.valid_watches["i"] < 0).sum()))
    return ds


@dataclass
class _Ids:
    """Every user and movie of the snapshot numbered in id order; a (user, movie) pair is the key
    user code * number of movies + movie code."""

    users: np.ndarray        # int64, ascending
    movies: np.ndarray       # str objects, ascending

    @classmethod
    def of(cls, rates: pd.DataFrame, watches: pd.DataFrame) -> _Ids:
        users = _distinct_ids(rates["user_id"].to_numpy(np.int64), watches["user_id"].to_numpy(np.int64))
        movies = np.unique(np.concatenate([_distinct(rates["movie_id"]), _distinct(watches["movie_id"])]))
        return cls(users, movies)

    def keys(self, frame: pd.DataFrame) -> np.ndarray:
        user = index_of(self.users, frame["user_id"].to_numpy(np.int64))   # every id is there
        user *= len(self.movies)
        user += _codes_in(frame["movie_id"], self.movies)
        return user

    def user(self, key: np.ndarray) -> np.ndarray:
        return key // len(self.movies)

    def movie(self, key: np.ndarray) -> np.ndarray:
        return key % len(self.movies)


@dataclass
class _Pairs:
    """One row per (user, movie) key: a value (rating or minutes) and a time."""

    key: np.ndarray
    value: np.ndarray
    time: np.ndarray

    @classmethod
    def take(cls, key: np.ndarray, rows: np.ndarray, value: np.ndarray, time: np.ndarray) -> _Pairs:
        return cls(key[rows], value[rows], time[rows])

    def where(self, mask: np.ndarray) -> _Pairs:
        return _Pairs(self.key[mask], self.value[mask], self.time[mask])

    def __len__(self) -> int:
        return len(self.key)


def _distinct_ids(*columns: np.ndarray) -> np.ndarray:
    """The distinct integer ids of the columns, ascending: marks in a table over their range when
    they are dense (`dense_enough`, as `index_of` decides; user ids are: 15M of them in 0.1 s where
    hashing took 1.2 s), else hashing."""
    columns = [c for c in columns if len(c)]
    if not columns:
        return np.empty(0, np.int64)
    low, high = min(int(c.min()) for c in columns), max(int(c.max()) for c in columns)
    if dense_enough(low, high, sum(len(c) for c in columns)):
        seen = np.zeros(high - low + 1, dtype=bool)
        for c in columns:
            seen[c - low] = True
        return np.flatnonzero(seen).astype(np.int64) + low
    return np.unique(np.concatenate([pd.unique(c) for c in columns]))


def _distinct(values: pd.Series) -> np.ndarray:
    """The distinct values of a str or categorical column, as an object array."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        used = np.bincount(values.cat.codes.to_numpy(), minlength=len(values.cat.categories)) > 0
        return np.asarray(values.cat.categories[used], dtype=object)
    return pd.unique(values.to_numpy(dtype=object)).astype(object)


def _codes_in(values: pd.Series, ordered: np.ndarray) -> np.ndarray:
    """Position of each value of a str or categorical column in `ordered` (which holds them all)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        where = np.searchsorted(ordered, np.asarray(values.cat.categories, dtype=object))
        return where[values.cat.codes.to_numpy()]
    codes, uniques = pd.factorize(values.to_numpy(dtype=object))
    return np.searchsorted(ordered, uniques.astype(object))[codes]


def _sorted_codes(values: pd.Series) -> np.ndarray:
    """Integer codes that sort as the values of a str or categorical column do."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        rank = np.argsort(np.argsort(np.asarray(values.cat.categories, dtype=object), kind="stable"))
        return rank[values.cat.codes.to_numpy()]
    return pd.factorize(values.to_numpy(dtype=object), sort=True)[0]


def _log_order(frame: pd.DataFrame) -> np.ndarray:
    """Row positions in (time, source, offset) order."""
    return np.lexsort((frame["offset"].to_numpy(), _sorted_codes(frame["source"]), frame["time"].to_numpy()))


def _watch_minutes(key: np.ndarray, watches: pd.DataFrame, rows: np.ndarray, p: dict) -> _Pairs:
    """One row per (user, movie): distinct minutes streamed and the last time (at least
    `min_watch_minutes` of them)."""
    if not len(rows):
        return _Pairs(np.empty(0, np.int64), np.empty(0, np.int32), watches["time"].to_numpy()[:0])
    minute = watches["minute"].to_numpy()[rows].astype(np.int64)
    low = int(minute.min())
    span = int(minute.max()) - low + 1
    # One sort of (pair key, minute) as a single int64 brings each pair's rows together, its
    # distinct minutes adjacent: far less memory and time than hashing the pairs (41M watch lines).
    both = key[rows] * span + (minute - low)
    del minute
    order = np.argsort(both)
    both = both[order]
    time = watches["time"].to_numpy()[rows][order]
    del order
    pair = both // span
    starts = np.flatnonzero(np.concatenate([[True], pair[1:] != pair[:-1]]))
    distinct = np.concatenate([[True], both[1:] != both[:-1]])
    del both
    n = np.add.reduceat(distinct.astype(np.int32), starts)
    last = np.maximum.reduceat(time.view(np.int64), starts).view(time.dtype)
    keep = n >= int(p["min_watch_minutes"])
    return _Pairs(pair[starts][keep], n[keep].astype(np.int32), last[keep])


def _filter(ids: _Ids, pairs: np.ndarray, train_r: _Pairs, p: dict, stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """Drop too-sparse movies and users, repeating until both thresholds hold; return which user
    and movie codes stay. Both count the distinct (user, movie) `pairs` rated or watched in the
    train period: a user who only watches is as learnable from watches as one who rates (counting
    only ratings dropped 69% of the users with history at 8,000 sessions a day, and the movies
    people watch but seldom rate)."""
    min_u, min_m = int(p["min_user_movies"]), int(p["min_movie_users"])
    n_users, n_movies = len(ids.users), len(ids.movies)
    pu, pm = ids.user(pairs), ids.movie(pairs)
    users = np.bincount(pu, minlength=n_users) > 0
    movies = np.bincount(pm, minlength=n_movies) > 0
    all_users, all_movies = int(users.sum()), int(movies.sum())
    for _ in range(50):
        movies_next = movies & (np.bincount(pm, minlength=n_movies) >= min_m)
        keep = movies_next[pm]
        pu, pm = pu[keep], pm[keep]
        users_next = users & (np.bincount(pu, minlength=n_users) >= min_u)
        keep = users_next[pu]
        pu, pm = pu[keep], pm[keep]
        if (users_next == users).all() and (movies_next == movies).all():
            break
        users, movies = users_next, movies_next
    kept_r = users[ids.user(train_r.key)] & movies[ids.movie(train_r.key)]
    stats.update(filter_users_in=all_users, filter_users_dropped=all_users - int(users.sum()),
                 filter_movies_in=all_movies, filter_movies_dropped=all_movies - int(movies.sum()),
                 filter_ratings_dropped=len(train_r) - int(kept_r.sum()),
                 filter_pairs_dropped=len(pairs) - len(pu))
    return users, movies


def _validation(ids: _Ids, valid_r: _Pairs, valid_w: _Pairs, history: np.ndarray, p: dict,
                stats: dict) -> tuple[_Pairs, _Pairs]:
    """Keep validation rows of users with history before the cutoff; optionally sample users (seeded)."""
    window = np.flatnonzero(np.bincount(ids.user(np.concatenate([valid_r.key, valid_w.key])),
                                        minlength=len(ids.users)))
    eligible_codes = window[history[window] > 0]
    eligible = ids.users[eligible_codes]
    if p.get("valid_max_users") is not None and len(eligible) > int(p["valid_max_users"]):
        rng = np.random.default_rng(int(p["seed"]))
        eligible = np.sort(rng.choice(eligible, size=int(p["valid_max_users"]), replace=False))
    keep = np.zeros(len(ids.users), dtype=bool)
    keep[np.searchsorted(ids.users, eligible)] = True
    out = [pairs.where(keep[ids.user(pairs.key)]) for pairs in (valid_r, valid_w)]
    stats.update(valid_window_users=len(window), valid_users=len(eligible),
                 valid_users_dropped_no_history=len(window) - len(eligible_codes),
                 valid_rows_dropped=len(valid_r) + len(valid_w) - len(out[0]) - len(out[1]))
    return out[0], out[1]


def _frame(ids: _Ids, pairs: _Pairs, value: str, user_index: np.ndarray, movie_index: np.ndarray,
           history: np.ndarray | None) -> pd.DataFrame:
    """One frame of the dataset, rows in (u, i, user_id, movie_id) order."""
    user, movie = ids.user(pairs.key), ids.movie(pairs.key)
    u, i = user_index[user], movie_index[movie]
    if len(u) and u.min() >= 0 and i.min() >= 0:  # indices grow with the codes: the key's order
        order = np.argsort(pairs.key, kind="stable")
    else:
        order = np.lexsort((movie, user, i, u))
    user, movie = user[order], movie[order]
    out = pd.DataFrame({"user_id": ids.users[user], "movie_id": ids.movies[movie], "u": u[order], "i": i[order],
                        value: pairs.value[order], "time": pairs.time[order]})
    if history is not None:
        out["history"] = history[user]
    return out


def _split(rates: pd.DataFrame, watches: pd.DataFrame, p: dict) -> tuple[str, np.ndarray, np.ndarray]:
    """The split: a description of the cutoff, and per rate and per watch event whether it trains.

    `time` (the default): one cutoff for everyone (`_cutoff`). `user_recent`: the same rule per
    user, over that user's own events: the newest `valid_fraction` of them (or their last
    `valid_days`) are held out, so every user with enough history is validated."""
    if p.get("split", "time") == "user_recent":
        users = np.concatenate([rates["user_id"].to_numpy(np.int64), watches["user_id"].to_numpy(np.int64)])
        times = np.concatenate([_micros(rates["time"]), _micros(watches["time"])])
        train = times < _user_cutoffs(users, times, p)
        return "per user", train[:len(rates)], train[len(rates):]
    cutoff = _cutoff(rates["time"], watches["time"], p)
    return (cutoff.isoformat(), (rates["time"] < cutoff).to_numpy(), (watches["time"] < cutoff).to_numpy())


def _micros(times: pd.Series) -> np.ndarray:
    return times.to_numpy().astype("datetime64[us]").view(np.int64)


def _user_cutoffs(users: np.ndarray, times: np.ndarray, p: dict) -> np.ndarray:
    """Per event, the first instant of its user's validation window (microseconds), by the rule of
    `_cutoff` applied to the user's events alone: the user's newest time minus `valid_days`, or the
    user's event time at quantile 1 - `valid_fraction` (the higher one; events at that time are held
    out). 0 days or a 0 fraction put everything in train."""
    order = np.lexsort((times, users))
    sorted_users, sorted_times = users[order], times[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    newest = sorted_times[starts + counts - 1]
    if p.get("valid_days") is not None:
        days = float(p["valid_days"])
        per_user = newest + 1 if days <= 0 else newest - int(round(days * 86_400_000_000))
    else:
        fraction = float(p["valid_fraction"])
        if fraction == 0.0:
            per_user = newest + 1
        else:
            # index ceil((1 - f) * (n - 1)) of the user's sorted times, as (n - 1) - floor(f * (n - 1))
            # so that 0.2 * 5 is 1, not 0.9999...
            held = np.floor(fraction * (counts - 1) + 1e-9).astype(np.int64)
            per_user = sorted_times[starts + counts - 1 - held]
    out = np.empty(len(order), dtype=np.int64)
    out[order] = np.repeat(per_user, counts)
    return out


def _cutoff(rate_times: pd.Series, watch_times: pd.Series, p: dict) -> pd.Timestamp:
    """The first instant of the validation window; 0 days or a 0 fraction put all history in train
    (the final fit of the model that is served, once the split has done its job)."""
    times = pd.concat([t for t in (rate_times, watch_times) if len(t)], ignore_index=True)
    newest = pd.Timestamp(times.max())
    if p.get("valid_days") is not None:
        days = float(p["valid_days"])
        return newest + pd.Timedelta(microseconds=1) if days <= 0 else newest - pd.Timedelta(days=days)
    fraction = float(p["valid_fraction"])
    if fraction == 0.0:
        return newest + pd.Timedelta(microseconds=1)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {fraction}")
    return pd.Timestamp(times.quantile(1.0 - fraction, interpolation="higher"))


def from_ratings(train: pd.DataFrame, valid: pd.DataFrame | None = None, snapshot: str = "") -> Dataset:
    """A dataset from an already split ratings table (user_id, movie_id, rating[, time]), no filters.

    For benchmarks and notebooks that bring their own split (e.g. MovieLens 80/20 at random);
    the pipeline itself always goes through `build_dataset`."""
    def frame(df: pd.DataFrame, history: bool) -> pd.DataFrame:
        out = pd.DataFrame({"user_id": df["user_id"].astype(np.int64).to_numpy(),
                            "movie_id": df["movie_id"].astype(str).to_numpy(),
                            "rating": df["rating"].astype(np.float32).to_numpy(),
                            "time": (df["time"] if "time" in df else pd.Series(pd.Timestamp(0), index=df.index))
                            .astype("datetime64[us]").to_numpy()})
        out["u"] = index_of(user_ids, out["user_id"].to_numpy()).astype(np.int32)
        out["i"] = index_of(movie_ids, out["movie_id"].to_numpy()).astype(np.int32)
        cols = RATING_COLUMNS + (["history"] if history else [])
        if history:
            out["history"] = out["user_id"].map(train.groupby("user_id").size()).fillna(0).astype(np.int64)
        return out[cols]

    user_ids = np.sort(train["user_id"].astype(np.int64).unique())
    movie_ids = np.sort(train["movie_id"].astype(str).unique())
    valid = valid if valid is not None else train.iloc[:0]
    empty = pd.DataFrame({"user_id": pd.Series(dtype=np.int64), "movie_id": pd.Series(dtype=str),
                          "u": pd.Series(dtype=np.int32), "i": pd.Series(dtype=np.int32),
                          "minutes": pd.Series(dtype=np.int32), "time": pd.Series(dtype="datetime64[us]")})
    return Dataset(user_ids=user_ids, movie_ids=movie_ids, train_ratings=frame(train, False),
                   train_watches=empty, valid_ratings=frame(valid, True),
                   valid_watches=empty.assign(history=pd.Series(dtype=np.int64)), snapshot_hash=snapshot,
                   stats={"users": len(user_ids), "movies": len(movie_ids), "train_ratings": len(train),
                          "valid_ratings": len(valid)})
