"""The store layout: keys are pure functions of their inputs, valid store keys, and sort by offset."""

from __future__ import annotations

from datetime import date

import pytest

from components.core import layout
from components.core.events import EVENT_KINDS
from components.core.store import _check_key


def test_snapshot_key_is_a_pure_function_of_its_inputs():
    key = layout.snapshot_key("watch", date(2026, 3, 18), "kafka-events-0", 5, 1999)
    assert key == "events/kind=watch/day=2026-03-18/kafka-events-0-000000000005-000000001999.parquet"
    assert layout.snapshot_key("watch", "2026-03-18", "kafka-events-0", 5, 1999) == key


def test_snapshot_keys_sort_by_offset():
    keys = [layout.snapshot_key("rate", "2026-03-18", "log", first, first + 9) for first in (0, 10, 100, 1000, 10**9)]
    assert sorted(keys) == keys


def test_deadletter_and_checkpoint_keys():
    assert layout.deadletter_key("2026-03-18", "log", 0, 9) == \
        "deadletter/day=2026-03-18/log-000000000000-000000000009.parquet"
    assert layout.checkpoint_key("file=events.log") == "ingest/checkpoints/file=events.log.json"


def test_model_keys():
    assert layout.model_prefix("svd-20260318-0612") == "models/svd-20260318-0612"
    assert layout.model_key("v1", "card.json") == "models/v1/card.json"
    assert layout.CHECKSUMS not in layout.MODEL_FILES


def test_prefixes_and_day_of_key():
    assert layout.events_prefix() == "events/"
    assert layout.events_prefix("rate") == "events/kind=rate/"
    key = layout.snapshot_key("rate", "2026-03-18", "log", 0, 1)
    assert key.startswith(layout.events_prefix("rate"))
    assert layout.day_of_key(key) == "2026-03-18"
    assert layout.day_of_key(layout.deadletter_key("2026-01-02", "log", 0, 1)) == "2026-01-02"
    assert layout.day_of_key("models/v1/card.json") is None


@pytest.mark.parametrize("version", ["", "V1", "-v1", ".v1", "v1/x", "v 1", "v1\n", "x" * 129, "../v1"])
def test_invalid_versions_are_refused(version):
    with pytest.raises(ValueError):
        layout.check_version(version)
    with pytest.raises(ValueError):
        layout.model_key(version, "card.json")


@pytest.mark.parametrize("version", ["v1", "svd-20260318.1", "0", "a" * 128, "svdpp_k50"])
def test_valid_versions(version):
    assert layout.check_version(version) == version


@pytest.mark.parametrize("source", ["", "a/b", "a b", "a\n", "ü", "a,b"])
def test_invalid_sources_are_refused(source):
    with pytest.raises(ValueError):
        layout.checkpoint_key(source)
    with pytest.raises(ValueError):
        layout.snapshot_key("watch", "2026-03-18", source, 0, 1)
    with pytest.raises(ValueError):
        layout.deadletter_key("2026-03-18", source, 0, 1)


def test_every_key_is_a_valid_store_key():
    keys = [layout.snapshot_key(kind, "2026-03-18", "kafka-movielog-2", 0, 10) for kind in EVENT_KINDS]
    keys += [layout.deadletter_key("2026-03-18", "file", 0, 10), layout.checkpoint_key("file"),
             layout.ROLLOUT, layout.ONLINE_WATERMARK]
    keys += [layout.model_key("v1", name) for name in (*layout.MODEL_FILES, layout.CHECKSUMS)]
    for key in keys:
        assert _check_key(key) == key


def test_a_model_version_folder_is_the_card_and_one_npy_per_array():
    assert layout.MODEL_FILES == (layout.MODEL_CARD, *(f"{a}.npy" for a in layout.MODEL_ARRAYS))
    assert set(layout.MASK_ARRAYS).isdisjoint(layout.FACTOR_ARRAYS)          # the serving mask stands apart
    assert set(layout.MODEL_FILES) - set(layout.MODEL_FILES_WITHOUT_MASK) == {f"{a}.npy" for a in layout.MASK_ARRAYS}
    assert layout.array_file("user_factors") == "user_factors.npy"
    assert layout.array_name("user_factors.npy") == "user_factors"
    with pytest.raises(ValueError, match="unknown model array"):
        layout.array_file("../card")
