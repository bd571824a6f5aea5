"""Keeps the served versions in line with the rollout state, without a restart or a dropped request.

Each worker polls `rollout.json` every `poll_seconds`. When the state names a version that is not
loaded, the watcher loads it in this background thread (checksums verified, arrays mapped), runs
a smoke prediction, and only then swaps a new `TrafficSplit` in with one reference assignment.
Requests in flight finish on the models they started with. A version that fails to load or
fails the smoke test is refused: logged, counted (`movierec_predictor_model_loads_total
{result="refused"}`), remembered so it is not retried every poll, and the versions already
loaded keep serving (a refused canary's users stay on stable). An invalid rollout state (truncated,
or a share of NaN or 1e400) changes nothing either: it is logged once, and
`movierec_predictor_rollout_state_valid` is 0 until a valid state is written (an alert fires).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from components.core import rollout
from components.core.store import ArtifactStore
from predictor import metrics
from predictor.mapped import load_model
from predictor.model import RecommenderModel
from predictor.traffic import Serving, TrafficSplit

log = logging.getLogger(__name__)
RETRY_REFUSED_SECONDS = 60.0


class RolloutWatcher:
    """Loads what the rollout state asks for and swaps it in; `sync()` does one round."""

    def __init__(self, store: ArtifactStore, serving: Serving, *, poll_seconds: float = 2.0,
                 on_swap: Callable[[TrafficSplit, TrafficSplit], None] | None = None, mmap_arrays: bool = True,
                 prefetched: ArtifactStore | None = None):
        self.store, self.serving, self.poll_seconds = store, serving, poll_seconds
        self.prefetched = prefetched   # a PrefetchedVersion: one version already on local disk
        self.on_swap = on_swap
        self.mmap_arrays = mmap_arrays
        self.refused: dict[str, tuple[float, str]] = {}
        self._roles: dict[str, str] = {}
        self.invalid_state: str | None = None  # why the last rollout state read was refused
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> TrafficSplit:
        """Read the rollout state once; load, verify, smoke-test and swap in what changed."""
        current = self.serving.split
        try:
            state = rollout.load(self.store)
        except rollout.InvalidRolloutState as exc:
            if str(exc) != self.invalid_state:
                log.error("invalid rollout state, keeping %s: %s", current.versions, exc)
            self.invalid_state = str(exc)
            metrics.ROLLOUT_STATE_VALID.set(0)
            return current
        if self.invalid_state is not None:
            log.info("rollout state is valid again")
            self.invalid_state = None
        metrics.ROLLOUT_STATE_VALID.set(1)
        wanted = (state.stable, state.canary, state.canary_percent if state.canary else 0.0,
                  state.experiment if state.canary else "")
        if wanted == current.assignment:
            return current
        loaded = {m.version: m for m in current.models()}
        stable = self._get(state.stable, loaded) if state.stable else None
        canary = self._get(state.canary, loaded) if state.canary else None
        if state.stable and stable is None:
            # The new stable cannot be served: keep the current versions rather than serve nothing.
            log.error("stable version %s refused; keeping %s", state.stable, current.versions)
            stable = current.stable
            if canary is None:
                canary = current.canary
        same_experiment = canary is not None and canary.version == state.canary
        split = TrafficSplit(stable=stable, canary=canary, canary_percent=state.canary_percent,
                             experiment=state.experiment if same_experiment else current.state.experiment)
        if split.assignment == current.assignment:
            return current
        previous = self.serving.swap(split)
        self._roles = metrics.set_serving(*split.versions, self._roles)
        log.info("serving stable=%s canary=%s canary_percent=%s (was %s)", *split.versions, previous.versions)
        if self.on_swap:
            self.on_swap(previous, split)
        return split

    def _get(self, version: str, loaded: dict[str, RecommenderModel]) -> RecommenderModel | None:
        if version in loaded:
            return loaded[version]
        refused = self.refused.get(version)
        if refused and time.monotonic() - refused[0] < RETRY_REFUSED_SECONDS:
            return None
        try:
            t0 = time.perf_counter()
            local = self.prefetched is not None and self.prefetched.version == version
            factors, card = load_model(self.prefetched if local else self.store, version,
                                       mmap_arrays=self.mmap_arrays)
            model = RecommenderModel(version, factors, card)
            model.smoke_test()
        except Exception as exc:
            self.refused[version] = (time.monotonic(), str(exc))
            metrics.MODEL_LOADS.labels(version, "refused").inc()
            metrics.observe_error(version, "model_refused")
            log.error("refused model version %s: %s", version, exc)
            return None
        self.refused.pop(version, None)
        metrics.MODEL_LOADS.labels(version, "ok").inc()
        log.info("loaded model version %s (%d users, %d movies, k=%d) in %.2fs", version,
                 factors.n_users, factors.n_movies, factors.n_factors, time.perf_counter() - t0)
        return model

    # -- background polling ------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rollout-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.sync()
            except Exception as exc:  # the store is unreachable: keep serving what is loaded
                log.warning("rollout poll failed: %s", exc)
