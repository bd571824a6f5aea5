"""The served model format: a verified round trip, refusal of damaged artifacts, and recommendations
that exclude seen movies and match a brute-force ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.core import layout
from components.core.model_artifact import ArtifactError, FactorModel, ModelCard, list_versions, load_card

N_USERS, N_MOVIES, K = 30, 50, 4


def make_model(seed: int = 0, n_users: int = N_USERS, n_movies: int = N_MOVIES) -> FactorModel:
    """A small model whose scores are exact in float32 and all distinct: factors are multiples of
    1/8 (so Q @ p is a multiple of 1/64) and each movie's bias adds its own i/4096 < 1/64."""
    rng = np.random.default_rng(seed)
    seen_lists = [np.sort(rng.choice(n_movies, size=rng.integers(0, min(10, n_movies) + 1), replace=False)) for _ in range(n_users)]
    counts = np.bincount(np.concatenate(seen_lists).astype(int), minlength=n_movies) if n_users else np.zeros(n_movies)
    return FactorModel(
        global_mean=3.5,
        user_bias=rng.integers(-4, 5, n_users) / 8,
        item_bias=rng.integers(-4, 5, n_movies) / 8 + np.arange(n_movies) / 4096,
        user_factors=rng.integers(-8, 9, (n_users, K)) / 8,
        item_factors=rng.integers(-8, 9, (n_movies, K)) / 8,
        user_ids=np.arange(n_users, dtype=np.int64) * 10 + 100,  # 100, 110, ...: gaps are unknown users
        movie_ids=np.array([f"movie+{i}+{1950 + i}" for i in range(n_movies)]),
        seen_indptr=np.concatenate([[0], np.cumsum([len(s) for s in seen_lists])]),
        seen_indices=np.concatenate(seen_lists) if n_users else np.empty(0),
        popular=np.argsort(-counts, kind="stable"),
    )


def card(version: str = "v1") -> ModelCard:
    return ModelCard(version=version, algorithm="svd", params={"n_factors": K}, metrics={"rmse": 0.93})


def brute_force(model: FactorModel, u: int, k: int) -> list[str]:
    s = (model.global_mean + model.user_bias[u].astype(np.float64) + model.item_bias.astype(np.float64)
         + model.item_factors.astype(np.float64) @ model.user_factors[u].astype(np.float64))
    seen = set(model.seen(u).tolist())
    ranked = sorted((i for i in range(model.n_movies) if i not in seen), key=lambda i: -s[i])
    return [str(model.movie_ids[i]) for i in ranked[:k]]


def test_save_load_round_trip(local_store):
    model = make_model()
    assert model.save(local_store, card("v1")) == "v1"
    loaded, loaded_card = FactorModel.load(local_store, "v1")
    for name in ("user_bias", "item_bias", "user_factors", "item_factors", "user_ids", "movie_ids",
                 "seen_indptr", "seen_indices", "popular"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name), err_msg=name)
    assert loaded.user_factors.dtype == np.float32 and loaded.global_mean == model.global_mean
    assert (loaded_card.algorithm, loaded_card.params, loaded_card.metrics) == ("svd", {"n_factors": K}, {"rmse": 0.93})
    assert (loaded_card.n_users, loaded_card.n_movies, loaded_card.n_factors) == (N_USERS, N_MOVIES, K)
    assert load_card(local_store, "v1") == loaded_card
    assert sorted(local_store.list("models/v1/")) == sorted(
        layout.model_key("v1", n) for n in (*layout.MODEL_FILES, layout.CHECKSUMS))


def test_one_standard_npy_file_per_array_no_pickle(local_store):
    model = make_model()
    model.save(local_store, card())
    for name, expected in model.arrays().items():
        path = local_store.local_path(layout.model_key("v1", f"{name}.npy"))
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)   # any numpy maps it, no project code
        assert mapped.dtype != object and mapped.flags.aligned
        np.testing.assert_array_equal(mapped, expected, err_msg=name)


@pytest.mark.parametrize("name", layout.MODEL_FILES)
def test_corrupted_file_is_refused(local_store, name):
    make_model().save(local_store, card())
    key = layout.model_key("v1", name)
    data = bytearray(local_store.get_bytes(key))
    data[len(data) // 2] ^= 0xFF
    local_store.put_bytes(key, bytes(data))
    with pytest.raises(ArtifactError, match=f"checksum mismatch for {name}"):
        FactorModel.load(local_store, "v1")


@pytest.mark.parametrize("name", ["user_factors.npy", "movie_ids.npy", "seen_indices.npy"])
def test_truncated_file_is_refused_even_with_a_matching_checksum(local_store, name):
    import hashlib

    make_model().save(local_store, card())
    key = layout.model_key("v1", name)
    truncated = local_store.get_bytes(key)[:200]
    local_store.put_bytes(key, truncated)
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        FactorModel.load(local_store, "v1")
    sums = local_store.get_json(layout.model_key("v1", layout.CHECKSUMS))
    sums[name] = hashlib.sha256(truncated).hexdigest()
    local_store.put_json(layout.model_key("v1", layout.CHECKSUMS), sums)
    with pytest.raises(ArtifactError, match="unreadable model artifact"):
        FactorModel.load(local_store, "v1")


@pytest.mark.parametrize("name", [*layout.MODEL_FILES, layout.CHECKSUMS])
def test_missing_file_is_refused(local_store, name):
    make_model().save(local_store, card())
    local_store.delete(layout.model_key("v1", name))
    with pytest.raises(ArtifactError, match=f"missing {name}"):
        FactorModel.load(local_store, "v1")


def test_garbage_checksums_file_is_refused(local_store):
    make_model().save(local_store, card())
    local_store.put_bytes(layout.model_key("v1", layout.CHECKSUMS), b"\x00not json")
    with pytest.raises(ArtifactError, match="unreadable checksums.json"):
        FactorModel.load(local_store, "v1")


def test_unknown_version_is_refused(local_store):
    with pytest.raises(ArtifactError, match="missing"):
        FactorModel.load(local_store, "never-published")


def test_torn_save_is_not_a_published_version(local_store):
    """Checksums are written last: a save that stopped half way is not listed and does not load."""
    make_model().save(local_store, card("v1"))
    files = make_model(seed=1).to_files(card("v2"))
    for name in layout.MODEL_FILES:
        local_store.put_bytes(layout.model_key("v2", name), files[name])
    assert list_versions(local_store) == ["v1"]
    with pytest.raises(ArtifactError):
        FactorModel.load(local_store, "v2")


def test_list_versions_sorted(local_store):
    for version in ("v2", "v1", "v10"):
        make_model().save(local_store, card(version))
    assert list_versions(local_store) == ["v1", "v10", "v2"]


@pytest.mark.parametrize("seed", range(5))
def test_recommend_excludes_seen_and_matches_brute_force(seed):
    model = make_model(seed)
    for u, user_id in enumerate(model.user_ids):
        for k in (1, 5, 20):
            ids, personalized = model.recommend(int(user_id), k)
            assert personalized
            assert ids == brute_force(model, u, k)
            assert not set(ids) & set(model.movie_ids[model.seen(u)].tolist())
            assert len(ids) == len(set(ids)) == min(k, model.n_movies - len(model.seen(u)))


def test_recommend_when_k_exceeds_unseen_movies():
    model = make_model(n_movies=12)
    u = int(np.argmax(np.diff(model.seen_indptr)))
    ids, _ = model.recommend(int(model.user_ids[u]), 100)
    assert len(ids) == 12 - len(model.seen(u)) and ids == brute_force(model, u, 100)


def test_user_who_has_seen_everything_gets_an_empty_personal_list():
    model = make_model(n_users=1, n_movies=3)
    model = FactorModel(model.global_mean, model.user_bias, model.item_bias, model.user_factors,
                        model.item_factors, model.user_ids, model.movie_ids, np.array([0, 3]),
                        np.array([0, 1, 2]), model.popular)
    assert model.recommend(int(model.user_ids[0]), 20) == ([], True)


@pytest.mark.parametrize("user_id", [0, 105, 99_999, -1])
def test_unknown_user_gets_the_popularity_list(user_id):
    model = make_model()
    ids, personalized = model.recommend(user_id, 20)
    assert not personalized
    assert ids == model.movie_ids[model.popular[:20]].tolist()


def test_scores_are_the_factor_formula():
    model = make_model()
    u = 3
    expected = model.global_mean + model.user_bias[u] + model.item_bias + model.item_factors @ model.user_factors[u]
    np.testing.assert_allclose(model.scores(u), expected, rtol=1e-6)
    assert model.user_index(int(model.user_ids[u])) == u and model.user_index(101) == -1


@pytest.mark.parametrize("field,value,what", [
    ("user_bias", np.zeros(N_USERS + 1), "user_bias shape"),
    ("item_factors", np.zeros((N_MOVIES, K + 1)), "factor dimensions differ"),
    ("user_ids", np.arange(N_USERS)[::-1], "not strictly ascending"),
    ("popular", np.array([N_MOVIES]), "popular out of range"),
    ("item_bias", np.full(N_MOVIES, np.nan), "NaN or inf"),
])
def test_inconsistent_model_is_refused(field, value, what):
    model = make_model()
    fields = {name: getattr(model, name) for name in FactorModel.__dataclass_fields__}
    fields[field] = value
    with pytest.raises(ArtifactError, match=what):
        FactorModel(**fields)


def test_card_ignores_unknown_fields():
    data = json.loads(card().to_json())
    data["added_in_a_later_version"] = 1
    assert ModelCard.from_json(json.dumps(data)) == card()


# -- one folder, written once; the serving mask apart -----------------------------------------------
def test_a_version_is_written_once(local_store):
    model = make_model()
    model.save(local_store, card("v1"))
    before = {k: local_store.get_bytes(k) for k in local_store.list("models/v1/")}
    assert model.save(local_store, card("v1")) == "v1"            # the same content again: nothing written
    changed = card("v1")
    changed.metrics = {"rmse": 0.5}
    with pytest.raises(ArtifactError, match="already published .* written once"):
        model.save(local_store, changed)
    with pytest.raises(ArtifactError, match="already published"):
        make_model(seed=1).save(local_store, card("v1"))
    assert {k: local_store.get_bytes(k) for k in local_store.list("models/v1/")} == before


def test_the_folder_is_the_same_in_a_store_and_standalone(local_store, tmp_path):
    model = make_model()
    model.save(local_store, card("v1"))
    model.save_dir(tmp_path / "out", card("v1"))
    in_store = {k.rsplit("/", 1)[-1]: local_store.get_bytes(k) for k in local_store.list("models/v1/")}
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == in_store
    loaded, loaded_card = FactorModel.load_dir(tmp_path / "out")
    assert loaded_card.version == "v1" and loaded.recommend(110, 5) == model.recommend(110, 5)
    (tmp_path / "out" / "user_bias.npy").write_bytes(b"torn")
    with pytest.raises(ArtifactError, match="checksum mismatch for user_bias.npy"):
        FactorModel.load_dir(tmp_path / "out")
    with pytest.raises(ArtifactError, match="not a model version folder"):
        FactorModel.load_dir(tmp_path / "nothing-here")


def test_factors_rescored_with_another_mask_without_reading_the_stored_one(local_store):
    import scipy.sparse as sp

    model = make_model()
    model.save(local_store, card("v1"))
    for name in layout.MASK_ARRAYS:                  # the stored mask is not even needed
        local_store.delete(layout.model_key("v1", f"{name}.npy"))
    with pytest.raises(ArtifactError, match="missing seen_indptr.npy"):
        FactorModel.load(local_store, "v1")
    today = sp.csr_matrix((np.ones(N_USERS), (np.arange(N_USERS), np.zeros(N_USERS, dtype=int))),
                          shape=(N_USERS, N_MOVIES))
    remasked, _ = FactorModel.load(local_store, "v1", seen=today)
    np.testing.assert_array_equal(remasked.user_factors, model.user_factors)
    assert all(remasked.seen(u).tolist() == [0] for u in range(N_USERS))
    assert "movie+0+1950" not in remasked.recommend(100, N_MOVIES)[0]
    with pytest.raises(ArtifactError, match="does not match"):
        FactorModel.load(local_store, "v1", seen=today[:, :3])


def test_an_artifact_of_the_old_format_says_how_to_republish(local_store):
    local_store.put_bytes(layout.model_key("old", "factors.npz"), b"PK...")
    local_store.put_bytes(layout.model_key("old", "card.json"), card("old").to_json())
    local_store.put_json(layout.model_key("old", layout.CHECKSUMS), {"factors.npz": "0" * 64, "ids.npz": "1" * 64,
                                                                     "card.json": "2" * 64})
    with pytest.raises(ArtifactError, match="old single-file format .* re-publish it"):
        FactorModel.load(local_store, "old")
