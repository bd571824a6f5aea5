"""Process-wide settings from the environment, validated before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.core.errors import UserError
from components.core.settings import load_settings

MOVIEREC = Path(sys.executable).parent / "movierec"


@pytest.mark.parametrize("env, level, debug", [({}, "INFO", False), ({"MOVIEREC_LOG_LEVEL": " debug "}, "DEBUG", False),
                                               ({"MOVIEREC_LOG_LEVEL": ""}, "INFO", False),
                                               ({"MOVIEREC_DEBUG": "1"}, "INFO", True),
                                               ({"MOVIEREC_DEBUG": "0"}, "INFO", False),
                                               ({"MOVIEREC_DEBUG": ""}, "INFO", False)])
def test_accepted_values(monkeypatch, env, level, debug):
    for name in ("MOVIEREC_LOG_LEVEL", "MOVIEREC_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.log_level, settings.debug) == (level, debug)


@pytest.mark.parametrize("name, value, accepted", [("MOVIEREC_LOG_LEVEL", "verbose", "DEBUG, INFO, WARNING"),
                                                   ("MOVIEREC_DEBUG", "maybe", "1/0, true/false")])
def test_mistakes_name_the_variable_and_what_it_accepts(monkeypatch, name, value, accepted):
    monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=f"{name}=.* is not valid \\(use one of {accepted}"):
        load_settings()


def test_bad_log_level_is_one_line_from_the_real_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MOVIEREC_DEBUG"}
    done = subprocess.run([str(MOVIEREC), "pipeline", "compile", "--output", "p.yaml"], cwd=tmp_path, timeout=120,
                          capture_output=True, text=True, env={**env, "MOVIEREC_LOG_LEVEL": "verbose"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "movierec: MOVIEREC_LOG_LEVEL='VERBOSE' is not valid (use one of DEBUG, INFO, WARNING, ERROR, CRITICAL)"]
    assert not (tmp_path / "p.yaml").exists()
