"""The `movierec` command: one entry point, one subcommand per lifecycle stage.

Each subcommand lives beside the code it drives (`simulator/cli.py`, `components/cli.py`,
`pipelines/cli.py`, `predictor/cli.py`) and is only registered here. Those modules import heavy
libraries (kserve, kfp, surprise) inside their functions, so `movierec --help` stays fast and
kserve's own argv parsing only runs for `movierec serve`.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from components.cli import app as components_app
from components.core.errors import UserError
from movierec.calibrate import calibrate_command
from movierec.demo import demo
from pipelines.cli import app as pipeline_app
from predictor.cli import rollout_app, serve
from simulator.cli import simulate

app = typer.Typer(
    name="movierec",
    help="Movie recommendation MLOps platform: simulate, ingest, train, serve, roll out, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("simulate")(simulate)
app.registered_commands.extend(components_app.registered_commands)
app.registered_groups.extend(components_app.registered_groups)
app.add_typer(pipeline_app, name="pipeline", help="Compile, run and schedule the training pipeline.")
app.command("serve")(serve)
app.add_typer(rollout_app, name="rollout", help="Stable and canary model versions: canary, promote, rollback.")
app.command("demo")(demo)
app.command("calibrate")(calibrate_command)


def main() -> None:
    debug = os.environ.get("MOVIEREC_DEBUG", "") not in ("", "0") or "--debug" in sys.argv[1:]
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
    logging.basicConfig(level=os.environ.get("MOVIEREC_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpcore", "kafka"):  # one line per request or fetch drowns the progress
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        app()
    except UserError as error:  # a mistake the user can fix: one line, no traceback
        if debug:
            raise
        print(f"movierec: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
