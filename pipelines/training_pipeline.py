"""movierec-training: event log -> ingest -> preprocess -> train SVD and SVD++ -> evaluate -> publish.

    ingest (caching off: its input is a live stream)
      -> preprocess (dataset split by time)
        -> train svd    -> evaluate -> publish --+
        -> train svdpp  -> evaluate -> publish --+-> compare (side-by-side report, the winner)

On a cluster the steps that read or write the artifact store get the S3 (MinIO) endpoint and
credentials as environment variables from the Kubernetes Secret named by `s3_secret` (keys
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, optionally, AWS_ENDPOINT_URL), through
kfp-kubernetes; kfp.local ignores that and uses the caller's environment.

Both models are published as versions, each with its offline metrics and its gate decision in
its card; with `deploy="canary"` the SVD model is published first (it becomes stable when nothing
is deployed yet) and SVD++ second (a candidate becomes the canary). The steps are the thin
components of `components.steps`; this file only wires them.

    python -m pipelines.training_pipeline build/pipeline.yaml     # compile
"""

import json
import sys

from kfp import compiler, dsl

from components.core.params import complete
from components.steps import compare, evaluate, ingest, preprocess, publish, train

PIPELINE_NAME = "movierec-training"
ALGORITHMS = ("svd", "svdpp")
S3_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}


def with_store_credentials(task, secret):
    """Give a step the store's S3 endpoint and credentials from a Kubernetes Secret (cluster only)."""
    from kfp import kubernetes

    kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=S3_KEYS)
    kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env={"AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"},
                                 optional=True)
    return task


@dsl.pipeline(name=PIPELINE_NAME,
              description="Ingest the event log, train SVD and SVD++, evaluate offline against a popularity "
                          "baseline, publish gated model versions to the artifact store.")
def training_pipeline(source: str = "file:events.log", store: str = ".movierec/store", params: str = "{}",
                      group: str = "movierec-ingest", deploy: str = "none", canary_percent: float = 10.0,
                      force_deploy: bool = False, s3_secret: str = "movierec-s3-pipeline") -> str:
    ingested = with_store_credentials(ingest(source=source, store=store, group=group), s3_secret)
    ingested.set_caching_options(False)
    ingested.set_display_name("ingest")
    prepared = with_store_credentials(preprocess(store=store, params=params).after(ingested), s3_secret)
    prepared.set_caching_options(False)               # reads the store, which ingest just changed
    prepared.set_display_name("preprocess")
    published = []
    evaluations = []
    for algorithm in ALGORITHMS:
        trained = train(dataset=prepared.outputs["dataset"], algorithm=algorithm, params=params)
        trained.set_display_name(f"train-{algorithm}")
        scored = with_store_credentials(evaluate(dataset=prepared.outputs["dataset"], model=trained.outputs["model"],
                                                 params=params, store=store), s3_secret)
        scored.set_caching_options(False)             # compares with whatever is stable now
        scored.set_display_name(f"evaluate-{algorithm}")
        released = publish(model=trained.outputs["model"], evaluation=scored.outputs["evaluation"],
                           dataset=prepared.outputs["dataset"], store=store,
                           params=params, deploy=deploy, canary_percent=canary_percent, force=force_deploy,
                           run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER)
        with_store_credentials(released, s3_secret)
        released.set_display_name(f"publish-{algorithm}")
        released.set_caching_options(False)           # it writes the registry and the rollout state
        if published:
            released.after(published[-1])             # one writer of the rollout state at a time
        published.append(released)
        evaluations.append(scored)
    winner = compare(evaluation_a=evaluations[0].outputs["evaluation"],
                     evaluation_b=evaluations[1].outputs["evaluation"],
                     candidate_a=published[0].outputs["candidate"], candidate_b=published[1].outputs["candidate"])
    winner.set_display_name("compare")
    return winner.outputs["Output"]


def compile_pipeline(output: str, params: dict | None = None) -> str:
    """Write the pipeline spec (YAML) to `output`; `params` (params.yaml as a dict) become the
    default of the `params` pipeline parameter (completed by the built-in defaults), so the compiled
    file runs with them. Return the path."""
    defaults = {"params": json.dumps(complete(params), sort_keys=True)} if params is not None else None
    compiler.Compiler().compile(training_pipeline, package_path=output, pipeline_parameters=defaults)
    return output


if __name__ == "__main__":
    print(compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else "pipeline.yaml"))
