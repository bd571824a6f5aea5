"""KServe models: one `RecommenderModel` per loaded version, and `movierec`, which applies the split.

Both answer the same recommendation task over KServe's V1 and V2 (Open Inference Protocol) routes.

V2 `/v2/models/{name}/infer`
    inputs   user_id        INT64 (or any integer type)  [N]   the users to recommend for (N <= 1000)
             k              INT32                        [1]   optional list length, 1..100 (default 20)
    outputs  movie_ids      BYTES  [N, k]  best first; "" pads a list shorter than k
             personalized   BOOL   [N]     false when the user is unknown (cold-start list)
             model_version  BYTES  [N]     the version that produced each list
V1 `/v1/models/{name}:predict`
    request  {"instances": [user_id, ...], "k": 20}            (k optional)
    response {"predictions": [{"user_id": u, "movie_ids": [...], "personalized": true,
                               "model_version": "v1"}, ...]}

`/v?/models/<version>` always uses that version; `/v?/models/movierec` routes each user by the
stable hash, exactly like `GET /recommend/<user>`. Bad payloads raise `InvalidInput` (HTTP 400).

Every answer is evaluated like a `/recommend` answer: each user's list (its first 20 ids) goes to
the request log as a recommendation line naming the version that answered, and the request is
counted under each version that answered part of it. A request's work is bounded (<= 1,000 users,
k <= 100) and scored in chunks of `CHUNK_USERS`, yielding to the event loop between chunks, one
batch at a time per worker, so `/recommend` and the health probes keep answering beside it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from components.core.events import MAX_RESULTS, MAX_USER_ID
from components.core.model_artifact import FactorModel, ModelCard
from predictor import metrics
from predictor.request_log import RequestLog
from predictor.traffic import Serving

ROUTED_NAME = "movierec"
DEFAULT_K, MAX_K, MAX_BATCH = 20, 100, 1000
CHUNK_USERS = 32  # users scored between two yields to the event loop (~16 ms at 1M users x 27k movies)
INPUTS = [{"name": "user_id", "datatype": "INT64", "shape": [-1]},
          {"name": "k", "datatype": "INT32", "shape": [1]}]
OUTPUTS = [{"name": "movie_ids", "datatype": "BYTES", "shape": [-1, -1]},
           {"name": "personalized", "datatype": "BOOL", "shape": [-1]},
           {"name": "model_version", "datatype": "BYTES", "shape": [-1]}]


class RecommenderModel(Model):
    """One published model version, loaded and verified, answering for itself."""

    def __init__(self, version: str, model: FactorModel, card: ModelCard, request_log: RequestLog | None = None):
        super().__init__(version)
        self.version, self.factors, self.card = version, model, card
        self.request_log = request_log
        self.ready = True

    def load(self) -> bool:  # loading happens (verified) before construction: see watcher.py
        self.ready = True
        return True

    def recommend(self, user_id: int, k: int = DEFAULT_K) -> tuple[list[str], bool]:
        return self.factors.recommend(user_id, k)

    def smoke_test(self) -> None:
        """A real prediction for a known and an unknown user; raise if anything is off."""
        fm = self.factors
        known = int(fm.user_ids[len(fm.user_ids) // 2]) if fm.n_users else 0
        for uid in (known, MAX_USER_ID):
            ids, _ = fm.recommend(uid, DEFAULT_K)
            if not ids and fm.n_movies > DEFAULT_K:
                raise ValueError(f"smoke prediction for user {uid} returned nothing")
        if fm.n_users and not np.all(np.isfinite(fm.scores(fm.user_index(known)))):
            raise ValueError("smoke prediction produced non-finite scores")

    def get_input_types(self) -> list[dict]:
        return INPUTS

    def get_output_types(self) -> list[dict]:
        return OUTPUTS

    async def predict(self, payload, headers=None, response_headers=None):
        return await _answer(self.name, payload, lambda uid: self, self.request_log)


class RoutedModel(Model):
    """`movierec`: the split itself as a model, so V1/V2 clients get canary routing too."""

    def __init__(self, serving: Serving, request_log: RequestLog | None = None):
        super().__init__(ROUTED_NAME)
        self.serving, self.request_log = serving, request_log
        self.ready = True

    async def healthy(self) -> bool:
        return self.serving.split.ready

    def get_input_types(self) -> list[dict]:
        return INPUTS

    def get_output_types(self) -> list[dict]:
        return OUTPUTS

    async def predict(self, payload, headers=None, response_headers=None):
        split = self.serving.split
        return await _answer(self.name, payload, split.route, self.request_log)


_one_batch_at_a_time: asyncio.Semaphore | None = None


def _batch_turn() -> asyncio.Semaphore:
    global _one_batch_at_a_time
    if _one_batch_at_a_time is None:
        _one_batch_at_a_time = asyncio.Semaphore(1)
    return _one_batch_at_a_time


async def _answer(name: str, payload, pick: Callable[[int], RecommenderModel | None],
                  request_log: RequestLog | None = None):
    start = time.perf_counter()
    route = "v2" if isinstance(payload, InferRequest) else "v1"
    try:
        users, k = _v2_inputs(payload) if route == "v2" else _v1_inputs(payload)
    except InvalidInput:
        metrics.observe_client_error(route, f"bad_{route}_payload", 400, time.perf_counter() - start)
        raise
    async with _batch_turn():
        rows = await _score(name, route, users, k, pick, start)
    elapsed = time.perf_counter() - start
    for version in {r[3] for r in rows}:
        metrics.observe_request(version, route, 200, elapsed)
    for uid, ids, personalized, version in rows:
        if not personalized:
            metrics.observe_fallback(version)
        if request_log:
            request_log.record(uid, version, 200, ids[:MAX_RESULTS], elapsed * 1000)
    if route == "v1":
        return {"predictions": [{"user_id": u, "movie_ids": ids, "personalized": p, "model_version": v}
                                for u, ids, p, v in rows]}
    width = max([len(r[1]) for r in rows] or [0])
    movie_ids = np.array([r[1] + [""] * (width - len(r[1])) for r in rows], dtype=np.object_).reshape(len(rows), width)
    outputs = []
    for out_name, shape, dtype, data in (
            ("movie_ids", [len(rows), width], "BYTES", movie_ids),
            ("personalized", [len(rows)], "BOOL", np.array([r[2] for r in rows], dtype=bool)),
            ("model_version", [len(rows)], "BYTES", np.array([r[3] for r in rows], dtype=np.object_))):
        out = InferOutput(name=out_name, shape=shape, datatype=dtype)
        out.set_data_from_numpy(data, binary_data=payload.use_binary_outputs)
        outputs.append(out)
    return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=name, infer_outputs=outputs)


async def _score(name: str, route: str, users: list[int], k: int,
                 pick: Callable[[int], RecommenderModel | None], start: float) -> list[tuple]:
    """(user, ids, personalized, version) per user, yielding to the event loop every `CHUNK_USERS`."""
    rows = []
    for i, uid in enumerate(users):
        if i and i % CHUNK_USERS == 0:
            await asyncio.sleep(0)
        model = pick(uid)
        if model is None:
            metrics.observe_error(metrics.NO_VERSION, "no_model")
            metrics.observe_request(metrics.NO_VERSION, route, 503, time.perf_counter() - start)
            raise ModelNotReady(name, "no model version is loaded")
        try:
            ids, personalized = model.recommend(uid, k)
        except Exception:  # never expected; counted under the version that failed, then KServe's 500
            metrics.observe_error(model.version, "exception")
            metrics.observe_request(model.version, route, 500, time.perf_counter() - start)
            raise
        rows.append((uid, ids, personalized, model.version))
    return rows


def _check_users(values) -> list[int]:
    users = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise InvalidInput(f"user ids must be integers, got {str(v)[:40]!r}")
        if not 0 <= int(v) <= MAX_USER_ID:
            raise InvalidInput(f"user id {v} out of range 0..{MAX_USER_ID}")
        users.append(int(v))
    if not users:
        raise InvalidInput("no user ids given")
    if len(users) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} users per request, got {len(users)}")
    return users


def _check_k(k) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise InvalidInput(f"k must be an integer within 1..{MAX_K}")
    return int(k)


def _v1_inputs(payload) -> tuple[list[int], int]:
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise InvalidInput('expected {"instances": [user_id, ...]} (optional "k")')
    return _check_users(payload["instances"]), _check_k(payload.get("k", DEFAULT_K))


def _v2_inputs(payload: InferRequest) -> tuple[list[int], int]:
    by_name = {i.name: i for i in payload.inputs or []}
    if "user_id" not in by_name:
        raise InvalidInput('expected an input tensor "user_id" (INT64 [N])')
    k = DEFAULT_K
    try:
        users = by_name["user_id"].as_numpy()
        if "k" in by_name:
            k_arr = by_name["k"].as_numpy().reshape(-1)
            if k_arr.size != 1:
                raise InvalidInput("k must hold exactly one value")
            k = k_arr[0]
    except InvalidInput:
        raise
    except Exception as exc:  # malformed tensor data: wrong shape, type or length
        raise InvalidInput(f"malformed input tensor: {exc}") from None
    if users.dtype.kind not in "iu":
        raise InvalidInput(f"user_id must be an integer tensor, got {by_name['user_id'].datatype}")
    return _check_users(users.reshape(-1).tolist()), _check_k(int(k) if np.ndim(k) == 0 and
                                                              np.asarray(k).dtype.kind in "iu" else k)
