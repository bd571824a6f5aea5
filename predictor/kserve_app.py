"""Everything the predictor takes from KServe, by public name, and the one thing it does beyond it.

KServe's documented way to serve is `ModelServer().start(models)`: it registers the models, builds
KServe's FastAPI app (`kserve.model_server.app`: the V1/V2 routes, KServe's error handlers) and
runs uvicorn on a port it binds itself. Custom routes go on that app before the server starts.

The platform needs one thing more: a worker serves on a listening socket it inherited from the
supervisor (`supervisor.py`, `handoff.py`), so that a successor instance takes over the same
accept queue and a restart drops nothing. `ModelServer.start` cannot take a socket, so `build()`
does what `start()` does, step by step, with public names only:

    ModelServer(...)                           the model registry and the data plane
    ModelServer.register_model(model)          one per model (`start()` registers the same way)
    RESTServer(...).create_application()       KServe's app, exactly as `start()` builds it

then `server.py` serves the app with `uvicorn.Server(config).serve(sockets=[...])`, uvicorn's
public way to serve given sockets. `build()` also replaces KServe's handlers for client mistakes
(400, 404), which log a full ERROR traceback for every bad payload, by ones that log one line.
`tests/unit/predictor/test_kserve_contract.py` fails if any KServe behaviour relied on here changes.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger("movierec.predictor")
APP_IMPORT_STRING = "kserve.model_server:app"


def kserve_app() -> FastAPI:
    """KServe's FastAPI app: routes and middleware added here are served beside V1/V2."""
    from kserve import model_server

    return model_server.app


def build(models: list, port: int):
    """Register `models` on a `ModelServer` and build KServe's app around it.

    Returns the `ModelServer` (its `registered_models` is the registry the V1/V2 routes read)."""
    from kserve import ModelServer
    from kserve.errors import InvalidInput, ModelNotFound
    from kserve.protocol.rest.server import RESTServer

    model_server = ModelServer(http_port=port, workers=1, enable_grpc=False, enable_latency_logging=False)
    for model in models:
        model_server.register_model(model)
    rest = RESTServer(APP_IMPORT_STRING, data_plane=model_server.dataplane,
                      model_repository_extension=model_server.model_repository_extension, http_port=port)
    rest.create_application()
    app = kserve_app()
    app.add_exception_handler(InvalidInput, _client_error(400))
    app.add_exception_handler(ModelNotFound, _client_error(404))
    return model_server


def _client_error(status: int):
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        log.info("%s %s -> %d: %s", request.method, request.url.path, status, str(exc)[:200])
        return JSONResponse(status_code=status, content={"error": str(exc)})

    return handler
