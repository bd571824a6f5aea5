"""The `movierec` command: one entry point, one subcommand per lifecycle stage.

Each subcommand lives beside the code it drives (`simulator/cli.py`, `components/cli.py`,
`pipelines/cli.py`, `predictor/cli.py`) and is only registered here. Those modules import heavy
libraries (kserve, kfp, surprise) inside their functions, so `movierec --help` stays fast and
kserve's own argv parsing only runs for `movierec serve`.
"""

from __future__ import annotations

import logging
import sys

import typer
from typer._click.exceptions import NoArgsIsHelpError  # typer 0.29 vendors click (pinned)

from components.cli import app as components_app
from components.core.errors import UserError
from components.core.settings import load_settings
from components.core.store import StoreError
from movierec.calibrate import calibrate_command
from movierec.demo import demo
from movierec.fidelity_report import fidelity
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
app.command("fidelity")(fidelity)


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    try:
        settings = load_settings()  # MOVIEREC_LOG_LEVEL, MOVIEREC_DEBUG, validated before any work
        debug = debug or settings.debug
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for chatty in ("httpx", "httpcore", "kafka"):  # one line per request or fetch drowns the progress
            logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as error:  # `movierec` or `movierec rollout` alone
        text = error.ctx.get_help()  # rich help prints itself and returns ""
        if text:
            print(text)
        sys.exit(error.exit_code)
    except typer.TyperException as error:  # a missing option, a value of the wrong type
        if debug:
            raise
        where = f" (see '{error.ctx.command_path} --help')" if getattr(error, "ctx", None) else ""
        _one_line(error.format_message() + where, error.exit_code)
    except typer.Abort:
        _one_line("interrupted", 130)
    except UserError as error:  # a mistake the user can fix: one line, no traceback
        if debug:
            raise
        _one_line(str(error), error.exit_code)
    except StoreError as error:  # the store cannot be reached or refused: say which and why
        if debug:
            raise
        _one_line(str(error), 1)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(message: str, exit_code: int) -> None:
    print("movierec: " + " ".join(message.split()), file=sys.stderr)
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
