"""A container engine for the integration tests: Debian's `dockerd`, and a base image made from Debian packages.

`DockerEngine` starts its own `dockerd` (as root) with no bridge network, no iptables and its API on
a unix socket in a temporary folder, so it never touches a system daemon; containers run with
`--network host` and every connection stays on 127.0.0.1. Images and build cache live in
`~/.cache/movierec/docker` (a second run builds from cache) while one session holds its lock; a
concurrent session gets a fresh data root of its own.

Docker Hub is not reachable here, so `base_image()` makes the base the image builds start FROM:
`mmdebstrap --variant=minbase` with Debian's Python 3.11 (the minor version of the pinned official
image), cached as a tarball keyed by its package list and imported once per engine.

    with DockerEngine() as engine:
        base = base_image(engine)          # e.g. movierec-base:bookworm-1a2b3c4d5e6f
        engine.docker("run", "--rm", "--network", "host", base, "python3", "--version")
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.servers._process import ServerError, ServerProcess, require_executable, run_checked

CACHE = Path(os.environ.get("MOVIEREC_CACHE", Path.home() / ".cache" / "movierec"))
BASE_SUITE = "bookworm"
# libgomp1: the OpenMP runtime of implicit's ALS/BPR (the component image installs it when its base lacks it)
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates", "libgomp1")
BASE_PYTHON = "3.11"  # the minor version of the pinned official base image (python:3.11.7-slim-bookworm)
BASE_REPO = "movierec-base"
_INSTALL_HINT = "install Debian's container engine: apt-get install docker.io mmdebstrap"


def docker_cli() -> str:
    return require_executable("docker", _INSTALL_HINT)


class DockerEngine(ServerProcess):
    """`dockerd` on a private unix socket; `.env()` gives DOCKER_HOST for the docker CLI and SDK."""

    name = "dockerd"
    ready_timeout = 60.0
    stop_timeout = 30.0

    def __init__(self, workdir: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None):
        super().__init__(workdir)
        self.socket = self.workdir / "docker.sock"
        self._requested_root = Path(data_root) if data_root else None
        self.data_root: Path | None = None
        self._lock = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    def _prepare(self) -> None:
        if os.geteuid() != 0:
            raise ServerError("dockerd runs as root: run the integration tests as root (as CI does)")
        require_executable("dockerd", _INSTALL_HINT)
        docker_cli()
        self.data_root = self._requested_root or self._shared_data_root()
        self.data_root.mkdir(parents=True, exist_ok=True)

    def _shared_data_root(self) -> Path:
        """The cached data root if no other session uses it, else a fresh one in the work dir."""
        CACHE.mkdir(parents=True, exist_ok=True)
        lock = open(CACHE / "docker.lock", "w")  # noqa: SIM115 - held for this engine's lifetime
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return self.workdir / "data"
        self._lock = lock
        return CACHE / "docker"

    def _command(self) -> list[str]:
        return ["dockerd", "--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
                "--userland-proxy=false", "--shutdown-timeout=10", f"--host={self.host}",
                f"--data-root={self.data_root}", f"--exec-root={self.workdir / 'exec'}",
                f"--pidfile={self.workdir / 'docker.pid'}", "--log-level=warn"]

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}

    def _ready(self) -> bool:
        return subprocess.run([docker_cli(), "--host", self.host, "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, timeout=10).returncode == 0

    def docker(self, *args: str, timeout: float = 600.0, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run the docker CLI against this engine (output captured as text)."""
        cmd = [docker_cli(), "--host", self.host, *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  stdin=kwargs.pop("stdin", subprocess.DEVNULL), **kwargs)
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"docker {' '.join(args[:3])} did not finish within {timeout:.0f} s") from exc
        if check and done.returncode != 0:
            raise ServerError(f"docker {' '.join(args)} failed (exit {done.returncode}):\n"
                              f"{(done.stdout + done.stderr)[-3000:]}")
        return done

    def image_exists(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0

    def inspect(self, ref: str) -> dict:
        return json.loads(self.docker("image", "inspect", ref).stdout)[0]

    def stop(self) -> None:
        super().stop()
        # dockerd leaves the bind mount of its default network namespace behind in exec-root.
        for mount in _mounts_under(self.workdir):
            subprocess.run(["umount", "--lazy", mount], capture_output=True, timeout=30)

    def close(self) -> None:
        super().close()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def _mounts_under(folder: Path) -> list[str]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    prefix = f"{folder}/"
    return sorted((m for m in (line.split()[1] for line in lines) if m.startswith(prefix)), reverse=True)


def base_key(suite: str = BASE_SUITE, packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    return hashlib.sha256(json.dumps([suite, "minbase", sorted(packages)]).encode()).hexdigest()[:12]


def base_tarball(suite: str = BASE_SUITE, packages: tuple[str, ...] = BASE_PACKAGES, cache: Path = CACHE) -> Path:
    """The root file system tarball of the base (mmdebstrap, ~30 s once; then from the cache)."""
    target = cache / "base" / f"debian-{suite}-{base_key(suite, packages)}.tar"
    if target.exists():
        return target
    mmdebstrap = require_executable("mmdebstrap", _INSTALL_HINT)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent session waits for the same tarball
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            partial = Path(tmp) / target.name
            run_checked([mmdebstrap, "--variant=minbase", "--quiet", f"--include={','.join(packages)}",
                         suite, str(partial)], "mmdebstrap (base image root file system)", timeout=900)
            partial.rename(target)
    return target


def base_image(engine: DockerEngine, suite: str = BASE_SUITE, packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    """A base image in `engine` made from Debian packages, with Python `BASE_PYTHON`; its reference."""
    ref = f"{BASE_REPO}:{suite}-{base_key(suite, packages)}"
    if not engine.image_exists(ref):
        tarball = base_tarball(suite, packages)
        engine.docker("import", "--change", "ENV LANG=C.UTF-8", "--message", f"mmdebstrap minbase {suite}",
                      str(tarball), ref, timeout=300)
    version = engine.docker("run", "--rm", "--network", "host", ref, "python3", "-c",
                            "import sys; print('%d.%d' % sys.version_info[:2])", timeout=120).stdout.strip()
    if version != BASE_PYTHON:
        raise ServerError(f"the base image {ref} has Python {version}, the images need {BASE_PYTHON}")
    return ref


def prune(engine: DockerEngine, timeout: float = 300) -> None:
    """Drop dangling images left by rebuilt tags (the cached data root would grow otherwise); best
    effort: a slow disk leaves them for the next session."""
    try:
        engine.docker("image", "prune", "--force", check=False, timeout=timeout)
    except ServerError as exc:
        print(f"warning: {exc}", file=sys.stderr)


__all__ = ["DockerEngine", "base_image", "base_tarball", "prune"]
