"""The pipeline steps as Kubeflow lightweight Python components: thin wrappers of the cores.

Kubeflow ships each body as source into a fresh interpreter (a pod from `MOVIEREC_IMAGE` on a
cluster, the project's venv under `kfp.local`), so every body imports what it needs, parses its
arguments, calls one core function of `components` and writes its outputs. Nothing here holds
logic a test would want to reach: that lives in `components.ingest.run`, `preprocess`, `train`,
`evaluate`, `publish` (`publish`, `release`) and `report`.

What travels between steps: the prepared dataset as a KFP `Dataset` directory
(`Dataset.save/load`), each trained model as a KFP `Model` directory that is the model's version
folder, the same as `models/<version>/` in the store (`FactorModel.save_dir/load_dir`, checksums
verified), each evaluation
set as JSON in an `Artifact`, metrics in `Metrics`, reports in `HTML`. The params (params.yaml
as a dict) travel as a JSON string: a KFP `dict` parameter turns every number into a float, and
Surprise refuses `n_factors=20.0`. The artifact store
(events in, published models out) is addressed by its URI, so the same steps work on a laptop
(a directory) and on a cluster (`s3://...` on MinIO).

This module is deliberately written without `from __future__ import annotations`: KFP reads
the parameter annotations of these functions at decoration time.
"""

import os
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

IMAGE_ENV = "MOVIEREC_IMAGE"
IMAGE = os.environ.get(IMAGE_ENV, "movierec/components:0.1.0")
# The image (and, under kfp.local, the project's venv) has kfp installed: without this, each step
# would first run `pip install kfp==<version>`, half a second of a step for nothing.
STEP = {"base_image": IMAGE, "install_kfp_package": False}


@dsl.component(**STEP)
def ingest(source: str, store: str, group: str, metrics: Output[Metrics]) -> int:
    """Ingest the event log up to its end as of now into snapshots in the store; return lines read."""
    import time

    from components.core.store import open_store
    from components.ingest.run import ingest as run_ingest

    started = time.perf_counter()
    report = run_ingest(source, open_store(store), group=group, follow=False).to_dict()
    for kind, n in report["stored"].items():
        metrics.log_metric(f"stored_{kind}", n)
    metrics.log_metric("read", report["read"])
    metrics.log_metric("rejected", sum(report["rejected"].values()))
    metrics.log_metric("seconds", round(time.perf_counter() - started, 3))
    return int(report["read"])


@dsl.component(**STEP)
def preprocess(store: str, params: str, dataset: Output[Dataset], metrics: Output[Metrics]):
    """Build the dataset (filters, id maps, split by time) and log what each step kept and dropped."""
    import json
    import time

    from components.core.store import open_store
    from components.training.preprocess import prepare

    started = time.perf_counter()
    data = prepare(open_store(store), json.loads(params))
    data.save(dataset.path)
    dataset.metadata.update(snapshot=data.snapshot_hash, cutoff=data.cutoff, users=data.n_users,
                            movies=data.n_movies)
    for key, value in sorted(data.stats.items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(key, value)
    metrics.log_metric("seconds", round(time.perf_counter() - started, 3))


@dsl.component(**STEP)
def train(dataset: Input[Dataset], algorithm: str, params: str, model: Output[Model],
          metrics: Output[Metrics]) -> str:
    """Fit one algorithm; the model directory is its version folder."""
    import json

    from components.training.dataset import Dataset as PreparedDataset
    from components.training.train import train as run_train

    rec, card = run_train(PreparedDataset.load(dataset.path), algorithm, json.loads(params))
    rec.fitted.save_dir(model.path, card)
    model.metadata.update(version=card.version, algorithm=algorithm)
    metrics.log_metric("seconds", card.training_seconds)
    for key, value in card.metrics.items():
        metrics.log_metric(key, value)
    return card.version


@dsl.component(**STEP)
def evaluate(dataset: Input[Dataset], model: Input[Model], params: str, store: str,
             evaluation: Output[Artifact], metrics: Output[Metrics], report: Output[HTML]) -> float:
    """Offline metrics of the model, the popularity baseline and the deployed stable version (if
    any) on the same split; the evaluation set as JSON, metrics to KFP, an HTML report."""
    import json
    import time

    from components.core.model_artifact import FactorModel
    from components.core.store import open_store
    from components.training.dataset import Dataset as PreparedDataset
    from components.training.evaluate import evaluate_with_baseline
    from components.training.publish import decide, reference_models
    from components.training.report import render_html

    started = time.perf_counter()
    data, st, all_params = PreparedDataset.load(dataset.path), open_store(store), json.loads(params)
    candidate, card = FactorModel.load_dir(model.path)
    result = evaluate_with_baseline(candidate, data, all_params, name=card.version,
                                    references=reference_models(st, data, card.version))
    result["gate"] = decide(st, result, all_params, card.version).to_dict()   # what publish will decide
    if card.tuning:                                   # the search's own score, before the validation window
        result["tuning"] = {key: card.tuning[key] for key in ("metric", "best_score", "configured_score",
                                                                "trials_done", "fold_cutoff") if key in card.tuning}
    with open(evaluation.path, "w") as f:
        json.dump(result, f)
    evaluation.metadata.update(version=card.version, primary_metric=result["primary_metric"])
    for key, value in result["candidate"]["metrics"].items():
        metrics.log_metric(key, value)
    with open(report.path, "w") as f:
        f.write(render_html([result], title=f"Offline evaluation of {card.version}"))
    metrics.log_metric("seconds", round(time.perf_counter() - started, 3))
    return float(result["candidate"]["metrics"].get(result["primary_metric"], 0.0))


@dsl.component(**STEP)
def publish(model: Input[Model], evaluation: Input[Artifact], dataset: Input[Dataset], store: str, params: str,
            run_name: str) -> NamedTuple("Published", version=str, candidate=bool, reasons=str):
    """Gate the model and write it with its metrics and decision to the store (deployed by `release`)."""
    import json
    from collections import namedtuple

    from components.core.model_artifact import FactorModel
    from components.core.store import open_store
    from components.training.dataset import Dataset as PreparedDataset
    from components.training.publish import publish as run_publish

    fitted, card = FactorModel.load_dir(model.path)
    with open(evaluation.path) as f:
        result = run_publish(open_store(store), fitted, card, json.load(f), json.loads(params), pipeline_run=run_name,
                             seen=PreparedDataset.load(dataset.path).serving_seen_csr)
    print(json.dumps(result.to_dict(), indent=2))
    published = namedtuple("Published", ["version", "candidate", "reasons"])
    return published(result.version, result.decision.candidate, "; ".join(result.decision.reasons))


@dsl.component(**STEP)
def release(store: str, winner: str, best: str, params: str, deploy: str, canary_percent: float, force: bool,
            run_name: str) -> str:
    """Release the compare winner: refit it on the whole snapshot (`evaluate.refit`), publish the
    refit, deploy it if asked. Without a winner, `force` releases the best model the gate rejected.
    Returns the version deployed or, with deploy "none", the one that would be ("" if none)."""
    import json

    from components.core.params import section
    from components.core.store import open_store
    from components.training.publish import refit_whole_snapshot, to_release
    from components.training.publish import release as run_release

    version = to_release(winner, best, force)
    if not version:
        print("no model passed the gate: nothing released")
        return ""
    st, all_params = open_store(store), json.loads(params)
    refit = refit_whole_snapshot(st, all_params) if section(all_params, "evaluate")["refit"] else None
    result = run_release(st, version, all_params, deploy=deploy, canary_percent=canary_percent, force=force,
                         pipeline_run=run_name, refit_with=refit)
    print(json.dumps(result.to_dict(), indent=2))
    return result.served


@dsl.component(**STEP)
def compare(evaluation_a: Input[Artifact], candidate_a: bool, report: Output[HTML], metrics: Output[Metrics],
            evaluation_b: Input[Artifact] = None, candidate_b: bool = False,
            evaluation_c: Input[Artifact] = None, candidate_c: bool = False,
            evaluation_d: Input[Artifact] = None, candidate_d: bool = False
            ) -> NamedTuple("Compared", winner=str, best=str):
    """Put the models (one to four: `COMPARE_SLOTS`) side by side; return the winner, the best
    gated candidate ("" if none), and the best of all on the primary metric, gated or not."""
    import json
    from collections import namedtuple

    from components.training.evaluate import pick_winner
    from components.training.report import render_html

    slots = [(evaluation_a, candidate_a), (evaluation_b, candidate_b), (evaluation_c, candidate_c),
             (evaluation_d, candidate_d)]
    sets, gated_flags = [], []
    for artifact, candidate in slots:
        if artifact is None:
            continue
        with open(artifact.path) as f:
            sets.append(json.load(f))
        gated_flags.append(candidate)
    primary = sets[0]["primary_metric"]
    gated = {ev["candidate"]["name"]: ev["candidate"]["metrics"]
             for ev, ok in zip(sets, gated_flags, strict=True) if ok}
    winner = pick_winner(gated, primary)
    best = pick_winner({ev["candidate"]["name"]: ev["candidate"]["metrics"] for ev in sets}, primary)
    for ev in sets:
        metrics.log_metric(f"{ev['candidate']['name']}:{primary}", ev["candidate"]["metrics"].get(primary, 0.0))
    metrics.log_metric(f"popularity:{primary}", sets[0]["baseline"]["metrics"].get(primary, 0.0))
    notes = [f"winner on {primary} among gated candidates: {winner or 'none (no model passed the gate)'}"]
    fold = {ev["candidate"]["name"]: ev["tuning"]["best_score"] for ev in sets if "tuning" in ev}
    if fold:                                          # hyper-parameters searched: the fold's own ranking
        for name, score in fold.items():
            metrics.log_metric(f"{name}:tune_fold_{primary}", score)
        notes.append(f"on the tuning fold (the train period's newest part, before the validation window), {primary}: "
                     + ", ".join(f"{name} {score:.4f}" for name, score in sorted(fold.items(), key=lambda x: -x[1])))
    with open(report.path, "w") as f:
        f.write(render_html(sets, title="Offline evaluation: models side by side", notes=notes))
    return namedtuple("Compared", ["winner", "best"])(winner, best)


COMPARE_SLOTS = ("a", "b", "c", "d")   # the models `compare` takes: evaluation_<slot>, candidate_<slot>


@dsl.component(**STEP)
def online_eval(store: str, window: str, auto: bool, report: Output[Artifact], metrics: Output[Metrics]) -> str:
    """Bounded online evaluation of the ingested snapshots (and the canary decision, acted on with
    `auto`); the report directory (JSON, Markdown, plots, .prom) is the artifact. Returns the decision."""
    from components.core.durations import parse_duration
    from components.core.store import open_store
    from components.online.join import frames_from_store
    from components.online.run import run_once

    st = open_store(store)
    result = run_once(frames_from_store(st), st, window=parse_duration(window), auto=auto, report_dir=report.path)
    for version, figures in result["versions"].items():
        for name in ("hit_rate", "availability"):
            if figures[name]["value"] is not None:
                metrics.log_metric(f"{name}.{version}", figures[name]["value"])
    return result["canary"]["decision"]
