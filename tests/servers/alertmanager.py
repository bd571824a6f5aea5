"""A real Alertmanager for the integration tests (Debian's `prometheus-alertmanager` package), and a
local webhook receiver that stands in for Slack: it records every POST it gets.

Alertmanager runs as a plain process on a free 127.0.0.1 port with its data in a temporary folder
and clustering off. Debian's bookworm package is 0.25; the manifests deploy 0.28 (see
manifests/monitoring/README.md).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.servers._process import LOOPBACK, ServerProcess, free_port
from tests.servers.prometheus import binary, http_json

HINT = ("install Debian's package: apt-get install -y --no-install-recommends prometheus-alertmanager "
        "(make test-tools does)")


class AlertmanagerServer(ServerProcess):
    """`alertmanager` on 127.0.0.1 with the given configuration (YAML text)."""

    name = "alertmanager"
    ready_timeout = 60.0

    def __init__(self, config: str, workdir: str | os.PathLike | None = None):
        super().__init__(workdir)
        self.port = free_port()
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_text = config
        self.binary = ""

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _prepare(self) -> None:
        self.binary = binary("prometheus-alertmanager", "alertmanager", hint=HINT)
        self.config_path.write_text(self.config_text)

    def _command(self) -> list[str]:
        return [self.binary, f"--config.file={self.config_path}", f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}", "--cluster.listen-address=", "--log.level=warn"]

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
            return resp.status == 200

    def alerts(self) -> list[dict]:
        return http_json(f"{self.url}/api/v2/alerts")


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps the JSON body of every POST (the Slack stand-in)."""

    def __init__(self):
        received: list[dict] = []
        self.received = received
        self._lock = threading.Lock()
        lock = self._lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                     "body": json.loads(body or b"null")})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, free_port()), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True).start()

    def messages(self) -> list[dict]:
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
