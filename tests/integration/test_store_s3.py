"""The artifact store against a real S3 server (SeaweedFS) through the minio client: the same
semantics as the local store, real authentication, and bounded failures."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from components.core.store import S3Store, StoreError, open_store

pytestmark = pytest.mark.integration


def test_put_get_list_exists_delete(s3_store):
    assert s3_store.list() == []
    s3_store.put_bytes("models/v1/card.json", b'{"version": "v1"}')
    s3_store.put_bytes("models/v1/factors.npz", bytes(range(256)) * 100)
    s3_store.put_bytes("models/v2/card.json", b"{}")
    s3_store.put_bytes("rollout.json", b"{}")
    assert s3_store.get_bytes("models/v1/factors.npz") == bytes(range(256)) * 100
    assert s3_store.list("models/v1/") == ["models/v1/card.json", "models/v1/factors.npz"]
    assert s3_store.list() == ["models/v1/card.json", "models/v1/factors.npz", "models/v2/card.json", "rollout.json"]
    assert list(s3_store.iter_children("models")) == ["v1", "v2"]
    assert s3_store.exists("rollout.json") and not s3_store.exists("models/v1")
    s3_store.delete("rollout.json")
    s3_store.delete("rollout.json")  # deleting what is gone is fine
    assert not s3_store.exists("rollout.json")
    with pytest.raises(KeyError):
        s3_store.get_bytes("rollout.json")
    assert s3_store.delete_prefix("models/") == 3 and s3_store.list() == []


def test_empty_object_and_json(s3_store):
    s3_store.put_bytes("empty", b"")
    assert s3_store.get_bytes("empty") == b""
    obj = {"stable": "v1", "canary": None, "canary_percent": 12.5, "title": "Amélie"}
    s3_store.put_json("rollout.json", obj)
    assert s3_store.get_json("rollout.json") == obj


def test_files(s3_store, tmp_path):
    src = tmp_path / "data.parquet"
    src.write_bytes(b"PAR1" + bytes(5000) + b"PAR1")
    s3_store.put_file("events/x.parquet", src)
    assert s3_store.get_file("events/x.parquet", tmp_path / "copy" / "x.parquet").read_bytes() == src.read_bytes()


def test_prefix_store_keeps_its_keys_under_the_prefix(s3, s3_env):
    store = open_store(f"s3://{s3_env}/team-a/prod")
    other = open_store(f"s3://{s3_env}/team-b")
    store.put_bytes("rollout.json", b"a")
    other.put_bytes("rollout.json", b"b")
    assert store.uri == f"s3://{s3_env}/team-a/prod"
    assert store.list() == ["rollout.json"] and store.get_bytes("rollout.json") == b"a"
    names = sorted(o.object_name for o in s3.client().list_objects(s3_env, recursive=True))
    assert names == ["team-a/prod/rollout.json", "team-b/rollout.json"]


def test_invalid_keys_never_reach_the_server(s3_store):
    for key in ("", "/abs", "a/../b", "a//b"):
        with pytest.raises(ValueError):
            s3_store.put_bytes(key, b"x")


def test_overwrite_is_atomic_for_readers(s3_store):
    """A reader racing a writer sees one complete version or the other, never a torn object."""
    versions = [bytes([i]) * 300_000 for i in range(3)]
    s3_store.put_bytes("model.bin", versions[0])
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        i = 0
        try:
            while not stop.is_set():
                i += 1
                s3_store.put_bytes("model.bin", versions[i % len(versions)])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    reads = []
    try:
        for _ in range(20):
            reads.append(s3_store.get_bytes("model.bin"))
    finally:
        stop.set()
        thread.join(30)
    assert not errors
    assert all(r in versions for r in reads)


def test_wrong_credentials_are_refused(s3, s3_env):
    with pytest.raises(StoreError, match="SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied"):
        S3Store(s3_env, access_key=s3.access_key, secret_key="x" * 40)
    with pytest.raises(StoreError, match="InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied"):
        S3Store(s3_env, access_key="NOSUCHKEY0000000000", secret_key=s3.secret_key)


def test_wrong_credentials_on_an_existing_bucket(s3, s3_store, monkeypatch):
    s3_store.put_bytes("k", b"v")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y" * 40)
    with pytest.raises(StoreError):
        open_store(s3_store.uri)


def test_missing_bucket_without_create(s3_env):
    with pytest.raises(StoreError, match="does not exist"):
        S3Store(s3_env, create_bucket=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_fails_fast(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot reach S3 endpoint"):
        open_store("s3://movierec/prod")
    assert time.monotonic() - started < 10


def test_endpoint_that_never_answers_fails_within_the_timeout():
    """A server that accepts connections but never answers (hung, or not HTTP) must not hang us."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(StoreError, match="cannot reach S3 endpoint"):
            S3Store("movierec", endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}", access_key="a",
                    secret_key="b", timeout=2.0)
        assert time.monotonic() - started < 10


def test_server_restart_keeps_objects(s3, s3_store):
    s3_store.put_bytes("models/v1/card.json", b"{}")
    s3.stop()
    s3.start()
    assert s3_store.get_bytes("models/v1/card.json") == b"{}"
