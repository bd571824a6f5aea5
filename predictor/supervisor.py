"""The server instance: one listening socket, N worker processes, and the rolling-restart procedure.

The supervisor stays small and never imports kserve (KServe parses `sys.argv` at import, and every
megabyte here counts against the memory budget). It acquires the listening socket (inherited from
a running instance on the same port, see `handoff.py`, or freshly bound), gives each worker
process the descriptor, a fresh `PROMETHEUS_MULTIPROC_DIR` and single-threaded BLAS (parallelism
comes from the workers), and waits until every worker accepts. Then it is ready: it offers its
socket to successors and writes `--ready_file`. A worker that dies is replaced. SIGTERM/SIGINT
stop the instance gracefully: workers drain (SIGUSR1) and finish in-flight requests.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from predictor import handoff

log = logging.getLogger("movierec.predictor")
DRAIN_SIGNAL = signal.SIGUSR1  # a worker drains, then stops (server.py); SIGTERM stops it at once


def run_supervisor(args: argparse.Namespace, worker_argv: list[str]) -> int:
    """Run one server instance until SIGTERM/SIGINT; returns the exit code."""
    sock, inherited = handoff.acquire(args.bind_host, args.http_port)
    metrics_dir = tempfile.mkdtemp(prefix="movierec-metrics-")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=metrics_dir)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    ready_r, ready_w = os.pipe()
    stopping = False

    def spawn() -> subprocess.Popen:
        cmd = [sys.executable, "-m", "predictor", *worker_argv,
               "--listen_fd", str(sock.fileno()), "--ready_fd", str(ready_w)]
        return subprocess.Popen(cmd, pass_fds=(sock.fileno(), ready_w), env=env)

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers = [spawn() for _ in range(max(1, args.workers))]
    log.info("instance %d: %d workers on port %d (%s socket)", os.getpid(), len(workers), args.http_port,
             "inherited" if inherited else "new")
    ready: set[int] = set()
    offer = None
    buf = b""
    try:
        while not stopping:
            rlist, _, _ = select.select([ready_r], [], [], 0.2)
            if rlist:
                buf += os.read(ready_r, 4096)
                *lines, buf = buf.split(b"\n")
                ready.update(int(x) for x in lines if x.strip())
            if offer is None and all(w.pid in ready for w in workers):
                offer = handoff.HandoffOffer(sock, args.http_port)
                if args.ready_file:
                    _write_atomic(Path(args.ready_file), f"{os.getpid()} {args.http_port}\n")
                log.info("instance %d ready: http://%s:%d", os.getpid(), args.bind_host, args.http_port)
            for i, w in enumerate(workers):
                if w.poll() is not None and not stopping:
                    _mark_dead(w.pid)
                    if offer is None:  # failed while loading: the instance cannot start
                        log.error("worker %d exited with %s before it was ready", w.pid, w.returncode)
                        stopping = True
                        break
                    log.warning("worker %d exited with %s; starting a new one", w.pid, w.returncode)
                    workers[i] = spawn()
    finally:
        if offer:
            offer.close()
        for w in workers:
            if w.poll() is None:
                w.send_signal(DRAIN_SIGNAL)
        deadline = time.monotonic() + args.drain_seconds + args.grace_seconds + 5
        for w in workers:
            try:
                w.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        sock.close()
        os.close(ready_r)
        os.close(ready_w)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if args.ready_file and _read(Path(args.ready_file)).startswith(f"{os.getpid()} "):
            Path(args.ready_file).unlink(missing_ok=True)  # ours, not a successor's
        log.info("instance %d stopped", os.getpid())
    return 0 if offer is not None else 1


def _mark_dead(pid: int) -> None:
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
    except Exception:
        pass


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- rolling restart -------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nobody listens on right now (for an instance started on this machine:
    the demo, the benchmarks and the test servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_args(store: str | None, port: int, *, workers: int = 1, host: str = "127.0.0.1",
               request_log: str | None = None, poll_seconds: float = 2.0, drain_seconds: float = 1.0) -> list[str]:
    """The `python -m predictor` arguments of an instance (for `movierec serve`, `start_instance` and
    `roll`); without a store the server uses $MOVIEREC_STORE or the default."""
    args = ["--http_port", str(port), "--bind_host", host, "--workers", str(workers),
            "--poll_seconds", str(poll_seconds), "--drain_seconds", str(drain_seconds)]
    return (["--store", str(store)] if store else []) + args + (["--request_log", request_log] if request_log else [])


def start_instance(serve_args: list[str], ready_file: str | os.PathLike, *, log_file=None) -> subprocess.Popen:
    """Start `python -m predictor <serve_args>` as a new instance (does not wait)."""
    Path(ready_file).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "predictor", *serve_args, "--ready_file", str(ready_file)]
    return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT if log_file else None)


def wait_ready(proc: subprocess.Popen, ready_file: str | os.PathLike, timeout: float = 120.0) -> None:
    """Block until the instance wrote its ready file; raise if it died or timed out."""
    deadline = time.monotonic() + timeout
    while not Path(ready_file).exists():
        if proc.poll() is not None:
            raise RuntimeError(f"server instance exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"server instance not ready after {timeout}s")
        time.sleep(0.05)


def stop_instance(proc: subprocess.Popen, timeout: float = 60.0) -> int:
    """Stop an instance gracefully (SIGTERM: drain, finish in-flight requests) and reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def roll(old: subprocess.Popen, serve_args: list[str], ready_file: str | os.PathLike, *,
         log_file=None, timeout: float = 120.0) -> subprocess.Popen:
    """Replace a running instance by a new one on the same port without dropping a request.

    Starts the new instance (it inherits the listening socket), waits until it is ready, then
    stops the old one gracefully. Returns the new instance's process."""
    new = start_instance(serve_args, ready_file, log_file=log_file)
    try:
        wait_ready(new, ready_file, timeout)
    except BaseException:
        stop_instance(new)
        raise
    stop_instance(old)
    return new
