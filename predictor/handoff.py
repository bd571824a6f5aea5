"""Zero-downtime restarts on one machine: a new server instance inherits the old one's socket.

Closing a listening socket resets every connection still waiting in its accept queue, and a new
process cannot bind the port while the old one holds it. So the listening socket itself is
passed on, the way HAProxy and nginx reload: each running instance offers its socket on a Unix
control socket (`<tmp>/movierec-serve-<port>.sock`); a new instance started on the same port
connects there, receives the descriptor (SCM_RIGHTS), loads its models, starts accepting on the
same queue, and only then takes over the control path. When the old instance is stopped it
merely stops accepting and drains - the queue lives on in the new instance, nothing is dropped.

The procedure (`roll()` below, and `movierec serve` by hand):
    1. start the new instance with the same `--port`   (it inherits the socket)
    2. wait until it is ready                           (`--ready_file` appears)
    3. SIGTERM the old instance                         (it drains and exits)
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def control_path(port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"movierec-serve-{port}.sock"


def acquire(host: str, port: int, backlog: int = 2048) -> tuple[socket.socket, bool]:
    """The listening socket for `port`: inherited from a running instance, else freshly bound.

    Returns (socket, inherited)."""
    path = control_path(port)
    if path.exists():
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctl:
                ctl.settimeout(5)
                ctl.connect(str(path))
                _, fds, _, _ = socket.recv_fds(ctl, 64, 1)
            if fds:
                sock = socket.socket(fileno=fds[0])
                if sock.getsockname()[1] == port:
                    log.info("inherited the listening socket of port %d from the running instance", port)
                    return sock, True
                sock.close()
        except OSError as exc:
            log.info("no running instance to inherit port %d from (%s)", port, exc)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock, False


class HandoffOffer:
    """Offers `sock` to successors on the control path until `close()`."""

    def __init__(self, sock: socket.socket, port: int):
        self.sock, self.path = sock, control_path(port)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.bind(str(tmp))
        self.ctl.listen(8)
        os.replace(tmp, self.path)  # take over the path atomically from a predecessor
        self._inode = self.path.stat().st_ino
        self._closed = False
        threading.Thread(target=self._serve, name="socket-handoff", daemon=True).start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.ctl.accept()
            except OSError:
                return
            with conn:
                try:
                    socket.send_fds(conn, [b"movierec"], [self.sock.fileno()])
                except OSError as exc:
                    log.warning("socket handoff failed: %s", exc)

    def close(self) -> None:
        self._closed = True
        try:
            if self.path.stat().st_ino == self._inode:  # still ours: a successor may have replaced it
                self.path.unlink()
        except FileNotFoundError:
            pass
        try:
            self.ctl.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
        except OSError:
            pass
        self.ctl.close()
