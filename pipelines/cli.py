"""`movierec pipeline ...`: compile the training pipeline, run it with kfp.local, schedule it.

    movierec pipeline compile --output build/pipeline.yaml
    movierec pipeline run --source file:events.log --store .movierec/store
    movierec pipeline submit --host http://localhost:8080 --pipeline-root minio://mlpipeline/v2/artifacts
    movierec pipeline schedule --host http://localhost:8080 --every 72h --pipeline-root minio://...

On a cluster the steps reach the artifact store by its URI (`s3://bucket/prefix` on MinIO, with
the AWS_* variables in the pods); `--pipeline-root` is where Kubeflow keeps the steps' own
artifacts (datasets, model directories, reports).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)

Source = Annotated[str, typer.Option(envvar="MOVIEREC_EVENTS",
                                     help="Event log the ingest step reads: file:PATH or kafka://HOST:PORT/TOPIC.")]
Params = Annotated[Path | None, typer.Option(help="params.yaml to use (default: $MOVIEREC_PARAMS or ./params.yaml, "
                                                  "else built-in defaults).")]
Deploy = Annotated[str, typer.Option(help="What the release step does with the winner (refit on the whole "
                                          "snapshot): none, canary (stable if nothing is deployed) or stable.")]
CanaryPercent = Annotated[float, typer.Option(help="Share of users (%) a canary gets.")]
ForceDeploy = Annotated[bool, typer.Option(help="When no model passed the gate, deploy the best one anyway "
                                                "(recorded in the rollout history).")]
Group = Annotated[str, typer.Option(help="Kafka consumer group of the ingest step.")]


def parse_interval(text: str) -> int:
    """The schedule's interval in whole seconds, by the one duration rule; at least a minute."""
    from components.core.durations import parse_duration
    from components.core.errors import UserError

    seconds = int(parse_duration(text).total_seconds())
    if seconds < 60:
        raise UserError(f"--every {text}: the interval must be at least a minute (e.g. 30m, 72h, 1d)")
    return seconds


def _arguments(source: str, store: str, params: Path | None, deploy: str, canary_percent: float,
               force_deploy: bool, group: str, s3_secret: str) -> dict:
    from components.core.params import load_params

    return {"source": source, "store": store, "params": json.dumps(load_params(params), sort_keys=True),
            "group": group, "deploy": deploy, "canary_percent": canary_percent, "force_deploy": force_deploy,
            "s3_secret": s3_secret}


@app.command("compile")
def compile_command(
    output: Annotated[Path, typer.Option(help="Where to write the compiled pipeline (YAML).")] = Path("pipeline.yaml"),
    params: Params = None,
) -> None:
    """Compile the movierec-training pipeline to a Kubeflow Pipelines YAML file."""
    from components.core.params import load_params
    from pipelines.training_pipeline import compile_pipeline

    output.parent.mkdir(parents=True, exist_ok=True)
    compile_pipeline(str(output), load_params(params))
    typer.echo(f"compiled movierec-training -> {output}")


@app.command("run")
def run_command(
    source: Source = "file:events.log",
    store: Annotated[str, typer.Option(envvar="MOVIEREC_STORE", help="Artifact store: a path, file:PATH or "
                                                                     "s3://BUCKET/PREFIX.")] = ".movierec/store",
    pipeline_root: Annotated[Path, typer.Option(help="Directory for the steps' artifacts (datasets, model "
                                                     "directories, reports).")] = Path(".movierec/pipeline-root"),
    params: Params = None,
    deploy: Deploy = "none",
    canary_percent: CanaryPercent = 10.0,
    force_deploy: ForceDeploy = False,
    group: Group = "movierec-ingest",
    report: Annotated[Path | None, typer.Option(help="Also write the run's summary as JSON to this file.")] = None,
) -> None:
    """Run the whole pipeline on this machine (kfp.local, in this interpreter) and print what it published."""
    from components.core.errors import NotFound
    from components.core.eventlog import file_path
    from components.core.params import load_params
    from pipelines.local import copy_offline_report, run_local

    settings = load_params(params)                     # a mistake in params.yaml first, before any work
    if not store.startswith(("s3://", "file:")):
        store = str(Path(store).resolve())            # the steps are subprocesses: no relative paths
    if source.startswith("file:") and not source.startswith("file://"):
        source = "file:" + str(Path(source[len("file:"):]).resolve())
    if source.startswith("file:") and not Path(file_path(source)).is_file():
        raise NotFound(f"no event log at {file_path(source)}: --source takes file:PATH of an existing log "
                       "(movierec simulate writes one) or kafka://HOST:PORT/TOPIC")
    typer.echo(f"running movierec-training: {source} -> {store} (artifacts under {pipeline_root})")
    try:
        result = run_local(source, store, str(pipeline_root), settings, deploy=deploy,
                           canary_percent=canary_percent, force_deploy=force_deploy, group=group,
                           progress=lambda line: typer.secho(line, bold=True))
    except RuntimeError as exc:
        typer.echo(f"pipeline failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo("")
    for item in result.published:
        m = item["metrics"]
        verdict = "candidate" if item["candidate"] else "rejected"
        typer.echo(f"published {item['version']}: {verdict}, deployed={item['deployed'] or '-'}, "
                   f"rmse {m.get('rmse', float('nan')):.4f}, ndcg@20 {m.get('ndcg@20', float('nan')):.4f} "
                   f"(popularity {m.get('baseline_ndcg@20', float('nan')):.4f})")
        for reason in item["reasons"]:
            typer.echo(f"    {reason}")
    typer.echo(f"winner: {result.winner or 'none (no model passed the gate)'}")
    offline = copy_offline_report(pipeline_root, pipeline_root / "offline-report.html")
    if offline:
        typer.echo(f"offline report (open in a browser): {offline}")
    typer.echo("seconds per step: " + ", ".join(f"{k} {v:.1f}" for k, v in result.step_seconds.items())
               + f"; total {result.seconds:.1f}")
    if result.step_peak_mb:
        typer.echo("CPU seconds per step: " + ", ".join(f"{k} {v:.1f}" for k, v in result.step_cpu_seconds.items())
                   + f"; total {sum(result.step_cpu_seconds.values()):.1f}")
        typer.echo("peak memory per step (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in result.step_peak_mb.items())
                   + f"; largest {max(result.step_peak_mb.values()):.0f}")
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")


def _client(host: str):
    import kfp

    return kfp.Client(host=host)


def _compiled(params: Path | None) -> str:
    from components.core.params import load_params
    from pipelines.training_pipeline import compile_pipeline

    path = os.path.join(tempfile.mkdtemp(prefix="movierec-pipeline-"), "pipeline.yaml")
    return compile_pipeline(path, load_params(params))


Host = Annotated[str, typer.Option(help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8080.")]
PipelineRoot = Annotated[str | None, typer.Option(help="Where Kubeflow keeps the steps' artifacts, e.g. "
                                                        "minio://mlpipeline/v2/artifacts (default: the cluster's).")]
ClusterStore = Annotated[str, typer.Option(envvar="MOVIEREC_STORE", help="The artifact store as the pods see "
                                                                         "it, e.g. s3://movierec/prod.")]
Experiment = Annotated[str, typer.Option(help="Kubeflow experiment to file the runs under.")]
S3Secret = Annotated[str, typer.Option(help="Kubernetes Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
                                            "(and AWS_ENDPOINT_URL) for the steps that use the store.")]


@app.command("submit")
def submit_command(
    host: Host,
    source: Source = "kafka://kafka-bootstrap.kafka:9092/movie-events",
    store: ClusterStore = "s3://movierec/prod",
    pipeline_root: PipelineRoot = None,
    experiment: Experiment = "movierec",
    params: Params = None,
    deploy: Deploy = "canary",
    canary_percent: CanaryPercent = 10.0,
    force_deploy: ForceDeploy = False,
    group: Group = "movierec-ingest",
    s3_secret: S3Secret = "movierec-s3-pipeline",
) -> None:
    """Run the pipeline once on a Kubeflow Pipelines cluster."""
    client = _client(host)
    result = client.create_run_from_pipeline_package(
        _compiled(params), arguments=_arguments(source, store, params, deploy, canary_percent, force_deploy, group, s3_secret),
        experiment_name=experiment, pipeline_root=pipeline_root, enable_caching=False)
    typer.echo(f"submitted run {result.run_id}")


@app.command("schedule")
def schedule_command(
    host: Host,
    every: Annotated[str, typer.Option(help="Interval between runs: 72h, 1d, 30m, 1h30m (a bare number is "
                                            "seconds; at least a minute).")] = "72h",
    name: Annotated[str, typer.Option(help="Name of the recurring run.")] = "movierec-training-every",
    source: Source = "kafka://kafka-bootstrap.kafka:9092/movie-events",
    store: ClusterStore = "s3://movierec/prod",
    pipeline_root: PipelineRoot = "minio://mlpipeline/v2/artifacts",
    experiment: Experiment = "movierec",
    params: Params = None,
    deploy: Deploy = "canary",
    canary_percent: CanaryPercent = 10.0,
    force_deploy: ForceDeploy = False,
    group: Group = "movierec-ingest",
    s3_secret: S3Secret = "movierec-s3-pipeline",
) -> None:
    """Create a Kubeflow recurring run of the pipeline (one at a time, no backfill)."""
    seconds = parse_interval(every)
    client = _client(host)
    exp = client.create_experiment(name=experiment)
    job = client.create_recurring_run(
        experiment_id=exp.experiment_id, job_name=name, interval_second=seconds, max_concurrency=1,
        no_catchup=True, params=_arguments(source, store, params, deploy, canary_percent, force_deploy, group, s3_secret),
        pipeline_package_path=_compiled(params), pipeline_root=pipeline_root, enable_caching=False)
    typer.echo(f"recurring run {getattr(job, 'recurring_run_id', '')} '{name}': every {seconds} s "
               f"in experiment {experiment}")
