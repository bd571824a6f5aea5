"""Steady /recommend traffic from background threads, for the tests that roll or swap a serving
model under load: every request sent must get its answer."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import httpx


class Load:
    """Keep-alive clients asking `/recommend/<user>` for random users 1..`n_users`.

    With `leave_on_close`, a client stops once an answer says `Connection: close`, as a client
    behind a Service does when the server drains after SIGTERM (the endpoint is gone); `closed`
    counts those clients."""

    def __init__(self, url: str, n_users: int, threads: int = 2, timeout: float = 5.0,
                 leave_on_close: bool = False):
        self.url, self.n_users, self.timeout, self.leave_on_close = url, n_users, timeout, leave_on_close
        self.codes, self.versions, self.failed, self.closed = Counter(), Counter(), [], 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
            while not self._stop.is_set():
                try:
                    r = client.get(f"/recommend/{rng.randint(1, self.n_users)}")
                    self.codes[r.status_code] += 1
                    self.versions[r.headers.get("x-model-version")] += 1
                    if self.leave_on_close and r.headers.get("connection", "").lower() == "close":
                        self.closed += 1
                        return
                except Exception as exc:  # noqa: BLE001 - a request that got no answer
                    self.failed.append(repr(exc))
                time.sleep(0.002)

    def snapshot(self) -> Counter:
        return Counter(self.versions)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(3 * self.timeout)

    @property
    def total(self) -> int:
        return sum(self.codes.values()) + len(self.failed)


def wait_for(cond, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `cond` until it is true; an HTTP error while polling counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
