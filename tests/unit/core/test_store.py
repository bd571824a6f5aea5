"""The artifact store: LocalStore semantics and atomic writes, key validation, `open_store` URIs,
and S3Store's key prefixing and error mapping against an in-memory stand-in for the minio client."""

from __future__ import annotations

import io
import os
import stat
import threading

import pytest

from components.core import store as store_mod
from components.core.store import DEFAULT_STORE, STORE_ENV, LocalStore, S3Store, StoreError, open_store

BAD_KEYS = ["", "/abs/key", "a/../b", "..", "a\\b", "a//b", "a/", "./a", "a/./b"]


def test_put_get_exists_delete(local_store):
    local_store.put_bytes("models/v1/card.json", b"{}")
    assert local_store.get_bytes("models/v1/card.json") == b"{}"
    assert local_store.exists("models/v1/card.json")
    assert not local_store.exists("models/v1")  # a folder is not an object
    local_store.delete("models/v1/card.json")
    assert not local_store.exists("models/v1/card.json")
    local_store.delete("models/v1/card.json")  # deleting what is gone is fine
    with pytest.raises(KeyError):
        local_store.get_bytes("models/v1/card.json")


def test_get_of_a_folder_is_a_missing_key(local_store):
    local_store.put_bytes("a/b", b"x")
    with pytest.raises(KeyError):
        local_store.get_bytes("a")


def test_overwrite_replaces_and_leaves_no_temp_files(local_store):
    for i in range(5):
        local_store.put_bytes("k", f"value {i}".encode())
    assert local_store.get_bytes("k") == b"value 4"
    assert sorted(p.name for p in local_store.root.iterdir()) == ["k"]


def test_failed_write_keeps_the_old_object(local_store, monkeypatch):
    local_store.put_bytes("rollout.json", b"old")

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        local_store.put_bytes("rollout.json", b"new but never complete")
    monkeypatch.undo()
    assert local_store.get_bytes("rollout.json") == b"old"
    assert [p.name for p in local_store.root.iterdir()] == ["rollout.json"]  # temp file removed


def _record_fsyncs(monkeypatch) -> list[tuple[str, str]]:
    """Every fsync as ('dir' | 'file', path), in order."""
    calls, real = [], os.fsync

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        calls.append(("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file", path))
        real(fd)

    monkeypatch.setattr(store_mod.os, "fsync", fsync)
    return calls


def test_a_write_fsyncs_the_file_then_its_folder_and_every_new_folder(local_store, monkeypatch):
    calls = _record_fsyncs(monkeypatch)
    local_store.put_bytes("events/kind=watch/day=2026-03-18/s-1-2.parquet", b"rows")
    root = str(local_store.root)
    day = f"{root}/events/kind=watch/day=2026-03-18"
    # the new folders' entries, the data, then the rename's entry: after a power loss the
    # snapshot is there whenever put_bytes had returned (ingest commits its offset next)
    assert calls[:3] == [("dir", root), ("dir", f"{root}/events"), ("dir", f"{root}/events/kind=watch")]
    assert calls[3][0] == "file" and calls[3][1].startswith(f"{day}/.s-1-2.parquet.")
    assert calls[4:] == [("dir", day)]
    calls.clear()
    local_store.put_bytes("events/kind=watch/day=2026-03-18/s-3-4.parquet", b"rows")
    assert [c[0] for c in calls] == ["file", "dir"] and calls[-1] == ("dir", day)


def test_a_delete_fsyncs_the_folder(local_store, monkeypatch):
    local_store.put_bytes("deadletter/day=2026-03-18/s-1-2.parquet", b"rows")
    calls = _record_fsyncs(monkeypatch)
    local_store.delete("deadletter/day=2026-03-18/s-1-2.parquet")
    assert calls == [("dir", f"{local_store.root}/deadletter/day=2026-03-18")]
    local_store.delete("deadletter/day=2026-03-18/s-1-2.parquet")  # gone already: nothing to sync
    assert len(calls) == 1


def test_readers_never_see_a_torn_object(local_store):
    """A reader racing a writer sees one complete version or the other, never a mix."""
    versions = [bytes([i]) * 400_000 for i in range(4)]
    local_store.put_bytes("big", versions[0])
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            local_store.put_bytes("big", versions[i % len(versions)])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(200):
            assert local_store.get_bytes("big") in versions
    finally:
        stop.set()
        thread.join()


def test_list_is_recursive_sorted_and_prefix_filtered(local_store):
    for key in ["models/v2/card.json", "models/v1/card.json", "models/v1/ids.npz", "modelsx", "rollout.json"]:
        local_store.put_bytes(key, b"x")
    assert local_store.list("models/") == ["models/v1/card.json", "models/v1/ids.npz", "models/v2/card.json"]
    assert local_store.list("models/v1") == ["models/v1/card.json", "models/v1/ids.npz"]
    assert local_store.list("mod") == [*local_store.list("models/"), "modelsx"]  # a string prefix, as on S3
    assert local_store.list("nothing/here/") == []
    assert len(local_store.list()) == 5
    assert list(local_store.iter_children("models")) == ["v1", "v2"]


def test_list_hides_in_flight_temp_files_but_not_keys_ending_in_tmp(local_store):
    local_store.put_bytes("a/data.tmp", b"a real object")
    (local_store.root / "a" / ".data.json.x1y2.tmp").write_bytes(b"half")
    assert local_store.list() == ["a/data.tmp"]


def test_delete_prefix(local_store):
    for key in ["events/kind=watch/a", "events/kind=rate/b", "models/v1/c"]:
        local_store.put_bytes(key, b"x")
    assert local_store.delete_prefix("events/") == 2
    assert local_store.list() == ["models/v1/c"]


def test_json_and_files(local_store, tmp_path):
    obj = {"b": [1, 2.5, None], "a": {"nested": "ü"}}
    local_store.put_json("x/state.json", obj)
    assert local_store.get_json("x/state.json") == obj
    assert local_store.get_bytes("x/state.json").index(b'"a"') < local_store.get_bytes("x/state.json").index(b'"b"')
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(1000))
    local_store.put_file("blobs/src.bin", src)
    out = local_store.get_file("blobs/src.bin", tmp_path / "out" / "dst.bin")
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused(local_store, key):
    for op in (lambda: local_store.put_bytes(key, b"x"), lambda: local_store.get_bytes(key),
               lambda: local_store.exists(key), lambda: local_store.delete(key)):
        with pytest.raises(ValueError, match="invalid store key"):
            op()


@pytest.mark.parametrize("prefix", ["../", "/etc", "a/../../"])
def test_list_never_walks_outside_the_root(local_store, prefix):
    with pytest.raises(ValueError):
        local_store.list(prefix)


def test_local_path_is_inside_the_root(local_store):
    assert local_store.local_path("models/v1/card.json") == local_store.root / "models/v1/card.json"


# -- open_store ---------------------------------------------------------------------------------
def test_open_store_paths_and_file_uris(tmp_path, monkeypatch):
    monkeypatch.delenv(STORE_ENV, raising=False)
    for uri in (tmp_path / "a", str(tmp_path / "a"), f"file:{tmp_path / 'a'}", f"file://{tmp_path / 'a'}"):
        s = open_store(uri)
        assert isinstance(s, LocalStore) and s.root == (tmp_path / "a").resolve()
        assert s.uri == f"file:{(tmp_path / 'a').resolve()}"


def test_open_store_default_and_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STORE_ENV, raising=False)
    assert open_store().root == (tmp_path / DEFAULT_STORE).resolve()
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "from-env"))
    assert open_store().root == (tmp_path / "from-env").resolve()
    assert open_store(tmp_path / "explicit").root == (tmp_path / "explicit").resolve()


@pytest.mark.parametrize("uri", ["s3://", "s3:///prefix", "gs://bucket/x", "http://host/x"])
def test_open_store_refuses_bad_uris(uri):
    with pytest.raises(ValueError):
        open_store(uri)


def test_s3_store_without_endpoint_says_so(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("S3_ENDPOINT", raising=False)
    with pytest.raises(StoreError, match="AWS_ENDPOINT_URL"):
        open_store("s3://bucket/prefix")


# -- S3Store against an in-memory minio stand-in -------------------------------------------------
class FakeMinio:
    """Just the minio.Minio calls S3Store makes, over a dict; `fail` makes every call raise it."""

    instances: list[FakeMinio] = []
    buckets: dict[str, dict[str, bytes]] = {}  # one server behind every client
    fail: Exception | None = None

    def __init__(self, endpoint, access_key=None, secret_key=None, secure=False, region=None, http_client=None):
        self.endpoint, self.access_key, self.secure = endpoint, access_key, secure
        FakeMinio.instances.append(self)

    def _check(self):
        if FakeMinio.fail:
            raise FakeMinio.fail

    def bucket_exists(self, bucket):
        self._check()
        return bucket in self.buckets

    def make_bucket(self, bucket):
        self.buckets[bucket] = {}

    def put_object(self, bucket, name, data, length):
        self._check()
        self.buckets[bucket][name] = data.read(length)

    def get_object(self, bucket, name):
        self._check()
        if name not in self.buckets[bucket]:
            raise _s3_error("NoSuchKey")
        return _Response(self.buckets[bucket][name])

    def stat_object(self, bucket, name):
        self._check()
        if name not in self.buckets[bucket]:
            raise _s3_error("NoSuchKey")
        return object()

    def list_objects(self, bucket, prefix="", recursive=False):
        self._check()
        return [_Obj(k) for k in self.buckets[bucket] if k.startswith(prefix)]

    def remove_object(self, bucket, name):
        self._check()
        self.buckets[bucket].pop(name, None)


class _Response(io.BytesIO):
    def release_conn(self):
        pass


class _Obj:
    def __init__(self, name):
        self.object_name, self.is_dir = name, False


def _s3_error(code):
    from minio.error import S3Error

    return S3Error(None, code, f"{code} message", "/resource", "req", "host")


@pytest.fixture
def fake_s3(monkeypatch):
    import minio

    FakeMinio.instances.clear()
    FakeMinio.buckets.clear()
    FakeMinio.fail = None
    monkeypatch.setattr(minio, "Minio", FakeMinio)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://objects.example:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    return FakeMinio


def test_s3_store_prefixes_keys_and_reads_env(fake_s3):
    s = open_store("s3://movierec/prod/")
    assert isinstance(s, S3Store) and s.uri == "s3://movierec/prod"
    client = fake_s3.instances[-1]
    assert (client.endpoint, client.access_key, client.secure) == ("objects.example:9000", "AKIDEXAMPLE", False)
    s.put_bytes("models/v1/card.json", b"{}")
    assert list(fake_s3.buckets["movierec"]) == ["prod/models/v1/card.json"]
    assert s.get_bytes("models/v1/card.json") == b"{}"
    assert s.list("models/") == ["models/v1/card.json"] and s.exists("models/v1/card.json")
    s.delete("models/v1/card.json")
    assert not s.exists("models/v1/card.json")
    with pytest.raises(KeyError):
        s.get_bytes("models/v1/card.json")
    with pytest.raises(ValueError):
        s.put_bytes("../escape", b"x")


def test_s3_store_maps_failures_to_store_error(fake_s3):
    s = S3Store("bucket", create_bucket=True)
    fake_s3.fail = ConnectionRefusedError("connection refused")
    for op in (lambda: s.put_bytes("k", b"x"), lambda: s.get_bytes("k"), lambda: s.list(), lambda: s.delete("k")):
        with pytest.raises(StoreError, match="objects.example"):
            op()
    fake_s3.fail = _s3_error("AccessDenied")
    with pytest.raises(StoreError, match="AccessDenied"):
        s.get_bytes("k")
    with pytest.raises(StoreError, match="AccessDenied"):
        s.exists("k")


def test_s3_store_missing_bucket_without_create(fake_s3):
    with pytest.raises(StoreError, match="does not exist"):
        S3Store("absent", create_bucket=False)
