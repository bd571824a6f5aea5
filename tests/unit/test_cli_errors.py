"""A user's mistake ends `movierec` with one line on stderr and a non-zero exit, no traceback."""

from __future__ import annotations

import pytest

from components.core.errors import NotFound, Unavailable, UserError
from movierec import cli


def raising(error):
    def app(**kwargs):
        raise error
    return app


@pytest.mark.parametrize("error, code", [(UserError("bad value"), 2), (NotFound("no such store"), 2),
                                         (Unavailable("Kafka unreachable"), 1)])
def test_user_error_is_one_line(monkeypatch, capsys, error, code):
    monkeypatch.setattr(cli, "app", raising(error))
    monkeypatch.setattr("sys.argv", ["movierec", "anything"])
    monkeypatch.delenv("MOVIEREC_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert err == f"movierec: {error}\n"


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setattr(cli, "app", raising(UserError("bad value")))
    monkeypatch.setattr("sys.argv", ["movierec", "--debug", "anything"])
    with pytest.raises(UserError):
        cli.main()


def test_other_errors_are_not_hidden(monkeypatch):
    monkeypatch.setattr(cli, "app", raising(RuntimeError("a bug")))
    monkeypatch.setattr("sys.argv", ["movierec", "anything"])
    with pytest.raises(RuntimeError):
        cli.main()
