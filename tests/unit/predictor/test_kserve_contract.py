"""The KServe (and uvicorn) behaviour `predictor/kserve_app.py` and `server.py` rely on.

The predictor serves KServe's app on a socket it inherited, building it with public names the way
`ModelServer.start` does. If a KServe or uvicorn upgrade changes any of what is checked here, this
test fails instead of the predictor breaking silently.
"""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """KServe's app as the worker builds it around a routed and a version model (built once: the app is
    global), and the same app behind the front door."""
    from components.core.store import LocalStore
    from predictor import kserve_app, routes
    from predictor.front_door import DrainState, FrontDoor
    from predictor.mapped import load_mapped
    from predictor.model import RecommenderModel, RoutedModel
    from predictor.traffic import Serving, TrafficSplit
    from tests.synthetic_models import publish_synthetic

    store = LocalStore(tmp_path_factory.mktemp("contract") / "store")
    publish_synthetic(store, "v1", 50, 30, 4, seed=1)
    serving = Serving()
    serving.swap(TrafficSplit(stable=RecommenderModel("v1", *load_mapped(store, "v1"))))
    app = kserve_app.kserve_app()
    recommender = routes.add_routes(app, serving)
    model_server = kserve_app.build([RoutedModel(serving), *serving.split.models()], port=0)
    return model_server, app, FrontDoor(app, recommender, DrainState())


def call(asgi, method: str, path: str, **kwargs):
    import httpx

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


INFER = {"inputs": [{"name": "user_id", "datatype": "INT64", "shape": [2], "data": [1, 2]}]}


def test_model_server_start_builds_the_app_the_way_build_does():
    """`build()` repeats `ModelServer.start`'s steps: if start() stops building a RESTServer from the
    app import string and calling its create_application, our copy of the steps is out of date."""
    from kserve import ModelServer
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.protocol.rest.server import RESTServer

    from predictor.kserve_app import APP_IMPORT_STRING

    start = inspect.getsource(ModelServer.start)
    assert "RESTServer(" in start and "FASTAPI_APP_IMPORT_STRING" in start
    assert "create_application" in inspect.getsource(RESTServer.start)
    assert FASTAPI_APP_IMPORT_STRING == APP_IMPORT_STRING
    params = inspect.signature(RESTServer).parameters
    assert {"app", "data_plane", "model_repository_extension", "http_port"} <= set(params)
    assert "register_model" in vars(ModelServer)


def test_the_app_serves_v1_v2_and_health_for_the_registered_models(built):
    _, app, _ = built
    assert call(app, "GET", "/v2/health/live").status_code == 200
    assert call(app, "GET", "/v2/health/ready").status_code == 200
    for name in ("movierec", "v1"):
        assert call(app, "GET", f"/v2/models/{name}/ready").status_code == 200
        v2 = call(app, "POST", f"/v2/models/{name}/infer", json=INFER)
        assert v2.status_code == 200, v2.text
        assert {o["name"] for o in v2.json()["outputs"]} == {"movie_ids", "personalized", "model_version"}
        v1 = call(app, "POST", f"/v1/models/{name}:predict", json={"instances": [1], "k": 3})
        assert v1.status_code == 200 and len(v1.json()["predictions"][0]["movie_ids"]) == 3
    assert call(app, "GET", "/recommend/1").status_code == 200


def test_kserve_still_opens_repository_routes_and_the_front_door_refuses_them(built):
    """KServe serves load/unload to anyone (what the front door exists for); behind the door: 403."""
    model_server, app, door = built
    refused = call(door, "POST", "/v2/repository/models/v1/unload")
    assert refused.status_code == 403 and "movierec rollout" in refused.text
    assert model_server.registered_models.get_model("v1") is not None
    model = model_server.registered_models.get_model("v1")
    bare = call(app, "POST", "/v2/repository/models/v1/unload")
    assert bare.status_code == 200, "KServe's unload route changed: check front_door.REPOSITORY_PREFIX"
    assert call(app, "POST", "/v2/models/v1/infer", json=INFER).status_code == 404  # what an open route does
    model.ready = True
    model_server.register_model(model)


def test_client_mistakes_get_400_404_and_no_error_traceback(built):
    """KServe's own handlers log a full ERROR traceback per bad payload; ours log one INFO line."""
    from kserve.logging import logger as kserve_logger

    _, app, _ = built
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    keep = Keep(level=logging.DEBUG)
    watched = [kserve_logger, logging.getLogger("movierec.predictor"), logging.getLogger()]
    ours = logging.getLogger("movierec.predictor")
    level = ours.level
    ours.setLevel(logging.INFO)
    for lg in watched:
        lg.addHandler(keep)
    try:
        assert call(app, "POST", "/v1/models/movierec:predict", json={"instances": "x"}).status_code == 400
        assert call(app, "POST", "/v1/models/nope:predict", json={"instances": [1]}).status_code == 404
    finally:
        for lg in watched:
            lg.removeHandler(keep)
        ours.setLevel(level)
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info], records
    assert len({r.getMessage() for r in records if "-> 400" in r.getMessage()}) == 1


def test_uvicorn_serves_given_sockets_and_exposes_started_and_should_exit():
    import uvicorn

    assert "sockets" in inspect.signature(uvicorn.Server.serve).parameters
    server = uvicorn.Server(uvicorn.Config(app=None))
    assert server.started is False and server.should_exit is False
