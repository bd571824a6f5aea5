"""`movierec simulate`: history into a file, live traffic at an endpoint, clear errors."""

from __future__ import annotations

from datetime import datetime

from typer.testing import CliRunner

from components.core.events import Rejection, parse_line
from movierec.cli import app
from simulator.service import StreamingService
from tests.unit.simulator.test_simulator_live import endpoint  # noqa: F401  (fixture)

SMALL = ["--users", "80", "--movies", "40", "--days", "2", "--sessions-per-day", "20", "--start", "2026-03-01"]


def test_history_into_a_file_is_the_api_history(tmp_path):
    path = tmp_path / "events.log"
    result = CliRunner().invoke(app, ["simulate", "--to", f"file:{path}", "--seed", "9", "--corrupt-rate", "0.02",
                                      *SMALL])
    assert result.exit_code == 0, result.output
    service = StreamingService(seed=9, n_users=80, n_movies=40, corrupt_rate=0.02)
    expected = list(service.history(days=2, sessions_per_day=20, start=datetime(2026, 3, 1)))
    lines = path.read_bytes().decode("utf-8", "surrogateescape").split("\n")
    assert lines[-1] == "" and lines[:-1] == expected
    assert f"{service.corrupted:,} corrupted" in result.output
    rejected = sum(isinstance(parse_line(line), Rejection) for line in expected)
    assert rejected == service.corrupted


def test_live_mode_writes_only_the_traffic(tmp_path, endpoint):  # noqa: F811
    path = tmp_path / "events.log"
    result = CliRunner().invoke(app, ["simulate", "--to", f"file:{path}", *SMALL, "--recommend-url", endpoint,
                                      "--requests", "30", "--concurrency", "3", "--log-requests"])
    assert result.exit_code == 0, result.output
    events = [parse_line(line) for line in path.read_text().splitlines()]
    assert sum(e.kind == "recommendation" for e in events) == 30
    assert "account" not in {e.kind for e in events}  # the history was replayed, not written
    assert "traffic: 30 requests" in result.output


def test_bad_arguments_are_clear_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "--to", f"file:{tmp_path}/x.log", "--start", "March"])
    assert result.exit_code == 2 and "--start" in result.output
    result = runner.invoke(app, ["simulate", "--to", "kafka://127.0.0.1:9092", "--days", "1"])
    assert result.exit_code == 2 and "kafka://HOST:PORT/TOPIC" in result.output
    result = runner.invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0 and "--recommend-url" in result.output


def test_a_profile_sets_the_world_and_flags_override_it(tmp_path):
    from simulator.profiles import PROFILES, get_profile

    course = get_profile("course")
    assert (course.users, course.movies, course.days) == (200_000, 10_000, 14)
    small = course.scaled(2000, 100)
    assert small.sessions_per_day == round(2000 * course.sessions_per_user_day)  # traffic per user kept
    assert PROFILES["demo"].sessions_per_day == 110  # the default world is the one the demo always had
    path = tmp_path / "events.log"
    result = CliRunner().invoke(app, ["simulate", "--to", f"file:{path}", "--profile", "course", "--users", "300",
                                      "--movies", "50", "--days", "1", "--start", "2026-03-01"])
    assert result.exit_code == 0, result.output
    users = {parse_line(line).user_id for line in path.read_text().splitlines()}
    assert max(users) <= 300


def test_an_unknown_profile_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["simulate", "--to", f"file:{tmp_path}/x.log", "--profile", "huge"])
    assert result.exit_code == 2 and "--profile" in result.output and "course" in result.output
