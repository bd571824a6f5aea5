"""One rule for durations: a number with a unit, combined largest first; a bare number is seconds.

The rule on its own, then the real `movierec` command: a typo in `online-eval --window` or
`pipeline schedule --every` is one line naming the accepted forms, a non-zero exit, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from components.core.durations import FORMS, parse_duration
from components.core.errors import UserError

MOVIEREC = Path(sys.executable).parent / "movierec"


@pytest.mark.parametrize("text, expected", [
    ("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)), ("45s", timedelta(seconds=45)),
    ("1d", timedelta(days=1)), ("1w", timedelta(weeks=1)), ("500ms", timedelta(milliseconds=500)),
    ("1h30m", timedelta(minutes=90)), ("1.5h", timedelta(minutes=90)), (" 2H ", timedelta(hours=2)),
    ("30", timedelta(seconds=30)), ("0", timedelta(0)), (30, timedelta(seconds=30)), (0.5, timedelta(seconds=0.5)),
    (timedelta(minutes=3), timedelta(minutes=3)),
])
def test_accepted_forms(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30x", "m30", "", "-1h", "1h-30m", "30m1h", "1h1h", "h", "1.h", -5, "thirty"])
def test_mistakes_name_the_accepted_forms(text):
    with pytest.raises(UserError) as error:
        parse_duration(text)
    assert str(error.value).startswith("not a duration: ") and FORMS in str(error.value)


def test_a_bare_number_means_the_same_everywhere():
    from pipelines.cli import parse_interval

    assert parse_interval("120") == parse_duration("120").total_seconds() == 120
    assert parse_interval("1h30m") == 5400
    with pytest.raises(UserError, match="at least a minute"):
        parse_interval("30")


@pytest.mark.parametrize("args", [["online-eval", "--window", "30x"],
                                  ["pipeline", "schedule", "--host", "http://127.0.0.1:9", "--every", "30x"]])
def test_command_line_typo_is_one_line(tmp_path, args):
    env = {k: v for k, v in os.environ.items() if k != "MOVIEREC_DEBUG"}
    done = subprocess.run([str(MOVIEREC), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**env, "MOVIEREC_STORE": str(tmp_path / "store")})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("movierec: ")
    assert lines[0].endswith(f"not a duration: '30x' (use {FORMS})"), lines
