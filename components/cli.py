"""CLI commands for the pipeline stages' plain-Python cores (ingest, train, evaluate, ...).

Registered on the top-level `movierec` command by `movierec.cli`. Heavy imports stay inside the
command functions so that `movierec --help` is fast.
"""

from __future__ import annotations

import typer

app = typer.Typer()
