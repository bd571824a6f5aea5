"""The predictor's front door: one pure ASGI middleware around KServe's app, before any route runs.

The worker wraps KServe's app in it (plain ASGI: no KServe name involved). It could equally be
added with `app.add_middleware(FrontDoor, ...)`, but inside Starlette's middleware stack every
`/recommend` costs more (`benchmarks/bench_serving.py`, `request_path_in_process`). It does four
cheap things per request:

- answers `GET /recommend/<user id>` straight away with `routes.RecommendRoute` (the same answer as
  the FastAPI route, without FastAPI's routing, dependency solving and KServe's timing
  middleware: about half the per-request CPU on the route that carries the traffic);
- refuses KServe's model repository endpoints (`/v2/repository/...`: load/unload a model by
  name) with 403: unloading a version from one worker would leave it answering 404 until a
  restart. What is served is changed with `movierec rollout`, nowhere else;
- caps request bodies at `max_body_bytes` (413 with the reason), declared or streamed;
- while the worker drains before it stops, adds `Connection: close` to every answer so that
  keep-alive clients reconnect to an instance that stays.
"""

from __future__ import annotations

from predictor import metrics
from predictor.routes import RecommendRoute

RECOMMEND_PREFIX = "/recommend/"
REPOSITORY_PREFIX = "/v2/repository/"
MAX_BODY_BYTES = 256 * 1024  # a V1/V2 request of 1,000 users is about 25 KB of JSON
_TEXT = (b"content-type", b"text/plain; charset=utf-8")


class DrainState:
    """Set once the worker starts draining (read on every answer)."""

    draining = False


def route_of(path: str) -> str:
    """The metrics route name of a request path."""
    if path.startswith("/v1/"):
        return "v1"
    if path.startswith("/v2/"):
        return "v2"
    return "recommend" if path.startswith(RECOMMEND_PREFIX) else "other"


class FrontDoor:
    def __init__(self, app, recommender: RecommendRoute, drain: DrainState, max_body_bytes: int = MAX_BODY_BYTES):
        self.app, self.recommender, self.drain, self.max_body_bytes = app, recommender, drain, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.drain.draining:
            send = _closing(send)
        path, method = scope["path"], scope["method"]
        if method == "GET" and path.startswith(RECOMMEND_PREFIX):
            user = path[len(RECOMMEND_PREFIX):]
            if user and "/" not in user:
                status, text, version = self.recommender.answer(user)
                extra = [(b"x-model-version", version.encode())] if version else []
                return await _respond(send, status, text, extra)
        if path.startswith(REPOSITORY_PREFIX):
            metrics.observe_client_error(route_of(path), "repository_disabled", 403, 0.0)
            return await _respond(send, 403, "model repository endpoints are disabled: change what is served "
                                             "with `movierec rollout`")
        if method in ("POST", "PUT", "PATCH"):
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                return await self._too_large(send, path, f"{declared} bytes")
            if declared is None:  # streamed (chunked): read it here, up to the cap
                body, more = [], True
                size = 0
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        return
                    body.append(message.get("body", b""))
                    size += len(body[-1])
                    more = message.get("more_body", False)
                    if size > self.max_body_bytes:
                        return await self._too_large(send, path, f"more than {self.max_body_bytes} bytes")
                receive = _replay(b"".join(body), receive)
        return await self.app(scope, receive, send)

    async def _too_large(self, send, path: str, size: str) -> None:
        metrics.observe_client_error(route_of(path), "body_too_large", 413, 0.0)
        await _respond(send, 413, f"request body of {size} is over the limit of {self.max_body_bytes} bytes; "
                                  "send fewer users per request")


async def _respond(send, status: int, text: str, extra: list | None = None) -> None:
    body = text.encode()
    headers = [_TEXT, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive):
    """A `receive` that gives the body already read, then waits on the connection as before."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _closing(send):
    async def send_closing(message):
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
        await send(message)

    return send_closing
