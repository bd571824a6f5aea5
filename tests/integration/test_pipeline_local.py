"""Real kfp.local runs of movierec-training, end to end: from a log file into a local store through
`movierec pipeline run`, and from a Kafka topic into an S3 store (SeaweedFS), as on a cluster.

A small event log (synthetic users with low-rank tastes, formatted by the event contract, plus
corrupted lines) goes through ingest, preprocess, SVD and SVD++ training, evaluation and publish
in subprocesses of this interpreter. The store must end up with every model's version (SVD, SVD++,
ALS), each with its offline metrics, gate decision and hyper-parameter search in its card, the
refit on the whole snapshot of each one that passed, and the rollout state the publish steps wrote
(the refits served).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from components.core import layout, rollout
from components.core.events import RateEvent, WatchEvent, format_event
from components.core.model_artifact import FactorModel, list_versions
from components.core.store import LocalStore
from pipelines.cli import app as pipeline_app
from tests.synthetic_events import synthetic_events

pytestmark = pytest.mark.integration

# Searched, not fixed: every train step tunes its model on an earlier time fold (two trials each).
PARAMS = {"train": {"svd": {"n_factors": 10, "n_epochs": 10}, "svdpp": {"n_factors": 10, "n_epochs": 10},
                    "als": {"factors": 10, "iterations": 5},
                    "tune": {"mode": "search", "n_trials": 2, "timeout_seconds": 60}}}
FACTORS = {"svd": "n_factors", "svdpp": "n_factors", "als": "factors"}
CORRUPTED = ["garbage", "2026-01-01T00:00:00,12,GET /rate/movie+001=9", ",,,"]


def event_lines(n_users: int = 120, n_movies: int = 60) -> list[str]:
    """Synthetic rate and watch lines in time order, with the corrupted lines mixed in."""
    rates, watches = synthetic_events(n_users=n_users, n_movies=n_movies, per_user=20, seed=5)
    lines = [(r.time, format_event(RateEvent(time=r.time.to_pydatetime(), user_id=int(r.user_id),
                                             movie_id=r.movie_id, rating=int(r.rating))))
             for r in rates.itertuples()]
    lines += [(w.time, format_event(WatchEvent(time=w.time.to_pydatetime(), user_id=int(w.user_id),
                                               movie_id=w.movie_id, minute=int(w.minute))))
              for w in watches.itertuples()]
    lines.sort(key=lambda item: item[0])
    text = [line for _, line in lines]
    for n, bad in enumerate(CORRUPTED):
        text.insert(100 * (n + 1), bad)
    return text


def write_event_log(path: Path) -> int:
    lines = event_lines()
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def test_pipeline_run_publishes_gated_versions(tmp_path):
    write_event_log(tmp_path / "events.log")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    store_dir, root, summary = tmp_path / "store", tmp_path / "root", tmp_path / "run.json"
    result = CliRunner().invoke(pipeline_app, [
        "run", "--source", f"file:{tmp_path / 'events.log'}", "--store", str(store_dir),
        "--pipeline-root", str(root), "--params", str(tmp_path / "params.yaml"), "--deploy", "canary",
        "--force-deploy", "--report", str(summary)])
    assert result.exit_code == 0, result.output
    assert "winner:" in result.output and "seconds per step" in result.output
    offline = root / "offline-report.html"
    assert f"offline report (open in a browser): {offline}" in result.output
    assert offline.read_text().startswith("<!doctype html>")

    store = LocalStore(store_dir)
    versions = list_versions(store)
    cards, refits = {}, {}
    for version in versions:
        model, card = FactorModel.load(store, version)          # checksums verified
        if card.gate.get("refit_of"):                           # a passed model refit on the whole snapshot
            refits[card.gate["refit_of"]] = card
        else:
            cards[card.algorithm] = card
        for metric in ("rmse", "mae", "precision@20", "recall@20", "ndcg@20", "hit_rate@20", "coverage@20",
                       "popularity_bias@20", "baseline_ndcg@20", "heavy_ndcg@20"):
            assert metric in card.metrics, (version, metric)
        assert 0.0 <= card.metrics["ndcg@20"] <= 1.0
        assert card.algorithm == "als" or card.metrics["rmse"] < 2.0     # ALS ranks, it does not predict stars
        gate = card.gate
        assert isinstance(gate["candidate"], bool) and gate["reasons"] and gate["primary_metric"] == "ndcg@20"
        assert gate["value"] == card.metrics["ndcg@20"] and gate["baseline"] == card.metrics["baseline_ndcg@20"]
        tuning = card.tuning
        assert tuning["searched"] and 1 <= tuning["trials_done"] <= 2 and card.params == tuning["best_params"]
        assert tuning["trials"][0]["params"][FACTORS[card.algorithm]] == 10      # trial 0: the configured values
        assert card.metrics[f"tune_fold_{tuning['metric']}"] == tuning["best_score"]
        assert isinstance(card.params[FACTORS[card.algorithm]], int)
        assert card.pipeline_run.startswith("movierec-training")
        assert model.n_factors == card.params[FACTORS[card.algorithm]] + (card.algorithm == "bpr")

    assert sorted(cards) == ["als", "svd", "svdpp"]
    run = json.loads(summary.read_text())
    candidates = {c.version: c.metrics["ndcg@20"] for c in cards.values() if c.gate["candidate"]}
    assert run["winner"] == (max(candidates, key=candidates.get) if candidates else "")
    # Only the winner is refit on the whole snapshot with its hyper-parameters (the release step);
    # with no winner, --force-deploy releases the best model past its gate, without a refit.
    chosen = run["winner"] or max(cards.values(), key=lambda c: c.metrics["ndcg@20"]).version
    (card,) = [c for c in cards.values() if c.version == chosen]
    if run["winner"]:
        (refit,) = refits.values()
        assert refit.gate["refit_of"] == chosen and refit.params == card.params
        assert refit.metrics["ndcg@20"] == card.metrics["ndcg@20"] and "whole snapshot" in refit.gate["reasons"][-1]
        served = refit.version
    else:
        assert refits == {}
        served = chosen
    # Nothing was deployed: the released version became stable (forced past its gate if it said no,
    # and the rollout history says so; the cards are written once, before). All were gated against
    # the same stable: none.
    state = rollout.load(store)
    assert (state.stable, state.canary) == (served, None)
    assert all(c.gate["stable_version"] is None for c in cards.values())
    (entry,) = rollout.history_of(state, served)
    assert entry["reason"].startswith("publish gate" if run["winner"] else "forced past")

    assert {p["version"] for p in run["published"]} == set(versions)
    assert set(run["step_seconds"]) == {"ingest", "preprocess", "compare", "release", *(
        f"{step}-{a}" for step in ("train", "evaluate", "publish") for a in ("svd", "svdpp", "als"))}
    # each step's own peak memory: at least the interpreter with pandas, not the runner's
    assert set(run["step_peak_mb"]) == set(run["step_seconds"])
    assert all(40 < mb < 4096 for mb in run["step_peak_mb"].values()), run["step_peak_mb"]
    assert set(run["step_cpu_seconds"]) == set(run["step_seconds"]) and all(v > 0 for v in run["step_cpu_seconds"].values())

    # The dashboard's artifacts: HTML reports with plots, and the dataset between the steps.
    (run_dir,) = list(root.glob("movierec-training-*"))
    for report in (run_dir / "compare" / "report", run_dir / "evaluate" / "report"):
        assert report.read_text().count("data:image/png;base64,") == 3
    assert "on the tuning fold" in (run_dir / "compare" / "report").read_text()
    cutoff = json.loads((run_dir / "preprocess" / "dataset" / "dataset.json").read_text())["cutoff"]
    assert all(card.tuning["fold_cutoff"] < cutoff for card in cards.values()), "tuned on the validation window"


def test_pipeline_from_kafka_into_s3(kafka, kafka_topic, s3_env, tmp_path):
    from components.core.eventlog import open_event_log
    from components.core.store import open_store
    from pipelines.local import run_local

    topic = kafka_topic(partitions=2)
    lines = event_lines(n_users=60, n_movies=40)
    with open_event_log(f"kafka://{kafka.bootstrap}/{topic}") as log:
        log.extend(lines)
    store_uri = f"s3://{s3_env}/prod"
    small = {"train": {"svd": {"n_factors": 5, "n_epochs": 5}, "svdpp": {"n_factors": 5, "n_epochs": 5},
                       "als": {"factors": 5, "iterations": 5}}}
    run = run_local(f"kafka://{kafka.bootstrap}/{topic}", store_uri, str(tmp_path / "root"), small,
                    group=f"pipeline-{topic}", deploy="stable")
    store = open_store(store_uri)                     # the steps' subprocesses inherited the AWS_* variables
    versions = list_versions(store)
    assert {v.split("-")[0] for v in versions} == {"als", "svd", "svdpp"}
    assert {p["version"] for p in run.published} == set(versions)
    evaluated, refit_of = [], []
    for version in versions:
        card = FactorModel.load(store, version)[1]
        assert "ndcg@20" in card.metrics and "reasons" in card.gate
        if card.gate.get("refit_of"):
            refit_of.append(card.gate["refit_of"])
        else:
            evaluated.append(card.algorithm)
    assert sorted(evaluated) == ["als", "svd", "svdpp"]
    assert refit_of == ([run.winner] if run.winner else [])          # only the winner is refit on the whole snapshot
    stored = sum(1 for key in store.list(layout.events_prefix()) if key.endswith(".parquet"))
    assert stored > 0 and any(key.endswith(".parquet") for key in store.list(layout.deadletter_prefix()))
    deployed = [p["version"] for p in run.published if p["deployed"] == "stable"]
    assert len(deployed) == (1 if run.winner else 0) and rollout.load(store).stable == (deployed[0] if deployed else None)
