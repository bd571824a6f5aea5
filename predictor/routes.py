"""The service's own HTTP routes, mounted on KServe's FastAPI app beside the V1/V2 routes.

    GET /recommend/{user_id}   up to 20 movie ids, best first, comma-separated, no spaces,
                               text/plain; header `X-Model-Version` names the version that
                               answered. Seen movies are excluded; an unknown user gets the
                               model's cold-start list (200). A user id that is not a canonical decimal
                               integer in 0..2^63-1 gets 400 with the reason in the body.
    GET /metrics               Prometheus exposition, merged across worker processes.

They must be added to `kserve.model_server.app` before the server starts (FastAPI matches
routes in order, so this `/metrics` takes precedence over KServe's single-process one). The
worker's front door (`front_door.py`) answers `/recommend` with the same `RecommendRoute` before
FastAPI's generic machinery, since it is the route that carries the traffic.
The request path does one routing lookup and one `FactorModel.recommend` (a mat-vec, a mask
and an argpartition); the request log and metrics only touch memory.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from components.core.events import MAX_RESULTS, parse_user_id
from predictor import metrics
from predictor.request_log import RequestLog
from predictor.traffic import Serving

VERSION_HEADER = "X-Model-Version"


class RecommendRoute:
    """The `/recommend` answer: (status, text body, serving version or None). Never raises."""

    def __init__(self, serving: Serving, request_log: RequestLog | None = None):
        self.serving, self.request_log = serving, request_log

    def answer(self, user_text: str) -> tuple[int, str, str | None]:
        start = time.perf_counter()
        try:
            uid = parse_user_id(user_text)
        except ValueError as exc:
            metrics.observe_client_error("recommend", "bad_user_id", 400, time.perf_counter() - start)
            return 400, str(exc), None
        model = self.serving.split.route(uid)
        if model is None:
            metrics.observe_error(metrics.NO_VERSION, "no_model")
            metrics.observe_request(metrics.NO_VERSION, "recommend", 503, time.perf_counter() - start)
            return 503, "no model version is loaded", None
        version = model.version
        try:
            ids, personalized = model.recommend(uid, MAX_RESULTS)
        except Exception as exc:  # never expected; counted and logged, not hidden
            elapsed = time.perf_counter() - start
            metrics.observe_error(version, "exception")
            metrics.observe_request(version, "recommend", 500, elapsed)
            if self.request_log:
                self.request_log.record(uid, version, 500, (), elapsed * 1000, error=type(exc).__name__)
            return 500, f"internal error: {type(exc).__name__}", version
        if not personalized:
            metrics.observe_fallback(version)
        elapsed = time.perf_counter() - start
        metrics.observe_request(version, "recommend", 200, elapsed)
        if self.request_log:
            self.request_log.record(uid, version, 200, ids, elapsed * 1000)
        return 200, ",".join(ids), version


def add_routes(app: FastAPI, serving: Serving, request_log: RequestLog | None = None) -> RecommendRoute:
    """Mount `/recommend/{user_id}` and the multiprocess `/metrics` on `app`."""
    recommender = RecommendRoute(serving, request_log)

    async def recommend(user_id: str) -> Response:
        status, text, version = recommender.answer(user_id)
        return PlainTextResponse(text, status_code=status, headers={VERSION_HEADER: version} if version else None)

    async def prometheus_metrics(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    app.add_api_route("/recommend/{user_id}", recommend, methods=["GET"], response_class=PlainTextResponse,
                      summary="Up to 20 movie ids for a user, best first, comma-separated")
    app.add_api_route("/metrics", prometheus_metrics, methods=["GET"], include_in_schema=False)
    return recommender
