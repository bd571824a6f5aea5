"""`movierec serve` and `movierec rollout ...`.

`serve` runs the predictor's supervisor in this process (it never imports kserve, which parses
`sys.argv` at import); the workers are `python -m predictor` processes. `rollout` reads and
writes the one rollout state in the store (`components.core.rollout`); running servers pick the
change up within `--poll-seconds`, without a restart.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

rollout_app = typer.Typer(no_args_is_help=True)

StoreOption = Annotated[str | None, typer.Option(help="Artifact store URI (path, file:PATH or s3://BUCKET/PREFIX; "
                                                 "default $MOVIEREC_STORE or .movierec/store).")]
ReasonOption = Annotated[str, typer.Option(help="Why: recorded in the rollout history.")]
ForceOption = Annotated[bool, typer.Option(help="Deploy a version its publish gate rejected (recorded in the "
                                           "rollout history).")]


def serve(
    store: StoreOption = None,
    port: Annotated[int, typer.Option(help="HTTP port. A second instance started on the port of a running "
                                      "one inherits its socket (zero-downtime restart).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Worker processes (they share the memory-mapped models).")] = 1,
    request_log: Annotated[str | None, typer.Option(help="Event log for request lines: file:PATH or "
                                                    "kafka://HOST:PORT/TOPIC.")] = None,
    poll_seconds: Annotated[float, typer.Option(help="How often workers re-read the rollout state.")] = 2.0,
    ready_file: Annotated[str | None, typer.Option(help="File written once every worker accepts requests.")] = None,
    drain_seconds: Annotated[float, typer.Option(help="On SIGTERM, answer 'Connection: close' this long "
                                                 "before stopping.")] = 1.0,
    wait_seconds: Annotated[float, typer.Option(help="How long to wait for a deployed version in the store "
                                                "before giving up (inf: wait as long as it takes).")] = 30.0,
) -> None:
    """Serve the stable and canary model versions (KServe model server: /recommend, V1, V2, /metrics)."""
    from predictor.__main__ import main
    from predictor.supervisor import serve_args

    _check_port(host, port)
    _wait_for_deployment(_open(store), wait_seconds, poll_seconds)
    argv = serve_args(store, port, workers=workers, host=host, request_log=request_log,
                      poll_seconds=poll_seconds, drain_seconds=drain_seconds)
    if ready_file:
        argv += ["--ready_file", ready_file]
    raise typer.Exit(main(argv))


def _check_port(host: str, port: int) -> None:
    """A port held by another program is the user's to free or change; a running movierec
    instance on it is not (the new instance inherits its socket: a zero-downtime restart)."""
    import socket

    from components.core.errors import Unavailable
    from predictor.handoff import control_path

    path = control_path(port)
    if path.exists():
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctl:
                ctl.settimeout(2)
                ctl.connect(str(path))
            return  # a running instance offers its socket
        except OSError:
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise Unavailable(f"cannot listen on {host}:{port} ({exc.strerror}): another program holds the "
                              "port; stop it or choose another with --port") from None


def _wait_for_deployment(st, wait_seconds: float, poll_seconds: float) -> None:
    """Return once the rollout state names a version; give up after `wait_seconds`."""
    import math
    import time

    from components.core import rollout
    from components.core.errors import NotFound

    deadline = time.monotonic() + wait_seconds
    said = False
    while not rollout.load(st).versions():
        if time.monotonic() >= deadline:
            raise NotFound(f"no model version is deployed in {st.uri}: publish one (movierec pipeline run) and "
                           "deploy it with 'movierec rollout stable VERSION' (movierec models lists them), "
                           "or pass --wait-seconds inf to wait for one")
        if not said:
            forever = "as long as it takes" if math.isinf(wait_seconds) else f"up to {wait_seconds:g} s"
            # progress on stdout: stderr keeps the one error line if it gives up
            typer.echo(f"no model version is deployed in {st.uri} yet; waiting {forever}")
            said = True
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))


def _run(action):
    from components.core.errors import UserError
    from components.core.rollout import RolloutError

    try:
        state = action()
    except RolloutError as exc:
        raise UserError(str(exc)) from None
    typer.echo(f"stable={state.stable} canary={state.canary} canary_percent={state.canary_percent:g}")


def _open(store):
    from components.core.store import open_store

    return open_store(store, must_exist=True)


def _published(st, version: str) -> str:
    from components.core.errors import NotFound
    from components.core.model_artifact import list_versions

    published = list_versions(st)
    if version not in published:
        known = ", ".join(published) if published else "none"
        raise NotFound(f"version {version!r} is not published in {st.uri}; published: {known} "
                       "(movierec models shows them with their gate)")
    return version


def _past_the_gate(st, version: str, force: bool) -> str:
    """`version` if its publish gate let it through; with `force`, also a rejected one, said aloud.

    Returns the note for the rollout history ('' when the gate passed)."""
    from components.core.errors import UserError
    from components.core.model_artifact import load_card

    gate = load_card(st, version).gate or {}
    if not gate:
        typer.echo(f"note: {version} was never gated (published without an evaluation)", err=True)
        return "never gated"
    if gate.get("candidate"):
        return ""
    why = "; ".join(gate.get("reasons") or ["no reason recorded"])
    if not force:
        raise UserError(f"the publish gate rejected {version} ({why}); deploy it anyway with --force")
    typer.echo(f"warning: deploying {version} although its publish gate rejected it ({why})", err=True)
    return "forced past the publish gate"


def _with(reason: str, note: str) -> str:
    return "; ".join(r for r in (reason, note) if r)


@rollout_app.command("stable")
def rollout_stable(version: Annotated[str, typer.Argument(help="Published model version.")],
                   store: StoreOption = None, reason: ReasonOption = "", force: ForceOption = False) -> None:
    """Deploy VERSION as the stable version (first deployment or forced replacement)."""
    from components.core import rollout

    st = _open(store)
    note = _past_the_gate(st, _published(st, version), force)
    _run(lambda: rollout.set_stable(st, version, _with(reason, note)))


@rollout_app.command("canary")
def rollout_canary(version: Annotated[str, typer.Argument(help="Published model version.")],
                   percent: Annotated[float, typer.Option(help="Share of users sent to the canary (0-100).")] = 10.0,
                   store: StoreOption = None, reason: ReasonOption = "", force: ForceOption = False) -> None:
    """Send PERCENT % of users (by a stable hash of the user id) to VERSION beside the stable version."""
    from components.core import rollout

    st = _open(store)
    note = _past_the_gate(st, _published(st, version), force)
    _run(lambda: rollout.start_canary(st, version, percent, _with(reason, note)))


@rollout_app.command("promote")
def rollout_promote(store: StoreOption = None, reason: ReasonOption = "") -> None:
    """Make the canary the stable version (all traffic)."""
    from components.core import rollout

    st = _open(store)
    _run(lambda: rollout.promote(st, reason))


@rollout_app.command("rollback")
def rollout_rollback(store: StoreOption = None, reason: ReasonOption = "") -> None:
    """Withdraw the canary: the stable version serves everyone again."""
    from components.core import rollout

    st = _open(store)
    _run(lambda: rollout.rollback(st, reason))


@rollout_app.command("status")
def rollout_status(store: StoreOption = None,
                   as_json: Annotated[bool, typer.Option("--json", help="Print the whole state as JSON.")] = False,
                   history: Annotated[int, typer.Option(help="How many of the latest history entries to show.")] = 10,
                   ) -> None:
    """Show the stable and canary versions, the canary share and experiment, and the rollout history."""
    from components.core import rollout

    state = rollout.load(_open(store))
    if as_json:
        typer.echo(json.dumps(state.to_dict(), indent=2))
        return
    typer.echo(f"stable={state.stable} canary={state.canary} canary_percent={state.canary_percent:g} "
               f"updated_at={state.updated_at}")
    if state.canary:
        typer.echo(f"experiment={state.experiment or '-'} started_at={state.canary_started_at or '-'}")
    entries = state.history[-history:] if history > 0 else []
    if entries:
        typer.echo(f"history (last {len(entries)} of {len(state.history)}, oldest first):")
    for h in entries:
        typer.echo("  " + format_history_entry(h))


def format_history_entry(h: dict) -> str:
    """One line of the rollout history: when, what, which versions, why."""
    action = h.get("action", "?")
    what = {"stable": f"stable {h.get('version')}",
            "canary": f"canary {h.get('version')} at {h.get('canary_percent', 0):g}%",
            "promote": f"promote {h.get('stable')} (was stable: {h.get('previous')})",
            "rollback": f"rollback {h.get('withdrawn')} (stable: {h.get('stable')})"}.get(action, action)
    extra = f" [experiment {h['experiment']}]" if action == "canary" and h.get("experiment") else ""
    if h.get("replaced_invalid_state"):
        extra += " [replaced an invalid state]"
    return f"{h.get('at', '?')}  {what}{extra}" + (f"  - {h['reason']}" if h.get("reason") else "")
