"""Live traffic: users ask a recommender and react, so a better model measurably earns more watches."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from components.core.events import Rejection, parse_line
from simulator.service import StreamingService
from simulator.traffic import Answer, HttpRecommender

START = datetime(2026, 3, 1)
LIVE = datetime(2026, 3, 6)


def after_history(seed: int = 5) -> StreamingService:
    service = StreamingService(seed=seed, n_users=300, n_movies=120)
    for _ in service.history(days=5, sessions_per_day=60, start=START):
        pass
    service.reset_counters()
    return service


def test_a_better_recommender_earns_more_watches():
    rates, minutes = {}, {}
    for name in ("oracle", "popularity", "random"):
        service = after_history()
        recommend = {"oracle": service.oracle(), "popularity": service.popularity_recommender(),
                     "random": service.random_recommender()}[name]
        lines = list(service.serve_traffic(recommend, n_requests=600, concurrency=1, start=LIVE))
        assert all(not isinstance(parse_line(line), Rejection) for line in lines)
        assert service.traffic.requests == 600
        rates[name], minutes[name] = service.traffic.follow_rate, service.traffic.minutes_recommended
    assert rates["oracle"] > rates["popularity"] + 0.2
    assert rates["popularity"] > rates["random"] + 0.01  # a head as flat as real data's: a small edge
    assert minutes["oracle"] > minutes["popularity"] > minutes["random"]


def test_live_traffic_is_deterministic_with_a_simulated_clock():
    runs = []
    for _ in range(2):
        service = after_history()
        runs.append(list(service.serve_traffic(service.popularity_recommender(), n_requests=100, start=LIVE,
                                               log_requests=True)))
    assert runs[0] == runs[1]


def test_request_lines_are_logged_only_when_asked():
    service = after_history()
    silent = [parse_line(line) for line in service.serve_traffic(service.oracle(), n_requests=50, start=LIVE)]
    assert "recommendation" not in {e.kind for e in silent}
    assert {e.kind for e in silent} >= {"watch"}
    logged = [parse_line(line) for line in service.serve_traffic(service.oracle(), n_requests=50, start=LIVE,
                                                                 log_requests=True, server="sim-test")]
    requests = [e for e in logged if e.kind == "recommendation"]
    assert len(requests) == 50
    assert all(e.server == "sim-test" and e.status == 200 and len(e.results) == 20 for e in requests)
    current, followed = None, 0
    for e in logged:  # each request's lines follow it; the user starts watching a few minutes later
        if e.kind == "recommendation":
            current = e
        elif e.kind == "watch" and e.minute == 0:
            assert e.user_id == current.user_id
            assert timedelta(minutes=1) <= e.time - current.time <= timedelta(minutes=5)
            followed += e.movie_id in current.results
    stats = service.traffic  # own choices may happen to be on the list too
    assert stats.followed <= followed <= stats.followed + stats.own_choice and stats.followed > 0


def test_failed_requests_are_logged_with_status_zero_and_followed_by_nothing_recommended():
    service = after_history()

    def broken(user_id: int):
        return [], 0, 600, "ReadTimeout: timed out"

    lines = list(service.serve_traffic(broken, n_requests=40, start=LIVE, log_requests=True))
    requests = [e for e in map(parse_line, lines) if e.kind == "recommendation"]
    assert len(requests) == 40 and all(e.status == 0 and e.error == "ReadTimeout: timed out" for e in requests)
    assert service.traffic.failed == 40 and service.traffic.followed == 0


def mock_endpoint(handler) -> HttpRecommender:
    return HttpRecommender("http://predictor:8080", transport=httpx.MockTransport(handler))


def test_http_recommender_answers_statuses_and_timeouts():
    def handler(request: httpx.Request) -> httpx.Response:
        user = request.url.path.rsplit("/", 1)[-1]
        if user == "1":
            return httpx.Response(200, text="a+1999,b+2001,c\n")
        if user == "2":
            return httpx.Response(404, text="unknown\nuser")
        raise httpx.ReadTimeout("timed out", request=request)

    recommend = mock_endpoint(handler)
    answer = recommend(1)
    assert answer == Answer(["a+1999", "b+2001", "c"], 200, answer.response_ms)
    assert recommend(2)[:2] == ([], 404) and recommend(2).error == "unknown user"
    failed = recommend(3)
    assert failed.status == 0 and failed.ids == [] and failed.error == "ReadTimeout: timed out"
    assert recommend.server == "predictor:8080"
    recommend.close()


class SlowHandler(BaseHTTPRequestHandler):
    delay_s = 0.0

    def do_GET(self):  # noqa: N802
        time.sleep(self.delay_s if self.path.endswith("/13") else 0.0)
        body = b"hidden+river+1999"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    SlowHandler.delay_s = 3.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_slow_answer_counts_as_failed_after_600_ms(endpoint):
    recommend = HttpRecommender(endpoint)
    started = time.monotonic()
    answer = recommend(13)
    assert answer.status == 0 and "Timeout" in answer.error
    assert 0.5 < time.monotonic() - started < 2.0  # not the 3 s the server takes
    assert recommend(1).ids == ["hidden+river+1999"]
    recommend.close()


def test_serve_traffic_over_http_with_concurrency_uses_the_wall_clock(endpoint):
    service = StreamingService(seed=2, n_users=30, n_movies=40)
    before = datetime.utcnow() - timedelta(seconds=1)
    lines = list(service.serve_traffic(endpoint, n_requests=40, concurrency=4, log_requests=True))
    requests = [e for e in map(parse_line, lines) if e.kind == "recommendation"]
    assert len(requests) == 40 == service.traffic.requests
    assert {e.server for e in requests} == {endpoint.removeprefix("http://")}
    assert all(before <= e.time <= datetime.utcnow() + timedelta(seconds=1) for e in requests)
    assert service.traffic.answered + service.traffic.failed == 40
    assert len(service.members) > 0  # users without a history join on their first request


def test_stopping_early_cancels_the_requests_not_yet_sent():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        time.sleep(0.05)
        return httpx.Response(200, text="hidden+river+1999")

    service = StreamingService(seed=2, n_users=30, n_movies=40)
    traffic = service.serve_traffic(mock_endpoint(handler), n_requests=1000, concurrency=2, log_requests=True)
    started = time.monotonic()
    assert parse_line(next(traffic)).kind in {"account", "rate", "recommendation"}
    traffic.close()
    assert time.monotonic() - started < 3 and len(calls) < 100
