"""Provenance of an answer: from a served recommendation line back to how its model was made.

    trace(store, line='2026-03-18T06:12:47,42,recommendation request host:8080@svd-..., status 200, ...')
    trace(store, version='svd-...')

The request line names the version in `server` (`<host>@<version>`); the version's model card
(`components.core.model_artifact.load_card`) holds the rest: algorithm and hyper-parameters, training
data snapshot (and its DVC hash), pipeline run, code commit, training time, offline metrics and
the gate decision. The rollout state says which role the version has now and its history; the
last online analysis of the version is attached when there is one.
"""

from __future__ import annotations

from dataclasses import asdict

from components.core import layout, rollout
from components.core.events import UNKNOWN_VERSION, RecommendationEvent, Rejection, format_time, parse_line
from components.core.model_artifact import load_card


class TraceError(ValueError):
    """The line or version cannot be traced; the message says why."""


def version_of_line(line: str) -> tuple[str, dict]:
    """The model version a recommendation line names, and the request's own fields."""
    event = parse_line(line)
    if isinstance(event, Rejection):
        raise TraceError(f"not a valid event line ({event.reason}: {event.detail})")
    if not isinstance(event, RecommendationEvent):
        raise TraceError(f"a {event.kind} line, not a recommendation line")
    if event.version == UNKNOWN_VERSION:
        raise TraceError(f"server {event.server!r} names no model version (expected '<host>@<version>')")
    request = {"time": format_time(event.time), "user_id": event.user_id, "server": event.server,
               "status": event.status, "results": list(event.results), "response_time_ms": event.response_time_ms}
    return event.version, request


def trace(store, line: str | None = None, version: str | None = None) -> dict:
    """Everything known about the model behind an answer (give a request line or a version)."""
    request = None
    if line is not None:
        version, request = version_of_line(line)
    if not version:
        raise TraceError("give a recommendation line or a version")
    try:
        card = load_card(store, layout.check_version(version))
    except (KeyError, ValueError) as exc:
        raise TraceError(f"no model card for version {version!r} in {store.uri}: {exc}") from None
    state = rollout.load(store)
    role = "stable" if state.stable == version else "canary" if state.canary == version else "not serving"
    events = rollout.history_of(state, version)
    online = None
    try:
        online = store.get_json(layout.online_canary_key(version))
    except KeyError:
        pass
    if request and request["user_id"] is not None and state.stable:
        request["routed_now_to"] = state.route(request["user_id"])
    return {"request": request, "version": version, "role_now": role, "model_card": asdict(card),
            "rollout_history": events, "online_analysis": online}


def summary(t: dict) -> str:
    """A few readable lines of a trace."""
    c = t["model_card"]
    gate = c.get("gate") or {}
    lines = [f"version        {t['version']} ({t['role_now']})",
             f"algorithm      {c['algorithm']} {c['params']}",
             f"data snapshot  {c['data_snapshot'] or '-'}  dvc {c.get('dvc_data_hash') or '-'}",
             f"pipeline run   {c['pipeline_run'] or '-'}",
             f"code commit    {c['code_commit'] or '-'}",
             f"trained at     {c['trained_at'] or '-'} ({c['training_seconds']:.1f} s, {c['n_users']} users, "
             f"{c['n_movies']} movies, {c['n_factors']} factors)",
             "offline        " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in sorted(c["metrics"].items())),
             f"gate           {'candidate' if gate.get('candidate') else 'rejected' if gate else '-'}"
             + (f": {'; '.join(gate.get('reasons', []))}" if gate.get("reasons") else "")]
    if t["request"]:
        r = t["request"]
        lines.insert(0, f"request        user {r['user_id']} at {r['time']} via {r['server']}, status {r['status']}, "
                        f"{len(r['results'])} movies in {r['response_time_ms']} ms")
    for h in t["rollout_history"]:
        lines.append(f"rollout        {h.get('at')} {h.get('action')} {h.get('reason', '')}".rstrip())
    if t["online_analysis"]:
        lines.append(f"online         {t['online_analysis']['decision']}: {'; '.join(t['online_analysis']['reasons'])}")
    return "\n".join(lines)
