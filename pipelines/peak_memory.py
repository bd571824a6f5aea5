"""Run a command and write the peak resident memory (KiB) and CPU seconds of its processes to a file.

    python -m pipelines.peak_memory OUT_FILE COMMAND [ARGS...]

Why a launcher: Linux counts in a child's `ru_maxrss` the memory of the process it was forked
from (the high-water mark of the address space it replaced at exec), so a step started straight
from `movierec pipeline run` could never report less than the runner itself holds. Started from
this small process instead, the step's figure is its own (with this interpreter's ~10 MB as the
floor). CPU seconds (user + system, the command and the processes it waited for) say what a
step costs even when other work shares the cores and stretches its wall time. The command
inherits stdin, stdout and stderr; the exit code is the command's. The file holds
`PEAK_KIB CPU_SECONDS`.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main(argv: list[str]) -> int:
    out, command = argv[0], argv[1:]
    with subprocess.Popen(command) as process:
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except KeyboardInterrupt:  # the step got the same SIGINT: let it finish, report, pass its code on
            _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    with open(out, "w") as f:
        f.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime:.3f}\n")
    return process.returncode if process.returncode >= 0 else 128 - process.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
