"""Preprocess: latest rating wins, watch minutes, filters, a leak-free time split, provenance, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from components.core.events import RateEvent, WatchEvent
from components.core.params import DEFAULTS, load_params
from components.core.store import LocalStore
from components.training.dataset import Dataset
from components.training.preprocess import build_dataset, prepare, snapshot_hash
from tests.snapshot_batches import write_batch
from tests.synthetic_events import synthetic_events

T0 = pd.Timestamp("2026-03-01")
LOOSE = {"preprocess": {"min_user_movies": 1, "min_movie_users": 1, "valid_days": 5}}


def validation_history(ds) -> dict[int, int]:
    """Per validation user, how many distinct movies they rated or watched before the cutoff."""
    frame = pd.concat([ds.valid_ratings[["user_id", "history"]],
                       ds.valid_watches[["user_id", "history"]]], ignore_index=True)
    return {int(u): int(h) for u, h in frame.drop_duplicates("user_id").itertuples(index=False)}


def validation_targets(ds) -> dict[int, set[str]]:
    """Per validation user, the movies rated or watched in the window that the user had not rated
    or watched in the train period (the split's ground truth, any rating)."""
    pairs = pd.concat([ds.valid_ratings[["user_id", "movie_id"]], ds.valid_watches[["user_id", "movie_id"]]])
    seen = pd.concat([ds.train_ratings[["user_id", "movie_id"]], ds.train_watches[["user_id", "movie_id"]]])
    seen_keys = set(zip(seen["user_id"].tolist(), seen["movie_id"].tolist(), strict=True))
    targets: dict[int, set[str]] = {}
    for user, movie in zip(pairs["user_id"].tolist(), pairs["movie_id"].tolist(), strict=True):
        if (user, movie) not in seen_keys:
            targets.setdefault(int(user), set()).add(movie)
    return targets


def frames(rates: list[tuple], watches: list[tuple] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(day, user, movie, rating) and (day, user, movie, minute) rows as snapshot-shaped frames."""
    r = pd.DataFrame([(T0 + pd.Timedelta(days=d), u, m, v, "t", n) for n, (d, u, m, v) in enumerate(rates)],
                     columns=["time", "user_id", "movie_id", "rating", "source", "offset"])
    w = pd.DataFrame([(T0 + pd.Timedelta(days=d), u, m, x, "t", 1000 + n) for n, (d, u, m, x) in enumerate(watches)],
                     columns=["time", "user_id", "movie_id", "minute", "source", "offset"])
    return r, w


def test_latest_rating_wins_and_watch_minutes_are_distinct():
    r, w = frames([(0, 1, "a", 2), (1, 1, "a", 5), (1, 1, "b", 3), (20, 1, "c", 4)],
                  [(0, 1, "a", 0), (0.001, 1, "a", 0), (0.002, 1, "a", 1), (0, 1, "c", 7)])
    ds = build_dataset(r, w, {"preprocess": {**LOOSE["preprocess"], "min_movie_users": 0}})
    a = ds.train_ratings.set_index("movie_id")
    assert a.loc["a", "rating"] == 5
    assert ds.stats["duplicate_ratings_dropped"] == 1
    minutes = ds.train_watches.set_index("movie_id")["minutes"]
    assert minutes["a"] == 2 and minutes["c"] == 1      # "c" only watched: a movie all the same
    assert build_dataset(r, w, LOOSE).movie_ids.tolist() == ["a", "b", "c"]


def test_split_is_by_time_and_validates_only_users_with_history():
    r, w = frames([(0, 1, "a", 4), (1, 1, "b", 3), (2, 2, "a", 5), (3, 2, "b", 2),
                   (20, 1, "c", 4), (20, 2, "c", 1), (21, 3, "a", 3)])
    ds = build_dataset(r, w, LOOSE)
    cutoff = pd.Timestamp(ds.cutoff)
    assert (ds.train_ratings["time"] < cutoff).all()
    assert (ds.valid_ratings["time"] >= cutoff).all()
    assert set(ds.valid_ratings["user_id"]) == {1, 2}          # user 3 has no history before the cutoff
    assert ds.stats["valid_users_dropped_no_history"] == 1
    assert set(validation_targets(ds)) == {1, 2}
    assert validation_history(ds) == {1: 2, 2: 2}
    # movie "c" first appears in the validation window: kept, but unknown to the model
    assert (ds.valid_ratings["i"] == -1).all() and ds.stats["valid_unknown_movie_rows"] == 2


def test_fraction_split_puts_the_newest_events_in_validation():
    rates, watches = synthetic_events(seed=2)
    ds = build_dataset(rates, watches, {"preprocess": {"valid_fraction": 0.25}})
    assert ds.train_ratings["time"].max() < ds.valid_ratings["time"].min()
    share = ds.stats["valid_rating_pairs"] / (ds.stats["valid_rating_pairs"] + ds.stats["train_rating_pairs"])
    assert 0.15 < share < 0.35


def test_sparse_users_and_movies_are_filtered_and_counted():
    r, w = frames([(0, 1, "a", 4), (0, 1, "b", 3), (0, 2, "a", 5), (0, 2, "b", 2),
                   (0, 3, "a", 4), (0, 3, "z", 5),     # z: one rating -> dropped; then user 3 has 1 -> dropped
                   (20, 3, "b", 4), (20, 1, "a", 1)])
    ds = build_dataset(r, w, {"preprocess": {"min_user_movies": 2, "min_movie_users": 2, "valid_days": 5}})
    assert ds.user_ids.tolist() == [1, 2] and ds.movie_ids.tolist() == ["a", "b"]
    s = ds.stats
    assert (s["filter_users_dropped"], s["filter_movies_dropped"], s["filter_ratings_dropped"]) == (1, 1, 2)
    # user 3 had history, so its validation row stays, marked unknown (-1)
    row = ds.valid_ratings[ds.valid_ratings["user_id"] == 3].iloc[0]
    assert row["u"] == -1 and row["i"] == ds.movie_index(["b"])[0]


def test_filters_count_movies_watched_as_well_as_rated():
    # user 2 never rates but watched two movies; movie "w" is only ever watched, by two users;
    # user 4 watched one movie, "z", which nobody else rated or watched
    r, w = frames([(0, 1, "a", 4), (0, 1, "b", 3), (0, 3, "a", 5), (20, 2, "a", 4)],
                  [(0, 2, "a", 0), (0, 2, "w", 0), (0, 3, "w", 1), (0, 4, "z", 0)])
    ds = build_dataset(r, w, {"preprocess": {"min_user_movies": 2, "min_movie_users": 2, "valid_days": 5}})
    # "b" and "z" have one user each -> dropped; then users 1 and 4 have one movie -> dropped;
    # "a" keeps users 2 and 3 (one watched, one rated it); user 2 is known from watches alone
    assert ds.user_ids.tolist() == [2, 3] and ds.movie_ids.tolist() == ["a", "w"]
    assert (ds.stats["filter_users_dropped"], ds.stats["filter_movies_dropped"]) == (2, 2)
    assert ds.watch_csr.toarray().tolist() == [[1, 1], [0, 1]]
    row = ds.valid_ratings[ds.valid_ratings["user_id"] == 2].iloc[0]
    assert row["u"] == 0


def test_matrices_and_id_maps():
    r, w = frames([(0, 20, "b", 4), (0, 10, "a", 3), (0, 10, "b", 5), (20, 10, "a", 2)], [(0, 20, "a", 0)])
    ds = build_dataset(r, w, LOOSE)
    assert ds.user_ids.tolist() == [10, 20] and ds.movie_ids.tolist() == ["a", "b"]
    assert ds.ratings_csr.toarray().tolist() == [[3, 5], [0, 4]]
    assert ds.watch_csr.toarray().tolist() == [[0, 0], [1, 0]]
    assert ds.seen_csr.toarray().tolist() == [[1, 1], [1, 1]]
    assert ds.movie_popularity().tolist() == [2, 2]
    assert ds.user_index([20, 99]).tolist() == [1, -1]


def test_snapshot_hash_depends_on_content_not_order():
    rates, watches = synthetic_events(n_users=10, seed=3)
    h = snapshot_hash(rates, watches)
    assert h == snapshot_hash(rates.sample(frac=1, random_state=1), watches[::-1])
    changed = rates.copy()
    changed.loc[0, "rating"] = 1 if changed.loc[0, "rating"] != 1 else 2
    assert snapshot_hash(changed, watches) != h


def test_save_load_round_trip_without_pickle(tmp_path):
    rates, watches = synthetic_events(seed=4)
    ds = build_dataset(rates, watches)
    ds.save(tmp_path / "ds")
    assert sorted(p.suffix for p in (tmp_path / "ds").iterdir()) == [".json", ".npz"] + [".parquet"] * 4
    back = Dataset.load(tmp_path / "ds")
    assert back.snapshot_hash == ds.snapshot_hash and back.cutoff == ds.cutoff and back.stats == ds.stats
    np.testing.assert_array_equal(back.movie_ids, ds.movie_ids)
    assert (back.ratings_csr != ds.ratings_csr).nnz == 0 and (back.seen_csr != ds.seen_csr).nnz == 0
    pd.testing.assert_frame_equal(back.valid_watches, ds.valid_watches)
    assert validation_targets(back) == validation_targets(ds)


def test_validation_user_sample_is_seeded():
    rates, watches = synthetic_events(seed=5)
    p = {"preprocess": {"valid_max_users": 10, "seed": 1}}
    a, b = build_dataset(rates, watches, p), build_dataset(rates, watches, p)
    assert a.stats["valid_users"] == 10
    assert set(validation_targets(a)) == set(validation_targets(b))


def test_no_ratings_is_a_clear_error():
    r, w = frames([])
    with pytest.raises(ValueError, match="no rate events"):
        build_dataset(r.astype({"rating": "int8"}), w)


def test_prepare_reads_snapshots_from_the_store(tmp_path):
    store = LocalStore(tmp_path / "store")
    rates, watches = synthetic_events(n_users=20, seed=6)
    events = [(int(o), RateEvent(t.to_pydatetime(), int(u), m, int(v)))
              for t, u, m, v, _, o in rates.itertuples(index=False)]
    events += [(int(o), WatchEvent(t.to_pydatetime(), int(u), m, int(x)))
               for t, u, m, x, _, o in watches.itertuples(index=False)]
    write_batch(store, "syn", 0, 10**6, events, [])
    ds = prepare(store)
    assert ds.snapshot_hash == snapshot_hash(rates, watches)
    assert len(ds.train_ratings) + len(ds.valid_ratings) + ds.stats["filter_ratings_dropped"] == len(rates)

    from components.cli import app
    runner = CliRunner()
    out = tmp_path / "ds"
    result = runner.invoke(app, ["preprocess", "--store", str(tmp_path / "store"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--dataset", str(out), "--algorithm", "popularity",
                                 "--out", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "models").iterdir())) == 1


def test_params_yaml_equals_the_built_in_defaults():
    root = Path(__file__).resolve().parents[3]
    assert yaml.safe_load((root / "params.yaml").read_text()) == DEFAULTS
    assert load_params(root / "params.yaml") == DEFAULTS


def test_from_ratings_keeps_a_given_split():
    from components.training.preprocess import from_ratings

    train = pd.DataFrame({"user_id": [1, 1, 2], "movie_id": ["a", "b", "a"], "rating": [4, 3, 5]})
    valid = pd.DataFrame({"user_id": [2, 3], "movie_id": ["b", "a"], "rating": [2, 4]})
    ds = from_ratings(train, valid)
    assert ds.ratings_csr.toarray().tolist() == [[4, 3], [5, 0]]
    assert ds.valid_ratings["u"].tolist() == [1, -1] and ds.valid_ratings["history"].tolist() == [1, 0]
    assert validation_targets(ds) == {2: {"b"}, 3: {"a"}}


@pytest.mark.parametrize("split", [{"valid_fraction": 0}, {"valid_days": 0}])
def test_no_validation_window_trains_on_all_history(split):
    rates, watches = synthetic_events(seed=8)
    ds = build_dataset(rates, watches, {"preprocess": split})
    assert ds.valid_ratings.empty and ds.valid_watches.empty
    assert ds.stats["train_rating_pairs"] == rates.drop_duplicates(["user_id", "movie_id"]).shape[0]
