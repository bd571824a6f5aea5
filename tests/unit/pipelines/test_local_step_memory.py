"""`movierec pipeline run` reports each step's peak memory: the kernel's figure for the step process."""

from __future__ import annotations

import logging
import sys

from pipelines.local import _measured_steps, _StepTimer


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("root", logging.INFO, __file__, 1, msg, None, None)


def test_each_step_gets_the_peak_memory_of_its_own_process(capsys):
    from kfp.local import subprocess_task_handler as handler

    original = handler.run_local_subprocess
    lines: list[str] = []
    timer = _StepTimer(lines.append, {"ingest-1": "ingest", "train-2": "train"})
    with _measured_steps(timer):
        for task, megabytes in (("ingest-1", 300), ("train-2", 20)):
            timer.filter(record(f"Executing task '{task}'"))
            code = handler.run_local_subprocess(
                [sys.executable, "-c", f"b = bytearray({megabytes} << 20); b[::4096] = b'x' * len(b[::4096]); "
                                       "print('step output'); raise SystemExit(3 if len(b) < 1 else 0)"])
            assert code == 0
            timer.filter(record(f"Task '{task}' finished with status SUCCESS"))
        failed = handler.run_local_subprocess([sys.executable, "-c", "raise SystemExit(7)"])
    assert failed == 7
    assert handler.run_local_subprocess is original            # kfp.local is left as it was
    assert "step output" in capsys.readouterr().out           # the step's own output still shows
    assert 300 < timer.peak_mb["ingest"] < 400                 # the 300 MB it touched, plus the interpreter
    assert timer.peak_mb["train"] < 100                        # not the earlier step's peak
    assert set(timer.cpu_seconds) == {"ingest", "train"} and all(0 < s < 30 for s in timer.cpu_seconds.values())
    assert lines[1].startswith("    ingest: SUCCESS in ") and lines[1].endswith(" MB")
