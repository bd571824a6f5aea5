"""The predictor over real HTTP: routes, KServe V1/V2, the split, swaps and restarts under load, fuzzing.

Every server here is the real thing (`python -m predictor`, supervisor + workers) on 127.0.0.1 and
a free port, serving small models built with `FactorModel` in a local store.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.core import layout, rollout
from components.core.events import RecommendationEvent, parse_line
from components.core.model_artifact import FactorModel
from components.core.store import LocalStore
from predictor.supervisor import roll, serve_args, start_instance, stop_instance, wait_ready
from tests.http_load import Load, wait_for
from tests.servers import free_port
from tests.synthetic_models import publish_synthetic

pytestmark = pytest.mark.integration

N_USERS, N_MOVIES, K = 2000, 400, 16
CANARY_PERCENT = 30.0
_instances = itertools.count()


class Instance:
    """One `python -m predictor` server instance started for a test."""

    def __init__(self, store: LocalStore, port: int, tmp: Path, workers: int = 2, extra: tuple = ()):
        n = next(_instances)
        self.port, self.ready_file = port, tmp / f"ready-{n}"
        self.args = [*serve_args(str(store.root), port, workers=workers, poll_seconds=0.3, drain_seconds=0.5), *extra]
        self.log = open(tmp / f"server-{n}.log", "wb")
        self.proc = start_instance(self.args, self.ready_file, log_file=self.log)
        wait_ready(self.proc, self.ready_file, timeout=60)
        self.url = f"http://127.0.0.1:{port}"

    def roll(self) -> None:
        """Replace this instance by a new one on the same port (the demo's procedure)."""
        n = next(_instances)
        self.ready_file = self.ready_file.with_name(f"ready-{n}")
        self.proc = roll(self.proc, self.args, self.ready_file, log_file=self.log)

    def stop(self) -> None:
        stop_instance(self.proc)
        self.log.close()


def versions_seen_after(load: Load, seconds: float) -> set:
    before = load.snapshot()
    time.sleep(seconds)
    return {v for v, n in (load.snapshot() - before).items() if n}


def make_store(root: Path) -> LocalStore:
    store = LocalStore(root)
    for i, version in enumerate(("v1", "v2", "v3"), start=1):
        publish_synthetic(store, version, N_USERS, N_MOVIES, K, seed=i)
    rollout.set_stable(store, "v1")
    rollout.start_canary(store, "v2", CANARY_PERCENT)
    return store


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A 2-worker server with v1 stable and v2 canary at 30 %, logging requests to a file."""
    tmp = tmp_path_factory.mktemp("predictor")
    store = make_store(tmp / "store")
    log_path = tmp / "requests.log"
    inst = Instance(store, free_port(), tmp, workers=2, extra=("--request_log", f"file:{log_path}"))
    inst.store, inst.log_path, inst.tmp = store, log_path, tmp
    inst.models = {v: FactorModel.load(store, v)[0] for v in ("v1", "v2")}
    inst.client = httpx.Client(base_url=inst.url, timeout=10)
    # A new TCP connection per request, so that requests spread over both workers.
    inst.fresh = httpx.Client(base_url=inst.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
    yield inst
    inst.client.close()
    inst.fresh.close()
    inst.stop()


# -- the protocol --------------------------------------------------------------------------------------
def test_recommend_route_answers_plain_text_without_seen_movies(served):
    with httpx.Client(base_url=served.url) as client:
        for uid in (1, 17, 500, N_USERS):
            r = client.get(f"/recommend/{uid}")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            version = r.headers["x-model-version"]
            assert version == rollout.load(served.store).route(uid)
            assert re.fullmatch(r"[^,\s]+(,[^,\s]+){19}", r.text), r.text
            model = served.models[version]
            ids = r.text.split(",")
            assert ids == model.recommend(uid, 20)[0]
            seen = set(model.movie_ids[model.seen(model.user_index(uid))])
            assert not seen & set(ids)
        unknown = client.get("/recommend/123456789")
        assert unknown.status_code == 200
        model = served.models[unknown.headers["x-model-version"]]
        assert unknown.text.split(",") == model.movie_ids[model.popular[:20]].tolist()
        for bad in ("abc", "-3", "1.5", "01", str(2**63), "%20", "1%0A"):
            r = client.get(f"/recommend/{bad}")
            assert r.status_code == 400 and "user id" in r.text, (bad, r.status_code, r.text)


def test_kserve_v1_v2_metadata_and_readiness_with_kserve_client(served):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def go():
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=10))
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=10))
        try:
            assert await v2.is_server_ready(served.url)
            assert await v2.is_server_live(served.url)
            for name in ("movierec", "v1", "v2"):
                assert await v2.is_model_ready(served.url, name)
            req = InferRequest(model_name="movierec", infer_inputs=[
                InferInput("user_id", [3], "INT64", data=[1, 2, 999999]),
                InferInput("k", [1], "INT32", data=[5])], request_id="req-1")
            res = await v2.infer(served.url, req, model_name="movierec")
            out = {o.name: o.as_numpy() for o in res.outputs}
            v1_res = await v1.infer(served.url, {"instances": [1, 2], "k": 5}, model_name="v1")
            return res, out, v1_res
        finally:
            await v2.close()
            await v1.close()

    res, out, v1_res = asyncio.run(go())
    assert res.id == "req-1" and out["movie_ids"].shape == (3, 5)
    for row, uid in enumerate((1, 2, 999999)):
        version = out["model_version"][row]
        version = version.decode() if isinstance(version, bytes) else version
        expected, personalized = served.models[version].recommend(uid, 5)
        got = [m.decode() if isinstance(m, bytes) else m for m in out["movie_ids"][row]]
        assert got == expected and bool(out["personalized"][row]) == personalized
    preds = v1_res["predictions"]
    assert [p["movie_ids"] for p in preds] == [served.models["v1"].recommend(u, 5)[0] for u in (1, 2)]
    meta = httpx.get(f"{served.url}/v2/models/movierec").json()
    assert [i["name"] for i in meta["inputs"]] == ["user_id", "k"]
    assert [o["name"] for o in meta["outputs"]] == ["movie_ids", "personalized", "model_version"]


def test_split_holds_the_configured_share(served):
    users = list(range(1, N_USERS + 1))
    body = {"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [1000], "data": users[:1000]},
                       {"name": "k", "datatype": "INT32", "shape": [1], "data": [1]}]}
    chosen = []
    for start in (0, 1000):
        body["inputs"][0]["data"] = users[start:start + 1000]
        r = httpx.post(f"{served.url}/v2/models/movierec/infer", json=body, timeout=10)
        assert r.status_code == 200
        chosen += [o for o in r.json()["outputs"] if o["name"] == "model_version"][0]["data"]
    state = rollout.load(served.store)
    assert chosen == [state.route(u) for u in users]
    share = chosen.count("v2") / len(chosen)
    sd = (0.3 * 0.7 / len(chosen)) ** 0.5
    assert abs(share - 0.3) < 4 * sd, share


# -- fuzzing: never a 500 -------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
tensor = st.fixed_dictionaries({
    "name": st.sampled_from(["user_id", "k", "x"]),
    "datatype": st.sampled_from(["INT64", "INT32", "UINT64", "FP32", "BYTES", "BOOL", "FP16", "nope"]),
    "shape": st.lists(st.integers(-2, 6), max_size=3),
    "data": json_values})
v2_payloads = st.fixed_dictionaries({"inputs": st.lists(tensor, max_size=3)}, optional={"id": json_values}) | json_values
v1_payloads = st.fixed_dictionaries({"instances": json_values}, optional={"k": json_values}) | json_values


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(min_size=1, max_size=30))
def test_fuzz_recommend_paths_never_500(served, text):
    r = served.client.get("/recommend/" + quote(text, safe=""))
    assert r.status_code < 500, (text, r.status_code, r.text)
    if "/" in text or text in (".", ".."):  # another path (the client resolves dot segments): 404 or 307
        return
    if re.fullmatch(r"0|[1-9][0-9]{0,18}", text) and int(text) < 2**63:
        assert r.status_code == 200
    else:
        assert r.status_code == 400 and "user id" in r.text, (text, r.status_code, r.text)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(v1=v1_payloads, v2=v2_payloads, model=st.sampled_from(["movierec", "v1"]))
def test_fuzz_v1_v2_payloads_never_500(served, v1, v2, model):
    r1 = served.client.post(f"/v1/models/{model}:predict", json=v1)
    assert r1.status_code < 500, (v1, r1.status_code, r1.text)
    r2 = served.client.post(f"/v2/models/{model}/infer", json=v2)
    assert r2.status_code < 500, (v2, r2.status_code, r2.text)


def test_client_mistakes_leave_one_line_each_and_no_traceback_in_the_server_log(served):
    """After the fuzzing above (hundreds of bad payloads): a client's mistake is one INFO line at most."""
    for bad in ({"instances": "x"}, {"instances": [-1]}, [1], {"instances": [1], "k": 0}):
        assert served.client.post("/v1/models/movierec:predict", json=bad).status_code == 400
    assert served.client.post("/v1/models/nope:predict", json={"instances": [1]}).status_code == 404
    served.log.flush()
    text = Path(served.log.name).read_text(errors="replace")
    assert "-> 400" in text
    assert "Traceback" not in text and " ERROR " not in text, text[-3000:]


# -- metrics with two workers and the request log ------------------------------------------------------
def _metric_sum(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_every_request_across_two_workers(served):
    before = served.fresh.get("/metrics").text
    n, fallbacks = 120, 0
    for i in range(n):  # a new connection each time, so both workers take requests
        uid = 10**9 + i if i % 4 == 0 else 1 + i
        fallbacks += i % 4 == 0
        assert served.fresh.get(f"/recommend/{uid}").status_code == 200
    served.fresh.get("/recommend/nope")
    after = served.fresh.get("/metrics").text
    delta = lambda name, **kw: _metric_sum(after, name, **kw) - _metric_sum(before, name, **kw)  # noqa: E731
    assert delta("movierec_predictor_requests_total", route="recommend", code="200") == n
    assert delta("movierec_predictor_request_latency_seconds_count", route="recommend") == n + 1
    assert delta("movierec_predictor_fallbacks_total") == fallbacks
    assert delta("movierec_predictor_requests_within_budget_total", route="recommend") == n
    assert delta("movierec_predictor_client_errors_total", route="recommend", reason="bad_user_id") == 1
    assert delta("movierec_predictor_requests_total", route="recommend", code="400") == 1
    assert delta("movierec_predictor_errors_total") == 0  # a client's mistake is no server error
    assert 'version="none"' not in after
    assert _metric_sum(after, "movierec_predictor_canary_percent") == CANARY_PERCENT
    assert _metric_sum(after, "movierec_predictor_model_info", version="v2", role="canary") == 1
    assert _metric_sum(after, "movierec_predictor_model_info", version="v1", role="stable") == 1


def test_an_invalid_rollout_state_keeps_both_versions_serving_and_drops_the_gauge(served):
    """A share of 1e400 used to make every call a 500; now the workers keep their split and say so."""
    good = served.store.get_bytes(layout.ROLLOUT)
    state = rollout.load(served.store)
    users = list(range(1, 200))
    valid = lambda: _metric_sum(served.fresh.get("/metrics").text,  # noqa: E731
                                "movierec_predictor_rollout_state_valid")
    assert valid() == 1
    try:
        served.store.put_bytes(layout.ROLLOUT, good.replace(b'"canary_percent": 30.0', b'"canary_percent": 1e400'))
        assert b"1e400" in served.store.get_bytes(layout.ROLLOUT)
        wait_for(lambda: valid() == 0, what="the workers to refuse the state")
        for u in users:
            r = served.fresh.get(f"/recommend/{u}")
            assert r.status_code == 200 and r.headers["x-model-version"] == state.route(u)
        body = {"inputs": [{"name": "user_id", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]}]}
        assert served.fresh.post("/v2/models/movierec/infer", json=body).status_code == 200
        assert served.fresh.post("/v1/models/movierec:predict", json={"instances": [1, 2]}).status_code == 200
    finally:
        served.store.put_bytes(layout.ROLLOUT, good)
    wait_for(lambda: valid() == 1, what="the workers to accept the state again")


def test_request_log_records_each_answer_with_its_version(served):
    sent = {}
    for uid in range(1500, 1540):
        r = served.client.get(f"/recommend/{uid}")
        sent[uid] = (r.headers["x-model-version"], tuple(r.text.split(",")))

    def logged():  # other tests asked for the same users over V1/V2: find this test's answers among them
        if not served.log_path.exists():
            return {}
        events = [parse_line(line) for line in served.log_path.read_text().splitlines()]
        assert all(isinstance(e, RecommendationEvent) for e in events)
        return {e.user_id: e for e in events if e.user_id in sent and (e.version, e.results) == sent[e.user_id]}

    wait_for(lambda: len(logged()) == len(sent), 10, "request lines")
    for uid, event in logged().items():
        assert event.status == 200 and event.server.endswith(f":{served.port}@{sent[uid][0]}")


# -- swaps, refusals and restarts under load -----------------------------------------------------------
def test_swap_under_load_drops_nothing_and_a_corrupt_artifact_is_refused(tmp_path):
    store = make_store(tmp_path / "store")
    rollout.rollback(store)  # v1 only
    inst = Instance(store, free_port(), tmp_path, workers=2)
    load = Load(inst.url, N_USERS)
    try:
        wait_for(lambda: load.total > 50, what="traffic")
        assert versions_seen_after(load, 0.5) == {"v1"}
        rollout.start_canary(store, "v2", 50)
        wait_for(lambda: versions_seen_after(load, 0.3) == {"v1", "v2"}, what="canary serving")
        rollout.promote(store)
        wait_for(lambda: versions_seen_after(load, 0.3) == {"v2"}, what="promotion")
        # A corrupt canary: refused, logged, counted; v2 keeps serving everyone.
        path = store.local_path(layout.model_key("v3", "user_factors.npy"))
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        rollout.start_canary(store, "v3", 50)
        refused = lambda: _metric_sum(httpx.get(f"{inst.url}/metrics").text,  # noqa: E731
                                      "movierec_predictor_model_loads_total", version="v3", result="refused")
        wait_for(lambda: refused() >= 2, what="both workers refusing v3")
        assert versions_seen_after(load, 0.5) == {"v2"}
        metrics = httpx.get(f"{inst.url}/metrics").text
        assert _metric_sum(metrics, "movierec_predictor_model_loads_total", version="v3", result="refused") >= 1
        rollout.rollback(store)
    finally:
        load.stop()
        inst.stop()
    assert load.failed == [] and set(load.codes) == {200}, (load.codes, load.failed[:3])
    assert load.total > 200
    assert b"refused model version v3" in (tmp_path / Path(inst.log.name).name).read_bytes()


def test_rolling_restart_drops_nothing_and_keeps_every_user_on_its_version(tmp_path):
    store = make_store(tmp_path / "store")
    inst = Instance(store, free_port(), tmp_path, workers=1)
    users = list(range(1, 300))

    def assignment():
        with httpx.Client(base_url=inst.url) as client:
            return [client.get(f"/recommend/{u}").headers["x-model-version"] for u in users]

    first = assignment()
    load = Load(inst.url, N_USERS, threads=3)
    try:
        wait_for(lambda: load.total > 50, what="traffic")
        old_pid = inst.proc.pid
        inst.roll()
        assert inst.proc.pid != old_pid
        after_roll = load.total
        wait_for(lambda: load.total > after_roll + 100, what="traffic on the new instance")
    finally:
        load.stop()
    try:
        assert assignment() == first
    finally:
        inst.stop()
    assert load.failed == [] and set(load.codes) == {200}, (load.codes, load.failed[:3])
    state = rollout.load(store)
    assert first == [state.route(u) for u in users]


# -- hardening: repository endpoints, body size, work per request -------------------------------------
def test_model_repository_endpoints_are_refused_and_every_worker_keeps_serving(served):
    for name in ("movierec", "v1", "v2"):
        for action in ("unload", "load"):
            r = served.fresh.post(f"/v2/repository/models/{name}/{action}")
            assert r.status_code == 403 and "movierec rollout" in r.text, (name, action, r.status_code, r.text)
    for _ in range(8):  # fresh connections: both workers still serve every model
        for name in ("movierec", "v1", "v2"):
            assert served.fresh.get(f"/v2/models/{name}/ready").status_code == 200
            r = served.fresh.post(f"/v1/models/{name}:predict", json={"instances": [1], "k": 2})
            assert r.status_code == 200, (name, r.status_code, r.text)


def test_a_body_over_the_cap_gets_413_with_a_reason_declared_or_streamed(served):
    from predictor.front_door import MAX_BODY_BYTES

    big = b'{"instances": [' + b"1, " * (MAX_BODY_BYTES // 3) + b'1]}'
    r = served.client.post("/v1/models/movierec:predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.text, (r.status_code, r.text[:200])

    def chunks():
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    r = served.client.post("/v2/models/movierec/infer", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.text, (r.status_code, r.text[:200])
    small = served.client.post("/v1/models/movierec:predict", content=b'{"instances": [1, 2]}',
                               headers={"content-type": "application/json"})
    assert small.status_code == 200


def test_probes_and_recommend_answer_while_big_batches_are_scored(served):
    """Four concurrent requests of 1,000 users with k=100 on each worker; probes and /recommend answer."""
    body = {"instances": list(range(1, 1001)), "k": 100}
    results, probes = [], Counter()

    def batch():
        with httpx.Client(base_url=served.url, timeout=60) as client:
            results.append(client.post("/v1/models/movierec:predict", json=body).status_code)

    threads = [threading.Thread(target=batch) for _ in range(8)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        probes[served.fresh.get("/v2/health/ready").status_code] += 1
        probes[served.fresh.get("/recommend/7").status_code] += 1
    for t in threads:
        t.join()
    assert results == [200] * 8
    assert set(probes) == {200} and sum(probes.values()) >= 2


def test_v1_v2_answers_reach_the_request_log_under_the_answering_version(served):
    users = list(range(1700, 1740))
    v1 = served.client.post("/v1/models/movierec:predict", json={"instances": users, "k": 25}).json()["predictions"]
    sent = {p["user_id"]: (p["model_version"], tuple(p["movie_ids"][:20])) for p in v1}
    assert {v for v, _ in sent.values()} == {"v1", "v2"}

    def logged():
        if not served.log_path.exists():
            return {}
        events = [parse_line(line) for line in served.log_path.read_text().splitlines()]
        return {e.user_id: (e.version, e.results) for e in events if isinstance(e, RecommendationEvent)
                and e.user_id in sent and (e.version, e.results) == sent[e.user_id]}

    wait_for(lambda: len(logged()) == len(sent), 10, "request lines of the V1 answers")
    text = served.fresh.get("/metrics").text
    assert _metric_sum(text, "movierec_predictor_requests_total", version="movierec") == 0
    assert _metric_sum(text, "movierec_predictor_requests_total", version="v2", route="v1", code="200") >= 1
