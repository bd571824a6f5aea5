"""`movierec fidelity`: a simulated log against real ratings, statistic by statistic, with plots.

    movierec fidelity --profile course                    # simulate in memory, compare with ml-100k
    movierec fidelity --log file:events.log --real ~/ml-1m/ratings.dat --output fidelity/

Writes OUTPUT/fidelity.json (the table: simulated, real, distance, tolerance, passed) and
OUTPUT/fidelity.png (the distributions side by side), prints the table, and exits 1 when a
checked statistic is out of its tolerance. Without `--real`, MovieLens-100k is fetched at run
time (`components.ingest.movielens.fetch_ml100k`); MovieLens is never shipped with the project.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer


def simulated_sample(profile: str, seed: int = 0, users: int | None = None, movies: int | None = None):
    """Simulate a profile's world in memory; (sample, service) - the log is never written."""
    from movierec.fidelity import from_lines
    from simulator.profiles import get_profile
    from simulator.service import StreamingService

    world = get_profile(profile)
    if users or movies:
        world = world.scaled(users or world.users, movies or world.movies)
    service = StreamingService(seed=seed, n_users=world.users, n_movies=world.movies,
                               signup_ratings=world.signup_ratings, legacy_share=world.legacy_share)
    lines = service.history(days=world.days, sessions_per_day=world.sessions_per_day, start=datetime(2026, 3, 1))
    return from_lines(lines), service


def plot(simulated: dict, real: dict, path: Path, sim_label: str, real_label: str) -> Path:
    """Four panels: ratings per user, ratings per movie, rating values, time between a user's ratings;
    a fifth with the viewing sessions' length (the log alone: MovieLens has no watches)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sd, rd = simulated["distributions"], real["distributions"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    colors = {sim_label: "tab:blue", real_label: "tab:orange"}

    ax = axes[0, 0]
    for label, d in ((sim_label, sd), (real_label, rd)):
        x = np.sort(d["ratings_per_user"])
        ax.step(x, 1 - np.arange(len(x)) / len(x), where="post", label=label, color=colors[label])
    ax.set(xscale="log", yscale="log", title="Ratings per user (heavy tail)",
           xlabel="ratings of a user / median user's ratings", ylabel="share of users with at least x")

    ax = axes[0, 1]
    for label, d in ((sim_label, sd), (real_label, rd)):
        counts = np.sort(d["ratings_per_movie"])[::-1]
        ax.plot(np.arange(1, len(counts) + 1) / len(counts), np.cumsum(counts) / counts.sum(), label=label,
                color=colors[label])
    ax.axvline(0.01, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", title="Catalogue head: ratings on the most-rated movies",
           xlabel="share of movies, most rated first", ylabel="cumulative share of ratings")

    ax = axes[0, 2]
    width = 0.38
    for shift, (label, d) in zip((-width / 2, width / 2), ((sim_label, sd), (real_label, rd)), strict=True):
        values = d["rating_values"].astype(int)
        shares = np.bincount(values, minlength=6)[1:6] / len(values)
        ax.bar(np.arange(1, 6) + shift, shares, width, label=label, color=colors[label])
    ax.set(title="Rating values", xlabel="rating (stars)", ylabel="share of ratings", xticks=range(1, 6))

    ax = axes[1, 0]
    bins = np.linspace(0, 8, 41)
    for label, d in ((sim_label, sd), (real_label, rd)):
        gaps = d["seconds_between_ratings"]
        if len(gaps):
            ax.hist(np.log10(gaps), bins=bins, density=True, histtype="step", lw=1.5, label=label,
                    color=colors[label])
    ax.set(title="Time between a user's consecutive ratings", xlabel="log10 seconds (1 min = 1.8, 1 day = 4.9)",
           ylabel="density")

    ax = axes[1, 1]
    sessions = sd["session_minutes"]
    if len(sessions):
        ax.hist(sessions, bins=np.arange(0, sessions.max() + 6, 5), color=colors[sim_label], label=sim_label)
    ax.set(title="Viewing session length (log only: MovieLens has no watches)", xlabel="minutes watched",
           ylabel="sessions")

    ax = axes[1, 2]
    ax.axis("off")
    s, r = simulated["scalars"], real["scalars"]
    text = [f"{'':26}{'simulated':>11}{'real':>9}"]
    for name, key in (("users with ratings", "users_with_ratings"), ("movies with ratings", "movies_with_ratings"),
                      ("ratings", "ratings"), ("median ratings/user", "ratings_per_user_median"),
                      ("top-1% movie share", "top1pct_movie_share"), ("Gini movie ratings", "gini_movie_ratings"),
                      ("mean rating", "mean_rating")):
        def cell(x, width):
            return f"{x:>{width},}" if float(x).is_integer() else f"{x:>{width}.3f}"
        text.append(f"{name:26}{cell(s[key], 11)}{cell(r[key], 9)}")
    ax.text(0, 1, "\n".join(text), family="monospace", va="top", fontsize=10)
    ax.set_title("Headline figures")

    for ax in axes.flat[:4]:
        ax.legend()
    axes[1, 1].legend()
    fig.suptitle(f"Fidelity: {sim_label} against {real_label}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(sample, real_ratings, output: Path, sim_label: str, real_label: str) -> dict:
    """Compare, write fidelity.json and fidelity.png into `output`; the JSON-able result."""
    from movierec.fidelity import compare, from_ratings, rows_as_dicts, statistics

    real = statistics(from_ratings(real_ratings))
    simulated = statistics(sample, reference_users=real["scalars"]["users_with_ratings"])
    rows = compare(simulated, real)
    png = plot(simulated, real, output / "fidelity.png", sim_label, real_label)
    checked = [r.passed for r in rows if r.passed is not None]
    result = {"simulated": {"label": sim_label, **simulated["scalars"]},
              "real": {"label": real_label, **real["scalars"]},
              "table": rows_as_dicts(rows), "passed": all(checked), "plot": str(png)}
    output.mkdir(parents=True, exist_ok=True)
    (output / "fidelity.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_table(result: dict) -> str:
    lines = [f"{'statistic':48} {'simulated':>10} {'real':>10} {'distance':>9} {'tolerance':>9}  verdict"]
    for row in result["table"]:
        def cell(x, width):
            return f"{x:>{width}.3f}" if isinstance(x, float) else f"{'-':>{width}}"
        verdict = {True: "ok", False: "OUT", None: "reported"}[row["passed"]]
        lines.append(f"{row['statistic']:48} {cell(row['simulated'], 10)} {cell(row['real'], 10)} "
                     f"{cell(row['distance'], 9)} {cell(row['tolerance'], 9)}  {verdict}")
    return "\n".join(lines)


def fidelity(
    log: Annotated[str | None, typer.Option(help="Simulated event log to judge (file:PATH or a path); "
                                                 "default: simulate --profile in memory.")] = None,
    profile: Annotated[str, typer.Option(help="World to simulate when no --log is given: demo or course.")] = "course",
    users: Annotated[int | None, typer.Option(help="Scale the profile to this many users (traffic per user kept).",
                                              min=100)] = None,
    movies: Annotated[int | None, typer.Option(help="Scale the profile's catalogue to this many movies.",
                                               min=10)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated world.")] = 0,
    real: Annotated[Path | None, typer.Option(help="MovieLens ratings file (u.data, ratings.dat, ratings.csv, "
                                                   ".inter); default: ml-100k, fetched at run time.")] = None,
    output: Annotated[Path, typer.Option(help="Folder for fidelity.json and fidelity.png.")] = Path("fidelity"),
) -> None:
    """Compare a simulated log with real MovieLens ratings; exit 1 if a statistic is out of tolerance."""
    from components.core.errors import NotFound
    from components.ingest.movielens import fetch_ml100k, read_ratings
    from movierec.fidelity import from_lines
    from simulator.profiles import PROFILES

    if log is None and profile not in PROFILES:
        raise typer.BadParameter(f"unknown profile {profile!r}: choose from {', '.join(PROFILES)}",
                                 param_hint="--profile")
    if real is not None and not real.is_file():      # before minutes of simulating
        raise NotFound(f"{real}: no such MovieLens file (u.data, ratings.dat, ratings.csv or ml-100k.inter)")
    if log is not None:
        path = Path(log.removeprefix("file:"))
        if not path.is_file():
            raise NotFound(f"{path}: no such event log (write one with 'movierec simulate --to file:PATH')")
        with open(path, "rb") as f:
            sample = from_lines(f)
        sim_label = path.name
    else:
        typer.echo(f"simulating the {profile} profile in memory ...", err=True)
        sample, _ = simulated_sample(profile, seed, users, movies)
        sim_label = f"simulated {profile}" + (f" ({users} users)" if users else "")
    real_path = real if real is not None else fetch_ml100k()
    real_label = "ml-100k" if real is None else real.name
    if sample.rates.empty:
        raise typer.BadParameter("the log holds no rate lines: nothing to compare", param_hint="--log")
    result = report(sample, read_ratings(real_path), output, sim_label, real_label)
    typer.echo(format_table(result))
    typer.echo(f"plots: {result['plot']}; table: {output / 'fidelity.json'}")
    if not result["passed"]:
        typer.echo("some statistics are out of tolerance (OUT above)", err=True)
        raise typer.Exit(1)
