"""The artifact store: one interface over a local directory and any S3 endpoint (MinIO, SeaweedFS).

Everything the pipeline and the predictor keep lives here: event snapshots, dead letters,
prepared datasets, model versions and the rollout state. Keys are '/'-separated relative paths;
`components.core.layout` says which key holds what.

    open_store("./.movierec/store")      # a local directory (the default)
    open_store("file:/var/lib/movierec") # the same, explicit
    open_store("s3://movierec/prod")     # bucket 'movierec', every key under 'prod/'

S3 settings come from the environment, the names KServe's storage initializer and boto use:
`AWS_ENDPOINT_URL` (e.g. http://minio:9000), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_REGION` (optional). Writes are atomic: a reader sees the old object or the new one, never
a torn one (rename on disk; a single PUT on S3).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from components.core.errors import NotFound, UserError

DEFAULT_STORE = ".movierec/store"
STORE_ENV = "MOVIEREC_STORE"


class StoreError(RuntimeError):
    """The store cannot be reached or refused an operation; the message says which and why."""


class ArtifactStore(ABC):
    """Bytes under keys. Subclasses implement five primitives; helpers build on them."""

    uri: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write `data` under `key` atomically, replacing any previous object."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read the object under `key`; raise KeyError if there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under `prefix` (recursively), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object under `key`; no error if there is none."""

    def put_json(self, key: str, obj: Any) -> None:
        self.put_bytes(key, json.dumps(obj, indent=2, sort_keys=True).encode())

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        self.put_bytes(key, Path(path).read_bytes())

    def get_file(self, key: str, path: str | os.PathLike) -> Path:
        """Copy the object under `key` to a local file (atomically) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, self.get_bytes(key))
        return path

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def iter_children(self, prefix: str) -> Iterator[str]:
        """The distinct names one level under `prefix` ('models/' -> version names)."""
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        seen: set[str] = set()
        for key in self.list(prefix):
            child = key[len(prefix):].split("/", 1)[0]
            if child not in seen:
                seen.add(child)
                yield child


def _check_key(key: str) -> str:
    # Empty and '.' segments are refused too: 'a//b' or 'a/' would name one file on disk and
    # another object on S3.
    if not key or "\\" in key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid store key {key!r}: use a relative '/'-separated path")
    return key


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable: a rename, a new file, a deletion survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file, fsync it, rename it over `path`, fsync the folder.

    Without the folder's fsync the rename can be lost in a power failure after the caller went on
    (ingest commits a Kafka offset once the snapshot is "written"): the data would be gone."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _make_dirs(folder: Path, root: Path) -> None:
    """mkdir -p, then fsync the parent of every folder created, so that the new path is durable."""
    missing = []
    while not folder.is_dir() and folder != root and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(exist_ok=True)
        fsync_dir(created.parent)


class LocalStore(ArtifactStore):
    """A directory on disk. Writes go to a temporary file in the same folder, then rename; the
    file and its folder are fsynced, so what a put or delete returned from survives a power loss."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True):
        self.root = Path(root).resolve()
        if not create and not self.root.is_dir():
            raise NotFound(f"no artifact store at {self.root}: check --store or ${STORE_ENV} "
                           "(a path, file:PATH or s3://BUCKET/PREFIX)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.uri = f"file:{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        _make_dirs(path.parent, self.root)
        _atomic_write(path, data)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        if prefix:
            _check_key(prefix.rstrip("/"))  # never walk outside the root
        base = self.root / prefix if prefix else self.root
        start = base if base.is_dir() else base.parent
        if not start.exists():
            return []
        keys = []
        for p in start.rglob("*"):
            if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp")):  # in-flight writes
                key = p.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)  # a deleted snapshot must not come back after a crash

    def local_path(self, key: str) -> Path:
        """Where a key lives on disk (for readers that want a path, such as pyarrow)."""
        return self._path(key)


class S3Store(ArtifactStore):
    """A bucket (and optional prefix) on any S3 endpoint, through the `minio` client.

    Connection failures surface within seconds as `StoreError`, not as a hang: the client gets
    short timeouts and few retries.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None,
                 access_key: str | None = None, secret_key: str | None = None,
                 region: str | None = None, create_bucket: bool = True, timeout: float = 5.0):
        import urllib3
        from minio import Minio

        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT")
        if not endpoint:
            raise StoreError("s3 store needs an endpoint: set AWS_ENDPOINT_URL (e.g. http://minio:9000)")
        parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")

        def client(read_timeout: float, retries: urllib3.Retry) -> Minio:
            http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=read_timeout),
                                       retries=retries, maxsize=16)
            return Minio(parsed.netloc, access_key=access_key or os.environ.get("AWS_ACCESS_KEY_ID"),
                         secret_key=secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY"),
                         secure=parsed.scheme == "https", region=region or os.environ.get("AWS_REGION") or None,
                         http_client=http)

        # Data calls may read large objects slowly; the first call (the bucket probe) must not: an
        # endpoint that accepts connections but never answers fails it in `timeout` s, not 3 x 30 s.
        self.client = client(max(timeout, 30.0), urllib3.Retry(total=2, backoff_factor=0.2,
                                                               status_forcelist=[500, 502, 503, 504]))
        probe = client(timeout, urllib3.Retry(total=2, read=0, backoff_factor=0.2))
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint = endpoint
        from minio.error import S3Error

        try:
            if not probe.bucket_exists(bucket):
                if not create_bucket:
                    raise StoreError(f"bucket {bucket!r} does not exist at {endpoint}")
                probe.make_bucket(bucket)
        except StoreError:
            raise
        except S3Error as exc:
            # A service identity with the narrowest policy may list and use its prefixes without the
            # right to look at the bucket itself (a HEAD answers a bare 403, even to a wrong secret):
            # listing proves the credentials, with the server's own error code when they are wrong.
            if exc.code != "AccessDenied":
                raise StoreError(f"cannot reach S3 endpoint {endpoint} (bucket {bucket!r}): {exc}") from exc
            try:
                next(iter(probe.list_objects(bucket, prefix=self.prefix or None)), None)
            except Exception as exc2:
                raise StoreError(f"cannot use bucket {bucket!r} at {endpoint}: {exc2}") from exc2
        except Exception as exc:  # urllib3 MaxRetryError, S3Error, ...
            raise StoreError(f"cannot reach S3 endpoint {endpoint} (bucket {bucket!r}): {exc}") from exc

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def _call(self, what: str, fn, *args, **kwargs):
        from minio.error import S3Error

        try:
            return fn(*args, **kwargs)
        except S3Error:
            raise
        except Exception as exc:
            raise StoreError(f"S3 {what} failed at {self.endpoint}: {exc}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("put", self.client.put_object, self.bucket, self._key(key), io.BytesIO(data), len(data))

    def get_bytes(self, key: str) -> bytes:
        from minio.error import S3Error

        try:
            resp = self._call("get", self.client.get_object, self.bucket, self._key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise KeyError(key) from None
            raise StoreError(f"S3 get {key!r} failed: {exc}") from exc
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self._call("stat", self.client.stat_object, self.bucket, self._key(key))
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise StoreError(f"S3 stat {key!r} failed: {exc}") from exc

    def list(self, prefix: str = "") -> list[str]:
        objects = self._call("list", lambda: list(
            self.client.list_objects(self.bucket, prefix=self.prefix + prefix, recursive=True)))
        return sorted(o.object_name[len(self.prefix):] for o in objects if not o.is_dir)

    def delete(self, key: str) -> None:
        self._call("delete", self.client.remove_object, self.bucket, self._key(key))


class StoreURIError(UserError, ValueError):
    """A store URI that names no store this module can open."""


def open_store(uri: str | os.PathLike | None = None, *, must_exist: bool = False) -> ArtifactStore:
    """Open the store at `uri`, or at `$MOVIEREC_STORE`, or at the local default.

    Commands that only read pass `must_exist=True`: a mistyped path is then `NotFound` (and an
    absent bucket a `StoreError`) instead of a new, empty store."""
    uri = str(uri or os.environ.get(STORE_ENV) or DEFAULT_STORE)
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise StoreURIError(f"s3 store URI needs a bucket: {uri!r}")
        return S3Store(parsed.netloc, parsed.path, create_bucket=not must_exist)
    if uri.startswith("file://"):
        return LocalStore(urlparse(uri).path, create=not must_exist)
    if uri.startswith("file:"):
        return LocalStore(uri[len("file:"):], create=not must_exist)
    if "://" in uri:
        raise StoreURIError(f"unsupported store URI {uri!r}: use a path, file:PATH or s3://BUCKET/PREFIX")
    return LocalStore(uri, create=not must_exist)
