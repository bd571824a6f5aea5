"""CLI commands for the pipeline stages' plain-Python cores (ingest, train, evaluate, ...).

Registered on the top-level `movierec` command by `movierec.cli`. Heavy imports stay inside the
command functions so that `movierec --help` is fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


# -- preprocess, train, movielens ------------------------------------------------------------------

@app.command("preprocess")
def preprocess_command(
    store: Annotated[str | None, typer.Option(help="Artifact store holding the event snapshots "
                                              "(default: $MOVIEREC_STORE or .movierec/store).")] = None,
    out: Annotated[Path, typer.Option(help="Directory to write the prepared dataset to.")] = Path(".movierec/dataset"),
    params: Annotated[Path | None, typer.Option(help="params.yaml to use (default: $MOVIEREC_PARAMS or "
                                                "./params.yaml, else built-in defaults).")] = None,
) -> None:
    """Build the training dataset from the event snapshots: filters, id maps, split by time."""
    import json

    from components.core.params import load_params
    from components.core.store import open_store
    from components.training.preprocess import prepare

    dataset = prepare(open_store(store, must_exist=True), load_params(params))
    dataset.save(out)
    typer.echo(dataset.summary())
    typer.echo(json.dumps(dataset.stats, sort_keys=True))


@app.command("train")
def train_command(
    dataset: Annotated[Path, typer.Option(help="Prepared dataset directory (from `movierec preprocess`).")]
    = Path(".movierec/dataset"),
    algorithm: Annotated[list[str] | None, typer.Option(help="Algorithm to train (svd, svdpp, popularity, "
                                                        "random); repeat for several. Default: "
                                                        "train.algorithms of params.yaml.")] = None,
    out: Annotated[Path, typer.Option(help="Directory receiving one model artifact directory per "
                                      "version (unpublished).")] = Path(".movierec/models"),
    store: Annotated[str | None, typer.Option(help="Also save each model into this artifact store, ungated "
                                              "and for good (written once: to gate a model, publish its "
                                              "folder instead).")] = None,
    params: Annotated[Path | None, typer.Option(help="params.yaml to use (default: $MOVIEREC_PARAMS or "
                                                "./params.yaml, else built-in defaults).")] = None,
) -> None:
    """Train recommenders on a prepared dataset and write their model artifacts."""
    from components.core.params import check_algorithms, load_params
    from components.core.store import open_store
    from components.training.dataset import Dataset
    from components.training.dvc_provenance import dvc_data_hash
    from components.training.train import train

    all_params = load_params(params)
    names = check_algorithms(algorithm) if algorithm else all_params["train"]["algorithms"]
    data = Dataset.load(dataset)
    for name in names:
        rec, card = train(data, name, all_params)
        card.dvc_data_hash = dvc_data_hash(dataset)  # set under `dvc repro`: the dataset's hash in dvc.lock
        rec.fitted.save_dir(out / card.version, card)   # the version folder, as in the store
        if store is not None:
            rec.save(open_store(store), card)
        typer.echo(f"{card.version}: {card.training_seconds:.2f} s, train RMSE {card.metrics['train_rmse']:.4f}"
                   f" -> {out / card.version}")


@app.command("movielens")
def movielens_command(
    path: Annotated[Path, typer.Argument(help="A MovieLens ratings file: u.data, ratings.dat, ratings.csv "
                                         "or a RecBole .inter file.")],
    to: Annotated[str, typer.Option(help="Event log to write: file:PATH or kafka://HOST:PORT/TOPIC.")]
    = "file:movielens-events.log",
    fmt: Annotated[str | None, typer.Option("--format", help="Force the layout (u.data, ratings.dat, "
                                            "ratings.csv, inter); default: detected.")] = None,
    limit: Annotated[int | None, typer.Option(help="Convert only the first N ratings of the file.")] = None,
) -> None:
    """Turn MovieLens ratings into the platform's rate events (MovieLens itself is never shipped)."""
    from components.ingest.movielens import convert

    count = convert(path, to, fmt=fmt, limit=limit)
    typer.echo(f"{count} rate events written to {to}")


@app.command("ingest")
def ingest_command(
    source: Annotated[str, typer.Option("--source", envvar="MOVIEREC_EVENTS",
                                        help="Event log: file:PATH or kafka://HOST:PORT/TOPIC.")],
    store: Annotated[str | None, typer.Option(envvar="MOVIEREC_STORE",
                                              help="Artifact store: a path, file:PATH or s3://BUCKET/PREFIX.")] = None,
    follow: Annotated[bool, typer.Option(help="Run as a service until SIGTERM/SIGINT instead of stopping at "
                                              "the log's end as of the start.")] = False,
    group: Annotated[str, typer.Option(help="Kafka consumer group.")] = "movierec-ingest",
    instance_id: Annotated[str | None, typer.Option(help="Static group membership id (e.g. the pod name): a "
                                                         "restarted process gets its partitions back at once.")] = None,
    batch_size: Annotated[int, typer.Option(help="Lines per snapshot batch (batches are cut at multiples of it).")] = 200_000,
    linger: Annotated[float, typer.Option(help="Seconds a partial batch waits before it is written anyway.")] = 5.0,
    batch_bytes: Annotated[int, typer.Option(min=1, help="Most line bytes in one batch: long lines make "
                                                         "smaller batches (bounds the memory).")] = 32 << 20,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus /metrics on this port.")] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics server binds to.")] = "0.0.0.0",
    metrics_file: Annotated[str | None, typer.Option(help="Write the metrics to this .prom file at the end "
                                                          "(node-exporter textfile collector).")] = None,
    connect_timeout: Annotated[float | None, typer.Option(help="Seconds to retry an unreachable broker "
                                                               "(default: forever with --follow, else 5).")] = None,
    store_retry_seconds: Annotated[float, typer.Option(help="Seconds to retry a failing store before stopping "
                                                            "with an error.")] = 30.0,
    write_process: Annotated[bool, typer.Option(help="Parse and write snapshots in a second process, beside the "
                                                     "Kafka consumer (off: everything in one process).")] = True,
    report: Annotated[str | None, typer.Option(help="Also write the run's report as JSON to this file.")] = None,
) -> None:
    """Ingest the event log into Parquet snapshots in the store (bounded, or --follow as a service)."""
    import json
    import logging

    from components.core.store import StoreError, open_store
    from components.ingest.run import IngestError, ingest

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # kafka-python's INFO is per connection
        logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        result = ingest(source, open_store(store), group=group, follow=follow, batch_size=batch_size,
                        batch_bytes=batch_bytes, linger=linger, instance_id=instance_id, metrics_port=metrics_port,
                        metrics_host=metrics_host, metrics_file=metrics_file, connect_timeout=connect_timeout,
                        store_retry_seconds=store_retry_seconds, write_process=write_process)
    except (IngestError, StoreError, ValueError) as exc:
        typer.echo(f"ingest failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    text = json.dumps(result.to_dict(), indent=2, sort_keys=True)
    if report:
        Path(report).write_text(text + "\n")
    typer.echo(text)


@app.command("retention")
def retention_command(
    keep_days: Annotated[float, typer.Option(min=0, help="Keep this many days of snapshots (older days go once "
                                                         "online evaluation has consumed them).")],
    store: Annotated[str | None, typer.Option(envvar="MOVIEREC_STORE",
                                              help="Artifact store: a path, file:PATH or s3://BUCKET/PREFIX.")] = None,
    now: Annotated[str | None, typer.Option(help="Take this ISO time as now (default: the current UTC time).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Only report what would be deleted.")] = False,
) -> None:
    """Delete snapshot days older than the window, once online evaluation has consumed them."""
    import json
    from datetime import datetime

    from components.core.errors import UserError
    from components.core.store import open_store
    from components.ingest.retention import expire_snapshots

    try:
        at = datetime.fromisoformat(now) if now else None
    except ValueError:
        raise UserError(f"--now {now!r} is not an ISO time (e.g. 2026-03-18T06:00:00)") from None
    result = expire_snapshots(open_store(store, must_exist=True), keep_days, now=at, dry_run=dry_run)
    typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))


# -- online evaluation and provenance ----------------------------------------------------------------

@app.command("online-eval")
def online_eval_command(
    log: Annotated[str | None, typer.Option(help="Event log file to read (file:PATH); default: the ingested "
                                                 "snapshots of the store.")] = None,
    store: Annotated[str | None, typer.Option(envvar="MOVIEREC_STORE",
                                              help="Artifact store with rollout state and models; receives the "
                                                   "results and online/watermark.json.")] = None,
    window: Annotated[str, typer.Option(help="How long after a recommendation a watch still counts: "
                                             "30m, 2h, 1h30m, 45s (a bare number is seconds).")] = "30m",
    follow: Annotated[bool, typer.Option(help="Keep evaluating new events every --interval seconds.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between evaluations with --follow.")] = 30.0,
    cycles: Annotated[int | None, typer.Option(help="Stop --follow after this many evaluations.")] = None,
    report: Annotated[Path | None, typer.Option(help="Directory for online-eval.json, report.html, report.md, "
                                                     "online-metrics.png and online-metrics.prom.")] = None,
    auto: Annotated[bool, typer.Option(help="Act on the canary decision: promote or roll back through the "
                                            "rollout state.")] = False,
    metrics_port: Annotated[int | None, typer.Option(help="With --follow, serve movierec_online_* on this "
                                                          "port at /metrics.")] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics server binds to (127.0.0.1: this "
                                                   "machine only).")] = "0.0.0.0",
    min_per_arm: Annotated[int, typer.Option(help="Users with evaluated answers per arm before any hit-rate "
                                                  "decision.")] = 100,
    planned_canary: Annotated[int, typer.Option(help="Canary users after which no difference yet is reported as "
                                                     "inconclusive (a person decides).")] = 2000,
    alpha: Annotated[float, typer.Option(help="Bound on the chance of ever promoting or rolling back a canary "
                                              "equal to the stable version (always-valid test).")] = 0.05,
) -> None:
    """Join served recommendations with later watches per version; analyse (and act on) the canary."""
    import json

    from components.core.durations import parse_duration
    from components.core.errors import NotFound, UserError
    from components.core.eventlog import file_path
    from components.core.store import open_store
    from components.online.canary import CanaryPolicy
    from components.online.join import frames_from_log, frames_from_store
    from components.online.run import LogTail, run_once
    from components.online.run import follow as follow_loop

    try:
        within = parse_duration(window)
    except UserError as error:
        raise UserError(f"--window: {error}") from None
    if log and not Path(file_path(log)).is_file():
        raise NotFound(f"no event log at {file_path(log)}: --log takes file:PATH of an existing log file")
    st = open_store(store, must_exist=True)
    options = dict(window=within, auto=auto, report_dir=report,
                   policy=CanaryPolicy(alpha=alpha, min_per_arm=min_per_arm, planned_canary=planned_canary))
    if follow:
        result = follow_loop(LogTail(log) if log else None, st, interval=interval, cycles=cycles,
                             metrics_port=metrics_port, metrics_host=metrics_host, **options)
    else:
        frames = frames_from_log(log) if log else frames_from_store(st)
        result = run_once(frames, st, **options)
    if result is None:
        typer.echo("no events to evaluate")
        return
    brief = {v: {"requests": m["requests"], "hit_rate": m["hit_rate"], "availability": m["availability"]["value"]}
             for v, m in result["versions"].items()}
    typer.echo(json.dumps({"versions": brief, "canary": {k: result["canary"][k] for k in
                                                         ("stable", "canary", "decision", "reasons", "acted")},
                           "consumed_until": result["consumed_until"]}, indent=2, default=str))


@app.command("trace")
def trace_command(
    line: Annotated[str | None, typer.Argument(help="A recommendation request line from the event log.")] = None,
    version: Annotated[str | None, typer.Option(help="Trace a model version instead of a request line.")] = None,
    store: Annotated[str | None, typer.Option(envvar="MOVIEREC_STORE",
                                              help="Artifact store holding the model cards.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole trace as JSON.")] = False,
) -> None:
    """From a served answer (or a version) back to its model card: data, run, commit, metrics, gate."""
    import json

    from components.core.store import open_store
    from components.online.trace import TraceError, summary, trace

    try:
        result = trace(open_store(store, must_exist=True), line=line, version=version)
    except TraceError as exc:
        typer.echo(f"trace failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2, default=str) if as_json else summary(result))


@app.command("models")
def models_command(
    store: Annotated[str | None, typer.Option(envvar="MOVIEREC_STORE",
                                              help="Artifact store holding the published versions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the published model versions with their offline gate and rollout role."""
    import json

    from components.core import rollout
    from components.core.model_artifact import list_versions, load_card
    from components.core.store import open_store

    st = open_store(store, must_exist=True)
    state = rollout.load(st)
    rows = []
    for version in list_versions(st):
        card = load_card(st, version)
        gate = card.gate or {}
        role = ("stable" if version == state.stable else
                f"canary {state.canary_percent:g}%" if version == state.canary else "-")
        rows.append({"version": version, "algorithm": card.algorithm, "trained_at": card.trained_at,
                     "gate": ("passed" if gate.get("candidate") else "rejected") if gate else "never gated",
                     "metric": gate.get("primary_metric"), "value": gate.get("value"),
                     "baseline": gate.get("baseline"), "reasons": gate.get("reasons", []), "rollout": role})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no published version in {st.uri}")
        return
    typer.echo(f"{'version':<44} {'algorithm':<11} {'gate':<12} {'metric (baseline)':<24} rollout")
    for r in rows:
        metric = (f"{r['metric']} {r['value']:.4f} ({r['baseline']:.4f})"
                  if r["value"] is not None and r["baseline"] is not None else "-")
        typer.echo(f"{r['version']:<44} {r['algorithm']:<11} {r['gate']:<12} {metric:<24} {r['rollout']}")
    typer.echo("gate: offline check at publish (beats the popularity baseline on the metric, within the margin "
               "of stable); 'movierec trace --version V' shows the reasons")


# -- evaluate, publish -------------------------------------------------------------------------------

@app.command("evaluate")
def evaluate_command(
    model: Annotated[list[str], typer.Option(help="Model to evaluate: a directory from `movierec train`, or a "
                                                  "version published in the store; repeat for several.")],
    dataset: Annotated[Path, typer.Option(help="Prepared dataset directory (from `movierec preprocess`).")]
    = Path(".movierec/dataset"),
    store: Annotated[str | None, typer.Option(envvar="MOVIEREC_STORE", help="Artifact store holding published "
                                              "versions: a path, file:PATH or s3://BUCKET/PREFIX.")] = None,
    params: Annotated[Path | None, typer.Option(help="params.yaml to use (default: $MOVIEREC_PARAMS or "
                                                "./params.yaml, else built-in defaults).")] = None,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report with plots to this file.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the evaluation sets as JSON to this file.")] = None,
    metrics: Annotated[Path | None, typer.Option(help="Write the metrics as JSON keyed by algorithm (and "
                                                 "'popularity' for the baseline), overall and per activity "
                                                 "segment: what `dvc metrics diff` compares.")] = None,
) -> None:
    """Offline metrics of models on the validation window, beside the popularity baseline."""
    import json

    from components.core.params import load_params
    from components.core.store import open_store
    from components.training.dataset import Dataset
    from components.training.evaluate import evaluate_with_baseline
    from components.training.publish import resolve_model
    from components.training.report import render_html, render_markdown

    all_params, data, target = load_params(params), Dataset.load(dataset), open_store(store)
    sets, algorithms = [], []
    for spec in model:
        fitted, card = resolve_model(spec, target)
        sets.append(evaluate_with_baseline(fitted, data, all_params, name=card.version))
        algorithms.append(card.algorithm)
    typer.echo(render_markdown(sets))
    if report:
        report.write_text(render_html(sets))
    if output:
        output.write_text(json.dumps(sets, indent=2))
    if metrics:  # stable keys (algorithms, not versions) so that runs and commits can be compared
        table = {"popularity": {**sets[0]["baseline"]["metrics"], "by_activity": sets[0]["baseline"]["by_activity"]}}
        for algo, s in zip(algorithms, sets, strict=True):
            table[algo] = {**s["candidate"]["metrics"], "by_activity": s["candidate"]["by_activity"]}
        metrics.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")


@app.command("publish")
def publish_command(
    model: Annotated[str, typer.Option(help="Model to publish: a version folder from `movierec train` (a "
                                            "version is written once: one already in the store is refused).")],
    dataset: Annotated[Path, typer.Option(help="Prepared dataset directory the gate evaluates on.")]
    = Path(".movierec/dataset"),
    store: Annotated[str | None, typer.Option(envvar="MOVIEREC_STORE", help="Artifact store to publish into: "
                                              "a path, file:PATH or s3://BUCKET/PREFIX.")] = None,
    params: Annotated[Path | None, typer.Option(help="params.yaml to use (gate margin, primary metric).")] = None,
    deploy: Annotated[str, typer.Option(help="After the gate: none, canary (or stable if nothing is deployed "
                                             "yet) or stable.")] = "none",
    canary_percent: Annotated[float | None, typer.Option(help="Share of users (%) a canary gets "
                                                              "(default: evaluate.canary_percent).")] = None,
    force: Annotated[bool, typer.Option(help="Deploy even if the gate rejects the model (recorded).")] = False,
) -> None:
    """Gate a model against the popularity baseline and the stable version, publish it, optionally deploy it."""
    import json

    from components.core import rollout
    from components.core.params import load_params
    from components.core.store import open_store
    from components.training.dataset import Dataset
    from components.training.evaluate import evaluate_with_baseline
    from components.training.publish import (
        DEPLOY_MODES,
        publish,
        reference_models,
        refit_whole_snapshot,
        release,
        resolve_model,
    )

    all_params, data, target = load_params(params), Dataset.load(dataset), open_store(store)
    fitted, card = resolve_model(model, target)
    evaluation = evaluate_with_baseline(fitted, data, all_params, name=card.version,
                                        references=reference_models(target, data, card.version))
    try:
        refit = refit_whole_snapshot(target, all_params) if all_params["evaluate"]["refit"] else None
        if deploy not in DEPLOY_MODES:
            raise ValueError(f"deploy must be one of {', '.join(DEPLOY_MODES)}, got {deploy!r}")
        published = publish(target, fitted, card, evaluation, all_params, seen=data.serving_seen_csr)
        result = release(target, published.version, all_params, deploy=deploy, canary_percent=canary_percent,
                         force=force, refit_with=refit)
    except (ValueError, rollout.RolloutError) as exc:
        typer.echo(f"publish failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
