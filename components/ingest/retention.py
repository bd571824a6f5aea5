"""Retention of event snapshots: expired days are deleted, but only once online evaluation has read them.

A day partition (`events/kind=*/day=D/`, `deadletter/day=D/`) is deleted when it lies entirely
before both the retention window (`now - keep_days`) and online evaluation's watermark
(`online/watermark.json`, field `consumed_until`). Without a watermark, or with one later than
the clock, nothing is deleted: data that online evaluation has not seen is never expired. Dead
letters of batches without a valid event are filed under the day they were ingested. The topic side uses Kafka's own retention
(`retention.ms` on the topic), set when the topic is created.

Event times carry no zone (the log contract); `now` and a zoned watermark are taken in UTC.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from components.core import layout
from components.core.store import ArtifactStore

log = logging.getLogger(__name__)


@dataclass
class RetentionReport:
    cutoff: str | None  # days strictly before this date are expired; None: nothing may be
    watermark: str | None
    deleted_days: list[str] = field(default_factory=list)
    deleted_objects: int = 0
    kept_days: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def read_watermark(store: ArtifactStore) -> datetime | None:
    """How far online evaluation has consumed the events, or None if it has not recorded it."""
    if not store.exists(layout.ONLINE_WATERMARK):
        return None
    try:
        value = store.get_json(layout.ONLINE_WATERMARK).get("consumed_until")
        return _naive_utc(datetime.fromisoformat(value)) if value else None
    except (ValueError, TypeError, AttributeError) as exc:  # unreadable: as if there were none
        log.warning("online evaluation's watermark %s is unreadable (%s): treated as missing",
                    layout.ONLINE_WATERMARK, exc)
        return None


def _undated_days(keys: list[str]) -> dict[str, str]:
    """Days for dead letters filed under `day=unknown` (older versions did, for batches without a
    valid event): the day of the next dated snapshot of the same source in the log, which is no
    older than they are. One with nothing after it yet gets none (kept)."""
    undated = [k for k in keys if k.startswith(layout.deadletter_prefix()) and layout.day_of_key(k) is None]
    if not undated:
        return {}
    dated: dict[str, list[tuple[int, str]]] = {}
    for key in keys:
        if (day := layout.day_of_key(key)) and (found := layout.range_of_key(key)):
            dated.setdefault(found[0], []).append((found[1], day))
    for firsts in dated.values():
        firsts.sort()
    days = {}
    for key in undated:
        if (found := layout.range_of_key(key)) is None:
            continue
        source, _, last = found
        firsts = dated.get(source, [])
        i = bisect.bisect_right(firsts, (last, "\uffff"))
        if i < len(firsts):
            days[key] = firsts[i][1]
    return days


def expire_snapshots(store: ArtifactStore, keep_days: float, *, now: datetime | None = None,
                     dry_run: bool = False) -> RetentionReport:
    """Delete snapshot and dead-letter days before min(now - keep_days, watermark); report what went."""
    if keep_days < 0:
        raise ValueError("keep_days must be >= 0")
    now = _naive_utc(now) if now else datetime.now(UTC).replace(tzinfo=None)
    watermark = read_watermark(store)
    report = RetentionReport(cutoff=None, watermark=watermark.isoformat() if watermark else None, dry_run=dry_run)
    keys = [k for prefix in layout.snapshot_prefixes() for k in store.list(prefix)]
    by_day: dict[str, list[str]] = {}
    undated = _undated_days(keys)
    for key in keys:
        day = layout.day_of_key(key) or undated.get(key)
        if day:
            by_day.setdefault(day, []).append(key)
    if watermark is None or watermark > now:
        # A watermark past the clock says nothing about what was evaluated (an event stamped in the
        # future moved it there): falling back to the clock could delete days not yet evaluated.
        log.warning("online evaluation's watermark (%s) is %s: no snapshot is expired", layout.ONLINE_WATERMARK,
                    "not recorded" if watermark is None else f"later than the clock ({watermark.isoformat()})")
        report.kept_days = sorted(by_day)
        return report
    cutoff = min(now - timedelta(days=keep_days), watermark).date().isoformat()
    report.cutoff = cutoff
    for day in sorted(by_day):
        if day < cutoff:
            report.deleted_days.append(day)
            report.deleted_objects += len(by_day[day])
            if not dry_run:
                for key in by_day[day]:
                    store.delete(key)
        else:
            report.kept_days.append(day)
    log.info("retention: %s %d objects of %d days before %s (window %s days, watermark %s)",
             "would delete" if dry_run else "deleted", report.deleted_objects, len(report.deleted_days),
             cutoff, keep_days, report.watermark)
    return report
