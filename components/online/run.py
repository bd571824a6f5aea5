"""Running online evaluation: once over what is there (bounded) or continuously (follow).

    result = run_once(frames, store, window=timedelta(minutes=30), auto=True, report_dir="out")

Events come from a local event-log file (`file:PATH`, read incrementally by `LogTail`) or from
the ingested snapshots in the store. The store always provides the rollout state, the model
versions (personalized share, drift) and receives the results:

    online/latest.json             the last result (figures per version, canary analysis, drift)
    online/canary/<version>.json   the last analysis of each canary
    online/watermark.json          {"consumed_until": ISO time}: every answer before it is final
                                   (its window is over); retention may drop older snapshots

The bounded run is also a Kubeflow component: `components.steps.online_eval`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from components.core import layout, rollout
from components.core.eventlog import file_path
from components.core.events import latest_acceptable
from components.online import canary
from components.online.join import (
    DEFAULT_WINDOW,
    concat_frames,
    frames_from_lines,
    join,
    last_time,
    personalized_from_store,
    time_series,
    version_metrics,
    version_of,
)

log = logging.getLogger(__name__)
RECENT = timedelta(hours=1)


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


class LogTail:
    """Reads the complete lines appended to a log file since the last call."""

    def __init__(self, path: str):
        self.path = file_path(path)
        self.offset = 0

    def read(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1      # a half-written last line waits for the next call
        self.offset += end
        return data[:end].splitlines()


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def drop_future(frames: dict[str, pd.DataFrame], now: datetime | None = None) -> dict[str, pd.DataFrame]:
    """Leave out events stamped after the clock plus `MAX_CLOCK_SKEW` (ingest dead-letters them; a
    log file read directly still holds them): one such event would become evaluation's "now", and
    every real event would fall outside the window kept in memory."""
    limit = pd.Timestamp(latest_acceptable(now or _utc_now()))
    out = {}
    for kind, frame in frames.items():
        late = frame["time"] > limit if len(frame) else None
        if late is not None and late.any():
            log.warning("online-eval: %d %s event(s) stamped after %s left out (clock skew or forged)",
                        int(late.sum()), kind, limit.isoformat())
            frame = frame[~late].reset_index(drop=True)
        out[kind] = frame
    return out


def write_watermark(store, consumed_until: pd.Timestamp, now: datetime | None = None) -> str:
    """Advance `online/watermark.json` (never move it back, never past the clock); return the value stored.

    A stored watermark later than the clock (written before this bound existed) is replaced."""
    now = now or _utc_now()
    value = min(consumed_until.to_pydatetime(), now).replace(microsecond=0)
    try:
        old = store.get_json(layout.ONLINE_WATERMARK).get("consumed_until")
        if old and value <= _naive_utc(datetime.fromisoformat(old)) <= now:
            return old
    except KeyError:
        pass
    store.put_json(layout.ONLINE_WATERMARK, {"consumed_until": value.isoformat()})
    return value.isoformat()


def last_training_success(store) -> str | None:
    """Training time of the newest published model version (None when there is none)."""
    from components.core.model_artifact import list_versions, load_card

    times = []
    for version in list_versions(store):
        try:
            times.append(load_card(store, version).trained_at)
        except Exception:  # an unreadable card is not a success
            continue
    times = [t for t in times if t]
    return max(times, key=lambda t: pd.Timestamp(t)) if times else None


def _drift(store, state: rollout.RolloutState, frames, since) -> dict | None:
    if not state.stable:
        return None
    from components.core.model_artifact import FactorModel
    from components.online.drift import input_drift

    try:
        model, _ = FactorModel.load(store, state.stable)
    except Exception as exc:
        log.warning("drift: cannot load stable model %s: %s", state.stable, exc)
        return None
    recs, watches = frames["recommendation"], frames["watch"]
    return input_drift(model, recs[recs["time"] >= since], watches[watches["time"] >= since])


def run_once(frames: dict[str, pd.DataFrame], store, *, window: timedelta = DEFAULT_WINDOW,
             policy: canary.CanaryPolicy = canary.CanaryPolicy(), auto: bool = False,
             recent: timedelta = RECENT, report_dir: str | Path | None = None) -> dict:
    """Evaluate `frames`, analyse the canary (and act on it with `auto`), record the results."""
    frames = drop_future(frames)
    end = last_time(frames)
    joined = join(frames, window, end)
    known = personalized_from_store(store)
    consumed = end - pd.Timedelta(window) if end is not None else None
    state = rollout.load(store)
    analysis = canary.analyse(joined, state, policy)
    if auto:
        analysis = canary.act(store, analysis)
    # The gauges Prometheus sees cover the last `recent` of answers (answers still in their window
    # count for availability and latency only), so alerts follow the current state, not the history.
    recent_rows = joined[joined["time"] > joined["time"].max() - pd.Timedelta(recent)] if len(joined) else joined
    result = {
        "window": str(window), "evaluated_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
        "data_from": joined["time"].min().isoformat() if len(joined) else None,
        "data_until": end.isoformat() if end is not None else None,
        "consumed_until": None, "policy": asdict(policy), "auto": auto,
        "versions": version_metrics(joined, known), "recent": version_metrics(recent_rows, known),
        "canary": analysis.to_dict(),
        "drift": _drift(store, state, frames, end - pd.Timedelta(recent)) if end is not None else None,
        "last_training_success": last_training_success(store),
    }
    if consumed is not None:
        result["consumed_until"] = write_watermark(store, consumed)
    store.put_json(layout.ONLINE_LATEST, result)
    if analysis.canary:
        store.put_json(layout.online_canary_key(analysis.canary), analysis.to_dict())
    if report_dir:
        from components.online.report import write_report

        write_report(result, time_series(joined), report_dir,
                     canary.trajectory(joined, state, policy) if analysis.canary else None)
    return result


FOLLOW_INTERVAL_S = 30.0   # seconds between two evaluation cycles of a follow run (the calibration looks as often)


def follow(tail: LogTail | None, store, *, interval: float = FOLLOW_INTERVAL_S, keep: timedelta = timedelta(days=2),
           cycles: int | None = None, metrics_port: int | None = None, metrics_host: str = "0.0.0.0",
           **kwargs) -> dict | None:
    """Evaluate every `interval` seconds what arrived; keep `keep` of events in memory.

    Events come from `tail` (a log file) or, when it is None, from the store's snapshots re-read
    each cycle. While a canary runs, everything since its first answer is kept as well, however
    long ago: its sequential test is computed on all of it, never on a sliding window. With
    `metrics_port`, the latest `movierec_online_*` gauges are served on
    `metrics_host:metrics_port` at /metrics."""
    from components.online.join import frames_from_store
    from components.online.report import prometheus_text

    server = _serve_metrics(metrics_port, metrics_host) if metrics_port else None
    frames = frames_from_lines([])
    result, n, newest, canary_start = None, 0, None, None
    try:
        while cycles is None or n < cycles:
            days = keep.days + 1
            if canary_start is not None and newest is not None:   # read back to the canary's first answer
                days = max(days, (newest - canary_start[1]).days + 2)
            frames = drop_future(concat_frames(frames, frames_from_lines(tail.read())) if tail
                                 else frames_from_store(store, last_days=days))
            newest = last_time(frames)
            if newest is not None:
                canary_start = _canary_start(frames, rollout.load(store).canary, canary_start)
                horizon = newest - pd.Timedelta(keep)
                if canary_start is not None:
                    horizon = min(horizon, canary_start[1])
                frames = {k: f[f["time"] >= horizon].reset_index(drop=True) for k, f in frames.items()}
                result = run_once(frames, store, **kwargs)
                if server:
                    server.body = prometheus_text(result)
                a = result["canary"]
                log.info("online-eval: %d versions, canary %s: %s", len(result["versions"]), a["canary"],
                         a["decision"])
            n += 1
            if cycles is None or n < cycles:
                time.sleep(interval)
    finally:
        if server:
            server.shutdown()
    return result


def _canary_start(frames: dict[str, pd.DataFrame], version: str | None,
                  known: tuple[str, pd.Timestamp] | None) -> tuple[str, pd.Timestamp] | None:
    """(canary version, time of its first answer): remembered across cycles, None without a canary."""
    if not version:
        return None
    if known is not None and known[0] == version:
        return known
    recs = frames["recommendation"]
    times = recs.loc[version_of(recs["server"]) == version, "time"]
    return (version, times.min()) if len(times) else None


def _serve_metrics(port: int, host: str = "0.0.0.0"):
    """A tiny /metrics server holding the latest exposition (bytes in `server.body`)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = self.server.body
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.body = b""
    threading.Thread(target=server.serve_forever, name="online-metrics", daemon=True).start()
    return server
