"""movierec.console.output_to: the libraries' output to a log, progress to the terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from movierec.console import output_to


def test_output_goes_to_the_log_and_the_console_to_the_terminal(tmp_path, capfd):
    log = tmp_path / "run.log"
    with output_to(log) as console:
        os.write(1, b"from stdout\n")   # (pytest swaps sys.stdout; the file descriptors are what moves)
        os.write(2, b"from stderr\n")
        subprocess.run([sys.executable, "-c", "print('from a subprocess')"], check=True)
        console.write("progress\n")
    print("after")
    out, err = capfd.readouterr()
    assert log.read_text().splitlines() == ["from stdout", "from stderr", "from a subprocess"]
    assert out.splitlines() == ["progress", "after"] and err == ""


def test_an_error_surfaces_with_the_terminal_restored(tmp_path, capfd):
    log = tmp_path / "run.log"
    with pytest.raises(RuntimeError, match="boom"), output_to(log):
        os.write(1, b"before the error\n")
        raise RuntimeError("boom")
    print("restored")
    assert capfd.readouterr().out == "restored\n" and log.read_text() == "before the error\n"
