"""One predictor worker: a `kserve.ModelServer` serving V1/V2 and `/recommend` on an inherited socket.

The supervisor (`predictor/supervisor.py`) owns the listening socket and starts N of these. Each
worker loads the versions of the rollout state (verified, memory-mapped: the pages are shared
with the other workers), registers one `RecommenderModel` per version plus the routed model
`movierec`, mounts the routes of `predictor/routes.py` on KServe's FastAPI app, and serves with
uvicorn (uvloop, httptools) on the socket it was given. It reports readiness to the supervisor
only once uvicorn accepts, and it only starts once the versions are loaded, so a new worker
never answers from a half-loaded state.

Graceful stop (SIGTERM): the worker stops accepting (the socket stays open in its peers or in a
successor instance, so queued connections are not lost), answers `Connection: close` for
`drain_seconds` so keep-alive clients reconnect elsewhere, then lets uvicorn finish in-flight
requests and exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import time
from pathlib import Path

import uvicorn

from components.core.store import open_store
from predictor import routes
from predictor.traffic import Serving, TrafficSplit
from predictor.watcher import RolloutWatcher

log = logging.getLogger("movierec.predictor")


class DrainState:
    draining = False


class DrainMiddleware:
    """Adds `Connection: close` to every response once the worker is draining (pure ASGI, cheap)."""

    def __init__(self, app, state: DrainState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.state.draining:
            return await self.app(scope, receive, send)

        async def send_closing(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        return await self.app(scope, receive, send_closing)


class DrainingServer(uvicorn.Server):
    """uvicorn that drains before it stops and tells the supervisor when it accepts."""

    def __init__(self, config: uvicorn.Config, state: DrainState, drain_seconds: float, ready_fd: int | None):
        super().__init__(config)
        self.state, self.drain_seconds, self.ready_fd = state, drain_seconds, ready_fd
        self._drain_started: float | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and self.ready_fd is not None:
            os.write(self.ready_fd, f"{os.getpid()}\n".encode())

    def handle_exit(self, sig, frame) -> None:
        if self._drain_started is None and self.drain_seconds > 0:
            self._drain_started = time.monotonic()
            self.state.draining = True
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_started is not None:
            for server in self.servers:
                server.close()  # stop accepting; the shared socket stays open elsewhere
            if time.monotonic() - self._drain_started >= self.drain_seconds:
                return True
        return await super().on_tick(counter)


def run_worker(args: argparse.Namespace) -> None:
    """Load the rollout's versions, then serve until SIGTERM (called in a worker process)."""
    from kserve import ModelServer
    from kserve.logging import trace_logger
    from kserve.model_server import app
    from kserve.protocol.rest.server import RESTServer

    from predictor.model import RoutedModel
    from predictor.request_log import RequestLog

    trace_logger.setLevel(logging.WARNING)  # KServe's per-request timing lines cost ~10% at load
    sock = socket.socket(fileno=args.listen_fd)
    port = sock.getsockname()[1]
    store = open_store(args.store)
    serving = Serving()
    model_server = ModelServer(http_port=port, workers=1, enable_grpc=False, enable_latency_logging=False)

    def sync_registry(previous: TrafficSplit, current: TrafficSplit) -> None:
        registry = model_server.registered_models
        for m in current.models():
            registry.update(m)
        for m in previous.models():
            if m.version not in {c.version for c in current.models()} and registry.get_model(m.version) is m:
                registry.unload(m.version)

    prefetched = None
    if args.model_dir and (Path(args.model_dir) / "card.json").exists():
        from predictor.mapped import PrefetchedVersion

        prefetched = PrefetchedVersion(args.model_dir)
        log.info("version %s pre-fetched in %s: loaded from there when the rollout names it",
                 prefetched.version, args.model_dir)
    watcher = RolloutWatcher(store, serving, poll_seconds=args.poll_seconds, on_swap=sync_registry,
                             mmap_arrays=not args.no_mmap, prefetched=prefetched)
    while True:
        try:
            watcher.sync()
        except Exception as exc:
            log.warning("cannot read the rollout state from %s: %s", store.uri, exc)
        if serving.split.ready:
            break
        log.warning("no deployed model version in %s yet (movierec rollout stable VERSION); waiting", store.uri)
        time.sleep(args.poll_seconds)
    watcher.start()

    request_log = None
    if args.request_log:
        request_log = RequestLog(args.request_log, server=f"{socket.gethostname()}:{port}")
    recommender = routes.add_routes(app, serving, request_log)
    model_server._register_and_check_atleast_one_model_is_ready([RoutedModel(serving), *serving.split.models()])
    rest = RESTServer("kserve.model_server:app", model_server.dataplane, model_server.model_repository_extension,
                      port, workers=1)
    rest.create_application()
    state = DrainState()
    front = routes.RecommendFastPath(app, recommender)
    config = uvicorn.Config(DrainMiddleware(front, state), log_config=None, loop="uvloop", http="httptools",
                            timeout_keep_alive=args.timeout_keep_alive, lifespan="off", access_log=False,
                            timeout_graceful_shutdown=args.grace_seconds, backlog=2048)
    server = DrainingServer(config, state, args.drain_seconds, args.ready_fd)
    try:
        server.run(sockets=[sock])
    finally:
        watcher.stop()
        if request_log:
            request_log.close()
        log.info("worker %d stopped", os.getpid())
