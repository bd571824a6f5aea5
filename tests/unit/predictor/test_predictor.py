"""Unit tests of the predictor's parts: mapped loading, the split, the watcher, V1/V2 tensors, the request log."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from components.core import layout, rollout
from components.core.events import MAX_USER_ID, RecommendationEvent, parse_line
from components.core.model_artifact import ArtifactError, FactorModel
from components.core.store import LocalStore
from predictor.mapped import load_mapped, load_model
from predictor.routes import parse_user_id
from predictor.synthetic import publish_synthetic
from predictor.traffic import Serving, TrafficSplit


@pytest.fixture
def store(tmp_path):
    st = LocalStore(tmp_path / "store")
    publish_synthetic(st, "v1", 300, 120, 8, seed=1)
    publish_synthetic(st, "v2", 300, 120, 8, seed=2)
    return st


def _corrupt(st: LocalStore, version: str, name: str = "factors.npz") -> None:
    path = st.local_path(layout.model_key(version, name))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# -- mapped loading ----------------------------------------------------------------------------------
def test_mapped_load_serves_the_same_lists_as_full_load(store):
    mapped, card = load_mapped(store, "v1")
    full, _ = FactorModel.load(store, "v1")
    assert card.version == "v1"
    assert not mapped.user_factors.flags.writeable  # a view over the file, not a copy
    for uid in (1, 2, 150, 300, 301, 10**12):
        assert mapped.recommend(uid, 20) == full.recommend(uid, 20)


@pytest.mark.parametrize("name", ["factors.npz", "ids.npz", "card.json"])
def test_mapped_load_refuses_a_corrupt_file(store, name):
    _corrupt(store, "v2", name)
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_mapped(store, "v2")
    with pytest.raises(ArtifactError):
        load_model(store, "v2", mmap_arrays=False)


def test_mapped_load_refuses_a_missing_version(store):
    with pytest.raises(ArtifactError, match="missing"):
        load_mapped(store, "v9")


# -- user ids ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,value", [("0", 0), ("42", 42), (str(MAX_USER_ID), MAX_USER_ID)])
def test_parse_user_id_accepts_canonical_ids(text, value):
    assert parse_user_id(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-1", "+1", "01", "1.5", " 1", "1\n", "0\n", "1e3", str(MAX_USER_ID + 1),
                                  "١٢"])
def test_parse_user_id_rejects_with_a_reason(text):
    with pytest.raises(ValueError, match="user id"):
        parse_user_id(text)


# -- the split ---------------------------------------------------------------------------------------
class _Fake:
    def __init__(self, version):
        self.version = version


def test_split_routes_by_the_rollout_hash_and_holds_the_share():
    split = TrafficSplit(stable=_Fake("a"), canary=_Fake("b"), canary_percent=25)
    users = range(20_000)
    chosen = [split.route(u).version for u in users]
    assert all(c == ("b" if rollout.in_canary(u, 25) else "a") for u, c in zip(users, chosen, strict=True))
    share = chosen.count("b") / len(chosen)
    assert abs(share - 0.25) < 4 * (0.25 * 0.75 / len(chosen)) ** 0.5


def test_split_without_canary_sends_everyone_to_stable():
    split = TrafficSplit(stable=_Fake("a"), canary=None, canary_percent=50)
    assert {split.route(u).version for u in range(1000)} == {"a"}
    assert TrafficSplit().route(1) is None


def test_assignment_does_not_depend_on_the_process_hash_seed():
    code = "from components.core.rollout import user_bucket; print([user_bucket(u) for u in range(50)])"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env=dict(os.environ, PYTHONHASHSEED=seed)).stdout for seed in ("1", "2", "random")}
    assert len(outs) == 1


# -- the watcher -------------------------------------------------------------------------------------
def test_watcher_loads_swaps_and_refuses_a_corrupt_canary(store):
    from predictor.watcher import RolloutWatcher

    serving = Serving()
    swaps = []
    watcher = RolloutWatcher(store, serving, on_swap=lambda old, new: swaps.append(new.versions))
    rollout.set_stable(store, "v1")
    watcher.sync()
    assert serving.split.versions == ("v1", None, 0.0)
    rollout.start_canary(store, "v2", 40)
    watcher.sync()
    assert serving.split.versions == ("v1", "v2", 40.0)
    v1_model = serving.split.stable
    publish_synthetic(store, "v3", 300, 120, 8, seed=3)
    _corrupt(store, "v3")
    rollout.start_canary(store, "v3", 40)
    watcher.sync()
    assert serving.split.versions == ("v1", None, 0.0)  # refused: canary users back on stable
    assert serving.split.stable is v1_model  # not reloaded
    assert "v3" in watcher.refused
    rollout.set_stable(store, "v3")  # a corrupt stable is refused too: keep serving what is loaded
    watcher.sync()
    assert serving.split.stable is v1_model
    assert swaps[-1] == ("v1", None, 0.0)


def test_watcher_routes_with_the_experiment_salt_and_swaps_when_it_changes(store):
    from predictor.watcher import RolloutWatcher

    serving = Serving()
    watcher = RolloutWatcher(store, serving)
    rollout.set_stable(store, "v1")
    state = rollout.start_canary(store, "v2", 40)
    watcher.sync()
    assert serving.split.assignment == ("v1", "v2", 40.0, state.experiment)
    assert [serving.split.route(u).version for u in range(500)] == [state.route(u) for u in range(500)]
    canary = serving.split.canary
    rollout.rollback(store)
    state = rollout.start_canary(store, "v2", 40)  # the same version again: a new experiment, new users
    watcher.sync()
    assert serving.split.assignment == ("v1", "v2", 40.0, state.experiment)
    assert serving.split.canary is canary  # not reloaded
    assert [serving.split.route(u).version for u in range(500)] == [state.route(u) for u in range(500)]


def test_watcher_promote_keeps_the_loaded_model_object(store):
    from predictor.watcher import RolloutWatcher

    serving = Serving()
    watcher = RolloutWatcher(store, serving)
    rollout.set_stable(store, "v1")
    rollout.start_canary(store, "v2", 10)
    watcher.sync()
    canary = serving.split.canary
    rollout.promote(store)
    watcher.sync()
    assert serving.split.stable is canary and serving.split.canary is None


def test_watcher_loads_the_version_prefetched_into_model_dir(store, tmp_path):
    """KServe's storage initializer puts one version's files in /mnt/models: served from there, verified."""
    import shutil

    from predictor.mapped import PrefetchedVersion
    from predictor.watcher import RolloutWatcher

    mnt = tmp_path / "mnt-models"
    shutil.copytree(store.local_path(layout.model_prefix("v1")), mnt)
    store.delete_prefix(layout.model_prefix("v1"))          # the store no longer has it: only the copy does
    prefetched = PrefetchedVersion(mnt)
    assert prefetched.version == "v1"
    serving = Serving()
    rollout.set_stable(store, "v1")
    RolloutWatcher(store, serving, prefetched=prefetched).sync()
    assert serving.split.versions == ("v1", None, 0.0)

    (mnt / "ids.npz").write_bytes(b"torn")                   # a corrupt copy is refused like any artifact
    serving = Serving()
    watcher = RolloutWatcher(store, serving, prefetched=PrefetchedVersion(mnt))
    watcher.sync()
    assert serving.split.stable is None and "v1" in watcher.refused


# -- V1 / V2 tensors ---------------------------------------------------------------------------------
def test_v1_and_v2_answers(store):
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferRequest

    from predictor.model import RecommenderModel

    model = RecommenderModel("v1", *load_mapped(store, "v1"))
    out = asyncio.run(model.predict({"instances": [1, 999999], "k": 5}))
    first, unknown = out["predictions"]
    assert first["movie_ids"] == model.recommend(1, 5)[0] and first["personalized"] is True
    assert unknown["personalized"] is False and first["model_version"] == "v1"
    req = InferRequest(model_name="v1", request_id="r1", infer_inputs=[
        InferInput("user_id", [2], "INT64", data=[1, 2]), InferInput("k", [1], "INT32", data=[3])])
    res = asyncio.run(model.predict(req))
    assert res.id == "r1"
    ids = {o.name: o for o in res.outputs}
    assert ids["movie_ids"].shape == [2, 3]
    assert ids["movie_ids"].as_numpy()[0].tolist() == model.recommend(1, 3)[0]
    for bad in ({"instances": "x"}, {"instances": [True]}, {"instances": [-1]}, {"instances": []},
                {"instances": [1], "k": 0}, {"instances": [1], "k": "5"}, [1], {"instances": [2**63]}):
        with pytest.raises(InvalidInput):
            asyncio.run(model.predict(bad))


def test_smoke_test_rejects_a_model_without_answers(store):
    from predictor.model import RecommenderModel

    fm, card = load_mapped(store, "v1")
    model = RecommenderModel("v1", fm, card)
    model.smoke_test()
    fm.item_factors = np.full(fm.item_factors.shape, np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="non-finite"):
        model.smoke_test()


# -- the request log ---------------------------------------------------------------------------------
def test_request_log_writes_contract_lines_in_the_background(tmp_path):
    from predictor.request_log import RequestLog

    path = tmp_path / "requests.log"
    log = RequestLog(f"file:{path}", server="host:8080", flush_seconds=0.05)
    log.record(7, "v2", 200, ["a+1999", "b"], 3.4)
    log.record(8, "v1", 500, (), 1.0, error="RuntimeError")
    log.close()
    events = [parse_line(line) for line in path.read_text().splitlines()]
    assert all(isinstance(e, RecommendationEvent) for e in events), events
    assert events[0].server == "host:8080@v2" and events[0].version == "v2"
    assert events[0].results == ("a+1999", "b") and events[0].response_time_ms == 4   # 3.4 ms logged as 4: never under-reported
    assert events[1].status == 500


def test_request_log_never_blocks_when_the_log_is_down(tmp_path):
    from predictor import metrics
    from predictor.request_log import RequestLog

    log = RequestLog("kafka://127.0.0.1:1/none", server="h:1", max_queue=10, flush_seconds=0.05)
    t0 = time.perf_counter()
    for i in range(1000):
        log.record(i, "v1", 200, ["a"], 1.0)
    assert time.perf_counter() - t0 < 0.5
    assert metrics.REQUEST_LOG_DROPPED._value.get() > 0
    log._stop.set()


@pytest.mark.parametrize("raw", [b'{"stable": "v1", "canary": "v2", "canary_percent": 1e400}',
                                 b'{"stable": "v1", "canary": "v2", "canary_percent": NaN}',
                                 b'{"stable": "v1", "canary": "v2", "canary_percent": -3}',
                                 b'{"stable": "v1", "canary": "V2!"}', b'{"stable": "v1", "can'])
def test_an_invalid_rollout_state_keeps_the_loaded_versions_and_drops_the_gauge(store, raw, caplog):
    from predictor import metrics
    from predictor.watcher import RolloutWatcher

    serving = Serving()
    swaps = []
    watcher = RolloutWatcher(store, serving, on_swap=lambda old, new: swaps.append(new.versions))
    rollout.set_stable(store, "v1")
    rollout.start_canary(store, "v2", 40)
    split = watcher.sync()
    assert metrics.ROLLOUT_STATE_VALID._value.get() == 1
    store.put_bytes(layout.ROLLOUT, raw)
    for _ in range(3):                                   # every poll: no swap, no reload, logged once
        assert watcher.sync() is split and serving.split is split
    assert len(swaps) == 1 and metrics.ROLLOUT_STATE_VALID._value.get() == 0
    assert sum("invalid rollout state" in r.message for r in caplog.records) == 1
    assert {split.route(u).version for u in range(200)} == {"v1", "v2"}  # routing works as before
    rollout.set_stable(store, "v2", reason="repair")     # a valid state is picked up again
    assert watcher.sync().versions == ("v2", None, 0.0)
    assert metrics.ROLLOUT_STATE_VALID._value.get() == 1 and watcher.invalid_state is None
