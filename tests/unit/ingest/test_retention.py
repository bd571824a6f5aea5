"""Retention: expired snapshot days go only once online evaluation has consumed them."""

from __future__ import annotations

import json
from datetime import datetime

from typer.testing import CliRunner

from components.core import layout
from components.core.store import LocalStore
from components.ingest.retention import expire_snapshots
from movierec.cli import app

DAYS = ["2026-03-10", "2026-03-11", "2026-03-12", "2026-03-13", "2026-03-14"]


def fill(store) -> None:
    for day in DAYS:
        for kind in ("watch", "rate"):
            store.put_bytes(layout.snapshot_key(kind, day, "t-0", 0, 9), b"x")
        store.put_bytes(layout.deadletter_key(day, "t-0", 0, 9), b"x")
    store.put_json(layout.checkpoint_key("file-x"), {"line": 1})


def days_left(store) -> list[str]:
    return sorted({layout.day_of_key(k) for k in store.list() if layout.day_of_key(k)})


def test_without_a_watermark_nothing_is_deleted(tmp_path):
    store = LocalStore(tmp_path)
    fill(store)
    report = expire_snapshots(store, 1, now=datetime(2026, 4, 1))
    assert report.cutoff is None and report.deleted_objects == 0 and days_left(store) == DAYS


def test_the_watermark_holds_back_expired_days(tmp_path):
    store = LocalStore(tmp_path)
    fill(store)
    store.put_json(layout.ONLINE_WATERMARK, {"consumed_until": "2026-03-12T08:00:00"})
    report = expire_snapshots(store, 2, now=datetime(2026, 4, 1))
    assert report.cutoff == "2026-03-12" and report.deleted_days == ["2026-03-10", "2026-03-11"]
    assert report.deleted_objects == 6 and days_left(store) == DAYS[2:]
    assert store.exists(layout.checkpoint_key("file-x"))


def test_the_window_holds_back_consumed_days(tmp_path):
    store = LocalStore(tmp_path)
    fill(store)
    store.put_json(layout.ONLINE_WATERMARK, {"consumed_until": "2026-03-14T05:00:00+00:00"})
    report = expire_snapshots(store, 2.5, now=datetime(2026, 3, 14, 6, 0))  # window starts 03-11 18:00
    assert report.deleted_days == ["2026-03-10"] and days_left(store) == DAYS[1:]


def test_a_watermark_later_than_the_clock_expires_nothing(tmp_path):
    """One event stamped in 2099 once moved the watermark there: it says nothing about what was
    evaluated, so the window alone must not decide (it would delete unevaluated days)."""
    store = LocalStore(tmp_path)
    fill(store)
    store.put_json(layout.ONLINE_WATERMARK, {"consumed_until": "2099-01-01T00:00:00"})
    report = expire_snapshots(store, 1, now=datetime(2026, 3, 14, 6, 0))
    assert report.cutoff is None and report.deleted_objects == 0 and days_left(store) == DAYS


def test_dry_run_and_command(tmp_path):
    store = LocalStore(tmp_path / "s")
    fill(store)
    store.put_json(layout.ONLINE_WATERMARK, {"consumed_until": "2026-03-14T00:00:00"})
    assert expire_snapshots(store, 0, now=datetime(2026, 5, 1), dry_run=True).deleted_objects == 12
    assert days_left(store) == DAYS
    result = CliRunner().invoke(app, ["retention", "--keep-days", "0", "--store", str(tmp_path / "s"),
                                      "--now", "2026-05-01T00:00:00"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["deleted_days"] == DAYS[:4]
    assert days_left(store) == ["2026-03-14"]


def test_an_unreadable_watermark_expires_nothing_and_does_not_crash(tmp_path):
    store = LocalStore(tmp_path)
    fill(store)
    for bad in (b"{not json", b'{"consumed_until": "yesterday"}', b'["a list"]'):
        store.put_bytes(layout.ONLINE_WATERMARK, bad)
        report = expire_snapshots(store, 1, now=datetime(2026, 4, 1))
        assert report.cutoff is None and report.deleted_objects == 0 and days_left(store) == DAYS


def test_dead_letters_filed_under_an_unknown_day_expire_with_the_next_snapshot_of_their_source(tmp_path):
    """Older versions filed them under day=unknown, which no cutoff ever reached."""
    store = LocalStore(tmp_path)
    fill(store)  # t-0 offsets 0-9 on every day
    store.put_bytes(layout.snapshot_key("watch", "2026-03-12", "t-1", 20, 29), b"x")
    old = layout.deadletter_key("unknown", "t-1", 10, 19)  # followed by 2026-03-12 in t-1's log
    newest = layout.deadletter_key("unknown", "t-1", 30, 39)  # nothing after it yet: kept
    store.put_bytes(old, b"x")
    store.put_bytes(newest, b"x")
    store.put_json(layout.ONLINE_WATERMARK, {"consumed_until": "2026-03-12T08:00:00"})
    expire_snapshots(store, 1, now=datetime(2026, 4, 1))
    assert store.exists(old)  # 03-12 is not expired yet
    store.put_json(layout.ONLINE_WATERMARK, {"consumed_until": "2026-03-13T08:00:00"})
    report = expire_snapshots(store, 1, now=datetime(2026, 4, 1))
    assert "2026-03-12" in report.deleted_days and not store.exists(old) and store.exists(newest)
