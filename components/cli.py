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

    from components.params import load_params
    from components.preprocess import prepare
    from components.store import open_store

    dataset = prepare(open_store(store), load_params(params))
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
    store: Annotated[str | None, typer.Option(help="Also save each model into this artifact store "
                                              "(ungated; the pipeline's publish step gates).")] = None,
    params: Annotated[Path | None, typer.Option(help="params.yaml to use (default: $MOVIEREC_PARAMS or "
                                                "./params.yaml, else built-in defaults).")] = None,
) -> None:
    """Train recommenders on a prepared dataset and write their model artifacts."""
    from components.dataset import Dataset
    from components.params import load_params
    from components.store import open_store
    from components.train import train, write_model_dir

    all_params = load_params(params)
    data = Dataset.load(dataset)
    for name in algorithm or all_params["train"]["algorithms"]:
        rec, card = train(data, name, all_params)
        write_model_dir(rec, card, out / card.version)
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
    from components.movielens import convert

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
    batch_size: Annotated[int, typer.Option(help="Lines per snapshot batch (batches are cut at multiples of it).")] = 50_000,
    linger: Annotated[float, typer.Option(help="Seconds a partial batch waits before it is written anyway.")] = 5.0,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus /metrics on this port.")] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics server binds to.")] = "0.0.0.0",
    metrics_file: Annotated[str | None, typer.Option(help="Write the metrics to this .prom file at the end "
                                                          "(node-exporter textfile collector).")] = None,
    connect_timeout: Annotated[float | None, typer.Option(help="Seconds to retry an unreachable broker "
                                                               "(default: forever with --follow, else 60).")] = None,
    store_retry_seconds: Annotated[float, typer.Option(help="Seconds to retry a failing store before stopping "
                                                            "with an error.")] = 30.0,
    report: Annotated[str | None, typer.Option(help="Also write the run's report as JSON to this file.")] = None,
) -> None:
    """Ingest the event log into Parquet snapshots in the store (bounded, or --follow as a service)."""
    import json
    import logging

    from components.ingest import IngestError, ingest
    from components.store import StoreError, open_store

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # kafka-python's INFO is per connection
        logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        result = ingest(source, open_store(store), group=group, follow=follow, batch_size=batch_size,
                        linger=linger, instance_id=instance_id, metrics_port=metrics_port,
                        metrics_host=metrics_host, metrics_file=metrics_file, connect_timeout=connect_timeout,
                        store_retry_seconds=store_retry_seconds)
    except (IngestError, StoreError, ValueError) as exc:
        typer.echo(f"ingest failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    text = json.dumps(result.to_dict(), indent=2, sort_keys=True)
    if report:
        Path(report).write_text(text + "\n")
    typer.echo(text)


@app.command("retention")
def retention_command(
    keep_days: Annotated[float, typer.Option(help="Keep this many days of snapshots (older days go once "
                                                  "online evaluation has consumed them).")],
    store: Annotated[str | None, typer.Option(envvar="MOVIEREC_STORE",
                                              help="Artifact store: a path, file:PATH or s3://BUCKET/PREFIX.")] = None,
    now: Annotated[str | None, typer.Option(help="Take this ISO time as now (default: the current UTC time).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Only report what would be deleted.")] = False,
) -> None:
    """Delete snapshot days older than the window, once online evaluation has consumed them."""
    import json
    from datetime import datetime

    from components.retention import expire_snapshots
    from components.store import open_store

    result = expire_snapshots(open_store(store), keep_days, now=datetime.fromisoformat(now) if now else None,
                              dry_run=dry_run)
    typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
