"""The attribution rule on small hand-made logs: sessions by the gap rule, credit to the latest
list shown strictly before a session, and the same answer whether movie ids are strings or
categoricals (as preprocess reads millions of watch lines)."""

from __future__ import annotations

import pandas as pd

from components.core.attribution import SESSION_GAP, caused_pairs, watch_sessions

T0 = pd.Timestamp("2026-03-02T10:00:00")


def minutes(user: int, movie: str, start: pd.Timestamp, n: int) -> list[dict]:
    return [{"time": start + pd.Timedelta(minutes=i), "user_id": user, "movie_id": movie, "minute": i}
            for i in range(n)]


def logs():
    watches = pd.DataFrame(
        minutes(1, "a", T0 + pd.Timedelta(minutes=5), 3)                       # caused by the list at T0
        + minutes(1, "a", T0 + pd.Timedelta(minutes=5 + 3) + SESSION_GAP * 2, 2)  # a second session, later
        + minutes(2, "b", T0 - pd.Timedelta(minutes=1), 4)                     # already running at the list
        + minutes(3, "c", T0 + pd.Timedelta(minutes=1), 2)                     # not listed for user 3
        + minutes(3, "z", T0 + pd.Timedelta(minutes=2), 2))                    # never listed to anyone
    recs = pd.DataFrame({"time": [T0, T0, T0], "user_id": [1, 2, 3], "status": [200, 200, 200],
                         "results": [("a", "c"), ("b",), ("a",)]})
    return watches, recs


def test_sessions_split_on_long_gaps_and_credit_goes_to_lists_shown_before():
    watches, recs = logs()
    items_movies = pd.Index(["a", "c", "b"])
    sessions = watch_sessions(watches, items_movies)
    assert sorted(zip(sessions["user_id"], sessions["movie"], sessions["minutes"], strict=True)) == \
        [(1, 0, 2), (1, 0, 3), (2, 2, 4), (3, 1, 2)]
    assert caused_pairs(recs, watches).to_dict("list") == {"user_id": [1], "movie_id": ["a"]}


def test_categorical_movie_ids_give_what_strings_give():
    watches, recs = logs()
    missing = pd.DataFrame({"time": [T0], "user_id": [1], "movie_id": [None], "minute": [0]})   # no movie id
    categorical = pd.concat([watches, missing], ignore_index=True)
    categorical["movie_id"] = pd.Categorical(categorical["movie_id"], categories=["z", "c", "b", "a", "q"])
    assert categorical["movie_id"].cat.codes.iloc[-1] == -1
    movies = pd.Index(["a", "c", "b"])
    expected = watch_sessions(watches, movies)
    pd.testing.assert_frame_equal(watch_sessions(categorical, movies), expected)
    pd.testing.assert_frame_equal(caused_pairs(recs, categorical), caused_pairs(recs, watches))
