"""A real Prometheus for the integration tests: Debian's `prometheus` package, run as a plain process.

Debian's build (2.42 on bookworm) has no Kubernetes service discovery, so the tests give it static
targets; the manifests deploy Prometheus 3.x (see manifests/monitoring/README.md for what differs).
Data lives in a temporary folder, the web port is a free port on 127.0.0.1, and rule files are
reloaded with `reload()` (the lifecycle API).

    with PrometheusServer(config_text) as prom:
        prom.query("up")
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request

from tests.servers._process import LOOPBACK, ServerError, ServerProcess, free_port

HINT = "install Debian's package: apt-get install -y --no-install-recommends prometheus (make test-tools does)"


def binary(*names: str, hint: str) -> str:
    for name in names:
        if found := shutil.which(name):
            return found
    raise ServerError(f"none of {', '.join(names)} found on PATH: {hint}")


def version(path: str) -> str:
    """The version a Prometheus-project binary reports (`prometheus, version 2.42.0+ds ...` -> 2.42.0)."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    words = (out.stdout + out.stderr).split()
    raw = words[words.index("version") + 1] if "version" in words else ""
    return raw.split("+")[0]


def http_json(url: str, data: bytes | None = None, timeout: float = 5.0):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


class PrometheusServer(ServerProcess):
    """`prometheus` on 127.0.0.1 with the given configuration (YAML text) and rule files."""

    name = "prometheus"
    ready_timeout = 60.0

    def __init__(self, config: str, rule_files: dict[str, str] | None = None,
                 workdir: str | os.PathLike | None = None):
        super().__init__(workdir)
        self.port = free_port()
        self.config_path = self.workdir / "prometheus.yml"
        self.rules_dir = self.workdir / "rules"
        self.config_text, self.rule_files = config, dict(rule_files or {})
        self.binary = ""

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _prepare(self) -> None:
        self.binary = binary("prometheus", hint=HINT)
        self.rules_dir.mkdir(exist_ok=True)
        for name, text in self.rule_files.items():
            (self.rules_dir / name).write_text(text)
        self.config_path.write_text(self.config_text.replace("$RULES_DIR", str(self.rules_dir)))
        promtool = shutil.which("promtool")
        if promtool:  # a config mistake is clearer from promtool than from a server that exits
            check = subprocess.run([promtool, "check", "config", str(self.config_path)],
                                   capture_output=True, text=True, timeout=60)
            if check.returncode != 0:
                raise ServerError(f"promtool rejects the test configuration:\n{check.stdout}{check.stderr}")

    def _command(self) -> list[str]:
        return [self.binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}", "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d", "--log.level=warn"]

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
            return resp.status == 200

    def query(self, expr: str) -> list[dict]:
        """The result of an instant query (a vector's samples, or one scalar as a one-sample list)."""
        body = http_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if body["status"] != "success":
            raise AssertionError(f"query {expr!r} failed: {body}")
        result = body["data"]["result"]
        if body["data"]["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return result

    def targets(self) -> list[dict]:
        return http_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"]

    def alerts(self) -> list[dict]:
        return http_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]

    def rule_groups(self) -> list[dict]:
        return http_json(f"{self.url}/api/v1/rules")["data"]["groups"]
