"""The front door in front of KServe's app: fast /recommend, repository refused, body cap, drain header."""

from __future__ import annotations

import asyncio

import httpx

from predictor.front_door import DrainState, FrontDoor


class _Echo:
    """The inner app: answers 200 with the body it read (what KServe's app would receive)."""

    async def __call__(self, scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-inner", b"1")]})
        await send({"type": "http.response.body", "body": body})


class _Recommender:
    def answer(self, user_text):
        return (200, "a,b", "v1") if user_text == "7" else (400, "bad user id", None)


def _call(door, method, path, **kwargs):
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=door), base_url="http://t") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def _door(drain=None, cap=100):
    return FrontDoor(_Echo(), _Recommender(), drain or DrainState(), max_body_bytes=cap)


def test_recommend_is_answered_at_the_door_and_anything_else_passes_through():
    r = _call(_door(), "GET", "/recommend/7")
    assert (r.status_code, r.text, r.headers["x-model-version"]) == (200, "a,b", "v1")
    assert "x-inner" not in r.headers
    assert _call(_door(), "GET", "/recommend/x").status_code == 400
    assert _call(_door(), "GET", "/recommend/7/more").headers.get("x-inner") == "1"  # not ours: the app's 404
    assert _call(_door(), "GET", "/v2/health/ready").headers.get("x-inner") == "1"


def test_repository_endpoints_are_refused():
    for action in ("load", "unload"):
        r = _call(_door(), "POST", f"/v2/repository/models/movierec/{action}")
        assert r.status_code == 403 and "movierec rollout" in r.text


def test_bodies_over_the_cap_get_413_declared_or_streamed_and_smaller_ones_pass_whole():
    r = _call(_door(cap=100), "POST", "/v1/models/m:predict", content=b"x" * 101)
    assert r.status_code == 413 and "101 bytes" in r.text

    async def chunks(n):  # no Content-Length: streamed
        for _ in range(n):
            yield b"y" * 30

    r = _call(_door(cap=100), "POST", "/v2/models/m/infer", content=chunks(4))
    assert r.status_code == 413 and "over the limit" in r.text
    r = _call(_door(cap=100), "POST", "/v2/models/m/infer", content=chunks(3))
    assert r.status_code == 200 and r.content == b"y" * 90
    r = _call(_door(cap=100), "POST", "/v1/models/m:predict", content=b"z" * 100)
    assert r.status_code == 200 and r.content == b"z" * 100


def test_while_draining_every_answer_says_connection_close():
    drain = DrainState()
    door = _door(drain)
    assert "close" not in _call(door, "GET", "/recommend/7").headers.get("connection", "")
    drain.draining = True
    assert _call(door, "GET", "/recommend/7").headers["connection"] == "close"
    assert _call(door, "GET", "/v2/health/ready").headers["connection"] == "close"
