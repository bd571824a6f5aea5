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
) -> None:
    """Serve the stable and canary model versions (KServe model server: /recommend, V1, V2, /metrics)."""
    from predictor.__main__ import main
    from predictor.supervisor import serve_args

    argv = serve_args(store, port, workers=workers, host=host, request_log=request_log,
                      poll_seconds=poll_seconds, drain_seconds=drain_seconds)
    if ready_file:
        argv += ["--ready_file", ready_file]
    raise typer.Exit(main(argv))


def _run(action):
    from components.core.rollout import RolloutError

    try:
        state = action()
    except (RolloutError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"stable={state.stable} canary={state.canary} canary_percent={state.canary_percent:g}")


def _open(store):
    from components.core.store import open_store

    return open_store(store)


def _published(st, version: str) -> str:
    from components.core.model_artifact import list_versions

    if version not in list_versions(st):
        raise ValueError(f"version {version!r} is not published in {st.uri}")
    return version


@rollout_app.command("stable")
def rollout_stable(version: Annotated[str, typer.Argument(help="Published model version.")],
                   store: StoreOption = None, reason: ReasonOption = "") -> None:
    """Deploy VERSION as the stable version (first deployment or forced replacement)."""
    from components.core import rollout

    st = _open(store)
    _run(lambda: rollout.set_stable(st, _published(st, version), reason))


@rollout_app.command("canary")
def rollout_canary(version: Annotated[str, typer.Argument(help="Published model version.")],
                   percent: Annotated[float, typer.Option(help="Share of users sent to the canary (0-100).")] = 10.0,
                   store: StoreOption = None, reason: ReasonOption = "") -> None:
    """Send PERCENT % of users (by a stable hash of the user id) to VERSION beside the stable version."""
    from components.core import rollout

    st = _open(store)
    _run(lambda: rollout.start_canary(st, _published(st, version), percent, reason))


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
