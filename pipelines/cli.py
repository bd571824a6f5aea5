"""`movierec pipeline ...`: compile the training pipeline, run it with kfp.local, schedule it."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)
