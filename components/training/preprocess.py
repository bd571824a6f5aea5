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

import numpy as np
import pandas as pd

from components.core.params import section
from components.core.snapshots import read_events
from components.core.store import ArtifactStore
from components.training.dataset import RATING_COLUMNS, WATCH_COLUMNS, Dataset, index_of

__all__ = ["Dataset", "prepare", "build_dataset", "from_ratings", "snapshot_hash"]


def prepare(store: ArtifactStore, params: dict | None = None) -> Dataset:
    """Read the rate and watch snapshots of `store` and build the dataset (params: the full params dict)."""
    return build_dataset(read_events(store, "rate"), read_events(store, "watch"), params)


def snapshot_hash(rates: pd.DataFrame, watches: pd.DataFrame) -> str:
    """A content hash of the input events, independent of how they were batched into files."""
    h = hashlib.sha256()
    for kind, frame in (("rate", rates), ("watch", watches)):
        frame = frame.sort_values(["source", "offset"], kind="stable")
        h.update(f"{kind}:{len(frame)}:{','.join(frame.columns)};".encode())
        if len(frame):
            h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def build_dataset(rates: pd.DataFrame, watches: pd.DataFrame, params: dict | None = None) -> Dataset:
    """The whole preprocess step on in-memory frames (the schemas of `components.core.snapshots`)."""
    p = section(params, "preprocess")
    stats: dict[str, int | float] = {"events_rate": len(rates), "events_watch": len(watches)}
    if rates.empty:
        raise ValueError("no rate events in the snapshot: nothing to train on")
    digest = snapshot_hash(rates, watches)

    cutoff, in_train_r, in_train_w = _split(rates, watches, p)
    train_r, valid_r = _latest_ratings(rates[in_train_r]), _latest_ratings(rates[~in_train_r])
    train_w, valid_w = _watch_minutes(watches[in_train_w], p), _watch_minutes(watches[~in_train_w], p)
    stats.update(train_rating_pairs=len(train_r), valid_rating_pairs=len(valid_r),
                 train_watch_pairs=len(train_w), valid_watch_pairs=len(valid_w),
                 duplicate_ratings_dropped=len(rates) - len(train_r) - len(valid_r))
    if train_r.empty:
        raise ValueError(f"no ratings before the validation cutoff {cutoff}: history too short for the split")

    history = _history(train_r, train_w)
    users, movies = _filter(train_r, train_w, p, stats)
    train_r = train_r[train_r["user_id"].isin(users) & train_r["movie_id"].isin(movies)]
    train_w = train_w[train_w["user_id"].isin(users) & train_w["movie_id"].isin(movies)]
    if train_r.empty:
        raise ValueError("every rating was filtered out: lower min_user_ratings / min_movie_ratings")

    user_ids = np.sort(np.asarray(users, dtype=np.int64))
    movie_ids = np.sort(np.asarray(movies, dtype=str))
    valid_r, valid_w = _validation(valid_r, valid_w, history, p, stats)
    ds = Dataset(user_ids=user_ids, movie_ids=movie_ids, train_ratings=train_r, train_watches=train_w,
                 valid_ratings=valid_r, valid_watches=valid_w, cutoff=cutoff,
                 snapshot_hash=digest, stats=stats, params={"preprocess": p})
    for name, cols in (("train_ratings", RATING_COLUMNS), ("train_watches", WATCH_COLUMNS),
                       ("valid_ratings", RATING_COLUMNS + ["history"]),
                       ("valid_watches", WATCH_COLUMNS + ["history"])):
        frame = getattr(ds, name).copy()
        frame["u"] = ds.user_index(frame["user_id"].to_numpy()).astype(np.int32)
        frame["i"] = ds.movie_index(frame["movie_id"].to_numpy()).astype(np.int32)
        setattr(ds, name, frame[cols].sort_values(["u", "i", "user_id", "movie_id"]).reset_index(drop=True))
    stats.update(users=ds.n_users, movies=ds.n_movies, train_ratings=len(ds.train_ratings),
                 train_watches=len(ds.train_watches), valid_ratings=len(ds.valid_ratings),
                 valid_watches=len(ds.valid_watches), seen_pairs=int(ds.seen_csr.nnz),
                 density=round(len(ds.train_ratings) / max(1, ds.n_users * ds.n_movies), 6),
                 valid_unknown_user_rows=int((ds.valid_ratings["u"] < 0).sum() + (ds.valid_watches["u"] < 0).sum()),
                 valid_unknown_movie_rows=int((ds.valid_ratings["i"] < 0).sum()
                                              + (ds.valid_watches["i"] < 0).sum()))
    return ds


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


def _latest_ratings(rates: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, movie): the most recent rating (log order breaks time ties)."""
    latest = rates.sort_values(["time", "source", "offset"], kind="stable").drop_duplicates(
        ["user_id", "movie_id"], keep="last")
    return pd.DataFrame({"user_id": latest["user_id"].astype(np.int64).to_numpy(),
                         "movie_id": latest["movie_id"].astype(str).to_numpy(),
                         "rating": latest["rating"].astype(np.float32).to_numpy(),
                         "time": latest["time"].to_numpy()})


def _watch_minutes(watches: pd.DataFrame, p: dict) -> pd.DataFrame:
    """One row per (user, movie): distinct minutes streamed and the last time."""
    if watches.empty:
        return pd.DataFrame({"user_id": pd.Series(dtype=np.int64), "movie_id": pd.Series(dtype=str),
                             "minutes": pd.Series(dtype=np.int32), "time": pd.Series(dtype="datetime64[us]")})
    g = watches.groupby(["user_id", "movie_id"], sort=True)
    out = pd.DataFrame({"minutes": g["minute"].nunique().astype(np.int32), "time": g["time"].max()}).reset_index()
    out = out[out["minutes"] >= int(p["min_watch_minutes"])]
    out["user_id"] = out["user_id"].astype(np.int64)
    out["movie_id"] = out["movie_id"].astype(str)
    return out[["user_id", "movie_id", "minutes", "time"]].reset_index(drop=True)


def _history(train_r: pd.DataFrame, train_w: pd.DataFrame) -> pd.Series:
    pairs = pd.concat([train_r[["user_id", "movie_id"]], train_w[["user_id", "movie_id"]]]).drop_duplicates()
    return pairs.groupby("user_id").size()


def _filter(train_r: pd.DataFrame, train_w: pd.DataFrame, p: dict, stats: dict) -> tuple[list, list]:
    """Drop too-sparse movies and users (by train ratings), repeating until both thresholds hold."""
    min_u, min_m = int(p["min_user_ratings"]), int(p["min_movie_ratings"])
    all_users = set(train_r["user_id"]) | set(train_w["user_id"])
    all_movies = set(train_r["movie_id"]) | set(train_w["movie_id"])
    users, movies, r = set(all_users), set(all_movies), train_r
    for _ in range(50):
        per_movie = r.groupby("movie_id").size()
        movies_next = {m for m in movies if per_movie.get(m, 0) >= min_m}
        r = r[r["movie_id"].isin(movies_next)]
        per_user = r.groupby("user_id").size()
        users_next = {u for u in users if per_user.get(u, 0) >= min_u}
        r = r[r["user_id"].isin(users_next)]
        if users_next == users and movies_next == movies:
            break
        users, movies = users_next, movies_next
    stats.update(filter_users_in=len(all_users), filter_users_dropped=len(all_users) - len(users),
                 filter_movies_in=len(all_movies), filter_movies_dropped=len(all_movies) - len(movies),
                 filter_ratings_dropped=len(train_r) - len(r))
    return sorted(users), sorted(movies)


def _validation(valid_r: pd.DataFrame, valid_w: pd.DataFrame, history: pd.Series, p: dict,
                stats: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep validation rows of users with history before the cutoff; optionally sample users (seeded)."""
    window_users = set(valid_r["user_id"]) | set(valid_w["user_id"])
    eligible = np.array(sorted(u for u in window_users if u in history.index), dtype=np.int64)
    if p.get("valid_max_users") is not None and len(eligible) > int(p["valid_max_users"]):
        rng = np.random.default_rng(int(p["seed"]))
        eligible = np.sort(rng.choice(eligible, size=int(p["valid_max_users"]), replace=False))
    keep = set(eligible.tolist())
    out = []
    for frame in (valid_r, valid_w):
        frame = frame[frame["user_id"].isin(keep)].copy()
        frame["history"] = frame["user_id"].map(history).astype(np.int64)
        out.append(frame)
    stats.update(valid_window_users=len(window_users), valid_users=len(keep),
                 valid_users_dropped_no_history=len(window_users) - len(set(history.index) & window_users),
                 valid_rows_dropped=len(valid_r) + len(valid_w) - len(out[0]) - len(out[1]))
    return out[0], out[1]


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
