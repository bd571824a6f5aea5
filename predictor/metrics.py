"""The predictor's Prometheus metrics, correct with any number of worker processes.

Each uvicorn worker is its own process with its own registry, so the server runs
prometheus-client in multiprocess mode: the supervisor sets `PROMETHEUS_MULTIPROC_DIR` (a fresh
directory per server instance) before any worker imports prometheus_client, every process writes
its samples to files there, and `/metrics` merges them with `MultiProcessCollector` whichever
worker answers. Gauges use a `live*` mode so a dead worker's values disappear
(the supervisor calls `mark_process_dead`).

Every request is counted under the version that answered it (a V1/V2 request routed to both
versions counts once for each); a request refused as the client's mistake (400, 404, 413) has no
answering version: it is counted with an empty `version` label (Prometheus drops it) and in
`movierec_predictor_client_errors_total{route,reason}`. `movierec_predictor_errors_total` holds
server-side failures only. Availability as the README defines it (answered with 200 within 600 ms)
is `movierec_predictor_requests_within_budget_total` over `movierec_predictor_requests_total`.

Per-request label lookups are cached: the hot path does a few dict lookups and increments.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from components.core.events import ANSWER_BUDGET_MS

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUDGET_SECONDS = ANSWER_BUDGET_MS / 1000  # the contract: an answer later than this counts as failed
NO_VERSION = ""       # client errors: no version answered (an empty label is no label in Prometheus)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.6, 1.0, 2.5)

REQUESTS = Counter("movierec_predictor_requests", "Requests answered, by serving version, route and HTTP code",
                   ["version", "route", "code"])
LATENCY = Histogram("movierec_predictor_request_latency_seconds", "Time to answer a request (seconds)",
                    ["version", "route"], buckets=LATENCY_BUCKETS)
WITHIN_BUDGET = Counter("movierec_predictor_requests_within_budget",
                        "Requests answered with 200 within the 600 ms budget, by serving version and route",
                        ["version", "route"])
ERRORS = Counter("movierec_predictor_errors", "Server-side failures (requests failed, versions refused), by "
                 "version and reason", ["version", "reason"])
CLIENT_ERRORS = Counter("movierec_predictor_client_errors", "Requests refused as the client's mistake (4xx), "
                        "by route and reason", ["route", "reason"])
FALLBACKS = Counter("movierec_predictor_fallbacks", "Unknown users answered with the model's cold-start list",
                    ["version"])
CANARY_PERCENT = Gauge("movierec_predictor_canary_percent", "Share of users routed to the canary (percent)",
                       multiprocess_mode="livemax")
MODEL_INFO = Gauge("movierec_predictor_model_info", "1 for each loaded version and its role (stable/canary)",
                   ["version", "role"], multiprocess_mode="livemax")
ROLLOUT_STATE_VALID = Gauge("movierec_predictor_rollout_state_valid", "1 while the last rollout state read was "
                            "valid, 0 while it is invalid and the loaded versions keep serving",
                            multiprocess_mode="livemin")
MODEL_LOADS = Counter("movierec_predictor_model_loads", "Model version loads, by version and result "
                      "(ok, refused)", ["version", "result"])
REQUEST_LOG_DROPPED = Counter("movierec_predictor_request_log_dropped",
                              "Request-log lines dropped because the log could not keep up or failed")

_request_children: dict[tuple, tuple] = {}


def observe_request(version: str, route: str, code: int, seconds: float) -> None:
    """Count one answered request and its latency (cached label children)."""
    key = (version, route, code)
    children = _request_children.get(key)
    if children is None:
        children = (REQUESTS.labels(version, route, str(code)), LATENCY.labels(version, route),
                    WITHIN_BUDGET.labels(version, route) if code == 200 else None)
        _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)
    if children[2] is not None and seconds <= BUDGET_SECONDS:
        children[2].inc()


def observe_client_error(route: str, reason: str, code: int, seconds: float) -> None:
    """Count a request refused as the client's mistake: no version answered it."""
    CLIENT_ERRORS.labels(route, reason).inc()
    observe_request(NO_VERSION, route, code, seconds)


def observe_error(version: str, reason: str) -> None:
    """Count a server-side failure (the request's own code is counted by `observe_request`)."""
    ERRORS.labels(version, reason).inc()


def observe_fallback(version: str) -> None:
    FALLBACKS.labels(version).inc()


def set_serving(stable: str | None, canary: str | None, percent: float, previous: dict[str, str]) -> dict[str, str]:
    """Publish which versions serve in which role; zero the roles that ended. Returns the new roles."""
    roles = {v: r for v, r in ((stable, "stable"), (canary, "canary")) if v}
    for version, role in previous.items():
        if roles.get(version) != role:
            MODEL_INFO.labels(version, role).set(0)
    for version, role in roles.items():
        MODEL_INFO.labels(version, role).set(1)
    CANARY_PERCENT.set(percent if canary else 0.0)
    return roles


def exposition() -> tuple[bytes, str]:
    """The text exposition of every worker's samples (multiprocess) or of this process."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
