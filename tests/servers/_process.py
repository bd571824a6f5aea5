"""A server process the tests own: started in its own process group, always stopped.

The real servers of the integration tests (Kafka, SeaweedFS) run as child processes. Leaving one
behind would hold ports and memory on a shared machine, so every started server is registered and
stopped at interpreter exit; on Linux the child also gets SIGTERM if this process dies without
running its exit handlers (PR_SET_PDEATHSIG). A SIGTERM sent to this process is turned into a
normal exit, so the same cleanup runs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from predictor.supervisor import free_port

LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """A test server could not be prepared or started; the message says why (with its log tail)."""


def free_port_pair(offset: int) -> tuple[int, int]:
    """Two free ports `p` and `p + offset` (servers that derive one port from the other need it)."""
    for _ in range(200):
        port = free_port()
        if port + offset > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((LOOPBACK, port + offset))
            except OSError:
                continue
        return port, port + offset
    raise ServerError(f"no free pair of ports {offset} apart on {LOOPBACK}")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


_LIVE: set[ServerProcess] = set()  # strong references: a dropped server object is still stopped


def stop_all() -> None:
    """Stop every server this process started (registered with atexit)."""
    for server in list(_LIVE):
        try:
            server.stop()
        except Exception as exc:  # keep stopping the others
            print(f"warning: could not stop {server.name}: {exc}", file=sys.stderr)


atexit.register(stop_all)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so atexit handlers (and `stop_all`) run; only if unhandled."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


class ServerProcess:
    """Base of a test server: a work dir, a log file, a process group, start/stop/restart.

    Subclasses implement `_prepare()` (once, before the first start), `_command()` and
    `_ready()` (True once the server answers), and may override `_env()`.
    """

    name = "server"
    ready_timeout = 60.0
    stop_timeout = 20.0

    def __init__(self, workdir: str | os.PathLike | None = None):
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"movierec-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self._prepared = False
        self.startup_seconds = 0.0

    # -- to implement -----------------------------------------------------------------------
    def _prepare(self) -> None:
        """Fetch binaries, pick ports, write configs, format storage: everything done once."""

    def _command(self) -> Sequence[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _ready(self) -> bool:
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ServerProcess:
        """Start the server (same ports and data as before if it ran already) and wait until ready."""
        if self.running:
            return self
        if not self._prepared:
            self._prepare()
            self._prepared = True
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                list(self._command()), cwd=self.workdir, env=self._env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        _LIVE.add(self)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        timeout = self.ready_timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + timeout
        last_error = ""
        while True:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                self.stop()
                raise ServerError(f"{self.name} exited with code {code} while starting.\n{self.log_tail()}")
            try:
                if self._ready():
                    self.startup_seconds = time.monotonic() - started
                    return
            except Exception as exc:  # the readiness probe's own failure is the next try's reason
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.name} not ready within {timeout:.0f} s "
                                  f"(last probe: {last_error or 'not ready'}).\n{self.log_tail()}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after `stop_timeout` seconds."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(10)
        _signal_group(proc, signal.SIGKILL)  # stragglers the server itself forked

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and delete the work dir (when this object created it)."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no log at {self.log_path})"
        return f"--- last {len(text)} lines of {self.log_path} ---\n" + "\n".join(text)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the child leads its own session, so its group id is its pid
    except (ProcessLookupError, PermissionError):
        pass


def require_executable(name: str, hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ServerError(f"'{name}' not found on PATH: {hint}")
    return path


def run_checked(cmd: Sequence[str], what: str, timeout: float, log: Path | None = None, **kwargs) -> str:
    """Run a setup command; raise ServerError with its output if it fails or hangs."""
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{what} did not finish within {timeout:.0f} s: {' '.join(cmd)}") from exc
    output = (res.stdout or "") + (res.stderr or "")
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{output}\n")
    if res.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise ServerError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n{tail}")
    return output


def start_or_fail(server, what: str):
    """Start `server` for a test; if it cannot start, close it and fail with the reason alone (an
    integration test whose server is missing fails, it never skips)."""
    import pytest

    error = None
    try:
        server.start()
    except ServerError as exc:
        error = exc
    if error is not None:  # fail outside the except block: the reason alone, no chained traceback
        server.close()
        pytest.fail(f"{what} could not start: {error}", pytrace=False)
    return server
