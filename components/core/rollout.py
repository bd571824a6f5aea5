"""The rollout state: which model version is stable, which is the canary, and its traffic share.

One JSON object under `rollout.json` in the store. `movierec rollout ...`, the publish step and
automatic canary analysis write it; every predictor process polls it and swaps versions when it
changes. Users are assigned to the canary by a stable hash of (experiment salt, user id), so the
same user lands on the same version in every worker, on every replica and after a restart.

Each canary is one experiment: starting a canary of a new version draws a fresh random salt
(`experiment`) and records its start time (`canary_started_at`), so every experiment gets a
fresh set of users and no effect carries over from the last one. Changing the share of the same
canary keeps its salt (raising the share only adds users). States written before salts existed
have an empty salt and keep their unsalted assignment. `user_bucket(user, salt)` is the one
mapping; the predictor's traffic split and the canary analysis both use it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from components.core import layout
from components.core.errors import UserError
from components.core.store import ArtifactStore

BUCKETS = 10_000
_EXPERIMENT_RE = re.compile(r"^[A-Za-z0-9._-]{0,64}\Z")


class RolloutError(UserError, ValueError):
    """A rollout operation that makes no sense in the current state (the message says why)."""


class InvalidRolloutState(RolloutError):
    """`rollout.json` cannot be trusted (unreadable, or a field out of its range); nothing may act on it."""


@dataclass
class RolloutState:
    stable: str | None = None
    canary: str | None = None
    canary_percent: float = 0.0
    updated_at: str = ""
    history: list[dict] = field(default_factory=list)
    experiment: str = ""         # the canary's salt and experiment id ("" = unsalted, older states)
    canary_started_at: str = ""  # when this experiment (canary version) started

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict) -> RolloutState:
        """The state in `obj`, validated: raises `InvalidRolloutState` saying which field is wrong."""
        if not isinstance(obj, dict):
            raise InvalidRolloutState(f"expected a JSON object, got {type(obj).__name__}")
        for role in ("stable", "canary"):
            version = obj.get(role)
            if version is not None and not (isinstance(version, str) and layout.VERSION_RE.match(version)):
                raise InvalidRolloutState(f"{role} is not a model version: {version!r}")
        percent = obj.get("canary_percent", 0.0)
        if isinstance(percent, bool) or not isinstance(percent, int | float) or not math.isfinite(percent) \
                or not 0 <= percent <= 100:
            raise InvalidRolloutState(f"canary_percent must be a number within 0-100, got {percent!r}")
        if obj.get("canary") is not None and obj.get("canary") == obj.get("stable"):
            raise InvalidRolloutState(f"the canary is the stable version {obj['canary']!r}")
        for name in ("updated_at", "experiment", "canary_started_at"):
            if not isinstance(obj.get(name) or "", str):
                raise InvalidRolloutState(f"{name} must be a string, got {obj[name]!r}")
        if not _EXPERIMENT_RE.match(obj.get("experiment") or ""):
            raise InvalidRolloutState(f"experiment is not an experiment id: {obj['experiment']!r}")
        history = obj.get("history") or []
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise InvalidRolloutState("history must be a list of objects")
        return cls(stable=obj.get("stable"), canary=obj.get("canary"), canary_percent=float(percent),
                   updated_at=obj.get("updated_at") or "", history=list(history),
                   experiment=obj.get("experiment") or "", canary_started_at=obj.get("canary_started_at") or "")

    def versions(self) -> list[str]:
        return [v for v in (self.stable, self.canary) if v]

    def route(self, user_id: int) -> str | None:
        """The version that serves `user_id` (None if nothing is deployed)."""
        if self.canary and self.canary_percent > 0 and in_canary(user_id, self.canary_percent, self.experiment):
            return self.canary
        return self.stable or self.canary


def user_bucket(user_id: int, salt: str = "") -> int:
    """A bucket in [0, 10000) that depends only on (salt, user id): the same in every process, forever.

    The empty salt is the unsalted assignment of rollout states written before experiments had one.
    """
    key = f"{salt}:{int(user_id)}" if salt else str(int(user_id))
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_canary(user_id: int, percent: float, salt: str = "") -> bool:
    """Whether `user_id` is among the `percent` % of users the experiment `salt` sends to its canary."""
    return user_bucket(user_id, salt) < round(percent * BUCKETS / 100)


def new_experiment() -> str:
    """A fresh experiment id, also the salt of its user assignment (64 random bits, hex)."""
    return secrets.token_hex(8)


def load(store: ArtifactStore) -> RolloutState:
    """The rollout state (nothing deployed if there is none yet), validated.

    Raises `InvalidRolloutState` for a state that is truncated, not JSON, or has a field out of
    range (a canary share of NaN, 1e400 or -5, a version that is not a version): predictors keep
    serving what they have, and `movierec rollout stable VERSION` writes a valid state again."""
    try:
        raw = store.get_bytes(layout.ROLLOUT)
    except KeyError:
        return RolloutState()
    try:
        return RolloutState.from_dict(json.loads(raw))
    except (ValueError, RecursionError) as exc:  # json.JSONDecodeError, UnicodeDecodeError, InvalidRolloutState
        raise InvalidRolloutState(f"{layout.ROLLOUT} in {store.uri} is invalid ({exc}); the served versions stay "
                                  "as they are: write a valid state with `movierec rollout stable VERSION`") from None


def save(store: ArtifactStore, state: RolloutState, action: str, **detail) -> RolloutState:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    state.updated_at = now
    if not state.canary:
        state.experiment, state.canary_started_at = "", ""
    state.history = (state.history + [{"at": now, "action": action, "stable": state.stable,
                                       "canary": state.canary, "canary_percent": state.canary_percent,
                                       "experiment": state.experiment, **detail}])[-100:]
    store.put_json(layout.ROLLOUT, state.to_dict())
    return state


def _check_percent(percent: float) -> float:
    if not 0 <= percent <= 100:
        raise RolloutError(f"canary percent must be within 0-100, got {percent}")
    return float(percent)


def set_stable(store: ArtifactStore, version: str, reason: str = "") -> RolloutState:
    """Deploy `version` as the stable one (the first deployment, or a forced replacement).

    The one operation allowed on an invalid state: it replaces it (recording why) with `version` alone."""
    layout.check_version(version)
    try:
        state, replaced = load(store), {}
    except InvalidRolloutState as exc:
        state, replaced = RolloutState(), {"replaced_invalid_state": str(exc)}
    state.stable = version
    if state.canary == version:
        state.canary, state.canary_percent = None, 0.0
    return save(store, state, "stable", version=version, reason=reason, **replaced)


def start_canary(store: ArtifactStore, version: str, percent: float, reason: str = "") -> RolloutState:
    """Send `percent` % of users to `version` beside the stable version."""
    state = load(store)
    layout.check_version(version)
    percent = _check_percent(percent)
    if state.stable is None:
        raise RolloutError("no stable version yet: deploy one first (rollout stable VERSION)")
    if version == state.stable:
        raise RolloutError(f"{version} is already the stable version")
    if state.canary != version:  # a new experiment: fresh users; a new share of the same canary keeps them
        state.experiment = new_experiment()
        state.canary_started_at = datetime.now(UTC).isoformat(timespec="seconds")
    state.canary, state.canary_percent = version, percent
    return save(store, state, "canary", version=version, reason=reason)


def promote(store: ArtifactStore, reason: str = "") -> RolloutState:
    """Make the canary the stable version and send it all traffic."""
    state = load(store)
    if not state.canary:
        raise RolloutError("no canary to promote")
    previous = state.stable
    state.stable, state.canary, state.canary_percent = state.canary, None, 0.0
    return save(store, state, "promote", previous=previous, reason=reason)


def rollback(store: ArtifactStore, reason: str = "") -> RolloutState:
    """Withdraw the canary; the stable version serves everyone again."""
    state = load(store)
    if not state.canary:
        raise RolloutError("no canary to roll back")
    withdrawn = state.canary
    state.canary, state.canary_percent = None, 0.0
    return save(store, state, "rollback", withdrawn=withdrawn, reason=reason)
