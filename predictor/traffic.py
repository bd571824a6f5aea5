"""The traffic split between the stable and the canary version.

A `TrafficSplit` is immutable: the watcher builds a new one and swaps the single reference
`Serving.split`, so a request reads one consistent (stable, canary, percent) triple with one
attribute load - no lock, no torn state, nothing dropped during a swap.

Users are assigned by `components.core.rollout` (a blake2b hash of the experiment's salt and the
user id into 10,000 buckets),
never by Python's per-process salted `hash()`: the same user lands on the same version in every
worker, on every replica and after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from components.core.rollout import RolloutState

if TYPE_CHECKING:  # the model module imports kserve; keep this one importable without it
    from predictor.model import RecommenderModel


@dataclass(frozen=True)
class TrafficSplit:
    """Which loaded model serves which users."""

    stable: RecommenderModel | None = None
    canary: RecommenderModel | None = None
    canary_percent: float = 0.0
    experiment: str = ""  # the canary experiment's salt (rollout state), "" for unsalted older states
    state: RolloutState = field(init=False, repr=False)  # derived from the loaded models, never passed in

    def __post_init__(self) -> None:
        # Route with the versions actually loaded: a refused canary sends its users to stable.
        object.__setattr__(self, "state", RolloutState(
            stable=self.stable.version if self.stable else None,
            canary=self.canary.version if self.canary else None,
            canary_percent=self.canary_percent if self.canary else 0.0,
            experiment=self.experiment if self.canary else ""))
        object.__setattr__(self, "_by_version", {m.version: m for m in (self.stable, self.canary) if m})

    def route(self, user_id: int) -> RecommenderModel | None:
        """The model that serves `user_id`, or None if nothing is loaded."""
        version = self.state.route(user_id)
        return self._by_version.get(version) if version else None  # type: ignore[attr-defined]

    def models(self) -> list[RecommenderModel]:
        return [m for m in (self.stable, self.canary) if m]

    @property
    def versions(self) -> tuple[str | None, str | None, float]:
        return self.state.stable, self.state.canary, self.state.canary_percent

    @property
    def assignment(self) -> tuple[str | None, str | None, float, str]:
        """What decides who sees which version: the versions, the canary share and the salt."""
        return (*self.versions, self.state.experiment)

    @property
    def ready(self) -> bool:
        return self.stable is not None or self.canary is not None


class Serving:
    """The one mutable cell holding the current split (replaced whole, read without a lock)."""

    def __init__(self) -> None:
        self.split = TrafficSplit()

    def swap(self, split: TrafficSplit) -> TrafficSplit:
        previous, self.split = self.split, split
        return previous
