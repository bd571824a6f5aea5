"""One predictor worker: KServe's app (V1/V2) and `/recommend`, served on an inherited socket.

The supervisor (`predictor/supervisor.py`) owns the listening socket and starts N of these. Each
worker loads the versions of the rollout state (verified, memory-mapped: the pages are shared
with the other workers), registers one `RecommenderModel` per version plus the routed model
`movierec` on a `kserve.ModelServer`, mounts the routes of `predictor/routes.py` on KServe's
FastAPI app (`kserve_app.py`: public KServe names only), puts the front door (`front_door.py`)
around it and serves it with uvicorn (uvloop, httptools) on the socket it was given. It reports readiness to the
supervisor only once uvicorn accepts, and it only starts once the versions are loaded, so a new
worker never answers from a half-loaded state.

Graceful stop: the supervisor sends SIGUSR1. The worker answers with `Connection: close` for
`drain_seconds` (keep-alive clients reconnect, to a successor instance if one shares the socket),
then tells uvicorn to exit: it stops accepting (the socket stays open in its peers or in the
successor, so queued connections are not lost), finishes in-flight requests and returns.
SIGTERM/SIGINT stop it the same way without the drain (uvicorn's own signal handling).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import time
from pathlib import Path

import uvicorn
import uvloop

from components.core.store import open_store
from predictor import kserve_app, routes
from predictor.front_door import DrainState, FrontDoor
from predictor.supervisor import DRAIN_SIGNAL
from predictor.traffic import Serving, TrafficSplit
from predictor.watcher import RolloutWatcher

log = logging.getLogger("movierec.predictor")


def run_worker(args: argparse.Namespace) -> None:
    """Load the rollout's versions, then serve until told to stop (called in a worker process)."""
    from kserve.logging import trace_logger

    from predictor.model import RoutedModel
    from predictor.request_log import RequestLog

    trace_logger.setLevel(logging.WARNING)  # KServe's per-request timing lines cost ~10% at load
    sock = socket.socket(fileno=args.listen_fd)
    port = sock.getsockname()[1]
    store = open_store(args.store)
    serving = Serving()
    request_log = None
    if args.request_log:
        request_log = RequestLog(args.request_log, server=f"{socket.gethostname()}:{port}")
    registry_holder: list = []

    def sync_registry(previous: TrafficSplit, current: TrafficSplit) -> None:
        if not registry_holder:  # the server is not built yet: it registers what is loaded then
            return
        registry = registry_holder[0].registered_models
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
                             mmap_arrays=not args.no_mmap, prefetched=prefetched, request_log=request_log)
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

    app = kserve_app.kserve_app()
    recommender = routes.add_routes(app, serving, request_log)  # before KServe's routes: FastAPI matches in order
    registry_holder.append(kserve_app.build([RoutedModel(serving, request_log), *serving.split.models()], port))
    sync_registry(TrafficSplit(), serving.split)  # a swap while the app was being built
    drain = DrainState()
    front = FrontDoor(app, recommender, drain)  # around the app, not inside Starlette's stack: measured faster
    config = uvicorn.Config(front, log_config=None, loop="uvloop", http="httptools", lifespan="off",
                            timeout_keep_alive=args.timeout_keep_alive, access_log=False,
                            timeout_graceful_shutdown=args.grace_seconds, backlog=2048)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(uvicorn.Server(config), sock, drain, args.drain_seconds, args.ready_fd))
    finally:
        watcher.stop()
        if request_log:
            request_log.close()
        log.info("worker %d stopped", os.getpid())


async def _serve(server: uvicorn.Server, sock: socket.socket, drain: DrainState, drain_seconds: float,
                 ready_fd: int | None) -> None:
    """Serve until told to stop; report readiness on `ready_fd` once uvicorn accepts."""
    loop = asyncio.get_running_loop()

    def start_draining() -> None:
        if drain.draining:
            return
        drain.draining = True
        loop.call_later(max(0.0, drain_seconds), lambda: setattr(server, "should_exit", True))

    loop.add_signal_handler(DRAIN_SIGNAL, start_draining)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started and ready_fd is not None:
        os.write(ready_fd, f"{os.getpid()}\n".encode())
    await serving
