"""Writes the three notebooks of this folder (without outputs): `python notebooks/make_notebooks.py`.

The notebooks are generated so that their code is reviewed as code; tests/integration/
test_notebooks.py executes every one of them. Each runs on the embedded default in well under a
minute: it reads demo-output/ when `make demo` has left one, otherwise it makes a small
simulated history of its own in a temporary folder with the `movierec` commands.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
DEMO = ROOT / "demo-output"
WORK = Path(tempfile.mkdtemp(prefix="movierec-notebook-"))
MOVIEREC = Path(sys.executable).parent / "movierec"   # the project's CLI, in this kernel's venv
plt.rcParams["figure.figsize"] = (9, 3.5)


def movierec(*args):
    """Run a `movierec` command; its output, or its error text as an exception."""
    done = subprocess.run([str(MOVIEREC), *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"movierec {args[0]} failed:\\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def simulated_log(path, users=600, movies=200, days=14, seed=1, corrupt=0.01):
    """A small simulated event log (the streaming service stand-in, via `movierec simulate`)."""
    movierec("simulate", "--to", f"file:{path}", "--users", users, "--movies", movies, "--days", days,
             "--sessions-per-day", 90, "--corrupt-rate", corrupt, "--start", "2026-03-01", "--seed", seed)
    return path
'''


def explore_events() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_markdown_cell("""\
# 01 · Exploring the event log

What the streaming service's log looks like before any model sees it: how active users are, how
long the popularity tail of the catalogue is, how users rate, and how many lines are corrupted.
Reads `demo-output/events.log` when `make demo` has run, otherwise simulates a small history."""),
        new_code_cell(SETUP),
        new_code_cell('''\
from components.core.events import (AccountEvent, RateEvent, RecommendationEvent, Rejection, WatchEvent,
                               parse_line)

log = DEMO / "events.log"
if not log.exists():
    log = simulated_log(WORK / "events.log")
rows, rejected = [], []
with open(log, "rb") as f:
    for line in f:
        event = parse_line(line)
        if isinstance(event, Rejection):
            rejected.append(event.reason)
        else:
            rows.append((event.kind, event.time, event.user_id, getattr(event, "movie_id", None),
                         getattr(event, "minute", None), getattr(event, "rating", None)))
events = pd.DataFrame(rows, columns=["kind", "time", "user_id", "movie_id", "minute", "rating"])
print(f"{log}: {len(events):,} events, {len(rejected):,} rejected lines")
events.groupby("kind").size().rename("lines").to_frame()'''),
        new_markdown_cell("Rejected lines by reason: every corrupted line is caught and classified, none crashes ingest."),
        new_code_cell('''\
pd.Series(rejected, dtype=str).value_counts().rename("lines").to_frame()'''),
        new_markdown_cell("""\
## Activity per user
A watch line is one minute of viewing. Activity is heavy-tailed: a few users watch a lot, many
watch little, which is why the offline evaluation reports light and heavy users apart."""),
        new_code_cell('''\
watches = events[events.kind == "watch"]
minutes_per_user = watches.groupby("user_id").size()
movies_per_user = watches.groupby("user_id").movie_id.nunique()
fig, axes = plt.subplots(1, 2)
axes[0].hist(minutes_per_user, bins=40, color="tab:blue")
axes[0].set(title="minutes watched per user", xlabel="minutes", ylabel="users")
axes[1].hist(movies_per_user, bins=30, color="tab:orange")
axes[1].set(title="distinct movies watched per user", xlabel="movies", ylabel="users")
fig.tight_layout()
minutes_per_user.describe().round(1).to_frame("minutes per user").T'''),
        new_markdown_cell("""\
## Popularity long tail
Movies ranked by how many users watched them. The head gets most of the viewing; a recommender
that only follows popularity leaves the tail unseen (the `coverage@20` metric of notebook 02)."""),
        new_code_cell('''\
viewers = watches.groupby("movie_id").user_id.nunique().sort_values(ascending=False).to_numpy()
share = np.cumsum(viewers) / viewers.sum()
fig, axes = plt.subplots(1, 2)
axes[0].plot(np.arange(1, len(viewers) + 1), viewers)
axes[0].set(title="viewers per movie, by rank", xlabel="rank", ylabel="viewers", yscale="log")
axes[1].plot(np.arange(1, len(viewers) + 1) / len(viewers), share)
axes[1].set(title="cumulative share of viewers", xlabel="share of catalogue", ylabel="share of viewers")
fig.tight_layout()
head = int(np.searchsorted(share, 0.5)) + 1
print(f"{head} of {len(viewers)} movies ({head / len(viewers):.0%}) hold half of all viewers")'''),
        new_markdown_cell("## Ratings\nThe distribution of the 1–5 ratings, and how many ratings users give."),
        new_code_cell('''\
rates = events[events.kind == "rate"]
fig, axes = plt.subplots(1, 2)
rates.rating.value_counts().sort_index().plot.bar(ax=axes[0], color="tab:green")
axes[0].set(title="rating distribution", xlabel="rating", ylabel="ratings")
axes[1].hist(rates.groupby("user_id").size(), bins=30, color="tab:purple")
axes[1].set(title="ratings per user", xlabel="ratings", ylabel="users")
fig.tight_layout()
print(f"mean rating {rates.rating.mean():.2f}, {rates.user_id.nunique()} users rated, "
      f"{rates.movie_id.nunique()} movies rated")'''),
        new_markdown_cell("## Activity over time"),
        new_code_cell('''\
daily = events.groupby([pd.Grouper(key="time", freq="D"), "kind"]).size().unstack("kind").fillna(0)
daily.plot(title="events per day", logy=True, figsize=(9, 3))
assert len(events) > 1000 and {"watch", "rate"} <= set(events.kind)'''),
    ])


def compare_models() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_markdown_cell("""\
# 02 · SVD vs SVD++ offline

The training pipeline's steps on a small history (`movierec ingest`, `preprocess`, `train`,
`evaluate`, the same code as the Kubeflow components and the DVC stages): both algorithms and the
popularity baseline on the validation window, overall and per user segment (new, light, heavy)."""),
        new_code_cell(SETUP),
        new_code_cell('''\
import time

log = simulated_log(WORK / "events.log", users=500, movies=180, days=14, seed=2)
timings = {}
for step, args in [
        ("ingest", ["ingest", "--source", f"file:{log}", "--store", WORK / "store"]),
        ("preprocess", ["preprocess", "--store", WORK / "store", "--out", WORK / "dataset"]),
        ("train", ["train", "--dataset", WORK / "dataset", "--out", WORK / "models",
                   "--algorithm", "svd", "--algorithm", "svdpp"])]:
    started = time.perf_counter()
    out = movierec(*args)
    timings[step] = round(time.perf_counter() - started, 1)
print(out)
models = sorted((WORK / "models").iterdir())
started = time.perf_counter()
movierec("evaluate", *[a for m in models for a in ("--model", m)], "--dataset", WORK / "dataset",
         "--output", WORK / "evaluation.json", "--metrics", WORK / "metrics.json")
timings["evaluate"] = round(time.perf_counter() - started, 1)
metrics = json.loads((WORK / "metrics.json").read_text())
cards = {json.loads((m / "card.json").read_text())["algorithm"]: json.loads((m / "card.json").read_text())
         for m in models}
timings'''),
        new_markdown_cell("## Overall\nRanking metrics at k = 20 on the validation users, and rating error on their ratings."),
        new_code_cell('''\
overall = pd.DataFrame({name: {k: v for k, v in m.items() if not isinstance(v, dict)}
                        for name, m in metrics.items()}).T
columns = ["ndcg@20", "hit_rate@20", "precision@20", "recall@20", "coverage@20", "rmse", "mae", "users"]
overall = overall[[c for c in columns if c in overall.columns]]
for name, card in cards.items():
    overall.loc[name, "training s"] = card["training_seconds"]
overall.round(4)'''),
        new_code_cell('''\
fig, axes = plt.subplots(1, 2)
overall[["ndcg@20", "hit_rate@20", "coverage@20"]].plot.bar(ax=axes[0], rot=0, title="ranking (higher is better)")
overall[["rmse", "mae"]].dropna().plot.bar(ax=axes[1], rot=0, title="rating error (lower is better)")
fig.tight_layout()'''),
        new_markdown_cell("""\
## Per segment
Users grouped by how much history they had before the cutoff (`evaluate.light_max_history` of
params.yaml); users without history get the popularity list from every model. On a small
simulated history the popularity baseline is hard to beat offline: the publish step's gate
(a model must beat it on `ndcg@20`) is there for exactly that."""),
        new_code_cell('''\
segments = pd.DataFrame([{"model": name, "segment": seg, **values}
                         for name, m in metrics.items() for seg, values in m["by_activity"].items()])
table = segments.pivot(index="segment", columns="model", values="ndcg@20") if "ndcg@20" in segments else None
display(segments.set_index(["segment", "model"]).round(4))
if table is not None:
    table.plot.bar(rot=0, title="ndcg@20 per segment")'''),
        new_code_cell('''\
assert {"svd", "svdpp", "popularity"} <= set(metrics)
winner = overall["ndcg@20"].idxmax()
print(f"best ndcg@20: {winner} ({overall.loc[winner, 'ndcg@20']:.4f}); "
      f"popularity {overall.loc['popularity', 'ndcg@20']:.4f}")'''),
    ])


def online_results() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_markdown_cell("""\
# 03 · Online results per version

What users did after each served recommendation, per model version: hit rate (a recommended
movie watched within the window), watched minutes, availability and latency, each with its
confidence interval, and the canary decision. Reads `demo-output/online-report/online-eval.json`
when `make demo` has run; otherwise it serves an SVD model (stable) and a popularity model
(canary, 50 % of the users by the rollout's stable hash) in this process to simulated users
(the simulator's in-process traffic), and runs the online evaluation (the core of
`movierec online-eval`) on the resulting log."""),
        new_code_cell(SETUP),
        new_code_cell('''\
report = DEMO / "online-report" / "online-eval.json"
if not report.exists():
    import dataclasses
    from datetime import datetime

    from components.core import rollout
    from components.core.events import RecommendationEvent, format_event, parse_line
    from components.core.model_artifact import FactorModel, list_versions
    from components.core.store import open_store
    from simulator.service import StreamingService

    service = StreamingService(seed=5, n_users=400, n_movies=150)
    log = WORK / "events.log"
    log.write_text("".join(line + "\\n" for line in service.history(days=8, sessions_per_day=80,
                                                                       start=datetime(2026, 3, 1))))
    movierec("ingest", "--source", f"file:{log}", "--store", WORK / "store")
    # the preprocess and train steps' cores, in this process (what `movierec preprocess/train` call)
    from components.core.params import load_params
    from components.training.preprocess import prepare
    from components.training.train import train

    store = open_store(str(WORK / "store"))
    params = load_params(ROOT / "params.yaml")
    dataset = prepare(store, params)
    for algorithm in ("svd", "popularity"):
        model, card = train(dataset, algorithm, params)
        model.save(store, card)
    versions = list_versions(store)
    stable = next(v for v in versions if v.startswith("svd"))
    canary = next(v for v in versions if v.startswith("popularity"))
    rollout.set_stable(store, stable)
    state = rollout.start_canary(store, canary, 50)
    served = {v: FactorModel.load(store, v)[0] for v in (stable, canary)}

    def recommend(user_id):
        ids, _ = served[state.route(user_id)].recommend(user_id, 20)
        return ids, 200, 5

    lines = []
    for line in service.serve_traffic(recommend, n_requests=800, concurrency=1, log_requests=True,
                                      start=datetime(2026, 3, 11), server="notebook@"):
        event = parse_line(line)
        if isinstance(event, RecommendationEvent):   # name the version that answered, as the predictor does
            line = format_event(dataclasses.replace(event, server=f"notebook@{state.route(event.user_id)}"))
        lines.append(line)
    with log.open("a") as f:
        f.write("".join(line + "\\n" for line in lines))
    # what `movierec online-eval --log file:... --report ...` does
    from components.online.join import frames_from_log
    from components.online.run import run_once

    run_once(frames_from_log(str(log)), store, report_dir=WORK / "online-report")
    report = WORK / "online-report" / "online-eval.json"
online = json.loads(report.read_text())
print(f"window {online['window']}, data {online['data_from']} .. {online['data_until']}")'''),
        new_markdown_cell("""\
## Per version
Every figure with its sample size and 95 % interval. `popularity` (no version) is the service's
legacy list that users met in the history, before any model was deployed."""),
        new_code_cell('''\
FIGURES = ["hit_rate", "watched_minutes_per_recommendation", "availability", "latency_p99_seconds"]
rows = []
for version, v in online["versions"].items():
    row = {"version": version, "requests": v["requests"], "users": v.get("users")}
    for name in FIGURES:
        fig_ = v.get(name) or {}
        row[name] = fig_.get("value")
        row[name + " 95% CI"] = (f"{fig_['low']:.3f}..{fig_['high']:.3f}"
                                 if fig_.get("low") is not None and fig_.get("high") is not None else "-")
    rows.append(row)
per_version = pd.DataFrame(rows).set_index("version")
per_version'''),
        new_code_cell('''\
%matplotlib inline
# (the online report's own plotting switched matplotlib to a file backend: back to inline)
hit = pd.DataFrame({version: v["hit_rate"] for version, v in online["versions"].items()
                    if v["hit_rate"]["value"] is not None}).T
errors = np.vstack([hit["value"] - hit["low"], hit["high"] - hit["value"]]).astype(float)
fig, axes = plt.subplots(1, 2)
axes[0].bar(range(len(hit)), hit["value"].astype(float), yerr=errors, capsize=6, color="tab:blue")
axes[0].set_xticks(range(len(hit)), [v[:22] for v in hit.index], rotation=15, fontsize=7)
axes[0].set(title="hit rate per version (95% CI)", ylim=(0, 1))
per_version["requests"].plot.bar(ax=axes[1], rot=15, title="requests per version", fontsize=7)
fig.tight_layout()'''),
        new_markdown_cell("## The canary decision\nPromote, roll back or keep collecting, and why."),
        new_code_cell('''\
canary = online.get("canary") or {}
print(f"stable {canary.get('stable')}  canary {canary.get('canary')}  ->  {canary.get('decision')}")
for reason in canary.get("reasons", []):
    print(" -", reason)
assert online["versions"] and all(v["requests"] > 0 for v in online["versions"].values())'''),
    ])


NOTEBOOKS = {
    "01-explore-events.ipynb": explore_events,
    "02-compare-models.ipynb": compare_models,
    "03-online-results.ipynb": online_results,
}


def main() -> None:
    for name, build in NOTEBOOKS.items():
        nb = build()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (movierec venv)",
                                     "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
