"""`movierec serve` and `movierec rollout ...`."""

from __future__ import annotations

import typer

rollout_app = typer.Typer(no_args_is_help=True)


def serve() -> None:
    """Serve the stable and canary model versions (KServe model server)."""
    raise typer.Exit(2)
