"""`movierec calibrate`: the canary analysis on many simulated worlds (the engine is `movierec.calibration`).

    movierec calibrate --worlds 200                      # A/A, better and worse canaries, JSON summary
    movierec calibrate --worlds 20 --scenario equal      # a quick look at the false-decision rate
    movierec calibrate --world legacy                    # on the first, hand-set worlds (before/after)
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer


def calibrate_command(
    worlds: Annotated[int, typer.Option(help="Simulated worlds per scenario.", min=1)] = 200,
    scenario: Annotated[list[str] | None, typer.Option(help="equal, better or worse (repeat; default all).")]
    = None,
    users: Annotated[int, typer.Option(help="Users per world.", min=100)] = 10_000,
    effect: Annotated[float, typer.Option(help="The better (worse) canary's hit rate above (below) the stable "
                                               "one's, in hit-rate points (0.05 = 5 points).", min=0.0, max=0.5)]
    = 0.05,
    world: Annotated[str, typer.Option(help="Users' behaviour: course (fitted to the calibrated simulator) "
                                            "or legacy (the first, hand-set worlds).")] = "course",
    first_seed: Annotated[int, typer.Option(help="Seed of the first world.")] = 1,
    output: Annotated[str | None, typer.Option(help="Also write the JSON summary to this file.")] = None,
) -> None:
    """Run the canary analysis on many simulated worlds; report false-decision rate and power; exit 1 if a check fails."""
    from dataclasses import replace

    from movierec.calibration import SCENARIOS, calibrate
    from simulator.worlds import WORLDS

    chosen = scenario or list(SCENARIOS)
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        typer.echo(f"error: unknown scenario {unknown[0]!r}: choose from {', '.join(SCENARIOS)}", err=True)
        raise typer.Exit(2)
    if world not in WORLDS:
        typer.echo(f"error: unknown world {world!r}: choose from {', '.join(WORLDS)}", err=True)
        raise typer.Exit(2)
    effects = {"equal": 0.0, "better": effect, "worse": -effect}
    last = [0.0]

    def progress(text: str) -> None:
        if time.monotonic() - last[0] > 5:
            last[0] = time.monotonic()
            typer.echo(text, err=True)

    result = calibrate(worlds, {s: effects[s] for s in chosen}, replace(WORLDS[world](), users=users), first_seed=first_seed,
                       progress=progress)
    text = json.dumps(result, indent=2)
    typer.echo(text)
    if output:
        with open(output, "w") as f:
            f.write(text + "\n")
    if not result["passed"]:
        failed = [k for k, s in result["scenarios"].items() if not s["check"]["passed"]]
        typer.echo(f"calibration failed for: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
