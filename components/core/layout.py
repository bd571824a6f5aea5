"""The artifact-store layout: which key holds what. The one place that builds store keys and reads them back.

    events/kind=<kind>/day=<YYYY-MM-DD>/<source>-<first>-<last>.parquet   event snapshots
    deadletter/day=<YYYY-MM-DD>/<source>-<first>-<last>.parquet           rejected lines
    ingest/checkpoints/<source>.json                                      file-source positions
    models/<version>/{factors.npz,ids.npz,card.json,checksums.json}       model versions
    rollout.json                                                          the rollout state
    online/...                                                            online-evaluation output
    online/watermark.json                                                 how far online evaluation has read

Snapshot keys are a pure function of (source, first offset, last offset): replaying the same
range after a crash rewrites the same object instead of adding a duplicate.
"""

from __future__ import annotations

import re
from datetime import date

EVENTS = "events"
DEADLETTER = "deadletter"
CHECKPOINTS = "ingest/checkpoints"
MODELS = "models"
ROLLOUT = "rollout.json"
ONLINE = "online"
ONLINE_WATERMARK = "online/watermark.json"  # {"consumed_until": ISO time}: what online evaluation has read
ONLINE_LATEST = "online/latest.json"  # the last online-evaluation figures per version

MODEL_FILES = ("factors.npz", "ids.npz", "card.json")
CHECKSUMS = "checksums.json"

_SOURCE_RE = re.compile(r"^[A-Za-z0-9._=-]+\Z")  # \Z, not $: no trailing newline
VERSION_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}\Z")  # what a model version may be called
_RANGE_RE = re.compile(r"/([A-Za-z0-9._=-]+)-(\d{12})-(\d{12})\.parquet$")
_KIND_RE = re.compile(rf"^{EVENTS}/kind=([^/]+)/")
_DAY_RE = re.compile(r"/day=(\d{4}-\d{2}-\d{2})/")


def check_source(source: str) -> str:
    if not _SOURCE_RE.match(source):
        raise ValueError(f"invalid source name {source!r}")
    return source


def check_version(version: str) -> str:
    if not VERSION_RE.match(version):
        raise ValueError(f"invalid model version {version!r}: lowercase letters, digits, '.', '_', '-'")
    return version


def snapshot_key(kind: str, day: date | str, source: str, first: int, last: int) -> str:
    """The key of the snapshot holding offsets first..last (inclusive) of `source` for one kind and day."""
    return f"{EVENTS}/kind={kind}/day={day}/{check_source(source)}-{first:012d}-{last:012d}.parquet"


def deadletter_key(day: date | str, source: str, first: int, last: int) -> str:
    return f"{DEADLETTER}/day={day}/{check_source(source)}-{first:012d}-{last:012d}.parquet"


def checkpoint_key(source: str) -> str:
    return f"{CHECKPOINTS}/{check_source(source)}.json"


def model_prefix(version: str) -> str:
    return f"{MODELS}/{check_version(version)}"


def model_key(version: str, name: str) -> str:
    return f"{model_prefix(version)}/{name}"


def models_prefix() -> str:
    return f"{MODELS}/"


def published_version(key: str) -> str | None:
    """The version whose checksums file `key` is (written last, so the version is complete), else None."""
    head, sep, name = key.removeprefix(models_prefix()).partition("/")
    return head if key.startswith(models_prefix()) and sep and name == CHECKSUMS else None


def events_prefix(kind: str | None = None) -> str:
    return f"{EVENTS}/kind={kind}/" if kind else f"{EVENTS}/"


def deadletter_prefix() -> str:
    return f"{DEADLETTER}/"


def snapshot_prefixes() -> tuple[str, str]:
    """The prefixes holding snapshot files: event snapshots and dead letters."""
    return events_prefix(), deadletter_prefix()


def day_of_key(key: str) -> str | None:
    """The 'YYYY-MM-DD' partition a snapshot or dead-letter key belongs to."""
    m = _DAY_RE.search(key)
    return m.group(1) if m else None


def kind_of_key(key: str) -> str | None:
    """The event kind of a snapshot key, or None for any other key."""
    m = _KIND_RE.match(key)
    return m.group(1) if m else None


def range_of_key(key: str) -> tuple[str, int, int] | None:
    """(source, first offset, last offset) of a snapshot or dead-letter key, or None for any other key."""
    m = _RANGE_RE.search(key)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def online_canary_key(version: str) -> str:
    """The last canary analysis (figures, tests, decision) of one canary version."""
    return f"{ONLINE}/canary/{check_version(version)}.json"
