"""The DVC data hash a model card records: from dvc.lock under `dvc repro`, or the override."""

from __future__ import annotations

import yaml

from components.training.dvc_provenance import DVC_HASH_ENV, dvc_data_hash


def _lock(root, outs):
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "preprocess": {"cmd": "movierec preprocess", "outs": outs}}}))


def test_outside_dvc_the_hash_is_empty(monkeypatch, tmp_path):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv(DVC_HASH_ENV, raising=False)
    assert dvc_data_hash(tmp_path / "data" / "dataset") == ""


def test_under_dvc_the_hash_comes_from_the_lock(monkeypatch, tmp_path):
    monkeypatch.delenv(DVC_HASH_ENV, raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    _lock(tmp_path, [{"path": "data/dataset", "hash": "md5", "md5": "abc123.dir", "nfiles": 6}])
    assert dvc_data_hash("data/dataset") == "abc123.dir"
    assert dvc_data_hash(tmp_path / "data" / "dataset") == "abc123.dir"
    assert dvc_data_hash("data/other") == ""


def test_missing_or_broken_lock_gives_empty(monkeypatch, tmp_path):
    monkeypatch.delenv(DVC_HASH_ENV, raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert dvc_data_hash(tmp_path / "data") == ""
    (tmp_path / "dvc.lock").write_text("stages: [unclosed")
    assert dvc_data_hash(tmp_path / "data") == ""


def test_the_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    _lock(tmp_path, [{"path": "data/dataset", "md5": "abc123.dir"}])
    monkeypatch.setenv(DVC_HASH_ENV, "given.dir")
    assert dvc_data_hash(tmp_path / "data" / "dataset") == "given.dir"
