"""Snapshots written from typed events, for tests that need a store holding known events.

Ingest writes bulk-parsed columns (`snapshots.write_parsed`); tests build their events one by one,
so this helper writes them through the same `write_tables` (same keys, same files).
"""

from __future__ import annotations

from collections.abc import Iterable

from components.core.events import Event, Rejection
from components.core.snapshots import events_to_tables, rejections_to_table, write_tables
from components.core.store import ArtifactStore


def write_batch(store: ArtifactStore, source: str, first: int, last: int,
                events: Iterable[tuple[int, Event]], rejections: Iterable[tuple[int, Rejection]],
                day: str | None = None) -> list[str]:
    """Write one batch (log positions first..last) as snapshots; return the keys written.

    Keys depend only on (kind, day, source, first, last): writing the same batch twice leaves the
    same objects. Rejections go to the dead-letter area under the batch's first event day (or
    `day`, or the day of the batch's first valid event)."""
    return write_tables(store, source, first, last, events_to_tables(events, source),
                        rejections_to_table(rejections, source), day)
